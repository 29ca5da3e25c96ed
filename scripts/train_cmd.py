"""`intformer train`: data -> float baseline and QAT model -> integer export, in a run folder."""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import click

from intformer.model import runfolder
from intformer.model.data import _window_targets as window_targets, load_series
from intformer.model.errors import IntformerError
from intformer.model.train import (bind_classes, bind_data, bind_detector, detector_windows, train_classifier,
                                   train_detector, train_models)
from intformer.model.tsdata import load_classification

from .output import emit
from .options import classify_data_options, classify_spec, configs, data_options, data_spec, model_options


def default_out() -> Path:
    return Path("runs") / time.strftime("run-%Y%m%d-%H%M%S")


MAX_TOKENS = 512     # attention needs tokens^2 memory per window: beyond this, gigabytes per batch


def train_run(spec: dict, kw: dict, out: Path | None, force: bool, progress: bool, resume: bool = False) -> dict:
    options = {"spec": dict(spec), "kw": {k: list(v) if isinstance(v, tuple) else v for k, v in kw.items()}}
    mcfg, tcfg = configs(kw)
    if mcfg.task == "classify":
        return _train_classifier(spec, mcfg, tcfg, options, out, force, progress, resume)
    if mcfg.task == "detect":
        return _train_detector(spec, mcfg, tcfg, options, out, force, progress, resume)
    series = load_series(**spec)
    bind_data(mcfg, series)
    if mcfg.n_tokens > MAX_TOKENS:
        raise IntformerError(f"--window {mcfg.window}: {mcfg.n_tokens} tokens is more than the {MAX_TOKENS} this "
                             f"intformer trains (attention needs tokens^2 memory); shorten --window")
    for split in ("train", "val", "test"):      # before the run folder exists: a window too long for the data
        window_targets(series, mcfg.window, mcfg.horizon, split)
    out = runfolder.prepare(out or default_out(), force, options, resume=resume)
    try:
        trained = train_models(series, mcfg, tcfg, progress=progress, checkpoints=out)
    except IntformerError:
        if not resume:                          # a fresh folder holds nothing of value: leave nothing behind
            shutil.rmtree(out, ignore_errors=True)
        raise
    runfolder.save(out, trained, spec, mcfg, tcfg.to_dict())
    return {"run": str(out), "data": series.name, "inputs": series.columns, "target": series.target,
            "macs_per_inference": trained.program.macs(), "train_seconds": trained.seconds,
            "epochs": {k: len(v) for k, v in trained.history.items()},
            "best_val_mse": {k: min(e["val_mse"] for e in v) for k, v in trained.history.items()}}


def _train_classifier(spec, mcfg, tcfg, options, out, force, progress, resume) -> dict:
    if spec.get("label") is not None or spec.get("fmt") == "csv":   # a labelled CSV is cut into --window rows
        spec = {**spec, "window": mcfg.window}
    data = load_classification(**spec)
    bind_classes(mcfg, data)
    if mcfg.n_tokens > MAX_TOKENS:
        raise IntformerError(f"{data.source}: series of {mcfg.window} steps are {mcfg.n_tokens} tokens, more than "
                             f"the {MAX_TOKENS} this intformer trains; use --tokens series")
    out = runfolder.prepare(out or default_out(), force, options, resume=resume)
    try:
        trained = train_classifier(data, mcfg, tcfg, progress=progress, checkpoints=out)
    except IntformerError:
        if not resume:
            shutil.rmtree(out, ignore_errors=True)
        raise
    runfolder.save(out, trained, spec, mcfg, tcfg.to_dict(), classes=data.classes)
    return {"run": str(out), "task": "classify", "data": data.name, "inputs": data.channels,
            "classes": data.classes, "length": data.length,
            "series": {k: len(v[1]) for k, v in data.raw.items()},
            "macs_per_inference": trained.program.macs(), "train_seconds": trained.seconds,
            "epochs": {k: len(v) for k, v in trained.history.items()},
            "best_val_loss": {k: min(e["val_loss"] for e in v) for k, v in trained.history.items()}}


def _train_detector(spec, mcfg, tcfg, options, out, force, progress, resume) -> dict:
    from intformer.model.anomaly_data import load_anomaly_spec
    aset = load_anomaly_spec(spec)
    bind_detector(mcfg, aset)
    if mcfg.n_tokens > MAX_TOKENS:
        raise IntformerError(f"--window {mcfg.window}: {mcfg.n_tokens} tokens is more than the {MAX_TOKENS} this "
                             f"intformer trains (attention needs tokens^2 memory); shorten --window")
    for part in ("train", "val", "test"):       # before the run folder exists: a window too long for the data
        detector_windows(aset, mcfg.window, part, mcfg.detect_mode)
    out = runfolder.prepare(out or default_out(), force, options, resume=resume)
    try:
        trained = train_detector(aset, mcfg, tcfg, progress=progress, checkpoints=out, quantile=spec.get("quantile"))
    except IntformerError:
        if not resume:
            shutil.rmtree(out, ignore_errors=True)
        raise
    runfolder.save(out, trained, spec, mcfg, tcfg.to_dict())
    return {"run": str(out), "task": "detect", "data": aset.name, "inputs": aset.channels,
            "protocol": aset.describe(), "threshold": int(trained.program.steps[-1].threshold),
            "macs_per_inference": trained.program.macs(), "train_seconds": trained.seconds,
            "epochs": {k: len(v) for k, v in trained.history.items()},
            "best_val_mse": {k: min(e["val_mse"] for e in v) for k, v in trained.history.items()}}


def resumed_options(out: Path | None, force: bool, kw: dict) -> tuple[dict, dict]:
    """The data spec and options that the interrupted run in `out` recorded (for --resume), over `kw`."""
    if out is None:
        raise IntformerError("--resume needs --out: the folder of the interrupted run")
    if force:
        raise IntformerError("--resume and --force exclude each other: --resume continues the interrupted run "
                             "with its options, --force cleans it for the options given now")
    recorded = runfolder.interrupted_options(out)
    spec, kw = dict(recorded["spec"]), {**kw, **recorded["kw"]}
    kw["bits_override"] = tuple(kw.get("bits_override") or ())
    return spec, kw


def print_train(r: dict) -> None:
    click.echo(f"run folder      {r['run']}")
    if r.get("task") == "classify":
        click.echo(f"data            {r['data']}  {len(r['inputs'])} channels x {r['length']} steps -> "
                   f"{len(r['classes'])} classes ({', '.join(r['classes'])}); series "
                   + ", ".join(f"{k} {n}" for k, n in r["series"].items()))
    elif r.get("task") == "detect":
        click.echo(f"data            {r['data']}  {len(r['inputs'])} channels, every one forecast one step")
        click.echo(f"protocol        {r['protocol']}")
        click.echo(f"threshold       score > {r['threshold']:,} (integer, from the normal validation windows)")
    else:
        click.echo(f"data            {r['data']}  inputs {', '.join(r['inputs'])} -> {r['target']}")
    click.echo(f"MACs/inference  {r['macs_per_inference']:,}")
    loss = "best_val_loss" if r.get("task") == "classify" else "best_val_mse"
    for k, secs in r["train_seconds"].items():
        click.echo(f"{k:<6} trained  {r['epochs'][k]} epochs, {secs:.1f} s, best val "
                   f"{'cross-entropy' if loss == 'best_val_loss' else 'MSE'} {r[loss][k]:.5f}")


@click.command()
@data_options
@classify_data_options
@model_options
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run folder (default: runs/run-<time>).")
@click.option("--force", is_flag=True, help="Overwrite an existing run folder (or clean one an interrupted run left).")
@click.option("--resume", is_flag=True, help="Continue the interrupted run in --out from its last finished epoch, "
                                             "with the data and options recorded in it (the command's own data "
                                             "and model options are ignored).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def train(data_path, fmt, target, features, multivariate, fill, sensor, split_time, out, force, resume,
          as_json, **kw):
    """Train a QAT Transformer forecaster, classifier or anomaly detector (and its float baseline) and export
    its integer model."""
    spec = data_spec(data_path, fmt, target, features, multivariate, fill, sensor, split_time, **classify_spec(kw))
    if resume:
        spec, kw = resumed_options(out, force, kw)
    emit(train_run(spec, kw, out, force, progress=not as_json, resume=resume), as_json, print_train)
