"""The drain: each group's sums out of the MAC array, through bias, requantizer, table, residual and affine,
into the output buffer; and the row statistics a fused row step reads."""
from __future__ import annotations

from amaranth.hdl import Module, Mux, Shape, Signal, signed, unsigned
from amaranth.lib.wiring import In, Out

from .block import Block
from .layernorm import sums_layout
from .pipeline import delay, taps
from .plan import Plan
from .requant import Requantizer, ScaleShiftClamp
from .steps import StepFields
from .walk import walk


def addr_bits(depth: int) -> int:
    """Bits of a pointer into a table of `depth` entries (at least 1)."""
    return max(1, (depth - 1).bit_length())


class Drain(Block):
    """The output stage of a linear step, a fixed pipeline that overlaps the next groups' accumulation.

    The MAC array's result registers shift a group's sums out, one per cycle from result[0] (`shift`): the
    first in the cycle the group arrives (`result_valid`), then `result_tag - 1` more. Element by element,
    counted in stages D0 .. D`LATENCY` from the cycle it leaves the MAC array:

    * D0: its column (the end of an output row); the bias ROM is read a cycle ahead, at the pointer's next
      value (`bias_addr`), so that the sum with the bias is a register at D1 (Fmax);
    * D1 .. D1 + Requantizer.LATENCY: requantize (raw values bypass it for the output head); then the look-up
      table is read (`lut_addr`) and the residual walker reads the source element (`res_addr`, `res_lane`);
    * the table output (one stage), then the residual sum (ScaleShiftClamp.LATENCY), then the per-channel
      affine (ScaleShiftClamp.LATENCY; its ROM is read a stage ahead through `affine_addr`);
    * D`LATENCY`: the write (`wr_*`), normal (i, out_col + j) or transposed (out_col + j, i), and the row
      statistics: each row's maximum, sum and sum of squares (`stat_*`, written at `rows_done` when the row
      ends and the step tracks them), and `rows_done`, the rows written so far (a fused row step follows it).

    `done` rises after the step's last element is written and falls at `start` (the step's start). `error`
    is sticky: a group arrived before the previous one was out (a scheduling bug; never set by a correct
    build). Latency: `LATENCY` = 1 + Requantizer.LATENCY + 1 + 2 x ScaleShiftClamp.LATENCY cycles (11).
    Widths: sums and values signed `plan.drain_width`, codes `plan.code_width`, elements `plan.elem_width`;
    addresses `plan.addr_width`.
    """

    BIAS_STAGES = 1          # the sum with the bias, a register
    TABLE_STAGES = 1         # the look-up table's output
    RQ_IN = BIAS_STAGES                                             # D1: into the requantizer
    TABLE = RQ_IN + Requantizer.LATENCY                             # D4: table address, residual read
    RES_IN = TABLE + TABLE_STAGES                                   # D5: into the residual sum
    AFF_IN = RES_IN + ScaleShiftClamp.LATENCY                       # D8: into the affine
    LATENCY = AFF_IN + ScaleShiftClamp.LATENCY                      # D11: the write

    def __init__(self, plan: Plan, tag_width: int):
        self.plan = plan
        P, E, AW, DW = plan.lanes, plan.elem_width, plan.addr_width, plan.drain_width
        LW = max(1, P - 1).bit_length()
        sl = sums_layout(E, plan.max_cols)
        n_out = max([1] + [r.outputs for r in plan.steps if r.linear])
        super().__init__({
            "step": In(plan.step_layout()), "start": In(1),
            "result": In(signed(plan.acc_width)), "result_valid": In(1), "result_tag": In(unsigned(tag_width)),
            "shift": Out(1),
            "bias_addr": Out(addr_bits(len(plan.bias_rom))), "bias_data": In(signed(plan.bias_width)),
            "lut_addr": Out(Shape.cast(range(len(plan.lut_rom)))), "lut_data": In(signed(plan.lut_width)),
            "affine_addr": Out(addr_bits(len(plan.aff_rom))),
            "affine_data": In(unsigned(plan.aff_m_width + plan.aff_b_width)),
            "res_addr": Out(AW), "res_lane": Out(LW), "res_elem": In(signed(E)),
            "wr_en": Out(1), "wr_addr": Out(AW), "wr_lane": Out(LW), "wr_data": Out(signed(DW)),
            "rows_done": Out(range(plan.max_rows + 1)),
            "stat_max": Out(signed(E)), "stat_s": Out(sl["s"].shape), "stat_q": Out(sl["q"].shape),
            "stat_max_en": Out(1), "stat_sums_en": Out(1),
            "done": Out(1), "error": Out(1),
        })
        self.remaining = Signal(range(n_out + 1))          # elements of the step not yet written
        CW = plan.code_width
        self.requantizer = Requantizer(DW, CW, s_range=plan.shift_range("requant_shift"), static_params=True)
        self.residual = ScaleShiftClamp(CW, plan.res_m_width, 1, CW, s_range=plan.shift_range("res_shift"),
                                        static_params=True)
        self.affine = ScaleShiftClamp(plan.aff_in_width, plan.aff_m_width, plan.aff_b_width, CW,
                                      shared_mul=plan.share_mul, use_b=False,
                                      s_range=plan.shift_range("affine_shift"), static_params=True)

    def _build(self, m: Module) -> None:
        m.submodules.rq, m.submodules.resadd, m.submodules.affine = self.requantizer, self.residual, self.affine
        f = StepFields(self.step)
        v0, row_end0 = self._shift_out(m, f)
        valid, rowend = taps(m, v0, self.LATENCY, "dv"), taps(m, row_end0, self.LATENCY, "dre")
        val4 = self._requantize(m, f, valid)
        val11 = self._table_residual_affine(m, f, val4, valid, rowend)
        self._residual_walker(m, f, valid, rowend)
        self._write_walker(m, f, valid[self.LATENCY], rowend[self.LATENCY], val11)
        self._row_statistics(m, f, valid[self.LATENCY], rowend[self.LATENCY], val11)

    def _shift_out(self, m, f):
        """D0: one element per cycle out of the MAC array's result registers; its column; the bias pointer."""
        plan, P = self.plan, self.plan.lanes
        dcnt = Signal(range(P + 1))                     # elements of the group still in the result registers
        v0 = Signal()
        m.d.comb += [v0.eq(self.result_valid | (dcnt != 0)), self.shift.eq(v0)]
        with m.If(self.result_valid):
            m.d.sync += dcnt.eq(self.result_tag - 1)
            with m.If(dcnt != 0):                 # the last group is not out yet: a scheduling bug
                m.d.sync += self.error.eq(1)
        with m.Elif(v0):
            m.d.sync += dcnt.eq(dcnt - 1)
        d_col = Signal(range(plan.max_cols + 1))
        row_end0 = Signal()
        m.d.comb += row_end0.eq(d_col == f.cols - 1)
        b_ptr = Signal.like(self.bias_addr)
        m.d.comb += self.bias_addr.eq(b_ptr)
        m.d.sync += b_ptr.eq(self.bias_addr)
        with m.If(self.start):
            m.d.sync += d_col.eq(0)
            m.d.comb += self.bias_addr.eq(f.bias_base)
        with m.Elif(v0):
            m.d.sync += d_col.eq(Mux(row_end0, 0, d_col + 1))
            m.d.comb += self.bias_addr.eq(Mux(row_end0 & ~f.bias_per_row, f.bias_base, b_ptr + 1))
        return v0, row_end0

    def _requantize(self, m, f, valid):
        """D1: the sum + bias (a register); D1 .. D4: requantize, or the raw value delayed alike."""
        DW, rq = self.plan.drain_width, self.requantizer
        v1 = Signal(signed(DW))
        m.d.sync += v1.eq(self.result + Mux(f.bias, self.bias_data, 0))
        m.d.comb += [rq.input.valid.eq(valid[self.RQ_IN]), rq.input.payload.eq(v1), rq.m.eq(f.requant_mul),
                     rq.s.eq(f.requant_shift), rq.lo.eq(f.requant_lo), rq.hi.eq(f.requant_hi),
                     rq.output.ready.eq(1)]
        val4 = Signal(signed(DW))
        m.d.comb += val4.eq(Mux(f.requant, rq.output.payload, delay(m, v1, rq.LATENCY, "raw")))
        return val4

    def _table_residual_affine(self, m, f, val4, valid, rowend):
        """D4: table address; D5: the table's output; D5 .. D8 the residual sum; D8 .. D11 the affine (its
        ROM pointer steps at D7, a cycle ahead)."""
        plan, res, aff = self.plan, self.residual, self.affine
        DW, CW, AIW, am_w = plan.drain_width, plan.code_width, plan.aff_in_width, plan.aff_m_width
        m.d.comb += self.lut_addr.eq(val4[:CW].as_signed() + f.lut_offset)
        val5 = Signal(signed(DW))
        m.d.comb += val5.eq(Mux(f.lut, self.lut_data, delay(m, val4, self.TABLE_STAGES, "val4")))
        m.d.comb += [res.valid_in.eq(valid[self.RES_IN]), res.a.eq(self.res_elem), res.ma.eq(f.res_mul_src),
                     res.b.eq(val5[:CW].as_signed()), res.mb.eq(f.res_mul_new), res.c.eq(0),
                     res.s.eq(f.res_shift), res.lo.eq(f.res_lo), res.hi.eq(f.res_hi)]
        val8 = Signal(signed(DW))
        m.d.comb += val8.eq(Mux(f.residual, res.y, delay(m, val5, res.LATENCY, "val5")))
        a_ptr = self.affine_addr
        with m.If(self.start):
            m.d.sync += a_ptr.eq(f.affine_base)
        with m.Elif(valid[self.AFF_IN - 1]):
            m.d.sync += a_ptr.eq(Mux(rowend[self.AFF_IN - 1], f.affine_base, a_ptr + 1))
        m.d.comb += [aff.valid_in.eq(valid[self.AFF_IN]), aff.a.eq(val8[:AIW].as_signed()),
                     aff.ma.eq(self.affine_data[:am_w].as_signed()), aff.b.eq(0), aff.mb.eq(0),
                     aff.c.eq(self.affine_data[am_w:].as_signed()),
                     aff.s.eq(f.affine_shift), aff.lo.eq(f.affine_lo), aff.hi.eq(f.affine_hi)]
        val11 = Signal(signed(DW))
        m.d.comb += val11.eq(Mux(f.affine, aff.y, delay(m, val8, aff.LATENCY, "val8")))
        return val11

    def _residual_walker(self, m, f, valid, rowend):
        """The residual source read at D4 (its element is there at D5): a walker over the source row, or one
        fixed element for every output (`res_fixed`)."""
        plan, P = self.plan, self.plan.lanes
        CH = max(lay.chunk for lay in plan.layouts.values())
        r_word, r_row = self.res_addr, Signal(plan.addr_width)
        r_lane, r_within = Signal.like(self.res_lane), Signal(range(CH + 1))
        with m.If(self.start):
            m.d.sync += [r_word.eq(f.res_word), r_row.eq(f.res_word), r_lane.eq(f.res_lane),
                         r_within.eq(f.res_within)]
        with m.Elif(valid[self.TABLE] & ~f.res_fixed):
            with m.If(rowend[self.TABLE]):
                m.d.sync += [r_row.eq(r_row + f.res_words_per_row), r_word.eq(r_row + f.res_words_per_row),
                             r_lane.eq(f.res_lane), r_within.eq(f.res_within)]
            with m.Else():
                nw, nl, ni = walk(r_word, r_lane, r_within, f.res_chunk, P)
                m.d.sync += [r_word.eq(nw), r_lane.eq(nl), r_within.eq(ni)]
        m.d.sync += self.res_lane.eq(r_lane)

    def _write_walker(self, m, f, vw, re, val11):
        """D11: the write, normal (i, out_col + j) or transposed (out_col + j, i)."""
        plan, P, AW = self.plan, self.plan.lanes, self.plan.addr_width
        CH = max(lay.chunk for lay in plan.layouts.values())
        LW = len(self.wr_lane)
        o_word, o_lane, o_within, o_row = Signal(AW), Signal(LW), Signal(range(CH + 1)), Signal(AW)
        t_ptr, c_word, c_lane, c_within = Signal(AW), Signal(AW), Signal(LW), Signal(range(CH + 1))
        with m.If(self.start):
            m.d.sync += [o_word.eq(f.out_word), o_row.eq(f.out_word), o_lane.eq(f.out_lane),
                         o_within.eq(f.out_within), t_ptr.eq(f.out_transposed_base), c_word.eq(0), c_lane.eq(0),
                         c_within.eq(0)]
        with m.Elif(vw):
            with m.If(re):
                m.d.sync += [o_row.eq(o_row + f.out_words_per_row), o_word.eq(o_row + f.out_words_per_row),
                             o_lane.eq(f.out_lane), o_within.eq(f.out_within), t_ptr.eq(f.out_transposed_base)]
                nw, nl, ni = walk(c_word, c_lane, c_within, f.out_chunk, P)
                m.d.sync += [c_word.eq(nw), c_lane.eq(nl), c_within.eq(ni)]
            with m.Else():
                nw, nl, ni = walk(o_word, o_lane, o_within, f.out_chunk, P)
                m.d.sync += [o_word.eq(nw), o_lane.eq(nl), o_within.eq(ni), t_ptr.eq(t_ptr + f.out_words_per_row)]
        m.d.comb += [self.wr_en.eq(vw), self.wr_data.eq(val11),
                     self.wr_addr.eq(Mux(f.out_transposed, t_ptr + c_word, o_word)),
                     self.wr_lane.eq(Mux(f.out_transposed, c_lane, o_lane))]

    def _row_statistics(self, m, f, vw, re, val11):
        """Each row's maximum, sum and sum of squares for a fused row step; the rows written; `done`."""
        E = self.plan.elem_width
        st_max, st_s, st_q = Signal.like(self.stat_max), Signal.like(self.stat_s), Signal.like(self.stat_q)
        st_first = Signal()
        code11 = val11[:E].as_signed()
        m.d.comb += [self.stat_max.eq(Mux(st_first | (code11 > st_max), code11, st_max)),
                     self.stat_s.eq(Mux(st_first, code11, st_s + code11)),
                     self.stat_q.eq(Mux(st_first, code11 * code11, st_q + code11 * code11)),
                     self.stat_max_en.eq(vw & re & f.track_max), self.stat_sums_en.eq(vw & re & f.track_sums)]
        remaining = self.remaining
        with m.If(self.start):
            m.d.sync += [remaining.eq(f.outputs), self.rows_done.eq(0), st_first.eq(1)]
        with m.Elif(vw):
            m.d.sync += [remaining.eq(remaining - 1), st_max.eq(self.stat_max), st_s.eq(self.stat_s),
                         st_q.eq(self.stat_q), st_first.eq(re)]
            with m.If(re):
                m.d.sync += self.rows_done.eq(self.rows_done + 1)
        with m.If(self.start):
            m.d.sync += self.done.eq(0)
        with m.Elif(vw & (remaining == 1)):
            m.d.sync += self.done.eq(1)
