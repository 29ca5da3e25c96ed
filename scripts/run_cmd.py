"""`intformer run`: the main job. Data -> QAT training (and the float baseline) -> export -> evaluation."""
from __future__ import annotations

from pathlib import Path

import click

from .cli import cli, emit
from .eval_cmd import evaluate_run, print_eval
from .options import data_options, data_spec, model_options
from .train_cmd import print_train, train_run


@cli.command()
@data_options
@model_options
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run folder (default: runs/run-<time>).")
@click.option("--force", is_flag=True, help="Overwrite an existing run folder.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def run(data_path, fmt, target, features, multivariate, fill, sensor, split_time, out, force, as_json, **kw):
    """Train, export and evaluate a model end to end (on the embedded default data unless --data)."""
    spec = data_spec(data_path, fmt, target, features, multivariate, fill, sensor, split_time)
    trained = train_run(spec, kw, out, force, progress=not as_json)
    if not as_json:
        print_train(trained)
    evaluated = evaluate_run(trained["run"], None, None)
    emit({"train": trained, "eval": evaluated}, as_json, lambda r: print_eval(r["eval"]))
