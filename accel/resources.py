"""What an accelerator build needs (multipliers, block RAM, logic), before synthesis, and whether it fits.

The estimate follows the structure of `accel.accelerator` from its plan: one multiplier per MAC lane plus the
few in the drain (requantizer, residual, affine) and in the row units; one memory per buffer and per ROM;
logic from the widths of adders, shifters and multiplexers. Multipliers with an operand of 4 bits or less
are counted as logic (that is where synthesis puts them). Memories go to block RAM in the cheapest of the
device's aspect ratios; tiny ones, shallow ones where the device has distributed RAM, and the step table
(read combinationally) go to distributed RAM or logic. The logic count is rough (within a factor of about 1.5 of what yosys reports): use it to choose
the lane count, and the synthesis flow for the real figure.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from model.errors import IntformerError
from model.program import IntProgram

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


DEVICES = {
    "ice40-up5k": Device("ice40-up5k", 5280, 4, 8, 16, 16, 30, ((256, 16), (512, 8), (1024, 4), (2048, 2)), 0),
    "xc7s15": Device("xc7s15", 8000, 6, 20, 25, 18, 10,
                     ((1024, 36), (2048, 18), (4096, 9), (8192, 4), (16384, 2), (32768, 1)), 64),
    "ecp5-25f": Device("ecp5-25f", 24000, 4, 28, 18, 18, 56,
                       ((512, 36), (1024, 18), (2048, 9), (4096, 4), (8192, 2), (16384, 1)), 32),
}
SMALL_MEMORY_BITS = 256           # up to this, a memory is distributed RAM or flip-flops, not a block
SHALLOW_DEPTH = 64                # up to this depth, distributed RAM (where the device has it) beats a block


@dataclass
class Estimate:
    lanes: int
    multipliers: dict[str, tuple[int, int, int]] = field(default_factory=dict)   # name -> (a, b, count)
    memories: dict[str, tuple[int, int]] = field(default_factory=dict)           # name -> (depth, width)
    logic: int = 0                # LUT4 equivalents, without memories and multipliers
    table_bits: int = 0           # the step table (distributed ROM)

    def dsp_count(self, dev: Device) -> int:
        return sum(n * _dsps(a, b, dev) for a, b, n in self.multipliers.values())

    @staticmethod
    def _distributed(depth: int, width: int, dev: Device) -> bool:
        return depth * width <= SMALL_MEMORY_BITS or (dev.lutram_bits > 0 and depth <= SHALLOW_DEPTH)

    def ram_blocks(self, dev: Device) -> float:
        return sum(_blocks(d, w, dev) for d, w in self.memories.values() if not self._distributed(d, w, dev))

    def lut_count(self, dev: Device) -> int:
        luts = self.logic + sum(n * a * b for a, b, n in self.multipliers.values() if min(a, b) <= 4)
        small = sum(d * w for d, w in self.memories.values() if self._distributed(d, w, dev))
        luts += small // dev.lutram_bits if dev.lutram_bits else small      # iCE40: flip-flops and muxes
        luts += self.table_bits // (dev.lutram_bits or 16)
        if dev.lut_inputs == 6:
            luts = luts * 0.6      # a LUT6 absorbs about 1.6 LUT4s
        return int(math.ceil(luts))

    def ram_bits(self) -> int:
        return sum(d * w for d, w in self.memories.values())

    def needs(self, dev: Device) -> dict[str, float]:
        return {"LUT": self.lut_count(dev), "DSP": self.dsp_count(dev), "RAM": self.ram_blocks(dev)}

    def summary(self, dev: Device | None = None) -> str:
        lines = [f"P = {self.lanes}: {sum(n for *_, n in self.multipliers.values())} multipliers, "
                 f"{self.ram_bits():,} RAM bits in {len(self.memories)} memories, ~{self.logic:,} LUT4 of logic"]
        if dev:
            need = self.needs(dev)
            lines.append(f"{dev.name}: LUT {need['LUT']:,} / {dev.luts:,}, DSP {need['DSP']} / {dev.dsps}, "
                         f"block RAM {need['RAM']:g} / {dev.ram_blocks}")
        return "\n".join(lines)


def _dsps(a: int, b: int, dev: Device) -> int:
    if min(a, b) <= 4:
        return 0
    return min(math.ceil(a / dev.dsp_a) * math.ceil(b / dev.dsp_b), math.ceil(b / dev.dsp_a) * math.ceil(a / dev.dsp_b))


def _blocks(depth: int, width: int, dev: Device) -> float:
    best = min(math.ceil(depth / d) * math.ceil(width / w) for d, w in dev.ram_configs)
    if dev.name == "xc7s15":       # a RAMB36 splits into two RAMB18 of half the depth
        best = min(best, 0.5 * min(math.ceil(depth / (d // 2)) * math.ceil(width / w) for d, w in dev.ram_configs))
    return best


def estimate(program: IntProgram, lanes: int, plan: Plan | None = None) -> Estimate:
    """The resources of `Accelerator(program, lanes)`."""
    plan = plan or make_plan(program, lanes)
    P, E, A, DW = plan.lanes, plan.elem_width, plan.acc_width, plan.drain_width
    est = Estimate(P)
    mul = est.multipliers
    mul["mac lanes"] = (plan.x_bits + 1, plan.w_bits + 1, P)
    mul["requantizer"] = (DW, 15, 1)
    steps = plan.steps
    if any(r.get("res") for r in steps):
        mul["residual"] = (E, 16, 2)
    if any(r.get("aff") for r in steps):
        mul["affine"] = (E, plan.aff_m_width, 1)
    if any(r.get("trk_sum") for r in steps):
        mul["row sum of squares"] = (E, E, 1)
    sm = any(r["sm"] for r in steps)
    ln = any(r["ln"] for r in steps)
    if sm:
        mul["softmax normalize"] = (plan.exp_width, recip_bits(plan.min_exp_sum), 1)
        if any(r["sm"] and r["sm_poly"] for r in steps):
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

    # memories: buffers, ROMs, row statistics, the softmax's local row buffer
    for name, lay in plan.layouts.items():
        est.memories[f"buffer {name}"] = (lay.depth, lay.bits * P)
    est.memories["weights"] = (len(plan.weight_words), plan.weight_width * P)
    for name, rom, width in (("biases", plan.bias_rom, plan.bias_width), ("lut", plan.lut_rom, plan.lut_width),
                             ("affine", plan.aff_rom, plan.aff_m_width + plan.aff_b_width),
                             ("softmax tables", plan.exp_rom, plan.exp_width),
                             ("layernorm g, b", plan.ln_rom, plan.ln_g_width + plan.ln_b_width)):
        if len(rom) > 1 or any(rom):
            est.memories[name] = (len(rom), width)
    if any(r.get("trk_max") or r.get("trk_sum") for r in steps):
        est.memories["row statistics"] = (plan.stat_rows, E + (2 * E + 2 * plan.max_cols.bit_length() if ln else 0))
    if sm:
        est.memories["softmax row buffer"] = (2 * (1 << max(1, (plan.max_cols - 1).bit_length())), plan.exp_width)
    est.table_bits = len(steps) * sum(w for w, _ in plan.field_widths.values())

    # logic (LUT4): adders, shifters, multiplexers, counters
    AW = plan.addr_width
    n_buf = len(plan.layouts)
    logic = P * 2 * A                                   # accumulators and the drain's shift register
    logic += 7 * (DW + 16) + 2 * 7 * (E + 18)           # three round-shift-clamp stages (log shifters)
    logic += n_buf * (3 * AW + 2 * P * plan.layouts["x"].bits) + 3 * P * E * max(1, n_buf // 2)   # port muxes
    logic += 12 * AW * 4 + 300                          # address walkers, issue sequencer, top control
    if sm:
        logic += 400 + 6 * recip_bits(plan.min_exp_sum) + (300 if "sm_poly" in plan.field_widths else 0)
    if ln:
        w = ln_widths(E, plan.max_cols, plan.eps_max)
        logic += 3 * w["v"] + 2 * 36 + 7 * (w["n"] + plan.ln_g_width) + 600
    est.logic = int(logic)
    return est


def check_fit(program: IntProgram, lanes: int, device: str) -> Estimate:
    """Raise IntformerError if `Accelerator(program, lanes)` does not fit `device`, naming the short
    resource and the largest lane count that would fit; return the estimate otherwise."""
    if device not in DEVICES:
        raise IntformerError(f"unknown device {device!r}: choose one of {', '.join(DEVICES)}")
    dev = DEVICES[device]
    limits = {"LUT": dev.luts, "DSP": dev.dsps, "RAM": dev.ram_blocks}
    est = estimate(program, lanes)
    need = est.needs(dev)
    short = [k for k in limits if need[k] > limits[k]]
    if not short:
        return est
    best = None
    for p in range(lanes - 1, 0, -1):
        n = estimate(program, p).needs(dev)
        if all(n[k] <= limits[k] for k in limits):
            best = p
            break
    names = {"LUT": "logic (LUTs)", "DSP": "multipliers (DSP blocks)", "RAM": "block RAM"}
    detail = "; ".join(f"{names[k]}: needs {need[k]:g}, has {limits[k]}" for k in short)
    hint = (f"the largest lane count that fits is {best} (--lanes {best})" if best else
            "no lane count fits: use fewer bits, a smaller model, or a larger device")
    raise IntformerError(f"P = {lanes} does not fit the {device}: {detail}; {hint}")
