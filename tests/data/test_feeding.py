"""Data as the model takes it: fixed batch 1, scalar inputs, state inputs whose batch axis is
not axis 0, stacked session feeds, and data for inputs the model does not take. Every case is
run through a real ONNX Runtime session on a tiny model built here."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from data_helpers import F32, I64, collect, spec
from onnx import TensorProto, helper

from quantscope.data import Batch, Dataset
from quantscope.errors import DataMismatchError
from quantscope.specs import Dim, TensorSpec

FLOAT, INT64 = TensorProto.FLOAT, TensorProto.INT64


def session(
    inputs: Sequence[tuple[str, int, Sequence[Dim]]],
    outputs: Sequence[tuple[str, int, Sequence[Dim]]],
    nodes: Sequence[onnx.NodeProto],
) -> tuple[ort.InferenceSession, list[TensorSpec]]:
    """A checked model of ``nodes`` in an ORT session, and its input specs."""
    graph = helper.make_graph(
        list(nodes),
        "feeding",
        [helper.make_tensor_value_info(n, t, list(s)) for n, t, s in inputs],
        [helper.make_tensor_value_info(n, t, list(s)) for n, t, s in outputs],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    dtypes = {FLOAT: F32, INT64: I64}
    return sess, [spec(n, dtypes[t], tuple(s)) for n, t, s in inputs]


def run_all(
    sess: ort.InferenceSession, ds: Dataset, batch_size: int
) -> tuple[list[Batch], list[np.ndarray]]:
    """Every batch of ``ds`` run through ``sess``: the batches and the first output of each."""
    batches = collect(ds, batch_size)
    return batches, [sess.run(None, b.inputs)[0] for b in batches]


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


# ---------------------------------------------------------------------------
# (a) a fixed batch of 1


def test_fixed_batch_of_one_feeds_one_sample_per_run(rng: np.random.Generator) -> None:
    sess, specs = session(
        [("x", FLOAT, [1, 3, 4, 4])],
        [("y", FLOAT, [1, 3])],
        [helper.make_node("ReduceMean", ["x"], ["y"], axes=[2, 3], keepdims=0)],
    )
    x = rng.standard_normal((5, 3, 4, 4)).astype(np.float32)
    bound = Dataset.from_arrays({"x": x}, labels=np.arange(5)).bind(specs)
    batches, outs = run_all(sess, bound, 16)  # the default batch size of the CLI
    assert [b.size for b in batches] == [1] * 5
    np.testing.assert_array_equal(np.concatenate([b.labels for b in batches]), np.arange(5))
    np.testing.assert_allclose(np.concatenate(outs), x.mean(axis=(2, 3)), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------
# (b) scalar inputs


def scaled_model() -> tuple[ort.InferenceSession, list[TensorSpec]]:
    """y = x * float(scale), with a batched x and a scalar int64 scale."""
    return session(
        [("x", FLOAT, ["N", 4]), ("scale", INT64, [])],
        [("y", FLOAT, ["N", 4])],
        [
            helper.make_node("Cast", ["scale"], ["s"], to=FLOAT),
            helper.make_node("Mul", ["x", "s"], ["y"]),
        ],
    )


def test_a_scalar_shared_by_every_sample_is_fed_once_per_batch(rng: np.random.Generator) -> None:
    sess, specs = scaled_model()
    x = rng.standard_normal((10, 4)).astype(np.float32)
    bound = Dataset.from_arrays({"x": x, "scale": np.full(10, 3, np.int64)}).bind(specs)
    batches, outs = run_all(sess, bound, 4)
    assert [b.size for b in batches] == [4, 4, 2]
    assert all(b.inputs["scale"].shape == () and b.inputs["scale"] == 3 for b in batches)
    np.testing.assert_allclose(np.concatenate(outs), x * 3, rtol=1e-6)


def test_a_scalar_that_varies_feeds_its_samples_one_at_a_time(rng: np.random.Generator) -> None:
    sess, specs = scaled_model()
    x = rng.standard_normal((10, 4)).astype(np.float32)
    scale = np.array([2, 2, 2, 5, 5, 5, 5, 7, 7, 7], np.int64)
    bound = Dataset.from_arrays({"x": x, "scale": scale}).bind(specs)
    batches, outs = run_all(sess, bound, 4)
    # [0-3] holds 2 and 5: one at a time; [4-7] holds 5 and 7: one at a time; [8-9] shares 7
    assert [b.size for b in batches] == [1, 1, 1, 1, 1, 1, 1, 1, 2]
    np.testing.assert_array_equal(np.concatenate([b.indices for b in batches]), np.arange(10))
    np.testing.assert_allclose(np.concatenate(outs), x * scale[:, None], rtol=1e-6)
    # the samples are the same whichever way they are fed
    assert bound.fingerprint(batch_size=1) == bound.fingerprint(batch_size=4)


def test_a_scalar_given_per_sample_in_an_iterable_of_feeds(rng: np.random.Generator) -> None:
    sess, specs = scaled_model()
    x = rng.standard_normal((6, 1, 4)).astype(np.float32)
    feeds = [
        {"x": x[i], "scale": i + 1, "labels": i} for i in range(6)
    ]  # feeds as session.run took them
    batches, outs = run_all(sess, Dataset.from_iterable(feeds).bind(specs), 8)
    assert [b.size for b in batches] == [1] * 6
    assert all(b.inputs["x"].shape == (1, 4) for b in batches)
    expected = x[:, 0] * np.arange(1, 7)[:, None]
    np.testing.assert_allclose(np.concatenate(outs), expected, rtol=1e-6)


def test_scalar_data_of_the_wrong_rank_is_refused() -> None:
    _, specs = scaled_model()
    data = {"x": np.zeros((4, 4), np.float32), "scale": np.ones((4, 2), np.int64)}
    with pytest.raises(
        DataMismatchError, match=r"'scale' is a scalar .*shape \(2,\).*one value per sample"
    ):
        Dataset.from_arrays(data).bind(specs)


# ---------------------------------------------------------------------------
# (c) state inputs whose batch axis is not axis 0


def state_model(batch: Dim) -> tuple[ort.InferenceSession, list[TensorSpec]]:
    """y = x + sum over layers of state: x [batch, 8], state [2, batch, 8]."""
    return session(
        [("x", FLOAT, [batch, 8]), ("state", FLOAT, [2, batch, 8])],
        [("y", FLOAT, [batch, 8])],
        [
            helper.make_node(
                "Constant", [], ["axes"], value=helper.make_tensor("axes", INT64, [1], [0])
            ),
            helper.make_node("ReduceSum", ["state", "axes"], ["s"], keepdims=0),
            helper.make_node("Add", ["x", "s"], ["y"]),
        ],
    )


@pytest.mark.parametrize("batch", [1, "batch"])
def test_state_inputs_with_the_batch_on_axis_one(batch: Dim, rng: np.random.Generator) -> None:
    sess, specs = state_model(batch)
    x = rng.standard_normal((5, 8)).astype(np.float32)
    state = rng.standard_normal((5, 2, 8)).astype(np.float32)  # samples without their batch axis
    expected = x + state.sum(axis=1)
    bound = Dataset.from_arrays({"x": x, "state": state}).bind(specs)
    batches, outs = run_all(sess, bound, 16)
    assert [b.size for b in batches] == [1] * 5
    assert all(b.inputs["state"].shape == (2, 1, 8) for b in batches)
    np.testing.assert_allclose(np.concatenate(outs), expected, rtol=1e-5, atol=1e-6)

    # the same state recorded as stacked session feeds, (N, 2, 1, 8)
    feeds = {"x": x[:, None], "state": state[:, :, None]}
    batches, outs = run_all(sess, Dataset.from_arrays(feeds).bind(specs), 16)
    assert [b.size for b in batches] == [1] * 5
    np.testing.assert_allclose(np.concatenate(outs), expected, rtol=1e-5, atol=1e-6)


def test_state_data_that_fits_no_axis_is_refused() -> None:
    _, specs = state_model(1)
    data = {"x": np.zeros((3, 8), np.float32), "state": np.zeros((3, 3, 8), np.float32)}
    with pytest.raises(DataMismatchError, match=r"'state': shape mismatch .*\(3, 8\).*\(1, 8\)"):
        Dataset.from_arrays(data).bind(specs)


# ---------------------------------------------------------------------------
# (d) an .npz of stacked session feeds, beside the batched layout


def image_model() -> tuple[ort.InferenceSession, list[TensorSpec]]:
    """An OCR-like input [1, 3, 4, 5] and a scalar sample rate: y = mean(x) * rate, [1]."""
    return session(
        [("x", FLOAT, [1, 3, 4, 5]), ("rate", INT64, [])],
        [("y", FLOAT, [1])],
        [
            helper.make_node("ReduceMean", ["x"], ["m"], axes=[1, 2, 3], keepdims=0),
            helper.make_node("Cast", ["rate"], ["r"], to=FLOAT),
            helper.make_node("Mul", ["m", "r"], ["y"]),
        ],
    )


def test_npz_of_stacked_feeds_and_of_batched_samples(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    sess, specs = image_model()
    x = rng.standard_normal((6, 3, 4, 5)).astype(np.float32)
    rate = np.array([8000, 8000, 16000, 16000, 16000, 8000], np.int64)
    expected = x.mean(axis=(1, 2, 3)) * rate
    feeds = [{"x": x[i : i + 1], "rate": rate[i]} for i in range(6)]
    stacked = tmp_path / "feeds.npz"  # what np.savez(f, **{k: np.stack(...)}) gives
    np.savez(stacked, **{k: np.stack([f[k] for f in feeds]) for k in ("x", "rate")})
    batched = tmp_path / "batched.npz"
    np.savez(batched, x=x, rate=rate)
    for path in (stacked, batched):
        batches, outs = run_all(sess, Dataset.from_path(path).bind(specs), 16)
        assert [b.size for b in batches] == [1] * 6
        np.testing.assert_allclose(np.concatenate(outs), expected, rtol=1e-5, atol=1e-6)
    # and the same feeds as a list of dicts in the API
    batches, outs = run_all(sess, Dataset.from_iterable(feeds).bind(specs), 4)
    np.testing.assert_allclose(np.concatenate(outs), expected, rtol=1e-5, atol=1e-6)
    assert (
        Dataset.from_path(stacked).bind(specs).fingerprint()
        == Dataset.from_iterable(feeds).bind(specs).fingerprint()
    )


def test_stacked_feeds_of_a_model_with_a_free_batch(rng: np.random.Generator) -> None:
    sess, specs = scaled_model()
    x = rng.standard_normal((4, 3, 4)).astype(np.float32)  # 4 feeds of 3 rows each
    bound = Dataset.from_arrays({"x": x, "scale": np.full(4, 2, np.int64)}).bind(specs)
    batches, outs = run_all(sess, bound, 16)
    assert [b.size for b in batches] == [1] * 4
    assert all(b.inputs["x"].shape == (3, 4) for b in batches)
    np.testing.assert_allclose(np.stack(outs), x * 2, rtol=1e-6)


# ---------------------------------------------------------------------------
# (e) arrays for inputs the model does not take


def test_arrays_the_model_does_not_take_are_ignored_with_a_warning(
    rng: np.random.Generator, caplog: pytest.LogCaptureFixture
) -> None:
    sess, specs = scaled_model()
    x = rng.standard_normal((5, 4)).astype(np.float32)
    data = {
        "x": x,
        "scale": np.full(5, 2, np.int64),
        "mask": np.ones((5, 4), bool),
        "ids": np.arange(5),
    }
    ds = Dataset.from_arrays(data)
    with caplog.at_level(logging.WARNING, logger="quantscope.data"):
        bound = ds.bind(specs)
        batches, outs = run_all(sess, bound, 2)
        ds.take(3).bind(specs)  # the same data bound again: no second warning
    assert bound.input_names == ("x", "scale")
    assert all(set(b.inputs) == {"x", "scale"} for b in batches)
    np.testing.assert_allclose(np.concatenate(outs), x * 2, rtol=1e-6)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "['mask', 'ids']" in warned[0] and "does not take" in warned[0]


# ---------------------------------------------------------------------------
# what cannot be fed


def test_a_fixed_batch_with_a_scalar_input(rng: np.random.Generator) -> None:
    sess, specs = session(
        [("x", FLOAT, [2, 4]), ("scale", INT64, [])],
        [("y", FLOAT, [2, 4])],
        [
            helper.make_node("Cast", ["scale"], ["s"], to=FLOAT),
            helper.make_node("Mul", ["x", "s"], ["y"]),
        ],
    )
    x = rng.standard_normal((6, 4)).astype(np.float32)
    batches, outs = run_all(
        sess, Dataset.from_arrays({"x": x, "scale": np.full(6, 3)}).bind(specs), 16
    )
    assert [b.size for b in batches] == [2, 2, 2]
    np.testing.assert_allclose(np.concatenate(outs), x * 3, rtol=1e-6)
    varying = Dataset.from_arrays({"x": x, "scale": np.arange(6)}).bind(specs)
    with pytest.raises(DataMismatchError, match=r"scalar input varies .*sample 0"):
        collect(varying, 2)


def test_inputs_that_disagree_on_the_batch_are_refused() -> None:
    _, specs = session(
        [("a", FLOAT, [2, 3]), ("b", FLOAT, [4, 3])],
        [("y", FLOAT, [2, 3])],
        [helper.make_node("Identity", ["a"], ["y"])],
    )
    data = {"a": np.zeros((8, 3), np.float32), "b": np.zeros((8, 3), np.float32)}
    with pytest.raises(DataMismatchError, match=r"disagree on how many samples a run takes"):
        Dataset.from_arrays(data).bind(specs)


def test_batches_in_the_dataset_layout_after_bind(rng: np.random.Generator) -> None:
    """feeds=False keeps the sample axis first, e.g. to shift samples and rebuild a dataset."""
    sess, specs = image_model()
    x = rng.standard_normal((5, 3, 4, 5)).astype(np.float32)
    rate = np.array([8000, 8000, 16000, 16000, 8000], np.int64)
    bound = Dataset.from_arrays({"x": x, "rate": rate}, labels=np.arange(5)).bind(specs)
    batches = collect(bound, 4, feeds=False)
    assert [b.size for b in batches] == [4, 1]
    assert batches[0].inputs["x"].shape == (4, 3, 4, 5) and batches[0].inputs["rate"].shape == (4,)
    arrays = {k: np.concatenate([b.inputs[k] for b in batches]) for k in ("x", "rate")}
    rebuilt = Dataset.from_arrays({"x": arrays["x"] * 2, "rate": arrays["rate"]}).bind(specs)
    _, outs = run_all(sess, rebuilt, 4)
    expected = (x * 2).mean(axis=(1, 2, 3)) * rate
    np.testing.assert_allclose(np.concatenate(outs), expected, rtol=1e-5, atol=1e-5)
    # later samples are still checked against the model in the dataset layout
    ragged = [{"x": x[0], "rate": 8000}, {"x": x[0, :, :3], "rate": 8000}]
    with pytest.raises(DataMismatchError, match=r"sample 1 \(element 1\) has shape \(3, 3, 5\)"):
        collect(Dataset.from_iterable(ragged).bind(specs), 1, feeds=False)
