"""Random but valid integer programs in the shape of `model.export.to_program`, without training a model.

`random_program` builds the same buffers and steps as the exporter (names included) with random integer
weights in range and requantization constants that keep activations lively (neither all saturated nor all
zero), then runs the integer reference once to check that the program is well formed. The accelerator
tests and benchmarks use it; so can anyone who needs a program of a given shape quickly.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from intformer.model import intops
from intformer.model.intref import run_program
from intformer.model.program import (ONES, Affine, ArgmaxStep, Buffer, IntProgram, LayerNormStep, LinearStep, Requant,
                           Residual, SoftmaxStep)


def _shift_for(max_ratio: float) -> int:
    """The shift that puts the largest ratio into a 15-bit multiplier (as the exporter chooses it)."""
    _, exp = math.frexp(max_ratio)
    return int(min(62, max(1, intops.MULT_BITS - exp)))


class _Builder:
    def __init__(self, rng: np.random.Generator, bits: int):
        self.rng, self.bits = rng, bits
        self.buffers: dict[str, Buffer] = {}
        self.tensors: dict[str, np.ndarray] = {}
        self.steps: list = []

    def buffer(self, name: str, rows: int, cols: int, signed: bool = True, bits: int | None = None) -> str:
        self.buffers[name] = Buffer(name, rows, cols, self.bits if bits is None else bits, signed)
        return name

    def tensor(self, name: str, value) -> str:
        self.tensors[name] = np.asarray(value, dtype=np.int64)
        return name

    def weights(self, name: str, k: int, cols: int) -> str:
        lo, hi = intops.weight_range(self.bits)
        return self.tensor(name, self.rng.integers(lo, hi + 1, (k, cols)))

    def bias(self, name: str, shape, k: int) -> str:
        """A bias at accumulator scale, about as large as the accumulator of k products."""
        span = int(math.sqrt(k) * (1 << (2 * self.bits - 3))) + 1
        return self.tensor(name, self.rng.integers(-span, span + 1, shape))

    def requant(self, k: int, out: str, gain: float = 1.0) -> Requant:
        """Constants for an accumulator of k products of codes into the code range of buffer `out`."""
        ratio = gain * float(self.rng.uniform(0.5, 4.0)) / (math.sqrt(k) * (1 << self.bits))
        m, s = intops.quantize_multiplier(ratio)
        lo, hi = self.buffers[out].range
        return Requant(m, s, lo, hi)

    def residual(self, src: str, out: str) -> Residual:
        r_src, r_new = (float(v) for v in self.rng.uniform(0.3, 1.2, 2))
        s = _shift_for(max(r_src, r_new))
        lo, hi = self.buffers[out].range
        return Residual(src, int(math.floor(r_src * 2 ** s + 0.5)), int(math.floor(r_new * 2 ** s + 0.5)), s, lo, hi)

    def affine(self, prefix: str, out: str, d: int) -> Affine:
        """A folded BatchNorm: signed per-channel multipliers (a negative gamma flips the sign) and shifts."""
        ratio = self.rng.uniform(0.4, 1.5, d) * np.where(self.rng.random(d) < 0.15, -1, 1)
        s = _shift_for(float(np.abs(ratio).max()))
        m = np.floor(ratio * 2 ** s + 0.5)
        b = np.floor(self.rng.uniform(-0.25, 0.25, d) * (1 << self.bits) * 2 ** s + 0.5)
        lo, hi = self.buffers[out].range
        return Affine(self.tensor(prefix + ".m", m), self.tensor(prefix + ".b", b), s, lo, hi)

    def layernorm(self, name: str, src: str, out: str, rows: int, d: int) -> LayerNormStep:
        out_scale = 2.0 / (1 << self.bits)                      # about +-2 standard deviations in range
        g_ratio = self.rng.uniform(0.5, 1.5, d) / out_scale / 2 ** intops.LN_FRAC_BITS
        s = _shift_for(float(g_ratio.max()))
        g = np.floor(g_ratio * 2 ** s + 0.5)
        b = np.floor(self.rng.uniform(-0.3, 0.3, d) / out_scale * 2 ** s + 0.5)
        in_scale = 4.0 / (1 << self.bits)
        eps = int(min(2 ** 40, math.floor(1e-5 / in_scale ** 2 * d ** 4 + 0.5)))
        lo, hi = self.buffers[out].range
        return LayerNormStep(name, src, out, rows, d, self.tensor(name + ".g", g), self.tensor(name + ".b", b),
                             s, eps, lo, hi)


def random_program(rng: np.random.Generator, n: int = 24, m: int = 1, d: int = 16, heads: int = 1, ffn: int = 64,
                   horizon: int = 1, bits: int = 8, norm: str = "batch", activation: str = "relu",
                   softmax: str = "lut", pooling: str = "mean", layers: int = 1, skip: bool = False,
                   input_bits: int | None = None, classes: int = 0, ties: str | None = None) -> IntProgram:
    """A valid IntProgram of a Transformer encoder forecaster with random weights (see the module doc).

    n tokens of m inputs, width d, `heads` heads, FFN width `ffn`, `horizon` outputs, every tensor `bits`
    bits; norm "batch" (folded into the residual steps) or "layer" (LayerNorm steps); activation "relu"
    (requantization to unsigned codes) or "gelu" (signed requantization and a look-up table); softmax
    "lut" or "poly"; pooling "mean" (a constant-1 operand) or "flatten" (the head reads the whole buffer).
    With `skip` the head is the exporter's last-value skip: the accumulator is requantized to a 16-bit code
    and added (a residual of one fixed element) to the last input of the last series, into 16-bit codes;
    without it the output buffer holds the raw accumulators. With `input_bits` (say 10 or 12) the input
    codes `x` are that wide and the exporter's level steps come first ("level.last" copies the last row into
    `xl`, "level.center" writes xc = clamp(round_shift((x - last) * m, 14)) at `bits` bits), so the embedding
    reads `xc`, as a model trained with `--io-bits` over 8 and level removal does.

    With `classes` = C (>= 2) it is a classifier, as the exporter writes one: the head writes C raw scores
    into the output buffer's columns 0..C-1 and a final `ArgmaxStep` the class into column C (`horizon` and
    `skip` do not apply). `ties` forces equal scores: "duplicate" gives each odd class the weights and bias
    of the class before it (the two always tie: the even one must win), "zero" gives the head zero weights
    and one bias for all (every class ties with every other: class 0 must win).
    """
    if classes:
        if classes < 2 or skip:
            raise ValueError("a classifier needs classes >= 2 and no skip head")
        horizon = classes
    if ties not in (None, "duplicate", "zero"):
        raise ValueError(f"ties {ties!r}: None, 'duplicate' or 'zero'")
    if d % heads:
        raise ValueError(f"heads {heads} must divide d {d}")
    bld = _Builder(rng, bits)
    dh = d // heads
    bld.buffer("x", n, m, bits=input_bits)
    x_in = "x"
    if input_bits is not None:
        x_lo, x_hi = bld.buffers["x"].range
        ident = Requant(1 << 14, 14, x_lo, x_hi)                  # codes to the same codes
        xl = bld.buffer("xl", 1, m, bits=input_bits)
        x_in = bld.buffer("xc", n, m)
        scale = 1 << min(14, 13 + bits - input_bits)             # x - last, +-2^input_bits, to about xc's range
        res = Residual("x", scale, -scale, 14, *bld.buffers[x_in].range)
        bld.steps.append(LinearStep("level.last", ONES, "x", xl, 1, 1, m, w_row=n - 1, requant=ident))
        bld.steps.append(LinearStep("level.center", ONES, xl, x_in, n, 1, m, requant=ident, residual=res))
    h = bld.buffer("h", n, d)
    bld.steps.append(LinearStep("embed", x_in, bld.weights("embed.w", m, d), h, n, m, d,
                                bias=bld.bias("embed.b", (n, d), m), requant=bld.requant(m, h, 0.7)))

    for i in range(layers):
        p = f"l{i}."

        def linear(tag, src, out, k, cols, **kw):
            return LinearStep(p + tag, src, bld.weights(p + tag + ".w", k, cols), out, n, k, cols,
                              bias=bld.bias(p + tag + ".b", (cols,), k), requant=bld.requant(k, out), **kw)

        q, kt, v = bld.buffer(p + "q", n, d), bld.buffer(p + "kt", d, n), bld.buffer(p + "v", n, d)
        bld.steps.append(linear("q", h, q, d, d))
        bld.steps.append(linear("kt", h, kt, d, d, out_transposed=True))
        bld.steps.append(linear("v", h, v, d, d))
        s_buf, a_buf, ctx = bld.buffer(p + "s", n, n), bld.buffer(p + "a", n, n, signed=False), bld.buffer(p + "ctx", n, d)
        s_scale = float(rng.uniform(2.0, 8.0)) / (1 << bits)    # scores span a few units of exp
        if softmax == "lut":
            sm = dict(method="lut", table=bld.tensor(p + "exp", intops.softmax_lut_table(bits, s_scale)))
        else:
            sm = dict(method="poly", c=intops.softmax_poly_constant(s_scale))
        score_rq = bld.requant(dh, s_buf, 2.0)
        ctx_rq = bld.requant(n, ctx, 2.0)
        for hd in range(heads):
            c0 = hd * dh
            bld.steps.append(LinearStep(f"{p}h{hd}.scores", q, kt, s_buf, n, dh, n, x_col=c0, w_row=c0,
                                        requant=score_rq))
            bld.steps.append(SoftmaxStep(f"{p}h{hd}.softmax", s_buf, a_buf, n, n, out_bits=bits, **sm))
            bld.steps.append(LinearStep(f"{p}h{hd}.ctx", a_buf, v, ctx, n, n, dh, w_col=c0, out_col=c0,
                                        requant=ctx_rq))

        def residual_norm(tag, src, k, res_src, idx):
            if norm == "batch":
                out = bld.buffer(p + f"n{idx}", n, d)
                return out, [linear(tag, src, out, k, d, residual=bld.residual(res_src, out),
                                    affine=bld.affine(p + tag + ".bn", out, d))]
            r_out = bld.buffer(p + f"r{idx}", n, d)
            out = bld.buffer(p + f"n{idx}", n, d)
            return out, [linear(tag, src, r_out, k, d, residual=bld.residual(res_src, r_out)),
                         bld.layernorm(p + tag + ".ln", r_out, out, n, d)]

        n1, steps = residual_norm("o", ctx, d, h, 1)
        bld.steps += steps
        if activation == "relu":
            f = bld.buffer(p + "ffn1", n, ffn, signed=False)
            bld.steps.append(linear("ffn1", n1, f, d, ffn))
        else:
            f = bld.buffer(p + "ffn1", n, ffn)
            z_lo, z_hi = intops.code_range(bits)
            z_scale, f_scale = 6.0 / (1 << bits), 4.0 / (1 << bits)
            codes = np.arange(z_lo, z_hi + 1, dtype=np.float64) * z_scale
            gelu = 0.5 * codes * (1 + np.tanh(math.sqrt(2 / math.pi) * (codes + 0.044715 * codes ** 3)))
            lut = np.clip(np.floor(gelu / f_scale + 0.5), *bld.buffers[f].range)
            step = linear("ffn1", n1, f, d, ffn, lut=bld.tensor(p + "gelu", lut), lut_range=bld.buffers[f].range)
            rq = step.requant
            bld.steps.append(dataclasses.replace(step, requant=Requant(rq.m, rq.s, z_lo, z_hi)))
        h, steps = residual_norm("ffn2", f, ffn, n1, 2)
        bld.steps += steps

    if pooling == "mean":
        pooled = bld.buffer("pool", 1, d)
        pool_rq = Requant(*intops.quantize_multiplier(float(rng.uniform(0.7, 1.5)) / n), *bld.buffers[pooled].range)
        bld.steps.append(LinearStep("pool", ONES, h, pooled, 1, n, d, requant=pool_rq))
        head_x, flat, k = pooled, False, d
    else:
        head_x, flat, k = h, True, n * d
    w = bld.weights("head.w", k, horizon)
    b = bld.bias("head.b", (horizon,), k)
    if skip:
        q16 = intops.code_range(16)
        acc_mag = math.sqrt(k) * (1 << (2 * bits - 2))
        head_rq = Requant(*intops.quantize_multiplier(min(float(rng.uniform(0.5, 2.0)) * 2 ** 13 / acc_mag, 2 ** 13)),
                          *q16)
        r_src, r_new = float(rng.uniform(0.5, 1.0)) * 2 ** (15 - bld.buffers["x"].bits), float(rng.uniform(0.3, 1.0))
        sh = _shift_for(max(r_src, r_new))
        res = Residual("x", int(math.floor(r_src * 2 ** sh + 0.5)), int(math.floor(r_new * 2 ** sh + 0.5)), sh, *q16,
                       row=n - 1, col=m - 1)
        bld.buffer("out", 1, horizon, bits=16)
        bld.steps.append(LinearStep("head", head_x, w, "out", 1, k, horizon, x_flat=flat, bias=b, requant=head_rq,
                                    residual=res))
        program = IntProgram(bld.buffers, bld.tensors, bld.steps, "out", 1.0 / (1 << 12), 1.0 / (1 << (bits - 2)))
        run_program(program, random_inputs(rng, program, 1))
        return program
    if classes:                      # a smaller head bias: the class follows the input more often
        bld.tensors[b] //= 8
    if classes and ties == "duplicate":
        bld.tensors[w][:, 1::2] = bld.tensors[w][:, 0:classes - classes % 2:2]
        bld.tensors[b][1::2] = bld.tensors[b][0:classes - classes % 2:2]
    elif classes and ties == "zero":
        bld.tensors[w][:] = 0
        bld.tensors[b][:] = bld.tensors[b][0]
    lo, hi = intops.mac_bound(k, bld.buffers[head_x].range, intops.weight_range(bits), int(np.abs(bld.tensors[b]).max()))
    out_bits = max(intops.bits_signed(lo, hi), intops.bits_signed(0, classes - 1) if classes else 1)
    bld.buffers["out"] = Buffer("out", 1, horizon + (1 if classes else 0), out_bits, True)
    bld.steps.append(LinearStep("head", head_x, w, "out", 1, k, horizon, x_flat=flat, bias=b))
    if classes:
        bld.steps.append(ArgmaxStep("argmax", "out", "out", 1, classes, classes))
    program = IntProgram(bld.buffers, bld.tensors, bld.steps, "out", 1.0 / (1 << bits), 1.0 / (1 << (bits - 2)))
    run_program(program, random_inputs(rng, program, 1))             # a malformed program fails here
    return program


def random_inputs(rng: np.random.Generator, program: IntProgram, batch: int) -> np.ndarray:
    """Input codes (batch, rows, cols) over the x buffer's code range, extremes included."""
    x = program.input
    lo, hi = x.range
    codes = rng.integers(lo, hi + 1, (batch, x.rows, x.cols))
    codes.reshape(-1)[: min(2, codes.size)] = [lo, hi][: min(2, codes.size)]
    return codes


def activity(program: IntProgram, x_codes: np.ndarray) -> dict[str, float]:
    """Per step, the fraction of written codes that sit at a clamp bound (a sanity check of the constants)."""
    _, trace = run_program(program, x_codes, trace=True)
    result = {}
    for name, buf, value in trace:
        b = program.buffers[buf]
        if name == "head":
            continue
        lo, hi = b.range
        result[name] = float(np.mean((value == lo) | (value == hi)))
    return result
