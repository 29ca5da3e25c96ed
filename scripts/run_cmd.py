"""`intformer run`: the main job. Data -> QAT training (and the float baseline) -> export -> integer
evaluation -> bit-exact simulation of test windows on the accelerator."""
from __future__ import annotations

from pathlib import Path

import click

from .cli import cli, emit
from .eval_cmd import evaluate_run, print_eval
from .options import data_options, data_spec, model_options
from .sim_cmd import print_sim, simulate_run
from .train_cmd import print_train, train_run


def print_run(r: dict) -> None:
    print_eval(r["eval"])
    click.echo("")
    print_sim(r["sim"])


@cli.command()
@data_options
@model_options
@click.option("--lanes", type=click.IntRange(min=1), default=8, show_default=True, help="MAC lanes P.")
@click.option("--sim-windows", default="64", show_default=True,
              help="Test windows to run through the simulated accelerator, or 'all'.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run folder (default: runs/run-<time>).")
@click.option("--force", is_flag=True, help="Overwrite an existing run folder.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def run(data_path, fmt, target, features, multivariate, fill, sensor, split_time, lanes, sim_windows, out, force,
        as_json, **kw):
    """Train, export, evaluate and simulate a model end to end (on the embedded default data unless --data)."""
    from accel import cxxsim

    spec = data_spec(data_path, fmt, target, features, multivariate, fill, sensor, split_time)
    trained = train_run(spec, kw, out, force, progress=not as_json)
    if not as_json:
        print_train(trained)
        click.echo("evaluating ...", err=True)
    evaluated = evaluate_run(trained["run"], None, None)
    if not as_json:
        click.echo("simulating the accelerator ...", err=True)
    engine = "cxxrtl" if cxxsim.available() else "amaranth"
    simulated = simulate_run(trained["run"], sim_windows, lanes, engine)
    result = {"train": trained, "eval": evaluated, "sim": simulated}
    emit(result, as_json, print_run)
    if simulated["mismatches"]:
        raise SystemExit(1)
