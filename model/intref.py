"""The integer-only reference: runs an `IntProgram` on a batch of input windows with integer arithmetic only.

Input codes come from `quantize_input` (the one float operation, on the host); from there on every value is
an int64 computed by `model.intops`. The hardware computes, word for word, what `run_program` returns.
"""
from __future__ import annotations

import numpy as np

from . import intops
from .program import ONES, ArgmaxStep, DetectStep, IntProgram, LayerNormStep, LinearStep, SoftmaxStep


def quantize_input(program: IntProgram, x_scaled: np.ndarray) -> np.ndarray:
    """Scaled float windows (B, n, m) -> input codes (B, rows of x, cols of x): clamp(floor(x / scale + 1/2)).

    With series tokens the window is transposed, one row per series.
    """
    lo, hi = program.input.range
    x = np.asarray(x_scaled, dtype=np.float64)
    if program.series_tokens:
        x = np.swapaxes(x, 1, 2)
    codes = np.floor(x / program.input_scale + 0.5)
    return np.clip(codes, lo, hi).astype(np.int64)


def _linear(step: LinearStep, bufs: dict, tensors: dict, batch: int) -> np.ndarray:
    if step.x == ONES:
        x = np.ones((batch, step.rows, step.k_len), dtype=np.int64)
    elif step.x_flat:
        x = bufs[step.x].reshape(batch, 1, -1)[:, :, :step.k_len]
    else:
        x = bufs[step.x][:, :step.rows, step.x_col:step.x_col + step.k_len]
    if step.w in tensors:
        w = tensors[step.w][step.w_row:step.w_row + step.k_len, step.w_col:step.w_col + step.cols]
    else:
        w = bufs[step.w][:, step.w_row:step.w_row + step.k_len, step.w_col:step.w_col + step.cols]
    v = intops.matmul_acc(x, w, tensors[step.bias] if step.bias else None)
    if step.requant is None:
        return v
    rq = step.requant
    v = intops.requantize(v, rq.m, rq.s, rq.lo, rq.hi)
    if step.lut:
        v = intops.lut_apply(v, tensors[step.lut], rq.lo)
    if step.residual:
        r = step.residual
        if r.row is not None and r.col is None:     # one row of src, column by column
            src = bufs[r.src][:, r.row:r.row + 1, step.out_col:step.out_col + step.cols]
        elif r.row is not None:
            src = bufs[r.src][:, r.row:r.row + 1, r.col:r.col + 1]
        else:
            src = bufs[r.src][:, :step.rows, step.out_col:step.out_col + step.cols]
        v = intops.residual_add(src, v, r.m_src, r.m_new, r.s, r.lo, r.hi)
    if step.affine:
        a = step.affine
        v = intops.requantize_per_channel(v, tensors[a.m], tensors[a.b], a.s, a.lo, a.hi)
    return v


def run_step(step, bufs: dict, tensors: dict, batch: int, starts=None) -> None:
    """Execute one step in place on the batch of buffers `bufs` (name -> (B, rows, cols) int64). `starts`
    ((B,) bool or None: only window 0) marks the windows that begin a stream, for a detector's smoothed
    score (`DetectStep.decay`), the one step that carries state from window to window."""
    if isinstance(step, LinearStep):
        v = _linear(step, bufs, tensors, batch)
        out = bufs[step.out]
        if step.out_transposed:
            out[:, step.out_col:step.out_col + step.cols, :step.rows] = np.swapaxes(v, 1, 2)
        else:
            out[:, :step.rows, step.out_col:step.out_col + step.cols] = v
    elif isinstance(step, SoftmaxStep):
        z = bufs[step.src][:, :step.rows, :step.cols]
        table = tensors[step.table] if step.table else None
        bufs[step.out][:, :step.rows, :step.cols] = intops.softmax_int(z, step.method, step.out_bits, table, step.c)
    elif isinstance(step, LayerNormStep):
        x = bufs[step.src][:, :step.rows, :step.cols]
        bufs[step.out][:, :step.rows, :step.cols] = intops.layernorm_int(
            x, tensors[step.g], tensors[step.b], step.s, step.eps, step.lo, step.hi)
    elif isinstance(step, ArgmaxStep):
        bufs[step.out][:, 0, step.out_col] = intops.argmax_first(bufs[step.src][:, 0, :step.cols])
    elif isinstance(step, DetectStep):
        score = intops.score_ewma(intops.anomaly_score(bufs[step.src][:, 0, :step.cols]), step.decay, starts)
        bufs[step.out][:, 0, step.out_col] = score
        bufs[step.out][:, 0, step.out_col + 1] = intops.anomaly_flag(score, step.threshold)
    else:
        raise TypeError(f"unknown step {step!r}")


def run_program(program: IntProgram, x_codes: np.ndarray, trace: bool = False, segments=None):
    """Run the program on input codes (B, n, m); returns the output words (B, horizon) int64.

    With trace=True also returns a list of (step name, buffer name, copy of that buffer) after each step,
    so that a comparison can name the first step where two computations part.

    The windows are independent except for a detector whose score is smoothed (`DetectStep.decay` > 0):
    its batch is a stream in window order, as the chip sees it from reset (or a board after INFO).
    `segments` ((B,) labels, for example each window's experiment) restarts the stream wherever the label
    changes; None: one stream.
    """
    x_codes = np.asarray(x_codes, dtype=np.int64)
    batch = x_codes.shape[0]
    starts = stream_starts(segments, batch)
    bufs = {name: np.zeros((batch, b.rows, b.cols), dtype=np.int64) for name, b in program.buffers.items()}
    bufs["x"][:] = x_codes
    steps = []
    for step in program.steps:
        run_step(step, bufs, program.tensors, batch, starts)
        if trace:
            steps.append((step.name, step.out, bufs[step.out].copy()))
    out = bufs[program.output][:, 0, :].copy()
    return (out, steps) if trace else out


def stream_starts(segments, batch: int) -> np.ndarray:
    """(B,) bool: the windows that begin a stream, window 0 and every one whose segment label differs from
    the window before it."""
    starts = np.zeros(batch, dtype=bool)
    if batch:
        starts[0] = True
    if segments is not None:
        seg = np.asarray(segments).reshape(-1)
        if len(seg) != batch:
            raise ValueError(f"{len(seg)} segment labels for {batch} windows")
        starts[1:] |= seg[1:] != seg[:-1]
    return starts


def dequantize_output(program: IntProgram, words: np.ndarray) -> np.ndarray:
    """Output words -> forecasts in the scaled space."""
    return np.asarray(words, dtype=np.float64) * program.output_scale
