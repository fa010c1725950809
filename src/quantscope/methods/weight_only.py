"""weight-int8 and weight-int4: block-wise weight-only quantization of MatMul and Gemm weights.

Activations stay float; each constant 2-D weight ``W [K, N]`` is quantized in blocks of
``block_size`` values along K (:mod:`quantscope.numerics.blockwise`), one float32 scale and
one integer zero point per block. Two ways to write it:

* ``matmulnbits`` — ONNX Runtime's ``com.microsoft::MatMulNBits`` replaces the MatMul (or
  Gemm: a ``transB=1`` weight is already the ``[N, K]`` layout it wants; a bias ``C`` becomes
  its ``bias`` input, or an ``Add`` when it is not a constant vector). The weight stays packed
  in memory and the kernel dequantizes block by block, so the *run-time* memory shrinks too.
  ``accuracy_level`` is 0: the activations are not quantized, so the result is the float
  product with the dequantized weight (level 4, int8 activations, costs about 1 % relative
  error for a small speed gain on CPUs without VNNI; measured in tests/test_weight_only.py).
* ``qdq`` — a standard opset-21 ``DequantizeLinear`` with ``axis``/``block_size`` (int4/uint4
  or int8/uint8 initializers) feeding the unchanged MatMul or Gemm: any ONNX runtime can read
  it. The model's opset is upgraded to 21 first. ONNX Runtime itself fuses DequantizeLinear +
  MatMul into MatMulNBits, but with its session default ``accuracy_level`` 4
  (``session.qdq_matmulnbits_accuracy_level``): int8 activations, so its outputs differ from the
  dequantized-weight product by about 1 %; DequantizeLinear + Gemm is not fused (the weight is
  expanded to float once at load).
* ``auto`` — MatMulNBits wherever ONNX Runtime has it. On the CPU provider of ONNX Runtime
  1.32 that is every MatMul and Gemm this method rewrites (4 and 8 bits), so ``auto`` writes
  MatMulNBits throughout; ``qdq`` is there for portability.

Speed (MiniLM, 1 thread, this AVX2 machine): 4-bit MatMulNBits runs at about float speed,
8-bit at about half of it (the plan warns); the gain is file size and weight memory.

A block size must divide K of every selected weight: the method refuses (exit code 3, nothing
written) and names the weights and the block sizes that would work, rather than padding K
(which MatMulNBits allows but DequantizeLinear does not) and storing a format that differs by
weight. Exclude such nodes with ``exclude`` to quantize the rest.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import onnx_ir as ir
from onnx_ir.passes import common as common_passes

from quantscope.calibrate import TensorStats
from quantscope.config import MethodConfig, WeightInt4, WeightInt8, _WeightOnly
from quantscope.errors import UnsupportedModelError
from quantscope.graph.prepare import prepare, upgrade_opset
from quantscope.graph.qdq import NameAllocator, add_initializer
from quantscope.graph.queries import attr_float, const_array, node_label
from quantscope.io import Model
from quantscope.methods import register
from quantscope.methods._weights import WeightSite, ordered_decisions, weight_sites
from quantscope.numerics.blockwise import (
    BLOCK_SIZES,
    BlockQuant,
    quantize_blockwise,
    reconstruction_sqnr,
    valid_block_sizes,
)
from quantscope.plan import NodeDecision, QuantPlan, WeightQuant

logger = logging.getLogger(__name__)

MS_DOMAIN = "com.microsoft"
QDQ_OPSET = 21  # DequantizeLinear's block_size attribute and the int4/uint4 types
QDQ_IR_VERSION = 10  # int4/uint4 tensors
OP_TYPES = ("MatMul", "Gemm")

STORAGE = {
    "matmulnbits": (
        "com.microsoft::MatMulNBits: B uint8 [N, K/block_size, block_size*bits/8], the codes of a "
        "block packed in K order, low bits first; scales float32 [N*K/block_size]; zero_points "
        "(asymmetric only) uint8 [N*ceil((K/block_size)*bits/8)], each column packed like B; "
        "symmetric weights use the default zero point 2**(bits-1)"
    ),
    "qdq": (
        "DequantizeLinear (opset 21) with axis = the K axis and block_size: int4/int8 values "
        "(symmetric, zero point 0) or uint4/uint8 codes with a zero point per block; float32 "
        "scales of the weight's shape with K divided by block_size"
    ),
}

# measured on MiniLM (1 thread, AVX2 without VNNI, ONNX Runtime 1.32): 4-bit MatMulNBits runs at
# about float speed (0.95-1.05x), 8-bit MatMulNBits at about 0.5x; accuracy_level 4 was slower
INT8_SPEED_WARNING = (
    "8-bit MatMulNBits ran about 2x slower than float MatMul on an AVX2 CPU (ONNX Runtime 1.32): "
    "weight-int8 shrinks the file and the weight memory, not the latency; measure on your target "
    "or use dynamic-int8 for speed"
)

_CACHE_SIZE = 256
_cache: OrderedDict[tuple[object, ...], BlockQuant] = OrderedDict()


def _quantize(w: np.ndarray, config: _WeightOnly, k_axis: int, algorithm: str | None = None) -> BlockQuant:
    """``quantize_blockwise`` memoized on the weight's bytes: ``plan`` and ``apply`` both need
    it, and the HQQ solver takes seconds on a transformer."""
    algorithm = algorithm or config.algorithm
    digest = hashlib.sha256(np.ascontiguousarray(w).tobytes()).hexdigest()
    key = (digest, w.shape, str(w.dtype), config.bits, config.block_size, config.symmetric, k_axis, algorithm)
    hit = _cache.get(key)
    if hit is not None:
        _cache.move_to_end(key)
        return hit
    bq = quantize_blockwise(
        w, config.bits, config.block_size, symmetric=config.symmetric, k_axis=k_axis, algorithm=algorithm
    )
    _cache[key] = bq
    while len(_cache) > _CACHE_SIZE:
        _cache.popitem(last=False)
    return bq


def _k_axis(site: WeightSite) -> int:
    # MatMul and Gemm(transB=0) weights are [K, N] (outputs on axis 1); Gemm(transB=1) is [N, K]
    return 0 if site.out_axis == 1 else 1


def _format(config: _WeightOnly) -> str:
    return "qdq" if config.format == "qdq" else "matmulnbits"


def _code_dtype(config: _WeightOnly, fmt: str) -> str:
    width = "4" if config.bits == 4 else "8"
    if fmt == "qdq" and config.symmetric:
        return f"int{width}"
    return f"uint{width}"


@dataclass(frozen=True)
class _Group:
    """One weight tensor (possibly shared by several nodes) and how it reads."""

    name: str
    k_axis: int
    sites: tuple[WeightSite, ...]


class _WeightOnlyMethod:
    """The shared planner and writer of weight-int8 and weight-int4."""

    # -- Method protocol ---------------------------------------------------------------
    def prepare(self, model: Model, config: MethodConfig) -> Model:
        assert isinstance(config, _WeightOnly)
        prepared, notes = prepare(model)
        if _format(config) == "qdq" and prepared.opset < QDQ_OPSET:
            old = prepared.opset
            upgraded, _ = upgrade_opset(prepared, QDQ_OPSET)
            notes = [
                *notes,
                f"opset upgraded from {old} to {QDQ_OPSET} (block-wise DequantizeLinear needs it)",
            ]
            prepared = Model(ir=upgraded.ir, path=None, fingerprint=model.fingerprint, notes=tuple(notes))
        return prepared

    def tensors_to_observe(self, model: Model, config: MethodConfig) -> list[str]:
        return []  # data-free: weights only

    def plan(self, model: Model, config: MethodConfig, stats: TensorStats | None) -> QuantPlan:
        assert isinstance(config, _WeightOnly)
        fmt = _format(config)
        sites, decisions = weight_sites(model, config, OP_TYPES, min_size=config.min_size)
        groups: dict[tuple[str, int], list[WeightSite]] = {}
        for site in sites:
            if not np.all(np.isfinite(site.array)):
                decisions[site.label] = NodeDecision(
                    node=site.label, op_type=site.node.op_type, action="float",
                    reason="weight holds NaN or infinity; kept float",
                )
                continue
            groups.setdefault((site.value.name or site.label, _k_axis(site)), []).append(site)
        if not groups:
            reasons = sorted({d.reason for d in decisions.values()})
            raise UnsupportedModelError(
                f"{config.method} found no MatMul or Gemm weight to quantize in this model: "
                + "; ".join(reasons[:5])
                + ". Nothing was written."
            )
        self._check_block_size(config, groups)

        weight_plans: list[WeightQuant] = []
        details: list[dict[str, object]] = []
        float_total = stored_total = 0
        gains: list[float] = []
        for (name, k_axis), group in groups.items():
            w = group[0].array
            bq = _quantize(w, config, k_axis)
            w_hat = bq.dequantize() if k_axis == 0 else bq.dequantize().T
            sqnr = reconstruction_sqnr(w, w_hat)
            rtn_sqnr: float | None = None
            if config.algorithm != "rtn":
                rtn = _quantize(w, config, k_axis, "rtn").dequantize()
                rtn_sqnr = reconstruction_sqnr(w, rtn if k_axis == 0 else rtn.T)
                gains.append(sqnr - rtn_sqnr)
            stored = bq.stored_bytes
            float_total += 4 * w.size
            stored_total += stored
            scheme = (
                f"{config.bits}-bit block-wise, {config.block_size} values per block along "
                f"K={bq.k}, {'symmetric' if config.symmetric else 'asymmetric'}, {config.algorithm}"
            )
            where = (
                "as com.microsoft::MatMulNBits" if fmt == "matmulnbits"
                else "as blocked DequantizeLinear (opset 21)"
            )
            quality = f"weight SQNR {sqnr:.1f} dB" + (
                f" (RTN {rtn_sqnr:.1f} dB)" if rtn_sqnr is not None else ""
            )
            first = group[0].label
            for i, site in enumerate(group):
                shared = f"; weight {name!r} is shared with {first} and stored once" if i else ""
                decisions[site.label] = NodeDecision(
                    node=site.label, op_type=site.node.op_type, action="quantized",
                    reason=f"{scheme} {where}; {quality}{shared}",
                )
                weight_plans.append(
                    WeightQuant(
                        tensor=name, node=site.label, dtype=_code_dtype(config, fmt), axis=k_axis,
                        bits=config.bits, channels=bq.n, input_index=site.index,
                    )
                )
            details.append(
                {
                    "tensor": name,
                    "nodes": [s.label for s in group],
                    "shape": [int(d) for d in w.shape],
                    "k": bq.k,
                    "n": bq.n,
                    "k_axis": k_axis,
                    "blocks": bq.n * bq.n_blocks,
                    "sqnr_db": sqnr,
                    "rtn_sqnr_db": rtn_sqnr,
                    "float_bytes": 4 * int(w.size),
                    "stored_bytes": stored,
                }
            )
        warnings: list[str] = []
        n_sub = sum(
            1 for n in ir.traversal.RecursiveGraphIterator(model.ir.graph) if n.graph is not model.ir.graph
        )
        if n_sub:
            warnings.append(f"{n_sub} node(s) inside If/Loop/Scan subgraphs were left in float")
        if config.bits == 8:
            warnings.append(INT8_SPEED_WARNING)
        notes = list(model.notes)
        if fmt == "qdq":
            notes.append(
                "ONNX Runtime fuses DequantizeLinear + MatMul into MatMulNBits with int8 activations "
                "(its session default qdq_matmulnbits_accuracy_level=4): expect ~1 % relative output "
                "difference there; format 'matmulnbits' keeps float activations"
            )
        extra: dict[str, object] = {
            "format": fmt,
            "storage": STORAGE[fmt],
            "weights": details,
            "weight_bytes": {
                "float": float_total,
                "quantized": stored_total,
                "ratio": stored_total / float_total if float_total else 1.0,
            },
        }
        if gains:
            extra["algorithm_gain_db"] = {
                "vs": "rtn",
                "mean": float(np.mean(gains)),
                "min": float(np.min(gains)),
                "max": float(np.max(gains)),
            }
        logger.info(
            "%s: %d weight(s), %d -> %d bytes (%.1f %%)",
            config.method, len(details), float_total, stored_total,
            100.0 * stored_total / max(float_total, 1),
        )
        return QuantPlan(
            method=config.method,
            decisions=ordered_decisions(model, decisions),
            weights=tuple(weight_plans),
            notes=tuple(notes),
            warnings=tuple(warnings),
            extra=extra,
        )

    @staticmethod
    def _check_block_size(config: _WeightOnly, groups: dict[tuple[str, int], list[WeightSite]]) -> None:
        ks = {key: group[0].array.shape[key[1]] for key, group in groups.items()}
        bad = [(key, k) for key, k in ks.items() if k % config.block_size]
        if not bad:
            return
        listed = "; ".join(
            f"weight {name!r} of {groups[(name, axis)][0].label} has K={k}" for (name, axis), k in bad[:5]
        )
        more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
        valid = valid_block_sizes(ks.values(), BLOCK_SIZES)
        raise UnsupportedModelError(
            f"block_size={config.block_size} does not divide the input dimension K of "
            f"{len(bad)} weight(s): {listed}{more}. Block sizes that divide every selected "
            f"weight: {', '.join(map(str, valid)) or 'none'}; or leave these nodes in float with "
            "exclude (--exclude NAME). Nothing was written."
        )

    def apply(self, model: Model, config: MethodConfig, plan: QuantPlan) -> Model:
        assert isinstance(config, _WeightOnly)
        fmt = _format(config)
        clone = model.ir.clone()
        graph = clone.graph
        names = NameAllocator(graph)
        nodes = {node_label(n): n for n in graph}
        written: dict[tuple[str, int], tuple[ir.Value | None, ...]] = {}
        for wq in plan.weights:
            node = nodes[wq.node]
            value = node.inputs[wq.input_index]
            assert value is not None
            w = const_array(value)
            assert w is not None
            key = (value.name or wq.tensor, int(wq.axis if wq.axis is not None else 0))
            if key not in written:
                bq = _quantize(w, config, key[1])
                base = value.name or "weight"
                if fmt == "matmulnbits":
                    written[key] = self._matmulnbits_inputs(graph, names, base, bq)
                else:
                    written[key] = (self._dequantize_node(graph, names, node, base, bq, key[1], w.shape),)
            if fmt == "matmulnbits":
                self._replace_with_matmulnbits(graph, names, node, bq_shape(w, key[1]), written[key], config)
            else:
                dq_out = written[key][0]
                assert dq_out is not None
                node.replace_input_with(wq.input_index, dq_out)
        common_passes.RemoveUnusedNodesPass()(clone)  # drops the float weights now unused
        graph.sort()
        if fmt == "matmulnbits":
            clone.opset_imports[MS_DOMAIN] = 1
        else:
            clone.ir_version = max(clone.ir_version or 0, QDQ_IR_VERSION)
        clone.metadata_props["quantscope.method"] = config.method
        return Model(ir=clone, path=None, fingerprint="", notes=model.notes)

    # -- writers -----------------------------------------------------------------------
    @staticmethod
    def _matmulnbits_inputs(
        graph: ir.Graph, names: NameAllocator, base: str, bq: BlockQuant
    ) -> tuple[ir.Value | None, ...]:
        b = add_initializer(graph, names, f"{base}_Q{bq.bits}", bq.matmulnbits_b())
        scales = add_initializer(graph, names, f"{base}_scales", bq.matmulnbits_scales())
        zp_array = bq.matmulnbits_zero_points()
        zp = None if zp_array is None else add_initializer(graph, names, f"{base}_zero_points", zp_array)
        return b, scales, zp

    @staticmethod
    def _replace_with_matmulnbits(
        graph: ir.Graph,
        names: NameAllocator,
        node: ir.Node,
        kn: tuple[int, int],
        tensors: tuple[ir.Value | None, ...],
        config: _WeightOnly,
    ) -> None:
        k, n = kn
        b, scales, zp = tensors
        label = node_label(node)
        bias: ir.Value | None = None
        extra_nodes: list[ir.Node] = []
        c_value = node.inputs[2] if node.op_type == "Gemm" and len(node.inputs) > 2 else None
        beta = attr_float(node, "beta", 1.0) if node.op_type == "Gemm" else 1.0
        add_operand: ir.Value | None = None
        if c_value is not None:
            c = const_array(c_value)
            if c is not None and c.size in (1, n) and (c.ndim == 0 or c.shape[-1] in (1, n)) and c.ndim <= 2:
                vec = np.broadcast_to((beta * c.astype(np.float32)).reshape(-1), (n,)).astype(np.float32)
                bias = add_initializer(graph, names, f"{c_value.name or label}_bias", vec)
            elif c is not None:
                add_operand = add_initializer(
                    graph, names, f"{c_value.name or label}_scaled", (beta * c).astype(np.float32)
                )
            elif beta != 1.0:
                beta_value = add_initializer(graph, names, f"{label}_beta", np.asarray(beta, np.float32))
                mul = ir.Node("", "Mul", [c_value, beta_value], name=names(f"{label}_beta_Mul"), num_outputs=1)
                mul.outputs[0].name = names(f"{label}_beta_C")
                extra_nodes.append(mul)
                add_operand = mul.outputs[0]
            else:
                add_operand = c_value
        inputs: list[ir.Value | None] = [node.inputs[0], b, scales, zp, None, bias]
        while inputs[-1] is None:
            inputs.pop()
        attrs = [
            ir.AttrInt64("K", k),
            ir.AttrInt64("N", n),
            ir.AttrInt64("bits", config.bits),
            ir.AttrInt64("block_size", config.block_size),
            ir.AttrInt64("accuracy_level", 0),
        ]
        mnb = ir.Node(MS_DOMAIN, "MatMulNBits", inputs, attrs, name=names(f"{label}_MatMulNBits"), num_outputs=1)
        new_nodes = [*extra_nodes, mnb]
        result = mnb.outputs[0]
        result.type = ir.TensorType(ir.DataType.FLOAT)
        if add_operand is not None:
            mnb.outputs[0].name = names(f"{label}_matmul")
            add = ir.Node("", "Add", [mnb.outputs[0], add_operand], name=names(f"{label}_bias_Add"), num_outputs=1)
            new_nodes.append(add)
            result = add.outputs[0]
        ir.convenience.replace_nodes_and_values(graph, node, [node], new_nodes, [node.outputs[0]], [result])

    @staticmethod
    def _dequantize_node(
        graph: ir.Graph,
        names: NameAllocator,
        before: ir.Node,
        base: str,
        bq: BlockQuant,
        k_axis: int,
        shape: tuple[int, ...],
    ) -> ir.Value:
        dq = bq.blocked_dequantize(k_axis)
        wide = bq.bits == 8
        dtype = (
            (ir.DataType.INT8 if wide else ir.DataType.INT4) if dq.signed
            else (ir.DataType.UINT8 if wide else ir.DataType.UINT4)
        )
        q_name = names(f"{base}_q{bq.bits}")
        q_value = ir.Value(
            name=q_name, const_value=ir.tensor(dq.values, dtype=dtype, name=q_name),
            type=ir.TensorType(dtype), shape=ir.Shape(dq.values.shape),
        )
        graph.register_initializer(q_value)
        scale = add_initializer(graph, names, f"{base}_scale", dq.scale)
        inputs: list[ir.Value | None] = [q_value, scale]
        if dq.zero_point is not None:
            zp_name = names(f"{base}_zero_point")
            zp = ir.Value(
                name=zp_name, const_value=ir.tensor(dq.zero_point, dtype=dtype, name=zp_name),
                type=ir.TensorType(dtype), shape=ir.Shape(dq.zero_point.shape),
            )
            graph.register_initializer(zp)
            inputs.append(zp)
        node = ir.Node(
            "", "DequantizeLinear", inputs,
            [ir.AttrInt64("axis", k_axis), ir.AttrInt64("block_size", dq.block_size)],
            name=names(f"{base}_DequantizeLinear"), num_outputs=1,
        )
        out = node.outputs[0]
        out.name = names(f"{base}_dequantized")
        out.type = ir.TensorType(ir.DataType.FLOAT)
        out.shape = ir.Shape(shape)
        graph.insert_before(before, [node])
        return out


def bq_shape(w: np.ndarray, k_axis: int) -> tuple[int, int]:
    """(K, N) of a 2-D weight whose K axis is ``k_axis``."""
    return (int(w.shape[0]), int(w.shape[1])) if k_axis == 0 else (int(w.shape[1]), int(w.shape[0]))


@register(WeightInt8)
class WeightInt8Method(_WeightOnlyMethod):
    """8-bit block-wise weights (MatMulNBits bits=8, or int8/uint8 blocked DequantizeLinear)."""


@register(WeightInt4)
class WeightInt4Method(_WeightOnlyMethod):
    """4-bit block-wise weights (MatMulNBits bits=4, or int4/uint4 blocked DequantizeLinear)."""


__all__ = ["WeightInt4Method", "WeightInt8Method"]
