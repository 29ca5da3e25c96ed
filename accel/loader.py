"""The input loader: the `input` stream into the x buffer's words."""
from __future__ import annotations

from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import stream
from amaranth.lib.wiring import In, Out

from .arith import code_shape
from .block import Block
from .plan import BufferLayout
from .walk import walk


class InputLoader(Block):
    """Takes rows x cols codes of the x buffer from `input` (row-major) and writes each where the layout
    puts it (`accel.plan.BufferLayout`: word, lane of a chunked P-wide row).

    `start` (a pulse, before the first transfer) rewinds to the buffer's first element (word `layout.base`
    of its bank); `active` opens the stream (`input.ready`). Each transfer is a write in the same cycle:
    `en` (= `input.valid & active`), `addr`, `lane`, `data` (the payload). `count` counts the transfers
    since `start`; `last` marks the rows x cols-th. Latency: 0 (the write is the transfer's cycle).
    Widths: `data` the x buffer's code shape, `addr` `addr_width`, `lane` log2(P), `count` up to rows x cols.
    """

    def __init__(self, layout: BufferLayout, lanes: int, addr_width: int):
        self.layout, self.lanes = layout, lanes
        self.n_codes = layout.rows * layout.cols
        super().__init__({
            "input": In(stream.Signature(code_shape(layout.bits, layout.signed))),
            "start": In(1), "active": In(1),
            "en": Out(1), "addr": Out(unsigned(addr_width)), "lane": Out(max(1, lanes - 1).bit_length()),
            "data": Out(code_shape(layout.bits, layout.signed)),
            "count": Out(range(self.n_codes + 1)), "last": Out(1),
        })

    def _build(self, m: Module) -> None:
        lay = self.layout
        within = Signal(range(lay.chunk + 1))
        m.d.comb += [self.input.ready.eq(self.active), self.en.eq(self.active & self.input.valid),
                     self.data.eq(self.input.payload), self.last.eq(self.en & (self.count == self.n_codes - 1))]
        with m.If(self.start):
            m.d.sync += [self.addr.eq(lay.base), self.lane.eq(0), within.eq(0), self.count.eq(0)]
        with m.Elif(self.en):
            nw, nl, ni = walk(self.addr, self.lane, within, lay.chunk, self.lanes)
            m.d.sync += [self.addr.eq(nw), self.lane.eq(nl), within.eq(ni), self.count.eq(self.count + 1)]
