"""`intformer sweep`: two worker processes on one Optuna journal storage, pruning before training, resuming,
the Pareto front and the report (the same on a PostgreSQL server, with a killed worker: test_sweep_postgres);
`--task classify` and `--task detect` sweeps (their objective the integer path's test error, as `intformer
eval` reports it; the task recorded with the study)."""
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


# --task classify / detect: the same search, the first objective the integer path's test error. Two trials of
# tiny models on the embedded data sets (BasicMotions; UCR anomaly series 135), with the journal storage.
TINY_SPACE = ["--space", "d_model=8", "--space", "ffn=16", "--space", "heads=1", "--space", "layers=1",
              "--space", "norm=batch", "--space", "softmax=lut", "--space", "lanes=2", "--space", "bits=4,8"]
TASK_ARGS = {"classify": ["--task", "classify", *TINY_SPACE, "--epochs", "3"],
             "detect": ["--task", "detect", *TINY_SPACE, "--space", "window=8", "--epochs", "1",
                        "--max-train-windows", "200"]}
FIGURE = {"classify": "accuracy", "detect": "f1"}


@pytest.fixture(scope="module", params=["classify", "detect"])
def task_swept(request, tmp_path_factory):
    out = tmp_path_factory.mktemp(f"sweep-{request.param}") / "sw"
    r = ok(invoke("sweep", *TASK_ARGS[request.param], "--trials", "2", "--out", out, "--json"))
    return request.param, out, json.loads(r.stdout)


def test_task_sweep_scores_the_integer_path(task_swept):
    task, out, r = task_swept
    assert r["task"] == task and r["storage"] == str(out / "optuna.journal")
    rows = r["trials"]
    assert [t["state"] for t in rows] == ["complete", "complete"]
    for t in rows:
        assert 0 <= t["test_error"] <= 1 and "test_mse" not in t
        assert t["test_error"] == pytest.approx(1 - t[FIGURE[task]], abs=1e-12)
        assert t["latency_us"] == pytest.approx(t["cycles"] / t["clock_mhz"]) and t["latency_us"] > 0
        assert 0 < t["resource_fraction"] <= 1 and t["energy_uj"] > 0
    # the objective is what `intformer eval` reports for the integer path of the trial's run folder
    first = rows[0]
    e = json.loads(ok(invoke("eval", out / "trials" / "0000", "--json")).stdout)
    assert e["task"] == task
    assert e["test"]["integer"][FIGURE[task]] == pytest.approx(first[FIGURE[task]], abs=1e-12)


def test_task_sweep_window(task_swept):
    task, out, r = task_swept
    for t in r["trials"]:
        run = json.loads((out / "trials" / f"{t['number']:04d}" / "run.json").read_text())
        assert run["task"] == task and run["status"] == "complete"
        if task == "classify":        # a .ts series is one window: no dimension, the data's length recorded
            assert "window" not in t["params"] and t["window"] == run["model"]["window"] == 25
        else:
            assert t["params"]["window"] == run["model"]["window"] == 8


def test_task_sweep_report_names_the_objective(task_swept):
    task, out, r = task_swept
    md = (out / "report" / "report.md").read_text()
    assert f"Task: {task}." in md and "`test_error`" in md
    assert "| test error |" in md and ("| test accuracy |" if task == "classify" else "| test F1 |") in md
    assert ("1 - accuracy" if task == "classify" else "1 - F1") in md
    assert "test MSE" not in md
    assert ("The window is no dimension here" in md) == (task == "classify")
    for t in r["summary"]["pareto"]:
        assert f"| {t['number']} | icebreaker |" in md
    assert (out / "report" / "pareto.png").read_bytes().startswith(b"\x89PNG")


def test_study_of_another_task_is_refused(task_swept, tmp_path):
    task, out, _ = task_swept
    other = "detect" if task == "classify" else "classify"
    journal = out / "optuna.journal"
    for args, yours in ((TASK_ARGS[other], other), (SMALL_SPACE, "forecast")):
        user_error(invoke("sweep", *args, "--storage", journal, "--trials", "3", "--out", tmp_path / yours),
                   "was started with other settings", f"task {task!r} (yours: {yours!r})", "--task")
        assert not (tmp_path / yours).exists()          # refused before anything is written
    import optuna

    from intformer.sweep import Settings, storage_for
    settings = Settings(**json.loads((out / "sweep.json").read_text()))
    study = optuna.load_study(study_name="intformer", storage=storage_for(settings))   # untouched: task, trials
    assert study.user_attrs["intformer"]["task"] == task and len(study.trials) == 2
    assert study.metric_names == ["test_error", "latency_us", "resource_fraction", "energy_uj"]


def test_labelled_csv_windows_are_searched(tmp_path):
    # a labelled CSV is cut into windows of the trial's `window` rows: the run folder records that window
    from test_classify import labelled_csv
    data = labelled_csv(tmp_path / "acc.csv")
    out = tmp_path / "sw"
    r = json.loads(ok(invoke("sweep", "--task", "classify", "--data", data, "--label", "activity", "--group",
                             "subject", *TINY_SPACE, "--space", "window=20", "--space", "bits=8", "--epochs", "3",
                             "--trials", "1", "--out", out, "--json")).stdout)
    (t,) = r["trials"]
    assert t["state"] == "complete" and t["params"]["window"] == 20 and 0 <= t["test_error"] <= 1
    run = json.loads((out / "trials" / "0000" / "run.json").read_text())
    assert run["data"]["window"] == run["model"]["window"] == 20 and run["data"]["label"] == "activity"


def test_bad_task_options_fail_before_any_folder(tmp_path):
    # .ts series are one window each: `window` is no dimension to search
    user_error(invoke("sweep", "--task", "classify", "--space", "window=8", "--out", tmp_path / "a"),
               "no window to search", "--length")
    user_error(invoke("sweep", "--task", "classify", "--protocol", "skab", "--out", tmp_path / "a"))
    user_error(invoke("sweep", "--label", "y", "--out", tmp_path / "a"), "add --task classify")
    user_error(invoke("sweep", "--task", "detect", "--data", tmp_path / "nosuch", "--out", tmp_path / "a"))
    assert not (tmp_path / "a").exists()


def test_forecast_study_settings_are_what_they_were():
    # studies started before --task recorded these keys only: a forecasting sweep still records (and so
    # resumes) exactly them, and a study without a task is a forecasting one to every other task
    from intformer.sweep import SPACE, Settings, objective_names, settings_differ, study_settings
    s = Settings(out="o", storage="o/j", study="s", trials=1, space=dict(SPACE), data={})
    old = study_settings(s)
    assert sorted(old) == ["clock_mhz", "epochs", "float_baseline", "max_train_windows", "space"]
    assert objective_names() == ("test_mse", "latency_us", "resource_fraction", "energy_uj")
    assert settings_differ(old, study_settings(s)) == ""
    s.task = "detect"
    assert settings_differ(old, study_settings(s)) == "task 'forecast' (yours: 'detect')"
    assert objective_names("detect")[0] == "test_error"


def test_mixed_precision_pays_in_cycles():
    """The search's attn_bits and ffn_bits set each layer's attention and feed-forward tensors' bit widths
    (`sweep_tasks.PART_PREFIXES`, 0: the model's bits): an 8-bit model with 4-bit attention and feed-forward
    parts pairs exactly those parts' steps and runs bit-exact in fewer cycles than the plain 8-bit model."""
    import numpy as np

    from intformer.accel.plan import make_plan
    from intformer.accel.simulate import simulate
    from intformer.model.config import TrainConfig
    from intformer.model.data import load_series
    from intformer.model.intref import run_program
    from intformer.model.train import train_models
    from intformer.sweep import MODEL_KEYS
    from intformer.sweep_tasks import _model_config, part_bits_overrides, precision_label
    from program_factory import random_inputs
    shape = {"window": 8, "d_model": 8, "heads": 1, "layers": 1, "ffn": 16, "bits": 8, "norm": "batch"}
    mixed = {**shape, "attn_bits": 4, "ffn_bits": 4}
    assert part_bits_overrides({**shape, "attn_bits": 0, "ffn_bits": 8}) == {}
    assert part_bits_overrides({**mixed, "layers": 2, "ffn_bits": 0})["l1.kt"] == 4
    assert precision_label(mixed) == "8, attn 4, ffn 4"
    series, cycles = load_series(), {}
    for name, p in (("plain", {**shape, "attn_bits": 0, "ffn_bits": 0}), ("mixed", mixed)):
        mcfg = _model_config("forecast", p, MODEL_KEYS)
        program = train_models(series, mcfg, TrainConfig(epochs=1, max_train_windows=200), progress=False).program
        plan = make_plan(program, 2)
        paired = plan.pairs.steps if plan.pairs else frozenset()
        assert paired == ({"l0.h0.scores", "l0.h0.ctx", "l0.ffn1", "l0.ffn2"} if name == "mixed" else frozenset())
        x = random_inputs(np.random.default_rng(0), program, 2)
        words, cycles[name] = simulate(program, x, 2)
        assert (words == run_program(program, x)).all()
    assert cycles["mixed"] < 0.85 * cycles["plain"], cycles
