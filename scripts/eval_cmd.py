"""`intformer eval`: test errors of the float, fake-quant and integer paths, baselines, a forecast plot."""
from __future__ import annotations

from pathlib import Path

import click

from intformer.model import runfolder
from intformer.model.data import make_windows
from intformer.model.evaluate import agreement, baselines, errors, integer_forecast, plot_forecast
from intformer.model.train import predict

from .output import emit


def evaluate_run(run_path, season: int | None, plot: Path | None, data_override: dict | None = None) -> dict:
    run = runfolder.open_run(run_path)
    cfg, scaler = run.config, run.scaler
    series = run.series(**(data_override or {}))
    test = make_windows(series, scaler, cfg.window, cfg.horizon, "test")
    preds, result = {}, {"run": str(run_path), "windows": len(test.x), "test": {}}
    for kind, label in (("float", "float"), ("qat", "fakequant")):
        model = run.load_model(kind)
        if model is not None:
            preds[label] = predict(model, test.x)
    words, preds["integer"] = integer_forecast(run.program, test.x)
    for label, p in preds.items():
        result["test"][label] = errors(p, test.y, scaler)
    if "fakequant" in preds:
        result["agreement"] = agreement(preds["fakequant"], words, run.program)
    season = season if season is not None else series.period
    result["baselines"] = baselines(series, scaler, cfg.window, cfg.horizon, season)
    plot = plot if plot is not None else (run.path / "forecast.png" if (run.path / "run.json").exists() else None)
    if plot is not None:
        shown = {k: scaler.inverse_target(v) for k, v in preds.items()}
        plot_forecast(Path(plot), scaler.inverse_target(test.y), shown,
                      f"{series.name}: {cfg.bits}-bit model, horizon {cfg.horizon}")
        result["plot"] = str(plot)
    return result


def print_eval(r: dict) -> None:
    click.echo(f"{r['windows']} test windows; MSE and MAE in the scaled space (original units in brackets)")
    rows = list(r["test"].items()) + list(r["baselines"].items())
    for name, e in rows:
        click.echo(f"  {name:<26} MSE {e['mse']:.5f} ({e['mse_original']:.4g})   "
                   f"MAE {e['mae']:.5f} ({e['mae_original']:.4g})")
    if "agreement" in r:
        a = r["agreement"]
        click.echo(f"  fake-quant vs integer: {a['exact_fraction'] * 100:.2f} % of words equal, "
                   f"largest difference {a['max_abs_lsb']} LSB")
    if "plot" in r:
        click.echo(f"  plot: {r['plot']}")


@click.command("eval")
@click.argument("run", type=click.Path())
@click.option("--data", "data_path", type=click.Path(dir_okay=False), default=None,
              help="Evaluate on another file of the same layout (default: the run's data).")
@click.option("--season", type=int, default=None, help="Period for seasonal persistence (default: the data's).")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the forecast plot (default: RUN/forecast.png).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def eval_(run, data_path, season, plot, as_json):
    """Test errors of a trained run: float, fake-quant and integer paths, and naive baselines."""
    emit(evaluate_run(run, season, plot, {"path": data_path}), as_json, print_eval)
