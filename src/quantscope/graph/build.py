"""Small builders for ``onnx_ir`` graph edits: unique names, initializers, nodes, taking a value's place.

Every graph edit of quantscope goes through these, so that names never collide, initializers
always carry their type and shape, and a replaced graph output keeps the model's output name.
They know nothing about quantization; :mod:`quantscope.graph.qdq` and the methods compose them.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx_ir as ir

__all__ = [
    "NameAllocator",
    "constant",
    "initializer",
    "insert_first",
    "node",
    "replace_uses",
    "take_over",
    "take_over_outputs",
]

ShapeLike = ir.Shape | Sequence[int | str | None]


class NameAllocator:
    """Unique value and node names in one graph and its subgraphs.

    ``names("x")`` returns ``"x"`` when it is free, else ``"x_1"``, ``"x_2"``, ...; every name it
    returns is taken from then on.
    """

    def __init__(self, graph: ir.Graph) -> None:
        self._used: set[str] = set()
        for g in (graph, *graph.subgraphs()):
            self._used.update(g.initializers)
            self._used.update(v.name for v in g.inputs if v.name)
            for n in g:
                if n.name:
                    self._used.add(n.name)
                self._used.update(out.name for out in n.outputs if out.name)

    def __call__(self, base: str) -> str:
        name = base
        i = 1
        while name in self._used:
            name = f"{base}_{i}"
            i += 1
        self._used.add(name)
        return name

    def __contains__(self, name: object) -> bool:
        return name in self._used

    def reserve(self, name: str) -> None:
        """Mark ``name`` as taken (a name made elsewhere that later names must avoid)."""
        self._used.add(name)


_STORE: contextvars.ContextVar[Callable[[ir.TensorProtocol], ir.TensorProtocol] | None] = contextvars.ContextVar(
    "quantscope_tensor_store", default=None
)


@contextlib.contextmanager
def storing(store: Callable[[ir.TensorProtocol], ir.TensorProtocol]) -> Iterator[None]:
    """New initializers made in this block pass through ``store`` (which may keep a large one
    out of memory, see :mod:`quantscope.spill`); graph code itself never touches files."""
    token = _STORE.set(store)
    try:
        yield
    finally:
        _STORE.reset(token)


def stored(tensor: ir.TensorProtocol) -> ir.TensorProtocol:
    """``tensor`` as the current :func:`storing` block keeps it (itself outside one)."""
    store = _STORE.get()
    return tensor if store is None else store(tensor)


def initializer(
    graph: ir.Graph, names: NameAllocator, base: str, array: npt.ArrayLike, *, dtype: ir.DataType | None = None
) -> ir.Value:
    """Register ``array`` as a new initializer of ``graph`` named after ``base``; return its value.

    ``dtype`` stores the array as another ONNX type (e.g. ``INT4`` from an int8 array); by default
    the array's own type. A 0-d array stays a scalar.
    """
    name = names(base)
    tensor = stored(ir.tensor(np.asarray(array, order="C"), dtype=dtype, name=name))
    value = ir.Value(name=name, const_value=tensor, type=ir.TensorType(tensor.dtype), shape=ir.Shape(tensor.shape))
    graph.register_initializer(value)
    return value


def constant(graph: ir.Graph, names: NameAllocator, base: str, value: Any, dtype: npt.DTypeLike) -> ir.Value:
    """An initializer holding ``value`` (a number or a nested list) as ``dtype``: shapes, axes, shifts."""
    return initializer(graph, names, base, np.asarray(value, dtype=dtype))


def node(
    names: NameAllocator,
    op_type: str,
    inputs: Sequence[ir.Value | None],
    *,
    base: str,
    attributes: Iterable[ir.Attr] | Mapping[str, Any] = (),
    dtypes: Sequence[ir.DataType | None] = (),
    shapes: Sequence[ShapeLike | None] = (),
    outputs: Sequence[str] | None = None,
    domain: str = "",
    num_outputs: int = 1,
    name: str | None = None,
) -> ir.Node:
    """A node named ``{base}_{op_type}`` whose outputs get unique names, types and shapes.

    ``outputs`` are the base names of the outputs (default ``{base}_{op_type}``, with ``_{i}`` when
    there are several); ``attributes`` are ``ir.Attr`` objects or a mapping of Python values.
    ``name`` is used as given instead (a node that replaces another keeps that one's name).
    The node is not inserted: use ``graph.insert_before``/``insert_after`` or :func:`insert_first`.
    """
    attrs = ir.convenience.convert_attributes(attributes) if isinstance(attributes, Mapping) else list(attributes)
    node_name = name if name is not None else names(f"{base}_{op_type}")
    created = ir.Node(domain, op_type, list(inputs), attrs, name=node_name, num_outputs=num_outputs)
    for i, out in enumerate(created.outputs):
        if outputs is not None:
            out.name = names(outputs[i])
        else:
            out.name = names(f"{base}_{op_type}" if num_outputs == 1 else f"{base}_{op_type}_{i}")
        if i < len(dtypes) and dtypes[i] is not None:
            out.type = ir.TensorType(dtypes[i])  # type: ignore[arg-type]
        if i < len(shapes) and shapes[i] is not None:
            shape = shapes[i]
            out.shape = shape if isinstance(shape, ir.Shape) else ir.Shape(shape)  # type: ignore[arg-type]
    return created


def insert_first(graph: ir.Graph, nodes: Sequence[ir.Node]) -> None:
    """Insert ``nodes`` at the top of ``graph`` (before its first node), in order."""
    if len(graph):
        graph.insert_before(graph[0], list(nodes))
    else:
        graph.extend(list(nodes))


def replace_uses(old: ir.Value, new: ir.Value, *, keep: Iterable[ir.Node] = ()) -> None:
    """Make every consumer of ``old`` read ``new`` instead, except the nodes in ``keep``.

    Graph outputs are left alone (see :func:`take_over`).
    """
    kept = list(keep)
    for user, index in list(old.uses()):
        if not any(user is k for k in kept):
            user.replace_input_with(index, new)


def take_over(
    names: NameAllocator, old: ir.Value, new: ir.Value, *, suffix: str, keep: Iterable[ir.Node] | None = None
) -> None:
    """``new`` takes ``old``'s place: every use, and its place and name among the graph outputs.

    The nodes in ``keep`` (default: ``new``'s producer, which usually reads ``old``) still read
    ``old``. When ``old`` was a graph output it gets a fresh name ``{name}_{suffix}`` and ``new`` its
    name, so the model's output names never change.
    """
    kept = [new.producer()] if keep is None else list(keep)
    restore = [(user, index) for user, index in old.uses() if any(user is k for k in kept)]
    was_output, original = old.is_graph_output(), old.name
    ir.convenience.replace_all_uses_with(old, new, replace_graph_outputs=True)
    for user, index in restore:
        user.replace_input_with(index, old)
    if was_output and original:
        old.name = names(f"{original}_{suffix}")
        new.name = original


def take_over_outputs(names: NameAllocator, old: ir.Value, new: ir.Value, *, suffix: str) -> None:
    """``new`` takes ``old``'s place and name among the graph outputs only; consumers keep ``old``."""
    take_over(names, old, new, suffix=suffix, keep=[user for user, _ in old.uses()])
