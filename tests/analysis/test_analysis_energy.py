"""Energy estimate: MAC counts by precision against a hand count, priced with the published table."""

from __future__ import annotations

import numpy as np
import pytest
from analysis_models import CONV_MATMUL_MACS, conv_matmul

import quantscope as qs
from quantscope.analysis.energy import (
    ASSUMPTIONS,
    HOROWITZ_2014,
    count_operations,
    describe_table,
    estimate_energy,
)
from quantscope.config import Float16
from quantscope.io import Model, infer_shapes


@pytest.fixture(scope="module")
def model() -> Model:
    return Model.from_proto(infer_shapes(conv_matmul()))


@pytest.fixture(scope="module")
def feeds() -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(0).standard_normal((4, 2, 8, 8)).astype(np.float32)}


def test_float_model_counts_and_prices_by_hand(model: Model, feeds: dict[str, np.ndarray]) -> None:
    counts = count_operations(model, {"x": feeds["x"][:1]})
    assert counts["fp32 mac"] == CONV_MATMUL_MACS
    assert "int8 mac" not in counts
    weights = (4 * 2 * 3 * 3 + 4 + 256 * 10) * 4
    assert counts["DRAM bytes"] == weights
    assert counts["fp32 add"] == 4 * 8 * 8  # the Relu
    energy = estimate_energy(model, feeds)  # one sample, whatever the batch
    pj = HOROWITZ_2014.pj
    assert energy.by_component["fp32 mul"] == pytest.approx(CONV_MATMUL_MACS * pj["fp32 mul"] * 1e-6)
    assert energy.by_component["DRAM"] == pytest.approx(weights / 8 * pj["DRAM"] * 1e-6)
    assert energy.total_uj == pytest.approx(sum(energy.by_component.values()))
    assert energy.table == "horowitz-2014-45nm"


def test_static_int8_runs_the_same_macs_in_int8_and_reads_fewer_bytes(model: Model, feeds) -> None:
    calib = qs.Dataset.from_arrays(feeds)
    q = qs.quantize(model, qs.StaticInt8(), calib)
    counts = count_operations(q.model, {"x": feeds["x"][:1]})
    assert counts["int8 mac"] == CONV_MATMUL_MACS
    assert "fp32 mac" not in counts
    assert counts["DRAM bytes"] < 0.35 * count_operations(model, {"x": feeds["x"][:1]})["DRAM bytes"]
    assert estimate_energy(q.model, feeds).total_uj < 0.5 * estimate_energy(model, feeds).total_uj


def test_float16_macs_are_counted_as_float16(model: Model, feeds) -> None:
    q = qs.quantize(model, Float16())
    counts = count_operations(q.model, {"x": feeds["x"][:1]})
    assert counts.get("fp16 mac") == CONV_MATMUL_MACS


def test_the_table_its_source_and_assumptions_are_there_for_the_report() -> None:
    d = describe_table()
    assert "Horowitz" in str(d["source"]) and "ISSCC 2014" in str(d["source"])
    assert d["pj"]["int8 mul"] == 0.2 and d["pj"]["fp32 mul"] == 3.7 and d["pj"]["DRAM"] == 1300.0
    assert len(d["assumptions"]) == len(ASSUMPTIONS) >= 5


def _has_float16_kernels(model: Model, feeds: dict[str, np.ndarray]) -> bool:
    from quantscope.analysis.energy import runtime_graph

    _, _, dtypes = runtime_graph(qs.quantize(model, Float16()).model, {"x": feeds["x"][:1]})
    return any(d == np.float16 for name, d in dtypes.items() if name != "x")


def test_float16_on_a_cpu_without_float16_kernels_costs_what_float32_costs(model: Model, feeds) -> None:
    """ONNX Runtime casts around float16 nodes it has no kernel for: the price is float32's."""
    if _has_float16_kernels(model, feeds):
        pytest.skip("this CPU runs some float16 kernels natively")
    half = estimate_energy(qs.quantize(model, Float16()).model, feeds)
    full = estimate_energy(model, feeds)
    assert "fp16 mac" not in half.ops and half.ops.get("fp32 mac") == CONV_MATMUL_MACS
    assert half.total_uj == pytest.approx(full.total_uj)
    assert half.by_component == pytest.approx(full.by_component)


def test_codebook_weights_are_priced_at_their_unpacked_float_size(model: Model, feeds) -> None:
    q = qs.quantize(model, qs.config.Cluster(bits=4))
    packed = count_operations(q.model, {"x": feeds["x"][:1]})["DRAM bytes"]
    unpacked = count_operations(q.model, {"x": feeds["x"][:1]}, runtime=True)
    float_bytes = count_operations(model, {"x": feeds["x"][:1]}, runtime=True)["DRAM bytes"]
    assert packed < unpacked["DRAM bytes"] == pytest.approx(float_bytes)
    assert unpacked.get("fp32 mac") == CONV_MATMUL_MACS
