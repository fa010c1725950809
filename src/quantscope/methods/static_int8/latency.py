"""Latency-aware static-int8: measure where integer execution wins on this machine, keep float where it loses.

After planning, the written int8 model is timed against the float model (paired, interleaved
rounds: :func:`quantscope.analysis.evaluate.time_paired`, batch 1, the config's
``target_threads``). With several regions (:mod:`.regions`), each region is timed kept float
against the full int8 model; a region whose float version is measurably faster stays float as a
whole, so no new float/integer round trip appears. The plan records every measurement
(``plan.extra["regions"]``, ``plan.extra["latency"]``) and the reason of every node kept float.

Timings are of the machine quantscope runs on: the same model may be planned differently on
another CPU. The timer is injectable, so the mechanism is testable without timing anything.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from quantscope.analysis.evaluate import PairedLatency, measure_latency, time_paired
from quantscope.analysis.stats import speed_verdict
from quantscope.calibrate import TensorStats
from quantscope.config import StaticInt8
from quantscope.errors import QuantscopeError
from quantscope.io import Model
from quantscope.methods.static_int8.regions import Region, find_regions
from quantscope.plan import QuantPlan
from quantscope.runtime import make_session, run

if TYPE_CHECKING:
    import onnxruntime as ort

    from quantscope.methods.base import Method

logger = logging.getLogger(__name__)

Timer = Callable[[Model, Model], PairedLatency]
"""Times ``(reference, variant)`` in paired rounds; ``speed`` > 1 when the variant is faster."""

DYNAMIC_SIZE = 64  # a symbolic dimension other than the batch is timed at this size
MIN_FLOAT_MS = 0.1  # a float model faster than this per call is not timed against int8 (microseconds either way)
MAX_REGIONS = 16  # the largest regions are timed; smaller ones keep the planner's decision
BUDGET_S = 10.0  # region timing stops after this long; the rest keep the planner's decision
ROUNDS = 30
TOO_FAST = (f"the float model runs in under {MIN_FLOAT_MS} ms per call at batch 1: too short to tell int8 from "
            "float, every region keeps the planner's decision")


def synthetic_feeds(model: Model, *, batch: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
    """One input per model input: the batch dimension ``batch``, other symbolic ones :data:`DYNAMIC_SIZE`,
    floats small normal values, integers 0 (a valid index), booleans False."""
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    for spec in model.inputs:
        shape = [d if isinstance(d, int) and d >= 0 else batch if i == 0 else DYNAMIC_SIZE
                 for i, d in enumerate(spec.shape or ())]
        dtype = np.dtype(spec.dtype)
        if dtype.kind == "f":
            feeds[spec.name] = (rng.standard_normal(shape) * 0.5).astype(dtype)
        else:
            feeds[spec.name] = np.zeros(shape, dtype=dtype)
    return feeds


def paired_timer(feeds: Mapping[str, np.ndarray], *, threads: int, rounds: int = ROUNDS, seed: int = 0) -> Timer:
    """A :data:`Timer` over ``feeds``, sessions made with deployment options (``threads``).

    The session of a reference model (the float model, the full int8 model) is made once and
    reused for every variant timed against it.
    """
    references: dict[int, tuple[Model, ort.InferenceSession]] = {}

    def timer(reference: Model, variant: Model) -> PairedLatency:
        held = references.get(id(reference))
        if held is None or held[0] is not reference:
            held = references[id(reference)] = (reference, make_session(reference, threads=threads))
        ref_session, session = held[1], make_session(variant, threads=threads)
        return time_paired(lambda: run(ref_session, feeds), lambda: run(session, feeds), batch=1, threads=threads,
                           rounds=rounds, seed=seed)
    return timer


def _measurement(m: PairedLatency) -> dict[str, Any]:
    return {
        "reference_ms": round(m.reference.median_ms, 4), "variant_ms": round(m.variant.median_ms, 4),
        "speed": round(m.speed, 4), "interval": [round(m.low, 4), round(min(m.high, 1e9), 4)],
        "verdict": speed_verdict(m.low, m.high, m.speed),
    }


def _excluding(config: StaticInt8, labels: Sequence[str]) -> StaticInt8:
    exclude = dataclasses.replace(config.exclude, names=(*config.exclude.names, *labels))
    return dataclasses.replace(config, exclude=exclude, measure=False)


class _Search:
    """One latency search: the method, its inputs, and the timer."""

    def __init__(self, method: Method, model: Model, config: StaticInt8, stats: TensorStats | None, timer: Timer):
        self.method, self.model, self.stats, self.timer = method, model, stats, timer
        self.quiet = dataclasses.replace(config, measure=False)

    def variant(self, labels: Sequence[str]) -> tuple[QuantPlan, Model]:
        config = _excluding(self.quiet, labels) if labels else self.quiet
        plan = self.method.plan(self.model, config, self.stats)
        return plan, self.method.apply(self.model, config, plan)

    def regions(self, plan: QuantPlan, full: Model, whole: PairedLatency) -> tuple[list[dict[str, Any]], list[Region]]:
        """Each region timed kept float against ``full``; the records and the regions that lose in int8."""
        graph = self.model.ir.graph
        regions = find_regions(graph, plan.decisions)
        records: list[dict[str, Any]] = []
        losing: list[Region] = []
        start = time.perf_counter()
        for region in regions:
            record: dict[str, Any] = {"region": region.index, "nodes": len(region.nodes), "op_types": region.op_types(graph)}
            records.append(record)
            why = self._untimed(len(regions), region, whole, start)
            if why:
                record.update(decision="int8", reason=why)
                continue
            try:
                _, kept_float = self.variant(region.nodes)
            except QuantscopeError as exc:  # e.g. nothing left to quantize: keep the planner's decision
                record.update(decision="int8", reason=f"not timed: {exc}")
                continue
            m = self.timer(full, kept_float)
            loses = speed_verdict(m.low, m.high, m.speed) == "faster"
            record.update(
                int8_ms=round(m.reference.median_ms, 4), float_ms=round(m.variant.median_ms, 4),
                speed=round(1 / m.speed, 4) if m.speed else None, decision="float" if loses else "int8",
                reason=("the model is measurably faster with this region float" if loses
                        else "not measurably slower in int8"),
            )
            if loses:
                losing.append(region)
        return records, losing

    @staticmethod
    def _untimed(count: int, region: Region, whole: PairedLatency, start: float) -> str | None:
        if count == 1:
            return "the only region: timed as the whole model against float"
        if region.index >= MAX_REGIONS:
            return f"not timed: only the {MAX_REGIONS} largest regions are"
        if time.perf_counter() - start > BUDGET_S:
            return f"not timed: region timing stopped after {BUDGET_S:.0f} s"
        return None


def _kept_float(plan: QuantPlan, losing: list[Region], records: list[dict[str, Any]]) -> QuantPlan:
    """``plan`` with the reasons of the nodes of losing regions saying why they are float."""
    reason_of: dict[str, str] = {}
    for region in losing:
        rec = records[region.index]
        text = (f"kept float for speed: region {region.index} ({rec['nodes']} node(s)) measured "
                f"{rec['float_ms']:.3f} ms float vs {rec['int8_ms']:.3f} ms int8 (model time, this machine)")
        reason_of.update(dict.fromkeys(region.nodes, text))
    decisions = tuple(
        dataclasses.replace(d, reason=reason_of[d.node]) if d.node in reason_of else d for d in plan.decisions
    )
    return dataclasses.replace(plan, decisions=decisions)


def _with_extra(plan: QuantPlan, **extra: Any) -> QuantPlan:
    return dataclasses.replace(plan, extra={**plan.extra, **extra})


def choose_regions(
    method: Method, model: Model, config: StaticInt8, stats: TensorStats | None, plan: QuantPlan,
    *, timer: Timer | None = None,
) -> QuantPlan:
    """``plan`` with the regions that are slower in int8 on this machine kept float (``objective="speed"``).

    Records ``extra["latency"]`` (the chosen model against float) and ``extra["regions"]``. Never
    returns a plan without quantized nodes: when int8 loses everywhere, the faster int8 variant is
    kept and a warning says the float model is faster here.
    """
    if config.objective != "speed" or not config.measure:
        why = "--no-measure" if config.objective == "speed" else f"objective {config.objective!r}"
        return _with_extra(plan, latency={"measured": False, "reason": why})
    feeds = synthetic_feeds(model, seed=config.seed)
    search = _Search(method, model, config, stats, timer or paired_timer(feeds, threads=config.target_threads, seed=config.seed))
    try:
        if timer is None and measure_latency(model, feeds, threads=config.target_threads, runs=15).median_ms < MIN_FLOAT_MS:
            return _with_extra(plan, latency={"measured": False, "reason": TOO_FAST})
        timer = search.timer
        full = method.apply(model, search.quiet, plan)
        whole = timer(model, full)
    except QuantscopeError as exc:
        logger.warning("static-int8: latency not measured (%s)", exc)
        return _with_extra(plan, latency={"measured": False, "reason": str(exc)})
    records, losing = search.regions(plan, full, whole)
    chosen, final = plan, whole
    if losing and len(losing) < len(records):
        labels = [label for region in losing for label in region.nodes]
        candidate, written = search.variant(labels)
        measured = timer(model, written)
        if measured.speed >= whole.speed:
            chosen, final = _kept_float(candidate, losing, records), measured
        else:
            for region in losing:
                records[region.index].update(decision="int8", reason="kept int8: the selection was not faster overall")
    latency = {
        "measured": True, "batch": 1, "threads": config.target_threads,
        "inputs": {k: list(v.shape) for k, v in feeds.items()},
        "float_ms": round(final.reference.median_ms, 4), "int8_ms": round(final.variant.median_ms, 4),
        **{k: v for k, v in _measurement(final).items() if k in ("speed", "interval", "verdict")},
        "reference": "the prepared float model (its rewrites, e.g. folded BatchNorm, may make it faster than the original)",
        "note": "timed on the machine that quantized; another CPU may decide other regions",
    }
    chosen = _with_extra(chosen, latency=latency, regions=records)
    if latency["verdict"] == "slower":
        warning = (f"static-int8 ran {final.speed:.2f}x the speed of float on this machine (batch 1, "
                   f"{config.target_threads} thread(s)): the float model is the faster choice here")
        chosen = dataclasses.replace(chosen, warnings=(*chosen.warnings, warning))
    return chosen
