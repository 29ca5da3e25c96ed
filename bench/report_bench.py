"""Benchmark: the run report in headless Chromium. It renders RUN/report/report.html (tests/browser_check.py:
Playwright driving Debian's `chromium`) at a desktop width and at a phone's, saves a full-page PNG screenshot
of each, and prints beside its bound:

  - the render time (navigation to the `load` event, every figure decoded), bound 2 s per page;
  - the figures the browser drew against the figure files in the report folder (all of them);
  - the problems found (missing or undecoded figures, failed requests, console errors, anything past the
    viewport's edge, Markdown left as text), bound 0;
  - the page's size and the screenshots' paths (they stay out of git: build/ is ignored).

    python bench/report_bench.py [--run RUN] [--out build/report_bench] [--json]

Without --run it makes a small real run with the iCEBreaker build into OUT/run (SMALL of tests/cli_helpers.py,
P = 1: about 4 minutes on two busy cores), so that all four figures are in the page, and keeps it for the
next time. A benchmark, not a test.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests")]      # browser_check, cli_helpers (the package itself is installed)

import browser_check  # noqa: E402

RENDER_BOUND_S = 2.0


def fail(message: str) -> None:
    """One `error: ...` line and exit 2, as the intformer command does for a bad input."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)
WIDTHS = {"desktop": 1280, "phone": 400}


def make_run(out: Path) -> Path:
    """A small real run with its build, made once and kept."""
    run = out / "run"
    if (run / "report" / "report.html").is_file():
        return run
    from click.testing import CliRunner

    from cli_helpers import SMALL
    from intformer.cli import cli
    started = time.perf_counter()
    result = CliRunner().invoke(cli, ["run", *SMALL, "--lanes", "1", "--out", str(run), "--force"])
    if result.exit_code != 0:
        fail(f"intformer run failed ({result.exit_code}): {result.output[-3000:]}")
    print(f"made {run} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, help="a run folder with report/report.html (default: make one)")
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "report_bench")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    reason = browser_check.missing_reason()
    if reason:
        fail(reason)
    run = args.run or make_run(args.out)
    page = run / "report" / "report.html"
    if not page.is_file():
        fail(f"{page} not found (is {run} a finished `intformer run` folder?)")
    files = sorted(p.name for p in page.parent.glob("*.png"))
    rows = []
    for name, width in WIDTHS.items():
        shot = args.out / f"report-{name}.png"
        check = browser_check.check_page(page, width=width, screenshot=shot)
        rows.append({"view": name, "width": width, "render_s": check.seconds,
                     "figures": len(check.images), "figures_loaded": sum(i["naturalWidth"] > 0 for i in check.images),
                     "figure_files": len(files), "problems": check.problems,
                     "page_height": check.facts.get("page_height"), "screenshot": str(shot.resolve())})
    if args.json:
        print(json.dumps({"report": str(page), "views": rows, "render_bound_s": RENDER_BOUND_S}, indent=2))
        return
    print(f"report {page}")
    print(f"{'view':8} {'width':>6} {'render s':>9} {'(bound)':>8} {'figures':>8} {'(files)':>8} {'problems':>9} "
          f"{'(bound)':>8}  screenshot")
    for r in rows:
        print(f"{r['view']:8} {r['width']:>6} {r['render_s']:>9.2f} {RENDER_BOUND_S:>8.1f} "
              f"{r['figures_loaded']:>4}/{r['figures']:<3} {r['figure_files']:>8} {len(r['problems']):>9} {0:>8}  "
              f"{r['screenshot']}")
        for p in r["problems"]:
            print(f"    {p}")
    if any(r["problems"] or r["figures_loaded"] != r["figure_files"] for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
