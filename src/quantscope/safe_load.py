"""Never hand back a model that crashes ONNX Runtime at its default optimization level.

Every written model is loaded and run once in a child process (:func:`quantscope.loadcheck.check_loads`),
so a segfault in the runtime's graph optimizer is caught instead of taking the caller's
process down. When the crash is traced to nodes of the model, those nodes are kept float
(added to the method's exclusions) and the model is written again, at most
:data:`MAX_AVOIDANCE_ROUNDS` times; the plan says which nodes and why. A crash that cannot be
traced, or that persists, is refused with :class:`~quantscope.errors.RuntimeCrashError`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping

import numpy as np

from quantscope.calibrate import TensorStats
from quantscope.config import MethodConfig, NodeSelector
from quantscope.errors import RuntimeCrashError
from quantscope.graph.queries import node_label
from quantscope.loadcheck import check_loads
from quantscope.methods.base import Method
from quantscope.model_io import IN_PROCESS_CHECK_BYTES, Model, float_bytes
from quantscope.plan import QuantPlan
from quantscope.runtime import make_session

logger = logging.getLogger(__name__)

MAX_AVOIDANCE_ROUNDS = 3
def check_in_process(model: Model) -> None:
    """ONNX Runtime loads ``model`` (at its basic level) here when it is small, so that a refusal
    is reported with the runtime's own message. A large one is not: a session here would hold
    another copy of every weight; :func:`loading_or_avoided` loads it in a child process
    (:func:`~quantscope.loadcheck.check_loads`, whose memory is its own), refusals included."""
    if float_bytes(model.ir) <= IN_PROCESS_CHECK_BYTES:  # what the session may hold once it folds weights
        make_session(model, optimization="basic")
    else:
        logger.debug("%s: large model, loaded by ONNX Runtime in the load check's child only", model)


def loading_or_avoided(
    method: Method,
    prepared: Model,
    config: MethodConfig,
    stats: TensorStats | None,
    plan: QuantPlan,
    quantized: Model,
    sample: Mapping[str, np.ndarray] | None,
) -> tuple[Model, QuantPlan]:
    """``quantized`` and its plan when ONNX Runtime loads and runs it; else a re-written model that
    keeps the crashing nodes float, or :class:`RuntimeCrashError`."""
    check_in_process(quantized)
    labels = {node_label(n) for n in prepared.ir.graph.all_nodes()}
    kept: list[str] = []
    for _ in range(MAX_AVOIDANCE_ROUNDS):
        try:
            check_loads(quantized, sample=sample)
        except RuntimeCrashError as exc:
            culprits = [n for n in getattr(exc.report, "nodes", ()) if n in labels and n not in kept]
            if not culprits:
                raise RuntimeCrashError(
                    f"{config.method} wrote a model that {exc}. quantscope could not trace it to nodes it can "
                    "keep float: exclude the nodes named (--exclude-name) or report this", exc.report,
                ) from exc
            kept += culprits
            logger.warning("%s: keeping %s float to avoid an ONNX Runtime crash", config.method, ", ".join(culprits))
            config = _with_excluded(config, culprits)
            plan = method.plan(prepared, config, stats)
            quantized = method.apply(prepared, config, plan)
            check_in_process(quantized)
            continue
        if kept:
            plan = dataclasses.replace(plan, notes=(*plan.notes, _note(kept)))
        return quantized, plan
    raise RuntimeCrashError(
        f"{config.method}: ONNX Runtime still crashes on the written model after keeping {', '.join(kept)} float; "
        "nothing was written"
    )


def _with_excluded(config: MethodConfig, names: list[str]) -> MethodConfig:
    current: NodeSelector = config.exclude
    selector = dataclasses.replace(current, names=(*current.names, *names))
    return dataclasses.replace(config, exclude=selector)


def _note(kept: list[str]) -> str:
    return (
        f"kept float to avoid an ONNX Runtime crash at its default optimization level: {', '.join(kept)} "
        "(the runtime's graph optimizer segfaulted on the quantized pattern; checked in a child process)"
    )


__all__ = ["IN_PROCESS_CHECK_BYTES", "MAX_AVOIDANCE_ROUNDS", "check_in_process", "loading_or_avoided"]
