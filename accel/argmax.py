"""The argmax tracker: a classifier's class, computed on the chip from its scores as they leave."""
from __future__ import annotations

import numpy as np
from amaranth.hdl import Module, Signal, signed
from amaranth.lib.wiring import In, Out

from intformer.model import intops

from .block import Block


class ArgmaxTracker(Block):
    """The index of the first largest of `classes` signed scores, taken one per cycle in index order.

    Algorithm: `start` rewinds it (no score taken). Each cycle with `valid` (and fewer than `classes`
    scores taken since `start`) takes `score` as the score of class `count`: the first score, and after it
    only a STRICTLY larger one, replaces the running best (`best`) and its index (`cls`). So of equal
    largest scores the first (lowest index) wins: the reference's tie rule (`model.intops.argmax_first`,
    the golden model: `ArgmaxTracker.model`). A `valid` after the `classes`-th score is ignored (the
    output port offers the class word itself on the same strobe). `start` wins over `valid`.

    Latency: `LATENCY` (1) cycle: `cls` is the class of the scores taken up to the previous cycle (a
    register, no logic after it). Widths: `score` and the `best` register the output buffer's bits (signed),
    `cls` and `count` range(classes) and range(classes + 1): one comparator and two registers.

    `fault` "ties_last" builds the design broken (`>=`: of equal scores the LAST wins), for the must-fail
    proof (`accel.argmax_formal`).
    """
    LATENCY = 1
    FAULTS = ("ties_last",)

    def __init__(self, classes: int, bits: int, fault: str | None = None):
        if classes < 2:
            raise ValueError(f"an argmax needs at least 2 classes, got {classes}")
        if fault is not None and fault not in self.FAULTS:
            raise ValueError(f"unknown ArgmaxTracker fault {fault!r}: one of {self.FAULTS}")
        self.classes, self.bits, self.fault = classes, bits, fault
        super().__init__({
            "start": In(1), "valid": In(1), "score": In(signed(bits)),
            "cls": Out(range(classes)),
        })
        self.best = Signal(signed(bits))                 # the running best score (for proofs)
        self.count = Signal(range(classes + 1))          # scores taken since `start`

    @staticmethod
    def model(scores) -> np.ndarray:
        """The golden model: the class of each row of scores (`intops.argmax_first`, first of ties)."""
        return intops.argmax_first(scores)

    def _build(self, m: Module) -> None:
        take = self.valid & (self.count < self.classes)
        better = (self.score >= self.best) if self.fault == "ties_last" else (self.score > self.best)
        with m.If(self.start):
            m.d.sync += [self.count.eq(0), self.cls.eq(0)]
        with m.Elif(take):
            m.d.sync += self.count.eq(self.count + 1)
            with m.If((self.count == 0) | better):
                m.d.sync += [self.best.eq(self.score), self.cls.eq(self.count)]
