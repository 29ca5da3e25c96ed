"""Render an HTML page in headless Chromium and list what is broken in it: the checks behind
tests/test_report_browser.py and bench/report_bench.py.

Chromium is Debian's `chromium` package, driven over the DevTools protocol by Playwright (pip `playwright`,
whose wheel carries its own driver; its browser download is not needed, `executable_path` names the system
one). As root Chromium needs `--no-sandbox`.

`check_page(path)` loads the file and returns a `PageCheck`: the problems found (empty when the page is
sound), one line each, naming the element; the figures as the browser drew them; the load time. A problem is:

- an image that did not load (`naturalWidth` 0), drew at zero size, has no alt text or no visible caption
  (a <figcaption> in its <figure>);
- an image drawn wider than its natural width (upscaled, blurred) or than the text column;
- a request that failed or answered >= 400, a console error or warning, an uncaught script error;
- an element that sticks out past the viewport's right edge, unless a scrolling box holds it (a wide table
  may scroll inside its own box, the page may not scroll sideways);
- Markdown that did not render: a paragraph starting with `|` (a table the renderer did not take) or
  holding `![` or `](` (an image or a link left as text);
- a table whose rows have other numbers of cells than its header.
"""
from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

# Runs in the page after `load`: every fact the checks need, gathered in one evaluation.
PAGE_FACTS_JS = r"""
() => {
  const vw = document.documentElement.clientWidth;
  const scrolls = (el) => {
    for (let a = el.parentElement; a; a = a.parentElement) {
      const ox = getComputedStyle(a).overflowX;
      if (ox === 'auto' || ox === 'scroll' || ox === 'hidden') return a !== document.documentElement
                                                                    && a !== document.body;
    }
    return false;
  };
  const name = (el) => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '')
                       + (el.getAttribute('src') ? '[src=' + el.getAttribute('src') + ']' : '')
                       + ' "' + (el.textContent || '').trim().slice(0, 40) + '"';
  const images = [...document.images].map((img) => {
    const r = img.getBoundingClientRect();
    const column = img.parentElement.getBoundingClientRect().width;
    return {src: img.getAttribute('src'), alt: img.getAttribute('alt') || '', complete: img.complete,
            naturalWidth: img.naturalWidth, naturalHeight: img.naturalHeight,
            width: r.width, height: r.height, column: column,
            caption: (img.closest('figure') && img.closest('figure').querySelector('figcaption'))
                     ? img.closest('figure').querySelector('figcaption').textContent.trim() : ''};
  });
  const sticksOut = (el) => el.getBoundingClientRect().right > vw + 0.5 && !scrolls(el);
  // the outermost such element only: a table's rows and cells stick out with it
  const overflow = [...document.body.querySelectorAll('*')]
    .filter((el) => sticksOut(el) && !(el.parentElement !== document.body && sticksOut(el.parentElement)))
    .map((el) => name(el) + ' right edge ' + Math.round(el.getBoundingClientRect().right) + ' px');
  const raw = [...document.querySelectorAll('p, li')]
    .filter((el) => { const t = el.textContent.trim(); return t.startsWith('|') || t.includes('![')
                                                             || /\]\([^)]*\)/.test(t); })
    .map(name);
  const tables = [...document.querySelectorAll('table')].map((t, k) => {
    const head = t.querySelectorAll('thead th').length;
    const bad = [...t.querySelectorAll('tbody tr')].filter((tr) => tr.cells.length !== head).length;
    return {index: k, header: head, bad_rows: bad, scroll_width: t.scrollWidth, width: t.clientWidth};
  });
  return {viewport: vw, page_width: document.documentElement.scrollWidth,
          page_height: document.documentElement.scrollHeight, title: document.title,
          lang: document.documentElement.lang, images, overflow, raw, tables,
          has_viewport_meta: !!document.querySelector('meta[name=viewport]')};
}
"""


def find_chromium() -> str | None:
    """The system Chromium: $INTFORMER_CHROMIUM, else the first of CHROMIUM_NAMES on PATH."""
    env = os.environ.get("INTFORMER_CHROMIUM")
    if env:
        return env if Path(env).is_file() else None
    return next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)


def missing_reason() -> str | None:
    """Why the browser check cannot run here (None when it can). Only the browser may be missing: Playwright
    is in the test extra, so a missing one is an install to fix, and fails the test where it is imported."""
    if find_chromium() is None:
        return "no Chromium on PATH (Debian: apt-get install chromium; or set INTFORMER_CHROMIUM)"
    return None


@dataclass
class PageCheck:
    problems: list[str]
    images: list[dict]
    facts: dict
    seconds: float                    # from navigation to the `load` event and the facts gathered
    messages: list[str] = field(default_factory=list)       # every console line, for the record
    screenshot: str | None = None


def problems_of(facts: dict, failed: list[str], console: list[tuple[str, str]], errors: list[str]) -> list[str]:
    """The problems in the gathered facts and events (see the module docstring)."""
    out = [f"request failed: {f}" for f in failed]
    out += [f"console {kind}: {text}" for kind, text in console if kind in ("error", "warning")]
    out += [f"script error: {e}" for e in errors]
    for img in facts["images"]:
        what = f"figure {img['src']!r}"
        if not img["complete"] or img["naturalWidth"] == 0:
            out.append(f"{what} did not load (naturalWidth 0)")
            continue
        if img["width"] < 1 or img["height"] < 1:
            out.append(f"{what} drawn at {img['width']:.0f} x {img['height']:.0f} px")
        if not img["alt"].strip():
            out.append(f"{what} has no alt text")
        if not img["caption"]:
            out.append(f"{what} has no visible caption (a <figure> with a <figcaption>)")
        if img["width"] > img["naturalWidth"] + 0.5:
            out.append(f"{what} upscaled: drawn {img['width']:.0f} px wide, natural {img['naturalWidth']} px")
        if img["width"] > img["column"] + 0.5:
            out.append(f"{what} wider ({img['width']:.0f} px) than its column ({img['column']:.0f} px)")
    if facts["page_width"] > facts["viewport"]:
        out.append(f"the page scrolls sideways: {facts['page_width']} px wide in a {facts['viewport']} px viewport")
    out += [f"past the viewport's right edge: {o}" for o in facts["overflow"]]
    out += [f"Markdown left as text: {r}" for r in facts["raw"]]
    out += [f"table {t['index']}: {t['bad_rows']} rows with other than its {t['header']} header cells"
            for t in facts["tables"] if t["bad_rows"]]
    if not facts["title"].strip():
        out.append("the page has no <title>")
    return out


def check_page(path: Path, width: int = 1280, height: int = 900, screenshot: Path | None = None,
               timeout_ms: int = 30_000) -> PageCheck:
    """Load `path` (a local HTML file) in headless Chromium at `width` x `height` CSS px and check it;
    with `screenshot`, save a full-page PNG there."""
    from playwright.sync_api import sync_playwright

    exe = find_chromium()
    if exe is None:
        raise RuntimeError(missing_reason())
    # root (CI, containers) cannot use Chromium's user-namespace sandbox; a container's /dev/shm is often 64 MB,
    # too small for the renderer's shared memory
    args = (["--no-sandbox"] if os.geteuid() == 0 else []) + ["--disable-dev-shm-usage"]
    failed: list[str] = []
    console: list[tuple[str, str]] = []
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=args, headless=True)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.on("requestfailed", lambda r: failed.append(f"{r.url} ({r.failure})"))
            page.on("response", lambda r: r.status >= 400 and failed.append(f"{r.url} (HTTP {r.status})"))
            page.on("console", lambda m: console.append((m.type, m.text)))
            page.on("pageerror", lambda e: errors.append(str(e)))
            started = time.perf_counter()
            page.goto(Path(path).resolve().as_uri(), wait_until="load", timeout=timeout_ms)
            facts = page.evaluate(PAGE_FACTS_JS)
            seconds = time.perf_counter() - started
            if screenshot is not None:
                Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    return PageCheck(problems_of(facts, failed, console, errors), facts["images"], facts, seconds,
                     [f"{k}: {t}" for k, t in console], str(screenshot) if screenshot else None)
