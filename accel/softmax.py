"""The softmax row unit: `intops.softmax_int` over each row of a buffer, one element per cycle."""
from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from intformer.model import intops

from .arith import DSP_BITS, clamp, mul_signature, round_shift_parts, shift_add_mul
from .divsqrt import Reciprocal
from .pipeline import delay
from .rowio import (RowReader, RowWriter, by_parity, lookup_signature, parity_pair, read_signature,
                    shadow, store_by_parity, write_signature)

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
    `intops.softmax_int`; the pipeline changes when, never what, is written. The source and output rows are
    walked by `rowio.RowReader` and `RowWriter`, the tags (valid, first, last, slot) travel in
    `rowio.shadow` registers and `pipeline.delay` lines.

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
                 out_bits_range: tuple[int, int] = (0, 8), fault: str | None = None):
        # `fault`: a deliberate design fault for the must-fail proofs (`accel.formal`); None builds the real
        # unit. "sum_narrow": the row sum `total` 4 bits narrower than sum_width (a long row's sum wraps);
        # "max_skip": the MAX pass does not fold its row's last element into the maximum (max - z < 0).
        if fault not in (None, "sum_narrow", "max_skip"):
            raise ValueError(f"unknown SoftmaxUnit fault {fault!r}")
        self.fault = fault
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
        # the registers that the reader, the row sum and the normalizer share; the formal proofs observe the
        # row sum's (`accel.formal.softmax_row_harness`: v_d4, first_d4, last_d4, e4, acc, pend_sum)
        self.row_e = Signal.like(self.rows)                 # the reader's row
        self.mx = Signal(signed(elem_width))                # the maximum of the reader's current row
        self.max_pending = Signal()                         # a MAX pass whose maximum is not folded in yet
        self.exp_begin = Signal()                           # an EXP pass begins (comb)
        self.outstanding = Signal(range(3))                 # EXP passes begun whose sum has not reached the divider
        self.v_d4, self.first_d4, self.last_d4 = Signal(), Signal(), Signal()   # stage 5: an exponential, its tags
        self.e4 = Signal(unsigned(exp_width))
        self.acc = Signal(unsigned(self.sum_width))         # the row sum so far
        self.pend, self.pend_par = Signal(), Signal()       # a row sum waits for the divider; its row's parity
        self.pend_sum = Signal(unsigned(self.sum_width))
        self.r = parity_pair(unsigned(self.q_bits), "r")    # the reciprocal of each row's sum, by row parity
        self.r_ready = parity_pair(1, "r_ready")
        self.rows_norm_issued = Signal.like(self.rows)      # rows whose e the normalizer has read back
        self.rows_written = Signal.like(self.rows)
        # stage 2 of the reader, which the max proof observes (`accel.formal.softmax_max_harness`): z, an EXP
        # pass's element there, and d = max - z, the exponential's argument
        self.z = Signal(signed(elem_width))
        self.d = Signal(unsigned(elem_width))
        self.exp_valid = Signal()

    def elaborate(self, platform):
        m = Module()
        m.submodules.div = div = Reciprocal(intops.RECIP_BITS, self.sum_width, self.q_bits)
        m.submodules.ebuf = ebuf = Memory(shape=unsigned(self.exp_width), depth=2 << self.col_bits, init=[])
        e_wr, e_rd = ebuf.write_port(), ebuf.read_port()
        reader = RowReader(lanes=self.lanes, addr_width=self.addr_width, max_cols=self.max_cols)
        writer = RowWriter(lanes=self.lanes, addr_width=self.addr_width, start_first=True)
        m.d.sync += self.done.eq(0)
        # the order of these sections matters where two assign one register (the later wins): the fold over
        # LOAD_MAX's mx, the normalizer's clearing over the divider's setting of r_ready, busy's end over its start
        kind = self._reader_fsm(m, reader, div.busy)
        v2, kind2, first2, last2, slot2, col2, d = self._fold_max(m, reader, kind)
        slot4, col4 = self._exponential(m, self.exp_valid, first2, last2, slot2, col2, d)
        self._row_sum(m, div, e_wr, slot4, col4)
        n_issue, n_col, n_last, row_n = self._normalizer_fsm(m, e_rd)
        self._normalize(m, writer, e_rd.data, n_issue, n_col, n_last, row_n)
        return m

    @property
    def col_bits(self) -> int:
        """Column index bits in the local buffer (which holds two rows)."""
        return max(1, (self.max_cols - 1).bit_length())

    def _reader_fsm(self, m, reader, div_busy):
        """The reader engine's schedule, row by row: a MAX pass over the row (or LOAD_MAX, its maximum from the
        `rmax` lookup, one cycle after the address), then, once the maximum is folded in, a free slot of the
        local buffer and room for the row's sum wait, an EXP pass. Returns the pass being read (MAX, EXP)."""
        row_e, mx = self.row_e, self.mx
        base_e = Signal(unsigned(self.addr_width))
        kind = Signal()
        reader.elaborate(m, self.cols, self.rd)
        m.d.comb += self.rmax.addr.eq(row_e)
        slot_free = (self.rows_norm_issued + 2 > row_e)
        sum_room = (self.outstanding == 0) | ((self.outstanding == 1) & ~self.pend & ~div_busy)
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
                        m.d.sync += [kind.eq(MAX), self.max_pending.eq(1)]
                        reader.begin(m, base_e)
                        m.next = "ISSUE_MAX"
            with m.State("LOAD_MAX"):
                m.d.sync += mx.eq(self.rmax.data)
                m.next = "WAIT_E"
            with m.State("ISSUE_MAX"):
                reader.read_row(m, then="WAIT_E")
            with m.State("WAIT_E"):
                with m.If(~self.max_pending & slot_free & sum_room):
                    m.d.comb += self.exp_begin.eq(1)
                    m.d.sync += kind.eq(EXP)
                    reader.begin(m, base_e)
                    m.next = "ISSUE_E"
            with m.State("ISSUE_E"):
                reader.read_row(m, then="NEXT", row_done=[row_e.eq(row_e + 1), base_e.eq(base_e + self.src_wpr)])
        return kind

    def _fold_max(self, m, reader, kind):
        """Stages 0..2 of the reader's pipeline. Stage 0: the read is issued; stage 1: z arrives and is
        registered as it is (the read data path, the accelerator's bank and lane selection, ends there);
        stage 2: MAX folds z into the row's maximum; EXP forms d = max - z >= 0 and looks up the table at
        t_base + d, computed as (t_base + max) - z from a register of t_base + max (max is settled at least
        two cycles before a row's EXP pass reaches stage 2). Returns stage 2's tags (valid, pass, first, last,
        slot, column) and d."""
        E, mx = self.elem_width, self.mx
        tags = [reader.issue, kind, reader.first, reader.last, self.row_e[0], reader.col]
        names = ["v", "kind", "first", "last", "slot", "col"]
        v2, kind2, first2, last2, slot2, col2 = shadow(m, shadow(m, tags, names, "a"), names, 2)
        z = self.z
        m.d.sync += z.eq(self.rd.data)
        new_max = Mux(first2 | (z > mx), z, mx)
        with m.If(v2 & (kind2 == MAX)):
            if self.fault == "max_skip":            # the must-fail variant: the row's last z is left out
                with m.If(~last2):
                    m.d.sync += mx.eq(new_max)
            else:
                m.d.sync += mx.eq(new_max)
            with m.If(last2):
                m.d.sync += self.max_pending.eq(0)
        d = self.d
        m.d.comb += self.exp_valid.eq(v2 & (kind2 == EXP))
        TW = len(self.table.addr)
        t_mx = Signal(signed(max(TW, E) + 2))
        m.d.sync += t_mx.eq(self.t_base + mx)
        m.d.comb += [d.eq(mx - z), self.table.addr.eq((t_mx - z)[:TW])]
        return v2, kind2, first2, last2, slot2, col2, d

    def _exponential(self, m, v_exp, first2, last2, slot2, col2, d):
        """Stages 3..5: e = exp(-d), the table's read (its data valid in stage 3, kept two cycles) or
        `intops.exp_poly` (three products, `_exp_poly`), chosen by `poly`; `e4` and its tags (`v_d4`, ...)
        reach stage 5. Returns the slot and column of stage 5's element (its place in the local buffer)."""
        m.d.sync += self.v_d4.eq(delay(m, v_exp, 2, "v_exp"))
        m.d.sync += self.first_d4.eq(delay(m, first2, 2, "first_exp"))
        m.d.sync += self.last_d4.eq(delay(m, last2, 2, "last_exp"))
        slot4, col4 = delay(m, slot2, 3, "slot_exp"), delay(m, col2, 3, "col_exp")
        e_lut = delay(m, self.table.data, 2, "elut")
        if "poly" in self.methods:
            m.d.comb += self.e4.eq(Mux(self.poly, self._exp_poly(m, d), e_lut))
        else:
            m.d.comb += self.e4.eq(e_lut)
        return slot4, col4

    def _exp_poly(self, m, d):
        """`intops.exp_poly(d, c)` in stages 2..4: u = d c (stage 2), its integer part q and fraction f with
        f P2 (stage 3), f (P1 - f P2 >> F) (stage 4); e = (2^EXP_BITS - (that >> F)) >> q, or 0 for q beyond
        EXP_BITS. Widths: u elem_width + 20 bits, f P2 and f x slope 30 bits."""
        E, F = self.elem_width, intops.POLY_FRAC_BITS
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
        return Mux(q4 > intops.EXP_BITS, 0, p4 >> q4)

    def _row_sum(self, m, div, e_wr, slot4, col4):
        """Stage 5: keep e in the local buffer (at its row's slot), add it to the row's sum `acc`; at the row's
        end the sum waits in `pend_sum` for the divider, whose quotient goes to the row's `r`."""
        acc, pend, e4, v4 = self.acc, self.pend, self.e4, self.v_d4
        m.d.comb += [e_wr.addr.eq(Cat(col4[:self.col_bits], slot4)), e_wr.data.eq(e4), e_wr.en.eq(v4)]
        total = Signal(unsigned(self.sum_width - (4 if self.fault == "sum_narrow" else 0)))
        m.d.comb += total.eq(Mux(self.first_d4, e4, acc + e4))
        div_par = Signal()
        div_go = pend & ~div.busy
        m.d.comb += [div.start.eq(div_go), div.n.eq(self.pend_sum)]
        with m.If(div_go):
            m.d.sync += [pend.eq(0), div_par.eq(self.pend_par)]
        with m.If(v4):
            m.d.sync += acc.eq(total)
            with m.If(self.last_d4):
                m.d.sync += [pend.eq(1), self.pend_sum.eq(total), self.pend_par.eq(slot4)]
        m.d.sync += self.outstanding.eq(self.outstanding + self.exp_begin - div_go)
        with m.If(div.done):
            store_by_parity(m, div_par, [(self.r, div.q), (self.r_ready, 1)])

    def _normalizer_fsm(self, m, e_rd):
        """The normalizer engine's schedule: row by row, once its reciprocal is ready, read its e back from
        the local buffer (one per cycle); `done` once every row is written. Returns the read (issue, column,
        last) and the row."""
        row_n = Signal.like(self.rows)
        n_col = Signal(range(self.max_cols + 1))
        n_issue = Signal()
        n_last = Signal()
        m.d.comb += [n_last.eq(n_col == self.cols - 1), e_rd.addr.eq(Cat(n_col[:self.col_bits], row_n[0]))]
        with m.If(n_issue):
            m.d.sync += n_col.eq(n_col + 1)
        with m.FSM(name="normalizer"):
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [row_n.eq(0), self.rows_norm_issued.eq(0), self.r_ready[0].eq(0),
                                 self.r_ready[1].eq(0)]
                    m.next = "NEXT"
            with m.State("NEXT"):
                with m.If(row_n == self.rows):
                    with m.If(self.rows_written == self.rows):
                        m.d.sync += [self.busy.eq(0), self.done.eq(1)]
                        m.next = "IDLE"
                with m.Elif(by_parity(self.r_ready, row_n[0])):
                    m.d.sync += n_col.eq(0)
                    store_by_parity(m, row_n[0], [(self.r_ready, 0)])
                    m.next = "ISSUE"
            with m.State("ISSUE"):
                m.d.comb += n_issue.eq(1)
                with m.If(n_last):
                    m.d.sync += [row_n.eq(row_n + 1), self.rows_norm_issued.eq(self.rows_norm_issued + 1)]
                    m.next = "NEXT"
        return n_issue, n_col, n_last, row_n

    def _normalize(self, m, writer, e1, n_issue, n_col, n_last, row_n):
        """The normalizer's pipeline: n1: e comes back, times r (`_product`); n2: the product's sum, shifted
        (its half LSB not yet added); n3: round, clamp; n4: the write along the output row (`RowWriter`)."""
        names = ["nv", "nfirst", "nlast"]
        nv1, nfirst1, nlast1, npar1 = shadow(m, [n_issue, n_col == 0, n_last, row_n[0]], names + ["npar"], 1)
        tags2 = shadow(m, [nv1, nfirst1, nlast1], names, 2)
        prod2 = self._product(m, e1, by_parity(self.r, npar1))
        prod_s = Signal(signed(len(prod2) + 1))
        m.d.comb += prod_s.eq(prod2)
        shift = Signal(range(intops.RECIP_BITS + 1))
        m.d.comb += shift.eq(intops.RECIP_BITS - self.out_bits)
        lo_b, hi_b = self.out_bits_range
        s_range = (intops.RECIP_BITS - hi_b, intops.RECIP_BITS - lo_b)
        pre, post = round_shift_parts(prod_s, shift, s_range)
        pre3 = Signal(signed(len(pre)))
        m.d.sync += pre3.eq(pre)
        tags3 = shadow(m, tags2, names, 3)
        y4 = Signal(signed(self.out_width))
        m.d.sync += y4.eq(clamp(post(pre3), 0, (1 << self.out_bits) - 1))
        nv4, nfirst4, nlast4 = shadow(m, tags3, names, 4)
        rows_written = self.rows_written
        writer.elaborate(m, self.wr, start=self.start, base=self.out_base, wpr=self.out_wpr, valid=nv4,
                         first=nfirst4, last=nlast4, data=y4, on_start=[rows_written.eq(0)],
                         row_done=[rows_written.eq(rows_written + 1)])

    def _product(self, m, e1, r1):
        """e x r, registered (valid at n2): the low SPLIT = 15 bits of each (unsigned, so they fit the signed
        16 x 16 block) multiply in one block, or in the shared one (`mul`); the bits above add shifted copies
        in logic, e r = e_lo r_lo + 2^15 (e_hi r + r_hi e_lo). Width: exp_width + q_bits."""
        prod2 = Signal(unsigned(self.exp_width + self.q_bits))
        SPLIT = DSP_BITS - 1
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
        return prod2
