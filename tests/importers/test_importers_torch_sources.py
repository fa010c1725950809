"""convert: dynamic axes besides the batch, TorchScript and torch.export (.pt2) files, and an
exporter failure shown as one clean line with its cause (the whole trace with -v)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner, Result

import quantscope as qs
from quantscope import cli
from quantscope.errors import ConfigError
from quantscope.importers import to_onnx
from quantscope.importers.exporter_errors import root_cause, strip_ansi
from quantscope.runtime import make_session, run


class Pool(torch.nn.Module):
    """(batch, tokens, 8) → (batch, 4): works for any number of tokens."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(8, 4)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.proj(tokens).mean(dim=1)


@pytest.fixture(autouse=True)
def _wide_consoles(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli.console, "_width", 400)
    monkeypatch.setattr(cli.err_console, "_width", 400)


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(cli.main, [str(a) for a in args])


def dims(model: qs.Model) -> list[str | int]:
    shape = model.ir.graph.inputs[0].shape
    return [d if isinstance(d, int) else str(d) for d in shape]


def test_a_sequence_axis_exported_as_dynamic() -> None:
    torch.manual_seed(0)
    module = Pool()
    x = torch.randn(2, 5, 8)
    model = to_onnx(module, x, dynamic={"tokens": [1]})
    shape = dims(model)
    assert isinstance(shape[0], str) and isinstance(shape[1], str) and shape[2] == 8
    longer = np.random.default_rng(0).standard_normal((3, 11, 8)).astype(np.float32)
    (got,) = run(make_session(model), {model.inputs[0].name: longer})
    np.testing.assert_allclose(got, module(torch.from_numpy(longer)).detach().numpy(), rtol=1e-4, atol=1e-5)
    with pytest.raises(ConfigError, match="the model's inputs are"):
        to_onnx(module, x, dynamic={"nope": [1]})
    with pytest.raises(ConfigError, match="axis 0"):
        to_onnx(module, x, dynamic={"tokens": [0]})


def test_torchscript_needs_trust_and_pt2_reads_its_own_examples(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = Pool().eval()
    x = torch.randn(2, 5, 8)
    script = tmp_path / "pool.pt"
    torch.jit.trace(module, x).save(str(script))
    example = tmp_path / "example.npz"
    np.savez(example, tokens=x.numpy())
    refused = invoke("convert", script, "-o", tmp_path / "s.onnx", "--example", example)
    assert refused.exit_code == 3 and "--trust" in refused.output
    done = invoke("convert", script, "-o", tmp_path / "s.onnx", "--example", example, "--trust",
                  "--dynamic", "0:1")
    assert done.exit_code == 0, done.output
    converted = qs.load(tmp_path / "s.onnx")
    assert isinstance(dims(converted)[1], str)
    program = tmp_path / "pool.pt2"
    torch.export.save(torch.export.export(module, (x,)), str(program))
    from_program = invoke("convert", program, "-o", tmp_path / "p.onnx")
    assert from_program.exit_code == 0, from_program.output
    (got,) = run(make_session(qs.load(tmp_path / "p.onnx")), {"tokens": x.numpy()})
    np.testing.assert_allclose(got, module(x).detach().numpy(), rtol=1e-4, atol=1e-5)
    not_a_model = tmp_path / "weights.pt"
    torch.save(module.state_dict(), not_a_model)
    bad = invoke("convert", not_a_model, "-o", tmp_path / "w.onnx", "--example", example, "--trust")
    assert bad.exit_code == 3 and "torch.jit.save or torch.export.save" in bad.output


def test_an_export_failure_names_its_cause_without_colour_codes(tmp_path: Path) -> None:
    factory = tmp_path / "factory.py"
    factory.write_text(
        "import torch\n"
        "class QR(torch.nn.Module):\n"
        "    def forward(self, x):\n"
        "        return torch.linalg.qr(x)[0]\n"
        "def make():\n"
        "    return QR(), torch.randn(2, 3, 3)\n"
    )
    result = invoke("convert", f"{factory}:make", "-o", tmp_path / "m.onnx")
    assert result.exit_code == 3, result.output
    assert "\x1b[" not in result.output
    message = " ".join(result.output.split())
    assert "torch.onnx.export failed: DispatchError: No ONNX function found" in message and "linalg_qr" in message
    assert "-v for the full trace" in message
    assert "Traceback" not in result.output
    verbose = invoke("-v", "convert", f"{factory}:make", "-o", tmp_path / "m.onnx")
    assert verbose.exit_code == 3 and "Traceback" in verbose.output and "\x1b[" not in verbose.output


def test_root_cause_reads_the_chain_and_the_summary() -> None:
    try:
        try:
            raise ValueError("Exporting a ScriptModule is not supported.\nmore")
        except ValueError as inner:
            raise RuntimeError("\x1b[96mThis is step 1/3\x1b[0m of exporting") from inner
    except RuntimeError as exc:
        assert root_cause(exc) == "ValueError: Exporting a ScriptModule is not supported."
    banner = RuntimeError("Failed \x1b[96mstep\x1b[0m\n## Exception summary\n\n<class 'torch.X.Unsupported'>: it broke\n")
    assert root_cause(banner) == "Unsupported: it broke"
    assert strip_ansi("\x1b[1;31mred\x1b[0m") == "red"


def test_to_onnx_takes_a_quantscope_dataset_as_example_inputs() -> None:
    torch.manual_seed(0)
    data = qs.Dataset.from_arrays({"tokens": np.random.default_rng(0).standard_normal((6, 5, 8)).astype(np.float32)})
    model = to_onnx(Pool(), data)
    assert [s.name for s in model.inputs] == ["tokens"]
    assert any("batch of 1" in n for n in model.notes)
