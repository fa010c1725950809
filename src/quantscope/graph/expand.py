"""ONNX operators that expand packed codes + a codebook into a float weight.

The layout is the one of :mod:`quantscope.numerics.packing` (a little-endian bit stream).
Only standard operators of opset 13 are used, and no ``BitwiseAnd`` (opset 18): the field
of ``b`` bits at shift ``s`` of a byte ``x`` is ``(x << (8 - s - b)) >> (8 - b)`` in uint8
(the left shift drops the higher bits), so two ``BitShift`` nodes replace shift-and-mask.

* ``b`` in {1, 2, 4}: ``Reshape [bytes, 1] → BitShift LEFT [1, 8/b] → BitShift RIGHT →
  Reshape [-1] → Slice [:n] → Cast int32``;
* ``b`` = 8: ``Cast int32`` (each byte is a code);
* ``b`` in {3, 5, 6, 7}: the bytes are split into bits (the same two shifts with ``b = 1``),
  ``Slice [:n*b] → Reshape [n, b] → BitShift LEFT [0..b-1] → Cast int32 → ReduceSum``;

then the codes index the codebook: ``Reshape`` to the weight's shape with the output
channels first, per channel ``Add`` the channel's offset into the flattened codebooks
(``Range(0, C*K, K)``), ``Gather``, and ``Transpose`` the channels back into place when they
are not the first axis. A per-channel codebook that is a scale times shared levels (ternary
``α·[-1, 0, 1]``, binary ``α·[-1, 1]``) is stored as the ``C`` scales and ``K`` levels and
rebuilt by one ``Mul``.

Every input of these nodes is a constant, so ONNX Runtime's constant folding (on at its
"basic" optimization level and above) runs them once when the session is created and
keeps only the float weight; with optimizations disabled they would run on every call.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from quantscope.graph.build import NameAllocator, initializer, node
from quantscope.numerics.lowbit import CodedTensor
from quantscope.numerics.packing import check_bits, pack_bits

__all__ = ["expand_coded_weight", "unpack_nodes"]


class _Builder:
    """Nodes and constants of one expansion, named after ``base``."""

    def __init__(self, graph: ir.Graph, names: NameAllocator, base: str) -> None:
        self.graph = graph
        self.names = names
        self.base = base
        self.nodes: list[ir.Node] = []

    def const(self, suffix: str, array: np.ndarray) -> ir.Value:
        return initializer(self.graph, self.names, f"{self.base}_{suffix}", array)

    def op(
        self,
        op_type: str,
        inputs: list[ir.Value],
        dtype: ir.DataType,
        shape: tuple[int, ...],
        **attrs: int | str | list[int],
    ) -> ir.Value:
        created = node(
            self.names, op_type, inputs, base=self.base, attributes=attrs,
            outputs=[f"{self.base}_{op_type.lower()}"], dtypes=[dtype], shapes=[shape],
        )
        self.nodes.append(created)
        return created.outputs[0]

    def shape(self, suffix: str, dims: tuple[int, ...] | list[int]) -> ir.Value:
        return self.const(suffix, np.asarray(dims, dtype=np.int64))


def _unpack(b: _Builder, packed: ir.Value, nbytes: int, n: int, bits: int) -> ir.Value:
    """int32 codes ``[n]`` from the packed uint8 bytes ``[nbytes]``."""
    u8, i32 = ir.DataType.UINT8, ir.DataType.INT32
    if bits == 8:
        flat = packed
        if nbytes != n:
            flat = b.op("Slice", [packed, b.shape("start", [0]), b.shape("end", [n])], u8, (n,))
        return b.op("Cast", [flat], i32, (n,), to=int(i32))

    def fields(width: int) -> ir.Value:
        """Every ``width``-bit field of every byte, byte-major, low bits first: ``[nbytes * 8/width]``."""
        per = 8 // width
        column = b.op("Reshape", [packed, b.shape("column_shape", [nbytes, 1])], u8, (nbytes, 1))
        left = np.array([[8 - (j + 1) * width for j in range(per)]], dtype=np.uint8)
        up = b.op(
            "BitShift", [column, b.const("shift_left", left)], u8, (nbytes, per), direction="LEFT"
        )
        down = b.op(
            "BitShift",
            [up, b.const("shift_right", np.array(8 - width, dtype=np.uint8))],
            u8,
            (nbytes, per),
            direction="RIGHT",
        )
        return b.op("Reshape", [down, b.shape("flat_shape", [-1])], u8, (nbytes * per,))

    if 8 % bits == 0:
        codes = fields(bits)
        if nbytes * (8 // bits) != n:
            codes = b.op("Slice", [codes, b.shape("start", [0]), b.shape("end", [n])], u8, (n,))
        return b.op("Cast", [codes], i32, (n,), to=int(i32))
    stream = fields(1)
    stream = b.op(
        "Slice", [stream, b.shape("start", [0]), b.shape("end", [n * bits])], u8, (n * bits,)
    )
    matrix = b.op("Reshape", [stream, b.shape("code_bits_shape", [n, bits])], u8, (n, bits))
    weights = b.const("bit_weights", np.arange(bits, dtype=np.uint8))
    weighted = b.op("BitShift", [matrix, weights], u8, (n, bits), direction="LEFT")
    wide = b.op("Cast", [weighted], i32, (n, bits), to=int(i32))
    return b.op("ReduceSum", [wide, b.shape("axes", [1])], i32, (n,), keepdims=0)


def unpack_nodes(
    graph: ir.Graph,
    names: NameAllocator,
    packed: ir.Value,
    nbytes: int,
    n: int,
    bits: int,
    base: str,
) -> tuple[list[ir.Node], ir.Value]:
    """Nodes (not yet inserted) turning ``packed`` (uint8 ``[nbytes]``) into int32 codes ``[n]``.

    Their constants are registered as initializers of ``graph``.
    """
    bits = check_bits(bits)
    b = _Builder(graph, names, base)
    out = _unpack(b, packed, nbytes, n, bits)
    return b.nodes, out


def expand_coded_weight(
    graph: ir.Graph, names: NameAllocator, coded: CodedTensor, base: str
) -> tuple[list[ir.Node], ir.Value, dict[str, int]]:
    """Store ``coded`` as packed codes + codebook; return the expanding nodes, the float weight and byte counts.

    The nodes are not inserted; the caller places them before the weight's first consumer.
    """
    b = _Builder(graph, names, base)
    shape = tuple(int(d) for d in coded.codes.shape)
    n = int(coded.codes.size)
    axis = coded.axis
    ordered = coded.codes if axis is None else np.moveaxis(coded.codes, axis, 0)
    ordered_shape = tuple(int(d) for d in ordered.shape)
    packed_array = pack_bits(np.ascontiguousarray(ordered), coded.bits)
    packed = b.const(f"packed{coded.bits}", packed_array)
    f32, i32 = ir.DataType.FLOAT, ir.DataType.INT32
    table_size = int(coded.codebook.size)
    if coded.scale is not None and coded.levels is not None:
        # a scale per channel times shared levels: store C + K floats, multiply at load
        scale = b.const("scale", coded.scale.reshape(-1, 1))
        levels = b.const("levels", coded.levels.reshape(1, -1))
        table = b.op("Mul", [scale, levels], f32, tuple(coded.codebook.shape))
        codebook = b.op("Reshape", [table, b.shape("codebook_shape", [-1])], f32, (table_size,))
        codebook_bytes = int(coded.scale.nbytes + coded.levels.nbytes)
    else:
        codebook = b.const(
            "codebook", np.ascontiguousarray(coded.codebook, dtype=np.float32).reshape(-1)
        )
        codebook_bytes = int(coded.codebook.nbytes)
    codes = _unpack(b, packed, int(packed_array.size), n, coded.bits)
    index = b.op("Reshape", [codes, b.shape("weight_shape", ordered_shape)], i32, ordered_shape)
    if axis is not None:
        # channel c reads entries [c*K, (c+1)*K) of the flattened per-channel codebooks
        channels, k = (int(d) for d in coded.codebook.shape)
        limits = [
            b.const(name, np.array(v, dtype=np.int32))
            for name, v in (("zero", 0), ("end", channels * k), ("k", k))
        ]
        starts = b.op("Range", limits, i32, (channels,))
        column = [channels, *([1] * (len(shape) - 1))]
        offsets = b.op("Reshape", [starts, b.shape("offsets_shape", column)], i32, tuple(column))
        index = b.op("Add", [index, offsets], i32, ordered_shape)
    weight = b.op("Gather", [codebook, index], f32, ordered_shape, axis=0)
    if axis is not None and axis != 0:
        perm = [*range(1, axis + 1), 0, *range(axis + 1, len(shape))]
        weight = b.op("Transpose", [weight], f32, shape, perm=perm)
    sizes = {"packed_bytes": int(packed_array.nbytes), "codebook_bytes": codebook_bytes}
    return b.nodes, weight, sizes
