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

A classifier's program ends with one more step, `ArgmaxStep`: the index of its largest score, written into
the output buffer after the C scores (so the output words are the C scores, then the class), computed by
the accelerator on the chip and by `intops.argmax_first` in the reference. An anomaly detector's ends with
`DetectStep`: after its C forecast errors, the score (the sum of their magnitudes) and the flag (score > T),
computed on the chip and by `intops.anomaly_score` / `intops.anomaly_flag`.
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
    last-value skip: the model forecasts the change from the last observed target). With only `row` set (a
    step of one output row), output j adds src[row, out_col + j]: the detector's error against the actual
    next row of its input (row n of x, or of its level-centred copy).
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


@dataclass(frozen=True)
class ArgmaxStep:
    """out[0, out_col] = intops.argmax_first(src[0, :cols]): the class whose score is largest, the first
    (lowest index) of equal largest scores. A classifier's last step: src and out are the output buffer,
    whose first `cols` words are the scores and whose word `out_col` (= cols) is the class."""
    name: str
    src: str
    out: str
    rows: int                    # always 1: one score vector per window
    cols: int                    # C, the number of classes
    out_col: int
    kind: str = field(default="argmax")


@dataclass(frozen=True)
class DetectStep:
    """An anomaly detector's last step, over its output buffer's first `cols` words (the C forecast errors):
    out[0, out_col] = intops.anomaly_score(errors) = sum_j |error_j|, and out[0, out_col + 1] =
    intops.anomaly_flag(score, threshold) = 1 if score > threshold else 0. `threshold` is the integer
    constant chosen on normal validation windows (`model.anomaly_metrics.quantile_threshold`).

    `decay` > 0 smooths the score over consecutive windows: the score word is then the integer EWMA
    `intops.score_ewma` of the windows' row scores (s_t = s_(t-1) - floor(s_(t-1) / 2^decay) + sum_j |error_j|),
    and the flag is s_t > threshold. That is state across windows: the reference runs a batch as one
    stream (`model.intref.run_program`'s `segments` mark where streams restart), the chip keeps s in its
    scorer, cleared on reset and, on a board, by INFO. decay = 0: each window alone (files without it)."""
    name: str
    src: str
    out: str
    rows: int                    # always 1: one error vector per window
    cols: int                    # C, the channels forecast
    out_col: int                 # the score's column (= cols); the flag is the next one
    threshold: int
    kind: str = field(default="detect")
    decay: int = 0               # the score's EWMA shift (0: no smoothing)


MAX_SCORE_DECAY = 12     # a detector's EWMA shift: a time constant of up to 4,096 windows
FINAL_STEPS = (ArgmaxStep, DetectStep)   # a program's last step that the output port computes, not the datapath
Step = LinearStep | SoftmaxStep | LayerNormStep | ArgmaxStep | DetectStep
STEP_TYPES = {"linear": LinearStep, "softmax": SoftmaxStep, "layernorm": LayerNormStep, "argmax": ArgmaxStep,
              "detect": DetectStep}
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

    def check(self) -> "IntProgram":
        """Raise ValueError naming the first inconsistency: a step that reads or writes outside its buffers,
        a missing or misshapen tensor, a shift or range out of bounds. The loader runs it, so that a hand-edited
        (or corrupt and re-checksummed) file is refused instead of failing later inside the reference or the
        hardware generator."""
        _check_program(self)
        return self

    # ------------------------------------------------------------------------------------- summaries
    @property
    def input(self) -> Buffer:
        return self.buffers["x"]

    @property
    def stateful(self) -> bool:
        """Whether a window's words depend on the windows before it: a detector whose score is smoothed
        (`DetectStep.decay` > 0). Such a batch is one stream: it cannot be cut into shares that start from
        reset in parallel."""
        return bool(self.steps) and isinstance(self.steps[-1], DetectStep) and self.steps[-1].decay > 0

    def macs(self) -> int:
        """Multiply-accumulates of one inference: the linear steps' rows x k x cols (mean pooling, a sum of
        ones times codes, is not counted: it has no multiplies)."""
        return sum(s.rows * s.k_len * s.cols for s in self.steps if isinstance(s, LinearStep) and s.x != ONES)


# ----------------------------------------------------------------------------------------- consistency

_MAX_DIM = 1 << 16


def _need(ok: bool, what: str) -> None:
    if not ok:
        raise ValueError(what)


def _is_int(v, lo: int | None = None, hi: int | None = None) -> bool:
    return (isinstance(v, (int, np.integer)) and not isinstance(v, bool)
            and (lo is None or v >= lo) and (hi is None or v <= hi))


def _check_clamp(where: str, s, lo, hi) -> None:
    _need(_is_int(s, 0, 62), f"{where}: shift {s!r} outside 0..62")
    _need(_is_int(lo, -(1 << 62), 1 << 62) and _is_int(hi, -(1 << 62), 1 << 62) and lo <= hi,
          f"{where}: clamp range {lo!r}..{hi!r} is not a range")


def _error_range(p: IntProgram, st: DetectStep, src: Buffer) -> tuple[int, int]:
    """The range of a detector's errors: the clamp of the step before it that writes them (its residual's,
    else its requantization's), else the buffer's code range."""
    prev = p.steps[-2] if len(p.steps) >= 2 else None
    if isinstance(prev, LinearStep) and prev.out == st.src and (prev.residual or prev.requant):
        c = prev.residual or prev.requant
        return c.lo, c.hi
    return src.range


def _check_program(p: IntProgram) -> None:
    bufs, tens = p.buffers, p.tensors
    _need("x" in bufs and p.output in bufs, "the input buffer x or the output buffer is missing")
    for name, b in bufs.items():
        _need(isinstance(b, Buffer) and b.name == name, f"buffer {name!r}: malformed")
        _need(_is_int(b.rows, 1, _MAX_DIM) and _is_int(b.cols, 1, _MAX_DIM) and _is_int(b.bits, 1, 64)
              and isinstance(b.signed, bool), f"buffer {name!r}: rows, cols, bits or signed out of range")
    _need(bufs[p.output].rows == 1, f"the output buffer {p.output!r} must have one row")
    for name, t in tens.items():
        _need(isinstance(t, np.ndarray) and t.dtype == np.int64 and t.size <= 1 << 24, f"tensor {name!r}: malformed")
    for scale in (p.output_scale, p.input_scale):
        _need(np.isfinite(scale) and scale > 0, f"scale {scale!r} is not a positive number")

    def tensor(where, name, shape=None, ndim=None):
        _need(isinstance(name, str) and name in tens, f"{where}: no tensor {name!r}")
        t = tens[name]
        _need(shape is None or tuple(t.shape) == tuple(shape), f"{where}: tensor {name!r} has shape "
              f"{tuple(t.shape)}, expected {tuple(shape) if shape else ''}")
        _need(ndim is None or t.ndim == ndim, f"{where}: tensor {name!r} has {t.ndim} dimensions, expected {ndim}")
        return t

    def buffer(where, name):
        _need(isinstance(name, str) and name in bufs, f"{where}: no buffer {name!r}")
        return bufs[name]

    for st in p.steps:
        where = f"step {getattr(st, 'name', '?')!r}"
        _need(isinstance(st, (LinearStep, SoftmaxStep, LayerNormStep, ArgmaxStep, DetectStep))
              and isinstance(st.name, str), f"{where}: malformed")
        _need(_is_int(st.rows, 1, _MAX_DIM) and _is_int(st.cols, 1, _MAX_DIM), f"{where}: rows or cols out of range")
        if isinstance(st, ArgmaxStep):
            src, out = buffer(where, st.src), buffer(where, st.out)
            _need(st.rows == 1 and st.cols >= 2 and st.cols <= src.cols, f"{where}: argmax over 1 x {st.cols} "
                  f"scores of buffer {st.src!r} (1 x {src.cols})")
            _need(_is_int(st.out_col, 0, out.cols - 1), f"{where}: class column {st.out_col!r} outside {st.out!r}")
            _need(st.out != st.src or st.out_col >= st.cols, f"{where}: the class overwrites a score")
            _need(st is p.steps[-1], f"{where}: argmax must be the program's last step")
            continue
        if isinstance(st, DetectStep):
            src, out = buffer(where, st.src), buffer(where, st.out)
            _need(st.rows == 1 and st.cols <= src.cols, f"{where}: a score over 1 x {st.cols} errors of buffer "
                  f"{st.src!r} (1 x {src.cols})")
            _need(_is_int(st.out_col, 0, out.cols - 2), f"{where}: score and flag columns {st.out_col!r}, "
                  f"{st.out_col + 1!r} outside {st.out!r}")
            _need(st.out != st.src or st.out_col >= st.cols, f"{where}: the score overwrites an error")
            _need(_is_int(st.threshold, 0, (1 << 62)), f"{where}: threshold {st.threshold!r} is not an integer >= 0")
            _need(_is_int(st.decay, 0, MAX_SCORE_DECAY), f"{where}: score decay {st.decay!r} outside "
                  f"0..{MAX_SCORE_DECAY}")
            lo, hi = _error_range(p, st, src)
            score_max = intops.score_bound(st.cols * max(-lo, hi), st.decay)
            _need(out.signed and intops.bits_signed(0, score_max) <= out.bits,
                  f"{where}: buffer {st.out!r} of {out.bits} bits cannot hold the score")
            _need(st is p.steps[-1], f"{where}: the detector's score must be the program's last step")
            continue
        if isinstance(st, LinearStep):
            for f in ("x_col", "w_row", "w_col", "out_col"):
                _need(_is_int(getattr(st, f), 0, _MAX_DIM), f"{where}: {f} {getattr(st, f)!r} out of range")
            for f in ("x_flat", "out_transposed"):
                _need(isinstance(getattr(st, f), bool), f"{where}: {f} is not true or false")
            _need(_is_int(st.k_len, 1, 1 << 20), f"{where}: k_len {st.k_len!r} out of range")
            if st.x != ONES:
                xb = buffer(where, st.x)
                if st.x_flat:
                    _need(st.rows == 1 and st.k_len <= xb.rows * xb.cols, f"{where}: reads past buffer {st.x!r}")
                else:
                    _need(st.rows <= xb.rows and st.x_col + st.k_len <= xb.cols, f"{where}: reads past buffer {st.x!r}")
            if isinstance(st.w, str) and st.w in tens:
                w = tensor(where, st.w, ndim=2)
                w_rows, w_cols = w.shape
            else:
                wb = buffer(where, st.w)
                w_rows, w_cols = wb.rows, wb.cols
            _need(st.w_row + st.k_len <= w_rows and st.w_col + st.cols <= w_cols, f"{where}: reads past W {st.w!r}")
            ob = buffer(where, st.out)
            if st.out_transposed:
                _need(st.out_col + st.cols <= ob.rows and st.rows <= ob.cols, f"{where}: writes past buffer {st.out!r}")
            else:
                _need(st.rows <= ob.rows and st.out_col + st.cols <= ob.cols, f"{where}: writes past buffer {st.out!r}")
            if st.bias is not None:
                b = tensor(where, st.bias)
                _need(tuple(b.shape) in ((st.cols,), (st.rows, st.cols)), f"{where}: bias {st.bias!r} has shape "
                      f"{tuple(b.shape)}")
            rq = st.requant
            if rq is not None:
                _need(isinstance(rq, Requant) and _is_int(rq.m, -(1 << 31), 1 << 31), f"{where}: malformed requantization")
                _check_clamp(where, rq.s, rq.lo, rq.hi)
            _need(rq is not None or (st.lut is None and st.residual is None and st.affine is None),
                  f"{where}: a table, residual or affine needs a requantization")
            if st.lut is not None:
                tensor(where, st.lut, shape=(rq.hi - rq.lo + 1,))
                _need(st.lut_range is not None and len(st.lut_range) == 2
                      and _is_int(st.lut_range[0]) and _is_int(st.lut_range[1]) and st.lut_range[0] <= st.lut_range[1],
                      f"{where}: malformed table range")
            r = st.residual
            if r is not None:
                _need(isinstance(r, Residual) and _is_int(r.m_src, -(1 << 31), 1 << 31)
                      and _is_int(r.m_new, -(1 << 31), 1 << 31), f"{where}: malformed residual")
                _check_clamp(where, r.s, r.lo, r.hi)
                src = buffer(where, r.src)
                if r.row is not None and r.col is None:
                    _need(_is_int(r.row, 0, src.rows - 1) and st.rows == 1 and not st.out_transposed
                          and st.out_col + st.cols <= src.cols, f"{where}: residual row {r.row!r} of buffer "
                          f"{r.src!r} does not hold the step's {st.cols} outputs")
                elif r.row is not None or r.col is not None:
                    _need(_is_int(r.row, 0, src.rows - 1) and _is_int(r.col, 0, src.cols - 1),
                          f"{where}: residual element outside buffer {r.src!r}")
                else:
                    _need(st.rows <= src.rows and st.out_col + st.cols <= src.cols and not st.out_transposed,
                          f"{where}: residual reads past buffer {r.src!r}")
            a = st.affine
            if a is not None:
                _need(isinstance(a, Affine), f"{where}: malformed affine")
                for t in (a.m, a.b):
                    tensor(where, t, shape=(st.cols,))
                _check_clamp(where, a.s, a.lo, a.hi)
        else:
            src, out = buffer(where, st.src), buffer(where, st.out)
            _need(st.rows <= min(src.rows, out.rows) and st.cols <= min(src.cols, out.cols),
                  f"{where}: reads or writes past its buffers")
            if isinstance(st, SoftmaxStep):
                _need(st.method in ("lut", "poly") and _is_int(st.out_bits, 1, 32) and _is_int(st.c, 0, 1 << 31),
                      f"{where}: malformed softmax")
                if st.method == "lut":
                    tensor(where, st.table, ndim=1)
                    _need(tens[st.table].size >= 1, f"{where}: empty exponential table")
                else:
                    _need(st.table is None, f"{where}: a polynomial softmax names a table ({st.table!r})")
            else:
                for t in (st.g, st.b):
                    tensor(where, t, shape=(st.cols,))
                _check_clamp(where, st.s, st.lo, st.hi)
                _need(_is_int(st.eps, 0, 1 << 62), f"{where}: eps {st.eps!r} out of range")
