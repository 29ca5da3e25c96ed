"""The checks both simulation engines make on the accelerator's stream protocol (`accel.simulate`, the Amaranth
engine, and `accel.cxxsim`, the compiled one): each window's output words are counted, every wait has a
cycle limit derived from the program, and the drain-overrun `error` flag is watched at every cycle. The
engines read these names through this module, so a test can turn a check off for both.
"""
from __future__ import annotations

import numpy as np

from intformer.model.program import FINAL_STEPS, IntProgram, LinearStep


# Every wait for the design has a cycle limit: LIMIT_MULTIPLE x `cycle_bound` + LIMIT_MARGIN cycles for the
# whole window (start, input, output, done, the tail), so that a stuck design fails within seconds instead of
# hanging. `cycle_bound` is an estimate, not a proof: real designs take about 0.75 to 1.05 times it (the
# default model's size at P = 1..16 from its measured 1.01 to 1.19 x MACs/P; small random programs up to 1.05,
# tests/test_sim_drivers.py checks <= 2x); the multiple
# covers what it leaves out (the row units' lag, fused steps' handovers), the margin a tiny program's fixed
# costs.
LIMIT_MULTIPLE = 4
LIMIT_MARGIN = 2_000
# After `done`, this many cycles in which no further output word may appear (a word after `done` is extra).
TAIL_CYCLES = 8


class SimulationError(RuntimeError):
    """The design broke the stream protocol: too few or too many output words, no progress within the cycle
    limit, or the drain-overrun `error` flag high."""


def cycle_bound(program: IntProgram, lanes: int) -> int:
    """An estimate from the program alone of the cycles of one inference, as `Accelerator`'s docstring states
    its latency: per linear step rows x groups x max(k, P) + P + 17 (groups: output columns / P, rounded up),
    a row unit's step (softmax, LayerNorm) 4 cycles per element, the input (one cycle per code) and the
    output (3 cycles per word). A classifier's argmax is no step of its own: its class is the output
    buffer's last word, counted with the output (the tracker's latency hides in the word's read); so are a
    detector's score and flag."""
    total = program.input.rows * program.input.cols + 3 * program.buffers[program.output].cols
    for s in program.steps:
        if isinstance(s, LinearStep):
            total += s.rows * -(-s.cols // lanes) * max(s.k_len, lanes) + lanes + 17
        elif isinstance(s, FINAL_STEPS):
            continue
        else:
            total += 4 * s.rows * s.cols
    return total


def cycle_limit(program: IntProgram, lanes: int) -> int:
    """The cycles one window may take in a simulation before it is declared stuck."""
    return LIMIT_MULTIPLE * cycle_bound(program, lanes) + LIMIT_MARGIN


# The value of an output word that never arrived: no output word can equal it (they have at most 63 bits), so
# a missing word can never pass the comparison, even where the count check were skipped.
MISSING_WORD = np.iinfo(np.int64).min


def count_error(window: int, expected: int, received: int) -> SimulationError:
    return SimulationError(f"window {window}: the accelerator sent {received} output words, expected {expected}"
                           f" ({'too few' if received < expected else 'too many'})")


def check_count(window: int, expected: int, received: int) -> None:
    """Both engines' word count check: raise `count_error` unless exactly `expected` words arrived."""
    if received != expected:
        raise count_error(window, expected, received)
