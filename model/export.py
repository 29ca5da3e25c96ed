"""From a trained QAT model to its integer program (`to_program`), and the export file that carries it.

Every integer constant is derived here once, from the fake-quant scales: weight codes, biases at
accumulator scale, requantization multipliers and shifts, folded BatchNorm, LayerNorm gamma/beta, the
softmax and GELU tables.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from . import intops
from .program import (ONES, Affine, ArgmaxStep, Buffer, DetectStep, IntProgram, LayerNormStep, LinearStep, Requant, Residual,
                      SoftmaxStep)
from .qat import (ActQuant, QATForecaster, QuantLinear, affine_constants, error_constants, requant_constants,
                  layernorm_constants, level_constants, residual_constants)


def _weights(lin: QuantLinear) -> np.ndarray:
    """Weight codes as (fan_in, fan_out): the layout the program's W operand uses."""
    sw = float(lin.weight_scale())
    w = lin.weight.detach().double().numpy() / sw
    return np.clip(np.floor(w + 0.5), -lin.qmax, lin.qmax).astype(np.int64).T.copy()


def _bias(bias: torch.Tensor, acc_scale: float) -> np.ndarray:
    return np.floor(bias.detach().double().numpy() / acc_scale + 0.5).astype(np.int64)


def _requant(in_scale: float, q: ActQuant) -> Requant:
    return requant_constants(in_scale, q.scale, q.lo, q.hi)


def _buf(name: str, rows: int, cols: int, q: ActQuant) -> Buffer:
    return Buffer(name, rows, cols, q.bits, q.signed)


def _residual(src: str, s_src: float, s_new: float, q: ActQuant) -> Residual:
    return residual_constants(src, s_src, s_new, q.scale, q.lo, q.hi)


class _Builder:
    def __init__(self):
        self.buffers: dict[str, Buffer] = {}
        self.tensors: dict[str, np.ndarray] = {}
        self.steps: list = []

    def buffer(self, b: Buffer) -> str:
        self.buffers[b.name] = b
        return b.name

    def tensor(self, name: str, value: np.ndarray) -> str:
        self.tensors[name] = np.asarray(value, dtype=np.int64)
        return name


def _norm_affine(bld: _Builder, prefix: str, norm, s_in: float, q_out: ActQuant) -> Affine:
    """Folded BatchNorm: y = a * x + c per channel, as clamp(round_shift(x * m + b, s))."""
    m, b, s = affine_constants(*norm.affine(), s_in, q_out.scale)
    m, b = m.numpy(), b.numpy()
    return Affine(bld.tensor(prefix + ".m", m), bld.tensor(prefix + ".b", b), s, q_out.lo, q_out.hi)


def _layernorm(bld: _Builder, name: str, src: str, out: str, rows: int, norm, s_in: float,
               q_out: ActQuant) -> LayerNormStep:
    g, b, s, eps = layernorm_constants(norm.ln, s_in, q_out.scale)
    return LayerNormStep(name, src, out, rows, norm.ln.normalized_shape[0], bld.tensor(name + ".g", g.numpy()),
                         bld.tensor(name + ".b", b.numpy()), s, eps, q_out.lo, q_out.hi)


def _level_steps(bld: _Builder, model: QATForecaster) -> str:
    """Level removal, xc = x - last (each series' last observed value), in two linear steps that the MAC array
    runs as copies (k = 1, weight 1, identity requantization):

    * "level.last" copies the last value of each series into `xl`;
    * "level.center" broadcasts `xl` over the window and adds x as a residual with m_src = -m_new, so that
      xc = clamp(round_shift((x - last) * m, s)): one rounding, at the scale of `xc`.

    Time tokens (x is n x m): last = x[n-1, :], taken by the ones operand against row n-1 of x, and
    broadcast over rows by the ones operand against xl (1 x m). Series tokens (x is m x n): last = x[:, n-1],
    the X operand's column n-1 against a 1 x 1 weight, broadcast over columns by a 1 x n row of ones.
    """
    cfg, q_in = model.cfg, model.q_in
    rows, cols = cfg.input_rows, cfg.token_dim      # a detector's actual next row is centred too
    ident = _requant(q_in.scale, q_in)                  # codes to the same codes: m = 2^14, s = 14
    res = level_constants(q_in.scale, model.q_level)
    xc = bld.buffer(_buf("xc", rows, cols, model.q_level))
    if cfg.tokens == "time":
        xl = bld.buffer(_buf("xl", 1, cols, q_in))
        bld.steps.append(LinearStep("level.last", ONES, "x", xl, 1, 1, cols, w_row=cfg.window - 1, requant=ident))
        bld.steps.append(LinearStep("level.center", ONES, xl, xc, rows, 1, cols, requant=ident, residual=res))
    else:
        xl = bld.buffer(_buf("xl", rows, 1, q_in))
        bld.steps.append(LinearStep("level.last", "x", bld.tensor("level.one", np.ones((1, 1))), xl, rows, 1, 1,
                                    x_col=cols - 1, requant=ident))
        bld.steps.append(LinearStep("level.center", xl, bld.tensor("level.ones", np.ones((1, cols))), xc, rows, 1,
                                    cols, requant=ident, residual=res))
    return xc


@torch.no_grad()
def to_program(model: QATForecaster) -> IntProgram:
    """The integer program that the trained model computes (eval mode, quantization on)."""
    model.eval().settle()
    cfg = model.cfg
    t, d, dh = cfg.n_tokens, cfg.d_model, cfg.d_model // cfg.heads
    bld = _Builder()
    bld.buffer(_buf("x", cfg.input_rows, cfg.token_dim, model.q_in))

    s_x = model.q_in.scale
    embed_x, s_e = "x", s_x
    if model.q_level is not None:
        embed_x, s_e = _level_steps(bld, model), model.q_level.scale

    # input projection, with the positional encoding folded into a per-(token, channel) bias
    acc = model.embed.acc_scale(s_e)
    bld.tensor("embed.w", _weights(model.embed))
    bld.tensor("embed.b", _bias(model.embed.bias[None, :] + model.pos, acc))
    bld.steps.append(LinearStep("embed", embed_x, "embed.w", bld.buffer(_buf("h", t, d, model.q_h)), t,
                                cfg.token_dim, d, bias="embed.b", requant=_requant(acc, model.q_h)))
    h, s_h = "h", model.q_h.scale

    for i, L in enumerate(model.layers):
        p = f"l{i}."

        def linear(tag, lin, src, s_src, q, out_rows=t, **kw):
            a = lin.acc_scale(s_src)
            bld.tensor(p + tag + ".w", _weights(lin))
            bld.tensor(p + tag + ".b", _bias(lin.bias, a))
            return LinearStep(p + tag, src, p + tag + ".w", kw.pop("out"), out_rows, lin.in_features,
                              lin.out_features, bias=p + tag + ".b", requant=_requant(a, q), **kw), a

        for tag, lin, q, transposed in (("q", L.wq, L.q_q, False), ("kt", L.wk, L.q_k, True),
                                        ("v", L.wv, L.q_v, False)):
            shape = (d, t) if transposed else (t, d)
            out = bld.buffer(_buf(p + tag, *shape, q))
            bld.steps.append(linear(tag, lin, h, s_h, q, out=out, out_transposed=transposed)[0])

        bld.buffer(_buf(p + "s", t, t, L.q_s))
        bld.buffer(_buf(p + "a", t, t, L.q_a))
        bld.buffer(_buf(p + "ctx", t, d, L.q_ctx))
        score_rq = _requant(L.q_q.scale * L.q_k.scale / math.sqrt(dh), L.q_s)
        ctx_rq = _requant(L.q_a.scale * L.q_v.scale, L.q_ctx)
        if cfg.softmax == "lut":
            table = bld.tensor(p + "exp", intops.softmax_lut_table(L.q_s.bits, L.q_s.scale))
            sm = dict(method="lut", table=table)
        else:
            sm = dict(method="poly", c=intops.softmax_poly_constant(L.q_s.scale))
        for hd in range(cfg.heads):
            c0 = hd * dh
            bld.steps.append(LinearStep(f"{p}h{hd}.scores", p + "q", p + "kt", p + "s", t, dh, t,
                                        x_col=c0, w_row=c0, requant=score_rq))
            bld.steps.append(SoftmaxStep(f"{p}h{hd}.softmax", p + "s", p + "a", t, t,
                                         out_bits=L.q_a.bits, **sm))
            bld.steps.append(LinearStep(f"{p}h{hd}.ctx", p + "a", p + "v", p + "ctx", t, t, dh,
                                        w_col=c0, out_col=c0, requant=ctx_rq))

        def residual_norm(tag, lin, src, s_src, res_src, s_res, q_lin, q_r, norm, q_n):
            """lin -> requant (q_lin) -> residual with res_src (q_r) -> norm (q_n); returns the norm's buffer."""
            res = _residual(res_src, s_res, q_lin.scale, q_r)
            if cfg.norm == "batch":
                out = bld.buffer(_buf(p + ("n1" if tag == "o" else "n2"), t, d, q_n))
                affine = _norm_affine(bld, p + tag + ".bn", norm, q_r.scale, q_n)
                bld.steps.append(linear(tag, lin, src, s_src, q_lin, out=out, residual=res, affine=affine)[0])
                return out
            r_out = bld.buffer(_buf(p + ("r1" if tag == "o" else "r2"), t, d, q_r))
            bld.steps.append(linear(tag, lin, src, s_src, q_lin, out=r_out, residual=res)[0])
            out = bld.buffer(_buf(p + ("n1" if tag == "o" else "n2"), t, d, q_n))
            bld.steps.append(_layernorm(bld, p + tag + ".ln", r_out, out, t, norm, q_r.scale, q_n))
            return out

        n1 = residual_norm("o", L.wo, p + "ctx", L.q_ctx.scale, h, s_h, L.q_o, L.q_r1, L.norm1, L.q_n1)

        f = bld.buffer(_buf(p + "ffn1", t, cfg.ffn, L.q_f))
        if L.q_z is None:
            bld.steps.append(linear("ffn1", L.w1, n1, L.q_n1.scale, L.q_f, out=f)[0])
        else:
            codes = np.arange(L.q_z.lo, L.q_z.hi + 1, dtype=np.float64)
            gelu = torch.nn.functional.gelu(torch.tensor(codes * L.q_z.scale)).numpy()
            lut = np.clip(np.floor(gelu / L.q_f.scale + 0.5), L.q_f.lo, L.q_f.hi)
            bld.tensor(p + "gelu", lut)
            bld.steps.append(linear("ffn1", L.w1, n1, L.q_n1.scale, L.q_z, out=f, lut=p + "gelu",
                                    lut_range=(L.q_f.lo, L.q_f.hi))[0])
        h = residual_norm("ffn2", L.w2, f, L.q_f.scale, n1, L.q_n1.scale, L.q_f2, L.q_r2, L.norm2, L.q_n2)
        s_h = L.q_n2.scale

    if model.q_pool is not None:
        q = model.q_pool
        pooled = bld.buffer(_buf("pool", 1, d, q))
        bld.steps.append(LinearStep("pool", ONES, h, pooled, 1, t, d, requant=_requant(s_h / t, q)))
        s_p, head_x, flat, k = q.scale, pooled, False, d
    else:
        s_p, head_x, flat, k = s_h, h, True, t * d
    acc = model.head.acc_scale(s_p)
    bld.tensor("head.w", _weights(model.head))
    bld.tensor("head.b", _bias(model.head.bias, acc))
    if cfg.task == "detect":
        return _detector_head(bld, model, (head_x, flat, k), acc, (embed_x, s_e))
    if cfg.skip:
        # forecast = last observed target (an input code) + the head's output, both requantized to 16 bits
        last = (t - 1, cfg.target_index) if cfg.tokens == "time" else (cfg.target_index, cfg.window - 1)
        res = residual_constants("x", s_x, model.q_head.scale, model.q_out.scale, model.q_out.lo, model.q_out.hi)
        res = Residual(**{**res.__dict__, "row": last[0], "col": last[1]})
        bld.buffer(_buf("out", 1, cfg.horizon, model.q_out))
        bld.steps.append(LinearStep("head", head_x, "head.w", "out", 1, k, cfg.horizon, x_flat=flat, bias="head.b",
                                    requant=_requant(acc, model.q_head), residual=res))
        return IntProgram(bld.buffers, bld.tensors, bld.steps, "out", model.q_out.scale, s_x, cfg.tokens == "series")
    bias_max = int(np.abs(bld.tensors["head.b"]).max())
    lo, hi = intops.mac_bound(k, bld.buffers[head_x].range, intops.weight_range(model.head.bits), bias_max)
    n = cfg.outputs
    if cfg.task == "classify":
        # the C raw scores, then the class (ArgmaxStep) in word C: the words must also hold 0..C-1
        bld.buffers["out"] = Buffer("out", 1, n + 1, intops.bits_signed(min(lo, 0), max(hi, n - 1)), True)
        bld.steps.append(LinearStep("head", head_x, "head.w", "out", 1, k, n, x_flat=flat, bias="head.b"))
        bld.steps.append(ArgmaxStep("argmax", "out", "out", 1, n, out_col=n))
        return IntProgram(bld.buffers, bld.tensors, bld.steps, "out", acc, s_x, cfg.tokens == "series")
    bld.buffers["out"] = Buffer("out", 1, n, intops.bits_signed(lo, hi), True)
    bld.steps.append(LinearStep("head", head_x, "head.w", "out", 1, k, n, x_flat=flat, bias="head.b"))
    return IntProgram(bld.buffers, bld.tensors, bld.steps, "out", acc, s_x, cfg.tokens == "series")


def _detector_head(bld: _Builder, model: QATForecaster, head_in: tuple, acc: float, actual: tuple) -> IntProgram:
    """A detector's head and score: its estimate of the actual row requantized to 16 bits, minus the actual row
    (`cfg.actual_row` of the input, or of its level-centred copy: `actual` = (buffer, scale)) as a residual
    sum with a negative multiplier (`qat.error_constants`), giving the C errors; then `DetectStep` appends the score
    and the flag, which the output port computes as the errors leave."""
    cfg, (head_x, flat, k), (src, s_src) = model.cfg, head_in, actual
    c, q = cfg.outputs, model.q_err
    res = error_constants(s_src, model.q_head.scale, q, src)
    res = Residual(**{**res.__dict__, "row": cfg.actual_row})
    # the score word holds the smoothed score: at most score_bound(C x the largest error, decay) (intops)
    score_max = intops.score_bound(c * max(-q.lo, q.hi), cfg.score_decay)
    bld.buffers["out"] = Buffer("out", 1, c + 2, intops.bits_signed(q.lo, score_max), True)
    bld.steps.append(LinearStep("head", head_x, "head.w", "out", 1, k, c, x_flat=flat, bias="head.b",
                                requant=_requant(acc, model.q_head), residual=res))
    bld.steps.append(DetectStep("detect", "out", "out", 1, c, out_col=c, threshold=int(model.score_threshold),
                                 decay=cfg.score_decay))
    return IntProgram(bld.buffers, bld.tensors, bld.steps, "out", q.scale, model.q_in.scale, False)
