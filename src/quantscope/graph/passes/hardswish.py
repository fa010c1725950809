"""Decomposed HardSwish ``x·clip(x + 3, 0, 6) / 6`` → ``x · HardSigmoid(x)`` (alpha 1/6, beta 1/2).

Exporters (Paddle2ONNX, older PyTorch opsets) write HardSwish as four float ops
(``Add → Clip → Mul → Div``). Static-int8 cannot quantize them one by one: the ``Add`` and
``Div`` read constants and each op would need its own Q/DQ. Rewritten, the chain is one
``HardSigmoid`` (a gate with the fixed output range [0, 1]) and one ``Mul`` of two activations,
which ONNX Runtime runs as ``QLinearMul``; the division by 6 is folded into the gate's slope.
"""

from __future__ import annotations

import onnx_ir as ir

from quantscope.graph.build import NameAllocator, node
from quantscope.graph.passes._base import RewritePass
from quantscope.graph.passes._conv import is_standard
from quantscope.graph.queries import const_array, consumers, node_label

TOLERANCE = 1e-6


def _scalar(value: ir.Value | None) -> float | None:
    array = const_array(value)
    return float(array.reshape(-1)[0]) if array is not None and array.size == 1 else None


def _near(value: float | None, target: float) -> bool:
    return value is not None and abs(value - target) <= TOLERANCE * max(1.0, abs(target))


def _sole_producer(value: ir.Value | None, op_type: str) -> ir.Node | None:
    producer = value.producer() if value is not None else None
    if producer is None or not is_standard(producer, op_type) or value is None:
        return None
    if value.is_graph_output() or len(consumers(value)) != 1:
        return None
    return producer


def _other(node: ir.Node, value: ir.Value) -> ir.Value | None:
    """The input of a two-input ``node`` that is not ``value``."""
    a, b = node.inputs[0], node.inputs[1]
    return b if a is value else a if b is value else None


def match(scale_node: ir.Node) -> tuple[ir.Value, list[ir.Node]] | None:
    """``(x, [Add, Clip, Mul, scale_node])`` when ``scale_node`` ends a decomposed HardSwish of ``x``."""
    if is_standard(scale_node, "Div"):
        if not _near(_scalar(scale_node.inputs[1]), 6.0):
            return None
    elif not (is_standard(scale_node, "Mul") and _near(_scalar(scale_node.inputs[1]), 1 / 6)):
        return None
    mul = _sole_producer(scale_node.inputs[0], "Mul")
    if mul is None or len(mul.inputs) != 2:
        return None
    for clipped in mul.inputs:
        clip = _sole_producer(clipped, "Clip")
        if clip is None or len(clip.inputs) < 3:
            continue
        if not (_near(_scalar(clip.inputs[1]), 0.0) and _near(_scalar(clip.inputs[2]), 6.0)):
            continue
        add = _sole_producer(clip.inputs[0], "Add")
        x = _other(mul, clipped) if clipped is not None else None
        if add is None or x is None or const_array(x) is not None:
            continue
        three = _other(add, x)
        if three is not None and _near(_scalar(three), 3.0):
            return x, [add, clip, mul, scale_node]
    return None


class DecomposedHardSwishPass(RewritePass):
    """Every ``Add(x, 3) → Clip(0, 6) → Mul(x, ·) → Div(·, 6)`` of the main graph → ``Mul(x, HardSigmoid(x))``."""

    summary = "rewrote {n} decomposed HardSwish chain(s) as x·HardSigmoid(x) (one integer Mul each)"

    def rewrite(self, graph: ir.Graph, names: NameAllocator) -> list[str]:
        return [note for last in list(graph) if (note := self._replace(graph, names, last))]

    @staticmethod
    def _replace(graph: ir.Graph, names: NameAllocator, last: ir.Node) -> str | None:
        """Rewrite the chain ending at ``last``; the note, or None when it is not one (or already gone)."""
        found = match(last) if last.graph is graph else None
        if found is None or last.outputs[0].is_graph_output():
            return None
        x, chain = found
        base = last.name or "hardswish"
        gate = node(names, "HardSigmoid", [x], base=base, attributes={"alpha": 1 / 6, "beta": 0.5},
                    dtypes=[ir.DataType.FLOAT], shapes=[x.shape])
        product = node(names, "Mul", [x, gate.outputs[0]], base=base, dtypes=[ir.DataType.FLOAT],
                       shapes=[last.outputs[0].shape])
        graph.insert_after(last, [gate, product])
        ir.convenience.replace_all_uses_with(last.outputs[0], product.outputs[0])
        for old in reversed(chain):
            graph.remove(old, safe=True)
        return f"{' → '.join(node_label(n) for n in chain)} became x·HardSigmoid(x)"

__all__ = ["DecomposedHardSwishPass", "match"]
