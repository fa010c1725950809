"""A config composed from a file, options and --set, as every front end composes it; field metadata checks."""

from __future__ import annotations

import dataclasses

import pytest

import quantscope as qs
from quantscope.config import config_classes
from quantscope.config.compose import (
    choose_method,
    compose_config,
    config_from_options,
    parse_settings,
)
from quantscope.config.fields import cli_settings, overrides


def test_method_comes_from_the_flag_the_file_or_the_default() -> None:
    assert choose_method(None, None) == "static-int8"
    assert choose_method(None, {"method": "float16"}) == "float16"
    assert choose_method("float16", {"method": "float16"}) == "float16"
    assert choose_method("cluster", {}) == "cluster"
    with pytest.raises(qs.ConfigError, match=r"--method static-int8 disagrees with f\.json, which says method 'dynamic-int8'"):
        choose_method("static-int8", {"method": "dynamic-int8"}, "f.json")
    with pytest.raises(qs.ConfigError, match="unknown method 'magic'"):
        choose_method("magic", None)


def test_options_and_settings_override_the_file() -> None:
    file = {"method": "static-int8", "num_samples": 4, "seed": 2, "exclude": {"names": ["a"]}}
    config = compose_config("static-int8", file, {"seed": 5, "exclude": {"op_types": ["Conv"]}}, {"bins": 256})
    assert config == qs.StaticInt8(num_samples=4, seed=5, bins=256,
                                   exclude=qs.NodeSelector(names=("a",), op_types=("Conv",)))
    assert file == {"method": "static-int8", "num_samples": 4, "seed": 2, "exclude": {"names": ["a"]}}  # untouched
    with pytest.raises(qs.ConfigError, match="--seed and --set seed"):
        compose_config("static-int8", None, {"seed": 1}, {"seed": 2}, option_names={"seed": "--seed"})


def test_settings_parse_as_json_else_text() -> None:
    assert parse_settings(["min_size=0", "format=qdq", "op_types=[\"Gemm\"]"]) == {
        "min_size": 0, "format": "qdq", "op_types": ["Gemm"]}
    with pytest.raises(qs.ConfigError, match="KEY=VALUE"):
        parse_settings(["min_size"])


def test_parsed_options_become_the_config() -> None:
    cli = cli_settings(config_classes())
    parsed = {"opt_per_tensor": True, "opt_op_types": "Gemm", "opt_reduce_range": False, "opt_exclude_op": ("Conv",)}
    assert overrides(cli, "dynamic-int8", parsed) == {
        "per_channel": False, "op_types": ["Gemm"], "reduce_range": False, "exclude": {"op_types": ["Conv"]}}
    config = config_from_options(None, {"method": "dynamic-int8"}, cli, parsed)
    assert config == qs.DynamicInt8(per_channel=False, op_types=("Gemm",), reduce_range=False,
                                    exclude=qs.NodeSelector(op_types=("Conv",)))
    with pytest.raises(qs.ConfigError, match="--per-tensor does not apply to float16"):
        overrides(cli, "float16", {"opt_per_tensor": True})


@pytest.mark.parametrize("method", sorted(config_classes()))
def test_every_field_documents_itself(method: str) -> None:
    for f in dataclasses.fields(config_classes()[method]):
        assert f.metadata.get("help"), f"{method}.{f.name} has no help"
