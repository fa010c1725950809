"""detect_format on files made here by each framework (never unpickled), and not_onnx_message's
convert commands."""

from __future__ import annotations

import pickle
import struct

import numpy as np
import onnx
import pytest

import tinymodels as tm
from quantscope.formats import FORMATS, detect_format, not_onnx_message


def test_onnx_by_suffix_and_by_content(tmp_path):
    path = tm.save(tm.mlp(), tmp_path / "m.onnx")
    assert detect_format(path) == "onnx"
    renamed = tmp_path / "model"
    renamed.write_bytes(onnx.load(path).SerializeToString())
    assert detect_format(renamed) == "onnx"


def test_random_bytes_missing_files_and_plain_folders_are_unknown(tmp_path):
    junk = tmp_path / "weights.dat"
    junk.write_bytes(bytes([0x42]) + np.random.default_rng(0).bytes(4095))
    assert detect_format(junk) == "unknown"
    assert detect_format(tmp_path / "absent.pt") == "unknown"
    assert detect_format(tmp_path) == "unknown"
    assert "not an ONNX model" in not_onnx_message(junk, "unknown")


def test_pickle_and_joblib_are_recognised_without_unpickling(tmp_path):
    class Boom:
        def __reduce__(self):  # unpickling this would raise: detection must not unpickle
            return (ZeroDivisionError, ("unpickled!",))

    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(Boom(), protocol=4))
    assert detect_format(path) == "pickle"
    renamed = tmp_path / "model.joblib"
    renamed.write_bytes(path.read_bytes())
    assert detect_format(renamed) == "joblib"
    message = not_onnx_message(path, "pickle")
    assert "quantscope convert" in message and "--trust --example x.npz -o model.onnx" in message


def test_joblib_from_scikit_learn(tmp_path):
    joblib = pytest.importorskip("joblib")
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression().fit(np.eye(4), [0, 1, 0, 1])
    plain, compressed = tmp_path / "clf.joblib", tmp_path / "clfz.joblib"
    joblib.dump(clf, plain)
    joblib.dump(clf, compressed, compress=3)
    assert detect_format(plain) == detect_format(compressed) == "joblib"


def test_torch_files(tmp_path):
    torch = pytest.importorskip("torch")
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU())
    torch.save(net.state_dict(), tmp_path / "state.pt")
    torch.save(net.state_dict(), tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    torch.jit.save(torch.jit.script(net), tmp_path / "scripted.pt")
    program = torch.export.export(net, (torch.randn(2, 4),))
    torch.export.save(program, tmp_path / "exported.pt2")
    for name in ("state.pt", "legacy.pth", "scripted.pt", "exported.pt2"):
        assert detect_format(tmp_path / name) == "torch", name
    message = not_onnx_message(tmp_path / "state.pt", "torch")
    assert "quantscope convert mymodels.py:make_model -o state.onnx" in message
    assert "load_state_dict" in message
    assert "torch.export.load" in not_onnx_message(tmp_path / "exported.pt2", "torch")


@pytest.fixture(scope="module")
def keras_model():
    keras = pytest.importorskip("keras")
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])


def test_keras_file_h5_file_and_savedmodel_folder(tmp_path, keras_model):
    keras_model.save(tmp_path / "net.keras")
    keras_model.save(tmp_path / "net.h5")
    keras_model.export(tmp_path / "exported")
    assert detect_format(tmp_path / "net.keras") == "keras"
    assert detect_format(tmp_path / "net.h5") == "h5"
    assert detect_format(tmp_path / "exported") == "savedmodel"
    keras_path = tmp_path / "net.keras"
    assert f"quantscope convert {keras_path} -o net.onnx" in not_onnx_message(keras_path, "keras")
    assert "-o net.onnx" in not_onnx_message(tmp_path / "net.h5", "h5")
    folder = tmp_path / "exported"
    assert f"quantscope convert {folder} -o exported.onnx" in not_onnx_message(folder, "savedmodel")


def test_tflite_by_its_flatbuffer_identifier(tmp_path):
    path = tmp_path / "m.tflite"
    path.write_bytes(struct.pack("<I", 28) + b"TFL3" + bytes(64))
    assert detect_format(path) == "tflite"
    assert "TensorFlow Lite" in not_onnx_message(path, "tflite")


def test_paths_with_spaces_are_quoted_for_the_shell(tmp_path):
    path = tmp_path / "my model.keras"
    assert f"quantscope convert '{path}' -o 'my model.onnx'" in not_onnx_message(path, "keras")


def test_every_format_has_a_message():
    for fmt in FORMATS:
        if fmt != "onnx":
            assert not_onnx_message("x.bin", fmt)
