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
  error; see tests/methods/test_weight_only.py).
* ``qdq`` — a standard opset-21 ``DequantizeLinear`` with ``axis``/``block_size`` (int4/uint4
  or int8/uint8 initializers) feeding the unchanged MatMul or Gemm: any ONNX runtime can read
  it. The model's opset is upgraded to 21 first. ONNX Runtime itself fuses DequantizeLinear +
  MatMul into MatMulNBits, but with its session default ``accuracy_level`` 4
  (``session.qdq_matmulnbits_accuracy_level``): int8 activations, so its outputs differ from the
  dequantized-weight product by about 1 %; DequantizeLinear + Gemm is not fused (the weight is
  expanded to float once at load).
* ``auto`` — MatMulNBits wherever ONNX Runtime has it: its CPU provider runs every MatMul
  and Gemm this method rewrites (4 and 8 bits), so ``auto`` writes MatMulNBits throughout;
  ``qdq`` is there for portability.

Speed: the gain is file size and weight memory; 8-bit MatMulNBits may run slower than float
on CPUs without VNNI (the plan warns; measured numbers are in bench/RESULTS.md).

A block size must divide K of every selected weight: the method refuses (exit code 3, nothing
written) and names the weights and the block sizes that would work, rather than padding K
(which MatMulNBits allows but DequantizeLinear does not) and storing a format that differs by
weight. Exclude such nodes with ``exclude`` to quantize the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np
import onnx_ir as ir

from quantscope.algorithms import awq
from quantscope.algorithms.activation_stats import extra_of, input_request
from quantscope.algorithms.gptq import gptq_group
from quantscope.algorithms.smoothquant import rewrite
from quantscope.calibrate import TensorStats
from quantscope.config import MethodConfig, WeightInt4, WeightInt8, _WeightOnly
from quantscope.config.calibration import StatisticsRequest
from quantscope.config.methods import CALIBRATED_WEIGHT_ALGORITHMS
from quantscope.errors import UnsupportedModelError
from quantscope.graph.build import NameAllocator
from quantscope.graph.prepare import upgrade_opset
from quantscope.graph.queries import const_array, nodes_by_label
from quantscope.io import Model
from quantscope.methods import register
from quantscope.methods._recurrent import is_recurrent, rows
from quantscope.methods._weights import (
    WeightSite,
    decide_site,
    finite_groups,
    release,
    weight_sites,
)
from quantscope.methods.base import (
    Decisions,
    Method,
    Subgraphs,
    nothing_found,
    prepare_model,
    select,
)
from quantscope.methods.weight_only.writer import (
    MS_DOMAIN,
    dequantize_node,
    matmulnbits_inputs,
    replace_with_matmulnbits,
)
from quantscope.numerics.blockwise import (
    BLOCK_SIZES,
    BlockQuant,
    blockwise_sqnr,
    quantize_blockwise,
    valid_block_sizes,
)
from quantscope.plan import QuantPlan, WeightQuant

logger = logging.getLogger(__name__)

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

# the numbers behind this warning are in bench/RESULTS.md
INT8_SPEED_WARNING = (
    "8-bit MatMulNBits may run slower than float MatMul on CPUs without VNNI or AVX-512: weight-int8 "
    "shrinks the file and the weight memory, not necessarily the latency; measure on your target "
    "or use dynamic-int8 for speed"
)

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


Payload = dict[tuple[str, int], BlockQuant]
"""The quantized weights of a plan, by (weight tensor name, K axis)."""


class _WeightOnlyMethod(Method):
    """The shared planner and writer of weight-int8 and weight-int4."""

    def prepare(self, model: Model, config: MethodConfig) -> Model:
        assert isinstance(config, _WeightOnly)
        prepared = prepare_model(model)
        notes = list(prepared.notes)
        recurrent = any(is_recurrent(n) for n in ir.traversal.RecursiveGraphIterator(prepared.ir.graph))
        if (_format(config) == "qdq" or recurrent) and prepared.opset < QDQ_OPSET:
            old = prepared.opset
            upgraded, _ = upgrade_opset(prepared, QDQ_OPSET)
            why = "LSTM/GRU/RNN weights are written as" if _format(config) != "qdq" else "the format is"
            notes = [
                *notes,
                f"opset upgraded from {old} to {QDQ_OPSET} ({why} block-wise DequantizeLinear, which needs it)",
            ]
            prepared = Model(ir=upgraded.ir, path=None, fingerprint=model.fingerprint, notes=tuple(notes))
        return prepared

    def statistics(self, model: Model, config: MethodConfig) -> StatisticsRequest | None:
        """GPTQ reads the second moments of each weight's input; RTN and HQQ need nothing."""
        assert isinstance(config, _WeightOnly)
        if not config.needs_calibration:
            return None
        sites, _ = weight_sites(select(model, config), OP_TYPES, min_size=config.min_size)
        return input_request((s.node for s in sites), ("gram",), config.as_calibration())

    def plan(self, model: Model, config: MethodConfig, stats: TensorStats | None) -> QuantPlan:
        assert isinstance(config, _WeightOnly)
        fmt = _format(config)
        sites, decisions = weight_sites(select(model, config), OP_TYPES, min_size=config.min_size, recurrent="rows")
        scaled: list[dict[str, object]] = []
        if config.awq:  # rescales weights in place: find them again
            stats, scaled = awq.apply(model, [s.node for s in sites if s.layout is None], stats, config)
            sites, decisions = weight_sites(select(model, config), OP_TYPES, min_size=config.min_size, recurrent="rows")
        Subgraphs.of(model).mark(decisions)
        groups = _recurrent_fits(config, finite_groups(sites, decisions, _k_axis), decisions)
        if not groups:
            raise nothing_found(config.method, decisions.values(), "no MatMul or Gemm weight to quantize")
        _check_block_size(config, {key: group for key, group in groups.items() if group[0].layout is None})
        weight_plans: list[WeightQuant] = []
        details: list[dict[str, object]] = []
        gains: list[float] = []
        payload: Payload = {}
        for (name, k_axis), group in groups.items():
            assert k_axis is not None
            w = group[0].array
            op = group[0].node.op_type
            recurrent = group[0].layout is not None
            if config.algorithm == "gptq" and not recurrent:
                bq = gptq_group(w, config, k_axis, group, extra_of(stats), gains)
            else:  # recurrent weights: GPTQ has no input statistics for them, round to nearest
                bq = _quantize(w, config, k_axis, "rtn" if config.algorithm == "gptq" else None, recurrent=recurrent)
            payload[(name, k_axis)] = bq
            sqnr = blockwise_sqnr(w, bq, k_axis)
            rtn_sqnr: float | None = None
            if config.algorithm == "hqq":
                rtn_sqnr = blockwise_sqnr(w, _quantize(w, config, k_axis, "rtn", recurrent=recurrent), k_axis)
                gains.append(sqnr - rtn_sqnr)
            release(group[0].value)
            scheme = (
                f"{config.bits}-bit block-wise, {bq.block_size} values per block along "
                f"K={bq.k}, {'symmetric' if config.symmetric else 'asymmetric'}, {config.algorithm}"
            )
            where = "as com.microsoft::MatMulNBits" if fmt == "matmulnbits" else "as blocked DequantizeLinear (opset 21)"
            if recurrent:
                where = f"as blocked DequantizeLinear (opset 21) feeding the float {op}"
            quality = f"weight SQNR {sqnr:.1f} dB" + (f" (RTN {rtn_sqnr:.1f} dB)" if rtn_sqnr is not None else "")
            for i, site in enumerate(group):
                shared = f"; weight {name!r} is shared with {group[0].label} and stored once" if i else ""
                decide_site(decisions, site, f"{scheme} {where}; {quality}{shared}")
                weight_plans.append(
                    WeightQuant(
                        tensor=name, node=site.label, dtype=_code_dtype(config, "qdq" if recurrent else fmt), axis=k_axis,
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
                    "stored_bytes": bq.stored_bytes,
                }
            )
        warnings: list[str] = []
        if config.bits == 8:
            warnings.append(INT8_SPEED_WARNING)
        notes = list(model.notes)
        if fmt == "qdq":
            notes.append(
                "ONNX Runtime fuses DequantizeLinear + MatMul into MatMulNBits with int8 activations "
                "(its session default qdq_matmulnbits_accuracy_level=4): expect ~1 % relative output "
                "difference there; format 'matmulnbits' keeps float activations"
            )
        float_total = sum(4 * int(group[0].array.size) for group in groups.values())
        stored_total = sum(bq.stored_bytes for bq in payload.values())
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
        if config.awq:
            extra["awq"] = scaled
        if gains:
            extra["algorithm_gain_db"] = {
                "vs": "rtn", "measure": "layer output error" if config.algorithm == "gptq" else "weight SQNR",
                "mean": float(np.mean(gains)),
                "min": float(np.min(gains)),
                "max": float(np.max(gains)),
            }
        logger.info(
            "%s: %d weight(s), %d -> %d bytes (%.1f %%)",
            config.method, len(details), float_total, stored_total, 100.0 * stored_total / max(float_total, 1),
        )
        return QuantPlan(
            method=config.method, decisions=decisions.ordered(), weights=tuple(weight_plans),
            notes=tuple(notes), warnings=tuple(warnings), extra=extra, payload=payload,
        )

    def compute(self, model: Model, config: MethodConfig, plan: QuantPlan) -> Payload:
        """Quantize the plan's weights again (a plan read from a sidecar carries none)."""
        assert isinstance(config, _WeightOnly)
        rewrite(model.ir.graph, plan.extra.get("awq", []), tag=awq.TAG)  # a plan read from a sidecar
        if config.algorithm in CALIBRATED_WEIGHT_ALGORITHMS:
            raise UnsupportedModelError(f"{config.algorithm} rounding needs calibration data; quantize the model again")
        nodes = nodes_by_label(model.ir.graph)
        payload: Payload = {}
        for wq in plan.weights:
            key = (wq.tensor, int(wq.axis or 0))
            if key not in payload:
                node = nodes[wq.node]
                w = const_array(node.inputs[wq.input_index])
                assert w is not None
                recurrent = is_recurrent(node)
                payload[key] = _quantize(rows(w) if recurrent else w, config, key[1], recurrent=recurrent)
        return payload

    def write(self, clone: ir.Model, config: MethodConfig, plan: QuantPlan, payload: Payload) -> None:
        assert isinstance(config, _WeightOnly)
        fmt = _format(config)
        graph = clone.graph
        names = NameAllocator(graph)
        nodes = nodes_by_label(graph)
        # initializers go to the main graph (visible in every body); a DequantizeLinear goes to the
        # graph of the node it feeds, once per weight and graph
        written: dict[tuple[str, int, int], tuple[ir.Value | None, ...]] = {}
        for wq in plan.weights:
            node = nodes[wq.node]
            where = node.graph
            assert where is not None
            key = (wq.tensor, int(wq.axis or 0))
            bq = payload[key]
            kn = (bq.k, bq.n)
            recurrent = is_recurrent(node)
            node_fmt = "qdq" if recurrent else fmt  # MatMulNBits replaces MatMul/Gemm only
            slot = (*key, 0 if node_fmt == "matmulnbits" else id(where))
            if slot not in written:
                if node_fmt == "matmulnbits":
                    written[slot] = matmulnbits_inputs(graph, names, wq.tensor or "weight", bq)
                else:
                    shape = kn if key[1] == 0 else (bq.n, bq.k)
                    if recurrent:
                        shape = tuple(_array(node, wq.input_index).shape)
                    written[slot] = (dequantize_node(where, names, node, wq.tensor or "weight", bq, key[1], shape),)
                    clone.ir_version = max(clone.ir_version or 0, QDQ_IR_VERSION)
            if node_fmt == "matmulnbits":
                replace_with_matmulnbits(where, names, node, kn, written[slot], config.bits, config.block_size)
            else:
                dq_out = written[slot][0]
                assert dq_out is not None
                node.replace_input_with(wq.input_index, dq_out)
        if fmt == "matmulnbits":
            clone.opset_imports[MS_DOMAIN] = 1


def _quantize(
    w: np.ndarray, config: _WeightOnly, k_axis: int, algorithm: str | None = None, *, recurrent: bool = False
) -> BlockQuant:
    block = _recurrent_block(int(w.shape[k_axis]), config) if recurrent else config.block_size
    assert block is not None
    return quantize_blockwise(
        w, config.bits, block, symmetric=config.symmetric, k_axis=k_axis,
        algorithm=algorithm or config.algorithm,
    )


def _array(node: ir.Node, index: int) -> np.ndarray:
    w = const_array(node.inputs[index])
    assert w is not None
    return w


def _recurrent_fits(
    config: _WeightOnly, groups: dict[tuple[str, int | None], list[WeightSite]], decisions: Decisions
) -> dict[tuple[str, int | None], list[WeightSite]]:
    """``groups`` without the LSTM/GRU/RNN weights no block size fits (kept float, with the reason)."""
    misfits = {
        site.node for group in groups.values() for site in group
        if site.layout is not None and _recurrent_block(int(site.array.shape[1]), config) is None
    }
    for node in misfits:
        decisions.keep(node, f"{node.op_type} weights have an odd input size, which {config.bits}-bit blocks cannot pack")
    return {key: group for key, group in groups.items() if not any(s.node in misfits for s in group)}


def _recurrent_block(k: int, config: _WeightOnly) -> int | None:
    """The block size of an LSTM/GRU/RNN weight with input size ``k`` (their sizes are often not
    multiples of 32: 40 or 80 audio features): ``block_size`` when it divides ``k``, else the
    largest divisor below it (at least 8), else ``k`` (one block per row); None when no block packs."""
    fits = [b for b in range(min(config.block_size, k), 1, -1) if k % b == 0 and b * config.bits % 8 == 0]
    if fits and fits[0] >= 8:
        return fits[0]
    return k if k * config.bits % 8 == 0 else None


def _check_block_size(config: _WeightOnly, groups: Mapping[tuple[str, int | None], list[WeightSite]]) -> None:
    ks = {key: group[0].array.shape[key[1] or 0] for key, group in groups.items()}
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


@register(WeightInt8)
class WeightInt8Method(_WeightOnlyMethod):
    """8-bit block-wise weights (MatMulNBits bits=8, or int8/uint8 blocked DequantizeLinear)."""


@register(WeightInt4)
class WeightInt4Method(_WeightOnlyMethod):
    """4-bit block-wise weights (MatMulNBits bits=4, or int4/uint4 blocked DequantizeLinear)."""


__all__ = ["WeightInt4Method", "WeightInt8Method"]
