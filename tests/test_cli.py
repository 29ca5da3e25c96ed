"""The `intformer` command line: help, train/eval/run results as JSON, run folders, and bad input turned into
exit status 2 with one line "error: ..." on stderr and no traceback.

The cases run in-process through click's CliRunner; tests/test_run_report.py runs the installed console script
(`intformer run` end to end) in a real process.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from intformer.cli import cli

pytestmark = pytest.mark.usefixtures("torch_one_thread")

# a tiny model on the embedded default data (pvlib's TMY3 file): about a second of training
TINY = ["--window", "12", "--d-model", "8", "--ffn", "16", "--epochs", "1", "--patience", "1",
        "--max-train-windows", "300"]


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=True)


def ok(result):
    assert result.exit_code == 0, (result.exit_code, result.output, result.stderr, result.exception)
    return result


def assert_user_error(result, *words):
    """Exit 2, exactly one line on stderr, "error: " and the named problem, no traceback anywhere."""
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    for w in words:
        assert w in lines[0], (w, lines[0])
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    return lines[0]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, torch_one_thread):
    """Two finished run folders: with the float baseline and without (--no-float)."""
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for name, extra in (("with_float", []), ("no_float", ["--no-float"])):
        result = ok(invoke("train", *TINY, *extra, "--out", root / name, "--json"))
        out[name] = (root / name, json.loads(result.stdout))
    return out


# ------------------------------------------------------------------------------------------------ help

def test_help_lists_and_describes_every_subcommand():
    result = ok(invoke("--help"))
    assert set(cli.commands) >= {"train", "eval", "run"}
    for name in cli.commands:
        assert name in result.output
        sub = ok(invoke(name, "--help"))
        assert sub.output.startswith(f"Usage: cli {name}") or f"{name} [OPTIONS]" in sub.output, sub.output
        assert "--help" in sub.output
        assert ok(invoke(name, "-h")).output == sub.output
    train_help = invoke("train", "--help").output
    for opt in ("--data", "--bits", "--heads", "--norm", "--softmax", "--out", "--force", "--json",
                "--max-train-windows", "--float / --no-float"):
        assert opt in train_help, opt


# ------------------------------------------------------------------------------------- train and eval

def test_train_json_and_run_folder(runs):
    path, r = runs["with_float"]
    assert r["run"] == str(path)
    assert r["data"] == "tmy3-greensboro" and r["target"] == "DryBulb" and r["inputs"] == ["DryBulb"]
    assert isinstance(r["macs_per_inference"], int) and r["macs_per_inference"] > 0
    assert set(r["epochs"]) == {"float", "qat"} and set(r["best_val_mse"]) == {"float", "qat"}
    assert all(np.isfinite(v) for v in r["best_val_mse"].values())
    assert {"run.json", "model.intf", "qat.pt", "float.pt", "history.json"} <= {p.name for p in path.iterdir()}
    info = json.loads((path / "run.json").read_text())
    assert info["status"] == "complete" and info["model"]["window"] == 12 and info["model"]["d_model"] == 8
    assert info["train"]["max_train_windows"] == 300


def test_eval_json(runs):
    path, _ = runs["with_float"]
    result = ok(invoke("eval", path, "--json"))
    r = json.loads(result.stdout)
    assert set(r["test"]) == {"float", "fakequant", "integer"}
    for v in r["test"].values():
        assert {"mse", "mae"} <= set(v) and all(np.isfinite(x) for x in v.values())
    assert {"exact_fraction", "max_abs_lsb"} <= set(r["agreement"])
    assert r["agreement"]["exact_fraction"] == 1.0 and r["agreement"]["max_abs_lsb"] == 0.0
    assert r["test"]["integer"]["mse"] == pytest.approx(r["test"]["fakequant"]["mse"], rel=1e-9)
    assert {"mse", "mae"} <= set(r["baselines"]["persistence"])
    assert r["windows"] > 0
    assert Path(r["plot"]).is_file() and Path(r["plot"]).parent == path
    # the table (no --json) says the same in words
    table = ok(invoke("eval", path, "--plot", path.parent / "other.png")).output
    assert "test windows" in table and "fake-quant vs integer: 100.00 %" in table
    assert (path.parent / "other.png").is_file()


def test_eval_of_the_export_file_alone(runs):
    path, _ = runs["with_float"]
    r = json.loads(ok(invoke("eval", path / "model.intf", "--json", "--plot", path.parent / "alone.png")).stdout)
    assert "integer" in r["test"] and np.isfinite(r["test"]["integer"]["mse"])
    assert r["windows"] > 0 and "persistence" in r["baselines"]


def test_no_float_run(runs):
    path, r = runs["no_float"]
    assert set(r["epochs"]) == {"qat"} and set(r["train_seconds"]) == {"qat"}
    assert not (path / "float.pt").exists()
    ev = json.loads(ok(invoke("eval", path, "--json")).stdout)
    assert "float" not in ev["test"]
    assert set(ev["test"]) == {"fakequant", "integer"}
    assert ev["agreement"]["exact_fraction"] == 1.0


def test_existing_run_folder_refused_without_force(runs, tmp_path):
    src, _ = runs["with_float"]
    folder = tmp_path / "run"
    shutil.copytree(src, folder)
    (folder / "notes.txt").write_text("mine")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    line = assert_user_error(invoke("train", *TINY, "--out", folder, "--json"), "already exists", "--force")
    assert str(folder) in line
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before          # untouched
    r = json.loads(ok(invoke("train", *TINY, "--seed", "1", "--out", folder, "--force", "--json")).stdout)
    assert r["run"] == str(folder)
    assert not (folder / "notes.txt").exists()                                   # replaced, not merged
    assert json.loads((folder / "run.json").read_text())["status"] == "complete"
    assert json.loads((folder / "run.json").read_text())["train"]["seed"] == 1


# -------------------------------------------------------------------------------------------- bad input

def test_missing_data_file(tmp_path):
    out = tmp_path / "run"
    assert_user_error(invoke("train", *TINY, "--data", tmp_path / "nope.csv", "--out", out),
                      "nope.csv", "file not found")
    assert not out.exists()                    # nothing was created for a run that could not start


def test_unknown_column(tmp_path):
    assert_user_error(invoke("train", *TINY, "--target", "Nope", "--out", tmp_path / "run"),
                      "no column named 'Nope'", "DryBulb")
    assert not (tmp_path / "run").exists()


def test_heads_must_divide_d_model(tmp_path):
    assert_user_error(invoke("train", *TINY, "--heads", "3", "--out", tmp_path / "run"),
                      "--heads 3 does not divide --d-model 8")
    assert not (tmp_path / "run").exists()


def test_bits_out_of_range(tmp_path):
    assert_user_error(invoke("train", *TINY, "--bits", "9", "--out", tmp_path / "run"),
                      "--bits must be between 2 and 8", "9")
    assert not (tmp_path / "run").exists()


def test_malformed_csv(tmp_path):
    n = 300
    df = pd.DataFrame({"time": pd.date_range("2021-01-01", periods=n, freq="h").strftime("%Y-%m-%d %H:%M:%S"),
                       "y": np.round(np.sin(np.arange(n) / 5), 4).astype(str)})
    df.loc[57, "y"] = "abc"
    path = tmp_path / "bad.csv"
    df.to_csv(path, index=False)
    line = assert_user_error(invoke("train", *TINY, "--data", path, "--out", tmp_path / "run"),
                             "'abc' is not a number", "bad.csv")
    assert "59" in line                        # the file line: header is line 1, row 57 is line 59


def test_corrupt_export_given_to_eval(runs, tmp_path):
    src, _ = runs["with_float"]
    folder = tmp_path / "run"
    shutil.copytree(src, folder)
    raw = bytearray((folder / "model.intf").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (folder / "model.intf").write_bytes(bytes(raw))
    assert_user_error(invoke("eval", folder), "model.intf", "checksum mismatch")
    assert_user_error(invoke("eval", folder / "model.intf"), "checksum mismatch")
    (folder / "model.intf").write_bytes(b"")
    assert_user_error(invoke("eval", folder), "model.intf")


def test_eval_on_a_half_written_run_folder(runs, tmp_path):
    src, _ = runs["with_float"]
    folder = tmp_path / "run"
    shutil.copytree(src, folder)
    (folder / "run.json").write_text(json.dumps({"status": "training", "started": 0}))
    assert_user_error(invoke("eval", folder), "did not finish", "'training'", "--force")
    assert_user_error(invoke("eval", tmp_path / "elsewhere"), "not a run folder")


def test_sim_compares_every_word(tmp_path):
    """`intformer sim` on a small trained run: JSON fields, every word compared, zero mismatches."""
    from click.testing import CliRunner

    from intformer.cli import cli

    run = tmp_path / "run"
    r = CliRunner().invoke(cli, ["train", "--epochs", "1", "--max-train-windows", "200", "--window", "8",
                                 "--d-model", "8", "--ffn", "16", "--horizon", "2", "--no-float",
                                 "--out", str(run), "--json"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["sim", str(run), "--windows", "2", "--lanes", "2", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    for key in ("engine", "windows", "words", "mismatches", "cycles_per_inference", "macs_per_inference",
                "lanes", "sim_cycles_per_second"):
        assert key in out
    assert out["windows"] == 2 and out["words"] == 4 and out["mismatches"] == 0
    assert out["cycles_per_inference"] >= out["macs_per_inference"] / 2
