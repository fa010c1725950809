"""Writing float16: retyped tensors, float16 constants and attributes, and the Casts between the two types."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from quantscope.config import Float16
from quantscope.graph import build
from quantscope.graph.queries import node_label
from quantscope.graph.rewrite import cast
from quantscope.io import Model
from quantscope.methods.base import finalize
from quantscope.methods.float16.schema import Switch, all_graphs, all_nodes, switches
from quantscope.model_stream import release_pages
from quantscope.numerics.half import to_float16
from quantscope.spill import spill

F32 = ir.DataType.FLOAT
F16 = ir.DataType.FLOAT16
MIN_WEIGHT_ELEMENTS = 16  # weights-only: smaller float constants (scalars, ε, scales) stay float32
DTYPE_ATTRIBUTE_OPS = ("RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "EyeLike", "Bernoulli")


@dataclass
class Counts:
    clamped_large: int = 0
    raised_tiny: int = 0
    tensors: int = 0

    def add(self, array: np.ndarray) -> np.ndarray:
        conv = to_float16(array)
        self.clamped_large += conv.clamped_large
        self.raised_tiny += conv.raised_tiny
        self.tensors += int(conv.clamped_large + conv.raised_tiny > 0)
        return conv.array


class Writer:
    """Edits one cloned model in place: the float16 tensors, and the Casts between the two types."""

    def __init__(self, model: ir.Model) -> None:
        self.model = model
        self.names = build.NameAllocator(model.graph)
        self.counts = Counts()
        self.weights: list[tuple[str, str, int, int]] = []  # tensor, node, input index, elements
        self._casts: dict[tuple[int, ir.Value, ir.DataType], ir.Value] = {}
        self._halves: dict[ir.Value, ir.Value] = {}

    def cast_to(self, value: ir.Value, dtype: ir.DataType, graph: ir.Graph) -> ir.Value:
        """A Cast of ``value`` in ``graph`` (shared by every use there), placed after its producer."""
        key = (id(graph), value, dtype)
        if key not in self._casts:
            node = cast(self.names, value, dtype, base=f"{value.name or 'value'}_to_{dtype.name.lower()}")
            producer = value.producer()
            if producer is not None and producer.graph is graph:
                graph.insert_after(producer, [node])
            elif len(graph):
                graph.insert_before(graph[0], [node])
            else:
                graph.append(node)
            self._casts[key] = node.outputs[0]
        return self._casts[key]

    def half_initializer(self, value: ir.Value, in_place: bool) -> ir.Value:
        """The float16 version of a float32 initializer: retyped in place, or a new initializer."""
        if value not in self._halves:
            tensor = value.const_value
            assert tensor is not None
            half = self.counts.add(tensor.numpy())
            release_pages(tensor)  # a memory-mapped float32 source: its pages are not needed again
            if in_place:
                value.const_value = build.stored(ir.tensor(half, name=value.name))
                value.type = ir.TensorType(F16)
                self._halves[value] = value
            else:
                owner = value.graph if value.graph is not None else self.model.graph
                self._halves[value] = build.initializer(owner, self.names, f"{value.name}_fp16", half)
        return self._halves[value]

    def fix_attributes(self, node: ir.Node, switch: Switch) -> None:
        """Ops whose output type is an attribute: make the attribute say float16."""
        if 0 not in switch.outputs:
            return
        op = node.op_type
        if op == "Cast":
            node.attributes["to"] = ir.AttrInt64("to", int(F16))
        elif op in DTYPE_ATTRIBUTE_OPS and ("dtype" in node.attributes or op in ("RandomNormal", "RandomUniform")):
            node.attributes["dtype"] = ir.AttrInt64("dtype", int(F16))
        elif op == "ConstantOfShape":
            attr = node.attributes.get("value")
            base = attr.as_tensor().numpy() if attr is not None else np.zeros(1, np.float32)
            node.attributes["value"] = ir.AttrTensor("value", ir.tensor(self.counts.add(base)))
        elif op == "Constant":
            for key in ("value", "value_float", "value_floats"):
                attr = node.attributes.get(key)
                if attr is None:
                    continue
                if key == "value":
                    array = attr.as_tensor().numpy()
                elif key == "value_float":
                    array = np.asarray(attr.as_float(), np.float32)
                else:
                    array = np.asarray(list(attr.as_floats()), np.float32)
                node.attributes.pop(key)
                node.attributes["value"] = ir.AttrTensor("value", ir.tensor(self.counts.add(array)))
                break

    def full(self, switches: dict[ir.Node, Switch]) -> None:
        half: set[ir.Value] = set()
        for node, sw in switches.items():
            for i in sw.outputs:
                out = node.outputs[i]
                out.type = ir.TensorType(F16)
                half.add(out)
            self.fix_attributes(node, sw)
        for node, sw in switches.items():
            graph = node.graph
            assert graph is not None
            for i in sorted(sw.inputs):
                v = node.inputs[i]
                if v is None or v in half or v.dtype == F16:
                    continue
                if v.is_initializer() and v.const_value is not None and not v.is_graph_input():
                    in_place = not v.is_graph_output() and all(
                        u in switches and idx in switches[u].inputs for u, idx in v.uses()
                    )
                    new = self.half_initializer(v, in_place)
                    self.weights.append((v.name or "", node_label(node), i, int(v.const_value.size)))
                else:
                    new = self.cast_to(v, F16, graph)
                if new is not v:
                    node.replace_input_with(i, new)
        for v in half:  # float16 tensors read where float32 is expected
            for user, idx in list(v.uses()):
                if user in switches and idx in switches[user].inputs:
                    continue
                assert user.graph is not None
                user.replace_input_with(idx, self.cast_to(v, F32, user.graph))
        for graph in all_graphs(self.model.graph):
            for k, out in enumerate(list(graph.outputs)):
                if out in half:
                    back = self.cast_to(out, F32, graph)
                    original = out.name
                    out.name = self.names(f"{original}_fp16")
                    back.name = original
                    graph.outputs[k] = back

    def weights_only(self, convert: set[str]) -> None:
        for graph in all_graphs(self.model.graph):
            for name, v in list(graph.initializers.items()):
                tensor = v.const_value
                if tensor is None or v.dtype != F32 or v.is_graph_input() or tensor.size < MIN_WEIGHT_ELEMENTS:
                    continue
                users = [(u, i) for u, i in v.uses() if node_label(u) in convert]
                if not users:
                    continue
                h = build.initializer(graph, self.names, f"{name}_fp16", self.counts.add(tensor.numpy()))
                back = self.cast_to(h, F32, graph)
                back.name = self.names(f"{name}_fp32")
                for u, i in users:
                    u.replace_input_with(i, back)
                    self.weights.append((name, node_label(u), i, int(tensor.size)))


def convert(model: Model, config: Float16, labels: set[str]) -> tuple[ir.Model, Writer, dict[ir.Node, Switch]]:
    """A converted, finalized copy of ``model`` (the nodes ``labels`` in float16), its writer and switches."""
    clone = model.ir.clone()
    writer = Writer(clone)
    switched: dict[ir.Node, Switch] = {}
    with build.storing(spill):  # a large float16 weight goes to a temporary file, not memory
        if config.weights_only:
            writer.weights_only(labels)
        else:
            switched = switches(all_nodes(clone.graph), labels, dict(clone.opset_imports))
            writer.full(switched)
    finalize(clone, config)
    return clone, writer, switched
