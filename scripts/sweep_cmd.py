"""`intformer sweep`: multi-objective design-space exploration (see scripts/sweep.py) of a forecaster, a
classifier or an anomaly detector (`--task`, scripts/sweep_tasks.py), resumable, with several worker processes
sharing one Optuna storage, and a Pareto report."""
from __future__ import annotations

import json
import multiprocessing
import shutil
import time
from pathlib import Path

import click

from intformer.model.errors import IntformerError

from .output import emit
from .options import TASK_CHOICES, classify_data_options, classify_spec, data_options, data_spec
from .sweep import (SPACE, Settings, check_driver, fail_stale, is_rdb, objective_names, open_study, parse_space,
                    run_worker, shown_url, summary, trial_rows, write_sweep_report)
from .sweep_tasks import ERROR_NAME, labelled_csv, precision_label, trial_data

# epochs per trial by task: a sweep trades epochs for trials (forecast: 10, as it always was; a detector
# trains on thousands of windows like a forecaster); a classifier's epoch is a few batches (BasicMotions: 4
# of 8 series), so it keeps `intformer train --task classify`'s 80
SWEEP_EPOCHS = {"forecast": 10, "classify": 80, "detect": 10}


def _clocks(items) -> dict:
    out = {}
    for item in items:
        name, _, mhz = item.partition("=")
        try:
            out[name.strip()] = float(mhz)
        except ValueError:
            raise IntformerError(f"--clock {item!r}: expected BOARD=MHZ, e.g. icebreaker=18") from None
    return out


def prepare_settings(out: Path, resume: bool, force: bool, make: callable, check: callable) -> Settings:
    """New settings (an empty or new folder), the stored ones (--resume), or refusal; `check` (the study in
    its storage takes these settings) runs before anything is written."""
    stored = out / "sweep.json"
    if resume:
        if not stored.exists():
            raise IntformerError(f"{out}: no sweep to resume (no sweep.json); start one without --resume")
        return Settings(**json.loads(stored.read_text()))
    full = out.exists() and any(out.iterdir())
    if full and not force:
        raise IntformerError(f"{out}: a sweep folder already exists; add --resume to continue it (with a "
                             f"larger --trials) or --force to start over")
    settings = make()
    check(settings)
    if full:
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    stored.write_text(json.dumps(settings.to_dict(), indent=2, sort_keys=True))
    return settings


def print_sweep(r: dict) -> None:
    s, task = r["summary"], r["task"]
    error = ERROR_NAME[task]
    click.echo(f"{s['trials']} trials: " + ", ".join(f"{v} {k}" for k, v in sorted(s["states"].items()))
               + f"; {s['workers']} worker process(es); {r['seconds']:.0f} s")
    click.echo(f"Pareto front ({len(s['pareto'])} trials; objectives: {', '.join(objective_names(task))}):")
    for p in sorted(s["pareto"], key=lambda p: p["latency_us"]):
        q = p["params"]
        shown = f"MSE {p[error]:.5f}" if task == "forecast" else f"test error {p[error]:.4f}"
        click.echo(f"  #{p['number']:<4} {q['board']} P={q['lanes']} n={q.get('window', p.get('window'))} "
                   f"d={q['d_model']} h={q['heads']} L={q['layers']} ffn={q['ffn']} bits {precision_label(q)} {q['norm']} "
                   f"{q['softmax']}: {shown}, {p['latency_us']:,.1f} us, {100 * p['resource_fraction']:.0f} %, "
                   f"{p['energy_uj']:.3g} uJ  -> {p['run']}")
    click.echo(f"report: {r['report']['markdown']}")


def task_data_options(task: str, kw: dict) -> dict:
    """The classification and detection data options for the data spec: a classifier's or detector's all (as
    `intformer train --task` records them); a forecaster's only those given (`load_series` refuses them,
    naming --task), so that a forecasting sweep's spec is what it always was."""
    more = classify_spec(kw)
    return more if task != "forecast" else {k: v for k, v in more.items() if v is not None}


def check_data(settings: Settings) -> None:
    """The data loads for the task (and a labelled CSV cuts into the first window choice), before anything is
    written: bad data fails in one line, not in every trial."""
    data = trial_data(settings.task, settings.data)
    if settings.task == "classify" and labelled_csv(settings.data):
        data.data(settings.space["window"][0])


@click.command()
@data_options
@classify_data_options
@click.option("--task", type=click.Choice(TASK_CHOICES), default="forecast", show_default=True,
              help="What the trials train: forecast (objective test_mse, the integer test MSE), classify "
                   "(test_error = 1 - integer test accuracy; a .ts pair or the embedded BasicMotions, whose "
                   "series length is the window, so `window` is no dimension) or detect (test_error = 1 - F1 of "
                   "the integer flags, as SKAB's leaderboard computes it; a SKAB folder, or the embedded UCR "
                   "series).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/sweep"),
              show_default=True, help="Sweep folder: settings, the trials' run folders, the report.")
@click.option("--trials", type=click.IntRange(min=1), default=40, show_default=True,
              help="Trials in the study in all (complete, pruned or failed), across workers and resumptions.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Worker processes on this machine, sharing the storage.")
@click.option("--space", multiple=True, metavar="NAME=A,B,...",
              help="Choices of one dimension (repeatable); dimensions: " + ", ".join(SPACE) + ".")
@click.option("--epochs", type=click.IntRange(min=1), default=None,
              help="Epochs per trial [default: 10; --task classify: 80].")
@click.option("--max-train-windows", type=click.IntRange(min=1), default=None,
              help="Train each trial on a random subset of this many windows (classify: series).")
@click.option("--float/--no-float", "float_baseline", default=False, show_default=True,
              help="Train a float baseline first in each trial (QAT then starts from it; twice the time).")
@click.option("--clock", multiple=True, metavar="BOARD=MHZ",
              help="Clock at which latency and energy are reckoned (default: the board's oscillator).")
@click.option("--storage", default=None,
              help="Optuna storage shared by the workers: a journal file path (default SWEEP/optuna.journal) or "
                   "an RDB URL for workers on several machines: postgresql://USER[:PASSWORD]@HOST[:PORT]/DB "
                   "(opened as postgresql+psycopg://, psycopg 3: pip install 'intformer[postgres]'; without a "
                   "password in the URL, libpq's PGPASSWORD or ~/.pgpass give it) or sqlite:///FILE.")
@click.option("--heartbeat", type=click.IntRange(min=1), default=60, show_default=True,
              help="With an RDB storage, seconds between a running trial's heartbeats: a trial silent for 3 of "
                   "them (its worker killed, its machine lost) is marked failed and run again.")
@click.option("--study", default="intformer", show_default=True, help="Study name in the storage.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--resume", is_flag=True, help="Continue the sweep in --out with its stored settings.")
@click.option("--force", is_flag=True, help="Start over in an existing sweep folder (deletes it).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def sweep(data_path, fmt, target, features, multivariate, fill, sensor, split_time, task, out, trials, workers,
          space, epochs, max_train_windows, float_baseline, clock, storage, heartbeat, study, seed, resume, force,
          as_json, **kw):
    """Search the design space (model shape, bits and those of attention and the feed-forward block, lanes,
    norm, softmax, board) of a forecaster, classifier or anomaly detector for the Pareto front of test
    error, latency, resources and energy; configurations that cannot fit are pruned before training."""
    started = time.perf_counter()
    spec = data_spec(data_path, fmt, target, features, multivariate, fill, sensor, split_time,
                     **task_data_options(task, kw))

    def make():
        return Settings(out=str(out), storage=storage or str(out / "optuna.journal"), study=study, trials=trials,
                        space=parse_space(space, task, spec), task=task,
                        epochs=epochs or SWEEP_EPOCHS[task], max_train_windows=max_train_windows,
                        float_baseline=float_baseline, seed=seed, clock_mhz=_clocks(clock), heartbeat=heartbeat,
                        data=spec)

    def check(settings):
        check_data(settings)
        # a study in a database, or in a journal outside this folder, may be another sweep's: its settings
        # must be these (a journal in the folder is made here, or deleted by --force)
        journal = Path(settings.storage)
        if is_rdb(settings.storage) or (journal.exists() and out.resolve() not in journal.resolve().parents):
            open_study(settings, create=True)

    parse_space(space, task, spec)         # bad --space, --clock or --storage fail before any folder is touched
    _clocks(clock)
    if storage and is_rdb(storage):
        check_driver(storage)
    settings = prepare_settings(out, resume, force, make, check)
    settings.trials, settings.heartbeat = trials, heartbeat
    study_obj = open_study(settings, create=True)
    # a journal has no heartbeat: what an interrupted sweep left running is failed here (a database's
    # workers find their dead peers' trials by the heartbeat, and others may still be running theirs)
    stale = fail_stale(study_obj) if resume and not is_rdb(settings.storage) else 0
    if stale and not as_json:
        click.echo(f"{stale} trial(s) left running by an interrupted sweep marked failed", err=True)
    if not as_json:
        click.echo(f"sweep {settings.study}: {trials} trials, {workers} worker(s) here, storage "
                   f"{shown_url(settings.storage)}", err=True)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=run_worker, args=(settings, as_json, k)) for k in range(1, workers)]
    for p in procs:
        p.start()
    try:
        run_worker(settings, as_json)
    finally:
        for p in procs:
            p.join()
    failed = [p.exitcode for p in procs if p.exitcode]
    rows = trial_rows(open_study(settings, create=True), settings.task)
    result = {"sweep": str(out), "storage": shown_url(settings.storage), "study": settings.study,
              "task": settings.task, "summary": summary(rows), "trials": rows,
              "seconds": time.perf_counter() - started}
    result["report"] = write_sweep_report(out / "report", rows, settings)
    emit(result, as_json, print_sweep)
    if failed:
        raise IntformerError(f"{len(failed)} worker process(es) exited with an error (exit codes {failed}); the "
                             f"trials they finished are kept: run again with --resume")
