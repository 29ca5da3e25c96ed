"""`intformer eval`: test errors of the float, fake-quant and integer paths, baselines, a forecast plot."""
from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from intformer.model import runfolder
from intformer.model.data import make_windows
from intformer.model.evaluate import (agreement, baselines, classification_metrics, classify_baselines,
                                     confusion_matrix, errors, integer_classes, integer_forecast, plot_forecast,
                                     score_classes)
from intformer.model.errors import IntformerError
from intformer.model.train import predict

from .options import check_task, task_option
from .output import emit


def evaluate_run(run_path, season: int | None, plot: Path | None, data_override: dict | None = None,
                 task: str | None = None) -> dict:
    run = runfolder.open_run(run_path)
    if run.require_task(check_task(task), "eval") == "classify":
        return evaluate_classifier(run, run_path, data_override)
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


def evaluate_classifier(run, run_path, data_override: dict | None = None) -> dict:
    """Accuracy and macro F1 of the float, fake-quant and integer paths on the test part, the integer path's
    confusion matrix, the agreement of fake-quant and integer scores, and the majority and MiniRocket
    baselines trained on the same training part in this run."""
    data = run.labelled(**(data_override or {}))      # another file is read as the run's was (.ts, or --label)
    C, scaler = run.config.classes, run.scaler
    if data.classes != run.classes:
        raise IntformerError(f"{data.source}: its classes ({', '.join(data.classes)}) are not the "
                                       f"run's ({', '.join(run.classes)}); evaluate on data with the same classes")
    train, test = data.part("train", scaler), data.part("test", scaler)
    result = {"run": str(run_path), "task": "classify", "windows": len(test.y), "classes": run.classes,
              "test": {}}
    scores = {}
    for kind, label in (("float", "float"), ("qat", "fakequant")):
        model = run.load_model(kind)
        if model is not None:
            scores[label] = predict(model, test.x)
            classes = score_classes(scores[label], run.program if kind == "qat" else None)
            result["test"][label] = classification_metrics(classes, test.y, C)
    words, cls = integer_classes(run.program, test.x)
    result["test"]["integer"] = classification_metrics(cls, test.y, C)
    result["confusion"] = confusion_matrix(cls, test.y, C).tolist()
    if "fakequant" in scores:
        result["agreement"] = agreement(scores["fakequant"], words[:, :C], run.program)
        result["agreement"]["class_fraction"] = float(np.mean(score_classes(scores["fakequant"], run.program) == cls))
    seed = int(run.info.get("train", {}).get("seed", 0))
    result["baselines"] = classify_baselines(train.x, train.y, test.x, test.y, C, seed)
    return result


def print_classify(r: dict) -> None:
    click.echo(f"{r['windows']} test series, {len(r['classes'])} classes")
    for name, e in list(r["test"].items()) + list(r["baselines"].items()):
        click.echo(f"  {name:<12} accuracy {e['accuracy']:.4f}   macro F1 {e['f1_macro']:.4f}")
    if "agreement" in r:
        a = r["agreement"]
        click.echo(f"  fake-quant vs integer: {a['exact_fraction'] * 100:.2f} % of scores equal, largest difference "
                   f"{a['max_abs_lsb']} LSB, {a['class_fraction'] * 100:.2f} % of classes equal")
    width = max(len(c) for c in r["classes"])
    click.echo("  confusion matrix (integer path; rows: true class, columns: predicted)")
    for name, row in zip(r["classes"], r["confusion"]):
        click.echo(f"    {name:>{width}}  " + " ".join(f"{v:4d}" for v in row))


def print_eval(r: dict) -> None:
    if r.get("task") == "classify":
        return print_classify(r)
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
@task_option
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def eval_(run, data_path, season, plot, task, as_json):
    """Test errors (forecast) or accuracy and F1 (classify) of a trained run: float, fake-quant and integer
    paths, and baselines."""
    emit(evaluate_run(run, season, plot, {"path": data_path}, task=task), as_json, print_eval)
