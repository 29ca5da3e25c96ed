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
  bias -> requantize -> look-up table -> residual -> per-channel affine -> write, a fixed pipeline of
  `Drain.LATENCY` (11) cycles that overlaps the next groups' accumulation; it also keeps each row's maximum (softmax) or
  sum and sum of squares (LayerNorm) for a fused row step;
* the softmax and LayerNorm row units, started with the linear step they follow and fed row by row.

Multiplier blocks (DSP), for a small FPGA (iCE40 UP5K: eight 16 x 16): one per MAC lane, except the last
`logic_lanes` lanes, which multiply in logic (Booth); the requantizer's one (the accumulator's top 16 bits;
its low bits multiply by shift and add); the residual's two; one shared by the folded BatchNorm affine and
the softmax normalization, which no step uses at once (`plan.share_mul`). Shifts span only the range the
program's step table uses (`arith.round_shift_in`), and accumulators and the drain are as wide as the
program's weights and operand ranges can make a sum (`plan._acc_range`), not the worst case of their bits.

Ports: `input` (one code per transfer, row-major over the x buffer), `output` (the output buffer's words,
signed: raw accumulators, or the 16-bit codes of the exporter's last-value skip head; a classifier's C
scores and then its class, the argmax the output port computes as the scores leave; a detector's C errors,
then their score and its flag, which the output port's anomaly scorer computes likewise), `start`, `busy`,
`done`. Protocol: pulse `start` while idle; the accelerator
takes rows x cols codes on `input`, runs the steps, offers the output words on `output`, and then pulses
`done` for one cycle (`busy` is high from the cycle after `start` until `done`). `error` is a sticky flag
for a drain overrun (a scheduling bug; never set by a correct build). `step` is the current step index and
`cycles` counts the cycles of the current (or last) inference, from `start` to `done`. `clear` (a pulse,
any time; a detector's only state from one window to the next is its smoothed score) makes the next window
start a new stream, as after reset (`accel.anomaly.AnomalyScorer`); other programs ignore it.
"""
from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from intformer.model.program import IntProgram

from .arith import code_shape
from .control import State, TopControl
from .crossbar import BankCrossbar
from .drain import Drain, addr_bits
from .layernorm import LayerNormUnit, sums_layout
from .loader import InputLoader
from .mac_array import MacArray
from .output_port import OutputPort
from .plan import Plan
from .resources import design_plan
from .sequencer import IssueSequencer
from .softmax import SoftmaxUnit
from .steps import StepFields


def _pack_pair(a: int, b: int, wa: int) -> int:
    return (a & ((1 << wa) - 1)) | (b << wa)


class Accelerator(wiring.Component):
    """The whole integer program in hardware; see the module docstring for the datapath and protocol.

    `logic_lanes`: how many MAC lanes multiply in logic instead of a DSP block (`accel.resources.lanes_in_logic`
    says how many a device needs).

    The blocks, each a component of its own made here (a proof reaches them as attributes): `control`
    (`TopControl`: the top state machine and the step table), `loader` (`InputLoader`), `sequencer`
    (`IssueSequencer`), `mac` (`MacArray`), `drain` (`Drain`), `crossbar` (`BankCrossbar`: the banks and
    their multiplexers), `softmax` and `layernorm` (the row units, None where no step uses one), `out_port`
    (`OutputPort`; a classifier's `ArgmaxTracker` is its `argmax`, a detector's `AnomalyScorer` its `scorer`). `elaborate` only connects them, and the
    ROMs and row statistics memories they read.
    The blocks of `accel.block` are built into the accelerator's own module (the design keeps the hierarchy
    it had as one function: the resource counts of a flow that keeps hierarchy depend on it); `keep_blocks`
    makes each a submodule of its own instead, the same logic behind module boundaries, so that a flow that
    keeps hierarchy counts each block's cells apart (`bench/lc_breakdown.py`).
    What proofs observe: `state` (`Accelerator.State`), `load_en`, `load_count`, `out_index`.

    Latency: per linear step rows x groups x max(k, P) cycles (k / 2 for a pair step, `plan.pairing`: two k per
    multiplier block; groups = output columns / P, rounded up per
    chunk), plus about P + 17 cycles to drain its last group (issue, operand read, operand register:
    `IssueSequencer.LATENCY`, the MAC array's `MacArray.LATENCY`, then the drain's `Drain.LATENCY`); a fused
    softmax or LayerNorm adds only what it lags behind its linear step; plus the input (rows x cols cycles)
    and the output (3 cycles per word; a classifier's class is one more word, its tracker's latency hidden
    in the word's read: `OutputPort.CLASS_SLACK`). For the default model that is 1.01 (P = 1) to 1.19
    (P = 16) x MACs / P; `accel.simulate` measures it (`profile=` gives the cycles per step).
    """
    State = State

    def __init__(self, program: IntProgram, lanes: int, logic_lanes: int = 0, keep_blocks: bool = False):
        self.plan = plan = design_plan(program, lanes)
        self.keep_blocks = keep_blocks
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
            "clear": In(1),      # a detector: the next window starts a new stream of smoothed scores
        })
        self._make_blocks()
        self.state = self.control.state                  # the top FSM's state (`Accelerator.State`)
        self.load_en = self.loader.en                    # the loader writes an input code this cycle
        self.load_count = self.loader.count              # input codes taken since `start`
        self.out_index = self.out_port.index             # index of the output word on offer

    def _make_blocks(self):
        plan, P, E, AW = self.plan, self.plan.lanes, self.plan.elem_width, self.plan.addr_width
        self.control = TopControl(plan)
        self.loader = InputLoader(plan.layouts["x"], P, AW)
        self.sequencer = IssueSequencer(plan)
        self.mac = MacArray(P, plan.x_bits, plan.w_bits, plan.k_max, tag_width=len(self.sequencer.tag),
                            logic_lanes=self.logic_lanes, acc_bits=plan.acc_width, pairs=plan.pairs)
        self.drain = Drain(plan, tag_width=len(self.sequencer.tag))
        self.crossbar = BankCrossbar(plan, self.memories, self.loader.data.shape())
        out_bank = plan.banks[plan.output.bank]
        self.out_port = OutputPort(plan.output, P, AW, out_bank.lane_bits, out_bank.width, classes=plan.classes,
                                   detect=plan.detect)
        self.softmax = self.layernorm = None
        if plan.uses("softmax"):
            self.softmax = SoftmaxUnit(
                lanes=P, elem_width=E, addr_width=AW, max_rows=plan.max_rows, max_cols=plan.max_cols,
                methods=tuple({"poly" if r.sm_poly else "lut" for r in plan.steps if r.softmax}),
                table_addr_width=addr_bits(len(plan.exp_rom)), exp_width=plan.exp_width,
                min_sum=plan.min_exp_sum, out_width=E, shared_mul=plan.share_mul,
                out_bits_range=plan.shift_range("sm_out_bits", (0, 8)))
        if plan.uses("layernorm"):
            self.layernorm = LayerNormUnit(
                lanes=P, elem_width=E, addr_width=AW, max_rows=plan.max_rows, max_cols=plan.max_cols,
                eps_max=plan.eps_max, g_width=plan.ln_g_width, b_width=plan.ln_b_width,
                param_addr_width=addr_bits(len(plan.ln_rom)), out_width=E, s_range=plan.shift_range("ln_shift"))

    def elaborate(self, platform):
        m = Module()
        plan = self.plan
        ctl, ld, seq, mac, dr, xb, op = (self.control, self.loader, self.sequencer, self.mac, self.drain,
                                         self.crossbar, self.out_port)
        # the blocks are built into this module, not added as submodules (`accel.block`); the arithmetic
        # units within them (MAC array, requantizer, ...) are submodules
        self._add_block(m, "control", ctl)
        f = StepFields(ctl.record)
        self._add_block(m, "crossbar", xb)
        roms = self._roms(m, plan)
        self._add_block(m, "loader", ld)
        self._add_block(m, "sequencer", seq)
        m.submodules.mac = mac
        self._add_block(m, "drain", dr)
        self._add_block(m, "out_port", op)
        for block in (seq, dr, xb):
            m.d.comb += block.step.eq(ctl.record)
        # the top's ports and the state machine's inputs
        m.d.comb += [ctl.start.eq(self.start), self.busy.eq(ctl.busy), self.done.eq(ctl.done),
                     self.cycles.eq(ctl.cycles), self.step.eq(ctl.step), self.error.eq(dr.error),
                     ctl.load_last.eq(ld.last), ctl.lin_done.eq(dr.done),
                     ctl.out_ready.eq(self.output.ready), ctl.out_last.eq(op.last)]
        # the input: the loader writes the x buffer's bank
        m.d.comb += [ld.start.eq(ctl.load_start), ld.active.eq(ctl.load),
                     ld.input.valid.eq(self.input.valid), ld.input.payload.eq(self.input.payload),
                     self.input.ready.eq(ld.input.ready),
                     xb.load.en.eq(ld.en), xb.load.addr.eq(ld.addr), xb.load.lane.eq(ld.lane),
                     xb.load.data.eq(ld.data)]
        # a linear step: issue -> operands from the banks (or the weight ROM) -> MAC array -> drain -> bank
        m.d.comb += [seq.start.eq(ctl.linear_start), xb.x_addr.eq(seq.x_addr), xb.x_lane.eq(seq.x_lane),
                     xb.w_addr.eq(seq.w_addr), roms["weights"].addr.eq(seq.w_addr),
                     xb.w_rom_data.eq(roms["weights"].data),
                     seq.x_elem.eq(xb.x_elem), seq.w_word.eq(xb.w_word),
                     mac.valid.eq(seq.valid), mac.first.eq(seq.first), mac.last.eq(seq.last), mac.tag.eq(seq.tag),
                     mac.x.eq(seq.x), mac.w.eq(seq.w)]
        if plan.pairs:
            m.d.comb += [seq.x_elem1.eq(xb.x_elem1), mac.x1.eq(seq.x1), mac.pair.eq(seq.pair)]
        self._drain(m, roms, dr, xb, mac, ctl)
        # the output: the port reads the output buffer's bank
        m.d.comb += [op.start.eq(ctl.out_start), op.latch.eq(ctl.out_latch), op.send.eq(ctl.out_send),
                     xb.out_active.eq(ctl.out), xb.out_addr.eq(op.addr), op.data.eq(xb.out_data),
                     self.output.valid.eq(op.output.valid), self.output.payload.eq(op.output.payload),
                     op.output.ready.eq(self.output.ready), op.clear.eq(self.clear)]
        stats = self._row_statistics(m, dr)
        if self.softmax is not None:
            self._softmax(m, f, roms, ctl, dr, xb, stats)
        if self.layernorm is not None:
            self._layernorm(m, f, roms, ctl, dr, xb, stats)
        if plan.share_mul:
            self._shared_multiplier(m, f)
        return m

    def _add_block(self, m: Module, name: str, block) -> None:
        if self.keep_blocks:
            m.submodules[name] = block
        else:
            block.build(m)

    def _roms(self, m, plan: Plan) -> dict:
        """The constant tables: weights P-wide, biases, look-up tables, affine (m, b) pairs; the softmax's
        exponentials and the LayerNorm's (g, b) pairs where a row unit needs them."""
        am_w, gw = plan.aff_m_width, plan.ln_g_width
        tables = {
            "weights": (unsigned(plan.weight_width * plan.lanes), plan.weight_words),
            "bias_rom": (signed(plan.bias_width), plan.bias_rom),
            "lut_rom": (signed(plan.lut_width), plan.lut_rom),
            "affine_rom": (unsigned(am_w + plan.aff_b_width),
                           [_pack_pair(mm, bb, am_w) & ((1 << (am_w + plan.aff_b_width)) - 1)
                            for mm, bb in plan.aff_rom]),
        }
        if self.softmax is not None:
            tables["exp_rom"] = (unsigned(plan.exp_width), plan.exp_rom)
        if self.layernorm is not None:
            tables["ln_rom"] = (unsigned(gw + plan.ln_b_width),
                                [_pack_pair(g, b, gw) & ((1 << (gw + plan.ln_b_width)) - 1) for g, b in plan.ln_rom])
        ports = {}
        for name, (shape, init) in tables.items():
            mem = Memory(shape=shape, depth=max(1, len(init)), init=init)
            m.submodules[name] = mem
            ports[name] = mem.read_port()
        return ports

    def _drain(self, m, roms, dr, xb, mac, ctl):
        """The drain takes the MAC array's sums, reads its ROMs and the residual source, writes a bank."""
        m.d.comb += [dr.start.eq(ctl.linear_start), dr.result.eq(mac.result[0]),
                     dr.result_valid.eq(mac.result_valid), dr.result_tag.eq(mac.result_tag), mac.shift.eq(dr.shift),
                     roms["bias_rom"].addr.eq(dr.bias_addr), dr.bias_data.eq(roms["bias_rom"].data),
                     roms["lut_rom"].addr.eq(dr.lut_addr), dr.lut_data.eq(roms["lut_rom"].data),
                     roms["affine_rom"].addr.eq(dr.affine_addr), dr.affine_data.eq(roms["affine_rom"].data),
                     xb.res_addr.eq(dr.res_addr), xb.res_lane.eq(dr.res_lane), dr.res_elem.eq(xb.res_elem),
                     xb.drain.en.eq(dr.wr_en), xb.drain.addr.eq(dr.wr_addr), xb.drain.lane.eq(dr.wr_lane),
                     xb.drain.data.eq(dr.wr_data)]

    def _row_statistics(self, m, dr) -> dict:
        """The memories of the rows' maxima and sums the drain collects for a fused row step: their read
        ports, for the row units."""
        plan = self.plan
        m.submodules.rmax = rmax_mem = Memory(shape=signed(plan.elem_width), depth=plan.stat_rows, init=[])
        m.submodules.rsum = rsum_mem = Memory(shape=sums_layout(plan.elem_width, plan.max_cols),
                                              depth=plan.stat_rows, init=[])
        rmax_w, rsum_w = rmax_mem.write_port(), rsum_mem.write_port()
        m.d.comb += [rmax_w.addr.eq(dr.rows_done), rsum_w.addr.eq(dr.rows_done), rmax_w.data.eq(dr.stat_max),
                     rsum_w.data.s.eq(dr.stat_s), rsum_w.data.q.eq(dr.stat_q),
                     rmax_w.en.eq(dr.stat_max_en), rsum_w.en.eq(dr.stat_sums_en)]
        return {"rmax": rmax_mem, "rsum": rsum_mem}

    def _softmax(self, m, f, roms, ctl, dr, xb, stats):
        """The softmax unit: started with its step, fed by the crossbar, rows ready as the drain writes them
        (fused) or all at once."""
        sm = self.softmax
        m.submodules.softmax = sm
        erom, rmax_r = roms["exp_rom"], stats["rmax"].read_port()
        m.d.comb += [erom.addr.eq(sm.table.addr), sm.table.data.eq(erom.data),
                     rmax_r.addr.eq(sm.rmax.addr), sm.rmax.data.eq(rmax_r.data)]
        m.d.comb += [sm.start.eq(ctl.step_start & f.softmax), sm.rows.eq(f.sm_rows), sm.cols.eq(f.sm_cols),
                     sm.rows_ready.eq(Mux(f.fused, dr.rows_done, f.sm_rows)),
                     sm.src_base.eq(f.sm_src_base), sm.src_wpr.eq(f.sm_src_words_per_row),
                     sm.out_base.eq(f.sm_out_base), sm.out_wpr.eq(f.sm_out_words_per_row), sm.poly.eq(f.sm_poly),
                     sm.c.eq(f.sm_c), sm.out_bits.eq(f.sm_out_bits), sm.t_base.eq(f.sm_table_base),
                     sm.ext_max.eq(f.sm_fused_max)]
        self._row_unit_ports(m, ctl, sm, xb, "sm")

    def _layernorm(self, m, f, roms, ctl, dr, xb, stats):
        """The LayerNorm unit: as the softmax, with its (g, b) ROM and the drain's row sums."""
        ln, plan = self.layernorm, self.plan
        m.submodules.layernorm = ln
        gw = plan.ln_g_width
        nrom, rsum_r = roms["ln_rom"], stats["rsum"].read_port()
        m.d.comb += [nrom.addr.eq(ln.param.addr), ln.param.data.g.eq(nrom.data[:gw]),
                     ln.param.data.b.eq(nrom.data[gw:]),
                     rsum_r.addr.eq(ln.rsum.addr), ln.rsum.data.eq(rsum_r.data)]
        m.d.comb += [ln.start.eq(ctl.step_start & f.layernorm), ln.rows.eq(f.ln_rows), ln.cols.eq(f.ln_cols),
                     ln.rows_ready.eq(Mux(f.fused, dr.rows_done, f.ln_rows)),
                     ln.src_base.eq(f.ln_src_base), ln.src_wpr.eq(f.ln_src_words_per_row),
                     ln.out_base.eq(f.ln_out_base), ln.out_wpr.eq(f.ln_out_words_per_row),
                     ln.p_base.eq(f.ln_param_base), ln.s.eq(f.ln_shift), ln.eps.eq(f.ln_eps), ln.lo.eq(f.ln_lo),
                     ln.hi.eq(f.ln_hi), ln.ext_sums.eq(f.ln_fused_sums)]
        self._row_unit_ports(m, ctl, ln, xb, "ln")

    def _row_unit_ports(self, m, ctl, unit, xb, name):
        """A row unit's element read and write through the crossbar, and its done flag for the state
        machine (set when the unit is done, cleared when a step starts)."""
        lane_d = Signal.like(getattr(xb, f"{name}_lane"))      # the lane of the element read a cycle ago
        m.d.sync += lane_d.eq(unit.rd.lane)
        m.d.comb += [getattr(xb, f"{name}_addr").eq(unit.rd.addr), getattr(xb, f"{name}_lane").eq(lane_d),
                     unit.rd.data.eq(getattr(xb, f"{name}_elem"))]
        wiring.connect(m, unit.wr, getattr(xb, name))
        done = Signal(name=f"{name}_done")
        with m.If(ctl.step_start):
            m.d.sync += done.eq(0)
        with m.Elif(unit.done):
            m.d.sync += done.eq(1)
        m.d.comb += getattr(ctl, f"{name}_done").eq(done)

    def _shared_multiplier(self, m, f):
        """One multiplier block for the affine and the softmax normalization (never busy in the same step)."""
        sm, affine = self.softmax, self.drain.affine
        mul_a, mul_b = Signal(signed(16)), Signal(signed(16))
        mul_p = Signal(signed(32), reset_less=True)           # the DSP block's output register
        m.d.comb += [mul_a.eq(Mux(f.softmax, sm.mul.a, affine.mul.a)), mul_b.eq(Mux(f.softmax, sm.mul.b, affine.mul.b)),
                     sm.mul.p.eq(mul_p), affine.mul.p.eq(mul_p)]
        m.d.sync += mul_p.eq(mul_a * mul_b)
