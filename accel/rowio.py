"""What the row units (softmax, LayerNorm) share: the element interface, the row reader and row writer
that walk a buffer row, and the row-parity double buffer of per-row results.

A buffer is stored in P-wide words, a word holding P consecutive codes of one row (`accel.plan`): element
(r, c) of a plain row-major buffer lies at word base + r * words_per_row + c // P, lane c % P. The row
units walk rows in order, so they keep a (word, lane) pair and step it instead of dividing. The
accelerator points the interface at any buffer by its word base and words per row.

A row unit is a pipeline between the two walkers: `RowReader` issues one element read per cycle along a
source row and says which element is the row's first and last; those tags travel down the unit's pipeline
beside the element (`shadow` registers, `accel.pipeline.delay`), and `RowWriter` writes each result along
the output row, a new row beginning at each `first` tag. Both add their registers to the unit's own module.
Per-row results (a reciprocal, a row's statistics) are kept twice, by row parity (`parity_pair`), so that
row i + 1's are computed while row i's are used.
"""
from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out


def read_signature(addr_width: int, lanes: int, data_width: int) -> wiring.Signature:
    """Element read: `en`, `addr` (word), `lane` out; `data` in, valid one cycle after `en` (a sync read)."""
    return wiring.Signature({
        "en": Out(1), "addr": Out(unsigned(addr_width)), "lane": Out(range(max(lanes, 2))),
        "data": In(signed(data_width)),
    })


def write_signature(addr_width: int, lanes: int, data_width: int) -> wiring.Signature:
    """Element write: `en`, `addr` (word), `lane`, `data`, all in the same cycle."""
    return wiring.Signature({
        "en": Out(1), "addr": Out(unsigned(addr_width)), "lane": Out(range(max(lanes, 2))),
        "data": Out(signed(data_width)),
    })


def lookup_signature(addr_width: int, data_shape) -> wiring.Signature:
    """A constant table (ROM) read: `addr` out, `data` in one cycle later."""
    return wiring.Signature({"addr": Out(unsigned(addr_width)), "data": In(data_shape)})


def step_lane(word, lane, lanes: int):
    """The (word, lane) of the next element of a row-major P-wide row: lane + 1, or the next word."""
    wrap = lane == lanes - 1
    return Mux(wrap, word + 1, word), Mux(wrap, 0, lane + 1)


class RowReader:
    """The read walker of a row unit: element reads along one row of a P-wide buffer, one per cycle.

    `begin(m, base)` (in the unit's schedule, at its current condition) puts the walker at the first element
    of the row whose first word is `base`; each cycle with `issue` high (the unit's schedule drives it) it
    issues a read (`rd.en`) of the current element (`rd.addr`, `rd.lane`) and moves on to the next
    (`step_lane`). `col` is the current element's column; `first` and `last` (col == cols - 1) say that it
    is the row's first or last: the unit registers them beside the read, so they arrive with its data. The
    unit's schedule never begins a row in a cycle that issues a read (a `begin` would win).

    The walker's registers live in the unit's own module (`elaborate(m, ...)` adds its statements there):
    as a submodule of its own, yosys maps the same logic into other cells (more carry chains and LUTs).

    Latency: the read is issued in the cycle of `issue`; its data (`rd.data`, read by the unit) comes one
    cycle later. Widths: word `addr_width` bits, lane range(max(lanes, 2)), col range(max_cols + 1).
    Golden model: `row_addresses`.
    """

    def __init__(self, *, lanes: int, addr_width: int, max_cols: int, fault: str | None = None):
        # `fault`: a deliberate design fault for the must-fail proof (`accel.formal.rowio_walkers_harness`);
        # None builds the real walker. "word_narrow": the word counter one bit narrower (it wraps).
        if fault not in (None, "word_narrow"):
            raise ValueError(f"unknown RowReader fault {fault!r}")
        self.lanes = lanes
        word_width = addr_width - (1 if fault == "word_narrow" else 0)
        self.word = Signal(unsigned(word_width), name="word")   # the current element's word and lane
        self.lane = Signal(range(max(lanes, 2)), name="lane")
        self.col = Signal(range(max_cols + 1), name="col")      # ... and column
        self.issue = Signal(name="issue")                       # a read is issued (comb, from the schedule)
        self.first, self.last = Signal(name="first"), Signal(name="last")

    def elaborate(self, m: Module, cols: Value, rd) -> None:
        """Add the walker to `m`: `cols` elements a row, reads on the element interface `rd`."""
        word, lane, col = self.word, self.lane, self.col
        m.d.comb += [self.first.eq(col == 0), self.last.eq(col == cols - 1)]
        m.d.comb += [rd.en.eq(self.issue), rd.addr.eq(word), rd.lane.eq(lane)]
        with m.If(self.issue):
            nword, nlane = step_lane(word, lane, self.lanes)
            m.d.sync += [word.eq(nword), lane.eq(nlane), col.eq(col + 1)]

    def begin(self, m: Module, base: Value) -> None:
        """At the current condition of `m`: the next read is the first element of the row at word `base`."""
        m.d.sync += [self.word.eq(base), self.lane.eq(0), self.col.eq(0)]

    def read_row(self, m: Module, then: str, row_done=()) -> None:
        """In a state of the unit's schedule (an FSM of `m`): issue this cycle's read; after the row's last,
        the unit's `row_done` statements (sync: its row and base on to the next row) and on to state `then`."""
        m.d.comb += self.issue.eq(1)
        with m.If(self.last):
            if row_done:
                m.d.sync += list(row_done)
            m.next = then


class RowWriter:
    """The write walker of a row unit: writes each valid result along the output rows, one per cycle.

    `start` sets the first output row's word to `base`; a result with `valid` high is written (`wr.en`,
    `wr.addr`, `wr.lane`, `wr.data` in the same cycle) at the next element of the current row, or, with
    `first`, at the row's first element; after one with `last` the row moves on by `wpr` words. So a row
    is written wherever the unit's rows begin, whatever gaps lie between its results.

    `start_first` says what a `start` in the cycle of a write does: True (the softmax unit), the start
    wins and the write does not move the walker; False (the LayerNorm unit), the write moves it as usual
    and only the row's word is set to `base`, unless that write ends a row. Each unit keeps its own rule:
    the two differ only for a start while a run still writes, which the accelerator never gives.

    Its registers live in the unit's module, as `RowReader`'s do. Latency: 0 (the write is in the cycle of
    `valid`). Widths: word `addr_width` bits, lane range(max(lanes, 2)), data that of `wr`. Golden model:
    `row_addresses`.
    """

    def __init__(self, *, lanes: int, addr_width: int, start_first: bool):
        self.lanes, self.start_first = lanes, start_first
        self.out_row = Signal(unsigned(addr_width), name="out_row")  # the first word of the row being written
        self.w_word = Signal(unsigned(addr_width), name="w_word")    # the word and lane of the row's next element
        self.w_lane = Signal(range(max(lanes, 2)), name="w_lane")

    def elaborate(self, m: Module, wr, *, start, base, wpr, valid, first, last, data, on_start=(),
                  row_done=()) -> None:
        """Add the walker to `m`, writing on the element interface `wr`. `on_start`, `row_done`: the unit's
        own sync statements (its count of rows written) beside the walker's, at a start and at each row's
        end."""
        out_row, w_word, w_lane = self.out_row, self.w_word, self.w_lane
        cur_word = Mux(first, out_row, w_word)
        cur_lane = Mux(first, 0, w_lane)
        m.d.comb += [wr.en.eq(valid), wr.addr.eq(cur_word), wr.lane.eq(cur_lane), wr.data.eq(data)]
        with m.If(start):
            m.d.sync += [out_row.eq(base), *on_start]
        # the write moves the walker: after the start's `If` (start_first) or on its own (a later statement
        # wins over the start's assignment of out_row)
        with (m.Elif if self.start_first else m.If)(valid):
            nword, nlane = step_lane(cur_word, cur_lane, self.lanes)
            m.d.sync += [w_word.eq(nword), w_lane.eq(nlane)]
            with m.If(last):
                m.d.sync += [out_row.eq(out_row + wpr), *row_done]


def row_addresses(base: int, wpr: int, rows: int, cols: int, lanes: int) -> list[tuple[int, int]]:
    """Golden model of both walkers: the (word, lane) of each element of `rows` rows of `cols`, in order."""
    return [(base + r * wpr + c // lanes, c % lanes) for r in range(rows) for c in range(cols)]


def shadow(m: Module, tags: list, names: list[str], stage) -> list[Signal]:
    """One stage of a row unit's shadow registers: each tag (valid, first, last, ...) of the element that
    enters the stage, registered beside it (named `{name}{stage}`) in one statement list, in order: the
    order of registers decides the order of yosys' cells, and so what ABC makes of them."""
    regs = [Signal(Value.cast(tag).shape(), name=f"{name}{stage}") for tag, name in zip(tags, names)]
    m.d.sync += [reg.eq(tag) for reg, tag in zip(regs, tags)]
    return regs


def parity_pair(shape, name: str) -> list[Signal]:
    """A per-row register kept twice, `{name}0` for even rows and `{name}1` for odd ones."""
    return [Signal(shape, name=f"{name}{p}") for p in range(2)]


def by_parity(pair: list[Signal], parity: Value) -> Value:
    """The copy of `pair` that belongs to a row of this parity."""
    return Mux(parity, pair[1], pair[0])


def store_by_parity(m: Module, parity: Value, assigns: list[tuple[list[Signal], object]]) -> None:
    """In `m.d.sync`, at the current condition: for each (pair, value), the copy of the row of this parity
    takes the value."""
    with m.Switch(parity):
        for p in range(2):
            with m.Case(p):
                m.d.sync += [pair[p].eq(value) for pair, value in assigns]
