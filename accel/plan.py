"""From an `IntProgram` to what the accelerator is built from: memory layouts, ROM contents, the step table.

Everything here is plain Python run at build time. The hardware (`accel.accelerator`) only instantiates what
the plan says, and the simulator wrapper (`accel.simulate`) uses the same layouts to read buffers back.

Buffer layout. Each program buffer lives in P-wide words; a word holds P codes of one row, so the MAC
array reads P weights of a row at once when a buffer is the W operand (K^T, V, the pooled buffer).
A buffer whose columns are read as W from a column offset (a head's slice of V) is cut into chunks of
`chunk` columns, each chunk starting on a word boundary (padded to whole words); chunk is the greatest
common divisor of the row width and every W slice's offset and width, so that each slice starts on a word.
Element (r, c) then lies at word r * wpr + (c // chunk) * wpc + (c % chunk) // P, lane (c % chunk) % P.
Without W slices, chunk = cols: plain row-major P-wide rows.

Banks. Buffers share memories ("banks", one read and one write port each): two buffers may share one when
no step reads both or writes both (`assign_banks` colours the conflict graph of the step table's read and
write roles, packing for the fewest 4-kbit block RAMs). A buffer starts at word `base` of its bank; the
step table names banks and carries start addresses with the base added. Codes narrower than the bank's
lanes are stored as lane-wide two's complement (an unsigned code of the full lane width is read back
zero-extended: the step table says so where a bank holds both kinds). The default model at P = 8 needs
three banks of 64-bit words (12 iCE40 block RAMs) where one memory per buffer took 44.

Step table. One entry ("macro step") per linear step, softmax or LayerNorm, except that a row step that
directly follows the linear step producing its whole source buffer is fused with it: the row unit starts
with the linear step and follows it row by row, using the row maxima or sums that the drain collected.
Each entry is a typed `accel.steps.StepRecord` (its fields are documented there); the step table's ROM
layout is generated from the records (`Plan.step_layout`, `Plan.step_rom`).

A classifier's last step, an `ArgmaxStep`, is no macro step: the output buffer's last column (the class)
is computed by the output port as the scores leave (`accel.argmax.ArgmaxTracker`); the plan records its
class count (`Plan.classes`) and nothing else of it. A detector's last step, a `DetectStep`, likewise: the
output port's anomaly scorer (`accel.anomaly.AnomalyScorer`) computes the score and the flag, the output
buffer's last two words; the plan records (C, threshold, score decay) (`Plan.detect`).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np
from amaranth.lib import data

from intformer.model import intops
from intformer.model.errors import IntformerError
from intformer.model.program import (FINAL_STEPS, ONES, ArgmaxStep, DetectStep, IntProgram, LayerNormStep,
                                     LinearStep, SoftmaxStep)

from .arith import DSP_BITS, ext_width
from .packed import operand_bits, pair_stride
from .steps import StepRecord, fill_unused, rom_fields, step_layout

# read roles of a buffer memory in a step, and write roles
R_NONE, R_X, R_W, R_RES, R_SM, R_LN = range(6)
W_NONE, W_DRAIN, W_SM, W_LN = range(4)


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def bits_for(values) -> int:
    """Width of a register for these integers: unsigned if none is negative, else two's complement."""
    values = [int(v) for v in values] or [0]
    lo, hi = min(values), max(values)
    return intops.bits_signed(lo, hi) if lo < 0 else intops.bits_unsigned(hi)


@dataclass
class BufferLayout:
    name: str
    index: int
    rows: int
    cols: int
    bits: int
    signed: bool
    lanes: int
    chunk: int
    wide: bool = False            # the output buffer (raw accumulators or 16-bit codes): read only by the output port
    bank: int = 0                 # the memory (bank) that holds the buffer, from word `base` on
    base: int = 0
    lane_bits: int = 0            # bits of one lane in the bank's words (>= bits: codes stored sign- or zero-extended)
    stored_bits: int = 0          # bits the bank holds of each code, when fewer than `bits` (0: bits): a
                                  # detector's output buffer stores only its errors; the score and flag
                                  # words, as wide as `bits`, come from the output port

    @property
    def wpc(self) -> int:
        return ceil_div(self.chunk, self.lanes)

    @property
    def wpr(self) -> int:
        return (self.cols // self.chunk) * self.wpc

    @property
    def depth(self) -> int:
        return max(1, self.rows * self.wpr)

    @property
    def standard(self) -> bool:
        """Plain row-major P-wide rows (what the row units assume)."""
        return self.chunk == self.cols or self.chunk % self.lanes == 0

    def col_pos(self, c: int) -> tuple[int, int, int]:
        """(word within the row, lane, column within its chunk) of column c."""
        within = c % self.chunk
        return (c // self.chunk) * self.wpc + within // self.lanes, within % self.lanes, within

    def word_lane(self, r: int, c: int) -> tuple[int, int]:
        w, lane, _ = self.col_pos(c)
        return r * self.wpr + w, lane

    def unpack(self, words) -> np.ndarray:
        """Words of its bank (ints) -> the buffer as a (rows, cols) int64 matrix."""
        out = np.zeros((self.rows, self.cols), dtype=np.int64)
        lb = self.lane_bits or self.bits
        bits = min(self.bits, lb)
        mask = (1 << bits) - 1
        for r in range(self.rows):
            for c in range(self.cols):
                w, lane = self.word_lane(r, c)
                v = (int(words[self.base + w]) >> (lane * lb)) & mask
                if self.signed and v >> (bits - 1):
                    v -= 1 << bits
                out[r, c] = v
        return out


def pack_word(values, width: int) -> int:
    word = 0
    for lane, v in enumerate(values):
        word |= (int(v) & ((1 << width) - 1)) << (lane * width)
    return word


# The packing unit of the bank assignment: a 4-kbit block RAM in its shapes (the iCE40's SB_RAM40_4K; a Xilinx
# RAMB18 has the same shapes at four times the depth, so what packs well into one packs well into the other).
BLOCK_SHAPES = ((256, 16), (512, 8), (1024, 4), (2048, 2))
LOGIC_BITS = 256        # a memory of up to this many bits is built from flip-flops (yosys: ram_style "logic")
BANK_COST = 0.25        # the port multiplexers of one more bank, in block RAMs (a tie breaker of the packing)


def block_count(depth: int, width: int) -> int:
    """4-kbit block RAMs for a depth x width memory in the cheapest shape."""
    return min(ceil_div(depth, d) * ceil_div(width, w) for d, w in BLOCK_SHAPES)


@dataclass
class Bank:
    """One buffer memory: a read port and a write port, P lanes of `lane_bits` per word, holding the buffers
    `buffers` one after another (each from its layout's `base`)."""
    index: int
    buffers: list[str]
    lanes: int
    lane_bits: int
    depth: int
    wide: bool = False
    signed_read: int | None = None      # 1/0: every read sign-/zero-extends a lane; None: the step table says

    @property
    def name(self) -> str:
        return f"bank{self.index}"

    @property
    def width(self) -> int:
        return self.lane_bits * self.lanes

    @property
    def logic(self) -> bool:
        """Small enough for flip-flops (no block RAM)."""
        return self.depth * self.width <= LOGIC_BITS


def _bank_cost(layouts, members: list[str], lanes: int) -> float:
    depth = sum(layouts[n].depth for n in members)
    width = max(layouts[n].bits for n in members) * lanes
    return 0.05 if depth * width <= LOGIC_BITS else block_count(depth, width)


def assign_banks(layouts: dict[str, BufferLayout], reads: list[set], writes: list[set], lanes: int,
                 tries: int = 64, dual_read: frozenset = frozenset()) -> list[list[str]]:
    """Group the buffers into memories (banks) of one read and one write port.

    Two buffers may share a bank when no (fused) step reads both or writes both (each step's read and write
    roles: `reads`, `writes`, one set of buffer names per step); a wide buffer (raw output words) keeps a
    bank of its own. Among the groupings found by greedy packing in several orders, each improved by moving
    single buffers, the one with the fewest 4-kbit block RAMs (then the fewest banks) wins: fewer, fuller
    block RAMs and fewer port multiplexers. A bank holding a `dual_read` buffer (a pair step's W: read at
    two rows at once) has a second read port, which block RAMs make by a second copy: it costs twice.
    Deterministic.
    """
    names = [n for n, lay in layouts.items() if not lay.wide]
    conflict = {n: set() for n in layouts}
    for group in list(reads) + list(writes):
        for a in group:
            conflict[a] |= set(group) - {a}

    def cost(m):
        copies = 2 if dual_read & set(m) else 1
        return copies * _bank_cost(layouts, m, lanes) if m else 0.0

    def total(banks):
        return sum(cost(b) + BANK_COST for b in banks if b)

    def fits(n, bank):
        return not (conflict[n] & set(bank))

    def pack(order):
        banks: list[list[str]] = []
        for n in order:
            best, best_delta = None, cost([n]) + BANK_COST
            for b in banks:
                if fits(n, b):
                    delta = cost(b + [n]) - cost(b)
                    if delta < best_delta - 1e-9:
                        best, best_delta = b, delta
            if best is None:
                banks.append([n])
            else:
                best.append(n)
        improved = True
        while improved:                      # move one buffer to another (or a new) bank while that helps
            improved = False
            for b in banks:
                for n in list(b):
                    rest = [x for x in b if x != n]
                    here = cost(b) + (0 if rest else BANK_COST)
                    for c in banks + [[]]:
                        if c is b or not fits(n, c):
                            continue
                        gain = here - (cost(rest) + cost(c + [n]) - cost(c) + (BANK_COST if not c else 0))
                        if gain > 1e-9:
                            b.remove(n)
                            if c:
                                c.append(n)
                            else:
                                banks.append([n])
                            improved = True
                            break
                    if improved:
                        break
                if improved:
                    break
            banks = [b for b in banks if b]
        return banks

    size = {n: layouts[n].depth * layouts[n].bits for n in names}
    orders = [sorted(names, key=lambda n: -size[n]), list(names), list(reversed(names))]
    rng = np.random.default_rng(0)
    orders += [list(rng.permutation(names)) for _ in range(tries)]
    best = min((pack(o) for o in orders), key=lambda banks: (total(banks), len(banks)))
    order = {n: i for i, n in enumerate(layouts)}
    best = sorted((sorted(b, key=order.get) for b in best), key=lambda b: order[b[0]])
    return best + [[n] for n, lay in layouts.items() if lay.wide]


@dataclass
class Plan:
    program: IntProgram
    lanes: int
    layouts: dict[str, BufferLayout]
    banks: list[Bank]
    elem_width: int                     # common signed width of a code read from any code buffer
    code_width: int                     # signed width of the codes in the drain (up to 16: the skip path)
    x_bits: int                         # MAC operand widths (operands are signed x_bits + 1, w_bits + 1)
    w_bits: int
    k_max: int
    acc_width: int                      # MAC lanes
    drain_width: int                    # accumulator + bias, and raw output words
    weight_width: int
    weight_words: list[int]
    bias_width: int
    bias_rom: list[int]
    lut_width: int
    lut_rom: list[int]
    aff_in_width: int                   # signed width of the affine's input (its steps' value range)
    aff_m_width: int
    aff_b_width: int
    aff_rom: list[tuple[int, int]]
    exp_width: int
    exp_rom: list[int]
    min_exp_sum: int
    ln_g_width: int
    ln_b_width: int
    ln_rom: list[tuple[int, int]]
    eps_max: int
    steps: list[StepRecord]             # the step table: one typed record per macro step (`accel.steps`)
    step_names: list[list[str]]         # the program steps each macro step runs
    max_rows: int
    max_cols: int
    stat_rows: int                      # depth of the row statistics memories
    classes: int = 0                    # a classifier's C: the output port sends the class as word C; 0: none
    detect: tuple[int, int, int] | None = None   # a detector's (C, threshold, decay): words C, C+1 are its score
                                                 # and flag
    pairs: "Pairing | None" = None      # the pair steps' packing (`accel.packed`), None where no step pairs

    @property
    def addr_width(self) -> int:
        return max(1, max(b.depth for b in self.banks) - 1).bit_length()

    def step_layout(self) -> data.StructLayout:
        """The layout of one word of the step table's ROM, generated from the records' fields."""
        return step_layout(self.steps)

    def step_rom(self) -> list[dict[str, int]]:
        """The step table's ROM contents, one word (field name -> integer) per macro step."""
        return [rom_fields(rec) for rec in self.steps]

    def pair_w_banks(self) -> list[int]:
        """The banks that pair steps read W from, two rows at once (each has a second read port)."""
        return sorted({self.layouts[name].bank for name in self.pairs.w_buffers}) if self.pairs else []

    def uses(self, flag: str) -> bool:
        """Some step sets the 0/1 field `flag` (a `StepRecord` field name)."""
        return any(getattr(rec, flag) for rec in self.steps)

    def shift_range(self, field: str, default: tuple[int, int] = (0, 62)) -> tuple[int, int]:
        """(min, max) of a shift (or other) field over the steps that use it (`field` names the field; the
        flag that marks a step using it is the unit's: requant_shift -> requant)."""
        flag = {"requant_shift": "requant", "res_shift": "residual", "affine_shift": "affine",
                "ln_shift": "layernorm", "sm_out_bits": "softmax"}[field]
        vals = [getattr(r, field) for r in self.steps if getattr(r, flag)]
        return (min(vals), max(vals)) if vals else default

    @property
    def res_m_width(self) -> int:
        """Signed width of the residual multipliers m_src and m_new: 16, or what a program's constants need
        (a ratio of scales beyond 2^14 has no 15-bit multiplier with a shift >= 1, `model.qat.shift_for`:
        e.g. 2-bit input codes skipped into a 16-bit head)."""
        vals = [v for r in self.steps if r.residual for v in (r.res_mul_src, r.res_mul_new)] + [0]
        return max(16, intops.bits_signed(min(vals), max(vals)))

    @property
    def share_mul(self) -> bool:
        """The affine (folded BatchNorm) and the softmax normalization share one multiplier block: there are
        both, no step uses both at once, and both products fit a 16 x 16 block."""
        return (self.uses("softmax") and self.uses("affine")
                and not any(r.softmax and r.affine for r in self.steps)
                and self.aff_in_width <= 16 and self.aff_m_width <= 16)

    @property
    def output(self) -> BufferLayout:
        return self.layouts[self.program.output]


def _chunks(program: IntProgram, lanes: int) -> dict[str, int]:
    chunk = {name: b.cols for name, b in program.buffers.items()}
    for s in program.steps:
        if isinstance(s, LinearStep) and s.w in program.buffers:
            chunk[s.w] = math.gcd(chunk[s.w], s.w_col, s.cols)
    return chunk


def _classes(program: IntProgram) -> int:
    """A classifier's class count C (its program ends in an `ArgmaxStep`), else 0. The output port computes
    the class as the output buffer's last word, after the C scores: so the step must take the output
    buffer's words 0..C-1 and write its word C, its last, and the class must fit the buffer's words."""
    last = program.steps[-1] if program.steps else None
    if not isinstance(last, ArgmaxStep):
        return 0
    out = program.buffers[program.output]
    if not (last.src == last.out == program.output and last.out_col == last.cols == out.cols - 1):
        raise IntformerError(f"step {last.name}: the accelerator computes the class in its output port: the "
                             f"argmax must take the output buffer's first {out.cols - 1} words and write its last")
    if intops.bits_signed(0, last.cols - 1) > out.bits or not out.signed:
        raise IntformerError(f"step {last.name}: class {last.cols - 1} does not fit the output buffer's "
                             f"{out.bits}-bit{'' if out.signed else ' unsigned'} words")
    if any(isinstance(s, ArgmaxStep) for s in program.steps[:-1]):
        raise IntformerError("an argmax must be the program's last step")
    return last.cols


def _detect(program: IntProgram) -> tuple[int, int, int] | None:
    """A detector's (C, threshold, score decay) (its program ends in a `DetectStep`), else None. The output port computes
    the score and the flag as the output buffer's last two words, after the C errors."""
    last = program.steps[-1] if program.steps else None
    if any(isinstance(s, DetectStep) for s in program.steps[:-1]):
        raise IntformerError("a detector's score must be the program's last step")
    if not isinstance(last, DetectStep):
        return None
    out = program.buffers[program.output]
    if not (last.src == last.out == program.output and last.out_col == last.cols == out.cols - 2):
        raise IntformerError(f"step {last.name}: the accelerator computes the score in its output port: it must "
                             f"take the output buffer's first {out.cols - 2} words and write its last two")
    if not (out.signed and 0 <= last.threshold < 1 << (out.bits - 1)):
        raise IntformerError(f"step {last.name}: threshold {last.threshold} does not fit the output buffer's "
                             f"{out.bits}-bit words")
    if not 0 <= last.decay < out.bits:
        raise IntformerError(f"step {last.name}: score decay {last.decay} outside 0..{out.bits - 1}")
    return last.cols, last.threshold, last.decay


def _macro_program(program: IntProgram) -> IntProgram:
    """The program without its final `ArgmaxStep` or `DetectStep` (the output port's), for the step table."""
    if program.steps and isinstance(program.steps[-1], FINAL_STEPS):
        return dataclasses.replace(program, steps=list(program.steps[:-1]))
    return program


def _check(program: IntProgram) -> None:
    names = set(program.buffers)
    if "x" not in names or program.output not in names:
        raise IntformerError("the program has no input buffer 'x' or no output buffer: re-export the model")
    if not program.steps:
        raise IntformerError("the program has no steps")
    for s in program.steps:
        if isinstance(s, FINAL_STEPS):
            continue
        if isinstance(s, LinearStep):
            ins = {s.x, s.w} | ({s.residual.src} if s.residual else set())
            if s.out in ins:
                raise IntformerError(f"step {s.name}: its output buffer {s.out} is also one of its inputs")
            if s.x != ONES and s.x == s.w:
                raise IntformerError(f"step {s.name}: X and W are the same buffer (one read port per buffer)")
            if s.residual and s.residual.src in (s.x, s.w):
                raise IntformerError(f"step {s.name}: the residual source is also an operand")
            if s.lut and s.requant is None:
                raise IntformerError(f"step {s.name}: a look-up table needs a requantization")
        elif s.src == s.out:
            raise IntformerError(f"step {s.name}: the row step works in place; the accelerator needs two buffers")


def make_plan(program: IntProgram, lanes: int, bank_pairs: bool = True) -> Plan:
    """Lay out the buffers and ROMs of `program` for P = `lanes` and build the step table (`bank_pairs`: pair
    steps may read W from a bank; the accelerator's plan, `resources.design_plan`, decides it per device fit).

    The phases, each a function of its own: the buffer layouts (`_buffer_layouts`), the steps that issue two
    k per cycle (`pairing`), the datapath widths (`_datapath_widths`), the step records and the ROM contents
    they address (`_step_records`), each buffer's role in each step (`_step_roles`), the buffers' placement
    in banks (`_place_banks`), and the step table's addresses rebased onto the banks (`_rebase_steps`).
    """
    if lanes < 1:
        raise IntformerError(f"lanes must be at least 1, got {lanes}")
    _check(program)
    classes, detect = _classes(program), _detect(program)
    P = lanes
    macro = _macro_program(program)
    layouts = _buffer_layouts(macro, P)
    if detect:
        # the bank holds the errors only (the clamp of the step that writes them): the score is the port's
        from intformer.model.program import _error_range
        lay, last = layouts[program.output], program.steps[-1]
        lay.stored_bits = min(lay.bits, intops.bits_signed(*_error_range(program, last,
                                                                         program.buffers[program.output])))
    pairs = pairing(macro, layouts, P, bank_w=bank_pairs)
    widths = _datapath_widths(macro, layouts, pairs)
    steps, names, roms = _step_records(macro, layouts, P, widths.weight_width, pairs)
    reads, writes = _step_roles(steps, names, layouts)
    banks = _place_banks(layouts, reads, writes, P, pairs)
    steps = fill_unused(_rebase_steps(steps, reads, writes, layouts, banks))
    return Plan(
        program=program, lanes=P, layouts=layouts, banks=banks, elem_width=widths.elem_width,
        code_width=widths.code_width, x_bits=widths.x_bits, w_bits=widths.w_bits,
        k_max=widths.k_max, acc_width=widths.acc_width, drain_width=widths.drain_width,
        weight_width=widths.weight_width, weight_words=roms.weight_words or [0],
        bias_width=_rom_width(roms.bias), bias_rom=roms.bias or [0],
        lut_width=_rom_width(roms.lut), lut_rom=roms.lut or [0],
        aff_in_width=widths.aff_in_width, aff_m_width=max(16, _rom_width([m for m, _ in roms.affine])),
        aff_b_width=_rom_width([b for _, b in roms.affine]),
        aff_rom=roms.affine or [(0, 0)],
        exp_width=max(intops.EXP_BITS + 1, _rom_width(roms.exp, signed=False)), exp_rom=roms.exp or [0],
        min_exp_sum=roms.min_exp_sum,
        ln_g_width=_rom_width([g for g, _ in roms.layernorm]), ln_b_width=_rom_width([b for _, b in roms.layernorm]),
        ln_rom=roms.layernorm or [(0, 0)],
        eps_max=max([1] + [s.eps for s in program.steps if isinstance(s, LayerNormStep)]),
        steps=steps, step_names=names,
        max_rows=max(b.rows for b in program.buffers.values()),
        max_cols=max(b.cols for b in program.buffers.values()),
        stat_rows=roms.stat_rows, classes=classes, detect=detect, pairs=pairs,
    )


def _rom_width(vals, signed: bool = True) -> int:
    """Bits of a ROM word that holds these values (two's complement, or unsigned)."""
    vals = [int(v) for v in vals] or [0]
    return intops.bits_signed(min(vals), max(vals)) if signed else intops.bits_unsigned(max(vals))


# ------------------------------------------------------------------------------------- buffer layout

def _wide_buffers(program: IntProgram) -> set[str]:
    """The buffers of raw accumulators (a linear step without requantization) and the output buffer."""
    return {s.out for s in program.steps if isinstance(s, LinearStep) and s.requant is None} | {program.output}


def _buffer_layouts(program: IntProgram, P: int) -> dict[str, BufferLayout]:
    """Each buffer's layout in P-wide words (its chunk from its W slices), checked against what the row units
    and the output port can read."""
    wide = _wide_buffers(program)
    chunks = _chunks(program, P)
    layouts = {}
    for i, (name, b) in enumerate(program.buffers.items()):
        # a wide buffer (raw output words, read only by the output port) needs no more lanes than a chunk
        lanes = min(P, chunks[name]) if name in wide else P
        layouts[name] = BufferLayout(name, i, b.rows, b.cols, b.bits, b.signed, lanes, chunks[name], name in wide)
    for s in program.steps:
        used = (s.x, s.w) if isinstance(s, LinearStep) else (s.src, s.out)
        for name in used:
            if name in wide and name != ONES and not (isinstance(s, LinearStep) and name == s.out):
                raise IntformerError(f"step {s.name} reads raw accumulator buffer {name}: not supported")
        if not isinstance(s, LinearStep):
            for name in (s.src, s.out):
                if not layouts[name].standard:
                    raise IntformerError(f"buffer {name} is read in column slices and by a row step ({s.name}); "
                                         f"choose lanes dividing {layouts[name].chunk}")
    return layouts


# ------------------------------------------------------------------------------------------ pair steps

@dataclass(frozen=True)
class Pairing:
    """The packing of the pair steps (`accel.packed`): each MAC lane multiplies A = x_k + x_k+1 2^S by
    B = w_k+1 + w_k 2^S and accumulates the middle S bits, x_k w_k + x_k+1 w_k+1."""
    steps: frozenset                     # names of the linear steps that issue two k per cycle
    stride: int                          # S
    x_range: tuple[int, int]             # every X code of a pair step (the union of their buffers' ranges)
    w_range: tuple[int, int]             # every weight of a pair step
    w_buffers: frozenset = frozenset()   # buffers a pair step reads W from (rows k, k + 1: two read ports)

    @property
    def x_bits(self) -> int:
        """The signed width of x_range."""
        return operand_bits(self.x_range)

    @property
    def w_bits(self) -> int:
        """The signed width of w_range; a ROM lane (and a pair step's W lane) holds two."""
        return operand_bits(self.w_range)


def pairing(program: IntProgram, layouts: dict[str, BufferLayout], P: int, port_bits: int = DSP_BITS,
            bank_w: bool = True):
    """The linear steps that can issue two k per cycle, and their common packing; None where none can.

    A step pairs when its X codes and weights pack into `port_bits`-bit multiplier ports (`packed.pair_stride`
    over its X buffer's code range and its weights' range: codes of up to 4 bits on the UP5K's 16 x 16
    blocks), k is even, and X elements k, k + 1 always share a word (P even, the X layout's chunk even, the
    step's first column at an even lane). Its weights come from the ROM (their range: the weights) or from a
    buffer (attention's K^T and V, `w_buffers`; the range: every code of the buffer), whose bank is read at
    rows k and k + 1 at once through a second read port. All pair steps share one stride, that of the union
    of their ranges (no step pairs if the union does not fit). `bank_w=False`: only steps with ROM weights."""
    if P % 2:
        return None
    chosen, w_buffers, x_lo, x_hi, w_lo, w_hi = [], set(), 0, 0, 0, 0
    for s in program.steps:
        if not (isinstance(s, LinearStep) and s.x != ONES and s.k_len % 2 == 0):
            continue
        lay = layouts[s.x]
        _, lane, within = lay.col_pos(s.x_col)
        if lay.chunk % 2 or lane % 2 or within % 2:
            continue
        b = program.buffers[s.x]
        xr = intops.code_range(b.bits, b.signed)
        if s.w in program.tensors:
            w = program.tensors[s.w][s.w_row:s.w_row + s.k_len, s.w_col:s.w_col + s.cols]
            wr = (min(0, int(w.min())), max(0, int(w.max())))
        elif bank_w and not layouts[s.w].wide:
            wb = program.buffers[s.w]
            wr = intops.code_range(wb.bits, wb.signed)
        else:
            continue
        if pair_stride(xr, wr, port_bits) is None:
            continue
        chosen.append(s.name)
        if s.w not in program.tensors:
            w_buffers.add(s.w)
        x_lo, x_hi, w_lo, w_hi = min(x_lo, xr[0]), max(x_hi, xr[1]), min(w_lo, wr[0]), max(w_hi, wr[1])
    stride = pair_stride((x_lo, x_hi), (w_lo, w_hi), port_bits) if chosen else None
    if stride is None:
        return None
    return Pairing(frozenset(chosen), stride, (x_lo, x_hi), (w_lo, w_hi), frozenset(w_buffers))


# ----------------------------------------------------------------------------------- datapath widths

@dataclass(frozen=True)
class DatapathWidths:
    """The widths of the MAC array and the drain, from the program's buffers, weights and constants."""
    elem_width: int         # common signed width of a code read from any code buffer
    x_bits: int             # MAC operand widths (operands are signed x_bits + 1, w_bits + 1)
    w_bits: int
    weight_width: int       # bits of one weight in the weight ROM
    k_max: int              # the longest reduction
    acc_width: int          # MAC lanes
    code_width: int         # signed width of the codes in the drain
    aff_in_width: int       # signed width of the affine's input
    drain_width: int        # accumulator + bias, and raw output words


def _datapath_widths(program: IntProgram, layouts: dict[str, BufferLayout], pairs=None) -> DatapathWidths:
    """MAC operand widths (signed: unsigned codes gain a bit) and the accumulator: the exact worst case of each
    step over every code its operand buffers can hold and the weights and biases it has; the drain's codes.
    With pair steps, a weight ROM lane holds a pair of their weights, and the W operand carries it whole."""
    linear = [s for s in program.steps if isinstance(s, LinearStep)]
    codes = [lay for lay in layouts.values() if not lay.wide]
    elem_width = max([ext_width(lay.bits, lay.signed) for lay in codes] + [2])
    x_bits = max([1] + [ext_width(program.buffers[s.x].bits, program.buffers[s.x].signed) - 1
                        for s in linear if s.x != ONES])
    w_vals = [program.tensors[s.w][s.w_row:s.w_row + s.k_len, s.w_col:s.w_col + s.cols]
              for s in linear if s.w in program.tensors]
    rom_bits = max([2] + [intops.bits_signed(int(w.min()), int(w.max())) for w in w_vals if w.size])
    if pairs:
        rom_bits = max(rom_bits, 2 * pairs.w_bits)
    w_bits = max([rom_bits - 1] + [ext_width(program.buffers[s.w].bits, program.buffers[s.w].signed) - 1
                                   for s in linear if s.w in program.buffers])
    k_max = max([1] + [s.k_len for s in linear])
    ranges = [_acc_range(s, program) for s in linear]
    acc_w = intops.bits_signed(min([-1] + [r[0] for r, _ in ranges]), max([0] + [r[1] for r, _ in ranges]))
    lo, hi = min([-1] + [r[0] for _, r in ranges]), max([0] + [r[1] for _, r in ranges])
    code_width = _code_width(program, linear, elem_width)
    drain_width = max(acc_w, intops.bits_signed(lo, hi), code_width,
                      max([lay.bits for lay in layouts.values() if lay.wide] + [1]))
    return DatapathWidths(elem_width=elem_width, x_bits=x_bits, w_bits=w_bits, weight_width=rom_bits, k_max=k_max,
                          acc_width=acc_w, code_width=code_width,
                          aff_in_width=_affine_in_width(program, linear, code_width), drain_width=drain_width)


def _table_width(program: IntProgram, name: str) -> int:
    t = program.tensors[name]
    return intops.bits_signed(int(t.min()), int(t.max()))


def _code_width(program: IntProgram, linear: list[LinearStep], elem_width: int) -> int:
    """Codes in the drain: every requantization, table, residual and affine range (the forecast head's skip
    path requantizes to 16-bit codes), and every buffer's codes."""
    bounds = [elem_width]
    for s in linear:
        for q in (s.requant, s.residual, s.affine):
            if q is not None:
                bounds.append(intops.bits_signed(q.lo, q.hi))
        if s.lut:
            bounds.append(_table_width(program, s.lut))
    return max(bounds)


def _affine_in_width(program: IntProgram, linear: list[LinearStep], code_width: int) -> int:
    """What reaches the per-channel affine: the residual's, the table's or the requantizer's range."""
    aff_in = [2]
    for s in linear:
        if s.affine is None:
            continue
        if s.residual is not None:
            aff_in.append(intops.bits_signed(s.residual.lo, s.residual.hi))
        elif s.lut:
            aff_in.append(_table_width(program, s.lut))
        elif s.requant is not None:
            aff_in.append(intops.bits_signed(s.requant.lo, s.requant.hi))
        else:
            aff_in.append(code_width)
    return min(max(aff_in), code_width)


# -------------------------------------------------------------------------------------- step records

@dataclass
class RomContents:
    """What the step records address, filled while they are built: weights P-wide, the rest one value per
    word; and the depth of the row statistics and the least exponential sum the softmax tables give."""
    weight_words: list[int] = field(default_factory=list)
    bias: list[int] = field(default_factory=list)
    lut: list[int] = field(default_factory=list)
    affine: list[tuple[int, int]] = field(default_factory=list)
    exp: list[int] = field(default_factory=list)
    layernorm: list[tuple[int, int]] = field(default_factory=list)
    stat_rows: int = 1
    min_exp_sum: int = 1 << intops.EXP_BITS


def _fuses(s: LinearStep, nxt, program: IntProgram) -> bool:
    """The row step `nxt` directly follows linear step `s` over the whole buffer that `s` writes."""
    return (isinstance(nxt, (SoftmaxStep, LayerNormStep)) and nxt.src == s.out and not s.out_transposed
            and s.out_col == 0 and s.cols == program.buffers[s.out].cols and nxt.rows <= s.rows
            and nxt.cols == s.cols and s.requant is not None)


def _step_records(program: IntProgram, layouts, P: int, weight_width: int, pairs=None):
    """One record per macro step (buffer fields hold buffer indices, addresses are within the buffer: see
    `_rebase_steps`), the program steps each runs, and the ROM contents they address."""
    roms = RomContents()
    steps, names = [], []
    i = 0
    while i < len(program.steps):
        s = program.steps[i]
        rec = {"linear": 0, "softmax": 0, "layernorm": 0, "fused": 0}
        group = [s.name]
        if isinstance(s, LinearStep):
            rec.update(_linear_fields(s, program, layouts, P, roms, weight_width,
                                      pairs if pairs and s.name in pairs.steps else None))
            nxt = program.steps[i + 1] if i + 1 < len(program.steps) else None
            if _fuses(s, nxt, program):
                rec["fused"] = 1
                rec["track_max" if isinstance(nxt, SoftmaxStep) else "track_sums"] = 1
                roms.stat_rows = max(roms.stat_rows, s.rows)
                s = nxt
                group.append(s.name)
                i += 1
        if isinstance(s, SoftmaxStep):
            rec.update(_softmax_fields(s, program, layouts, roms, rec["fused"]))
            if s.method == "lut":
                roms.min_exp_sum = min(roms.min_exp_sum, max(1, int(program.tensors[s.table][0])))
        elif isinstance(s, LayerNormStep):
            rec.update(_layernorm_fields(s, program, layouts, roms, rec["fused"]))
        steps.append(StepRecord(**rec))
        names.append(group)
        i += 1
    return steps, names, roms


# ------------------------------------------------------------------------------------------- roles

def _step_roles(steps: list[StepRecord], names: list[list[str]], layouts) -> tuple[list[dict], list[dict]]:
    """Each buffer's read and write role in each macro step (buffer name -> R_* / W_*): one read and one
    write port per memory, so a buffer used twice at once in a step is an error."""
    step_reads, step_writes = [], []
    for rec, group in zip(steps, names):
        reads, writes = {}, {}
        uses = []
        if rec.linear:
            if not rec.x_ones:
                uses.append((reads, rec.x_bank, R_X))
            if not rec.w_from_rom:
                uses.append((reads, rec.w_bank, R_W))
            if rec.residual:
                uses.append((reads, rec.res_bank, R_RES))
            uses.append((writes, rec.out_bank, W_DRAIN))
        if rec.softmax:
            uses += [(reads, rec.sm_src_bank, R_SM), (writes, rec.sm_out_bank, W_SM)]
        if rec.layernorm:
            uses += [(reads, rec.ln_src_bank, R_LN), (writes, rec.ln_out_bank, W_LN)]
        for table, index, role in uses:
            name = _name(layouts, index)
            if name in table and table[name] != role:
                raise IntformerError(f"steps {', '.join(group)} use buffer {name} twice at once")
            table[name] = role
        step_reads.append(reads)
        step_writes.append(writes)
    return step_reads, step_writes


# ---------------------------------------------------------------------------------- bank placement

def _place_banks(layouts, step_reads, step_writes, P: int, pairs=None) -> list[Bank]:
    """Buffers into banks (`assign_banks`); each buffer at a word offset in its bank, its lanes as wide as the
    bank's widest code (the layouts gain bank, base and lane_bits)."""
    groups = assign_banks(layouts, [set(r) for r in step_reads], [set(w) for w in step_writes], P,
                          dual_read=pairs.w_buffers if pairs else frozenset())
    banks = []
    for j, members in enumerate(groups):
        lane_bits = max(layouts[n].stored_bits or layouts[n].bits for n in members)
        base = 0
        for n in members:
            lay = layouts[n]
            lay.bank, lay.base, lay.lane_bits = j, base, lane_bits
            base += lay.depth
        modes = {_reads_signed(layouts[n]) for n in members}
        banks.append(Bank(j, members, layouts[members[0]].lanes, lane_bits, max(1, base), wide=layouts[members[0]].wide,
                          signed_read=modes.pop() if len(modes) == 1 else None))
    return banks


# -------------------------------------------------------------------------------- address rebasing

# the buffer field of each operand and the start address that gains the buffer's base in its bank
_LINEAR_OPERANDS = (("x_bank", "x_word", "x_ones", False), ("w_bank", "w_base", "w_from_rom", False),
                    ("res_bank", "res_word", "residual", True))
_ROW_UNITS = (("softmax", "sm_src_bank", "sm_src_base", "sm_out_bank", "sm_out_base"),
              ("layernorm", "ln_src_bank", "ln_src_base", "ln_out_bank", "ln_out_base"))


def _rebase_steps(steps: list[StepRecord], step_reads, step_writes, layouts, banks: list[Bank]) -> list[StepRecord]:
    """The step table addresses banks: buffer fields become bank indices, start addresses gain the buffer's
    base; each record gains each bank's read and write role (and, for a bank holding signed and unsigned
    codes, whether its lanes read sign-extended)."""
    out = []
    for rec, reads, writes in zip(steps, step_reads, step_writes):
        pairs = []                                        # (buffer field, its start address field)
        if rec.linear:
            pairs += [(buf, addr) for buf, addr, flag, when_set in _LINEAR_OPERANDS
                      if bool(getattr(rec, flag)) == when_set]
            pairs.append(("out_bank", "out_transposed_base" if rec.out_transposed else "out_word"))
        for unit, src, src_base, dst, dst_base in _ROW_UNITS:
            if getattr(rec, unit):
                pairs += [(src, src_base), (dst, dst_base)]
        new = {}
        for buf_field, addr_field in pairs:
            lay = layouts[_name(layouts, getattr(rec, buf_field))]
            new[buf_field] = lay.bank
            new[addr_field] = (getattr(rec, addr_field) or 0) + lay.base
        read_role, write_role, read_signed = [], [], []
        for b in banks:
            rd = [reads[n] for n in b.buffers if n in reads]
            wr = [writes[n] for n in b.buffers if n in writes]
            assert len(rd) <= 1 and len(wr) <= 1, "assign_banks put two buffers of one port in a bank"
            read_role.append(rd[0] if rd else R_NONE)
            write_role.append(wr[0] if wr else W_NONE)
            read_signed.append(None if b.signed_read is not None else
                               next((_reads_signed(layouts[n]) for n in b.buffers if n in reads), 0))
        out.append(dataclasses.replace(rec, **new, read_role=tuple(read_role), write_role=tuple(write_role),
                                       read_signed=tuple(read_signed)))
    return out


def _reads_signed(lay: BufferLayout) -> int:
    """A lane read back from the bank is sign-extended (else zero-extended): codes narrower than the lane
    are stored sign-extended, so only unsigned codes as wide as the lane need zero extension."""
    return int(lay.signed or lay.bits < lay.lane_bits)


def _acc_range(s: LinearStep, program: IntProgram) -> tuple[tuple[int, int], tuple[int, int]]:
    """(lo, hi) of step s's accumulators, and of accumulator + bias: the exact worst case over every code of
    its X buffer (1 for the ones operand) and of its W buffer, or its weights column by column."""
    if s.x == ONES:
        xr = (1, 1)
    else:
        b = program.buffers[s.x]
        xr = intops.code_range(b.bits, b.signed)
    if s.w in program.tensors:
        w = np.asarray(program.tensors[s.w][s.w_row:s.w_row + s.k_len, s.w_col:s.w_col + s.cols], dtype=np.int64)
        hi = np.maximum(w * xr[0], w * xr[1]).sum(axis=0)
        lo = np.minimum(w * xr[0], w * xr[1]).sum(axis=0)
    else:
        b = program.buffers[s.w]
        prods = [a * c for a in xr for c in intops.code_range(b.bits, b.signed)]
        hi = np.full(s.cols, s.k_len * max(prods), dtype=np.int64)
        lo = np.full(s.cols, s.k_len * min(prods), dtype=np.int64)
    acc = (int(lo.min()), int(hi.max()))
    if not s.bias:
        return acc, acc
    bias = np.asarray(program.tensors[s.bias], dtype=np.int64)
    if bias.ndim == 2 and bias.shape[0] > 1:
        bias = bias[:s.rows, :s.cols]
    else:
        bias = bias.reshape(-1)[:s.cols]
    return acc, (int((lo + bias).min()), int((hi + bias).max()))


def _name(layouts, index):
    return next(name for name, lay in layouts.items() if lay.index == index)


def _walk_start(lay: BufferLayout, c: int) -> dict:
    w, lane, within = lay.col_pos(c)
    return {"word": w, "lane": lane, "within": within, "chunk": lay.chunk, "wpr": lay.wpr}


def _linear_fields(s: LinearStep, program, layouts, P, roms: RomContents, weight_width, pairs=None) -> dict:
    """The fields of linear step `s` (the `StepRecord` names); appends its weights, biases, table and affine
    constants to `roms`. `pairs`: the step is a pair step (two k per issue)."""
    issues = s.k_len // 2 if pairs else s.k_len
    f = {"linear": 1, "rows": s.rows, "k_len": issues, "cols": s.cols, "outputs": s.rows * s.cols}
    if pairs:
        f["pair"] = 1
    f.update(_x_operand_fields(s, layouts))
    f.update(_w_operand_fields(s, program, layouts, P, roms, weight_width, pairs))
    width = min(P, s.cols if s.w in program.tensors else layouts[s.w].chunk)
    f["issue_gap"] = max(0, width - issues)           # the drain needs `width` cycles per group
    f.update(_output_fields(s, layouts))
    if s.bias:
        b = np.asarray(program.tensors[s.bias], dtype=np.int64)
        two_d = b.ndim == 2 and b.shape[0] > 1
        b = b[:s.rows, :s.cols] if two_d else b.reshape(-1)[:s.cols]
        f.update(bias=1, bias_base=len(roms.bias), bias_per_row=int(two_d))
        roms.bias.extend(int(v) for v in b.reshape(-1))
    if s.requant:
        rq = s.requant
        f.update(requant=1, requant_mul=rq.m, requant_shift=rq.s, requant_lo=rq.lo, requant_hi=rq.hi)
    if s.lut:
        f.update(lut=1, lut_offset=len(roms.lut) - s.requant.lo)
        roms.lut.extend(int(v) for v in program.tensors[s.lut])
    if s.residual:
        f.update(_residual_fields(s, layouts))
    if s.affine:
        a = s.affine
        f.update(affine=1, affine_base=len(roms.affine), affine_shift=a.s, affine_lo=a.lo, affine_hi=a.hi)
        m = np.broadcast_to(program.tensors[a.m], (s.cols,))      # per output column j
        b = np.broadcast_to(program.tensors[a.b], (s.cols,))
        roms.affine.extend((int(mm), int(bb)) for mm, bb in zip(m, b))
    return f


def _x_operand_fields(s: LinearStep, layouts) -> dict:
    """X operand: a walker over row i, columns x_col .. x_col + k - 1 (or over the whole buffer: x_flat)."""
    if s.x == ONES:
        return {"x_ones": 1}
    lay = layouts[s.x]
    st = _walk_start(lay, s.x_col)
    return {"x_bank": lay.index, "x_word": st["word"], "x_lane": st["lane"], "x_within": st["within"],
            "x_chunk": st["chunk"], "x_words_per_row": st["wpr"]}


def _w_operand_fields(s: LinearStep, program, layouts, P, roms: RomContents, weight_width, pairs=None) -> dict:
    """W operand: groups of P output columns; word address = base + g * group stride + k * k stride. Weights
    from the program's tensors are appended to the weight ROM, P to a word; a pair step's word holds rows
    k, k + 1 (each lane: w[k] in its low `pairs.w_bits` bits, w[k + 1] above them). A pair step's W buffer
    is walked two rows per issue (the crossbar reads row k + 1 through the bank's second read port)."""
    if s.w in program.tensors:
        w = np.asarray(program.tensors[s.w][s.w_row:s.w_row + s.k_len, s.w_col:s.w_col + s.cols], dtype=np.int64)
        groups = ceil_div(s.cols, P)
        if pairs:
            mask = (1 << pairs.w_bits) - 1
            w = (w[0::2] & mask) | ((w[1::2] & mask) << pairs.w_bits)
        issues = w.shape[0]
        f = {"w_from_rom": 1, "w_base": len(roms.weight_words), "w_k_stride": 1, "w_group_stride": issues,
             "groups": groups, "groups_per_chunk": groups, "lanes_in_last_group": s.cols - (groups - 1) * P}
        for g in range(groups):
            for k in range(issues):
                row = [w[k, g * P + l] if g * P + l < s.cols else 0 for l in range(P)]
                roms.weight_words.append(pack_word(row, weight_width))
        return f
    lay = layouts[s.w]
    w0, _, within = lay.col_pos(s.w_col)
    assert within == 0 and s.cols % lay.chunk == 0
    gpc = lay.wpc
    # a pair step's issue reads rows k (here) and k + 1 (half the stride on, the bank's second read port)
    k_stride = 2 * lay.wpr if pairs else lay.wpr
    return {"w_bank": lay.index, "w_base": s.w_row * lay.wpr + w0, "w_k_stride": k_stride, "w_group_stride": 1,
            "groups": (s.cols // lay.chunk) * gpc, "groups_per_chunk": gpc,
            "lanes_in_last_group": lay.chunk - (gpc - 1) * P}


def _output_fields(s: LinearStep, layouts) -> dict:
    """Output: normal (i, out_col + j) or transposed (out_col + j, i)."""
    out = layouts[s.out]
    f = {"out_bank": out.index, "out_transposed": int(s.out_transposed), "out_chunk": out.chunk,
         "out_words_per_row": out.wpr}
    if s.out_transposed:
        f["out_transposed_base"] = s.out_col * out.wpr
    else:
        st = _walk_start(out, s.out_col)
        f.update(out_word=st["word"], out_lane=st["lane"], out_within=st["within"])
    return f


def _residual_fields(s: LinearStep, layouts) -> dict:
    """Residual: a walker over the source row from the output's column (or one fixed element)."""
    r = s.residual
    src = layouts[r.src]
    fixed = r.row is not None and r.col is not None    # one element src[row, col] for every output
    st = _walk_start(src, r.col if fixed else s.out_col)
    if r.row is not None:      # one element, or one row (a step of one output row) walked from out_col
        st["word"] += r.row * src.wpr
    return {"residual": 1, "res_bank": src.index, "res_word": st["word"], "res_lane": st["lane"],
            "res_within": st["within"], "res_chunk": src.chunk, "res_words_per_row": src.wpr,
            "res_fixed": int(fixed), "res_mul_src": r.m_src, "res_mul_new": r.m_new, "res_shift": r.s,
            "res_lo": r.lo, "res_hi": r.hi}


def _softmax_fields(s: SoftmaxStep, program, layouts, roms: RomContents, fused) -> dict:
    src, out = layouts[s.src], layouts[s.out]
    f = {"softmax": 1, "sm_src_bank": src.index, "sm_out_bank": out.index, "sm_rows": s.rows, "sm_cols": s.cols,
         "sm_src_words_per_row": src.wpr, "sm_out_words_per_row": out.wpr, "sm_poly": int(s.method == "poly"),
         "sm_c": s.c, "sm_out_bits": s.out_bits, "sm_fused_max": fused}
    if s.method == "lut":
        f["sm_table_base"] = len(roms.exp)
        roms.exp.extend(int(v) for v in program.tensors[s.table])
    return f


def _layernorm_fields(s: LayerNormStep, program, layouts, roms: RomContents, fused) -> dict:
    src, out = layouts[s.src], layouts[s.out]
    f = {"layernorm": 1, "ln_src_bank": src.index, "ln_out_bank": out.index, "ln_rows": s.rows, "ln_cols": s.cols,
         "ln_src_words_per_row": src.wpr, "ln_out_words_per_row": out.wpr, "ln_param_base": len(roms.layernorm),
         "ln_shift": s.s, "ln_eps": s.eps, "ln_lo": s.lo, "ln_hi": s.hi, "ln_fused_sums": fused}
    roms.layernorm.extend((int(g), int(b)) for g, b in zip(program.tensors[s.g], program.tensors[s.b]))
    return f
