"""The LayerNorm row unit: `intops.layernorm_int` over each row of a buffer, one element per cycle."""
from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from intformer.model import intops

from .arith import clamp, round_shift, round_shift_in
from .divsqrt import Isqrt, Reciprocal
from .rowio import lookup_signature, read_signature, step_lane, write_signature

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

    Widths (`ln_widths`): codes signed `elem_width` E, D <= max_cols: S, Q, v, D S, D^2 x - D S, its
    product with inv (E + 2 log2 D + 36 bits) and n follow from the worst case; g, b signed
    `g_width`, `b_width`; the output code signed `out_width`. The final shift s lies in `s_range`.
    """

    def __init__(self, *, lanes: int, elem_width: int, addr_width: int, max_rows: int, max_cols: int,
                 eps_max: int, g_width: int, b_width: int, param_addr_width: int = 8, out_width: int = 9,
                 s_range: tuple[int, int] = (0, 62)):
        self.lanes, self.elem_width, self.addr_width = lanes, elem_width, addr_width
        self.max_cols, self.out_width = max_cols, out_width
        self.g_width, self.b_width = g_width, b_width
        self.s_range = s_range
        self.w = ln_widths(elem_width, max_cols, eps_max)
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

    def elaborate(self, platform):
        m = Module()
        w, P = self.w, self.lanes
        k_inv = intops.LN_FRAC_BITS + intops.LN_RECIP_BITS
        m.submodules.sqrt = sqrt = Isqrt(w["v"])
        m.submodules.div = div = Reciprocal(k_inv, sqrt.r_bits, radix_bits=2)

        # ------------------------------------------------------------------ pass scheduler (issue side)
        row_s, row_n = Signal.like(self.rows, name="row_s"), Signal.like(self.rows, name="row_n")
        base_s, base_n = Signal(unsigned(self.addr_width), name="base_s"), Signal(unsigned(self.addr_width), name="base_n")
        kind, par = Signal(), Signal()
        word = Signal(unsigned(self.addr_width))
        lane = Signal(range(max(P, 2)))
        col = Signal.like(self.cols)
        issue, first, last = Signal(), Signal(), Signal()
        m.d.comb += [first.eq(col == 0), last.eq(col == self.cols - 1)]
        m.d.comb += [self.rd.en.eq(issue), self.rd.addr.eq(word), self.rd.lane.eq(lane)]
        with m.If(issue):
            nword, nlane = step_lane(word, lane, P)
            m.d.sync += [word.eq(nword), lane.eq(nlane), col.eq(col + 1)]

        # per-row statistics, double-buffered by row parity: D S and inv for the NORM pass
        ds = [Signal(signed(w["ds"]), name=f"ds{p}") for p in range(2)]
        inv = [Signal(unsigned(k_inv + 1), name=f"inv{p}") for p in range(2)]
        stats_ready = [Signal(name=f"stats_ready{p}") for p in range(2)]
        sums_full = Signal()                    # a row's (S, Q) waits for the statistics engine
        sums_par = Signal()
        s_row, q_row = Signal(signed(w["s"]), name="s_row"), Signal(unsigned(w["q"]), name="q_row")
        sum_pending = Signal()                  # a SUM pass whose sums have not arrived yet
        rows_written = Signal.like(self.rows)
        m.d.sync += self.done.eq(0)
        m.d.comb += self.rsum.addr.eq(row_s)

        def begin(k, row, base):
            m.d.sync += [kind.eq(k), par.eq(row[0]), word.eq(base), lane.eq(0), col.eq(0)]

        with m.FSM(name="sched"):
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [row_s.eq(0), row_n.eq(0), base_s.eq(self.src_base), base_n.eq(self.src_base),
                                 rows_written.eq(0), self.busy.eq(1), stats_ready[0].eq(0), stats_ready[1].eq(0)]
                    m.next = "NEXT_S"
            with m.State("NEXT_S"):
                with m.If(row_s == self.rows):
                    m.next = "NEXT_N"
                with m.Elif((self.rows_ready > row_s) & ~sums_full & ~sum_pending):
                    with m.If(self.ext_sums):
                        m.next = "LOAD_SUMS"          # rsum.addr = row_s now; data next cycle
                    with m.Else():
                        begin(SUM, row_s, base_s)
                        m.d.sync += sum_pending.eq(1)
                        m.next = "ISSUE_S"
            with m.State("LOAD_SUMS"):
                m.d.sync += [s_row.eq(self.rsum.data.s), q_row.eq(self.rsum.data.q), sums_full.eq(1),
                             sums_par.eq(row_s[0]), row_s.eq(row_s + 1), base_s.eq(base_s + self.src_wpr)]
                m.next = "AFTER_S"
            with m.State("ISSUE_S"):
                m.d.comb += issue.eq(1)
                with m.If(last):
                    m.d.sync += [row_s.eq(row_s + 1), base_s.eq(base_s + self.src_wpr)]
                    m.next = "AFTER_S"
            with m.State("AFTER_S"):
                with m.If(row_s == 1):
                    m.next = "NEXT_S"
                with m.Else():
                    m.next = "NEXT_N"
            with m.State("NEXT_N"):
                with m.If(row_n == self.rows):
                    with m.If(rows_written == self.rows):
                        m.d.sync += [self.busy.eq(0), self.done.eq(1)]
                        m.next = "IDLE"
                with m.Elif(Mux(row_n[0], stats_ready[1], stats_ready[0])):
                    begin(NORM, row_n, base_n)
                    with m.Switch(row_n[0]):
                        for p in range(2):
                            with m.Case(p):
                                m.d.sync += stats_ready[p].eq(0)
                    m.next = "ISSUE_N"
            with m.State("ISSUE_N"):
                m.d.comb += issue.eq(1)
                with m.If(last):
                    m.d.sync += [row_n.eq(row_n + 1), base_n.eq(base_n + self.src_wpr)]
                    m.next = "NEXT_S"

        # ------------------------------------------------------------------------ SUM pass datapath
        v1, kind1, first1, last1, par1 = Signal(), Signal(), Signal(), Signal(), Signal()
        m.d.sync += [v1.eq(issue), kind1.eq(kind), first1.eq(first), last1.eq(last), par1.eq(par)]
        x = self.rd.data
        with m.If(v1 & (kind1 == SUM)):
            s_next = Mux(first1, x, s_row + x)
            q_next = Mux(first1, x * x, q_row + x * x)
            m.d.sync += [s_row.eq(s_next), q_row.eq(q_next)]
            with m.If(last1):
                m.d.sync += [sums_full.eq(1), sums_par.eq(par1), sum_pending.eq(0)]

        # --------------------------------------------------------------------- statistics engine
        # stage A: v = D^2 (D Q - S^2) + eps, R = isqrt(v); stage B: inv = floor(2^34 / R). The two stages
        # work on consecutive rows at once; D S travels with the row.
        D = self.cols
        d2 = Signal(unsigned(w["d2"]))
        m.d.sync += d2.eq(D * D)
        a_par, b_par = Signal(), Signal()
        a_ds, b_ds = Signal(signed(w["ds"]), name="a_ds"), Signal(signed(w["ds"]), name="b_ds")
        diff = Signal(unsigned(w["v"]))
        vreg = Signal(unsigned(w["v"]))
        with m.FSM(name="stats"):
            with m.State("IDLE"):
                with m.If(sums_full & ~self.start):
                    m.d.sync += [diff.eq(D * q_row - s_row * s_row), a_ds.eq(D * s_row), a_par.eq(sums_par),
                                 sums_full.eq(0)]
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
            with m.Switch(b_par):
                for p in range(2):
                    with m.Case(p):
                        m.d.sync += [inv[p].eq(div.q), ds[p].eq(b_ds), stats_ready[p].eq(1)]

        # ----------------------------------------------------------------------- NORM pass datapath
        # stage 1: t1 = D^2 x - D S; the (g, b) of this column is looked up (valid in stage 2)
        nv1 = v1 & (kind1 == NORM)
        col1 = Signal.like(col)
        m.d.sync += col1.eq(col)
        m.d.comb += self.param.addr.eq(self.p_base + col1)
        t1 = Signal(signed(w["t1"]))
        v2, first2, last2, par2 = Signal(), Signal(), Signal(), Signal()
        m.d.sync += [t1.eq(x * d2 - Mux(par1, ds[1], ds[0])), v2.eq(nv1), first2.eq(first1), last2.eq(last1),
                     par2.eq(par1)]
        # stage 2: t2 = t1 * inv
        t2 = Signal(signed(w["t2"]))
        g3, b3 = Signal(signed(self.g_width)), Signal(signed(self.b_width))
        v3, first3, last3 = Signal(), Signal(), Signal()
        m.d.sync += [t2.eq(t1 * Mux(par2, inv[1], inv[0])), g3.eq(self.param.data.g), b3.eq(self.param.data.b),
                     v3.eq(v2), first3.eq(first2), last3.eq(last2)]
        # stage 3: n = round_shift(t2, 24), then n * g + b
        n3 = Signal(signed(w["n"]))
        m.d.comb += n3.eq(round_shift(t2, intops.LN_RECIP_BITS))
        acc4 = Signal(signed(max(w["n"] + self.g_width, self.b_width) + 1))
        v4, first4, last4 = Signal(), Signal(), Signal()
        m.d.sync += [acc4.eq(n3 * g3 + b3), v4.eq(v3), first4.eq(first3), last4.eq(last3)]
        # stage 4: round, shift, clamp
        y5 = Signal(signed(self.out_width))
        v5, first5, last5 = Signal(), Signal(), Signal()
        m.d.sync += [y5.eq(clamp(round_shift_in(acc4, self.s, self.s_range), self.lo, self.hi)), v5.eq(v4),
                     first5.eq(first4),
                     last5.eq(last4)]

        # stage 5: write along the output row
        out_row = Signal(unsigned(self.addr_width))
        w_word = Signal(unsigned(self.addr_width))
        w_lane = Signal(range(max(P, 2)))
        cur_word = Mux(first5, out_row, w_word)
        cur_lane = Mux(first5, 0, w_lane)
        m.d.comb += [self.wr.en.eq(v5), self.wr.addr.eq(cur_word), self.wr.lane.eq(cur_lane), self.wr.data.eq(y5)]
        with m.If(self.start):
            m.d.sync += out_row.eq(self.out_base)
        with m.If(v5):
            nword, nlane = step_lane(cur_word, cur_lane, P)
            m.d.sync += [w_word.eq(nword), w_lane.eq(nlane)]
            with m.If(last5):
                m.d.sync += [out_row.eq(out_row + self.out_wpr), rows_written.eq(rows_written + 1)]
        return m
