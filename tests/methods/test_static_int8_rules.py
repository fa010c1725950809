"""The static-int8 op-rule table: one entry decides an op type; ops without one stay float with a reason."""

from __future__ import annotations

import typing

import pytest

import quantscope as qs
import tinymodels
from quantscope.methods.static_int8 import preview
from quantscope.methods.static_int8.rules import RULES, Kind, SharedScale, StaysFloat, rule_for


def test_every_rule_has_a_known_kind() -> None:
    kinds = set(typing.get_args(Kind))
    assert {rule.kind for rule in RULES.values()} <= kinds
    assert {RULES[op].kind for op in ("Conv", "MatMul", "Gemm")} == {"compute"}
    assert RULES["Add"].kind == "residual" and RULES["MaxPool"].kind == "shared_scale"


def test_an_op_without_a_rule_stays_float_and_says_why() -> None:
    rule = rule_for("HardSwish")
    assert rule.kind == "float"
    assert "HardSwish has no integer kernel" in (rule.check(None, None) or "")  # type: ignore[arg-type]


@pytest.fixture
def model(tmp_path) -> qs.Model:
    return qs.load(tinymodels.save(tinymodels.conv_bn_relu(), tmp_path / "m.onnx"))


def test_one_entry_changes_how_an_op_is_decided(model: qs.Model, monkeypatch: pytest.MonkeyPatch) -> None:
    before = {d.node: d for d in preview(model, qs.StaticInt8())}
    pool = next(d for d in before.values() if d.op_type == "MaxPool")
    assert pool.action == "quantized"
    monkeypatch.setitem(RULES, "MaxPool", StaysFloat("MaxPool kept float by a new rule"))
    after = {d.node: d for d in preview(model, qs.StaticInt8())}
    assert after[pool.node].action == "float" and after[pool.node].reason == "MaxPool kept float by a new rule"
    monkeypatch.setitem(RULES, "MaxPool", SharedScale())
    assert {d.node: d for d in preview(model, qs.StaticInt8())}[pool.node].action == "quantized"
