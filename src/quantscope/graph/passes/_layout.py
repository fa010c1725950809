"""Permutations of a ``Transpose`` node, for the passes that move or remove layout Transposes."""

from __future__ import annotations

from collections.abc import Sequence

import onnx_ir as ir

from quantscope.graph.passes._conv import is_standard

Perm = tuple[int, ...]


def transpose_perm(node: ir.Node) -> Perm | None:
    """The permutation of a standard ``Transpose`` (its default, the reversed axes, when the input's
    rank is known), else None."""
    if not is_standard(node, "Transpose") or not node.inputs or node.inputs[0] is None:
        return None
    attr = node.attributes.get("perm")
    if attr is not None:
        perm = tuple(int(a) for a in attr.as_ints())
        return perm if sorted(perm) == list(range(len(perm))) else None
    shape = node.inputs[0].shape
    return None if shape is None else tuple(reversed(range(len(shape))))


def inverse(perm: Sequence[int]) -> Perm:
    """The permutation that undoes ``perm``: ``inverse(p)[p[i]] == i``."""
    inv = [0] * len(perm)
    for i, axis in enumerate(perm):
        inv[axis] = i
    return tuple(inv)


def compose(first: Sequence[int], second: Sequence[int]) -> Perm:
    """One permutation for ``Transpose(first)`` followed by ``Transpose(second)``."""
    return tuple(first[axis] for axis in second)


def is_identity(perm: Sequence[int]) -> bool:
    return all(axis == i for i, axis in enumerate(perm))


def permuted_shape(shape: ir.Shape | None, perm: Sequence[int]) -> ir.Shape | None:
    """``shape`` as ``Transpose(perm)`` leaves it (None when unknown or of another rank)."""
    if shape is None or len(shape) != len(perm):
        return None
    return ir.Shape([shape[axis] for axis in perm])
