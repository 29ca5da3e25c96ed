"""`intformer run` end to end, through the installed console script in a real process: a small model on the
embedded default data, trained, evaluated, simulated bit-exactly on every test window with the compiled
engine, built for the iCEBreaker to a bitstream, and written up as a report folder (Markdown, HTML, PNGs)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cli_helpers import SMALL

UP5K_BIN_BYTES = 104090            # an iCE40UP5K bitstream is always this long
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    exe = shutil.which("intformer") or str(Path(sys.executable).with_name("intformer"))
    if not Path(exe).is_file():
        pytest.skip("the intformer console script is not installed (pip install -e .)")
    tmp = tmp_path_factory.mktemp("run_e2e")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([exe, "run", *SMALL, "--lanes", "1", "--out", str(tmp / "run"), "--json"],
                          capture_output=True, text=True, timeout=900, env=env, cwd=tmp)
    return tmp / "run", proc


def test_run_end_to_end_json(finished):
    run, proc = finished
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    r = json.loads(proc.stdout)                # stdout is the JSON document alone (no progress bars)
    assert r["train"]["run"] == str(run)
    assert set(r["eval"]["test"]) == {"fakequant", "integer"}
    assert r["eval"]["agreement"]["exact_fraction"] == 1.0
    sim = r["sim"]
    assert sim["mismatches"] == 0 and sim["windows"] == r["eval"]["windows"]    # every test window
    assert sim["words"] == sim["windows"] * r["config"]["horizon"]
    b = r["build"]
    assert (b["board"], b["lanes"], b["timing_met"]) == ("icebreaker", 1, True)
    assert b["cycles_per_inference"] == sim["cycles_per_inference"]   # the build's figure is the simulated one
    assert Path(b["bitstream"]).stat().st_size == UP5K_BIN_BYTES
    assert json.loads((run / "run.json").read_text())["status"] == "complete"


def test_run_report_files(finished):
    run, proc = finished
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = run / "report"
    for name in ("forecast.png", "errors.png", "training.png", "resources.png"):
        data = (report / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000, name
    md = (report / "report.md").read_text()
    html = (report / "report.html").read_text()
    r = json.loads(proc.stdout)
    verdict = (f"{r['sim']['windows']} test windows, {r['sim']['words']:,} output words compared with the "
               f"integer reference, 0 mismatches")
    for text in (md, html):
        assert verdict in text
        for name in ("forecast.png", "errors.png", "training.png", "resources.png"):
            assert name in text
        assert f"{r['eval']['test']['integer']['mse']:.5f}" in text
        assert "ESTIMATE" in text and "ice40-up5k" in text
    assert html.startswith("<!DOCTYPE html>") and "<table>" in html and "<img" in html
    assert json.loads((report / "result.json").read_text())["sim"] == r["sim"]


def test_run_progress_and_summary(tmp_path):
    """Without --json: the stages on stderr, the summary on stdout; and an existing run is refused."""
    from cli_helpers import invoke, user_error
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "keep.txt").write_text("mine")
    user_error(invoke("run", *SMALL, "--no-build", "--out", tmp_path / "run"), "already exists", "no run", "--force",
               only_line=False)
    assert (tmp_path / "run" / "keep.txt").read_text() == "mine"
    result = invoke("run", *SMALL, "--no-build", "--sim-windows", "3", "--lanes", "2", "--out", tmp_path / "r2")
    assert result.exit_code == 0, (result.output, result.stderr)
    for k in range(1, 6):
        assert f"[{k}/5]" in result.stderr
    assert "summary" in result.stdout and "Bit-exact: 3 test windows" in result.stdout
    assert "No build" in (tmp_path / "r2" / "report" / "report.md").read_text()
