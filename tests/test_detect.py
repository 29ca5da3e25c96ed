"""Anomaly detection end to end (issue 13): `--task detect` through train, eval, sim and run on the embedded
UCR series (aeon's wheel, offline) and on the shared SKAB data; the run folder and the export file record
the task and the threshold; eval's JSON holds test.{float,fakequant,integer}.{f1,far,mar} beside the null
detector and the classical baselines; the integer path's flags are the program's own words, equal to the
fake-quant model's; the configuration refuses what a detector cannot be."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import SMALL, invoke, ok, user_error
from intformer.model import modelfile
from intformer.model.config import ModelConfig
from intformer.model.errors import IntformerError
from intformer.model.program import DetectStep

pytestmark = pytest.mark.usefixtures("torch_one_thread")
SKAB = Path(__file__).resolve().parents[2] / "shared" / "data" / "skab"
# the embedded default (aeon's UCR series 135): a small model, a few epochs
SMALL_DETECT = [*SMALL[:6], "--epochs", "2", "--patience", "2", "--max-train-windows", "400"]


@pytest.fixture(scope="module")
def detector_run(tmp_path_factory, torch_one_thread):
    out = tmp_path_factory.mktemp("detect") / "run"
    r = json.loads(ok(invoke("train", "--task", "detect", *SMALL_DETECT, "--out", out, "--json")).stdout)
    return out, r


def test_train_detect_records_the_task_and_threshold(detector_run):
    out, r = detector_run
    assert r["task"] == "detect" and "UCR" in r["protocol"] and r["inputs"]
    info = json.loads((out / "run.json").read_text())
    assert info["task"] == "detect" and info["model"]["task"] == "detect"
    program, header = modelfile.load(out / "model.intf")
    last = program.steps[-1]
    assert header["config"]["task"] == "detect" and isinstance(last, DetectStep)
    assert last.threshold == r["threshold"] > 0
    assert program.input.rows == 8                          # the window, whose last row it reconstructs
    assert program.buffers["out"].cols == len(r["inputs"]) + 2


def test_eval_detect_json(detector_run):
    out, r = detector_run
    e = json.loads(ok(invoke("eval", out, "--json")).stdout)
    assert e["task"] == "detect" and e["threshold"] == r["threshold"] and e["quantile"] == 0.99
    assert set(e["test"]) == {"float", "fakequant", "integer"}
    assert e["score_decay"] == 4                             # the default: smoothed scores, smoothed baselines too
    assert set(e["baselines"]) == {"null", "isolation_forest", "pca_t2q", "isolation_forest_ewma", "pca_t2q_ewma"}
    for m in list(e["test"].values()) + list(e["baselines"].values()):
        assert {"f1", "far", "mar", "tp", "fp", "tn", "fn"} <= set(m)
        assert m["tp"] + m["fp"] + m["tn"] + m["fn"] == e["windows"]
    assert e["baselines"]["null"]["f1"] == 0.0 and e["baselines"]["null"]["mar"] == 1.0
    # the integer flags are the program's words; the fake-quant model's equal them window by window
    assert e["agreement"]["exact_fraction"] == 1.0 and e["agreement"]["flag_fraction"] == 1.0
    assert e["test"]["fakequant"] == e["test"]["integer"]
    assert Path(e["plot"]).is_file()
    text = ok(invoke("eval", out)).stdout
    assert "pca_t2q" in text and "threshold: integer score >" in text


def test_sim_detect_is_bit_exact(detector_run):
    """The accelerator on test windows of the run: every word (errors, score, flag) equal to the reference."""
    out, r = detector_run
    s = json.loads(ok(invoke("sim", out, "--windows", "6", "--engine", "amaranth", "--lanes", "2", "--json")).stdout)
    assert s["task"] == "detect" and s["mismatches"] == 0 and s["words"] == 6 * (len(r["inputs"]) + 2)


def test_commands_refuse_a_run_of_another_task(detector_run):
    out, _ = detector_run
    user_error(invoke("eval", out, "--task", "forecast"), "this is a detect run, not forecast", "--task detect")


def test_run_detect_end_to_end(tmp_path):
    """`intformer run --task detect` on the embedded series, without a build: a report with the detection
    table and the anomaly timeline, and a bit-exact simulation."""
    out = tmp_path / "run"
    r = json.loads(ok(invoke("run", "--task", "detect", *SMALL_DETECT, "--no-build", "--sim-windows", "32",
                             "--out", out, "--json")).stdout)
    assert r["eval"]["task"] == "detect" and r["sim"]["mismatches"] == 0
    text = Path(r["report"]["markdown"]).read_text()
    assert "(anomaly detection)" in text and "| detector | F1 | FAR % | MAR % |" in text
    assert "timeline.png" in text and (out / "report" / "timeline.png").is_file()


def test_config_refuses_what_a_detector_cannot_be():
    with pytest.raises(IntformerError, match="time tokens"):
        ModelConfig(task="detect", inputs=3, skip=False, tokens="series").validate()
    with pytest.raises(IntformerError, match="--no-skip"):
        ModelConfig(task="detect", inputs=3, skip=True, target_index=0).validate()
    cfg = ModelConfig(task="detect", inputs=3, skip=False, window=12).validate()
    assert cfg.outputs == 3 and cfg.input_rows == 12 and cfg.actual_row == 11 and not cfg.use_level
    cfg = ModelConfig(task="detect", inputs=3, skip=False, window=12, detect_mode="forecast").validate()
    assert cfg.input_rows == 13 and cfg.actual_row == 12
    with pytest.raises(IntformerError, match="nothing to reconstruct"):
        ModelConfig(task="detect", inputs=3, skip=False, level=True).validate()


@pytest.mark.skipif(not SKAB.is_dir(), reason=f"the shared SKAB data is not at {SKAB}")
def test_skab_valve1_trains_and_evaluates(tmp_path):
    """SKAB's protocol on the shared valve1 experiments: one model on all 16 training parts; the metrics over
    all test rows; the integer flags equal the fake-quant model's."""
    out = tmp_path / "skab"
    r = json.loads(ok(invoke("train", "--task", "detect", "--data", SKAB, *SMALL_DETECT, "--out", out,
                             "--json")).stdout)
    assert "SKAB protocol" in r["protocol"] and len(r["inputs"]) == 8
    e = json.loads(ok(invoke("eval", out, "--json")).stdout)
    assert e["windows"] == 11760 and e["test"]["integer"]["tp"] + e["test"]["integer"]["fn"] == 6309
    assert e["agreement"]["flag_fraction"] == 1.0
    assert e["baselines"]["pca_t2q"]["f1"] > 0.5             # the classical detector sees valve1's faults
    assert np.isfinite(e["test"]["integer"]["f1"])


def test_infer_detect_over_a_serial_port(detector_run):
    """`intformer infer` on a detector run: the test windows over a (pseudo-terminal) serial port to a device
    that answers with the reference's words; every RESULT, errors, score and flag, checked."""
    from test_board_cli import FakeDevice
    from intformer.model import runfolder
    out, _ = detector_run
    dev = FakeDevice(runfolder.open_run(out).program, mode="ok")
    try:
        r = json.loads(ok(invoke("infer", out, "--port", dev.path, "--timeout", "0.3", "--windows", "6",
                                 "--json")).stdout)
    finally:
        dev.close()
    assert (r["windows"], r["matched"], r["mismatched"], r["failed"]) == (6, 6, 0, 0)
