"""The accelerator: one `IntProgram` in hardware, bit-exact with `model.intref.run_program`.

Datapath (see `accel.plan` for the memory layouts and the step table):

* buffer memories ("banks", `plan.banks`: buffers never used by one port in the same step share one, at
  different word offsets), P codes of one row per word, written one element at a time (byte-enable style
  `granularity`), read through one port whose address the current step's role for that bank selects
  (X operand, W operand, residual source, row unit source, output port); each bank selects the lane its
  reader wants, then each role selects its bank;
* a P-wide weight ROM and small ROMs for biases, look-up tables, folded BatchNorm, softmax tables and
  LayerNorm gamma/beta;
* the MAC array fed by the issue sequencer: one X element broadcast and one P-wide W word per cycle,
  groups of P output columns back to back (a group with fewer k than lanes waits for the drain); the
  operands are read the cycle after the issue and registered once more before the MAC array;
* the drain: the group's P sums are shifted out one per cycle (the MAC array's result registers shift) through
  bias -> requantize -> look-up table -> residual -> per-channel affine -> write, a fixed 11-cycle
  pipeline that overlaps the next groups' accumulation; it also keeps each row's maximum (softmax) or
  sum and sum of squares (LayerNorm) for a fused row step;
* the softmax and LayerNorm row units, started with the linear step they follow and fed row by row.

Multiplier blocks (DSP), for a small FPGA (iCE40 UP5K: eight 16 x 16): one per MAC lane, except the last
`logic_lanes` lanes, which multiply in logic (Booth); the requantizer's one (the accumulator's top 16 bits;
its low bits multiply by shift and add); the residual's two; one shared by the folded BatchNorm affine and
the softmax normalization, which no step uses at once (`plan.share_mul`). Shifts span only the range the
program's step table uses (`arith.round_shift_in`), and accumulators and the drain are as wide as the
program's weights and operand ranges can make a sum (`plan._acc_range`), not the worst case of their bits.

Ports: `input` (one code per transfer, row-major over the x buffer), `output` (the output buffer's words,
signed: raw accumulators, or the 16-bit codes of the exporter's last-value skip head), `start`, `busy`,
`done`. Protocol: pulse `start` while idle; the accelerator
takes rows x cols codes on `input`, runs the steps, offers the output words on `output`, and then pulses
`done` for one cycle (`busy` is high from the cycle after `start` until `done`). `error` is a sticky flag
for a drain overrun (a scheduling bug; never set by a correct build). `step` is the current step index and
`cycles` counts the cycles of the current (or last) inference, from `start` to `done`.
"""
from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from intformer.model.program import IntProgram

from .arith import code_shape
from .layernorm import LayerNormUnit, sums_layout
from .mac_array import MacArray
from .plan import R_LN, R_RES, R_SM, R_W, R_X, W_DRAIN, W_LN, W_SM, Plan, make_plan
from .requant import Requantizer, ScaleShiftClamp
from .softmax import SoftmaxUnit

DRAIN_LATENCY = 11       # drain stage of the write, counted from the element leaving the drain buffer


def _addr_bits(depth: int) -> int:
    return max(1, (depth - 1).bit_length())


def _pack_pair(a: int, b: int, wa: int) -> int:
    return (a & ((1 << wa) - 1)) | (b << wa)


class Accelerator(wiring.Component):
    """The whole integer program in hardware; see the module docstring for the datapath and protocol.

    `logic_lanes`: how many MAC lanes multiply in logic instead of a DSP block (`accel.resources.lanes_in_logic`
    says how many a device needs).

    Latency: per linear step rows x groups x max(k, P) cycles (groups = output columns / P, rounded up per
    chunk), plus about P + 17 cycles to drain its last group (issue, operand read, operand register, the MAC
    array's 3 cycles, then the 11-stage drain); a fused softmax or LayerNorm adds only what
    it lags behind its linear step; plus the input (rows x cols cycles) and the output (3 cycles per
    word). For the default model that is 1.01 (P = 1) to 1.19 (P = 16) x MACs / P; `accel.simulate`
    measures it (`profile=` gives the cycles per step).
    """

    def __init__(self, program: IntProgram, lanes: int, logic_lanes: int = 0):
        self.plan = plan = make_plan(program, lanes)
        self.logic_lanes = max(0, min(lanes, logic_lanes))
        x, out = plan.layouts["x"], plan.output
        self.memories = {b.name: Memory(shape=unsigned(b.width), depth=b.depth, init=[],
                                        attrs={"ram_style": "logic"} if b.logic else None)
                         for b in plan.banks}
        super().__init__({
            "input": In(stream.Signature(code_shape(x.bits, x.signed))),
            "output": Out(stream.Signature(signed(out.bits))),
            "start": In(1), "busy": Out(1), "done": Out(1), "error": Out(1),
            "step": Out(range(len(plan.steps) + 1)),
            "cycles": Out(32),
        })

    # ------------------------------------------------------------------------------------- helpers
    @staticmethod
    def _walk(word, lane, within, chunk, lanes):
        """Next (word, lane, within) along a row of a chunked P-wide layout."""
        end = (within == chunk - 1) | (lane == lanes - 1)
        return (Mux(end, word + 1, word), Mux(end, 0, lane + 1), Mux(within == chunk - 1, 0, within + 1))

    def elaborate(self, platform):
        m = Module()
        plan: Plan = self.plan
        P, E, AW = plan.lanes, plan.elem_width, plan.addr_width
        lays = plan.layouts
        LW = max(1, P - 1).bit_length()

        # ---------------------------------------------------------------------------- step table
        fields = {k: (signed(w) if sgn else unsigned(w)) for k, (w, sgn) in plan.field_widths.items()}
        layout = data.StructLayout(fields)
        # the current step's record is a register (the table read at the step's next value), so that its
        # fields reach the datapath straight from flip-flops, not through the table's decoding (Fmax)
        m.submodules.steps = steps = Memory(shape=layout, depth=len(plan.steps), init=plan.steps,
                                            attrs={"ram_style": "logic"})
        step = Signal(range(len(plan.steps) + 1))
        step_next = Signal.like(step)                    # what `step` holds next cycle (the FSM sets it)
        step_rp = steps.read_port(domain="comb")
        rec = Signal(layout, init={k: plan.steps[0][k] for k in fields})
        m.d.comb += [step_next.eq(step), step_rp.addr.eq(step_next), self.step.eq(step)]
        m.d.sync += [step.eq(step_next), rec.eq(step_rp.data)]

        def f(name):
            return rec[name] if name in fields else Const(0, 1)

        # ------------------------------------------------------------------------------ memories
        # one memory per bank (`plan.banks`); rports and wports are indexed by bank
        banks = plan.banks
        rports, wports = {}, {}
        for b in banks:
            mem = self.memories[b.name]
            m.submodules[b.name] = mem
            rports[b.index] = mem.read_port()
            wports[b.index] = mem.write_port(granularity=b.lane_bits)

        def extend(b, raw):
            """A lane read from bank b as a signed E-bit code (zero- or sign-extended as the buffer needs)."""
            if b.signed_read is None:
                return Mux(f(f"rs{b.index}"), raw.as_signed(), raw.as_unsigned())
            return raw.as_signed() if b.signed_read else raw.as_unsigned()

        def rom(name, shape, init):
            mem = Memory(shape=shape, depth=max(1, len(init)), init=init)
            m.submodules[name] = mem
            return mem.read_port()

        wrom = rom("weights", unsigned(plan.weight_width * P), plan.weight_words)
        brom = rom("bias_rom", signed(plan.bias_width), plan.bias_rom)
        lrom = rom("lut_rom", signed(plan.lut_width), plan.lut_rom)
        am_w = plan.aff_m_width
        arom = rom("affine_rom", unsigned(am_w + plan.aff_b_width),
                   [_pack_pair(mm, bb, am_w) & ((1 << (am_w + plan.aff_b_width)) - 1) for mm, bb in plan.aff_rom])
        aff_m = arom.data[:am_w].as_signed()
        aff_b = arom.data[am_w:].as_signed()

        # which banks can take which role (from the table): the data muxes only include those
        roles = {r: [b.index for b in banks if any(rec_[f"rd{b.index}"] == r for rec_ in plan.steps)]
                 for r in (R_X, R_W, R_RES, R_SM, R_LN)}
        writers = {r: [b.index for b in banks if any(rec_[f"wr{b.index}"] == r for rec_ in plan.steps)]
                   for r in (W_DRAIN, W_SM, W_LN)}

        # element reads: each bank selects the lane of the role that reads it in this step (one lane mux per
        # bank), then each role selects its bank; built at the end (`elem_muxes`), once every role is known
        lane_of_role, elem_requests = {}, []

        def pick_elem(role, buf_field, lane_d, name):
            """The element (signed E) read one cycle ago by `role` from the bank the step names."""
            lane_of_role[role] = lane_d
            elem = Signal(signed(E), name=f"{name}_elem")
            elem_requests.append((role, buf_field, elem))
            return elem

        def elem_muxes():
            bank_elem = {}
            for b in banks:
                readers = [r for r in lane_of_role if b.index in roles[r]]
                if b.wide or not readers:
                    continue
                lane = Signal(LW, name=f"{b.name}_lane")
                if len(readers) == 1:
                    m.d.comb += lane.eq(lane_of_role[readers[0]])
                else:
                    with m.Switch(f(f"rd{b.index}")):
                        for r in readers:
                            with m.Case(r):
                                m.d.comb += lane.eq(lane_of_role[r])
                data_ = rports[b.index].data
                raw = data_.word_select(lane, b.lane_bits) if P > 1 else data_
                e = Signal(signed(E), name=f"{b.name}_elem")
                m.d.comb += e.eq(extend(b, raw))
                bank_elem[b.index] = e
            for role, buf_field, elem in elem_requests:
                with m.Switch(f(buf_field)):
                    for j in roles[role]:
                        with m.Case(j):
                            m.d.comb += elem.eq(bank_elem[j])

        # ---------------------------------------------------------------------------- top control
        state_load, state_out = Signal(), Signal()
        lin_start, lin_done = Signal(), Signal()
        sm_done, ln_done = Signal(), Signal()
        step_start = Signal()

        # ------------------------------------------------------------------- input loader (x buffer)
        xl = lays["x"]
        ld_word, ld_lane, ld_within = Signal(AW), Signal(LW), Signal(range(xl.chunk + 1))
        ld_count = Signal(range(xl.rows * xl.cols + 1))
        ld_en = Signal()
        m.d.comb += [self.input.ready.eq(state_load), ld_en.eq(state_load & self.input.valid)]
        with m.If(ld_en):
            nw, nl, ni = self._walk(ld_word, ld_lane, ld_within, xl.chunk, P)
            m.d.sync += [ld_word.eq(nw), ld_lane.eq(nl), ld_within.eq(ni), ld_count.eq(ld_count + 1)]

        # ------------------------------------------------------------------ issue sequencer (MACs)
        iss = Signal()                                   # a (k, group) is issued this cycle
        i_row = Signal(range(plan.max_rows + 2))
        max_groups = max([1] + [r["groups"] for r in plan.steps if r["lin"]])
        i_grp, i_gg = Signal(range(max_groups + 1)), Signal(range(max_groups + 1))
        i_k = Signal(range(plan.k_max + 1))
        CH = max(lay.chunk for lay in lays.values())        # column counters within a chunk
        x_word, x_lane, x_within, x_row = Signal(AW), Signal(LW), Signal(range(CH + 1)), Signal(AW)
        WA = max(_addr_bits(len(plan.weight_words)), AW) + 1
        w_addr, w_grp = Signal(WA), Signal(WA)
        gap = Signal(range(P + 1))
        first, last = Signal(), Signal()
        tag = Signal(range(P + 1))
        m.d.comb += [first.eq(i_k == 0), last.eq(i_k == f("k") - 1),
                     tag.eq(Mux(i_gg == f("gpc") - 1, f("lanes_last"), P))]
        with m.FSM(name="issue"):
            with m.State("IDLE"):
                with m.If(lin_start):
                    m.d.sync += [i_row.eq(0), i_grp.eq(0), i_gg.eq(0), i_k.eq(0), gap.eq(0),
                                 x_row.eq(f("x_word")), x_word.eq(f("x_word")), x_lane.eq(f("x_lane")),
                                 x_within.eq(f("x_within")), w_addr.eq(f("w_base")), w_grp.eq(f("w_base"))]
                    m.next = "ISSUE"
            with m.State("ISSUE"):
                with m.If(gap != 0):
                    m.d.sync += gap.eq(gap - 1)
                with m.Else():
                    m.d.comb += iss.eq(1)
                    with m.If(last):
                        m.d.sync += [i_k.eq(0), gap.eq(f("gap")), x_lane.eq(f("x_lane")), x_within.eq(f("x_within"))]
                        with m.If(i_grp == f("groups") - 1):
                            m.d.sync += [i_grp.eq(0), i_gg.eq(0), w_grp.eq(f("w_base")), w_addr.eq(f("w_base")),
                                         x_row.eq(x_row + f("x_wpr")), x_word.eq(x_row + f("x_wpr")),
                                         i_row.eq(i_row + 1)]
                            with m.If(i_row == f("rows") - 1):
                                m.next = "IDLE"
                        with m.Else():
                            m.d.sync += [i_grp.eq(i_grp + 1), i_gg.eq(Mux(i_gg == f("gpc") - 1, 0, i_gg + 1)),
                                         w_grp.eq(w_grp + f("w_gstride")), w_addr.eq(w_grp + f("w_gstride")),
                                         x_word.eq(x_row)]
                    with m.Else():
                        nw, nl, ni = self._walk(x_word, x_lane, x_within, f("x_chunk"), P)
                        m.d.sync += [i_k.eq(i_k + 1), x_word.eq(nw), x_lane.eq(nl), x_within.eq(ni),
                                     w_addr.eq(w_addr + f("w_kstride"))]

        # operands arrive one cycle after the issue
        iss_d, first_d, last_d = Signal(), Signal(), Signal()
        tag_d = Signal.like(tag)
        x_lane_d = Signal(LW)
        m.d.sync += [iss_d.eq(iss), first_d.eq(first), last_d.eq(last), tag_d.eq(tag), x_lane_d.eq(x_lane)]
        m.d.comb += wrom.addr.eq(w_addr)
        x_elem = pick_elem(R_X, "x_buf", x_lane_d, "x")

        m.submodules.mac = mac = MacArray(P, plan.x_bits, plan.w_bits, plan.k_max, tag_width=len(tag),
                                          logic_lanes=self.logic_lanes, acc_bits=plan.acc_width)
        WB = plan.w_bits + 1
        w_word = Signal(data.ArrayLayout(signed(WB), P))
        with m.If(f("w_rom")):
            for l in range(P):
                m.d.comb += w_word[l].eq(wrom.data[l * plan.weight_width:(l + 1) * plan.weight_width].as_signed())
        with m.Else():
            with m.Switch(f("w_buf")):
                for j in roles[R_W]:
                    with m.Case(j):
                        lb = banks[j].lane_bits
                        for l in range(P):
                            m.d.comb += w_word[l].eq(extend(banks[j], rports[j].data[l * lb:(l + 1) * lb]))
        # and are registered before the MAC array (the bank and lane selection ends in a register, not at the
        # multiplier blocks' inputs: Fmax); the MAC array sees each (k, group) two cycles after its issue
        x_q = Signal(signed(plan.x_bits + 1), reset_less=True)
        w_q = Signal(data.ArrayLayout(signed(WB), P), reset_less=True)
        iss_q, first_q, last_q = Signal(), Signal(), Signal()
        tag_q = Signal.like(tag)
        m.d.sync += [iss_q.eq(iss_d), first_q.eq(first_d), last_q.eq(last_d), tag_q.eq(tag_d),
                     x_q.eq(Mux(f("x_ones"), 1, x_elem)), w_q.eq(w_word)]
        m.d.comb += [mac.valid.eq(iss_q), mac.first.eq(first_q), mac.last.eq(last_q), mac.tag.eq(tag_q),
                     mac.x.eq(x_q), mac.w.eq(w_q)]

        # ------------------------------------------------------------------------------ the drain
        # the MAC array's result registers shift the group's sums out, one per cycle from result[0]: the
        # first in the cycle the group arrives (result_valid), then `dcnt` more
        dcnt = Signal(range(P + 1))
        v0 = Signal()
        m.d.comb += [v0.eq(mac.result_valid | (dcnt != 0)), mac.shift.eq(v0)]
        with m.If(mac.result_valid):
            m.d.sync += dcnt.eq(mac.result_tag - 1)
            with m.If(dcnt != 0):                 # the last group is not out yet: a scheduling bug
                m.d.sync += self.error.eq(1)
        with m.Elif(v0):
            m.d.sync += dcnt.eq(dcnt - 1)

        # D0: column counter, bias; the bias ROM is read a cycle ahead, at the pointer's next value, so that the
        # bias of the element at D0 is there at D0 and the sum with it is a register at D1 (Fmax)
        d_col = Signal(range(plan.max_cols + 1))
        row_end0 = Signal()
        m.d.comb += row_end0.eq(d_col == f("cols") - 1)
        b_ptr = Signal(_addr_bits(len(plan.bias_rom)))
        b_next = Signal.like(b_ptr)
        m.d.comb += [b_next.eq(b_ptr), brom.addr.eq(b_next)]
        m.d.sync += b_ptr.eq(b_next)
        with m.If(lin_start):
            m.d.sync += d_col.eq(0)
            m.d.comb += b_next.eq(f("b_base"))
        with m.Elif(v0):
            m.d.sync += d_col.eq(Mux(row_end0, 0, d_col + 1))
            m.d.comb += b_next.eq(Mux(row_end0 & ~f("b_2d"), f("b_base"), b_ptr + 1))

        def delay(sig, n, name):
            out = sig
            for i in range(n):
                reg = Signal.like(sig, name=f"{name}_{i + 1}")
                m.d.sync += reg.eq(out)
                out = reg
            return out

        valid = [v0] + [None] * DRAIN_LATENCY
        rowend = [row_end0] + [None] * DRAIN_LATENCY
        for k in range(1, DRAIN_LATENCY + 1):
            valid[k] = Signal(name=f"dv{k}")
            rowend[k] = Signal(name=f"dre{k}")
            m.d.sync += [valid[k].eq(valid[k - 1]), rowend[k].eq(rowend[k - 1])]

        # D1: the sum + bias (a register); D1..D4: requantize (raw values bypass it for the output head)
        DW = plan.drain_width
        v1 = Signal(signed(DW))
        m.d.sync += v1.eq(mac.result[0] + Mux(f("bias"), brom.data, 0))
        CW = plan.code_width
        m.submodules.rq = rq = Requantizer(DW, CW, s_range=plan.shift_range("rq_s"), static_params=True)
        m.d.comb += [rq.input.valid.eq(valid[1]), rq.input.payload.eq(v1), rq.m.eq(f("rq_m")), rq.s.eq(f("rq_s")),
                     rq.lo.eq(f("rq_lo")), rq.hi.eq(f("rq_hi")), rq.output.ready.eq(1)]
        raw4 = delay(v1, 3, "raw")
        val4 = Signal(signed(DW))
        m.d.comb += val4.eq(Mux(f("rq"), rq.output.payload, raw4))

        # D4: look-up table address; residual source read (a walker over the source row)
        m.d.comb += lrom.addr.eq(val4[:CW].as_signed() + f("l_off"))
        r_word, r_lane, r_within, r_row = Signal(AW), Signal(LW), Signal(range(CH + 1)), Signal(AW)
        with m.If(lin_start):
            m.d.sync += [r_word.eq(f("r_word")), r_row.eq(f("r_word")), r_lane.eq(f("r_lane")),
                         r_within.eq(f("r_within"))]
        with m.Elif(valid[4] & ~f("r_hold")):              # r_hold: one fixed element for every output
            with m.If(rowend[4]):
                m.d.sync += [r_row.eq(r_row + f("r_wpr")), r_word.eq(r_row + f("r_wpr")), r_lane.eq(f("r_lane")),
                             r_within.eq(f("r_within"))]
            with m.Else():
                nw, nl, ni = self._walk(r_word, r_lane, r_within, f("r_chunk"), P)
                m.d.sync += [r_word.eq(nw), r_lane.eq(nl), r_within.eq(ni)]
        r_lane_d = Signal(LW)
        m.d.sync += r_lane_d.eq(r_lane)
        res_elem = pick_elem(R_RES, "r_buf", r_lane_d, "res")

        # D5: table output; residual sum (D5..D8)
        val5 = Signal(signed(DW))
        val4_d = delay(val4, 1, "val4")
        m.d.comb += val5.eq(Mux(f("lut"), lrom.data, val4_d))
        m.submodules.resadd = resadd = ScaleShiftClamp(CW, plan.res_m_width, 1, CW, s_range=plan.shift_range("r_s"),
                                                       static_params=True)
        m.d.comb += [resadd.valid_in.eq(valid[5]), resadd.a.eq(res_elem), resadd.ma.eq(f("r_msrc")),
                     resadd.b.eq(val5[:CW].as_signed()), resadd.mb.eq(f("r_mnew")), resadd.c.eq(0),
                     resadd.s.eq(f("r_s")), resadd.lo.eq(f("r_lo")), resadd.hi.eq(f("r_hi"))]
        val8 = Signal(signed(DW))
        m.d.comb += val8.eq(Mux(f("res"), resadd.y, delay(val5, 3, "val5")))

        # D7: per-channel affine read (a column pointer); D8..D11: the folded BatchNorm
        a_ptr = Signal(_addr_bits(len(plan.aff_rom)))
        m.d.comb += arom.addr.eq(a_ptr)
        with m.If(lin_start):
            m.d.sync += a_ptr.eq(f("a_base"))
        with m.Elif(valid[7]):
            m.d.sync += a_ptr.eq(Mux(rowend[7], f("a_base"), a_ptr + 1))
        AIW = plan.aff_in_width
        m.submodules.affine = affine = ScaleShiftClamp(AIW, am_w, plan.aff_b_width, CW, shared_mul=plan.share_mul,
                                                       use_b=False, s_range=plan.shift_range("a_s"),
                                                       static_params=True)
        m.d.comb += [affine.valid_in.eq(valid[8]), affine.a.eq(val8[:AIW].as_signed()), affine.ma.eq(aff_m),
                     affine.b.eq(0), affine.mb.eq(0), affine.c.eq(aff_b),
                     affine.s.eq(f("a_s")), affine.lo.eq(f("a_lo")), affine.hi.eq(f("a_hi"))]
        val11 = Signal(signed(DW))
        m.d.comb += val11.eq(Mux(f("aff"), affine.y, delay(val8, 3, "val8")))

        # D11: write, normal (i, oc + j) or transposed (oc + j, i)
        o_word, o_lane, o_within, o_row = Signal(AW), Signal(LW), Signal(range(CH + 1)), Signal(AW)
        t_ptr, c_word, c_lane, c_within = Signal(AW), Signal(AW), Signal(LW), Signal(range(CH + 1))
        vw = valid[DRAIN_LATENCY]
        re = rowend[DRAIN_LATENCY]
        with m.If(lin_start):
            m.d.sync += [o_word.eq(f("o_word")), o_row.eq(f("o_word")), o_lane.eq(f("o_lane")),
                         o_within.eq(f("o_within")), t_ptr.eq(f("o_tbase")), c_word.eq(0), c_lane.eq(0),
                         c_within.eq(0)]
        with m.Elif(vw):
            with m.If(re):
                m.d.sync += [o_row.eq(o_row + f("o_wpr")), o_word.eq(o_row + f("o_wpr")), o_lane.eq(f("o_lane")),
                             o_within.eq(f("o_within")), t_ptr.eq(f("o_tbase"))]
                nw, nl, ni = self._walk(c_word, c_lane, c_within, f("o_chunk"), P)
                m.d.sync += [c_word.eq(nw), c_lane.eq(nl), c_within.eq(ni)]
            with m.Else():
                nw, nl, ni = self._walk(o_word, o_lane, o_within, f("o_chunk"), P)
                m.d.sync += [o_word.eq(nw), o_lane.eq(nl), o_within.eq(ni), t_ptr.eq(t_ptr + f("o_wpr"))]
        dw_addr = Signal(AW)
        dw_lane = Signal(LW)
        m.d.comb += [dw_addr.eq(Mux(f("out_t"), t_ptr + c_word, o_word)), dw_lane.eq(Mux(f("out_t"), c_lane, o_lane))]

        # row statistics for a fused row step, and the count of finished rows it follows
        remaining = Signal(range(max([1] + [r["n_out"] for r in plan.steps if r["lin"]]) + 1))
        rows_done = Signal(range(plan.max_rows + 1))
        st_max = Signal(signed(E))
        sl = sums_layout(E, plan.max_cols)
        st_s, st_q = Signal(sl["s"].shape), Signal(sl["q"].shape)
        st_first = Signal()
        code11 = val11[:E].as_signed()
        new_max = Mux(st_first | (code11 > st_max), code11, st_max)
        new_s = Mux(st_first, code11, st_s + code11)
        new_q = Mux(st_first, code11 * code11, st_q + code11 * code11)
        m.submodules.rmax = rmax_mem = Memory(shape=signed(E), depth=plan.stat_rows, init=[])
        m.submodules.rsum = rsum_mem = Memory(shape=sl, depth=plan.stat_rows, init=[])
        rmax_w, rsum_w = rmax_mem.write_port(), rsum_mem.write_port()
        m.d.comb += [rmax_w.addr.eq(rows_done), rsum_w.addr.eq(rows_done), rmax_w.data.eq(new_max),
                     rsum_w.data.s.eq(new_s), rsum_w.data.q.eq(new_q),
                     rmax_w.en.eq(vw & re & f("trk_max")), rsum_w.en.eq(vw & re & f("trk_sum"))]
        with m.If(lin_start):
            m.d.sync += [remaining.eq(f("n_out")), rows_done.eq(0), st_first.eq(1)]
        with m.Elif(vw):
            m.d.sync += [remaining.eq(remaining - 1), st_max.eq(new_max), st_s.eq(new_s), st_q.eq(new_q),
                         st_first.eq(re)]
            with m.If(re):
                m.d.sync += rows_done.eq(rows_done + 1)
        with m.If(lin_start):
            m.d.sync += lin_done.eq(0)
        with m.Elif(vw & (remaining == 1)):
            m.d.sync += lin_done.eq(1)

        # ---------------------------------------------------------------------------- row units
        sm = ln = None
        if any(r["sm"] for r in plan.steps):
            m.submodules.softmax = sm = SoftmaxUnit(
                lanes=P, elem_width=E, addr_width=AW, max_rows=plan.max_rows, max_cols=plan.max_cols,
                methods=tuple({"poly" if r["sm_poly"] else "lut" for r in plan.steps if r["sm"]}),
                table_addr_width=_addr_bits(len(plan.exp_rom)), exp_width=plan.exp_width,
                min_sum=plan.min_exp_sum, out_width=E, shared_mul=plan.share_mul,
                out_bits_range=plan.shift_range("sm_out_bits", (0, 8)))
            erom = rom("exp_rom", unsigned(plan.exp_width), plan.exp_rom)
            rmax_r = rmax_mem.read_port()
            m.d.comb += [erom.addr.eq(sm.table.addr), sm.table.data.eq(erom.data),
                         rmax_r.addr.eq(sm.rmax.addr), sm.rmax.data.eq(rmax_r.data)]
            m.d.comb += [sm.start.eq(step_start & f("sm")), sm.rows.eq(f("sm_rows")), sm.cols.eq(f("sm_cols")),
                         sm.rows_ready.eq(Mux(f("fused"), rows_done, f("sm_rows"))),
                         sm.src_base.eq(f("sm_src_base")), sm.src_wpr.eq(f("sm_src_wpr")),
                         sm.out_base.eq(f("sm_out_base")),
                         sm.out_wpr.eq(f("sm_out_wpr")), sm.poly.eq(f("sm_poly")), sm.c.eq(f("sm_c")),
                         sm.out_bits.eq(f("sm_out_bits")), sm.t_base.eq(f("sm_t_base")), sm.ext_max.eq(f("sm_ext"))]
            sm_lane_d = Signal(LW)
            m.d.sync += sm_lane_d.eq(sm.rd.lane)
            m.d.comb += sm.rd.data.eq(pick_elem(R_SM, "sm_src", sm_lane_d, "smr"))
            with m.If(step_start):
                m.d.sync += sm_done.eq(0)
            with m.Elif(sm.done):
                m.d.sync += sm_done.eq(1)
        if any(r["ln"] for r in plan.steps):
            m.submodules.layernorm = ln = LayerNormUnit(
                lanes=P, elem_width=E, addr_width=AW, max_rows=plan.max_rows, max_cols=plan.max_cols,
                eps_max=plan.eps_max, g_width=plan.ln_g_width, b_width=plan.ln_b_width,
                param_addr_width=_addr_bits(len(plan.ln_rom)), out_width=E, s_range=plan.shift_range("ln_s"))
            gw = plan.ln_g_width
            nrom = rom("ln_rom", unsigned(gw + plan.ln_b_width),
                       [_pack_pair(g, b, gw) & ((1 << (gw + plan.ln_b_width)) - 1) for g, b in plan.ln_rom])
            rsum_r = rsum_mem.read_port()
            m.d.comb += [nrom.addr.eq(ln.param.addr), ln.param.data.g.eq(nrom.data[:gw]),
                         ln.param.data.b.eq(nrom.data[gw:]),
                         rsum_r.addr.eq(ln.rsum.addr), ln.rsum.data.eq(rsum_r.data)]
            m.d.comb += [ln.start.eq(step_start & f("ln")), ln.rows.eq(f("ln_rows")), ln.cols.eq(f("ln_cols")),
                         ln.rows_ready.eq(Mux(f("fused"), rows_done, f("ln_rows"))),
                         ln.src_base.eq(f("ln_src_base")), ln.src_wpr.eq(f("ln_src_wpr")),
                         ln.out_base.eq(f("ln_out_base")),
                         ln.out_wpr.eq(f("ln_out_wpr")), ln.p_base.eq(f("ln_p_base")), ln.s.eq(f("ln_s")),
                         ln.eps.eq(f("ln_eps")), ln.lo.eq(f("ln_lo")), ln.hi.eq(f("ln_hi")),
                         ln.ext_sums.eq(f("ln_ext"))]
            ln_lane_d = Signal(LW)
            m.d.sync += ln_lane_d.eq(ln.rd.lane)
            m.d.comb += ln.rd.data.eq(pick_elem(R_LN, "ln_src", ln_lane_d, "lnr"))
            with m.If(step_start):
                m.d.sync += ln_done.eq(0)
            with m.Elif(ln.done):
                m.d.sync += ln_done.eq(1)

        # one multiplier block for the affine and the softmax normalization (never busy in the same step)
        if plan.share_mul:
            mul_a, mul_b = Signal(signed(16)), Signal(signed(16))
            mul_p = Signal(signed(32), reset_less=True)           # the DSP block's output register
            m.d.comb += [mul_a.eq(Mux(f("sm"), sm.mul.a, affine.mul.a)), mul_b.eq(Mux(f("sm"), sm.mul.b, affine.mul.b)),
                         sm.mul.p.eq(mul_p), affine.mul.p.eq(mul_p)]
            m.d.sync += mul_p.eq(mul_a * mul_b)

        # ------------------------------------------------------------------------ output port
        ol = plan.output
        o_idx = Signal(range(ol.cols + 1))
        op_word, op_lane, op_within = Signal(AW), Signal(LW), Signal(range(ol.chunk + 1))
        op_lane_d = Signal(LW)
        m.d.sync += op_lane_d.eq(op_lane)
        out_bank = banks[ol.bank]
        out_raw = rports[ol.bank].data.word_select(op_lane_d, out_bank.lane_bits)[:ol.bits].as_signed()
        out_reg = Signal(signed(ol.bits))
        m.d.comb += self.output.payload.eq(out_reg)

        # -------------------------------------------------------------------- memory port muxes
        sources = {R_X: x_word, R_W: w_addr, R_RES: r_word}
        if sm is not None:
            sources[R_SM] = sm.rd.addr
        if ln is not None:
            sources[R_LN] = ln.rd.addr
        wsrc = {W_DRAIN: (vw, dw_addr, dw_lane, val11)}
        if sm is not None:
            wsrc[W_SM] = (sm.wr.en, sm.wr.addr, sm.wr.lane, sm.wr.data)
        if ln is not None:
            wsrc[W_LN] = (ln.wr.en, ln.wr.addr, ln.wr.lane, ln.wr.data)
        for b in banks:
            j = b.index
            rp, wp = rports[j], wports[j]
            rd_role, wr_role = f(f"rd{j}"), f(f"wr{j}")
            if j == ol.bank:
                with m.If(state_out):
                    m.d.comb += rp.addr.eq(op_word)
            with m.If(~state_out):
                with m.Switch(rd_role):
                    for role, addr in sources.items():
                        if j in roles.get(role, []):
                            with m.Case(role):
                                m.d.comb += rp.addr.eq(addr)

            def write(addr, lane, value, wp=wp, b=b):
                lane_value = Signal(signed(b.lane_bits) if value.shape().signed else unsigned(b.lane_bits))
                n = b.lanes
                m.d.comb += [lane_value.eq(value), wp.addr.eq(addr), wp.data.eq(lane_value.replicate(n)),
                             wp.en.eq((Const(1, n) << lane)[:n] if n > 1 else 1)]
            if j == xl.bank:
                with m.If(ld_en):
                    write(ld_word, ld_lane, self.input.payload)
            with m.Switch(wr_role):
                for role, (en, addr, lane, value) in wsrc.items():
                    if j in writers.get(role, []):
                        with m.Case(role):
                            with m.If(en):
                                write(addr, lane, value)

        elem_muxes()

        # ----------------------------------------------------------------------------- top FSM
        n_steps = len(plan.steps)
        m.d.sync += self.done.eq(0)
        with m.If(self.start & ~self.busy):
            m.d.sync += self.cycles.eq(1)
        with m.Elif(self.busy):
            m.d.sync += self.cycles.eq(self.cycles + 1)
        with m.FSM(name="top"):
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [self.busy.eq(1), ld_word.eq(xl.base), ld_lane.eq(0), ld_within.eq(0), ld_count.eq(0)]
                    m.d.comb += step_next.eq(0)
                    m.next = "LOAD"
            with m.State("LOAD"):
                m.d.comb += state_load.eq(1)
                with m.If(ld_en & (ld_count == xl.rows * xl.cols - 1)):
                    m.next = "STEP"
            with m.State("STEP"):
                m.d.comb += [step_start.eq(1), lin_start.eq(f("lin"))]
                m.next = "WAIT"
            with m.State("WAIT"):
                ok = (~f("lin") | lin_done) & (~f("sm") | sm_done) & (~f("ln") | ln_done)
                with m.If(ok):
                    m.d.comb += step_next.eq(step + 1)
                    with m.If(step == n_steps - 1):
                        m.d.sync += [o_idx.eq(0), op_word.eq(ol.base), op_lane.eq(0), op_within.eq(0)]
                        m.next = "OUT_READ"
                    with m.Else():
                        m.next = "STEP"
            with m.State("OUT_READ"):
                m.d.comb += state_out.eq(1)
                m.next = "OUT_LATCH"
            with m.State("OUT_LATCH"):
                m.d.comb += state_out.eq(1)
                m.d.sync += out_reg.eq(out_raw)
                m.next = "OUT_SEND"
            with m.State("OUT_SEND"):
                m.d.comb += [state_out.eq(1), self.output.valid.eq(1)]
                with m.If(self.output.ready):
                    nw, nl, ni = self._walk(op_word, op_lane, op_within, ol.chunk, P)
                    m.d.sync += [o_idx.eq(o_idx + 1), op_word.eq(nw), op_lane.eq(nl), op_within.eq(ni)]
                    with m.If(o_idx == ol.cols - 1):
                        m.d.sync += [self.busy.eq(0), self.done.eq(1)]
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "OUT_READ"
        return m
