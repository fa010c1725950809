"""The user's workflow on the command line: images and texts as data, --print-config, names -m
accepts, sweep --save-models, quiet warnings; every path through click's runner with its exit code."""

from __future__ import annotations

import tomllib
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result
from PIL import Image

import quantscope as qs
import tinymodels
from quantscope import cli

VOCAB = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "the": 4, "cat": 5, "sat": 6, "on": 7, "mat": 8}


@pytest.fixture(autouse=True)
def _wide_consoles(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli.console, "_width", 400)
    monkeypatch.setattr(cli.err_console, "_width", 400)


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(cli.main, [str(a) for a in args])


@pytest.fixture
def model_path(tmp_path: Path) -> Path:
    path = tmp_path / "model.onnx"
    tinymodels.save(tinymodels.conv_bn_relu(), path)
    return path


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """Two class sub-folders of RGB PNGs, 20x24, made here."""
    rng = np.random.default_rng(0)
    root = tmp_path / "images"
    for label in ("cats", "dogs"):
        (root / label).mkdir(parents=True)
        for i in range(6):
            pixels = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / label / f"{i}.png")
    return root


@pytest.fixture
def text_model(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(model taking input_ids, tokenizer.json, texts.txt), all made here."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    tok = Tokenizer(models.WordLevel(VOCAB, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tokenizer = tmp_path / "tokenizer.json"
    tok.save(str(tokenizer))
    proto = tinymodels.embedding_mlp(vocab=len(VOCAB))
    for node in proto.graph.node:
        node.input[:] = ["input_ids" if name == "ids" else name for name in node.input]
    proto.graph.input[0].name = "input_ids"
    model = tmp_path / "text.onnx"
    tinymodels.save(proto, model)
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(["the cat sat", "the cat sat on the mat", "dog on the mat"] * 5) + "\n")
    return model, tokenizer, texts


IMAGE_OPTS = ("--image-size", "16", "--crop", "16", "--mean", "0.5,0.5,0.5", "--std", "0.25,0.25,0.25")


def test_quantize_calibrates_on_a_folder_of_images(model_path: Path, image_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "q.onnx"
    result = invoke("quantize", model_path, "-o", out, "--calib", image_folder, *IMAGE_OPTS, "--layout", "NCHW")
    assert result.exit_code == 0, result.output
    assert out.is_file()
    plain = invoke("quantize", model_path, "-o", tmp_path / "q2.onnx", "--calib", image_folder)
    assert plain.exit_code == 3  # 20x24 images do not fit a 16x16 input without --image-size/--crop
    assert "16" in plain.output


def test_analyze_images_labelled_by_folders(model_path: Path, image_folder: Path, tmp_path: Path) -> None:
    result = invoke("analyze", model_path, "--data", image_folder, *IMAGE_OPTS, "--labels", "folders",
                    "--no-memory", "--no-latency", "--top", "0")
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.output


def test_image_options_on_npz_data_are_refused(model_path: Path, tmp_path: Path) -> None:
    calib = tmp_path / "calib.npz"
    np.savez(calib, x=np.zeros((4, 3, 16, 16), np.float32))
    result = invoke("quantize", model_path, "-o", tmp_path / "q.onnx", "--calib", calib, "--image-size", "16")
    assert result.exit_code == 3
    assert "--image-size do not apply to --calib" in result.output
    bad = invoke("quantize", model_path, "-o", tmp_path / "q.onnx", "--calib", calib, "--layout", "HWC")
    assert bad.exit_code == 2  # not a choice: the command line does not parse


def test_texts_with_a_tokenizer(text_model: tuple[Path, Path, Path], tmp_path: Path) -> None:
    model, tokenizer, texts = text_model
    out = tmp_path / "q.onnx"
    result = invoke("quantize", model, "-o", out, "--calib", texts, "--tokenizer", tokenizer, "--max-length", "8",
                    "-m", "dynamic-int8")
    assert result.exit_code == 0, result.output
    missing = invoke("quantize", model, "-o", tmp_path / "q2.onnx", "--calib", texts)
    assert missing.exit_code == 3 and "tokenizer" in missing.output


def test_print_config_writes_toml_that_config_reads_back(model_path: Path, tmp_path: Path) -> None:
    result = invoke("quantize", model_path, "-m", "static-int8/entropy", "--per-tensor", "--set", "num_samples=7",
                    "--print-config")
    assert result.exit_code == 0, result.output
    table = tomllib.loads(result.stdout)
    assert table["method"] == "static-int8" and table["calibration"] == "entropy"
    assert table["per_channel"] is False and table["num_samples"] == 7
    assert not list(tmp_path.glob("*.quantscope.json"))  # nothing quantized or written
    config = tmp_path / "quant.toml"
    config.write_text(result.stdout)
    calib = tmp_path / "calib.npz"
    np.savez(calib, x=np.random.default_rng(0).standard_normal((8, 3, 16, 16)).astype(np.float32))
    out = tmp_path / "q.onnx"
    done = invoke("quantize", model_path, "-o", out, "--calib", calib, "--config", config)
    assert done.exit_code == 0, done.output
    again = invoke("quantize", model_path, "--config", config, "--print-config")
    assert again.exit_code == 0 and tomllib.loads(again.stdout) == table  # the file is the config
    sidecar = qs.load(out)  # loads and validates
    assert sidecar is not None
    no_output = invoke("quantize", model_path, "--calib", calib)
    assert no_output.exit_code == 2 and "-o" in no_output.output


def test_bad_config_file_and_print_config_exit_3(model_path: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('method = "static-int8"\ncalibration = "nope"\n')
    result = invoke("quantize", model_path, "--config", bad, "--print-config")
    assert result.exit_code == 3 and "nope" in result.output


def test_help_lists_methods_calibrators_and_options() -> None:
    text = " ".join(invoke("quantize", "--help").output.split())
    from quantscope.config import method_names

    for name in (*method_names(), "minmax", "percentile", "entropy", "mse"):
        assert name in text
    for flag in ("--print-config", "--image-size", "--tokenizer", "--labels", "METHOD[/CALIBRATOR]"):
        assert flag in text
    for command in ("analyze", "sweep", "tune", "robustness"):
        help_text = invoke(command, "--help").output
        assert "--image-size" in help_text and "--tokenizer" in help_text, command
    assert "--save-models" in invoke("sweep", "--help").output
    assert "--dynamic" in invoke("convert", "--help").output


def test_method_slash_calibrator_is_accepted_by_quantize(model_path: Path, tmp_path: Path) -> None:
    calib = tmp_path / "calib.npz"
    np.savez(calib, x=np.random.default_rng(0).standard_normal((8, 3, 16, 16)).astype(np.float32))
    out = tmp_path / "q.onnx"
    result = invoke("quantize", model_path, "-o", out, "--calib", calib, "-m", "static-int8/percentile")
    assert result.exit_code == 0, result.output
    import json

    config = json.loads(out.with_name("q.quantscope.json").read_text())["config"]
    assert config["method"] == "static-int8" and config["calibration"] == "percentile"
    clash = invoke("quantize", model_path, "-o", tmp_path / "c.onnx", "--calib", calib, "-m", "static-int8/mse",
                   "--calibration", "minmax")
    assert clash.exit_code == 3 and "give one of them" in clash.output
    unknown = invoke("quantize", model_path, "-o", tmp_path / "u.onnx", "--calib", calib, "-m", "static-int8/best")
    assert unknown.exit_code == 3 and "static-int8/minmax" in unknown.output
    cluster = invoke("quantize", model_path, "-m", "cluster-4", "--print-config")
    assert cluster.exit_code == 0 and tomllib.loads(cluster.stdout)["bits"] == 4


def test_sweep_saves_models_and_takes_variant_names(model_path: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    calib, data = tmp_path / "calib.npz", tmp_path / "data.npz"
    np.savez(calib, x=rng.standard_normal((8, 3, 16, 16)).astype(np.float32))
    np.savez(data, x=rng.standard_normal((8, 3, 16, 16)).astype(np.float32))
    saved = tmp_path / "models"
    result = invoke("sweep", model_path, "--calib", calib, "--data", data, "-m", "static-int8/minmax", "-m", "float16",
                    "--save-models", saved, "--no-memory", "--no-latency", "--top", "0")
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in saved.glob("*.onnx"))
    assert names == ["model.float16.onnx", "model.static-int8-minmax.onnx"], names
    assert all(p.with_name(p.stem + ".quantscope.json").is_file() for p in saved.glob("*.onnx"))
    assert "static-int8/mse" not in result.output
    blocked = tmp_path / "file"
    blocked.write_text("x")
    refused = invoke("sweep", model_path, "--calib", calib, "--data", data, "-m", "float16", "--save-models", blocked)
    assert refused.exit_code == 3


def test_tune_prints_names_its_m_accepts(model_path: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    calib, data = tmp_path / "calib.npz", tmp_path / "data.npz"
    np.savez(calib, x=rng.standard_normal((8, 3, 16, 16)).astype(np.float32))
    np.savez(data, x=rng.standard_normal((8, 3, 16, 16)).astype(np.float32))
    result = invoke("tune", model_path, "--calib", calib, "--data", data, "--max-drop", "50%", "-m",
                    "static-int8/minmax", "-m", "dynamic-int8")
    assert result.exit_code in (0, 4), result.output
    for line in result.output.splitlines():
        if line.startswith("best: "):
            name = line.removeprefix("best: ").split(" ")[0]
            assert name in ("static-int8/minmax", "dynamic-int8")
            again = invoke("tune", model_path, "--calib", calib, "--data", data, "--max-drop", "50%", "-m", name)
            assert again.exit_code in (0, 4), again.output
    unknown = invoke("tune", model_path, "--calib", calib, "--data", data, "--max-drop", "1%", "-m", "int7")
    assert unknown.exit_code == 3


def test_deprecation_warnings_are_quiet_unless_verbose() -> None:
    from quantscope.cli import quiet_warnings

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        quiet_warnings(False)
        warnings.warn("np.something is deprecated", DeprecationWarning, stacklevel=1)
        warnings.warn("`keras.x` is deprecated, use y", UserWarning, stacklevel=1)
        warnings.warn("real problem", UserWarning, stacklevel=1)
    assert [str(w.message) for w in seen] == ["real problem"]
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        quiet_warnings(True)
        warnings.warn("np.something is deprecated", DeprecationWarning, stacklevel=1)
    assert len(seen) == 1
