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
