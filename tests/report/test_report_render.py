"""The report: files written by render(), schema round trip, every section, escaping, no URLs."""

from __future__ import annotations

import io
import json
import math
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import matplotlib
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from quantscope.analysis.results import LatencyResult, LayerError, Results, VariantResult
from quantscope.errors import ConfigError, DataError
from quantscope.reporting import _format as f
from quantscope.reporting import load_results, render
from quantscope.reporting.html import SECTIONS, render_html
from quantscope.reporting.markdown import md_escape, render_markdown
from quantscope.reporting.svgbars import hbar_chart
from quantscope.reporting.text import render_text
from report_fixtures import make_results

HOSTILE = "<script>alert('x')</script> | $\\alpha$ & \"q\" `t` *b*"


@pytest.fixture(scope="module")
def results() -> Results:
    return make_results()


RC_SEEN: dict[str, dict] = {}


@pytest.fixture(scope="module")
def report_dir(results: Results, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report") / "nested" / "out"
    RC_SEEN["before"] = dict(matplotlib.rcParams)
    assert render(results, out) == out
    RC_SEEN["after"] = dict(matplotlib.rcParams)
    return out


@pytest.fixture(scope="module")
def html(report_dir: Path) -> str:
    return (report_dir / "index.html").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def hostile_html() -> str:
    return render_html(make_results(hostile=HOSTILE, robustness=True))


def _parse_svg(svg: str) -> ET.Element:
    """Parse an inline SVG as XML (HTML binds the xlink: prefix by itself; XML needs it declared)."""
    return ET.fromstring(svg.replace("<svg", '<svg xmlns:xlink="http://www.w3.org/1999/xlink"', 1))


def test_render_writes_three_files_and_keeps_others(tmp_path: Path) -> None:
    keep = tmp_path / "model.int8.onnx"
    keep.write_bytes(b"not touched")
    results = make_results(robustness=False)
    before = json.dumps(results.to_dict(), sort_keys=True)
    render(results, tmp_path)
    assert json.dumps(results.to_dict(), sort_keys=True) == before  # the input is left unchanged
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "index.html", "model.int8.onnx", "results.json", "summary.md"]
    assert keep.read_bytes() == b"not touched"
    assert not list(tmp_path.glob(".*tmp"))  # no temporary files left behind
    html = (tmp_path / "index.html").read_text(encoding="utf-8")
    # without robustness results the section and its link are absent, the rest is there
    assert 'id="robustness"' not in html and 'href="#robustness"' not in html
    assert 'id="variants"' in html and 'data-plot="quality-vs-size"' in html
    assert "## Robustness" not in (tmp_path / "summary.md").read_text(encoding="utf-8")


def test_results_json_round_trips_and_re_renders_identically(
    results: Results, report_dir: Path, html: str
) -> None:
    loaded = load_results(report_dir / "results.json")
    assert loaded.to_dict() == results.to_dict()
    assert load_results(report_dir).to_dict() == results.to_dict()  # a directory finds results.json
    assert render_html(loaded) == html  # deterministic, and nothing lost on the way


def test_every_section_is_in_the_page(html: str) -> None:
    for sid, title in SECTIONS:
        assert f'<section id="{sid}"><h2>{title}</h2>' in html
        assert f'href="#{sid}"' in html
    assert '<footer id="machine">' in html and "1.32.0" in html
    for plot in ("quality-vs-size", "quality-vs-latency", "robustness-curves", "calibration-effect",
                 "calibration-size"):
        assert re.search(rf'<figure class="plot" data-plot="{plot}"><svg', html), plot
    results = make_results()
    for v in results.variants[1:]:
        assert f'data-plot="sqnr-{v.name}"' in html
        assert f'data-plot="sensitivity-{v.name}"' in html
    assert html.count('<details class="plan"') == len(results.variants) - 1
    best = f.best_variant(results)
    assert best is not None and html.count('<details class="plan" open>') == 1  # only the best
    assert f'<details class="plan" open><summary>{best[0]}:' in html
    assert "Horowitz" in html and "ISSCC 2014" in html and "Assumptions" in html
    for sentence in results.robustness.limitations:  # type: ignore[union-attr]
        assert sentence in html


def test_every_plot_is_well_formed_svg(html: str) -> None:
    svgs = re.findall(r"<svg.*?</svg>", html, flags=re.S)
    assert len(svgs) == html.count('<figure class="plot"') == 2 + 2 * 9 + 3
    ids: list[str] = []
    for svg in svgs:
        root = _parse_svg(svg)
        assert root.tag == "svg", root.tag
        assert len(list(root.iter())) > 20  # drawn content, not an empty frame
        ids += [el.get("id") for el in root.iter() if el.get("id")]
    assert len(ids) == len(set(ids)), "two plots define the same element id"


def test_no_external_urls_scripts_or_files(html: str) -> None:
    assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", html, flags=re.I)
    assert not re.search(r"\bsrc\s*=", html, flags=re.I)
    assert not re.search(r"@import|url\((?!#)", html, flags=re.I)  # url(#clip) is in-page
    assert "<script" not in html.lower() and "<link" not in html.lower()
    hrefs = re.findall(r'href="([^"]*)"', html)
    # in-page links, and the colour bar that matplotlib embeds as a PNG data URI
    assert hrefs and all(h.startswith(("#", "data:image/png;base64,")) for h in hrefs)


def test_hostile_names_are_escaped_everywhere(hostile_html: str) -> None:
    assert "<script" not in hostile_html.lower()
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in hostile_html
    # inside the SVG plots too (matplotlib's and ours): every SVG still parses as XML
    for svg in re.findall(r"<svg.*?</svg>", hostile_html, flags=re.S):
        _parse_svg(svg)
    md = render_markdown(make_results(hostile=HOSTILE))
    assert "<script" not in md
    # a "|" in a name does not add a column: every table row has as many cells as its header
    for block in re.findall(r"(?:^\|.*\|$\n?)+", md, flags=re.M):
        rows = [r for r in block.splitlines() if r.strip()]
        widths = {len(re.split(r"(?<!\\)\|", r)) for r in rows}
        assert len(widths) == 1, rows[:3]


def test_markdown_has_every_section(results: Results, report_dir: Path) -> None:
    md = (report_dir / "summary.md").read_text(encoding="utf-8")
    assert md == render_markdown(results)
    for heading in ("# quantscope report: digits-cnn", "## Variants", "## Per-layer error",
                    "## Sensitivity", "## Plans", "## Energy (estimated)",
                    "## Robustness and limitations", "## Notes and warnings",
                    "## Machine and versions"):
        assert f"\n{heading}\n" in f"\n{md}", heading
    for v in results.variants[1:]:
        assert md_escape(f.worst_layers(v, 1)[0].tensor) in md
    assert "Recommended: static" in md


def test_budget_and_best_follow_the_numbers(results: Results) -> None:
    ref = results.reference
    assert ref is not None
    allowed = results.max_drop * ref.quality["accuracy"]  # type: ignore[operator]
    expected = {v.name for v in results.variants[1:]
                if ref.quality["accuracy"] - v.quality["accuracy"] <= allowed}
    assert f.within_budget(results) == expected
    assert "weight-int4" not in expected and "static-int8-minmax" in expected
    best = f.best_variant(results)
    assert best is not None
    smallest = min(expected, key=lambda n: results.variant(n).size_bytes)
    assert results.variant(best[0]).size_bytes == results.variant(smallest).size_bytes


def test_terminal_table_marks_budget_and_best(results: Results) -> None:
    console = Console(record=True, width=160, color_system=None)
    console.print(render_text(results))
    text = console.export_text()
    best = f.best_variant(results)
    assert best is not None
    rows: dict[str, str] = {}
    variants_part = text.split("worst tensor of each variant")[0]
    for line in variants_part.splitlines():
        cells = line.split()
        for v in results.variants:
            if v.name in cells[:2]:
                rows[v.name] = " ".join(cells[: cells.index(v.name)])  # the marks before the name
    assert set(rows) == {v.name for v in results.variants}
    assert "★" in rows[best[0]]
    assert [n for n, marks in rows.items() if "★" in marks] == [best[0]]
    assert {n for n, marks in rows.items() if "✓" in marks} == f.within_budget(results)
    assert "worst tensor of each variant" in text
    assert "Recommended:" in text


def test_pareto_front() -> None:
    pts = [(1.0, 0.5), (2.0, 0.9), (2.0, 0.8), (3.0, 0.85), (4.0, 0.95), (0.5, math.nan)]
    assert f.pareto_front(pts) == [0, 1, 4]
    assert f.pareto_front([(1.0, 0.5), (2.0, 0.4)], higher_is_better=False) == [0, 1]
    assert f.pareto_front([]) == []


def test_plots_leave_matplotlib_settings_alone(report_dir: Path) -> None:
    assert RC_SEEN["after"] == RC_SEEN["before"]
    assert RC_SEEN["before"]["svg.fonttype"] == matplotlib.rcParamsDefault["svg.fonttype"]


def test_load_results_rejects_bad_files(tmp_path: Path) -> None:
    cases = {
        "missing.json": None,
        "corrupt.json": "{not json",
        "foreign.json": json.dumps({"schema": "something else"}),
        "newer.json": json.dumps({"schema": "quantscope.results", "schema_version": 99}),
        "shape.json": json.dumps({"schema": "quantscope.results", "schema_version": 1,
                                  "variants": [{"name": "x"}]}),
    }
    for name, text in cases.items():
        path = tmp_path / name
        if text is not None:
            path.write_text(text)
        with pytest.raises(DataError, match="results"):
            load_results(path)


def test_render_rejects_what_is_not_results(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="Results"):
        render({"schema": "quantscope.results"}, tmp_path)  # type: ignore[arg-type]


def test_partial_and_non_finite_results_still_render() -> None:
    empty = Results(model={}, data={}, metric="accuracy")
    only_float = Results(model={"name": "m"}, data={"name": "d"}, metric="cosine", variants=[
        VariantResult(name="float", kind="float", path=None, method=None, config=None,
                      size_bytes=10, param_bytes={}, quality={"cosine": 1.0})])
    base = make_results(robustness=False)
    v = base.variants[1]
    odd = replace(v, name="odd", quality={**v.quality, "accuracy": math.nan}, latency=[],
                  energy=None, memory=None, plan=None, sensitivity=[], layers=[
                      LayerError(tensor="same", node="n1", op_type="Conv", sqnr_db=math.inf),
                      LayerError(tensor="broken", node="n2", op_type="Conv", sqnr_db=math.nan)])
    no_budget = replace(base, variants=[*base.variants, odd], max_drop=None)
    for res in (empty, only_float, no_budget):
        html, md = render_html(res), render_markdown(res)
        assert 'id="variants"' in html and "## Variants" in md
        Console(width=200, file=io.StringIO()).print(render_text(res))
    assert "No quantized variant was measured" in render_markdown(empty)
    # columns nothing was measured for are left out, not filled with dashes
    assert "b1, 1 thread" not in render_html(only_float) and "energy" not in render_markdown(only_float)
    assert "b1, 1 thread" in render_html(no_budget)
    assert f.worst_layers(odd)[0].tensor == "broken"  # NaN SQNR ranks worst, inf (exact) last
    assert f.fmt_sqnr(math.inf) == "exact"
    best = f.best_variant(no_budget)
    assert best is not None and "closest to the float model" in best[1]
    assert best[0] == "float16"  # no drop at all


def test_changes_are_shown_in_the_metrics_direction() -> None:
    assert f.fmt_drop("accuracy", 0.004) == "-0.40 pp"  # accuracy fell by 0.4 points
    assert f.fmt_drop("accuracy", 0.0) == "+0.00 pp"
    assert f.fmt_drop("kl", 0.25, higher_is_better=False) == "+0.25"  # kl rose: worse
    assert f.fmt_drop("mean_abs", -0.5, higher_is_better=False) == "-0.5"  # error fell: better
    assert f.fmt_quality("sqnr_db", 31.26) == "31.3 dB" and f.fmt_quality("cosine", 0.99987) == "0.9999"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0.01, 100), st.floats(0, 1)), min_size=1, max_size=12),
       st.booleans())
def test_pareto_front_is_exactly_the_non_dominated_points(
    pts: list[tuple[float, float]], higher: bool
) -> None:
    sign = 1 if higher else -1

    def dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
        no_worse = a[0] <= b[0] and sign * a[1] >= sign * b[1]
        return no_worse and (a[0] < b[0] or sign * a[1] > sign * b[1])

    front = f.pareto_front(pts, higher)
    assert [pts[i][0] for i in front] == sorted(pts[i][0] for i in front)
    for i, p in enumerate(pts):
        dominated = any(dominates(q, p) for q in pts)
        if i in front:
            assert not dominated
        elif not dominated:  # an exact duplicate of a front point is left out once
            assert any(pts[j] == p for j in front)


def test_bar_chart_escapes_and_draws_one_bar_per_value() -> None:
    svg = hbar_chart(["<b>&", "ok"], [3.0, -1.5], ["#c00", "#0c0"], xlabel="x <", title="t&")
    root = ET.fromstring(svg)
    rects = [el for el in root.iter() if el.tag == "rect"]
    assert len(rects) == 2 and "<b>" not in svg and "&lt;b&gt;&amp;" in svg
    with pytest.raises(ValueError, match="one label"):
        hbar_chart(["a"], [1.0, 2.0], ["#000"], xlabel="", title="")


def test_renderers_are_reachable_from_the_package_without_loading_them_early() -> None:
    code = ("import sys, quantscope; "
            "assert 'matplotlib' not in sys.modules and 'quantscope.reporting.html' not in sys.modules; "
            "from quantscope.reporting import render_html, render_markdown, render_text; "
            "assert render_html.__module__ == 'quantscope.reporting.html'; "
            "from quantscope.reporting import render; "
            "assert quantscope.report is render; "  # qs.report(results, dir) is the function
            "import importlib.util; assert importlib.util.find_spec('quantscope.report') is None; "
            "import quantscope.reporting.html; assert quantscope.report is render  # no subpackage shadows it")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr


def test_recommendation_prefers_a_variant_that_is_not_slower_than_float() -> None:
    def variant(name: str, kind: str, size: int, ms: float, acc: float) -> VariantResult:
        return VariantResult(
            name=name, kind=kind, path=None, method=None if kind == "float" else name, config=None,
            size_bytes=size, param_bytes={}, quality={"accuracy": acc},
            latency=[LatencyResult(batch=1, threads=1, median_ms=ms, p90_ms=ms, runs=5)],
        )

    base = Results(model={"name": "m"}, data={"samples": 10}, metric="accuracy", variants=[
        variant("float", "float", 1000, 1.0, 0.9),
        variant("small-slow", "onnx", 100, 1.5, 0.9),
        variant("mid-fast", "onnx", 300, 0.6, 0.9),
        variant("tiny-bad", "onnx", 50, 0.5, 0.5),
    ])
    best = f.best_variant(base)
    assert best is not None and best[0] == "mid-fast" and "not slower than float" in best[1]
    # within a budget: the same preference; the lossy one stays out
    assert f.best_variant(replace(base, max_drop=0.01))[0] == "mid-fast"  # type: ignore[index]
    # when every candidate is slower, the smallest is named and the reason says so
    slow = replace(base, variants=[v for v in base.variants if v.name != "mid-fast"])
    best = f.best_variant(slow)
    assert best is not None and best[0] == "small-slow" and "slower than float" in best[1]
