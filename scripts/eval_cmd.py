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
    wanted = run.require_task(check_task(task), "eval")
    if wanted == "classify":
        return evaluate_classifier(run, run_path, data_override)
    if wanted == "detect":
        return evaluate_detector(run, run_path, plot, data_override)
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


def evaluate_detector(run, run_path, plot: Path | None = None, data_override: dict | None = None) -> dict:
    """Point-wise F1, FAR and MAR (SKAB's leaderboard rule, `model.anomaly_metrics`) of the float, fake-quant
    and integer detectors on every test row, the null detector and the classical baselines fitted on the
    same rows in this run, and the agreement of fake-quant and integer errors. The integer path's flags are
    the program's own flag words (the ones the chip sends); the fake-quant path's the same rule on its
    scores; the float model's threshold is the same quantile of its own validation scores."""
    from intformer.model import anomaly_metrics as am
    from intformer.model.anomaly_data import make_anomaly_windows
    from intformer.model.intref import quantize_input, run_program
    from intformer.model.train import detector_scores, detector_segments, detector_windows
    aset = run.anomaly(**(data_override or {}))
    cfg, program = run.config, run.program
    if len(aset.channels) != cfg.inputs:
        raise IntformerError(f"{aset.source}: {len(aset.channels)} channels, the run's model takes {cfg.inputs}; "
                             "evaluate on data of the same layout")
    test, val = (detector_windows(aset, cfg.window, part, cfg.detect_mode) for part in ("test", "val"))
    meta = make_anomaly_windows(aset, cfg.window, "test")
    val_seg = detector_segments(aset, cfg.window, "val")
    threshold = int(program.steps[-1].threshold)
    q = float(run.info.get("data", {}).get("quantile") or am.THRESHOLD_QUANTILE)
    # each experiment is one stream (a smoothed score restarts with it, as after an INFO on a board)
    words = run_program(program, quantize_input(program, test.x), segments=meta.experiment)
    C = cfg.inputs
    result = {"run": str(run_path), "task": "detect", "windows": len(test.x), "protocol": aset.describe(),
              "threshold": threshold, "quantile": q, "score_decay": int(program.steps[-1].decay), "test": {}}
    scores = {}
    fq_model, fl_model = run.load_model("qat"), run.load_model("float")
    if fl_model is not None:
        scores["float"] = detector_scores(fl_model, test.x, segments=meta.experiment)
        thr = am.quantile_threshold(detector_scores(fl_model, val.x, segments=val_seg), q)
        result["test"]["float"] = am.detection_metrics(meta.labels, am.flag(scores["float"], thr), thr).to_dict()
    if fq_model is not None:
        scores["fakequant"] = detector_scores(fq_model, test.x, program, meta.experiment)
        result["test"]["fakequant"] = am.detection_metrics(meta.labels, am.flag(scores["fakequant"], threshold),
                                                           threshold).to_dict()
        result["agreement"] = agreement(predict(fq_model, test.x), words[:, :C], program)
        result["agreement"]["flag_fraction"] = float(np.mean(am.flag(scores["fakequant"], threshold)
                                                             == words[:, C + 1]))
    result["test"]["integer"] = am.detection_metrics(meta.labels, words[:, C + 1], threshold).to_dict()
    result["baselines"] = {k: v.to_dict() for k, v in am.baseline_metrics(aset, q, decay=cfg.score_decay).items()}
    plot = plot if plot is not None else (run.path / "timeline.png" if (run.path / "run.json").exists() else None)
    if plot is not None:
        from intformer.model.evaluate import plot_timeline
        plot_timeline(Path(plot), test.x[:, -1, :], words[:, C], threshold, meta.labels, words[:, C + 1],
                      meta.experiment, f"{aset.name}: {cfg.bits}-bit detector, integer score")
        result["plot"] = str(plot)
    return result


def print_detect(r: dict) -> None:
    click.echo(f"{r['windows']} test rows ({r['protocol']})")
    click.echo(f"  threshold: integer score > {r['threshold']:,} (the {r['quantile']:g} quantile on normal "
               "validation windows)")
    for name, e in list(r["test"].items()) + list(r["baselines"].items()):
        click.echo(f"  {name:<22} F1 {e['f1']:.2f}   FAR {e['far'] * 100:6.2f} %   MAR {e['mar'] * 100:6.2f} %")
    if "agreement" in r:
        a = r["agreement"]
        click.echo(f"  fake-quant vs integer: {a['exact_fraction'] * 100:.2f} % of errors equal, largest difference "
                   f"{a['max_abs_lsb']} LSB, {a['flag_fraction'] * 100:.2f} % of flags equal")
    if "plot" in r:
        click.echo(f"  timeline: {r['plot']}")


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
    if r.get("task") == "detect":
        return print_detect(r)
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
@click.option("--data", "data_path", type=click.Path(), default=None,
              help="Evaluate on another file (or SKAB folder) of the same layout (default: the run's data).")
@click.option("--season", type=int, default=None, help="Period for seasonal persistence (default: the data's).")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the forecast plot (default: RUN/forecast.png).")
@task_option
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def eval_(run, data_path, season, plot, task, as_json):
    """Test errors (forecast), accuracy and F1 (classify) or F1, FAR and MAR (detect) of a trained run: float,
    fake-quant and integer paths, and baselines."""
    emit(evaluate_run(run, season, plot, {"path": data_path}, task=task), as_json, print_eval)
