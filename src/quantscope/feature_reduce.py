"""Per-feature statistics reduced inside ONNX Runtime, so a tensor never leaves it whole.

SmoothQuant and bias correction read, per feature (the last axis, as a MatMul reads it), the
minimum, maximum, sum and sum of squares over every other axis. Fetching each such tensor whole
and reducing it in NumPy costs a copy of every activation per batch; here the copy of the model
computes ``Flatten(x, axis=rank-1)`` then ``ReduceMin``/``ReduceMax``/``ReduceSum`` over axis 0
(the sum of squares as ``ReduceSum(Mul(x, x))``: ONNX Runtime's ``ReduceSumSquare`` over a
leading axis runs about 7 times slower on [2560, 1536], one thread) right after the tensor's
producer, and only ``[features]``
vectors and the element count come out. Tensors of unknown rank, inside If/Loop/Scan bodies, of
a non-float type or asked for other statistics (``gram``, ``channel_mean``) are left to be
fetched whole.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np
import onnx_ir as ir

from quantscope.graph.build import NameAllocator
from quantscope.model_io import Model
from quantscope.runtime import REDUCED_AS

REDUCIBLE_KINDS = frozenset({"min", "max", "absmax", "sumsq", "mean"})
_OPS = {"min": "ReduceMin", "max": "ReduceMax", "sum": "ReduceSum", "sumsq": "ReduceSum"}  # sumsq: of Mul(x, x)
_AXES_INPUT_SINCE = {"ReduceSum": 13, "ReduceMin": 18, "ReduceMax": 18}

class FeatureOutputs(NamedTuple):
    """The graph outputs of one tensor's reductions."""

    stats: dict[str, str]  # by statistic: "min", "max", "sum", "sumsq"
    size: str  # the element count
    ndim: int  # the tensor's rank


def reducible(value: ir.Value | None, kinds: tuple[str, ...]) -> bool:
    """Whether ``value``'s statistics ``kinds`` can all be reduced in the graph."""
    return (value is not None and value.dtype in REDUCED_AS and value.shape is not None and len(value.shape) >= 1
            and set(kinds) <= REDUCIBLE_KINDS)


def _statistics(kinds: tuple[str, ...]) -> list[str]:
    wanted = set(kinds)
    out = ["min", "max"] if wanted & {"min", "max", "absmax"} else []
    return out + (["sum"] if "mean" in wanted else []) + (["sumsq"] if "sumsq" in wanted else [])


class _Adder:
    """Makes named, typed nodes for one tensor's reductions, collecting them in order."""

    def __init__(self, fresh: NameAllocator, nodes: list[ir.Node], base: str) -> None:
        self.fresh, self.nodes, self.base = fresh, nodes, base

    def __call__(self, op: str, inputs: list[ir.Value], dtype: ir.DataType,
                 attributes: dict[str, object] | None = None) -> ir.Value:
        node = ir.node(op, inputs, attributes, name=self.fresh(f"{self.base}/qs_feature_{op}"))
        node.outputs[0].name, node.outputs[0].dtype = self.fresh(f"{self.base}/qs_feature_{op.lower()}"), dtype
        self.nodes.append(node)
        return node.outputs[0]


def add_feature_reductions(clone: ir.Model, opset: int, wanted: Mapping[str, tuple[str, ...]]) -> dict[str, FeatureOutputs]:
    """Add the reductions of ``wanted`` ({tensor: kinds}, main-graph tensors that are
    :func:`reducible`) to ``clone`` in place, as graph outputs. Returns {tensor: its outputs}."""
    main = clone.graph
    by_name = {out.name: out for node in main for out in node.outputs if out.name}
    by_name.update({v.name: v for v in main.inputs if v.name})
    fresh = NameAllocator(main)
    axis0: ir.Value | None = None
    done: dict[str, FeatureOutputs] = {}
    for name, kinds in wanted.items():
        value = by_name.get(name)
        if not reducible(value, kinds):
            continue
        assert value is not None and value.shape is not None
        rank = len(value.shape)
        nodes: list[ir.Node] = []
        add = _Adder(fresh, nodes, name)
        source, dtype = value, value.dtype
        if REDUCED_AS[value.dtype] is not None:
            dtype = REDUCED_AS[value.dtype]
            source = add("Cast", [value], dtype, {"to": dtype})
        flat = add("Flatten", [source], dtype, {"axis": max(rank - 1, 0)}) if rank != 2 else source
        stats: dict[str, str] = {}
        for stat in _statistics(kinds):
            op = _OPS[stat]
            operand = add("Mul", [flat, flat], dtype) if stat == "sumsq" else flat
            if opset >= _AXES_INPUT_SINCE[op]:
                if axis0 is None:
                    axis0 = ir.Value(name=fresh("qs_feature_axis0"), const_value=ir.tensor(np.array([0], np.int64)))
                    main.register_initializer(axis0)
                out = add(op, [operand, axis0], dtype, {"keepdims": 0})
            else:
                out = add(op, [operand], dtype, {"keepdims": 0, "axes": [0]})
            stats[stat] = out.name or ""
        size = add("Size", [value], ir.DataType.INT64).name or ""
        producer = value.producer()
        if producer is not None and producer.graph is main:  # right after the producer: the tensor is freed early
            main.insert_after(producer, nodes)
        else:
            main.extend(nodes)
        wanted_outputs = {*stats.values(), size}
        main.outputs.extend(n.outputs[0] for n in nodes if n.outputs[0].name in wanted_outputs)
        done[name] = FeatureOutputs(stats, size, rank)
    return done


def with_feature_reductions(model: Model, wanted: Mapping[str, tuple[str, ...]]) -> tuple[Model, dict[str, FeatureOutputs]]:
    """A copy of ``model`` with :func:`add_feature_reductions`; the caller's model is untouched."""
    clone = model.ir.clone()
    done = add_feature_reductions(clone, model.opset, wanted)
    return Model(ir=clone, path=None, fingerprint=model.fingerprint), done
