"""What every prepare pass shares: an in-place rewrite of the main graph that notes each change."""

from __future__ import annotations

import abc
import logging
from typing import ClassVar

import onnx_ir as ir

from quantscope.graph.build import NameAllocator

logger = logging.getLogger(__name__)


class RewritePass(ir.passes.InPlacePass):
    """An in-place pass over the main graph; ``notes`` lists every rewrite it made, one line each.

    ``summary`` (with ``{n}`` for the count) is the one line :func:`quantscope.graph.prepare.prepare`
    reports for the pass when it changed something.
    """

    summary: ClassVar[str] = "{n} rewrite(s)"

    def __init__(self) -> None:
        self.notes: list[str] = []

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        notes = self.rewrite(model.graph, NameAllocator(model.graph))
        for note in notes:
            logger.debug("%s: %s", type(self).__name__, note)
        self.notes.extend(notes)
        return ir.passes.PassResult(model, modified=bool(notes))

    @abc.abstractmethod
    def rewrite(self, graph: ir.Graph, names: NameAllocator) -> list[str]:
        """Edit ``graph`` in place; one note per rewrite."""
