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
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from intformer.model import intops
from intformer.model.errors import IntformerError
from intformer.model.program import ONES, IntProgram, LayerNormStep, LinearStep, SoftmaxStep

from .arith import ext_width

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
        mask = (1 << self.bits) - 1
        lb = self.lane_bits or self.bits
        for r in range(self.rows):
            for c in range(self.cols):
                w, lane = self.word_lane(r, c)
                v = (int(words[self.base + w]) >> (lane * lb)) & mask
                if self.signed and v >> (self.bits - 1):
                    v -= 1 << self.bits
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
                 tries: int = 64) -> list[list[str]]:
    """Group the buffers into memories (banks) of one read and one write port.

    Two buffers may share a bank when no (fused) step reads both or writes both (each step's read and write
    roles: `reads`, `writes`, one set of buffer names per step); a wide buffer (raw output words) keeps a
    bank of its own. Among the groupings found by greedy packing in several orders, each improved by moving
    single buffers, the one with the fewest 4-kbit block RAMs (then the fewest banks) wins: fewer, fuller
    block RAMs and fewer port multiplexers. Deterministic.
    """
    names = [n for n, lay in layouts.items() if not lay.wide]
    conflict = {n: set() for n in layouts}
    for group in list(reads) + list(writes):
        for a in group:
            conflict[a] |= set(group) - {a}

    def cost(m):
        return _bank_cost(layouts, m, lanes) if m else 0.0

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
    steps: list[dict]                   # the step table: one dict of integer fields per macro step
    step_names: list[list[str]]         # the program steps each macro step runs
    max_rows: int
    max_cols: int
    stat_rows: int                      # depth of the row statistics memories
    field_widths: dict[str, tuple[int, bool]] = field(default_factory=dict)

    @property
    def addr_width(self) -> int:
        return max(1, max(b.depth for b in self.banks) - 1).bit_length()

    def shift_range(self, field: str, default: tuple[int, int] = (0, 62)) -> tuple[int, int]:
        """(min, max) of a shift (or other) field over the steps that use it (`field` names the field, the
        flag that marks a step using it is the field's prefix: rq_s -> rq)."""
        flag = {"rq_s": "rq", "r_s": "res", "a_s": "aff", "ln_s": "ln", "sm_out_bits": "sm"}[field]
        vals = [r[field] for r in self.steps if r.get(flag)]
        return (min(vals), max(vals)) if vals else default

    @property
    def res_m_width(self) -> int:
        """Signed width of the residual multipliers m_src and m_new: 16, or what a program's constants need
        (a ratio of scales beyond 2^14 has no 15-bit multiplier with a shift >= 1, `model.qat.shift_for`:
        e.g. 2-bit input codes skipped into a 16-bit head)."""
        vals = [r[k] for r in self.steps if r.get("res") for k in ("r_msrc", "r_mnew")] + [0]
        return max(16, intops.bits_signed(min(vals), max(vals)))

    @property
    def share_mul(self) -> bool:
        """The affine (folded BatchNorm) and the softmax normalization share one multiplier block: there are
        both, no step uses both at once, and both products fit a 16 x 16 block."""
        sm = [r for r in self.steps if r["sm"]]
        aff = [r for r in self.steps if r.get("aff")]
        return (bool(sm) and bool(aff) and not any(r["sm"] and r.get("aff") for r in self.steps)
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


def _check(program: IntProgram) -> None:
    names = set(program.buffers)
    if "x" not in names or program.output not in names:
        raise IntformerError("the program has no input buffer 'x' or no output buffer: re-export the model")
    for s in program.steps:
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


def make_plan(program: IntProgram, lanes: int) -> Plan:
    """Lay out the buffers and ROMs of `program` for P = `lanes` and build the step table."""
    if lanes < 1:
        raise IntformerError(f"lanes must be at least 1, got {lanes}")
    _check(program)
    P = lanes
    linear = [s for s in program.steps if isinstance(s, LinearStep)]
    wide = {s.out for s in linear if s.requant is None} | {program.output}
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
    codes = [lay for lay in layouts.values() if not lay.wide]
    elem_width = max([ext_width(lay.bits, lay.signed) for lay in codes] + [2])

    # MAC operand widths (signed: unsigned codes gain a bit) and the accumulator: the exact worst case of
    # each step over every code its operand buffers can hold and the weights and biases it has
    x_bits = max([1] + [ext_width(program.buffers[s.x].bits, program.buffers[s.x].signed) - 1
                        for s in linear if s.x != ONES])
    w_vals = [program.tensors[s.w][s.w_row:s.w_row + s.k_len, s.w_col:s.w_col + s.cols]
              for s in linear if s.w in program.tensors]
    rom_bits = max([2] + [intops.bits_signed(int(w.min()), int(w.max())) for w in w_vals if w.size])
    w_bits = max([rom_bits - 1] + [ext_width(program.buffers[s.w].bits, program.buffers[s.w].signed) - 1
                                   for s in linear if s.w in program.buffers])
    k_max = max([1] + [s.k_len for s in linear])
    ranges = [_acc_range(s, program) for s in linear]
    acc_w = intops.bits_signed(min([-1] + [r[0] for r, _ in ranges]), max([0] + [r[1] for r, _ in ranges]))
    lo, hi = min([-1] + [r[0] for _, r in ranges]), max([0] + [r[1] for _, r in ranges])
    # codes in the drain: every requantization, table, residual and affine range (the forecast head's
    # skip path requantizes to 16-bit codes), and every buffer's codes
    bounds = [elem_width]
    for s in linear:
        for q in (s.requant, s.residual, s.affine):
            if q is not None:
                bounds.append(intops.bits_signed(q.lo, q.hi))
        if s.lut:
            t = program.tensors[s.lut]
            bounds.append(intops.bits_signed(int(t.min()), int(t.max())))
    code_width = max(bounds)
    # what reaches the per-channel affine: the residual's, the table's or the requantizer's range
    aff_in = [2]
    for s in linear:
        if s.affine is None:
            continue
        if s.residual is not None:
            aff_in.append(intops.bits_signed(s.residual.lo, s.residual.hi))
        elif s.lut:
            t = program.tensors[s.lut]
            aff_in.append(intops.bits_signed(int(t.min()), int(t.max())))
        elif s.requant is not None:
            aff_in.append(intops.bits_signed(s.requant.lo, s.requant.hi))
        else:
            aff_in.append(code_width)
    aff_in_width = min(max(aff_in), code_width)
    drain_width = max(acc_w, intops.bits_signed(lo, hi), code_width,
                      max([lay.bits for lay in layouts.values() if lay.wide] + [1]))

    # ROM contents: weights P-wide, the rest one value per word
    weight_words, bias_rom, lut_rom, aff_rom, exp_rom, ln_rom = [], [], [], [], [], []
    weight_width = rom_bits
    steps, names = [], []
    stat_rows = 1
    min_exp_sum = 1 << intops.EXP_BITS
    i = 0
    while i < len(program.steps):
        s = program.steps[i]
        rec = {"lin": 0, "sm": 0, "ln": 0, "fused": 0}
        group = [s.name]
        if isinstance(s, LinearStep):
            rec.update(_linear_fields(s, program, layouts, P, weight_words, bias_rom, lut_rom, aff_rom,
                                      weight_width))
            nxt = program.steps[i + 1] if i + 1 < len(program.steps) else None
            if (isinstance(nxt, (SoftmaxStep, LayerNormStep)) and nxt.src == s.out and not s.out_transposed
                    and s.out_col == 0 and s.cols == program.buffers[s.out].cols and nxt.rows <= s.rows
                    and nxt.cols == s.cols and s.requant is not None):
                rec["fused"] = 1
                rec["trk_max" if isinstance(nxt, SoftmaxStep) else "trk_sum"] = 1
                stat_rows = max(stat_rows, s.rows)
                s = nxt
                group.append(s.name)
                i += 1
        if isinstance(s, SoftmaxStep):
            rec.update(_softmax_fields(s, program, layouts, exp_rom, rec["fused"]))
            if s.method == "lut":
                min_exp_sum = min(min_exp_sum, max(1, int(program.tensors[s.table][0])))
        elif isinstance(s, LayerNormStep):
            rec.update(_layernorm_fields(s, program, layouts, ln_rom, rec["fused"]))
        steps.append(rec)
        names.append(group)
        i += 1

    # each buffer's role in each macro step (one read and one write port per memory)
    step_reads, step_writes = [], []
    for rec, group in zip(steps, names):
        reads, writes = {}, {}

        def use(table, name, role, group=group):
            if name in table and table[name] != role:
                raise IntformerError(f"steps {', '.join(group)} use buffer {name} twice at once")
            table[name] = role
        if rec["lin"]:
            if not rec.get("x_ones"):
                use(reads, _name(layouts, rec["x_buf"]), R_X)
            if not rec.get("w_rom"):
                use(reads, _name(layouts, rec["w_buf"]), R_W)
            if rec.get("res"):
                use(reads, _name(layouts, rec["r_buf"]), R_RES)
            use(writes, _name(layouts, rec["out_buf"]), W_DRAIN)
        if rec["sm"]:
            use(reads, _name(layouts, rec["sm_src"]), R_SM)
            use(writes, _name(layouts, rec["sm_out"]), W_SM)
        if rec["ln"]:
            use(reads, _name(layouts, rec["ln_src"]), R_LN)
            use(writes, _name(layouts, rec["ln_out"]), W_LN)
        step_reads.append(reads)
        step_writes.append(writes)

    # buffers into banks; each buffer at a word offset in its bank
    groups = assign_banks(layouts, [set(r) for r in step_reads], [set(w) for w in step_writes], P)
    banks = []
    for j, members in enumerate(groups):
        lane_bits = max(layouts[n].bits for n in members)
        base = 0
        for n in members:
            lay = layouts[n]
            lay.bank, lay.base, lay.lane_bits = j, base, lane_bits
            base += lay.depth
        modes = {_reads_signed(layouts[n]) for n in members}
        banks.append(Bank(j, members, layouts[members[0]].lanes, lane_bits, max(1, base), wide=layouts[members[0]].wide,
                          signed_read=modes.pop() if len(modes) == 1 else None))

    # the step table addresses banks: buffer fields become bank indices, start addresses gain the base
    for rec, reads, writes in zip(steps, step_reads, step_writes):
        def rebase(buf_field, addr_field, rec=rec):
            lay = layouts[_name(layouts, rec[buf_field])]
            rec[buf_field] = lay.bank
            rec[addr_field] = rec.get(addr_field, 0) + lay.base
        if rec["lin"]:
            if not rec.get("x_ones"):
                rebase("x_buf", "x_word")
            if not rec.get("w_rom"):
                rebase("w_buf", "w_base")
            if rec.get("res"):
                rebase("r_buf", "r_word")
            rebase("out_buf", "o_tbase" if rec["out_t"] else "o_word")
        for unit in ("sm", "ln"):
            if rec[unit]:
                rebase(f"{unit}_src", f"{unit}_src_base")
                rebase(f"{unit}_out", f"{unit}_out_base")
        for b in banks:
            rd = [reads[n] for n in b.buffers if n in reads]
            wr = [writes[n] for n in b.buffers if n in writes]
            assert len(rd) <= 1 and len(wr) <= 1, "assign_banks put two buffers of one port in a bank"
            rec[f"rd{b.index}"] = rd[0] if rd else R_NONE
            rec[f"wr{b.index}"] = wr[0] if wr else W_NONE
            if b.signed_read is None:
                rec[f"rs{b.index}"] = next((_reads_signed(layouts[n]) for n in b.buffers if n in reads), 0)

    keys = sorted({k for rec in steps for k in rec})
    for rec in steps:
        for k in keys:
            rec.setdefault(k, 0)
    widths = {k: (bits_for(rec[k] for rec in steps), any(rec[k] < 0 for rec in steps)) for k in keys}

    def width(vals, signed=True):
        vals = [int(v) for v in vals] or [0]
        return intops.bits_signed(min(vals), max(vals)) if signed else intops.bits_unsigned(max(vals))

    return Plan(
        program=program, lanes=P, layouts=layouts, banks=banks, elem_width=elem_width, code_width=code_width,
        x_bits=x_bits, w_bits=w_bits,
        k_max=k_max, acc_width=acc_w, drain_width=drain_width,
        weight_width=weight_width, weight_words=weight_words or [0],
        bias_width=width(bias_rom), bias_rom=bias_rom or [0],
        lut_width=width(lut_rom), lut_rom=lut_rom or [0],
        aff_in_width=aff_in_width, aff_m_width=max(16, width([m for m, _ in aff_rom])),
        aff_b_width=width([b for _, b in aff_rom]),
        aff_rom=aff_rom or [(0, 0)],
        exp_width=max(intops.EXP_BITS + 1, width(exp_rom, signed=False)), exp_rom=exp_rom or [0],
        min_exp_sum=min_exp_sum,
        ln_g_width=width([g for g, _ in ln_rom]), ln_b_width=width([b for _, b in ln_rom]), ln_rom=ln_rom or [(0, 0)],
        eps_max=max([1] + [s.eps for s in program.steps if isinstance(s, LayerNormStep)]),
        steps=steps, step_names=names,
        max_rows=max(b.rows for b in program.buffers.values()),
        max_cols=max(b.cols for b in program.buffers.values()),
        stat_rows=stat_rows, field_widths=widths,
    )


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


def _linear_fields(s: LinearStep, program, layouts, P, weight_words, bias_rom, lut_rom, aff_rom, weight_width):
    f = {"lin": 1, "rows": s.rows, "k": s.k_len, "cols": s.cols, "n_out": s.rows * s.cols}
    # X operand: a walker over row i, columns x_col .. x_col + k - 1 (or over the whole buffer: x_flat)
    if s.x == ONES:
        f.update(x_ones=1)
    else:
        lay = layouts[s.x]
        st = _walk_start(lay, s.x_col)
        f.update(x_buf=lay.index, x_word=st["word"], x_lane=st["lane"], x_within=st["within"],
                 x_chunk=st["chunk"], x_wpr=st["wpr"])
    # W operand: groups of P output columns; word address = base + g * gstride + k * kstride
    if s.w in program.tensors:
        w = program.tensors[s.w][s.w_row:s.w_row + s.k_len, s.w_col:s.w_col + s.cols]
        groups = ceil_div(s.cols, P)
        f.update(w_rom=1, w_base=len(weight_words), w_kstride=1, w_gstride=s.k_len, groups=groups, gpc=groups,
                 lanes_last=s.cols - (groups - 1) * P)
        for g in range(groups):
            for k in range(s.k_len):
                row = [w[k, g * P + l] if g * P + l < s.cols else 0 for l in range(P)]
                weight_words.append(pack_word(row, weight_width))
    else:
        lay = layouts[s.w]
        w0, _, within = lay.col_pos(s.w_col)
        assert within == 0 and s.cols % lay.chunk == 0
        gpc = lay.wpc
        f.update(w_buf=lay.index, w_base=s.w_row * lay.wpr + w0, w_kstride=lay.wpr, w_gstride=1,
                 groups=(s.cols // lay.chunk) * gpc, gpc=gpc, lanes_last=lay.chunk - (gpc - 1) * P)
    width = min(P, s.cols if s.w in program.tensors else layouts[s.w].chunk)
    f["gap"] = max(0, width - s.k_len)          # the drain needs `width` cycles per group
    # output: normal (i, oc + j) or transposed (oc + j, i)
    out = layouts[s.out]
    f.update(out_buf=out.index, out_t=int(s.out_transposed), o_chunk=out.chunk, o_wpr=out.wpr)
    if s.out_transposed:
        f.update(o_tbase=s.out_col * out.wpr)
    else:
        st = _walk_start(out, s.out_col)
        f.update(o_word=st["word"], o_lane=st["lane"], o_within=st["within"])
    if s.bias:
        b = np.asarray(program.tensors[s.bias], dtype=np.int64)
        two_d = b.ndim == 2 and b.shape[0] > 1
        b = b[:s.rows, :s.cols] if two_d else b.reshape(-1)[:s.cols]
        f.update(bias=1, b_base=len(bias_rom), b_2d=int(two_d))
        bias_rom.extend(int(v) for v in b.reshape(-1))
    if s.requant:
        rq = s.requant
        f.update(rq=1, rq_m=rq.m, rq_s=rq.s, rq_lo=rq.lo, rq_hi=rq.hi)
    if s.lut:
        f.update(lut=1, l_off=len(lut_rom) - s.requant.lo)
        lut_rom.extend(int(v) for v in program.tensors[s.lut])
    if s.residual:
        r = s.residual
        src = layouts[r.src]
        fixed = getattr(r, "row", None) is not None        # one element src[row, col] for every output
        st = _walk_start(src, r.col if fixed else s.out_col)
        if fixed:
            st["word"] += r.row * src.wpr
        f.update(res=1, r_buf=src.index, r_word=st["word"], r_lane=st["lane"], r_within=st["within"],
                 r_chunk=src.chunk, r_wpr=src.wpr, r_hold=int(fixed), r_msrc=r.m_src, r_mnew=r.m_new, r_s=r.s,
                 r_lo=r.lo, r_hi=r.hi)
    if s.affine:
        a = s.affine
        f.update(aff=1, a_base=len(aff_rom), a_s=a.s, a_lo=a.lo, a_hi=a.hi)
        m = np.broadcast_to(program.tensors[a.m], (s.cols,))      # per output column j
        b = np.broadcast_to(program.tensors[a.b], (s.cols,))
        aff_rom.extend((int(mm), int(bb)) for mm, bb in zip(m, b))
    return f


def _softmax_fields(s: SoftmaxStep, program, layouts, exp_rom, fused):
    src, out = layouts[s.src], layouts[s.out]
    f = {"sm": 1, "sm_src": src.index, "sm_out": out.index, "sm_rows": s.rows, "sm_cols": s.cols,
         "sm_src_wpr": src.wpr, "sm_out_wpr": out.wpr, "sm_poly": int(s.method == "poly"), "sm_c": s.c,
         "sm_out_bits": s.out_bits, "sm_ext": fused}
    if s.method == "lut":
        f["sm_t_base"] = len(exp_rom)
        exp_rom.extend(int(v) for v in program.tensors[s.table])
    return f


def _layernorm_fields(s: LayerNormStep, program, layouts, ln_rom, fused):
    src, out = layouts[s.src], layouts[s.out]
    f = {"ln": 1, "ln_src": src.index, "ln_out": out.index, "ln_rows": s.rows, "ln_cols": s.cols,
         "ln_src_wpr": src.wpr, "ln_out_wpr": out.wpr, "ln_p_base": len(ln_rom), "ln_s": s.s, "ln_eps": s.eps,
         "ln_lo": s.lo, "ln_hi": s.hi, "ln_ext": fused}
    ln_rom.extend((int(g), int(b)) for g, b in zip(program.tensors[s.g], program.tensors[s.b]))
    return f
