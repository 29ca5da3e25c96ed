"""Evaluation of a run: float, fake-quant and integer test errors, their agreement, naive baselines, a plot."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .data import Scaler, Series, make_windows
from .intref import dequantize_output, quantize_input, run_program
from .program import IntProgram


def errors(pred: np.ndarray, truth: np.ndarray, scaler: Scaler) -> dict:
    """MSE and MAE in the scaled space (as the literature reports) and in the data's own units."""
    orig_p, orig_t = scaler.inverse_target(pred), scaler.inverse_target(truth)
    return {"mse": float(np.mean((pred - truth) ** 2)), "mae": float(np.mean(np.abs(pred - truth))),
            "mse_original": float(np.mean((orig_p - orig_t) ** 2)),
            "mae_original": float(np.mean(np.abs(orig_p - orig_t)))}


def integer_forecast(program: IntProgram, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(output words, scaled forecasts) of the integer reference for scaled windows x."""
    words = run_program(program, quantize_input(program, x))
    return words, dequantize_output(program, words)


def baselines(series: Series, scaler: Scaler, window: int, horizon: int, season: int | None) -> dict:
    """Persistence (repeat the last observed target) and seasonal persistence (the value one season back)."""
    test = make_windows(series, scaler, window, horizon, "test")
    out = {"persistence": errors(np.repeat(test.last_target[:, None], horizon, axis=1), test.y, scaler)}
    if season and season >= horizon:
        target = scaler.transform_target(series.target_values)
        rows = test.target_rows[:, None] + np.arange(horizon)[None, :] - season
        if rows.min() >= 0:
            out[f"seasonal_persistence_{season}"] = errors(target[rows], test.y, scaler)
    return out


# The fake-quant model's output is an output code times the output scale, computed in float64 (`predict`):
# its quotient by the scale is that integer code to within float64 rounding (about 1e-16 relative: far below
# 1e-9 LSB for any code width here). A quotient farther than this from an integer is off the code grid: it
# has no integer code, and is not exact.
GRID_TOLERANCE_LSB = 1e-6


def agreement(fakequant: np.ndarray, words: np.ndarray, program: IntProgram) -> dict:
    """How closely the fake-quant model's forecasts match the integer words, in output LSBs.

    exact_fraction: the fraction of words whose fake-quant integer code equals the integer word (the code:
    the forecast divided by the output scale, an integer to within GRID_TOLERANCE_LSB; a forecast off the
    grid, e.g. 0.4 LSB from a code, is never exact). max_abs_lsb: the largest difference, in LSBs."""
    quotient = np.asarray(fakequant, dtype=np.float64) / program.output_scale
    words = np.asarray(words, dtype=np.int64)
    codes = np.rint(quotient)
    on_grid = np.abs(quotient - codes) <= GRID_TOLERANCE_LSB
    equal = on_grid & (codes.astype(np.int64) == words)
    diff = np.abs(quotient - words)
    return {"exact_fraction": float(np.mean(equal)) if diff.size else 1.0,
            "max_abs_lsb": float(np.round(diff.max(), 3)) if diff.size else 0.0}


def plot_forecast(path: Path, truth: np.ndarray, preds: dict[str, np.ndarray], title: str, limit: int = 500) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4))
    n = min(limit, len(truth))
    ax.plot(truth[:n, 0], color="black", lw=1.2, label="truth")
    for name, p in preds.items():
        ax.plot(p[:n, 0], lw=0.9, label=name)
    ax.set_xlabel("test window")
    ax.set_ylabel("target (original units), first forecast step")
    ax.set_title(title)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_timeline(path: Path, signal: np.ndarray, score: np.ndarray, threshold: int, labels: np.ndarray,
                  flags: np.ndarray, experiment: np.ndarray, title: str, limit: int = 3000) -> None:
    """The anomaly timeline a person looks at: the signal (each channel, scaled), the integer score with its
    threshold, and the true and flagged anomalous rows as shaded bands, over the first `limit` test rows
    (experiments one after another, their boundaries marked)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(limit, len(score))
    t = np.arange(n)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 5.5), sharex=True)
    top.plot(t, signal[:n], lw=0.6)
    top.set_ylabel("signal (scaled)")
    bottom.plot(t, score[:n], color="black", lw=0.7, label="score (integer)")
    bottom.axhline(threshold, color="red", lw=1.0, ls="--", label=f"threshold {threshold:,}")
    bottom.set_yscale("symlog", linthresh=max(1.0, threshold / 10))
    bottom.set_ylabel("score")
    for ax in (top, bottom):
        ax.fill_between(t, 0, 1, where=np.asarray(labels[:n]) > 0, transform=ax.get_xaxis_transform(),
                        color="orange", alpha=0.25, lw=0, label="true anomaly")
        ax.fill_between(t, 0, 0.08, where=np.asarray(flags[:n]) > 0, transform=ax.get_xaxis_transform(),
                        color="red", alpha=0.8, lw=0, label="flagged on the chip")
        for b in np.flatnonzero(np.diff(experiment[:n])) + 1:
            ax.axvline(b, color="grey", lw=0.5)
    bottom.set_xlabel("test row (experiments in order)")
    bottom.legend(loc="upper left", fontsize=7, ncol=4)
    top.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------------------------------ classification

def classification_metrics(pred: np.ndarray, truth: np.ndarray, classes: int) -> dict:
    """Accuracy, macro F1 (the mean of the per-class F1; a class never predicted nor present counts 0, as
    scikit-learn's zero_division=0) and the per-class F1, of class indices."""
    cm = confusion_matrix(pred, truth, classes)
    tp = np.diag(cm).astype(np.float64)
    denom = cm.sum(axis=0) + cm.sum(axis=1)           # predicted + true counts per class: 2 tp + fp + fn
    f1 = np.divide(2 * tp, denom, out=np.zeros(classes), where=denom > 0)
    return {"accuracy": float(np.mean(np.asarray(pred) == np.asarray(truth))) if len(truth) else 0.0,
            "f1_macro": float(f1.mean()), "f1_per_class": [float(v) for v in f1]}


def confusion_matrix(pred: np.ndarray, truth: np.ndarray, classes: int) -> np.ndarray:
    """cm[true class, predicted class]: counts."""
    cm = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(truth, dtype=np.int64), np.asarray(pred, dtype=np.int64)), 1)
    return cm


def integer_classes(program: IntProgram, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(output words, classes) of the integer reference: the class is the program's own argmax word (the
    word after the C scores), the one the accelerator sends, not an argmax taken here."""
    words = run_program(program, quantize_input(program, x))
    return words, words[:, program.buffers[program.output].cols - 1].copy()


def score_classes(scores: np.ndarray, program: IntProgram | None = None) -> np.ndarray:
    """Classes of float scores; with `program`, of the fake-quant model's scores read as the integer codes they
    are (score / output scale, to within float64 rounding), so that equal largest codes fall to the first, as
    on the chip (a float argmax would pick among them by a rounding error of 1e-16)."""
    scores = np.asarray(scores, dtype=np.float64)
    if program is not None:
        scores = np.rint(scores / program.output_scale)
    return np.argmax(scores, axis=-1).astype(np.int64)    # numpy's argmax: the first of equal largest


def classify_baselines(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                       classes: int, seed: int) -> dict:
    """The majority class of the training part, and MiniRocket (aeon's MiniRocketClassifier: 10,000
    random convolution kernels and a ridge classifier, the classical method a user would otherwise pick),
    trained here on the same training part (scaled as the model sees it), seeded."""
    majority = int(np.argmax(np.bincount(train_y, minlength=classes)))
    out = {"majority": classification_metrics(np.full(len(test_y), majority), test_y, classes)}
    import warnings

    from aeon.classification.convolution_based import MiniRocketClassifier

    clf = MiniRocketClassifier(random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # aeon wants (N, channels, length); the model's windows are (N, length, channels)
        clf.fit(np.ascontiguousarray(train_x.transpose(0, 2, 1), dtype=np.float64), train_y)
        pred = clf.predict(np.ascontiguousarray(test_x.transpose(0, 2, 1), dtype=np.float64))
    out["minirocket"] = classification_metrics(np.asarray(pred, dtype=np.int64), test_y, classes)
    return out
