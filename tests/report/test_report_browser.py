"""index.html in headless Chromium: it renders its tables and plots with no console error.

Chromium is driven over the DevTools protocol (``tests/chromium_cdp.py``). The check is shown to
fail on pages with a script error, a console error, a missing file, a plot without its SVG, and a
request leaving the machine, so a passing report test means something.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from chromium_cdp import INSTALL_HINT, Browser, PageCheck, chromium_binary
from PIL import Image

from quantscope.reporting import render
from quantscope.reporting.html import SECTIONS
from report_fixtures import make_results

XSS = "<img src=x onerror=\"console.error('escaped badly')\">"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    binary = chromium_binary()
    if binary is None:
        pytest.fail(INSTALL_HINT)
    with Browser(binary) as b:
        yield b


def assert_report_rendered(check: PageCheck, variants: int) -> None:
    """What a person opening the report must see, and what must not happen."""
    assert check.errors == [], check.errors
    assert check.remote_requests == [], check.remote_requests
    dom = check.dom
    assert dom["scripts"] == 0
    order = [sid for sid, _ in SECTIONS] + ["machine"]
    assert dom["sections"] == [sid for sid in order if sid in dom["sections"]]  # in page order
    assert {"variants", "tradeoffs", "layers", "plans", "machine"} <= set(dom["sections"])
    tables = {t["cls"]: t for t in reversed(dom["tables"])}
    assert tables["variants"]["rows"] == variants and tables["variants"]["width"] > 300
    assert len(dom["figures"]) >= 2 + 2 * (variants - 1)
    for fig in dom["figures"]:
        assert fig["svg"], f"plot {fig['name']} has no SVG"
        assert fig["width"] > 200 and fig["height"] > 80, fig
        assert fig["shapes"] > 5 and fig["texts"] > 3, fig


def test_report_renders_in_chromium(browser: Browser, tmp_path: Path) -> None:
    results = make_results()
    out = render(results, tmp_path / "report")
    shot = tmp_path / "report.png"
    check = browser.check_page((out / "index.html").as_uri(), screenshot=shot)
    assert_report_rendered(check, len(results.variants))
    assert {"robustness", "energy", "sensitivity", "notes"} <= set(check.dom["sections"])
    names = {f["name"] for f in check.dom["figures"]}
    assert {"quality-vs-size", "quality-vs-latency", "robustness-curves", "calibration-effect",
            "calibration-size"} <= names
    with Image.open(shot) as im:
        assert im.size == (1280, 900)
        gray = im.convert("L")
        dark = sum(gray.histogram()[:200])  # text, table rules and plot marks
        assert dark > 0.01 * im.size[0] * im.size[1], "the screenshot is (nearly) blank"
        assert len(im.convert("RGB").getcolors(1 << 20) or []) > 50  # colour: plots, highlighted rows


def test_hostile_names_do_not_run_in_the_browser(browser: Browser, tmp_path: Path) -> None:
    results = make_results(hostile=XSS)
    out = render(results, tmp_path)
    check = browser.check_page((out / "index.html").as_uri())
    assert_report_rendered(check, len(results.variants))


BAD_PAGES = {
    "script error": "<script>undefinedFunction()</script>",
    "console error": "<script>console.error('broken')</script>",
    "missing file": '<img src="missing.png" alt="">',
    "plot without svg": "",
    "remote request": '<img src="http://127.0.0.1:9/x.png" alt="">',
}


@pytest.mark.parametrize("problem", list(BAD_PAGES))
def test_the_check_fails_on_a_broken_page(browser: Browser, tmp_path: Path, problem: str) -> None:
    good = make_results(robustness=False)
    out = render(good, tmp_path) if problem == "plot without svg" else None
    if out is not None:  # the real report with one plot's SVG removed
        page = (out / "index.html").read_text(encoding="utf-8")
        start = page.index("<svg", page.index('data-plot="quality-vs-size"'))
        page = page[:start] + page[page.index("</svg>", start) + len("</svg>"):]
    else:  # a minimal page that passes the structural checks, plus the problem
        page = (_minimal_page(len(good.variants)) + BAD_PAGES[problem])
    path = tmp_path / "bad.html"
    path.write_text(page, encoding="utf-8")
    check = browser.check_page(path.as_uri())
    with pytest.raises(AssertionError):
        assert_report_rendered(check, len(good.variants))
    if problem in ("script error", "console error", "missing file"):
        assert check.errors
    if problem == "remote request":
        assert check.remote_requests == ["http://127.0.0.1:9/x.png"]


def test_the_minimal_page_passes_without_a_problem(browser: Browser, tmp_path: Path) -> None:
    """The control for the broken pages: each fails because of its problem, not the page."""
    path = tmp_path / "ok.html"
    path.write_text(_minimal_page(10), encoding="utf-8")
    assert_report_rendered(browser.check_page(path.as_uri()), 10)


def _minimal_page(rows: int) -> str:
    svg = ('<svg viewBox="0 0 300 120" width="300" height="120">'
           + "".join(f'<rect x="{i * 20}" y="10" width="10" height="50"/>' for i in range(8))
           + "".join(f'<text x="{i * 40}" y="100">t</text>' for i in range(5)) + "</svg>")
    figs = "".join(f'<figure class="plot" data-plot="p{i}">{svg}</figure>' for i in range(2 * rows))
    body = "".join("<tr><td>x</td></tr>" for _ in range(rows))
    sections = "".join(f'<section id="{sid}"></section>' for sid in
                       ("variants", "tradeoffs", "layers", "plans"))
    return (f'<!DOCTYPE html><html><body>{sections}<table class="variants" style="width:600px"><tbody>{body}</tbody>'
            f'</table>{figs}<footer id="machine"></footer></body></html>')
