"""The run report (RUN/report/report.html) rendered in a real browser: headless Chromium (Debian's `chromium`),
driven by Playwright over the DevTools protocol (tests/browser_check.py holds the checks).

A small real run (`intformer run`, the SMALL model, 3 simulated windows, no build: about 40 s on two busy
cores) writes the report; the page must load with every figure decoded at its file's own pixel size, each
with alt text and a visible caption, no failed request, no console message, no script error, nothing past a
desktop's or a phone's right edge, no Markdown left as text. INTFORMER_FULL=1 builds the bitstream too (a few
minutes), so that the resources figure and the board tables are in the page.

The must-fail tests break a copy of that report in the ways the checks are for (a figure deleted, a figure
file corrupt, an <img> pointing nowhere, the narrow-screen table rule removed, a script error, a Markdown
table left unrendered) and require the check to name each break. Skipped, with the reason, only where no
Chromium is installed.
"""
from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path

import pytest

import browser_check
from cli_helpers import SMALL, invoke, ok

FULL = os.environ.get("INTFORMER_FULL") == "1"
# the report names its run folder in a code span: one with no hyphen to break at is wider than a phone
RUN_NAME = "run_folder_named_long_enough_to_need_a_line_break_on_a_phone"
PHONE, DESKTOP = 400, 1280                      # CSS px: a small phone in portrait, a laptop

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(browser_check.missing_reason() is not None, reason=str(browser_check.missing_reason())),
]


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (bytes 16..24)."""
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def report(tmp_path_factory, torch_one_thread) -> Path:
    tmp = tmp_path_factory.mktemp("report_browser")
    build = ["--lanes", "1"] if FULL else ["--no-build", "--sim-windows", "3", "--lanes", "1"]
    ok(invoke("run", *SMALL, *build, "--out", tmp / RUN_NAME))
    return tmp / RUN_NAME / "report"


def broken_copy(report: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "report"
    shutil.copytree(report, copy)
    return copy


@pytest.mark.parametrize("width", [DESKTOP, PHONE])
def test_report_renders_clean(report, tmp_path, width):
    shot = tmp_path / f"report-{width}.png"
    check = browser_check.check_page(report / "report.html", width=width, screenshot=shot)
    assert check.problems == [], "\n".join(check.problems)
    assert check.messages == []
    expected = {"errors.png", "forecast.png", "training.png"} | ({"resources.png"} if FULL else set())
    assert {img["src"] for img in check.images} == expected
    for img in check.images:
        # the browser decoded the very file: its natural size is the PNG's own
        assert (img["naturalWidth"], img["naturalHeight"]) == png_size(report / img["src"]), img
        assert img["caption"] == img["alt"] and len(img["alt"]) > 5, img
        assert img["width"] <= width and img["width"] >= min(img["naturalWidth"], img["column"]) - 1, img
    assert check.facts["page_width"] == check.facts["viewport"]
    assert check.facts["has_viewport_meta"] and check.facts["lang"] == "en"
    assert png_size(shot)[0] == width and png_size(shot)[1] > 1000    # a full-page screenshot was taken


def test_report_missing_figure_is_reported(report, tmp_path):
    copy = broken_copy(report, tmp_path)
    (copy / "forecast.png").unlink()
    problems = browser_check.check_page(copy / "report.html").problems
    assert any("forecast.png" in p and "did not load" in p for p in problems), problems
    assert any(p.startswith("request failed") and "forecast.png" in p for p in problems), problems
    assert not any("errors.png" in p or "training.png" in p for p in problems), problems   # only the broken one


def test_report_corrupt_figure_and_bad_src_are_reported(report, tmp_path):
    copy = broken_copy(report, tmp_path)
    (copy / "training.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)      # a file, but no image in it
    html = (copy / "report.html").read_text()
    (copy / "report.html").write_text(html.replace('src="errors.png"', 'src="figures/errors.png"', 1))
    problems = browser_check.check_page(copy / "report.html").problems
    assert any("'training.png' did not load" in p for p in problems), problems
    assert any("'figures/errors.png' did not load" in p for p in problems), problems
    assert not any("forecast.png" in p for p in problems), problems


def test_report_layout_and_page_errors_are_reported(report, tmp_path):
    copy = broken_copy(report, tmp_path)
    html = (copy / "report.html").read_text()
    # the page as it was before the narrow-screen rule: the model's 11-column table pushes the page sideways
    rule = " display: block; max-width: 100%; overflow-x: auto;"
    wrap = " overflow-wrap: anywhere;"                     # and before long paths could break anywhere
    assert rule in html and wrap in html
    html = html.replace(rule, "").replace(wrap, "")
    html = html.replace("</body>", "<p>| a | b |</p><script>notDefined();</script>\n</body>")
    html = html.replace('<img alt="Validation MSE per epoch"', '<img alt=""')
    (copy / "report.html").write_text(html)
    problems = browser_check.check_page(copy / "report.html", width=PHONE).problems
    assert any(p.startswith("the page scrolls sideways") for p in problems), problems
    assert any(p.startswith("past the viewport's right edge: table") and "window" in p for p in problems), problems
    assert any(p.startswith("past the viewport's right edge: code") for p in problems), problems
    assert any(p.startswith("script error") and "notDefined" in p for p in problems), problems
    assert any(p.startswith("Markdown left as text") for p in problems), problems
    assert any("'training.png' has no alt text" in p for p in problems), problems
    # outermost elements only: the table, not each of its cells
    inner = ("thead", "tbody", "tr", "th", "td")
    assert not any(p.startswith(tuple(f"past the viewport's right edge: {t} " for t in inner))
                   for p in problems), problems
