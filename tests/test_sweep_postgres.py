"""`intformer sweep --storage postgresql://...` against a real PostgreSQL server that this module starts
(tests/pg_server.py: Debian's binaries, a cluster in a temporary folder, 127.0.0.1 and a free port, password
authentication) and stops at the end, also on failure.

Two separate `intformer sweep` processes (as on two machines: each its own --out, the same --study) share the
database. One is frozen (SIGSTOP) while it trains a trial, checked to be mid-trial, and killed (SIGKILL); the
other finishes the study. Checked against what Optuna holds in the database: both workers ran trials; the
trial numbers are contiguous, the budget is met exactly and each finished trial has one run folder; the
killed worker's trial is FAIL (its heartbeat stopped) and a retry with its parameters ran on the other worker;
the surviving worker's report equals the study (its Pareto table is `study.best_trials`); the password never
reaches the output; optuna-dashboard reads the same study.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from pg_server import PgServer, free_port, pg_bin

BIN = pg_bin()
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(BIN is None, reason="no PostgreSQL server binaries in /usr/lib/postgresql/*/bin "
                                                     "(apt-get install postgresql)")]

TRIALS = 8
# a small space (every trial trains in about a second) with room for the sampler to vary: bits x lanes x
# softmax, some of which the UP5K cannot fit (pruned before training)
SPACE = ["--space", "window=8", "--space", "d_model=8", "--space", "ffn=16", "--space", "heads=1",
         "--space", "layers=1", "--space", "norm=batch", "--space", "lanes=1,2", "--space", "bits=4,8",
         "--epochs", "1", "--max-train-windows", "1000"]
STUDY = "two-machines"


def start_worker(pg: PgServer, out: Path, *extra) -> subprocess.Popen:
    """One `intformer sweep` process, as a user starts it on each machine."""
    out.parent.mkdir(parents=True, exist_ok=True)
    log = open(out.parent / f"{out.name}.stderr", "w")
    return subprocess.Popen([sys.executable, "-c", "from intformer.cli import main; main()", "sweep", *SPACE,
                             "--trials", str(TRIALS), "--storage", pg.url, "--study", STUDY, "--out", str(out),
                             "--heartbeat", "1", "--json", *extra],
                            stdout=subprocess.PIPE, stderr=log, text=True)


def open_db(pg: PgServer):
    """The study as Optuna reads it from the database, and the storage (uncached) under it."""
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(pg.url.replace("postgresql://", "postgresql+psycopg://"))
    return optuna.load_study(study_name=STUDY, storage=storage), storage


def wait_for(pg: PgServer, pid: int, timeout: float = 240.0):
    """Until worker `pid` has a trial in the study: the study and its (uncached) storage."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            study, storage = open_db(pg)
            if any(t.user_attrs.get("worker") == pid for t in study.get_trials(deepcopy=False)):
                return study, storage
        except KeyError:                              # the study is not created yet
            pass
        time.sleep(0.2)
    raise AssertionError(f"worker {pid} started no trial in {timeout:.0f} s")


def freeze_mid_trial(pg: PgServer, victim: subprocess.Popen, timeout: float = 240.0) -> int:
    """Once the victim has completed a trial and trains its next, freeze it (SIGSTOP) and check that the trial
    is still running: the number of that trial. Frozen, the victim cannot spend the budget before the other
    worker is up, however slowly that one starts on a loaded machine."""
    from optuna.trial import TrialState
    study, storage = wait_for(pg, victim.pid, timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert victim.poll() is None, "the worker to kill ended on its own"
        mine = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("worker") == victim.pid]
        done = [t for t in mine if t.state == TrialState.COMPLETE]
        training = [t for t in mine if t.state == TrialState.RUNNING and t.user_attrs.get("stage") == "training"]
        if done and training:
            os.kill(victim.pid, signal.SIGSTOP)
            if storage.get_trial(training[0]._trial_id).state == TrialState.RUNNING:
                return training[0].number
            os.kill(victim.pid, signal.SIGCONT)        # it finished in between: wait for its next one
        time.sleep(0.05)
    raise AssertionError("the worker to kill trained no second trial (the budget was spent before?)")


@pytest.fixture(scope="module")
def pg():
    pytest.importorskip("psycopg", reason="the postgres extra: pip install -e '.[test,postgres]'")
    server = PgServer(BIN)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def swept(pg, tmp_path_factory):
    root = tmp_path_factory.mktemp("pgsweep")
    started = time.monotonic()
    # the worker to kill starts first (its machine came up first); it is frozen mid-trial until the other has a
    # trial of its own, then killed: no race between its budget and the other's start-up on a loaded machine
    b = start_worker(pg, root / "machine-b")
    a = None
    try:
        wait_for(pg, b.pid)
        a = start_worker(pg, root / "machine-a")
        killed = freeze_mid_trial(pg, b)
        wait_for(pg, a.pid)                           # the other worker is up while the victim is frozen
        os.kill(b.pid, signal.SIGKILL)
        b.wait()
        out, _ = a.communicate(timeout=300)
    finally:
        for p in (a, b):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    stderr = (root / "machine-a.stderr").read_text()
    assert a.returncode == 0, stderr[-3000:]
    return {"root": root, "a": a, "b": b, "killed": killed, "result": json.loads(out), "stderr": stderr,
            "study": open_db(pg)[0], "seconds": time.monotonic() - started}


def test_both_workers_ran_trials(swept):
    from optuna.trial import TrialState
    trials = swept["study"].get_trials()
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert {t.user_attrs["worker"] for t in complete} == {swept["a"].pid, swept["b"].pid}
    assert all(t.user_attrs["host"] for t in trials)
    assert swept["b"].returncode == -signal.SIGKILL
    assert swept["result"]["summary"]["workers"] == 2


def test_no_trial_lost_or_run_twice(swept):
    from optuna.trial import TrialState

    from intformer.sweep import budget_count
    trials = swept["study"].get_trials()
    # the budget exactly (the budget lock: no worker overshoots), plus the killed trial its retry replaced
    assert [t.number for t in trials] == list(range(TRIALS + 1))
    assert budget_count(trials) == TRIALS
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL) for t in trials)
    folders = sorted(p.name for m in ("machine-a", "machine-b") for p in (swept["root"] / m / "trials").glob("*"))
    assert folders == sorted(f"{t.number:04d}" for t in trials if t.state == TrialState.COMPLETE)
    for t in (t for t in trials if t.state == TrialState.COMPLETE):
        assert json.loads((Path(t.user_attrs["run"]) / "run.json").read_text())["status"] == "complete"


def test_killed_workers_trial_failed_and_retried(swept):
    from optuna.trial import TrialState
    trials = swept["study"].get_trials()
    killed = trials[swept["killed"]]
    assert [t.number for t in trials if t.state == TrialState.FAIL] == [killed.number]
    assert killed.user_attrs["worker"] == swept["b"].pid and killed.user_attrs["stage"] == "training"
    retries = [t for t in trials if t.system_attrs.get("retry_history") == [killed.number]]
    assert len(retries) == 1
    retry = retries[0]
    assert retry.number > killed.number and retry.params == killed.params
    assert retry.state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert retry.user_attrs["worker"] == swept["a"].pid
    rows = {r["number"]: r for r in swept["result"]["trials"]}
    assert rows[retry.number]["retry_of"] == killed.number and rows[killed.number]["retried"]
    md = (swept["root"] / "machine-a" / "report" / "report.md").read_text()
    assert re.search(rf"\| {killed.number} \| [^|]+:{swept['b'].pid} \| {retry.number} \|", md), md


def test_report_equals_the_study(swept):
    """The surviving worker waited for every trial, so its report is the finished study as the database
    holds it: the same trials and states, and the Pareto table is study.best_trials with their values."""
    from intformer.sweep import OBJECTIVES
    study, root = swept["study"], swept["root"] / "machine-a" / "report"
    rows = json.loads((root / "trials.json").read_text())
    assert [(r["number"], r["state"]) for r in rows] == [(t.number, t.state.name.lower()) for t in study.get_trials()]
    best = {t.number: t.values for t in study.best_trials}
    assert best
    assert {r["number"]: [r[k] for k in OBJECTIVES] for r in rows if r["pareto"]} == best
    assert {p["number"] for p in swept["result"]["summary"]["pareto"]} == set(best)
    md = (root / "report.md").read_text()
    table = md.split("## Pareto front", 1)[1].split("##", 1)[0]
    assert sorted(int(m) for m in re.findall(r"^\| (\d+) \| icebreaker \|", table, re.M)) == sorted(best)
    for n, values in best.items():
        assert f"| {n} | icebreaker |" in table and f"{values[0]:.5f}" in table


def test_password_is_not_shown(swept, pg):
    result = json.dumps(swept["result"])
    report = "".join(p.read_text() for p in (swept["root"] / "machine-a" / "report").glob("*.*") if p.suffix != ".png")
    for text in (result, swept["stderr"], report):
        assert pg.password not in text
    assert swept["result"]["storage"] == pg.url.replace(pg.password, "***")


def test_optuna_dashboard_reads_the_study(swept, pg):
    """The README's `optuna-dashboard postgresql+psycopg://...` serves the running (here: finished) study."""
    import shutil

    from intformer.sweep import OBJECTIVES
    exe = shutil.which("optuna-dashboard", path=str(Path(sys.executable).parent))
    assert exe, "optuna-dashboard (the postgres extra) is not installed"
    port = free_port()
    url = pg.url.replace("postgresql://", "postgresql+psycopg://")
    proc = subprocess.Popen([exe, url, "--host", "127.0.0.1", "--port", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=5) as r:
                    studies = json.loads(r.read())["study_summaries"]
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read()
                assert time.monotonic() < deadline, "optuna-dashboard did not answer"
                time.sleep(0.3)
        (mine,) = [s for s in studies if s["study_name"] == STUDY]
        assert mine["directions"] == ["minimize"] * 4
        assert mine["user_attrs"] and "space" in json.dumps(mine["user_attrs"])     # the sweep's settings
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies/{mine['study_id']}", timeout=30) as r:
            detail = json.loads(r.read())
        assert len(detail["trials"]) == len(swept["study"].trials)
        assert detail["objective_names"] == list(OBJECTIVES)
        assert {t["number"] for t in detail["best_trials"]} == {t.number for t in swept["study"].best_trials}
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_joining_with_another_space_is_refused(swept, pg, tmp_path):
    """A worker started with another --space would mix two searches in one study: one error, exit 2."""
    out = tmp_path / "machine-c"
    r = subprocess.run([sys.executable, "-c", "from intformer.cli import main; main()", "sweep", *SPACE,
                        "--space", "bits=6", "--trials", str(TRIALS), "--storage", pg.url, "--study", STUDY,
                        "--out", str(out)], capture_output=True, text=True, timeout=120)
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert "was started with other settings" in lines[0] and "bits" in lines[0] and "Traceback" not in r.stderr
    assert not out.exists()
