"""Packing ``b``-bit codes (``1 <= b <= 8``) into bytes, and back.

Layout: one little-endian bit stream. Code ``i`` occupies stream bits
``[i*b, (i+1)*b)``, least significant bit first; stream bit ``j`` is bit ``j % 8`` (value
``1 << (j % 8)``) of byte ``j // 8``. The stream is padded with zero bits to a whole byte,
so ``n`` codes take exactly ``ceil(n * b / 8)`` bytes (:func:`packed_size`).

For ``b`` in {1, 2, 4, 8} no code straddles a byte: byte ``k`` holds codes
``k*(8/b) .. k*(8/b) + 8/b - 1`` at shifts ``0, b, 2b, ...``. For ``b`` in {3, 5, 6, 7}
codes straddle bytes; the layout is the same stream. :mod:`quantscope.graph.expand`
unpacks exactly this layout with ONNX operators.
"""

from __future__ import annotations

import numpy as np

from quantscope.errors import ConfigError

__all__ = ["check_bits", "pack_bits", "packed_size", "unpack_bits"]


_PACK_CODES = 8 * 2**20  # codes packed at a time (a multiple of 8)


def check_bits(bits: int) -> int:
    if isinstance(bits, bool) or not isinstance(bits, int | np.integer) or not 1 <= bits <= 8:
        raise ConfigError(f"bits={bits!r} is not valid; codes are packed with 1 to 8 bits")
    return int(bits)


def packed_size(n: int, bits: int) -> int:
    """Bytes that ``n`` codes of ``bits`` bits take: ``ceil(n * bits / 8)``."""
    bits = check_bits(bits)
    if n < 0:
        raise ConfigError(f"code count must be >= 0, got {n}")
    return (n * bits + 7) // 8


def pack_bits(codes: np.ndarray, bits: int) -> np.ndarray:
    """Pack the flattened ``codes`` (integers in ``[0, 2**bits)``) into a 1-D uint8 array."""
    bits = check_bits(bits)
    flat = np.asarray(codes).reshape(-1)
    if flat.size and flat.dtype.kind not in "iu":
        raise ConfigError(f"codes must be integers, got dtype {flat.dtype}")
    if flat.size and (flat.min() < 0 or flat.max() >= (1 << bits)):
        raise ConfigError(
            f"codes must lie in [0, {(1 << bits) - 1}] for {bits}-bit packing, "
            f"got [{flat.min()}, {flat.max()}]"
        )
    if bits == 8:
        return flat.astype(np.uint8)  # a copy
    out = np.empty(packed_size(flat.size, bits), dtype=np.uint8)
    shifts = np.arange(bits, dtype=np.uint8)
    # a whole number of bytes at a time (8 codes take ``bits`` bytes): the bit stream stays small
    step = _PACK_CODES
    for start in range(0, flat.size, step):
        part = flat[start:start + step].astype(np.uint8)
        stream = (part[:, None] >> shifts) & np.uint8(1)
        first = start * bits // 8
        packed = np.packbits(stream.reshape(-1), bitorder="little")
        out[first:first + packed.size] = packed
    return out


def unpack_bits(packed: np.ndarray, bits: int, n: int) -> np.ndarray:
    """The first ``n`` codes of ``packed`` (from :func:`pack_bits`) as a 1-D uint8 array."""
    bits = check_bits(bits)
    packed = np.asarray(packed)
    if packed.dtype != np.uint8 or packed.ndim != 1:
        raise ConfigError(
            f"packed codes must be a 1-D uint8 array, got {packed.dtype} {packed.shape}"
        )
    if packed.size < packed_size(n, bits):
        raise ConfigError(
            f"{packed.size} bytes hold fewer than {n} codes of {bits} bits "
            f"({packed_size(n, bits)} bytes needed)"
        )
    if bits == 8:
        return packed[:n].copy()
    stream = np.unpackbits(packed, count=n * bits, bitorder="little").reshape(n, bits)
    weights = (1 << np.arange(bits)).astype(np.uint8)
    return (stream * weights).sum(axis=1, dtype=np.uint8)
