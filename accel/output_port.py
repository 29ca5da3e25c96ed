"""The output port: the output buffer's words from its bank onto the `output` stream (and a classifier's
class from its argmax tracker, a detector's score and flag from its anomaly scorer)."""
from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import stream
from amaranth.lib.wiring import In, Out

from .anomaly import AnomalyScorer
from .argmax import ArgmaxTracker
from .block import Block
from .plan import BufferLayout
from .walk import walk


class OutputPort(Block):
    """Reads the output buffer's `cols` words (row 0) from its bank and offers them on `output`, in order.

    The top state machine runs it in three states per word: `read` (the bank's read address is `addr`),
    `latch` (the read data, `data`, a whole bank word one cycle after the address: the lane chosen by the
    lane of that address is registered as the payload) and `send` (`output.valid`; on `output.ready` the
    port steps to the next word). `start` rewinds it to the buffer's first word. `index` is the index of the
    word on offer (the count of words sent since `start`), `last` that it is the buffer's last word.
    Latency: 2 cycles from `read` to a valid payload. Widths: `data` the bank's word (`bank_width`), the
    payload the output buffer's `bits` (signed), `addr` `addr_width`.

    A classifier (`classes` = C > 0: the program ends in an `ArgmaxStep`, `Plan.classes`): words 0..C-1
    are the scores from the bank, and each one taken also goes to `argmax` (an `ArgmaxTracker`); word C,
    the buffer's last, is the tracker's class instead of the bank's word. The class is latched in word C's
    `latch` state, `CLASS_SLACK` (2) cycles after the edge that took score C-1 (its `read` and `latch`),
    so the tracker's `LATENCY` (1) adds no cycle: word C costs the 3 cycles of any word.

    A detector (`detect` = (C, T, decay): the program ends in a `DetectStep`, `Plan.detect`): words 0..C-1
    are the forecast errors from the bank, each one taken also goes to `scorer` (an `AnomalyScorer`); word C
    is the scorer's score (smoothed over the windows since reset or the last `clear` when decay > 0) and
    word C+1 its flag, latched `CLASS_SLACK` cycles after the last error was taken, as the class is.
    """
    CLASS_SLACK = 2             # cycles from the last score taken to the class word's latch

    def __init__(self, layout: BufferLayout, lanes: int, addr_width: int, lane_bits: int, bank_width: int,
                 classes: int = 0, detect: tuple[int, int, int] | None = None):
        self.layout, self.lanes, self.lane_bits, self.classes = layout, lanes, lane_bits, classes
        self.detect = detect
        self.argmax = self.scorer = None
        if classes:
            assert classes == layout.cols - 1, "the class is the output buffer's last word"
            assert ArgmaxTracker.LATENCY <= self.CLASS_SLACK, "the class would be latched before it is ready"
            self.argmax = ArgmaxTracker(classes, layout.bits)
        if detect:
            assert detect[0] == layout.cols - 2, "the score and the flag are the output buffer's last words"
            assert AnomalyScorer.LATENCY <= self.CLASS_SLACK, "the score would be latched before it is ready"
            self.scorer = AnomalyScorer(detect[0], layout.bits, detect[1], detect[2],
                                        error_bits=layout.stored_bits or layout.bits)
        lane_width = max(1, lanes - 1).bit_length()
        super().__init__({
            "output": Out(stream.Signature(signed(layout.bits))),
            "start": In(1), "latch": In(1), "send": In(1),
            "addr": Out(unsigned(addr_width)), "data": In(unsigned(bank_width)),
            "index": Out(range(layout.cols + 1)), "last": Out(1),
            "clear": In(1),              # a detector: the next window starts a new stream (its score from 0)
        })
        self.lane = Signal(lane_width)

    def _build(self, m: Module) -> None:
        lay = self.layout
        within = Signal(range(lay.chunk + 1))
        lane_d = Signal.like(self.lane)                     # the lane of the word read one cycle ago
        payload = Signal(signed(lay.bits))
        m.d.sync += lane_d.eq(self.lane)
        m.d.comb += [self.output.payload.eq(payload), self.output.valid.eq(self.send),
                     self.last.eq(self.index == lay.cols - 1)]
        with m.If(self.start):
            m.d.sync += [self.index.eq(0), self.addr.eq(lay.base), self.lane.eq(0), within.eq(0)]
        bank_word = self.data.word_select(lane_d, self.lane_bits)[:lay.bits].as_signed()
        with m.If(self.latch):
            if self.argmax is not None:
                m.d.sync += payload.eq(Mux(self.index == self.classes, self.argmax.cls, bank_word))
            elif self.scorer is not None:
                c = self.detect[0]
                m.d.sync += payload.eq(Mux(self.index == c, self.scorer.score,
                                           Mux(self.index == c + 1, self.scorer.flag, bank_word)))
            else:
                m.d.sync += payload.eq(bank_word)
        if self.argmax is not None:
            # every word taken is offered to the tracker; it ignores the one after the C-th (the class)
            self.argmax.build(m)
            m.d.comb += [self.argmax.start.eq(self.start), self.argmax.valid.eq(self.send & self.output.ready),
                         self.argmax.score.eq(payload)]
        if self.scorer is not None:
            # every word taken is offered to the scorer; it ignores those after the C-th (score and flag)
            self.scorer.build(m)
            m.d.comb += [self.scorer.start.eq(self.start), self.scorer.valid.eq(self.send & self.output.ready),
                         self.scorer.error.eq(payload), self.scorer.clear.eq(self.clear)]
        with m.If(self.send & self.output.ready):
            nw, nl, ni = walk(self.addr, self.lane, within, lay.chunk, self.lanes)
            m.d.sync += [self.index.eq(self.index + 1), self.addr.eq(nw), self.lane.eq(nl), within.eq(ni)]
