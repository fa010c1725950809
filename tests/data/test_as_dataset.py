"""as_dataset: what users pass as data (arrays, dicts, lists, torch, tf.data) becomes a Dataset."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from data_helpers import F32, collect, spec, stacked

import quantscope as qs
import tinymodels
from quantscope.data import UNNAMED, Dataset, as_dataset

X = np.arange(24, dtype=np.float32).reshape(6, 4)
Y = np.arange(6) % 2


def _inputs(ds: Dataset, batch_size: int = 4) -> np.ndarray:
    return stacked(collect(ds.bind([spec("x", F32, ("N", 4))]), batch_size))["x"]


def test_dataset_array_dict_and_list() -> None:
    ds = Dataset.from_arrays(X)
    assert as_dataset(ds) is ds
    np.testing.assert_array_equal(_inputs(as_dataset(X)), X)
    d = as_dataset({"x": X, "labels": Y, "meta_slice": np.array(list("abcabc"))})
    np.testing.assert_array_equal(d.labels, Y)
    assert list(d.meta) == ["slice"] and d.input_names == ("x",)
    listed = as_dataset([{"x": row, "labels": y} for row, y in zip(X, Y, strict=True)])
    np.testing.assert_array_equal(_inputs(listed), X)
    np.testing.assert_array_equal(listed.labels, Y)
    np.testing.assert_array_equal(_inputs(as_dataset(list(X))), X)


def test_anything_else_is_a_data_error_naming_what_is_accepted() -> None:
    with pytest.raises(qs.DataError, match=r"cannot use a builtins\.object as calibration data; pass a quantscope Dataset"):
        as_dataset(object(), "calibration data")
    with pytest.raises(qs.DataError, match=r"torch Dataset or DataLoader, or a tf\.data\.Dataset"):
        as_dataset(3.5)


def test_torch_dataset_and_loader() -> None:
    torch = pytest.importorskip("torch")
    td = torch.utils.data.TensorDataset(torch.from_numpy(X), torch.from_numpy(Y))
    ds = as_dataset(td)
    assert ds.num_samples == 6 and ds.input_names == (UNNAMED,)
    np.testing.assert_array_equal(_inputs(ds), X)
    np.testing.assert_array_equal(ds.labels, Y)
    np.testing.assert_array_equal(_inputs(ds.take(3, seed=1)), _inputs(ds.take(3, seed=1)))
    loader = as_dataset(torch.utils.data.DataLoader(td, batch_size=4))
    np.testing.assert_array_equal(_inputs(loader, 3), X)  # batches of 4 re-cut into 3
    np.testing.assert_array_equal(loader.labels, Y)
    unbatched = as_dataset(torch.utils.data.DataLoader(td, batch_size=None))
    np.testing.assert_array_equal(_inputs(unbatched), X)
    with pytest.raises(qs.ConfigError, match=r"the DataLoader shuffles.*shuffle=False"):
        as_dataset(torch.utils.data.DataLoader(td, batch_size=2, shuffle=True))
    np.testing.assert_array_equal(_inputs(as_dataset(torch.from_numpy(X))), X)
    pairs = [(torch.from_numpy(x).requires_grad_(), int(y)) for x, y in zip(X, Y, strict=True)]
    listed = as_dataset(pairs)
    np.testing.assert_array_equal(_inputs(listed), X)
    np.testing.assert_array_equal(listed.labels, Y)


class _Named:
    def __init__(self, torch: object) -> None:
        self.torch = torch

    def __len__(self) -> int:
        return 2

    def __getitem__(self, i: int) -> object:
        return {"x": self.torch.full((4,), float(i)), "labels": i}  # type: ignore[attr-defined]


def test_torch_dataset_of_dicts_and_a_bad_tuple() -> None:
    torch = pytest.importorskip("torch")
    named = type("Named", (_Named, torch.utils.data.Dataset), {})(torch)
    ds = as_dataset(named)
    assert ds.input_names == ("x",)
    np.testing.assert_array_equal(ds.labels, [0, 1])
    triple = torch.utils.data.TensorDataset(torch.from_numpy(X), torch.from_numpy(X), torch.from_numpy(Y))
    with pytest.raises(qs.DataError, match=r"a tuple of 3 values.*return a dict"):
        _ = as_dataset(triple).input_names


def test_tf_data_dataset() -> None:
    tf = pytest.importorskip("tensorflow")
    base = tf.data.Dataset.from_tensor_slices((X, Y))
    np.testing.assert_array_equal(_inputs(as_dataset(base)), X)
    batched = as_dataset(base.batch(4).prefetch(1))
    np.testing.assert_array_equal(_inputs(batched), X)
    np.testing.assert_array_equal(batched.labels, Y)
    named = as_dataset(tf.data.Dataset.from_tensor_slices({"x": X}).batch(5))
    np.testing.assert_array_equal(_inputs(named), X)
    with pytest.raises(qs.ConfigError, match=r"the tf\.data\.Dataset shuffles"):
        as_dataset(base.shuffle(6).batch(2))


def test_as_dataset_imports_no_framework() -> None:
    code = (
        "import sys, numpy as np; from quantscope.data import as_dataset; "
        "as_dataset(np.zeros((2, 3))); as_dataset([np.zeros(3)]); "
        "assert 'torch' not in sys.modules and 'tensorflow' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_quantize_takes_plain_arrays(tmp_path: Path) -> None:
    model = qs.load(tinymodels.save(tinymodels.mlp(), tmp_path / "mlp.onnx"))
    calib = np.random.default_rng(0).standard_normal((4, 64)).astype(np.float32)
    q = qs.quantize(model, qs.StaticInt8(num_samples=4), calib)
    assert q.calibration["samples"] == 4
    with pytest.raises(qs.DataError, match="as calibration data"):
        qs.quantize(model, qs.StaticInt8(), object())
