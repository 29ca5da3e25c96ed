"""The anomaly scorer: a detector's score and flag, computed on the chip from its forecast errors as they leave."""
from __future__ import annotations

import numpy as np
from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib.wiring import In, Out

from intformer.model import intops

from .block import Block


class AnomalyScorer(Block):
    """The sum of the magnitudes of `channels` signed errors taken one per cycle, and whether it passes the
    integer `threshold`.

    Algorithm: `start` rewinds it (score 0, no error taken). Each cycle with `valid` (and fewer than
    `channels` errors taken since `start`) adds |`error`| to `score` and sets `flag` to (new score >
    threshold), strictly greater (SKAB's residual > UCL). A `valid` after the `channels`-th error is ignored
    (the output port offers the score and flag words themselves on the same strobe). `start` wins over
    `valid`. Golden model: `AnomalyScorer.model` (`model.intops.anomaly_score` and `anomaly_flag`, as the
    reference's `DetectStep`).

    Latency: `LATENCY` (1) cycle: `score` and `flag` are registers that hold the errors taken up to the
    previous cycle. Widths: `error` the output buffer's bits (signed: the errors are clamped to the head's
    16-bit range, far inside it); |error| one bit more unsigned; `score` the output buffer's bits, which the
    program's check sizes for `channels` x the largest error magnitude (`model.program._error_range`), so
    the sum cannot wrap; `count` range(channels + 1). One absolute value, one adder, one comparator with a
    constant.

    `fault` builds the design broken, for the must-fail proof (`accel.anomaly_formal`): "ge" flags a score
    EQUAL to the threshold too (>=); "signed_sum" adds the signed error instead of its magnitude.
    """
    LATENCY = 1
    FAULTS = ("ge", "signed_sum")

    def __init__(self, channels: int, bits: int, threshold: int, fault: str | None = None):
        if channels < 1:
            raise ValueError(f"a score needs at least 1 channel, got {channels}")
        if threshold < 0 or threshold >= 1 << (bits - 1):
            raise ValueError(f"threshold {threshold} outside 0..{(1 << (bits - 1)) - 1} of a {bits}-bit score")
        if fault is not None and fault not in self.FAULTS:
            raise ValueError(f"unknown AnomalyScorer fault {fault!r}: one of {self.FAULTS}")
        self.channels, self.bits, self.threshold, self.fault = channels, bits, threshold, fault
        super().__init__({
            "start": In(1), "valid": In(1), "error": In(signed(bits)),
            "score": Out(signed(bits)), "flag": Out(1),
        })
        self.count = Signal(range(channels + 1))          # errors taken since `start`

    @staticmethod
    def model(errors, threshold: int) -> tuple[np.ndarray, np.ndarray]:
        """The golden model: (score, flag) of each row of errors."""
        score = intops.anomaly_score(errors)
        return score, intops.anomaly_flag(score, threshold)

    def _build(self, m: Module) -> None:
        magnitude = Signal(unsigned(self.bits))
        m.d.comb += magnitude.eq(Mux(self.error < 0, -self.error, self.error))
        term = self.error if self.fault == "signed_sum" else magnitude
        total = Signal(signed(self.bits + 1))
        m.d.comb += total.eq(self.score + term)
        passes = (total >= self.threshold) if self.fault == "ge" else (total > self.threshold)
        with m.If(self.start):
            m.d.sync += [self.count.eq(0), self.score.eq(0), self.flag.eq(0)]
        with m.Elif(self.valid & (self.count < self.channels)):
            m.d.sync += [self.count.eq(self.count + 1), self.score.eq(total), self.flag.eq(passes)]
