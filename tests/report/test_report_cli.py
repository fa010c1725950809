"""``quantscope report results.json [-o out/]`` re-renders; a bad results file exits 3."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import quantscope as qs
from quantscope import cli
from quantscope.cli import main
from quantscope.reporting import load_results
from report_fixtures import make_results


def test_report_verb_re_renders_into_another_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli.console, "width", 200)
    results = make_results(robustness=False)
    src = results.save(tmp_path / "results.json")
    out = tmp_path / "elsewhere"
    run = CliRunner().invoke(main, ["report", str(src), "-o", str(out)])
    assert run.exit_code == 0, run.output
    html = (out / "index.html").read_text(encoding="utf-8")
    for v in results.variants:
        assert f"<td class=\"l\">{v.name}</td>" in html
    assert "## Variants" in (out / "summary.md").read_text(encoding="utf-8")
    assert load_results(out / "results.json").to_dict() == results.to_dict()
    assert "static-int8-entropy" in run.output
    assert str(out / "index.html") in "".join(run.output.split())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere", "results.json"]


def test_report_verb_defaults_to_the_results_directory(tmp_path: Path) -> None:
    qs.report(make_results(robustness=False), tmp_path)  # the public name writes the same files
    (tmp_path / "index.html").unlink()
    run = CliRunner().invoke(main, ["report", str(tmp_path / "results.json")])
    assert run.exit_code == 0, run.output
    assert (tmp_path / "index.html").stat().st_size > 10_000


def test_report_verb_exits_3_on_a_bad_file(tmp_path: Path) -> None:
    bad = tmp_path / "results.json"
    bad.write_text(json.dumps({"schema": "quantscope.results", "schema_version": 1,
                               "variants": "not a list"}))
    for path in (bad, tmp_path / "missing.json"):
        run = CliRunner().invoke(main, ["report", str(path), "-o", str(tmp_path / "out")])
        assert run.exit_code == 3, run.output
        assert "results" in run.output and "quantscope analyze" in run.output
    assert not (tmp_path / "out").exists()
