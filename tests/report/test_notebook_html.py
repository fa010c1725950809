"""Results, QuantPlan and TuneResult as notebook HTML: the report inline, self-contained, escaped,
rendered in headless Chromium inside a page that stands for a notebook."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from chromium_cdp import INSTALL_HINT, Browser, chromium_binary

import quantscope as qs
import tinymodels
from quantscope.reporting.notebook import ROOT, plan_html, results_html, scoped_css, tune_html
from report_fixtures import make_results

XSS = "<img src=x onerror=\"console.error('escaped badly')\">"
HOST = ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>notebook</title>"
        "<style>body {{ font-family: serif; }}</style></head><body><div class='cell'><p id='host'>In [1]:</p>"
        "<div class='output'>{}</div></div></body></html>")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    binary = chromium_binary()
    if binary is None:
        pytest.fail(INSTALL_HINT)
    with Browser(binary) as b:
        yield b


def show(browser: Browser, tmp_path: Path, fragment: str, name: str = "nb.html") -> dict:
    page = tmp_path / name
    page.write_text(HOST.format(fragment), encoding="utf-8")
    check = browser.check_page(page.as_uri())
    assert check.errors == [], check.errors
    assert check.remote_requests == [], check.remote_requests
    assert check.dom["scripts"] == 0 and check.dom["title"] == "notebook"
    return check.dom


def test_results_render_inline_with_tables_and_plots(browser: Browser, tmp_path: Path) -> None:
    results = make_results()
    html = results_html(results)
    assert html.startswith(f'<div class="{ROOT}">') and "<html" not in html and "<script" not in html
    dom = show(browser, tmp_path, html)
    tables = {t["cls"]: t for t in reversed(dom["tables"])}
    assert tables["variants"]["rows"] == len(results.variants)
    assert len(dom["figures"]) >= 2
    for fig in dom["figures"]:
        assert fig["svg"] and fig["width"] > 200 and fig["shapes"] > 5, fig
    assert {"variants", "tradeoffs", "plans", "machine"} <= set(dom["sections"])


def test_hostile_names_are_escaped(browser: Browser, tmp_path: Path) -> None:
    html = results_html(make_results(hostile=XSS))
    assert XSS not in html
    show(browser, tmp_path, html)  # no console error: the onerror never ran


def test_the_stylesheet_is_scoped_to_the_output() -> None:
    css = scoped_css()
    selectors = [s.strip() for block in re.findall(r"([^{}]+)\{", css) for s in block.split(",")]
    assert selectors and all(s.startswith(f".{ROOT}") for s in selectors), selectors
    assert f".{ROOT} {{" in css  # body's and :root's rules apply to the output's own div


def test_a_plan_and_a_tune_result_render(browser: Browser, tmp_path: Path) -> None:
    model = qs.load(tinymodels.save(tinymodels.conv_bn_relu(), tmp_path / "m.onnx"))
    calib = qs.Dataset.from_arrays(np.random.default_rng(0).standard_normal((8, 3, 16, 16)).astype(np.float32))
    q = qs.quantize(model, qs.StaticInt8(exclude={"names": ["conv1"]}), calib)
    html = plan_html(q.plan)
    dom = show(browser, tmp_path, html, "plan.html")
    tables = {t["cls"]: t["rows"] for t in dom["tables"]}
    assert tables["decisions"] == len(q.plan.decisions) and tables["quantized-ops"] >= 1
    assert "conv1" in html and "static-int8" in html
    results = make_results(hostile=XSS)
    tuned = SimpleNamespace(name=results.variants[1].name, reasons=[f"chose it because {XSS}"],
                            float_nodes=("conv1",), results=results)
    html = tune_html(tuned)
    assert XSS not in html and "kept in float: conv1" in html
    show(browser, tmp_path, html, "tune.html")


def test_results_plan_and_tune_result_render_in_notebooks() -> None:
    """Jupyter calls ``_repr_html_``: the classes themselves carry it."""
    from quantscope.analysis.results import Results
    from quantscope.analysis.tune import TuneResult
    from quantscope.plan import QuantPlan

    for cls in (Results, QuantPlan, TuneResult):
        assert callable(getattr(cls, "_repr_html_", None)), cls.__name__
