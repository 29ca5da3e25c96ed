"""`intformer sweep`: two worker processes on one Optuna journal storage, pruning before training, resuming,
the Pareto front and the report (the same on a PostgreSQL server, with a killed worker: test_sweep_postgres)."""
from __future__ import annotations

import json

import pytest

from cli_helpers import invoke, ok, user_error

pytestmark = pytest.mark.usefixtures("torch_one_thread")

SMALL_SPACE = ["--space", "window=8", "--space", "d_model=8", "--space", "ffn=16", "--space", "heads=1",
               "--space", "layers=1", "--space", "norm=batch", "--space", "lanes=1,2", "--space", "bits=4,8",
               "--epochs", "1", "--max-train-windows", "200"]


def dominates(a: dict, b: dict) -> bool:
    keys = ("test_mse", "latency_us", "resource_fraction", "energy_uj")
    return all(a[k] <= b[k] for k in keys) and any(a[k] < b[k] for k in keys)


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "sw"
    r = ok(invoke("sweep", *SMALL_SPACE, "--trials", "6", "--workers", "2", "--out", out, "--json"))
    return out, json.loads(r.stdout)


def test_two_workers_share_one_storage(swept):
    out, r = swept
    assert r["storage"] == str(out / "optuna.journal") and (out / "optuna.journal").stat().st_size > 0
    rows = r["trials"]
    # the workers count and ask under one lock (a file lock beside the journal): exactly 6, numbered 0..5
    assert [t["number"] for t in rows] == list(range(6))
    assert len({t["worker"] for t in rows}) == 2
    assert {t["state"] for t in rows} <= {"complete", "pruned"}     # no failed trial
    assert any(t["state"] == "complete" for t in rows)
    for t in (t for t in rows if t["state"] == "complete"):                              # each complete trial is a run folder `intformer build` takes
        assert json.loads((out / "trials" / f"{t['number']:04d}" / "run.json").read_text())["status"] == "complete"
        assert t["latency_us"] == pytest.approx(t["cycles"] / t["clock_mhz"])
        assert 0 < t["resource_fraction"] <= 1 and t["test_mse"] > 0 and t["energy_uj"] > 0


def test_pareto_front_is_the_non_dominated_set(swept):
    _, r = swept
    done = [t for t in r["trials"] if t["state"] == "complete"]
    front = [t for t in done if t["pareto"]]
    assert front
    for t in done:
        dominated = any(dominates(o, t) for o in done)
        assert t["pareto"] == (not dominated), t["number"]


def test_report_files(swept):
    out, r = swept
    md = (out / "report" / "report.md").read_text()
    assert "## Pareto front" in md and "pareto.png" in md
    for t in r["summary"]["pareto"]:
        assert f"| {t['number']} | icebreaker |" in md
    assert (out / "report" / "pareto.png").read_bytes().startswith(b"\x89PNG")
    assert "<table>" in (out / "report" / "report.html").read_text()


def test_resume_adds_trials_and_refuses_to_overwrite(swept):
    out, r = swept
    before = len(r["trials"])
    user_error(invoke("sweep", "--out", out, "--trials", "3"), "already exists", "--resume", "--force")
    r2 = json.loads(ok(invoke("sweep", "--out", out, "--resume", "--trials", str(before + 1), "--json")).stdout)
    assert len(r2["trials"]) == before + 1
    assert [t["number"] for t in r2["trials"][:before]] == [t["number"] for t in r["trials"]]


def test_configurations_that_cannot_fit_are_pruned_before_training(tmp_path):
    out = tmp_path / "sw"
    r = json.loads(ok(invoke("sweep", *SMALL_SPACE, "--space", "lanes=64", "--trials", "2", "--out", out,
                             "--json")).stdout)
    assert [t["state"] for t in r["trials"]] == ["pruned", "pruned"]
    assert all("does not fit the ice40-up5k" in t["pruned"] for t in r["trials"])
    assert not (out / "trials").exists()        # nothing was trained
    assert "Pruned before training" in (out / "report" / "report.md").read_text()


def test_bad_space_and_resume_without_sweep(tmp_path):
    user_error(invoke("sweep", "--space", "depth=3", "--out", tmp_path / "a"), "unknown dimension", "window")
    user_error(invoke("sweep", "--space", "board=nosuch", "--out", tmp_path / "a"), "unknown board")
    user_error(invoke("sweep", "--resume", "--out", tmp_path / "b"), "no sweep to resume")
    assert not (tmp_path / "a").exists()
