"""The smallest run of nodes that still crashes ONNX Runtime, for :mod:`quantscope.loadcheck`.

Cut the model (nodes in topological order) into a window ``nodes[start:end]``: tensors made
before the window become graph inputs, tensors the window makes and later nodes (or the graph's
outputs) read become graph outputs, so a fusion inside the window sees the same neighbours it
sees in the whole model. A binary search finds the smallest ``end`` whose prefix still crashes,
a second the largest ``start``; the nodes of that window the last one depends on are the pattern.
Each test of a window is one child process (the caller's ``crashes``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import onnx
from onnx import helper

logger = logging.getLogger(__name__)


class _Cutter:
    """Makes window models of one (shape-inferred) model."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.model = model
        graph = model.graph
        self.nodes = list(graph.node)
        self.types = {v.name: v for v in (*graph.input, *graph.value_info, *graph.output)}
        self.inits = {t.name: t for t in graph.initializer}
        self.graph_outputs = [o.name for o in graph.output]

    def window(self, start: int, end: int) -> onnx.ModelProto | None:
        part = self.nodes[start:end]
        made = {o for n in part for o in n.output if o}
        later = {i for n in self.nodes[end:] for i in n.input} | set(self.graph_outputs)
        feeds = list(dict.fromkeys(i for n in part for i in n.input if i and i not in made and i not in self.inits))
        outs = [o for n in part for o in n.output if o and o in later] or [o for o in part[-1].output if o]
        if any(name not in self.types for name in (*feeds, *outs)):
            return None  # a tensor without a known type cannot become a graph input or output
        used = {i for n in part for i in n.input}
        graph = helper.make_graph(
            part, "window", [self.types[f] for f in feeds], [self.types[o] for o in outs],
            [t for name, t in self.inits.items() if name in used],
        )
        window = helper.make_model(graph, opset_imports=self.model.opset_import)
        window.ir_version = self.model.ir_version
        return window

    def pattern(self, start: int, end: int) -> tuple[str, ...]:
        """The nodes of ``nodes[start:end]`` that the last one depends on, in order."""
        producer = {o: i for i in range(start, end) for o in self.nodes[i].output if o}
        keep, stack = {end - 1}, list(self.nodes[end - 1].input)
        while stack:
            i = producer.get(stack.pop())
            if i is not None and i not in keep:
                keep.add(i)
                stack.extend(self.nodes[i].input)
        return tuple(self.nodes[i].name or f"{self.nodes[i].op_type}#{i}" for i in sorted(keep))


def crash_window(
    model: onnx.ModelProto, crashes: Callable[[onnx.ModelProto], bool], *, max_runs: int = 40
) -> tuple[str, ...]:
    """Names of the nodes of the smallest crashing window, or () when none is found within
    ``max_runs`` tests (models with subgraphs or untyped tensors are not cut)."""
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for n in model.graph.node for a in n.attribute):
        return ()
    try:
        model = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception as exc:  # inference is a help: without types no window can be cut
        logger.debug("crash window: shape inference failed: %s", exc)
        return ()
    cutter = _Cutter(model)
    runs = 0

    def test(start: int, end: int) -> bool:
        nonlocal runs
        window = cutter.window(start, end)
        if window is None or runs >= max_runs:
            return False
        runs += 1
        return crashes(window)

    n = len(cutter.nodes)
    if n == 0 or not test(0, n):
        return ()
    lo, hi = 1, n  # smallest end whose prefix crashes
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if test(0, mid) else (mid + 1, hi)
    end = lo
    lo, hi = 0, end - 1  # largest start whose window still crashes
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if test(mid, end) else (lo, mid - 1)
    if runs >= max_runs:
        return ()  # the search stopped early: its window is not known to crash
    return cutter.pattern(lo, end)


__all__ = ["crash_window"]
