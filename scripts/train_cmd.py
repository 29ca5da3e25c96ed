"""`intformer train`: data -> float baseline and QAT model -> integer export, in a run folder."""
from __future__ import annotations

import time
from pathlib import Path

import click

from model import runfolder
from model.data import load_series
from model.train import bind_data, train_models

from .cli import cli, emit
from .options import configs, data_options, data_spec, model_options


def default_out() -> Path:
    return Path("runs") / time.strftime("run-%Y%m%d-%H%M%S")


def train_run(spec: dict, kw: dict, out: Path | None, force: bool, progress: bool) -> dict:
    mcfg, tcfg = configs(kw)
    series = load_series(**spec)
    bind_data(mcfg, series)
    out = runfolder.prepare(out or default_out(), force)
    trained = train_models(series, mcfg, tcfg, progress=progress)
    runfolder.save(out, trained, spec, mcfg, tcfg.to_dict())
    return {"run": str(out), "data": series.name, "inputs": series.columns, "target": series.target,
            "macs_per_inference": trained.program.macs(), "train_seconds": trained.seconds,
            "epochs": {k: len(v) for k, v in trained.history.items()},
            "best_val_mse": {k: min(e["val_mse"] for e in v) for k, v in trained.history.items()}}


def print_train(r: dict) -> None:
    click.echo(f"run folder      {r['run']}")
    click.echo(f"data            {r['data']}  inputs {', '.join(r['inputs'])} -> {r['target']}")
    click.echo(f"MACs/inference  {r['macs_per_inference']:,}")
    for k, secs in r["train_seconds"].items():
        click.echo(f"{k:<6} trained  {r['epochs'][k]} epochs, {secs:.1f} s, best val MSE {r['best_val_mse'][k]:.5f}")


@cli.command()
@data_options
@model_options
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run folder (default: runs/run-<time>).")
@click.option("--force", is_flag=True, help="Overwrite an existing run folder.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def train(data_path, fmt, target, features, multivariate, fill, sensor, split_time, out, force, as_json, **kw):
    """Train a QAT Transformer forecaster (and its float baseline) and export its integer model."""
    spec = data_spec(data_path, fmt, target, features, multivariate, fill, sensor, split_time)
    emit(train_run(spec, kw, out, force, progress=not as_json), as_json, print_train)
