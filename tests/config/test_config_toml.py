"""Config files in TOML and JSON: the same schema and errors; hostile files refused; TOML written back."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

import quantscope as qs
from quantscope.config import config_classes, config_from_dict
from quantscope.config.compose import config_to_toml, read_config_file

QUANT_TOML = """\
method = "static-int8"
calibration = "percentile"
percentile = 99.9
num_samples = 64
per_channel = false

[exclude]
op_types = ["Gemm"]
names = ["conv1"]
"""


def test_toml_config_file_has_the_sidecar_schema(tmp_path: Path) -> None:
    path = tmp_path / "quant.toml"
    path.write_text(QUANT_TOML)
    config = config_from_dict(read_config_file(path))
    assert config == qs.StaticInt8(
        calibration="percentile", percentile=99.9, num_samples=64, per_channel=False,
        exclude=qs.NodeSelector(op_types=("Gemm",), names=("conv1",)),
    )


@pytest.mark.parametrize("method", sorted(config_classes()))
def test_every_default_config_round_trips_through_toml(tmp_path: Path, method: str) -> None:
    config = config_classes()[method]()
    path = tmp_path / "c.toml"
    path.write_text(config_to_toml(config))
    assert config_from_dict(read_config_file(path)) == config


def test_round_trip_keeps_odd_strings_floats_and_selectors(tmp_path: Path) -> None:
    config = qs.StaticInt8(
        calibration="entropy", percentile=99.0, reduce_range=True, seed=7,
        exclude=qs.NodeSelector(names=('a "quoted"\\name\t\x7f', "ünï"), patterns=("^conv[12]$",)),
    )
    text = config_to_toml(config)
    assert tomllib.loads(text)["exclude"]["patterns"] == ["^conv[12]$"]
    path = tmp_path / "c.toml"
    path.write_text(text, encoding="utf-8")
    assert config_from_dict(read_config_file(path)) == config


def test_toml_and_json_give_the_same_validation_errors(tmp_path: Path) -> None:
    for name, text in (
        ("c.toml", 'method = "static-int8"\ncalibraton = "entropy"\n'),
        ("c.json", json.dumps({"method": "static-int8", "calibraton": "entropy"})),
    ):
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(qs.ConfigError, match=r"unknown option\(s\) for static-int8: calibraton"):
            config_from_dict(read_config_file(path))


def test_invalid_toml_names_the_file_and_the_place(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('method = "static-int8\n')
    with pytest.raises(qs.ConfigError, match=r"cannot read config file .*bad\.toml: not valid TOML.*line 1"):
        read_config_file(path)


def test_non_utf8_bytes_are_a_config_error(tmp_path: Path) -> None:
    for name in ("latin.toml", "latin.json"):
        path = tmp_path / name
        path.write_bytes(b'method = "static-int8"\n# caf\xe9\n')
        with pytest.raises(qs.ConfigError, match=r"not UTF-8 text: byte 0xe9 at offset 28 \(line 2\)") as info:
            read_config_file(path)
        assert info.value.exit_code == 3


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("deep.json", "[" * 100_000 + "]" * 100_000),
        ("deep2.json", '{"a":' * 50 + "1" + "}" * 50),
        ("deep.toml", "x = " + "[" * 100_000 + "]" * 100_000 + "\n"),
        ("deep2.toml", "x = " + "{a = " * 40 + "1" + "}" * 40 + "\n"),
    ],
)
def test_deeply_nested_files_are_a_config_error_not_a_recursion_error(
    tmp_path: Path, name: str, text: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(qs.ConfigError, match="nests tables or arrays deeper than 16 levels"):
        read_config_file(path)


def test_oversized_and_unreadable_files(tmp_path: Path) -> None:
    big = tmp_path / "big.json"
    big.write_text('{"method": "static-int8", "pad": "' + "x" * (2 << 20) + '"}')
    with pytest.raises(qs.ConfigError, match="larger than 1024 KiB"):
        read_config_file(big)
    with pytest.raises(qs.ConfigError, match=r"cannot read config file .*absent\.toml"):
        read_config_file(tmp_path / "absent.toml")
    with pytest.raises(qs.ConfigError, match="must hold a JSON object"):
        (tmp_path / "list.json").write_text("[1]")
        read_config_file(tmp_path / "list.json")


def test_config_to_toml_refuses_what_toml_cannot_hold() -> None:
    with pytest.raises(qs.ConfigError, match="takes a method config"):
        config_to_toml({"method": "float16"})  # type: ignore[arg-type]


def test_a_whole_sidecar_is_read_as_its_config(tmp_path: Path) -> None:
    config = qs.StaticInt8(calibration="entropy", num_samples=8)
    sidecar = {"schema": "quantscope.sidecar/1", "config": config.to_dict(), "plan": {}}
    path = tmp_path / "model.quantscope.json"
    path.write_text(json.dumps(sidecar))
    assert config_from_dict(read_config_file(path)) == config
