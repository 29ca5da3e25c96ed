"""The LayerNorm row unit: `intops.layernorm_int` over each row of a buffer, one element per cycle."""
from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from intformer.model import intops

from .arith import clamp, round_shift, round_shift_in
from .divsqrt import Isqrt, Reciprocal
from .rowio import (RowReader, RowWriter, by_parity, lookup_signature, parity_pair, read_signature, shadow,
                    store_by_parity, write_signature)

SUM, NORM = 0, 1


def ln_widths(elem_width: int, max_cols: int, eps_max: int) -> dict:
    """Register widths of the LayerNorm datapath, from the worst case of codes and row width."""
    D = max_cols
    xm = 1 << (elem_width - 1)                     # |x| <= 2^(E-1)
    s_max, q_max = D * xm, D * xm * xm
    v_max = D * D * D * q_max + eps_max            # D^2 (D Q - S^2) + eps, with D Q - S^2 <= D Q
    t1_max = 2 * D * D * xm                        # |D^2 x - D S|
    t2_max = t1_max << (intops.LN_FRAC_BITS + intops.LN_RECIP_BITS)
    return {
        "s": intops.bits_signed(-s_max, s_max), "q": intops.bits_unsigned(q_max),
        "v": intops.bits_unsigned(v_max), "d2": intops.bits_unsigned(D * D),
        "ds": intops.bits_signed(-D * s_max, D * s_max), "t1": intops.bits_signed(-t1_max, t1_max),
        "t2": intops.bits_signed(-t2_max, t2_max),
        "n": intops.bits_signed(-(t2_max >> intops.LN_RECIP_BITS) - 1, (t2_max >> intops.LN_RECIP_BITS) + 1),
    }


def sums_layout(elem_width: int, max_cols: int) -> data.StructLayout:
    """A row's sum and sum of squares (what the drain accumulates while it writes the row)."""
    w = ln_widths(elem_width, max_cols, 0)
    return data.StructLayout({"s": signed(w["s"]), "q": unsigned(w["q"])})


class LayerNormUnit(wiring.Component):
    """Integer LayerNorm of `rows` rows of D = `cols` codes with a per-channel affine (g, b):
    exactly `intops.layernorm_int`.

    Algorithm per row: a SUM pass accumulates S = sum(x) and Q = sum(x^2) (skipped when `ext_sums` is set:
    the accelerator accumulates them while the row is written and they come from the `rsum` lookup); then
    v = D^2 (D Q - S^2) + eps, which equals sum((D x - S)^2) * D + eps; R = isqrt(v) (bit-serial);
    inv = floor(2^34 / R) (restoring divider, radix 4); a NORM pass reads x again and computes
    n = round_shift((D^2 x - D S) * inv, 24) and y = clamp(round_shift(n * g[c] + b[c], s), lo, hi).
    The square root of row i + 1 runs while the divider works on row i, and both while an earlier row is
    normalized: the pass order is SUM(0), SUM(1), NORM(0), SUM(2), NORM(1), ... A row is read only once
    `rows_ready` exceeds its index.

    Timing: one element per cycle in each pass; per row about the largest of 2 D (D + 4 with ext_sums),
    the square root's ceil(width(v) / 2) + 5 and the divider's 19 cycles, once the pipeline is full.
    `start` begins, `busy` until the last write, `done` pulses.

    Latency: 5 cycles from a NORM read's issue to its write (stage 1, the data: t1 and the (g, b) lookup;
    2: t2; 3: n g + b; 4: the shift and clamp; 5: the write); the reads and writes walk the rows by
    `rowio.RowReader` and `RowWriter`, whose tags (valid, first, last) travel in `rowio.shadow` registers.

    Widths (`ln_widths`): codes signed `elem_width` E, D <= max_cols: S, Q, v, D S, D^2 x - D S, its
    product with inv (E + 2 log2 D + 36 bits) and n follow from the worst case; g, b signed
    `g_width`, `b_width`; the output code signed `out_width`. The final shift s lies in `s_range`.
    """

    def __init__(self, *, lanes: int, elem_width: int, addr_width: int, max_rows: int, max_cols: int,
                 eps_max: int, g_width: int, b_width: int, param_addr_width: int = 8, out_width: int = 9,
                 s_range: tuple[int, int] = (0, 62), fault: str | None = None):
        # `fault`: a deliberate design fault for the must-fail proofs (`accel.formal`); None builds the real
        # unit. "q_narrow": the sum of squares Q one bit narrower than its worst case (a row of D codes of
        # -2^(E-1) wraps it); "t2_narrow": the NORM pass's product t2 = t1 x inv one bit narrower (t1 near
        # its register's bound times inv = 2^34 wraps it).
        if fault not in (None, "q_narrow", "t2_narrow"):
            raise ValueError(f"unknown LayerNormUnit fault {fault!r}")
        self.fault = fault
        self.lanes, self.elem_width, self.addr_width = lanes, elem_width, addr_width
        self.max_cols, self.out_width = max_cols, out_width
        self.g_width, self.b_width = g_width, b_width
        self.s_range = s_range
        self.w = w = ln_widths(elem_width, max_cols, eps_max)
        self.k_inv = intops.LN_FRAC_BITS + intops.LN_RECIP_BITS     # inv = floor(2^k_inv / R)
        self.eps_width = max(1, int(eps_max).bit_length())
        self.param_layout = data.StructLayout({"g": signed(g_width), "b": signed(b_width)})
        super().__init__({
            "start": In(1), "busy": Out(1), "done": Out(1),
            "rows": In(range(max_rows + 1)), "cols": In(range(max_cols + 1)), "rows_ready": In(range(max_rows + 1)),
            "src_base": In(unsigned(addr_width)), "src_wpr": In(unsigned(addr_width)),
            "out_base": In(unsigned(addr_width)), "out_wpr": In(unsigned(addr_width)),
            "p_base": In(unsigned(param_addr_width)), "s": In(range(63)), "eps": In(unsigned(self.eps_width)),
            "lo": In(signed(out_width)), "hi": In(signed(out_width)),
            "ext_sums": In(1),
            "rd": Out(read_signature(addr_width, lanes, elem_width)),
            "wr": Out(write_signature(addr_width, lanes, out_width)),
            "param": Out(lookup_signature(param_addr_width, self.param_layout)),
            "rsum": Out(lookup_signature(max(1, (max_rows - 1).bit_length()), sums_layout(elem_width, max_cols))),
        })
        # the registers that the pass scheduler, the SUM pass, the statistics engine and the NORM pass share
        self.row_s, self.row_n = Signal.like(self.rows, name="row_s"), Signal.like(self.rows, name="row_n")
        self.base_s = Signal(unsigned(addr_width), name="base_s")     # the first word of the next SUM pass's row
        self.base_n = Signal(unsigned(addr_width), name="base_n")     # ... and of the next NORM pass's
        self.ds = parity_pair(signed(w["ds"]), "ds")                  # D S and inv of each row, by row parity
        self.inv = parity_pair(unsigned(self.k_inv + 1), "inv")
        self.stats_ready = parity_pair(1, "stats_ready")
        self.sums_full = Signal()                   # a row's (S, Q) waits for the statistics engine
        self.sums_par = Signal()
        q_width = w["q"] - (1 if fault == "q_narrow" else 0)
        self.s_row, self.q_row = Signal(signed(w["s"]), name="s_row"), Signal(unsigned(q_width), name="q_row")
        self.sum_valid, self.sum_first = Signal(), Signal()     # a SUM pass's element in stage 1 (the proofs')
        self.sum_pending = Signal()                 # a SUM pass whose sums have not arrived yet
        self.rows_written = Signal.like(self.rows)
        self.d2 = Signal(unsigned(w["d2"]))         # D^2, registered
        # the NORM pass's t1 = D^2 x - D S and t2 = t1 x inv (stages 1 and 2; the proofs read them)
        self.t1 = Signal(signed(w["t1"]), name="t1")
        self.t2 = Signal(signed(w["t2"] - (1 if fault == "t2_narrow" else 0)), name="t2")

    def elaborate(self, platform):
        m = Module()
        m.submodules.sqrt = sqrt = Isqrt(self.w["v"])
        m.submodules.div = div = Reciprocal(self.k_inv, sqrt.r_bits, radix_bits=2)
        reader = RowReader(lanes=self.lanes, addr_width=self.addr_width, max_cols=self.max_cols)
        writer = RowWriter(lanes=self.lanes, addr_width=self.addr_width, start_first=False)
        reader.elaborate(m, self.cols, self.rd)
        m.d.sync += self.done.eq(0)
        m.d.comb += self.rsum.addr.eq(self.row_s)
        # the order of these sections matters where two assign one register (the later wins): the SUM pass's
        # sums over LOAD_SUMS's, the statistics engine's claim of sums_full over their arrival, a row's
        # statistics arriving over the scheduler's clearing of stats_ready
        kind, par = self._schedule(m, reader)
        tags1 = shadow(m, [reader.issue, kind, reader.first, reader.last, par],
                       ["v", "kind", "first", "last", "par"], 1)
        self._sum_pass(m, *tags1)
        self._statistics(m, sqrt, div)
        v5, first5, last5, y5 = self._norm_pass(m, reader.col, *tags1)
        rows_written = self.rows_written
        writer.elaborate(m, self.wr, start=self.start, base=self.out_base, wpr=self.out_wpr, valid=v5, first=first5,
                         last=last5, data=y5, row_done=[rows_written.eq(rows_written + 1)])
        return m

    def _schedule(self, m, reader):
        """The pass scheduler (the issue side): SUM(0), SUM(1), then NORM(i) and SUM(i + 2) in turn; a SUM pass
        (or LOAD_SUMS, the row's sums from the `rsum` lookup, one cycle after the address) once its row is
        ready and the statistics engine has taken the sums before; a NORM pass once its row's statistics
        are ready. Returns the pass being read (SUM, NORM) and its row's parity."""
        row_s, row_n, base_s, base_n = self.row_s, self.row_n, self.base_s, self.base_n
        stats_ready = self.stats_ready
        kind, par = Signal(), Signal()
        with m.FSM(name="sched"):
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [row_s.eq(0), row_n.eq(0), base_s.eq(self.src_base), base_n.eq(self.src_base),
                                 self.rows_written.eq(0), self.busy.eq(1), stats_ready[0].eq(0),
                                 stats_ready[1].eq(0)]
                    m.next = "NEXT_S"
            with m.State("NEXT_S"):
                with m.If(row_s == self.rows):
                    m.next = "NEXT_N"
                with m.Elif((self.rows_ready > row_s) & ~self.sums_full & ~self.sum_pending):
                    with m.If(self.ext_sums):
                        m.next = "LOAD_SUMS"          # rsum.addr = row_s now; data next cycle
                    with m.Else():
                        self._begin_pass(m, reader, kind, par, SUM, row_s, base_s)
                        m.d.sync += self.sum_pending.eq(1)
                        m.next = "ISSUE_S"
            with m.State("LOAD_SUMS"):
                m.d.sync += [self.s_row.eq(self.rsum.data.s), self.q_row.eq(self.rsum.data.q), self.sums_full.eq(1),
                             self.sums_par.eq(row_s[0]), row_s.eq(row_s + 1), base_s.eq(base_s + self.src_wpr)]
                m.next = "AFTER_S"
            with m.State("ISSUE_S"):
                reader.read_row(m, then="AFTER_S", row_done=[row_s.eq(row_s + 1), base_s.eq(base_s + self.src_wpr)])
            with m.State("AFTER_S"):
                with m.If(row_s == 1):
                    m.next = "NEXT_S"
                with m.Else():
                    m.next = "NEXT_N"
            with m.State("NEXT_N"):
                with m.If(row_n == self.rows):
                    with m.If(self.rows_written == self.rows):
                        m.d.sync += [self.busy.eq(0), self.done.eq(1)]
                        m.next = "IDLE"
                with m.Elif(by_parity(stats_ready, row_n[0])):
                    self._begin_pass(m, reader, kind, par, NORM, row_n, base_n)
                    store_by_parity(m, row_n[0], [(stats_ready, 0)])
                    m.next = "ISSUE_N"
            with m.State("ISSUE_N"):
                reader.read_row(m, then="NEXT_S", row_done=[row_n.eq(row_n + 1), base_n.eq(base_n + self.src_wpr)])
        return kind, par

    @staticmethod
    def _begin_pass(m, reader, kind, par, pass_kind, row, base):
        """At the scheduler's current condition: the next reads are a pass of `pass_kind` over `row`."""
        m.d.sync += [kind.eq(pass_kind), par.eq(row[0])]
        reader.begin(m, base)

    def _sum_pass(self, m, v1, kind1, first1, last1, par1):
        """The SUM pass's datapath (stage 1, the read's data): S = sum(x), Q = sum(x^2) along the row; at its
        end the sums wait (`sums_full`) for the statistics engine."""
        x = self.rd.data
        m.d.comb += [self.sum_valid.eq(v1 & (kind1 == SUM)), self.sum_first.eq(first1)]
        with m.If(self.sum_valid):
            s_next = Mux(first1, x, self.s_row + x)
            q_next = Mux(first1, x * x, self.q_row + x * x)
            m.d.sync += [self.s_row.eq(s_next), self.q_row.eq(q_next)]
            with m.If(last1):
                m.d.sync += [self.sums_full.eq(1), self.sums_par.eq(par1), self.sum_pending.eq(0)]

    def _statistics(self, m, sqrt, div):
        """The statistics engine, from a row's (S, Q) to its D S and inv: stage A: v = D^2 (D Q - S^2) + eps,
        R = isqrt(v); stage B: inv = floor(2^34 / R). The two stages work on consecutive rows at once; D S
        travels with the row. Widths: `ln_widths`."""
        w, D, d2 = self.w, self.cols, self.d2
        m.d.sync += d2.eq(D * D)
        a_par, b_par = Signal(), Signal()
        a_ds, b_ds = Signal(signed(w["ds"]), name="a_ds"), Signal(signed(w["ds"]), name="b_ds")
        diff = Signal(unsigned(w["v"]))
        vreg = Signal(unsigned(w["v"]))
        with m.FSM(name="stats"):
            with m.State("IDLE"):
                with m.If(self.sums_full & ~self.start):
                    m.d.sync += [diff.eq(D * self.q_row - self.s_row * self.s_row), a_ds.eq(D * self.s_row),
                                 a_par.eq(self.sums_par), self.sums_full.eq(0)]
                    m.next = "V"
            with m.State("V"):
                m.d.sync += vreg.eq(d2 * diff + self.eps)
                m.next = "SQRT"
            with m.State("SQRT"):
                m.d.comb += [sqrt.start.eq(1), sqrt.v.eq(vreg)]
                m.next = "SQRT_WAIT"
            with m.State("SQRT_WAIT"):
                with m.If(sqrt.done):
                    m.next = "HAND"
            with m.State("HAND"):
                with m.If(~div.busy):
                    m.d.comb += [div.start.eq(1), div.n.eq(sqrt.r)]
                    m.d.sync += [b_par.eq(a_par), b_ds.eq(a_ds)]
                    m.next = "IDLE"
        with m.If(div.done):
            store_by_parity(m, b_par, [(self.inv, div.q), (self.ds, b_ds), (self.stats_ready, 1)])

    def _norm_pass(self, m, col, v1, kind1, first1, last1, par1):
        """The NORM pass's datapath, stages 1..5 from the read's data to the written code: 1: t1 = D^2 x - D S,
        the (g, b) of this column looked up (valid in stage 2); 2: t2 = t1 x inv; 3: n = round_shift(t2, 24),
        then n g + b; 4: round, shift by s, clamp to [lo, hi]; 5: the write (`RowWriter`). Returns stage 5's
        valid, first, last and code."""
        w, names = self.w, ["v", "first", "last"]
        nv1 = v1 & (kind1 == NORM)
        col1, = shadow(m, [col], ["col"], 1)
        m.d.comb += self.param.addr.eq(self.p_base + col1)
        t1 = self.t1
        m.d.sync += t1.eq(self.rd.data * self.d2 - by_parity(self.ds, par1))
        v2, first2, last2, par2 = shadow(m, [nv1, first1, last1, par1], names + ["par"], 2)
        t2 = self.t2
        g3, b3 = Signal(signed(self.g_width)), Signal(signed(self.b_width))
        m.d.sync += [t2.eq(t1 * by_parity(self.inv, par2)), g3.eq(self.param.data.g), b3.eq(self.param.data.b)]
        tags3 = shadow(m, [v2, first2, last2], names, 3)
        n3 = Signal(signed(w["n"]))
        m.d.comb += n3.eq(round_shift(t2, intops.LN_RECIP_BITS))
        acc4 = Signal(signed(max(w["n"] + self.g_width, self.b_width) + 1))
        m.d.sync += acc4.eq(n3 * g3 + b3)
        tags4 = shadow(m, tags3, names, 4)
        y5 = Signal(signed(self.out_width))
        m.d.sync += y5.eq(clamp(round_shift_in(acc4, self.s, self.s_range), self.lo, self.hi))
        v5, first5, last5 = shadow(m, tags4, names, 5)
        return v5, first5, last5, y5
