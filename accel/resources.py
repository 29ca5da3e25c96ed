"""What an accelerator build needs (multipliers, block RAM, logic), before synthesis, and whether it fits.

The estimate follows the structure of `accel.accelerator` from its plan: one multiplier per MAC lane (or, for
lanes built in logic, a Booth multiplier's LUTs) plus the few in the drain (the requantizer's 16-bit block and
its low bits in logic, the residual's two, the affine, shared with the softmax normalization where the plan
says so) and in the row units; a classifier's argmax tracker (`accel.argmax`) or a detector's scorer
(`accel.anomaly`) in logic; one memory per bank of buffers (`plan.banks`) and per ROM; logic from the widths
of adders, shifters and multiplexers. A multiplier goes to a DSP block as yosys maps it: both operands at
least 2 bits and the product at least the device's minimum width (iCE40: 11 bits, so 4-bit codes multiply in
logic). Memories go to block RAM in the cheapest of
the device's aspect ratios unless yosys would build them from logic: a bank small enough for flip-flops
(`Bank.logic`), a ROM whose bits cost less as LUTs than its blocks, shallow memories where the device has
distributed RAM. The logic count is rough (calibrated against yosys on the default model at 4 to 8 bits, P = 1
to 16: within about 15 %): use it to choose the lane count, and the synthesis flow (`boards.synth`,
`bench/synth_bench.py`) for the real figure.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from intformer.model.errors import IntformerError
from intformer.model.program import IntProgram

from .arith import DSP_BITS
from .layernorm import ln_widths
from .plan import Plan, make_plan
from .softmax import recip_bits


@dataclass(frozen=True)
class Device:
    name: str
    luts: int                     # logic cells (LUT4, or LUT6 for Xilinx)
    lut_inputs: int
    dsps: int
    dsp_a: int                    # the multiplier block's operand widths
    dsp_b: int
    ram_blocks: int
    ram_configs: tuple            # (depth, width) shapes of one block RAM
    lutram_bits: int              # bits of distributed RAM per LUT (0: none)
    dsp_y_min: int = 0            # yosys maps a product narrower than this to logic


DEVICES = {
    "ice40-up5k": Device("ice40-up5k", 5280, 4, 8, 16, 16, 30, ((256, 16), (512, 8), (1024, 4), (2048, 2)), 0,
                         dsp_y_min=11),
    "xc7s15": Device("xc7s15", 8000, 6, 20, 25, 18, 10,
                     ((1024, 36), (2048, 18), (4096, 9), (8192, 4), (16384, 2), (32768, 1)), 64, dsp_y_min=9),
    "ecp5-25f": Device("ecp5-25f", 24000, 4, 28, 18, 18, 56,
                       ((512, 36), (1024, 18), (2048, 9), (4096, 4), (8192, 2), (16384, 1)), 32),
}
SHALLOW_DEPTH = 64                # up to this depth, distributed RAM (where the device has it) beats a block
ROM_LOGIC_BITS = 1024             # iCE40 (yosys memory_libmap): a ROM costs 1/16 per bit in logic, 64 per block
BOOTH_LUTS = 2.2                  # LUT4 per (x bit x w bit) of a MAC lane multiplied in logic (arith.booth_mul)
# calibration of the logic model against yosys (synth_ice40, the default model at 4, 6 and 8 bits, P = 1 to 16):
# what the per-lane parts and the fixed parts below come to in LUT4s per counted unit
LANE_SCALE, BASE_SCALE = 1.7, 1.18
LUT6_SCALE = 0.95                 # synth_xilinx's LUT count for the same design (it packs little more per LUT)


@dataclass
class Estimate:
    lanes: int
    logic_lanes: int = 0
    multipliers: dict[str, tuple[int, int, int]] = field(default_factory=dict)   # name -> (a, b, count)
    memories: dict[str, tuple[int, int]] = field(default_factory=dict)           # name -> (depth, width)
    roms: set = field(default_factory=set)                                       # names of read-only memories
    flipflop_memories: set = field(default_factory=set)                          # built from flip-flops
    logic: int = 0                # LUT4 equivalents, without memories and block multipliers
    parts: dict[str, float] = field(default_factory=dict)                       # logic by part of the design

    def dsp_count(self, dev: Device) -> int:
        return sum(n * _dsps(a, b, dev) for a, b, n in self.multipliers.values())

    def _distributed(self, name: str, dev: Device) -> bool:
        depth, width = self.memories[name]
        if name in self.flipflop_memories:
            return True
        if dev.lutram_bits > 0:
            return depth <= SHALLOW_DEPTH or depth * width <= 256
        if name in self.roms:
            return depth * width <= ROM_LOGIC_BITS * _blocks(depth, width, dev)
        return depth * width <= 64

    def ram_blocks(self, dev: Device) -> float:
        return sum(_blocks(d, w, dev) for name, (d, w) in self.memories.items() if not self._distributed(name, dev))

    def lut_count(self, dev: Device) -> int:
        luts = self.logic + sum(n * a * b for a, b, n in self.multipliers.values() if _dsps(a, b, dev) == 0)
        for name, (d, w) in self.memories.items():
            if not self._distributed(name, dev):
                continue
            if dev.lutram_bits and name not in self.flipflop_memories:
                luts += math.ceil(d / dev.lutram_bits) * w / (1 if name in self.roms else 2)
            elif name in self.roms:
                luts += d * w / 16                       # a ROM in LUT4s
            else:
                luts += d * w / 2                        # flip-flops and read multiplexers
        if dev.lut_inputs == 6:
            luts = luts * LUT6_SCALE
        return int(math.ceil(luts))

    def ram_bits(self) -> int:
        return sum(d * w for d, w in self.memories.values())

    def needs(self, dev: Device) -> dict[str, float]:
        return {"LUT": self.lut_count(dev), "DSP": self.dsp_count(dev), "RAM": self.ram_blocks(dev)}

    def summary(self, dev: Device | None = None) -> str:
        lines = [f"P = {self.lanes} ({self.logic_lanes} in logic): "
                 f"{sum(n for *_, n in self.multipliers.values())} multipliers, "
                 f"{self.ram_bits():,} RAM bits in {len(self.memories)} memories, ~{self.logic:,} LUT4 of logic"]
        if dev:
            need = self.needs(dev)
            lines.append(f"{dev.name}: LUT {need['LUT']:,} / {dev.luts:,}, DSP {need['DSP']} / {dev.dsps}, "
                         f"block RAM {need['RAM']:g} / {dev.ram_blocks}")
        return "\n".join(lines)


def _dsps(a: int, b: int, dev: Device) -> int:
    if min(a, b) < 2 or a + b < dev.dsp_y_min:
        return 0
    return min(math.ceil(a / dev.dsp_a) * math.ceil(b / dev.dsp_b), math.ceil(b / dev.dsp_a) * math.ceil(a / dev.dsp_b))


def _blocks(depth: int, width: int, dev: Device) -> float:
    best = min(math.ceil(depth / d) * math.ceil(width / w) for d, w in dev.ram_configs)
    if dev.name == "xc7s15":       # a RAMB36 splits into two RAMB18 of half the depth
        best = min(best, 0.5 * min(math.ceil(depth / (d // 2)) * math.ceil(width / w) for d, w in dev.ram_configs))
    return best


def _shift_stages(plan: Plan, field: str, default=(0, 62)) -> int:
    lo, hi = plan.shift_range(field, default)
    return (hi - lo).bit_length()


# the device whose resources decide whether pair steps may read W from a bank (`design_plan`): the smallest the
# project builds for, where the bank's second copy can cost the fit
PAIR_BANK_DEVICE = "ice40-up5k"


def design_plan(program: IntProgram, lanes: int) -> Plan:
    """The plan `Accelerator(program, lanes)` is built from: `plan.make_plan`'s, except that pair steps whose W
    is a buffer (attention's, `plan.pairing`), which give their bank a second copy, stay single where the
    design would fit `PAIR_BANK_DEVICE` without them and not with them (this estimate, lanes in logic where
    its DSP blocks run short). A function of (program, lanes) alone, whatever the device it is built for."""
    plan = make_plan(program, lanes)
    if plan.pair_w_banks() and not _fits_pair_bank_device(plan):
        single = make_plan(program, lanes, bank_pairs=False)
        if _fits_pair_bank_device(single):
            return single
    return plan


def _fits_pair_bank_device(plan: Plan) -> bool:
    dev = DEVICES[PAIR_BANK_DEVICE]
    logic = lanes_in_logic(plan.program, plan.lanes, PAIR_BANK_DEVICE, plan)
    need = estimate(plan.program, plan.lanes, plan, logic).needs(dev)
    return need["LUT"] <= dev.luts and need["DSP"] <= dev.dsps and need["RAM"] <= dev.ram_blocks


def estimate(program: IntProgram, lanes: int, plan: Plan | None = None, logic_lanes: int = 0) -> Estimate:
    """The resources of `Accelerator(program, lanes, logic_lanes)`."""
    plan = plan or design_plan(program, lanes)
    P, E, A, DW, CW = plan.lanes, plan.elem_width, plan.acc_width, plan.drain_width, plan.code_width
    L = max(0, min(P, logic_lanes))
    est = Estimate(P, L)
    mul = est.multipliers
    XB, WB = plan.x_bits + 1, plan.w_bits + 1
    pairs = plan.pairs
    if pairs:      # a pair's packed operands (`accel.packed`) may be wider than the single ones
        mul["mac lanes"] = (max(XB, pairs.x_bits + pairs.stride + 1), max(WB, pairs.w_bits + pairs.stride + 1), P - L)
    else:
        mul["mac lanes"] = (XB, WB, P - L)
    mul["requantizer"] = (min(DW, DSP_BITS), 15, 1)
    steps = plan.steps
    res = plan.uses("residual")
    aff = plan.uses("affine")
    sm = plan.uses("softmax")
    ln = plan.uses("layernorm")
    if res:
        mul["residual source"] = (E, plan.res_m_width, 1)
        mul["residual new"] = (CW, plan.res_m_width, 1)
    if plan.share_mul:
        mul["affine and softmax normalize (shared)"] = (DSP_BITS, DSP_BITS, 1)
    else:
        if aff:
            mul["affine"] = (plan.aff_in_width, plan.aff_m_width, 1)
        if sm:
            mul["softmax normalize"] = (min(plan.exp_width, DSP_BITS - 1),
                                        min(recip_bits(plan.min_exp_sum), DSP_BITS - 1), 1)
    if plan.uses("track_sums"):
        mul["row sum of squares"] = (E, E, 1)
    if sm and any(r.softmax and r.sm_poly for r in steps):
        mul["softmax polynomial"] = (E, 20, 1)
        mul["softmax polynomial slope"] = (15, 16, 1)
    if ln:
        w = ln_widths(E, plan.max_cols, plan.eps_max)
        mul["layernorm x^2"] = (E, E, 1)
        mul["layernorm variance"] = (w["q"], 8, 1)
        mul["layernorm S^2"] = (w["s"], w["s"], 1)
        mul["layernorm D^2 (DQ - S^2)"] = (w["v"] - 2 * 8, w["d2"], 1)
        mul["layernorm D^2 x"] = (E, w["d2"], 1)
        mul["layernorm * inv"] = (w["t1"], 35, 1)
        mul["layernorm affine"] = (w["n"], plan.ln_g_width, 1)

    # memories: the buffer banks, ROMs, row statistics, the softmax's local row buffer
    for b in plan.banks:
        name = f"bank {b.index} ({', '.join(b.buffers)})"
        est.memories[name] = (b.depth, b.width)
        if b.logic:
            est.flipflop_memories.add(name)
    est.memories["weights"] = (len(plan.weight_words), plan.weight_width * P)
    est.roms.add("weights")
    for name, rom, width in (("biases", plan.bias_rom, plan.bias_width), ("lut", plan.lut_rom, plan.lut_width),
                             ("affine", plan.aff_rom, plan.aff_m_width + plan.aff_b_width),
                             ("softmax tables", plan.exp_rom, plan.exp_width),
                             ("layernorm g, b", plan.ln_rom, plan.ln_g_width + plan.ln_b_width)):
        if len(rom) > 1 or any(v not in (0, (0, 0)) for v in rom):
            est.memories[name] = (len(rom), width)
            est.roms.add(name)
    if plan.uses("track_max") and sm:
        est.memories["row maxima"] = (plan.stat_rows, E)
    if plan.uses("track_sums") and ln:
        est.memories["row sums"] = (plan.stat_rows, 2 * E + 2 * plan.max_cols.bit_length())
    for j in plan.pair_w_banks():         # a pair step's W bank: a second read port, a second copy of the memory
        b = plan.banks[j]
        name = f"bank {j} second read port"
        est.memories[name] = (b.depth, b.width)
        if b.logic:
            est.flipflop_memories.add(name)
    if sm:
        est.memories["softmax row buffer"] = (2 * (1 << max(1, (plan.max_cols - 1).bit_length())), plan.exp_width)

    # logic (LUT4): adders, shifters, multiplexers, counters
    AW = plan.addr_width
    banks = [b for b in plan.banks if not b.wide]
    w_banks = {r.w_bank for r in steps if r.linear and not r.w_from_rom}
    parts = est.parts
    parts["lanes"] = (2 * P * A                                        # accumulators, the drain's shift register
                      + len(banks) * E * max(1, P - 1) // 2 + P * WB * len(w_banks))   # lane and W multiplexers
    parts["logic lanes"] = L * BOOTH_LUTS * XB * WB                    # MAC lanes multiplied in logic
    if pairs:
        # pair steps: per block lane the operands' multiplexers and pre-adders and the borrow's adder (yosys:
        # 88 LUT4 more in the default model's four lanes at 4 bits), per logic lane two narrow Booth
        # products; the second X element's lane multiplexer and register; per W bank of a pair step the
        # second port's address adder and each W lane's pair multiplexer
        ma, mb, _ = mul["mac lanes"]
        parts["pairs"] = ((P - L) * (ma + mb) // 2 + L * 2 * BOOTH_LUTS * pairs.x_bits * pairs.w_bits
                          + E * max(1, P // 2) + len(plan.pair_w_banks()) * (AW + P * 2 * pairs.w_bits))
    low = max(0, DW - DSP_BITS)
    parts["drain"] = low * 17 + (DW + 16) * (2 + _shift_stages(plan, "requant_shift")) + 2 * CW     # requantizer
    if res:
        parts["drain"] += (CW + 18) * (3 + _shift_stages(plan, "res_shift"))
    if aff:
        parts["drain"] += (CW + 18) * (2 + _shift_stages(plan, "affine_shift"))
    parts["control"] = len(banks) * (3 * AW + 2 * P) + 14 * AW + 8 * plan.max_cols.bit_length() + 500
    if sm:
        poly = any(r.sm_poly for r in steps if r.softmax)
        parts["softmax"] = 250 + 6 * recip_bits(plan.min_exp_sum) + (300 if poly else 0)
    if ln:
        w = ln_widths(E, plan.max_cols, plan.eps_max)
        parts["layernorm"] = 3 * w["v"] + 2 * 36 + 7 * (w["n"] + plan.ln_g_width) + 600
    if plan.classes:
        # the output port's argmax tracker: the score comparator, the best score's and the class's load
        # enables, the class word's multiplexer (the output buffer's bits each), the class and the count
        ob, cb = plan.output.bits, plan.classes.bit_length()
        parts["argmax"] = 3 * ob + 4 * cb
    if plan.detect:
        # the output port's anomaly scorer: the error's magnitude, the score's adder and load enable, the
        # comparator with the threshold, the two extra words' multiplexers (the output buffer's bits each);
        # a smoothed score, the subtractor and the start multiplexer of s - (s >> decay)
        ob = plan.output.bits
        parts["scorer"] = 6 * ob + 2 * plan.detect[0].bit_length() + (2 * ob if plan.detect[2] else 0)
    parts["lanes"] *= LANE_SCALE
    for k in ("drain", "control", "softmax", "layernorm", "argmax", "scorer"):
        if k in parts:
            parts[k] *= BASE_SCALE
    logic = sum(parts.values())
    est.logic = int(logic)
    return est


def lanes_in_logic(program: IntProgram, lanes: int, device: str, plan: Plan | None = None) -> int:
    """How many MAC lanes `Accelerator(program, lanes, logic_lanes=...)` must multiply in logic for its
    multipliers to fit the device's DSP blocks (0 when they fit; `lanes` when even that is not enough)."""
    dev = DEVICES[device]
    plan = plan or design_plan(program, lanes)
    est = estimate(program, lanes, plan)
    a, b, _ = est.multipliers["mac lanes"]
    per_lane = _dsps(a, b, dev)
    over = est.dsp_count(dev) - dev.dsps
    if over <= 0 or per_lane == 0:
        return 0
    return min(lanes, math.ceil(over / per_lane))


def check_fit(program: IntProgram, lanes: int, device: str, logic_lanes: int | None = 0) -> Estimate:
    """Raise IntformerError if `Accelerator(program, lanes, logic_lanes)` does not fit `device`, naming the
    short resource and the largest lane count that would fit; return the estimate otherwise.

    logic_lanes: as given to `Accelerator` (default 0: every MAC lane on a DSP block, the Accelerator's
    default); None: as many MAC lanes in logic as the device's DSP blocks need (`lanes_in_logic`), for this
    lane count and for the suggestion: build `Accelerator(program, lanes, lanes_in_logic(...))` then. The
    UP5K takes P = 4 with the default, P = 8 with four lanes in logic (the default model at 8 bits)."""
    if device not in DEVICES:
        raise IntformerError(f"unknown device {device!r}: choose one of {', '.join(DEVICES)}")
    dev = DEVICES[device]
    limits = {"LUT": dev.luts, "DSP": dev.dsps, "RAM": dev.ram_blocks}

    def est_for(p):
        plan = design_plan(program, p)
        ll = lanes_in_logic(program, p, device, plan) if logic_lanes is None else logic_lanes
        return estimate(program, p, plan, ll)
    est = est_for(lanes)
    need = est.needs(dev)
    short = [k for k in limits if need[k] > limits[k]]
    if not short:
        return est
    best = None
    for p in range(lanes - 1, 0, -1):
        try:
            n = est_for(p).needs(dev)
        except IntformerError:          # a lane count the program's column slices do not allow
            continue
        if all(n[k] <= limits[k] for k in limits):
            best = p
            break
    names = {"LUT": "logic (LUTs)", "DSP": "multipliers (DSP blocks)", "RAM": "block RAM"}
    detail = "; ".join(f"{names[k]}: needs {need[k]:g}, has {limits[k]}" for k in short)
    hint = (f"the largest lane count that fits is {best} (--lanes {best})" if best else
            "no lane count fits: use fewer bits, a smaller model, or a larger device")
    raise IntformerError(f"P = {lanes} does not fit the {device}: {detail}; {hint}")


def largest_lanes(program: IntProgram, device: str, choices=(16, 8, 4, 2, 1)) -> int:
    """The largest lane count of `choices` that the estimate says fits `device` (every MAC lane on a DSP
    block), or 0 when none does."""
    for p in choices:
        try:
            check_fit(program, p, device)
            return p
        except IntformerError:
            continue
    return 0
