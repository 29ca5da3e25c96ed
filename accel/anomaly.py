"""The anomaly scorer: a detector's score and flag, computed on the chip from its forecast errors as they leave."""
from __future__ import annotations

import numpy as np
from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib.wiring import In, Out

from intformer.model import intops

from .block import Block


class AnomalyScorer(Block):
    """The sum of the magnitudes of `channels` signed errors taken one per cycle, smoothed over consecutive
    windows when `decay` > 0, and whether it passes the integer `threshold`.

    Algorithm: `start` begins a window: `score` becomes the last window's score less its 2^-decay part,
    s - (s >> decay) (an arithmetic shift: floor; decay = 0 gives 0, each window alone), or 0 after a
    `clear`. Each cycle with `valid` (and fewer than `channels` errors taken since `start`) adds |`error`|
    to `score` and sets `flag` to (new score > threshold), strictly greater (SKAB's residual > UCL). So after
    the C-th error, score = s - (s >> decay) + sum_j |error_j|, the integer EWMA of the row scores
    (`model.intops.score_ewma`), held until the next `start`. A `valid` after the C-th error is ignored (the
    output port offers the score and flag words themselves on the same strobe). `start` wins over `valid`.
    `clear` (a pulse, any time) marks the next window as a stream's first: the score it starts from is 0, so
    a window already under way is not disturbed. Reset clears it too. Golden model: `AnomalyScorer.model`
    (`intops.anomaly_score`, `score_ewma`, `anomaly_flag`, as the reference's `DetectStep`).

    Latency: `LATENCY` (1) cycle: `score` and `flag` are registers that hold the errors taken up to the
    previous cycle. Widths: `error` `error_bits` (signed; the errors' clamp, the head's 16-bit range: the
    output buffer's stored bits, `Plan` layouts' `stored_bits`; default the score's), |error| as many
    unsigned; `score` the output buffer's bits, which the
    program's check sizes for score_bound(channels x the largest error magnitude, decay) (`intops.score_bound`,
    `model.program._error_range`), so the sum cannot wrap; `count` range(channels + 1). One absolute value,
    one adder, one subtractor of a shifted copy (wires), one comparator with a constant.

    `fault` builds the design broken, for the must-fail proof (`accel.anomaly_formal`): "ge" flags a score
    EQUAL to the threshold too (>=); "signed_sum" adds the signed error instead of its magnitude;
    "no_decay" keeps the whole last score (s instead of s - (s >> decay)).
    """
    LATENCY = 1
    FAULTS = ("ge", "signed_sum", "no_decay")

    def __init__(self, channels: int, bits: int, threshold: int, decay: int = 0, fault: str | None = None,
                 error_bits: int | None = None):
        if channels < 1:
            raise ValueError(f"a score needs at least 1 channel, got {channels}")
        if threshold < 0 or threshold >= 1 << (bits - 1):
            raise ValueError(f"threshold {threshold} outside 0..{(1 << (bits - 1)) - 1} of a {bits}-bit score")
        if not 0 <= decay < bits:
            raise ValueError(f"score decay {decay} outside 0..{bits - 1} for a {bits}-bit score")
        if fault is not None and fault not in self.FAULTS:
            raise ValueError(f"unknown AnomalyScorer fault {fault!r}: one of {self.FAULTS}")
        self.channels, self.bits, self.threshold, self.decay, self.fault = channels, bits, threshold, decay, fault
        self.error_bits = min(bits, error_bits or bits)
        super().__init__({
            "start": In(1), "valid": In(1), "error": In(signed(self.error_bits)), "clear": In(1),
            "score": Out(signed(bits)), "flag": Out(1),
        })
        self.count = Signal(range(channels + 1))          # errors taken since `start`
        self.fresh = Signal(init=1)                       # the next window starts a stream (after reset or clear)

    @staticmethod
    def model(errors, threshold: int, decay: int = 0, starts=None) -> tuple[np.ndarray, np.ndarray]:
        """The golden model: (score, flag) of each row of errors, the rows a stream in order (restarting where
        `starts` is set)."""
        score = intops.score_ewma(intops.anomaly_score(errors), decay, starts)
        return score, intops.anomaly_flag(score, threshold)

    def _build(self, m: Module) -> None:
        magnitude = Signal(unsigned(self.error_bits))
        m.d.comb += magnitude.eq(Mux(self.error < 0, -self.error, self.error))
        term = self.error if self.fault == "signed_sum" else magnitude
        total = Signal(signed(self.bits + 1))
        m.d.comb += total.eq(self.score + term)
        passes = (total >= self.threshold) if self.fault == "ge" else (total > self.threshold)
        # what the last window leaves to this one: s - floor(s / 2^decay); the score is never negative
        carried = Signal(signed(self.bits))
        if self.fault == "no_decay":
            m.d.comb += carried.eq(self.score)
        elif self.decay:
            m.d.comb += carried.eq(self.score - (self.score >> self.decay))
        with m.If(self.start):
            m.d.sync += [self.count.eq(0), self.score.eq(Mux(self.fresh, 0, carried)), self.flag.eq(0),
                         self.fresh.eq(0)]
        with m.Elif(self.valid & (self.count < self.channels)):
            m.d.sync += [self.count.eq(self.count + 1), self.score.eq(total), self.flag.eq(passes)]
        with m.If(self.clear):
            m.d.sync += self.fresh.eq(1)
