"""The row units' shared walkers (`accel.rowio`) against their golden model `row_addresses`."""
import numpy as np
from amaranth.hdl import Module, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator
from hypothesis import given, settings, strategies as st

from intformer.accel.rowio import (RowReader, RowWriter, by_parity, parity_pair, read_signature, row_addresses,
                                   shadow, store_by_parity, write_signature)

ADDR, MAX_COLS, DATA = 8, 12, 9


class Walkers(wiring.Component):
    """A reader and a writer in one module, as a row unit holds them: the reader's `first`/`last`, through
    one `shadow` stage, tag the writer's data; `parity` picks which of a `parity_pair` takes `data`."""

    def __init__(self, lanes, start_first):
        self.lanes, self.start_first = lanes, start_first
        super().__init__({
            "begin": In(1), "base": In(unsigned(ADDR)), "issue": In(1), "cols": In(range(MAX_COLS + 1)),
            "start": In(1), "out_base": In(unsigned(ADDR)), "wpr": In(unsigned(ADDR)),
            "valid": In(1), "first": In(1), "last": In(1), "data": In(DATA),
            "store": In(1), "parity": In(1), "picked": Out(DATA), "r_first": Out(1), "r_last": Out(1),
            "rd": Out(read_signature(ADDR, lanes, DATA)), "wr": Out(write_signature(ADDR, lanes, DATA)),
        })

    def elaborate(self, platform):
        m = Module()
        reader = RowReader(lanes=self.lanes, addr_width=ADDR, max_cols=MAX_COLS)
        writer = RowWriter(lanes=self.lanes, addr_width=ADDR, start_first=self.start_first)
        reader.elaborate(m, self.cols, self.rd)
        m.d.comb += [reader.issue.eq(self.issue), self.r_first.eq(reader.first), self.r_last.eq(reader.last)]
        with m.If(self.begin):
            reader.begin(m, self.base)
        first1, last1 = shadow(m, [self.first, self.last], ["first", "last"], 1)
        valid1, data1 = shadow(m, [self.valid, self.data], ["valid", "data"], 1)
        writer.elaborate(m, self.wr, start=self.start, base=self.out_base, wpr=self.wpr, valid=valid1,
                         first=first1, last=last1, data=data1)
        pair = parity_pair(DATA, "pair")
        with m.If(self.store):
            store_by_parity(m, self.parity, [(pair, self.data)])
        m.d.comb += self.picked.eq(by_parity(pair, self.parity))
        return m


def simulate(dut, tb):
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()


@settings(max_examples=8, deadline=None)
@given(lanes=st.integers(1, 4), rows=st.integers(1, 4), cols=st.integers(1, MAX_COLS), wpr_extra=st.integers(0, 2),
       start_first=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_row_walkers(lanes, rows, cols, wpr_extra, start_first, seed):
    """The reader issues each row's reads at row_addresses (first/last on the row's ends, reads with gaps);
    the writer writes results given with gaps at row_addresses of the output; a parity pair keeps two values."""
    rng = np.random.default_rng(seed)
    wpr = -(-cols // lanes) + wpr_extra
    src_base, out_base = int(rng.integers(0, 20)), int(rng.integers(0, 20))
    dut = Walkers(lanes, start_first)
    reads, writes, tags = [], [], []

    async def tb(ctx):
        ctx.set(dut.cols, cols)
        ctx.set(dut.wpr, wpr)
        ctx.set(dut.out_base, out_base)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        for r in range(rows):                          # read side: begin each row, then its reads with gaps
            ctx.set(dut.begin, 1)
            ctx.set(dut.base, src_base + r * wpr)
            await ctx.tick()
            ctx.set(dut.begin, 0)
            c = 0
            while c < cols:
                go = int(rng.random() < 0.7)
                ctx.set(dut.issue, go)
                if go:
                    reads.append((ctx.get(dut.rd.addr), ctx.get(dut.rd.lane)))
                    tags.append((ctx.get(dut.r_first), ctx.get(dut.r_last)))
                    assert ctx.get(dut.rd.en)
                    c += 1
                await ctx.tick()
            ctx.set(dut.issue, 0)
        items = [(r, c) for r in range(rows) for c in range(cols)]
        while items or ctx.get(dut.wr.en):             # write side: one result a cycle at most, with gaps
            if ctx.get(dut.wr.en):
                writes.append((ctx.get(dut.wr.addr), ctx.get(dut.wr.lane), ctx.get(dut.wr.data)))
            go = bool(items) and rng.random() < 0.6
            ctx.set(dut.valid, int(go))
            if go:
                r, c = items.pop(0)
                ctx.set(dut.first, int(c == 0))
                ctx.set(dut.last, int(c == cols - 1))
                ctx.set(dut.data, (r * cols + c) % (1 << DATA))
            await ctx.tick()
        for p, v in ((0, 5), (1, 7)):                  # the parity pair: each parity keeps its own value
            ctx.set(dut.store, 1)
            ctx.set(dut.parity, p)
            ctx.set(dut.data, v)
            await ctx.tick()
        ctx.set(dut.store, 0)
        for p, v in ((0, 5), (1, 7)):
            ctx.set(dut.parity, p)
            assert ctx.get(dut.picked) == v

    simulate(dut, tb)
    assert reads == row_addresses(src_base, wpr, rows, cols, lanes)
    assert tags == [(int(c == 0), int(c == cols - 1)) for _ in range(rows) for c in range(cols)]
    assert [(a, l) for a, l, _ in writes] == row_addresses(out_base, wpr, rows, cols, lanes)
    assert [d for _, _, d in writes] == [i % (1 << DATA) for i in range(rows * cols)]


def test_writer_start_rule():
    """`start_first`: a start in the cycle of a row's last write resets the walk (softmax) or lets the write
    move it on (LayerNorm); the walk then goes on from there."""
    for start_first, expect_row in ((True, 3), (False, 3 + 4)):
        dut = Walkers(2, start_first)

        async def tb(ctx):
            ctx.set(dut.cols, 1)
            ctx.set(dut.wpr, 4)
            ctx.set(dut.out_base, 3)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.valid, 1)                      # a one-element row: first and last
            ctx.set(dut.first, 1)
            ctx.set(dut.last, 1)
            await ctx.tick()                           # the shadow stage: written now, with a start
            ctx.set(dut.valid, 0)
            assert ctx.get(dut.wr.en) and ctx.get(dut.wr.addr) == 3
            await ctx.tick()
            ctx.set(dut.start, 0)
            ctx.set(dut.valid, 1)
            await ctx.tick()
            assert ctx.get(dut.wr.en) and ctx.get(dut.wr.addr) == expect_row

        simulate(dut, tb)
