"""The integer program: what an exported model computes, as a short list of steps over named 2-D buffers.

The exporter (`model.export`) writes a trained model as an `IntProgram`; the integer reference
(`model.intref`) interprets it with numpy; the accelerator (`accel/`) compiles the same list into its
sequencer's steps. So the software and the hardware share one description of the model, and a mismatch can
be named by the step where it first appears.

Buffers are 2-D integer matrices (rows x cols) of codes: `x` is the input window (n x m); every step writes
one buffer. Three kinds of step cover the whole Transformer:

* `LinearStep` -- out[i, oc + j] = post(sum_k X[i, k] * W[k, j] + bias), for i < rows, j < cols, k < k_len.
  X is a buffer window (rows of `x`, columns from `x_col`), or the constant 1 (`x = ONES`, mean pooling),
  or a buffer read as one flat row (`x_flat`, the flatten head). W is a weight tensor (a ROM) or a buffer
  (K^T for the attention scores, V for the context). `post` = bias, requantization, an optional
  look-up table (GELU), an optional residual sum with another buffer, an optional per-channel affine
  (folded BatchNorm); `requant = None` passes the raw accumulator (the forecast head).
  `out_transposed` writes out[oc + j, i] instead (K^T is written as it is produced).
* `SoftmaxStep` -- integer softmax over each row of a buffer (look-up-table or polynomial exponential).
* `LayerNormStep` -- integer LayerNorm over each row of a buffer.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from . import intops

ONES = "@ones"          # the constant-1 operand of mean pooling


@dataclass(frozen=True)
class Buffer:
    name: str
    rows: int
    cols: int
    bits: int
    signed: bool

    @property
    def range(self) -> tuple[int, int]:
        return intops.code_range(self.bits, self.signed)


@dataclass(frozen=True)
class Requant:
    """clamp(round_shift(v * m, s), lo, hi)."""
    m: int
    s: int
    lo: int
    hi: int


@dataclass(frozen=True)
class Residual:
    """clamp(round_shift(src[i, j] * m_src + v * m_new, s), lo, hi): v is the step's requantized value.

    With `row` and `col` set, every output adds the one element src[row, col] instead (the forecast head's
    last-value skip: the model forecasts the change from the last observed target).
    """
    src: str
    m_src: int
    m_new: int
    s: int
    lo: int
    hi: int
    row: int | None = None
    col: int | None = None


@dataclass(frozen=True)
class Affine:
    """clamp(round_shift(v * m[j] + b[j], s), lo, hi): a folded BatchNorm; m and b name tensors."""
    m: str
    b: str
    s: int
    lo: int
    hi: int


@dataclass(frozen=True)
class LinearStep:
    name: str
    x: str                       # buffer name, or ONES
    w: str                       # tensor name (ROM) or buffer name
    out: str
    rows: int
    k_len: int
    cols: int
    x_col: int = 0               # first column of X used (a head's slice)
    x_flat: bool = False         # read buffer X as one row: X[0, k] = buf[k // buf.cols, k % buf.cols]
    w_row: int = 0               # first row of W used
    w_col: int = 0               # first column of W used
    out_col: int = 0             # first column written
    out_transposed: bool = False
    bias: str | None = None      # tensor of shape (cols,) or (rows, cols), at accumulator scale
    requant: Requant | None = None
    lut: str | None = None       # tensor indexed by (code - requant.lo)
    lut_range: tuple[int, int] | None = None   # the code range of the table's output
    residual: Residual | None = None
    affine: Affine | None = None
    kind: str = field(default="linear")


@dataclass(frozen=True)
class SoftmaxStep:
    name: str
    src: str
    out: str
    rows: int
    cols: int
    method: str                  # "lut" or "poly"
    out_bits: int
    table: str | None = None     # method "lut": tensor of 2^bits exponentials
    c: int = 0                   # method "poly": log2(e) * scale constant
    kind: str = field(default="softmax")


@dataclass(frozen=True)
class LayerNormStep:
    name: str
    src: str
    out: str
    rows: int
    cols: int
    g: str                       # tensors: per-channel gamma, beta at the output shift's scale
    b: str
    s: int
    eps: int
    lo: int
    hi: int
    kind: str = field(default="layernorm")


Step = LinearStep | SoftmaxStep | LayerNormStep
STEP_TYPES = {"linear": LinearStep, "softmax": SoftmaxStep, "layernorm": LayerNormStep}
NESTED = {"requant": Requant, "residual": Residual, "affine": Affine}


@dataclass
class IntProgram:
    """An exported integer model: buffers, constant tensors, and the steps in order."""
    buffers: dict[str, Buffer]
    tensors: dict[str, np.ndarray]
    steps: list[Step]
    output: str                  # the buffer holding the forecast (raw accumulators, 1 x horizon)
    output_scale: float          # forecast (scaled units) = output word * output_scale
    input_scale: float           # input code = clamp(round(x_scaled / input_scale))
    series_tokens: bool = False  # x holds one row per input series (the window transposed)

    # ---------------------------------------------------------------- (de)serialization of the structure
    def structure(self) -> dict:
        """Everything but the tensors, as JSON-serializable data."""
        return {
            "buffers": [asdict(b) for b in self.buffers.values()],
            "steps": [asdict(s) for s in self.steps],
            "output": self.output,
            "output_scale": self.output_scale,
            "input_scale": self.input_scale,
            "series_tokens": self.series_tokens,
        }

    @classmethod
    def from_structure(cls, data: dict, tensors: dict[str, np.ndarray]) -> "IntProgram":
        buffers = {b["name"]: Buffer(**b) for b in data["buffers"]}
        steps = []
        for raw in data["steps"]:
            raw = dict(raw)
            for key, typ in NESTED.items():
                if raw.get(key) is not None:
                    raw[key] = typ(**raw[key])
            if raw.get("lut_range") is not None:
                raw["lut_range"] = tuple(raw["lut_range"])
            steps.append(STEP_TYPES[raw["kind"]](**raw))
        return cls(buffers, tensors, steps, data["output"], float(data["output_scale"]),
                   float(data["input_scale"]), bool(data.get("series_tokens", False)))

    # ------------------------------------------------------------------------------------- summaries
    @property
    def input(self) -> Buffer:
        return self.buffers["x"]

    def macs(self) -> int:
        """Multiply-accumulates of one inference: the linear steps' rows x k x cols (mean pooling, a sum of
        ones times codes, is not counted: it has no multiplies)."""
        return sum(s.rows * s.k_len * s.cols for s in self.steps if isinstance(s, LinearStep) and s.x != ONES)
