"""The step table: one typed record per macro step, and the hardware layout generated from its fields.

`accel.plan.make_plan` builds one `StepRecord` per macro step (a linear step, a softmax or a LayerNorm, or a
linear step fused with the row step that follows it); the accelerator stores the table in a small ROM and
keeps the current step's record in a register (`StepFields`). Each field is an integer documented once,
below, where it is declared. A field no step of a program uses is `None` in every record and is left out
of that program's ROM (it reads as constant 0 in hardware); a field some step uses is an integer in every
record (0 where a step does not use it). The ROM's width per field is the narrowest that holds its values
(`field_shapes`), unsigned unless a value is negative.

The per-bank fields (`read_role`, `write_role`, `read_signed`) are tuples, one entry per bank
(`accel.plan.Bank`); in the ROM they are the fields `read_role_0`, `read_role_1`, ...

The declaration order is the ROM's bit order (field after field, low bits first). It is the order the table
had when its fields were named by abbreviations (sorted by those names), kept so that the synthesized ROM
and its register are bit for bit what they were.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from amaranth.hdl import Const, signed, unsigned
from amaranth.lib import data

from intformer.model import intops

# the per-bank fields: tuples of one entry per bank, in the ROM `{name}_{bank}`
BANK_FIELDS = ("read_role", "read_signed", "write_role")


@dataclass(frozen=True)
class StepRecord:
    """One macro step of the accelerator's step table (every field an integer, or None: unused)."""
    # the per-channel affine (folded BatchNorm) of the drain
    affine_base: int | None = None          # address of the step's first (m, b) pair in the affine ROM
    affine_hi: int | None = None            # upper clamp bound of the affine's output code
    affine_lo: int | None = None            # lower clamp bound of the affine's output code
    affine_shift: int | None = None         # right shift (rounding) of the affine's m * x + b
    affine: int | None = None               # 1: the drain applies the per-channel affine
    # the bias of the drain
    bias_per_row: int | None = None         # 1: a (rows, cols) bias matrix; 0: one bias row for every row
    bias_base: int | None = None            # address of the step's first bias in the bias ROM
    bias: int | None = None                 # 1: the drain adds a bias
    # the linear step's shape and its issue schedule
    cols: int | None = None                 # output columns of the linear step
    fused: int | None = None                # 1: the row step runs fused, row by row behind the linear step
    issue_gap: int | None = None            # idle cycles after a group's last k (a group drains in `width` cycles)
    groups: int | None = None               # groups of up to P output columns per output row
    groups_per_chunk: int | None = None     # groups per chunk of the W layout (the last one may be narrower)
    k_len: int | None = None                # issues per group: the reduction length (k), half of it in a pair step
    lut_offset: int | None = None           # look-up table ROM address of code 0 (table base minus its lo)
    lanes_in_last_group: int | None = None  # output columns of a chunk's last group (<= P)
    linear: int | None = None               # 1: the step has a linear part (MACs and the drain)
    # the LayerNorm row unit
    layernorm: int | None = None            # 1: the step runs a LayerNorm
    ln_cols: int | None = None              # columns of the LayerNorm's rows
    ln_eps: int | None = None               # epsilon added to the variance (integer units)
    ln_fused_sums: int | None = None        # 1: the row sums come from the drain (fused), not a pass of its own
    ln_hi: int | None = None                # upper clamp bound of the LayerNorm's output code
    ln_lo: int | None = None                # lower clamp bound of the LayerNorm's output code
    ln_out_bank: int | None = None          # bank of the LayerNorm's output buffer
    ln_out_base: int | None = None          # word of the output buffer's row 0 in its bank
    ln_out_words_per_row: int | None = None  # words per row of the output buffer
    ln_param_base: int | None = None        # address of the step's first (g, b) pair in the LayerNorm ROM
    ln_rows: int | None = None              # rows of the LayerNorm
    ln_shift: int | None = None             # right shift of the normalized value times gamma
    ln_src_bank: int | None = None          # bank of the LayerNorm's source buffer
    ln_src_base: int | None = None          # word of the source buffer's row 0 in its bank
    ln_src_words_per_row: int | None = None  # words per row of the source buffer
    lut: int | None = None                  # 1: the drain maps the requantized code through a look-up table
    outputs: int | None = None              # rows x cols: the elements the drain writes
    # the drain's write walker (normal: element (i, j) at row i, column out_col + j; transposed: (out_col + j, i))
    out_chunk: int | None = None            # chunk (columns) of the output buffer's layout
    out_lane: int | None = None             # lane of the first output in its word
    out_transposed_base: int | None = None  # word of the first output row (transposed: out_col x words per row)
    out_within: int | None = None           # column of the first output within its chunk
    out_word: int | None = None             # word of the first output (row 0, column out_col)
    out_words_per_row: int | None = None    # words per row of the output buffer
    out_bank: int | None = None             # bank of the output buffer
    out_transposed: int | None = None       # 1: the output is written transposed
    # the residual: a walker over the source row, and the two-term scale, shift and clamp
    res_bank: int | None = None             # bank of the residual's source buffer
    res_chunk: int | None = None            # chunk (columns) of the source buffer's layout
    res_hi: int | None = None               # upper clamp bound of the residual sum
    res_fixed: int | None = None            # 1: one fixed source element for every output (no walk)
    res_lane: int | None = None             # lane of the first source element in its word
    res_lo: int | None = None               # lower clamp bound of the residual sum
    res_mul_new: int | None = None          # multiplier of the new code
    res_mul_src: int | None = None          # multiplier of the source code
    res_shift: int | None = None            # right shift of the residual sum
    res_within: int | None = None           # column of the first source element within its chunk
    res_word: int | None = None             # word of the first source element
    res_words_per_row: int | None = None    # words per row of the source buffer
    read_role: tuple[int, ...] | None = None  # per bank: the role of its read port (plan.R_*: X, W, residual, ...)
    residual: int | None = None             # 1: the drain adds a scaled residual source element
    rows: int | None = None                 # output rows of the linear step
    # the requantizer
    requant: int | None = None              # 1: the drain requantizes (else raw accumulators reach the output)
    requant_hi: int | None = None           # upper clamp bound of the requantized code
    requant_lo: int | None = None           # lower clamp bound of the requantized code
    requant_mul: int | None = None          # multiplier of the requantization
    requant_shift: int | None = None        # right shift (rounding) of the requantization
    read_signed: tuple[int | None, ...] | None = None  # per bank holding both kinds: 1 sign-, 0 zero-extends a lane
    # the softmax row unit
    softmax: int | None = None              # 1: the step runs a softmax
    sm_c: int | None = None                 # method "poly": the log2(e) x scale constant
    sm_cols: int | None = None              # columns of the softmax's rows
    sm_fused_max: int | None = None         # 1: the row maxima come from the drain (fused), not a pass of its own
    sm_out_bank: int | None = None          # bank of the softmax's output buffer
    sm_out_base: int | None = None          # word of the output buffer's row 0 in its bank
    sm_out_bits: int | None = None          # bits of the output codes
    sm_out_words_per_row: int | None = None  # words per row of the output buffer
    sm_poly: int | None = None              # 1: method "poly" (else "lut", a table of exponentials)
    sm_rows: int | None = None              # rows of the softmax
    sm_src_bank: int | None = None          # bank of the softmax's source buffer
    sm_src_base: int | None = None          # word of the source buffer's row 0 in its bank
    sm_src_words_per_row: int | None = None  # words per row of the source buffer
    sm_table_base: int | None = None        # method "lut": address of the step's table in the exponential ROM
    # row statistics the drain keeps for a fused row step
    track_max: int | None = None            # 1: the drain keeps each row's maximum (fused softmax)
    track_sums: int | None = None           # 1: the drain keeps each row's sum and sum of squares (fused LayerNorm)
    # the W operand: word address = base + group x group stride + k x k stride
    w_base: int | None = None               # word of the step's first W word (ROM or bank)
    w_bank: int | None = None               # bank of the W buffer (unless from the weight ROM)
    w_group_stride: int | None = None       # words from one group of columns to the next
    w_k_stride: int | None = None           # words from one k to the next
    w_from_rom: int | None = None           # 1: W is the weight ROM (else a buffer)
    write_role: tuple[int, ...] | None = None  # per bank: the role of its write port (plan.W_*: drain, softmax, ...)
    # the X operand: a walker over row i, columns x_col .. x_col + k - 1
    x_bank: int | None = None               # bank of the X buffer
    x_chunk: int | None = None              # chunk (columns) of the X buffer's layout
    x_lane: int | None = None               # lane of the first X element of a row in its word
    x_ones: int | None = None               # 1: X is the ones operand (no buffer read)
    x_within: int | None = None             # column of the first X element within its chunk
    x_word: int | None = None               # word of row 0's first X element
    x_words_per_row: int | None = None      # words per row of the X buffer
    # two k per issue (`accel.packed`): X elements k, k + 1 of one word, a ROM word of (k, k + 1) weight pairs
    pair: int | None = None                 # 1: each MAC lane takes x_k w_k + x_k+1 w_k+1 per cycle


STEP_FIELDS = tuple(f.name for f in dataclasses.fields(StepRecord))


def rom_fields(rec: StepRecord) -> dict[str, int]:
    """The record as the ROM's fields (name -> integer): the used ones, the per-bank ones expanded."""
    out = {}
    for name in STEP_FIELDS:
        value = getattr(rec, name)
        if name in BANK_FIELDS:
            # ROM names sort as text (read_role_0, read_role_1, read_role_10, read_role_2, ...)
            for j in sorted(range(len(value or ())), key=str):
                if value[j] is not None:
                    out[f"{name}_{j}"] = value[j]
        elif value is not None:
            out[name] = value
    return out


def fill_unused(steps: list[StepRecord]) -> list[StepRecord]:
    """Every field some step uses set to 0 in the steps that do not (so that it has a value in every ROM
    word); fields no step uses stay None."""
    used = {name for rec in steps for name, value in dataclasses.asdict(rec).items() if value is not None}
    return [dataclasses.replace(rec, **{n: 0 for n in used if n not in BANK_FIELDS and getattr(rec, n) is None})
            for rec in steps]


def field_shapes(steps: list[StepRecord]) -> dict[str, object]:
    """The ROM's fields in order, each the narrowest shape that holds its values in every step."""
    rows = [rom_fields(rec) for rec in steps]
    names = list(rows[0]) if rows else []
    assert all(list(r) == names for r in rows), "the steps use different per-bank fields"
    shapes = {}
    for name in names:
        values = [r[name] for r in rows]
        lo, hi = min(values), max(values)
        shapes[name] = signed(intops.bits_signed(lo, hi)) if lo < 0 else unsigned(intops.bits_unsigned(hi))
    return shapes


def step_layout(steps: list[StepRecord]) -> data.StructLayout:
    """The hardware layout of one ROM word, generated from the records' fields."""
    return data.StructLayout(field_shapes(steps))


class StepFields:
    """The current step's fields in hardware, by their `StepRecord` names, from a register of the ROM's
    layout (`step_layout`). A field no step uses reads as constant 0; a name that is no field of
    `StepRecord` raises AttributeError while the design is built."""

    def __init__(self, view: data.View):
        self._view = view
        self._names = {name for name, _ in view.shape()}

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        if name in BANK_FIELDS or name not in STEP_FIELDS:
            raise AttributeError(f"the step table has no field {name!r}" +
                                 (" (a per-bank field: use .bank(name, index))" if name in BANK_FIELDS else ""))
        return self._view[name] if name in self._names else Const(0, 1)

    def bank(self, name: str, index: int):
        """A per-bank field (`read_role`, `write_role`, `read_signed`) of bank `index`."""
        if name not in BANK_FIELDS:
            raise AttributeError(f"the step table has no per-bank field {name!r}")
        key = f"{name}_{index}"
        return self._view[key] if key in self._names else Const(0, 1)
