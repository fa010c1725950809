"""Parts of a static-int8 region (node kinds, stretches in graph order) that the latency search times."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from quantscope.methods.static_int8.parts import conv_kind, kinds, parts, stretches
from quantscope.methods.static_int8.regions import Region


def _conv(graph: ir.Graph, x: ir.Value, shape: tuple[int, ...], name: str, group: int = 1) -> ir.Value:
    w = ir.Value(name=f"w_{name}", shape=ir.Shape(shape), type=ir.TensorType(ir.DataType.FLOAT),
                 const_value=ir.tensor(np.zeros(shape, np.float32), name=f"w_{name}"))
    graph.register_initializer(w)
    node = ir.node("Conv", [x, w], attributes={"group": group}, name=name)
    graph.append(node)
    return node.outputs[0]


@pytest.mark.parametrize(("shape", "group", "kind"), [
    ((16, 1, 3, 3), 16, "depthwise"), ((16, 4, 3, 3), 4, "grouped"), ((16, 8, 1, 1), 1, "pointwise"),
    ((16, 3, 3, 3), 1, "few input channels"), ((16, 8, 3, 3), 1, "spatial"),
])
def test_convolutions_are_told_apart_by_their_weight(shape: tuple[int, ...], group: int, kind: str) -> None:
    graph = ir.Graph([], [], nodes=[])
    x = ir.Value(name="x", type=ir.TensorType(ir.DataType.FLOAT))
    graph.inputs.append(x)
    _conv(graph, x, shape, "c", group)
    assert conv_kind(next(iter(graph))) == kind


def _chain(count: int) -> tuple[ir.Graph, Region]:
    """``count`` pointwise convs, each also adding its input back (a residual every other node)."""
    graph = ir.Graph([], [], nodes=[])
    x = ir.Value(name="x", type=ir.TensorType(ir.DataType.FLOAT))
    graph.inputs.append(x)
    labels = []
    for i in range(count):
        y = _conv(graph, x, (8, 8, 1, 1) if i % 2 else (8, 8, 3, 3), f"c{i}")
        labels.append(f"c{i}")
        if i % 2:
            add = ir.node("Add", [x, y], name=f"a{i}")
            graph.append(add)
            labels.append(f"a{i}")
            y = add.outputs[0]
        x = y
    graph.outputs.append(x)
    return graph, Region(0, tuple(labels))


def test_kinds_group_a_region_by_kind_largest_first() -> None:
    graph, region = _chain(6)
    found = kinds(graph, region)
    assert [len(p.nodes) for p in found] == [3, 3, 3]
    assert {p.name.split(" (")[0] for p in found} == {"every Conv/spatial", "every Conv/pointwise", "every Add"}


def test_a_kind_that_is_the_whole_region_is_not_a_part() -> None:
    graph, _ = _chain(6)
    convs = Region(0, tuple(n.name for n in graph if n.op_type == "Conv" and conv_kind(n) == "spatial"))
    assert kinds(graph, convs) == []


def test_stretches_cover_the_region_in_order_and_cut_where_one_tensor_crosses() -> None:
    graph, region = _chain(32)
    found = stretches(graph, region)
    assert 2 <= len(found) <= 8
    assert [label for p in found for label in p.nodes] == list(region.nodes)
    # a skip connection spans each conv -> add pair: no stretch may start on an Add (two tensors cross there)
    assert all(not p.nodes[0].startswith("a") for p in found)


def test_a_small_region_has_no_stretches_and_parts_lists_kinds_first() -> None:
    graph, region = _chain(2)
    assert stretches(graph, region) == []
    graph, region = _chain(32)
    names = [p.name for p in parts(graph, region)]
    assert names[0].startswith("every") and names[-1].startswith("stretch")
