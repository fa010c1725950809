"""PyTorch → ONNX → static-int8 → analysis, on a small CNN built and trained here in seconds."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch  # the [torch] extra is part of [test]: CI runs these tests, nothing is skipped

import quantscope as qs
from quantscope.analysis.evaluate import predict
from quantscope.errors import ConfigError, ConversionError
from quantscope.importers import importer_for, to_onnx
from quantscope.importers.check import check_outputs
from quantscope.numerics.metrics import sqnr_db, top1_agreement
from quantscope.runtime import make_session, run


class SmallCNN(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = torch.nn.BatchNorm2d(8)
        self.conv2 = torch.nn.Conv2d(8, 16, 3, padding=1)
        self.fc = torch.nn.Linear(16, 4)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(image)))
        x = torch.nn.functional.max_pool2d(x, 2)
        x = torch.relu(self.conv2(x))
        return self.fc(x.mean(dim=(2, 3)))


class TwoInTwoOut(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Linear(6, 5)
        self.b = torch.nn.Linear(3, 5)

    def forward(self, left: torch.Tensor, right: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.relu(self.a(left) + self.b(right))
        return h, h.sum(dim=1)


def _data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Images whose class is the quadrant with the brightest mean: learnable in a few steps."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 3, 16, 16)).astype(np.float32)
    y = rng.integers(0, 4, n)
    for i, c in enumerate(y):
        r, s = divmod(int(c), 2)
        x[i, :, r * 8:(r + 1) * 8, s * 8:(s + 1) * 8] += 3.0
    return x, y


@pytest.fixture(scope="module")
def trained_cnn() -> SmallCNN:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model on a shared 2-core machine: one thread is fastest
    torch.manual_seed(0)
    model = SmallCNN()
    x, y = _data(256, seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for step in range(40):
        idx = slice((step * 32) % 256, (step * 32) % 256 + 32)
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx])
        loss.backward()
        opt.step()
    torch.set_num_threads(threads)
    model.train()  # as a user would hand it over mid-training: the importer must not keep eval mode
    return model


@pytest.fixture(scope="module")
def imported(trained_cnn: SmallCNN) -> qs.Model:
    x, _ = _data(8, seed=1)
    return to_onnx(trained_cnn, torch.from_numpy(x))


def test_import_structure_and_validity(trained_cnn, imported):
    assert trained_cnn.training and trained_cnn.bn1.training  # the caller's modes are restored
    onnx.checker.check_model(imported.to_proto(), full_check=True)
    (inp,) = imported.inputs
    assert inp.name == "image" and inp.shape == ("batch", 3, 16, 16)
    assert [o.name for o in imported.outputs] == ["output"]
    assert imported.ir.graph.name == "SmallCNN"  # reports name the model after the framework's
    ops = imported.op_histogram()
    assert ops["Conv"] == 2 and "BatchNormalization" not in ops  # eval-mode BN folded by the exporter
    assert any("dynamic batch" in n for n in imported.notes)
    assert any("batch of 1" in n for n in imported.notes)  # the dynamic batch was checked too


def test_import_numerics_on_other_batch_sizes(trained_cnn, imported):
    session = make_session(imported)
    for n in (1, 13):
        x, _ = _data(n, seed=10 + n)
        with torch.no_grad():
            ref = trained_cnn.eval()(torch.from_numpy(x)).numpy()
        trained_cnn.train()
        got = run(session, {"image": x})[0]
        np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-3)


def test_import_quantize_analyze(imported):
    calib_x, _ = _data(64, seed=2)
    eval_x, eval_y = _data(128, seed=3)
    q = qs.quantize(imported, qs.StaticInt8(), qs.Dataset.from_arrays({"image": calib_x}))
    onnx.checker.check_model(q.model.to_proto(), full_check=True)
    ops = q.model.op_histogram()
    assert ops["QuantizeLinear"] >= 2 and ops["DequantizeLinear"] >= 4
    quantized = {d.op_type for d in q.plan.quantized_nodes}
    assert {"Conv", "Gemm"} <= quantized or {"Conv", "MatMul"} <= quantized
    data = qs.Dataset.from_arrays({"image": eval_x}, labels=eval_y)
    ref = predict(imported, data)[0]
    got = predict(q.model, data)[0]
    assert sqnr_db(ref, got) > 20.0  # int8 on a 2-conv CNN: typically 30+ dB
    assert top1_agreement(ref, got) >= 0.95
    assert float(np.mean(ref.argmax(1) == eval_y)) > 0.5  # the model learned something (chance: 0.25)


def test_batch_one_example_still_gives_a_dynamic_batch():
    torch.manual_seed(1)
    model = TwoInTwoOut()
    left = torch.randn(1, 6)
    right = torch.randn(1, 3)
    m = to_onnx(model, {"left": left, "right": right})
    assert [i.name for i in m.inputs] == ["left", "right"]
    assert [i.shape[0] for i in m.inputs] == ["batch", "batch"]
    assert [o.name for o in m.outputs] == ["output_0", "output_1"]
    rng = np.random.default_rng(4)
    feeds = {"left": rng.standard_normal((5, 6)).astype(np.float32),
             "right": rng.standard_normal((5, 3)).astype(np.float32)}
    got = run(make_session(m), feeds)
    with torch.no_grad():
        ref = model(torch.from_numpy(feeds["left"]), torch.from_numpy(feeds["right"]))
    for g, r in zip(got, ref, strict=True):
        np.testing.assert_allclose(g, r.numpy(), atol=1e-5, rtol=1e-4)


def test_a_wrong_conversion_fails_with_the_largest_difference(imported):
    x, _ = _data(4, seed=5)
    truth = run(make_session(imported), {"image": x})[0]
    wrong = truth.copy()
    wrong[2, 1] += 0.5
    with pytest.raises(ConversionError, match=r"differs from torch's by up to 0\.5.*index \(2, 1\)"):
        check_outputs(imported, {"image": x}, [wrong], framework="torch")
    check = check_outputs(imported, {"image": x}, [truth], framework="torch")
    assert check.outputs[0].max_abs_diff < 1e-5  # basic vs full graph optimization: rounding only


def test_missing_example_inputs_and_unknown_objects_are_config_errors(trained_cnn):
    with pytest.raises(ConfigError, match="needs example inputs"):
        to_onnx(trained_cnn)
    with pytest.raises(ConfigError, match=r"cannot convert a builtins\.dict"):
        to_onnx({"not": "a model"}, None)
    assert importer_for(trained_cnn).name == "torch"


FACTORY = '''
import torch


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4, 3)

    def forward(self, features):
        return torch.relu(self.fc(features))


def make():
    torch.manual_seed(0)
    return Net(), torch.randn(3, 4)
'''


def test_cli_convert_calls_a_module_function(tmp_path):
    from click.testing import CliRunner

    from quantscope import cli

    factory = tmp_path / "factory.py"
    factory.write_text(FACTORY)
    out = tmp_path / "net.onnx"
    result = CliRunner().invoke(cli.main, ["convert", f"{factory}:make", "-o", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "wrote" in text and "reproduces torch" in text and "input features: float32[batch, 4]" in text
    model = qs.load(out)
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    (got,) = run(make_session(model), {"features": x})
    assert got.shape == (5, 3) and got.min() >= 0.0  # the Relu is there, batch 5 runs
    missing = CliRunner().invoke(cli.main, ["convert", f"{factory}:nothing", "-o", str(tmp_path / "x.onnx")])
    assert missing.exit_code == 3 and "has no function 'nothing'" in " ".join(missing.output.split())


def test_importer_and_backend_modules_import_no_framework():
    import subprocess
    import sys

    code = (
        "import sys, quantscope, quantscope.importers, quantscope.importers.check, quantscope.backends.tflite\n"
        "heavy = ('torch', 'tensorflow', 'keras', 'sklearn', 'skl2onnx', 'tf2onnx', 'ai_edge_litert')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"
