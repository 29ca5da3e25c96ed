"""The softmax row unit: `intops.softmax_int` over each row of a buffer, one element per cycle."""
from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from intformer.model import intops

from .arith import DSP_BITS, clamp, mul_signature, round_shift_parts, shift_add_mul
from .divsqrt import Reciprocal
from .rowio import lookup_signature, read_signature, step_lane, write_signature

MAX, EXP = 0, 1          # the two passes that read the source row


def recip_bits(min_sum: int) -> int:
    """Quotient bits of floor(2^RECIP_BITS / sum) when sum >= min_sum (the divider's cycle count)."""
    return max(1, ((1 << intops.RECIP_BITS) // max(1, min_sum)).bit_length())


class SoftmaxUnit(wiring.Component):
    """Integer softmax of `rows` rows of `cols` codes: max, exp of the differences, sum, one reciprocal per
    row, one multiply per element; exactly `intops.softmax_int` for method "lut" and "poly".

    Algorithm: two engines work on consecutive rows at once.
    * The reader, for row i: a MAX pass over the source row (skipped when `ext_max` is set: the maximum
      comes from the `rmax` lookup, which the accelerator fills while the scores are written); an EXP pass
      that reads the row again and computes e = exp(z - max) by table (`table[max - z]`, one ROM read) or
      by `intops.exp_poly` (three multiplies), sums it, and keeps it in a two-row local buffer. The row's
      sum goes to the sequential divider: r = floor(2^31 / sum) in `recip_bits(min_sum)` cycles.
    * The normalizer, for row i once r is known: reads e back from the local buffer and writes
      clamp(round_shift(e * r, 31 - out_bits), 0, 2^out_bits - 1) along the output row.
    So the EXP pass of row i + 1 overlaps the division and the normalization of row i. A row is read only
    once `rows_ready` exceeds its index (the accelerator lets the unit follow the linear step that writes
    the scores); tie `rows_ready` to `rows` to run on a finished buffer.

    Timing: one element per cycle in each engine; with `ext_max`, cols + 3 cycles per row once cols exceeds
    the divider's time (else about the divider's time), plus about cols + 32 cycles for the last row.
    `start` begins a run, `busy` is high until the last write, `done` pulses once after it.

    Latency: the reader is a 6-stage pipeline from a read's issue (stage 0) to its exponential in the local
    buffer and the row sum (stage 5): the data comes back in stage 1 and is registered as it is, so the
    accelerator's bank and lane selection ends in a register; stage 2 folds the maximum and forms the table
    address from a register of t_base + max; the exponential takes stages 3..5. The divider then takes
    `recip_bits(min_sum)` + 1 cycles, and the normalizer 4 cycles from a read of the local buffer to its
    write (the product; its sum, shifted; the rounding and the clamp; the write). The golden model is
    `intops.softmax_int`; the pipeline changes when, never what, is written.

    Widths: codes signed `elem_width`; max - z unsigned elem_width; exponentials unsigned `exp_width`
    (16: 1.0 = 2^15); the row sum exp_width + log2(max_cols); r recip_bits(min_sum) bits; e * r their sum;
    the polynomial: u = (max - z) * c of elem_width + 20 bits, f * P2 and f * slope 30 bits.
    Memory: the local buffer holds 2 x max_cols exponentials.

    Multiplier: e * r in one 16 x 16 block: their low 15 bits (unsigned, so they fit signed operands)
    multiply there, the few bits above (e < 2^16, r < 2^17) add shifted copies in logic:
    e r = e_lo r_lo + 2^15 (e_hi r + r_hi e_lo). With `shared_mul` the block is outside (the `mul` port,
    product one cycle after the operands), shared with a block never busy at the same time.
    `out_bits` lies in `out_bits_range` (the final shift's range).
    """

    def __init__(self, *, lanes: int, elem_width: int, addr_width: int, max_rows: int, max_cols: int,
                 methods=("lut", "poly"), table_addr_width: int = 10, exp_width: int = 16,
                 min_sum: int = 1 << intops.EXP_BITS, out_width: int = 9, shared_mul: bool = False,
                 out_bits_range: tuple[int, int] = (0, 8)):
        self.lanes, self.elem_width, self.addr_width = lanes, elem_width, addr_width
        self.methods = tuple(methods)
        self.exp_width, self.out_width = exp_width, out_width
        self.q_bits = recip_bits(min_sum)
        self.max_cols = max_cols
        self.sum_width = exp_width + max(1, max_cols).bit_length()
        self.shared_mul = shared_mul
        self.out_bits_range = out_bits_range
        ports = {
            "start": In(1), "busy": Out(1), "done": Out(1),
            "rows": In(range(max_rows + 1)), "cols": In(range(max_cols + 1)), "rows_ready": In(range(max_rows + 1)),
            "src_base": In(unsigned(addr_width)), "src_wpr": In(unsigned(addr_width)),
            "out_base": In(unsigned(addr_width)), "out_wpr": In(unsigned(addr_width)),
            "poly": In(1), "c": In(unsigned(20)), "out_bits": In(range(9)),
            "t_base": In(unsigned(table_addr_width)),
            "ext_max": In(1),
            "rd": Out(read_signature(addr_width, lanes, elem_width)),
            "wr": Out(write_signature(addr_width, lanes, out_width)),
            "table": Out(lookup_signature(table_addr_width, unsigned(exp_width))),
            "rmax": Out(lookup_signature(max(1, (max_rows - 1).bit_length()), signed(elem_width))),
        }
        if shared_mul:
            ports["mul"] = Out(mul_signature())
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        E, P = self.elem_width, self.lanes
        CB = max(1, (self.max_cols - 1).bit_length())          # column index bits in the local buffer
        m.submodules.div = div = Reciprocal(intops.RECIP_BITS, self.sum_width, self.q_bits)
        m.submodules.ebuf = ebuf = Memory(shape=unsigned(self.exp_width), depth=2 << CB, init=[])
        e_wr, e_rd = ebuf.write_port(), ebuf.read_port()

        # shared state
        rows_norm_issued = Signal.like(self.rows)      # rows whose e the normalizer has read back
        rows_written = Signal.like(self.rows)
        mx = Signal(signed(E))                         # the maximum of the reader's current row
        r = [Signal(unsigned(self.q_bits), name=f"r{p}") for p in range(2)]
        r_ready = [Signal(name=f"r_ready{p}") for p in range(2)]
        outstanding = Signal(range(3))                 # EXP passes begun whose sum has not reached the divider
        pend, pend_par = Signal(), Signal()
        pend_sum = Signal(unsigned(self.sum_width))
        max_pending = Signal()
        m.d.sync += self.done.eq(0)

        # ------------------------------------------------------------------------- reader engine
        row_e = Signal.like(self.rows)
        base_e = Signal(unsigned(self.addr_width))
        kind = Signal()
        word = Signal(unsigned(self.addr_width))
        lane = Signal(range(max(P, 2)))
        col = Signal(range(self.max_cols + 1))
        issue, first, last = Signal(), Signal(), Signal()
        m.d.comb += [first.eq(col == 0), last.eq(col == self.cols - 1)]
        m.d.comb += [self.rd.en.eq(issue), self.rd.addr.eq(word), self.rd.lane.eq(lane), self.rmax.addr.eq(row_e)]
        with m.If(issue):
            nword, nlane = step_lane(word, lane, P)
            m.d.sync += [word.eq(nword), lane.eq(nlane), col.eq(col + 1)]
        exp_begin = Signal()
        slot_free = (rows_norm_issued + 2 > row_e)
        sum_room = (outstanding == 0) | ((outstanding == 1) & ~pend & ~div.busy)

        with m.FSM(name="reader"):
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [row_e.eq(0), base_e.eq(self.src_base), self.busy.eq(1)]
                    m.next = "NEXT"
            with m.State("NEXT"):
                with m.If(row_e == self.rows):
                    m.next = "IDLE"
                with m.Elif(self.rows_ready > row_e):
                    with m.If(self.ext_max):
                        m.next = "LOAD_MAX"          # rmax.addr = row_e now; the data comes next cycle
                    with m.Else():
                        m.d.sync += [kind.eq(MAX), word.eq(base_e), lane.eq(0), col.eq(0), max_pending.eq(1)]
                        m.next = "ISSUE_MAX"
            with m.State("LOAD_MAX"):
                m.d.sync += mx.eq(self.rmax.data)
                m.next = "WAIT_E"
            with m.State("ISSUE_MAX"):
                m.d.comb += issue.eq(1)
                with m.If(last):
                    m.next = "WAIT_E"
            with m.State("WAIT_E"):
                with m.If(~max_pending & slot_free & sum_room):
                    m.d.comb += exp_begin.eq(1)
                    m.d.sync += [kind.eq(EXP), word.eq(base_e), lane.eq(0), col.eq(0)]
                    m.next = "ISSUE_E"
            with m.State("ISSUE_E"):
                m.d.comb += issue.eq(1)
                with m.If(last):
                    m.d.sync += [row_e.eq(row_e + 1), base_e.eq(base_e + self.src_wpr)]
                    m.next = "NEXT"

        # stage 0: the read is issued; stage 1: z arrives and is registered as it is (the read data path, the
        # accelerator's bank and lane selection, ends there); stage 2: MAX folds z in; EXP forms d = max - z >= 0
        # and looks up the table at t_base + d, computed as (t_base + max) - z from a register of t_base + max
        # (max is settled at least two cycles before a row's EXP pass reaches stage 2)
        va, kinda, firsta, lasta, slota = Signal(), Signal(), Signal(), Signal(), Signal()
        cola = Signal.like(col)
        m.d.sync += [va.eq(issue), kinda.eq(kind), firsta.eq(first), lasta.eq(last), slota.eq(row_e[0]),
                     cola.eq(col)]
        v1, kind1, first1, last1, slot1 = Signal(), Signal(), Signal(), Signal(), Signal()
        col1 = Signal.like(col)
        z = Signal(signed(E))
        m.d.sync += [v1.eq(va), kind1.eq(kinda), first1.eq(firsta), last1.eq(lasta), slot1.eq(slota),
                     col1.eq(cola), z.eq(self.rd.data)]
        new_max = Mux(first1 | (z > mx), z, mx)
        with m.If(v1 & (kind1 == MAX)):
            m.d.sync += mx.eq(new_max)
            with m.If(last1):
                m.d.sync += max_pending.eq(0)
        d = Signal(unsigned(E))
        TW = len(self.table.addr)
        t_mx = Signal(signed(max(TW, E) + 2))
        m.d.sync += t_mx.eq(self.t_base + mx)
        m.d.comb += [d.eq(mx - z), self.table.addr.eq((t_mx - z)[:TW])]

        # stages 3..5: the exponential (the table's read, or the polynomial's three products)
        def delay(sig, n, name):
            out = sig
            for i in range(n):
                reg = Signal.like(sig, name=f"{name}_d{i + 2}")
                m.d.sync += reg.eq(out)
                out = reg
            return out

        v4 = delay(v1 & (kind1 == EXP), 3, "v")
        first4, last4, slot4 = delay(first1, 3, "first"), delay(last1, 3, "last"), delay(slot1, 3, "slot")
        col4 = delay(col1, 3, "col")
        e4 = Signal(unsigned(self.exp_width))
        e_lut = delay(self.table.data, 2, "elut")      # the table's data is valid in stage 3
        if "poly" in self.methods:
            F = intops.POLY_FRAC_BITS
            u2 = Signal(unsigned(E + 20))
            m.d.sync += u2.eq(d * self.c)
            q3, f3, fp3 = Signal(unsigned(E + 20 - F)), Signal(unsigned(F)), Signal(unsigned(F + 13))
            m.d.sync += [q3.eq(u2 >> F), f3.eq(u2[:F]), fp3.eq(u2[:F] * intops.POLY_P2)]
            q4, fs4 = Signal.like(q3), Signal(unsigned(2 * F + 1))
            slope = Signal(unsigned(F + 1))
            m.d.comb += slope.eq(intops.POLY_P1 - (fp3 >> F))
            m.d.sync += [q4.eq(q3), fs4.eq(f3 * slope)]
            p4 = Signal(unsigned(intops.EXP_BITS + 1))
            m.d.comb += p4.eq((1 << intops.EXP_BITS) - (fs4 >> F))
            e_poly = Mux(q4 > intops.EXP_BITS, 0, p4 >> q4)
            m.d.comb += e4.eq(Mux(self.poly, e_poly, e_lut))
        else:
            m.d.comb += e4.eq(e_lut)

        # stage 5: keep e in the local buffer, add it to the row's sum; hand the sum on at the row's end
        m.d.comb += [e_wr.addr.eq(Cat(col4[:CB], slot4)), e_wr.data.eq(e4), e_wr.en.eq(v4)]
        acc = Signal(unsigned(self.sum_width))
        total = Signal(unsigned(self.sum_width))
        m.d.comb += total.eq(Mux(first4, e4, acc + e4))
        div_par = Signal()
        div_go = pend & ~div.busy
        m.d.comb += [div.start.eq(div_go), div.n.eq(pend_sum)]
        with m.If(div_go):
            m.d.sync += [pend.eq(0), div_par.eq(pend_par)]
        with m.If(v4):
            m.d.sync += acc.eq(total)
            with m.If(last4):
                m.d.sync += [pend.eq(1), pend_sum.eq(total), pend_par.eq(slot4)]
        m.d.sync += outstanding.eq(outstanding + exp_begin - div_go)
        with m.If(div.done):
            with m.Switch(div_par):
                for p in range(2):
                    with m.Case(p):
                        m.d.sync += [r[p].eq(div.q), r_ready[p].eq(1)]

        # ---------------------------------------------------------------------- normalizer engine
        row_n = Signal.like(self.rows)
        n_col = Signal(range(self.max_cols + 1))
        n_issue = Signal()
        n_last = Signal()
        m.d.comb += [n_last.eq(n_col == self.cols - 1), e_rd.addr.eq(Cat(n_col[:CB], row_n[0]))]
        with m.If(n_issue):
            m.d.sync += n_col.eq(n_col + 1)
        with m.FSM(name="normalizer"):
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [row_n.eq(0), rows_norm_issued.eq(0), r_ready[0].eq(0), r_ready[1].eq(0)]
                    m.next = "NEXT"
            with m.State("NEXT"):
                with m.If(row_n == self.rows):
                    with m.If(rows_written == self.rows):
                        m.d.sync += [self.busy.eq(0), self.done.eq(1)]
                        m.next = "IDLE"
                with m.Elif(Mux(row_n[0], r_ready[1], r_ready[0])):
                    m.d.sync += n_col.eq(0)
                    with m.Switch(row_n[0]):
                        for p in range(2):
                            with m.Case(p):
                                m.d.sync += r_ready[p].eq(0)
                    m.next = "ISSUE"
            with m.State("ISSUE"):
                m.d.comb += n_issue.eq(1)
                with m.If(n_last):
                    m.d.sync += [row_n.eq(row_n + 1), rows_norm_issued.eq(rows_norm_issued + 1)]
                    m.next = "NEXT"

        # n1: e comes back, times r; n2: the product's sum, shifted (its half LSB not yet added); n3: round,
        # clamp; n4: write along the output row
        nv1, nfirst1, nlast1, npar1 = Signal(), Signal(), Signal(), Signal()
        m.d.sync += [nv1.eq(n_issue), nfirst1.eq(n_col == 0), nlast1.eq(n_last), npar1.eq(row_n[0])]
        prod2 = Signal(unsigned(self.exp_width + self.q_bits))
        nv2, nfirst2, nlast2 = Signal(), Signal(), Signal()
        m.d.sync += [nv2.eq(nv1), nfirst2.eq(nfirst1), nlast2.eq(nlast1)]
        SPLIT = DSP_BITS - 1
        e1, r1 = e_rd.data, Mux(npar1, r[1], r[0])
        e_lo, e_hi, r_lo, r_hi = e1[:SPLIT], e1[SPLIT:], r1[:SPLIT], r1[SPLIT:]
        p_lo = Signal(unsigned(2 * SPLIT), reset_less=True)
        if self.shared_mul:
            m.d.comb += [self.mul.a.eq(e_lo), self.mul.b.eq(r_lo), p_lo.eq(self.mul.p)]
        else:
            m.d.sync += p_lo.eq(e_lo * r_lo)
        if len(e_hi) or len(r_hi):
            p_hi = Signal(unsigned(self.exp_width + self.q_bits - SPLIT))
            hi_terms = ([shift_add_mul(r1, e_hi)] if len(e_hi) else []) + \
                ([shift_add_mul(e_lo, r_hi)] if len(r_hi) else [])
            m.d.sync += p_hi.eq(sum(hi_terms[1:], hi_terms[0]))
            m.d.comb += prod2.eq(p_lo + (p_hi << SPLIT))
        else:
            m.d.comb += prod2.eq(p_lo)
        prod_s = Signal(signed(len(prod2) + 1))
        m.d.comb += prod_s.eq(prod2)
        shift = Signal(range(intops.RECIP_BITS + 1))
        m.d.comb += shift.eq(intops.RECIP_BITS - self.out_bits)
        lo_b, hi_b = self.out_bits_range
        s_range = (intops.RECIP_BITS - hi_b, intops.RECIP_BITS - lo_b)
        pre, post = round_shift_parts(prod_s, shift, s_range)
        pre3 = Signal(signed(len(pre)))
        nv3, nfirst3, nlast3 = Signal(), Signal(), Signal()
        m.d.sync += [pre3.eq(pre), nv3.eq(nv2), nfirst3.eq(nfirst2), nlast3.eq(nlast2)]
        y4 = Signal(signed(self.out_width))
        nv4, nfirst4, nlast4 = Signal(), Signal(), Signal()
        m.d.sync += [y4.eq(clamp(post(pre3), 0, (1 << self.out_bits) - 1)), nv4.eq(nv3),
                     nfirst4.eq(nfirst3), nlast4.eq(nlast3)]

        out_row = Signal(unsigned(self.addr_width))
        w_word = Signal(unsigned(self.addr_width))
        w_lane = Signal(range(max(P, 2)))
        cur_word = Mux(nfirst4, out_row, w_word)
        cur_lane = Mux(nfirst4, 0, w_lane)
        m.d.comb += [self.wr.en.eq(nv4), self.wr.addr.eq(cur_word), self.wr.lane.eq(cur_lane), self.wr.data.eq(y4)]
        with m.If(self.start):
            m.d.sync += [out_row.eq(self.out_base), rows_written.eq(0)]
        with m.Elif(nv4):
            nword, nlane = step_lane(cur_word, cur_lane, P)
            m.d.sync += [w_word.eq(nword), w_lane.eq(nlane)]
            with m.If(nlast4):
                m.d.sync += [out_row.eq(out_row + self.out_wpr), rows_written.eq(rows_written + 1)]
        return m
