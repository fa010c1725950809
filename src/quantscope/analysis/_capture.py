"""Sessions that also return intermediate tensors, for per-layer error and operation counts."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import onnx_ir as ir
import onnxruntime as ort

from quantscope.io import Model, infer_shapes
from quantscope.runtime import Optimization, make_session, run, with_outputs


def typed(model: Model) -> Model:
    """A copy of ``model`` with ONNX shape inference applied, so intermediate values have types."""
    proto = infer_shapes(model.to_proto())
    return Model(ir=ir.from_proto(proto), path=model.path, fingerprint=model.fingerprint, notes=model.notes)


class Capture:
    """One session over ``model`` whose outputs are the graph outputs plus the named tensors.

    Tensors without an inferred element type cannot be exposed and are left out of
    :attr:`names`. ``optimization="none"`` runs the graph as written (no fusion), so a tensor
    holds exactly what the model file says it holds.
    """

    def __init__(self, model: Model, names: Iterable[str], *, optimization: Optimization = "none",
                 threads: int | None = None) -> None:
        exposed = with_outputs(model, names)
        self.session: ort.InferenceSession = make_session(exposed, optimization=optimization, threads=threads)
        self.names: list[str] = [o.name for o in self.session.get_outputs()]

    def __call__(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.names, run(self.session, feeds), strict=True))


def node_outputs(model: Model) -> list[str]:
    """Names of every node output of the main graph, in graph order."""
    return [out.name for node in model.ir.graph for out in node.outputs if out.name]
