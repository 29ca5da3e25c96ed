"""The quantization-aware Transformer forecaster (PyTorch).

Every tensor that the integer program (`model.program`) holds as codes is fake-quantized here at the same
point, with the same range and the same rounding (half up), so that the fake-quant model in eval mode and
the integer reference differ only by the requantization multipliers' 15-bit precision and the integer
softmax and LayerNorm approximations (measured by `intformer eval` as the agreement).

Quantization choices and why:
* Symmetric activations (zero point 0), per-tensor scales from an exponential moving average of the
  largest magnitude seen in training ("ranges observed"): 0.0 is exact, MACs need no zero-point terms.
  Non-negative tensors (after ReLU, softmax) use unsigned codes, so they keep every bit.
* Symmetric narrow-range weights, per-tensor, scale = max|W| / (2^(b-1) - 1).
* Biases at accumulator scale s_x * s_w (rounded), as the MAC array adds them.
* Straight-through gradients inside the clamp range, zero outside (clipped STE).
With `quantize=False` the same module is the floating-point baseline.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from . import intops
from .config import ModelConfig
from .program import Requant, Residual


DETECT_INPUT_RANGE = 8.0     # a detector's input codes span +-8 scaled units (8 standard deviations of training)


def shift_for(max_ratio: float) -> int:
    """The shift S that puts the largest of several ratios into a 15-bit multiplier: ratio * 2^S < 2^15."""
    _, exp = math.frexp(max_ratio)
    s = int(min(62, max(1, intops.MULT_BITS - exp)))
    if s > 1 and math.floor(max_ratio * 2 ** s + 0.5) >= 1 << intops.MULT_BITS:   # rounded up to 2^15
        s -= 1
    return s


def requant_constants(in_scale: float, out_scale: float, lo: int, hi: int) -> Requant:
    """The integer requantization from in_scale to out_scale (shared by the model and the exporter)."""
    m, s = intops.quantize_multiplier(float(in_scale) / float(out_scale))
    return Requant(m, s, lo, hi)


def residual_constants(src: str, s_src: float, s_new: float, out_scale: float, lo: int, hi: int) -> Residual:
    """r = src * s_src / s_r + new * s_new / s_r, both ratios on one shift so there is one rounding."""
    r_src, r_new = float(s_src) / out_scale, float(s_new) / out_scale
    s = shift_for(max(r_src, r_new))
    return Residual(src, int(math.floor(r_src * 2 ** s + 0.5)), int(math.floor(r_new * 2 ** s + 0.5)), s, lo, hi)


def level_constants(in_scale: float, q: "ActQuant") -> Residual:
    """x - last from input codes at in_scale to q's codes: m_src = -m_new, one shift (the level removal)."""
    rc = residual_constants("x", in_scale, in_scale, q.scale, q.lo, q.hi)
    return Residual("x", rc.m_src, -rc.m_src, rc.s, q.lo, q.hi)


def error_constants(s_actual: float, s_forecast: float, q: "ActQuant", src: str = "") -> Residual:
    """forecast - actual from codes at s_forecast and s_actual to q's codes: the residual sum with the actual
    row's multiplier negated (one shift, one rounding): a detector's error."""
    rc = residual_constants(src, s_actual, s_forecast, q.scale, q.lo, q.hi)
    return Residual(src, -rc.m_src, rc.m_new, rc.s, q.lo, q.hi)


def affine_constants(a: torch.Tensor, c: torch.Tensor, in_scale: float, out_scale: float):
    """Folded BatchNorm y = a * x + c as integers (m[c], b[c], s): y_code = round_shift(x_code * m + b, s)."""
    ratio = a.double() * float(in_scale) / float(out_scale)
    s = shift_for(float(ratio.abs().max()) or 1.0)
    m = torch.floor(ratio * 2 ** s + 0.5)
    b = torch.floor(c.double() / float(out_scale) * 2 ** s + 0.5)
    return m, b, s


def layernorm_constants(ln: nn.LayerNorm, in_scale: float, out_scale: float):
    """Integer LayerNorm constants (g[c], b[c], s, eps) for intops.layernorm_int."""
    d = ln.normalized_shape[0]
    g_ratio = ln.weight.detach().double() / float(out_scale) / 2 ** intops.LN_FRAC_BITS
    s = shift_for(float(g_ratio.abs().max()) or 1.0)
    g = torch.floor(g_ratio * 2 ** s + 0.5)
    b = torch.floor(ln.bias.detach().double() / float(out_scale) * 2 ** s + 0.5)
    eps = int(min(2 ** 40, math.floor(ln.eps / float(in_scale) ** 2 * d ** 4 + 0.5)))
    return g, b, s, eps


def integer_forward(y_float: torch.Tensor, fn, codes: torch.Tensor, out_scale: float) -> torch.Tensor:
    """The value of an integer kernel with the gradient of its float counterpart (as I-BERT trains).

    fn maps int64 numpy codes to int64 numpy codes (a function of `model.intops`).
    """
    ints = fn(torch.floor(codes.detach() + 0.5).to(torch.int64).cpu().numpy())
    y_int = torch.as_tensor(ints, dtype=y_float.dtype, device=y_float.device) * out_scale
    return y_float + (y_int - y_float).detach()


def emulate_shift(x_codes: torch.Tensor, s: int, lo: int, hi: int) -> torch.Tensor:
    """clamp(floor(x / 2^s + 1/2)) on integer-valued float64 tensors: intops.round_shift, in torch."""
    return torch.clamp(torch.floor(x_codes / 2.0 ** s + 0.5), lo, hi)


def fake_quant(x: torch.Tensor, scale: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    """clamp(floor(x / scale + 1/2), lo, hi) * scale; straight-through inside the range, zero outside.

    A scale with a gradient (learned ranges) gets its LSQ gradient through both the division and the product.
    """
    return torch.clamp(round_ste(x / scale), lo, hi) * scale


def round_ste(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.floor(x + 0.5) - x).detach()


class ActQuant(nn.Module):
    """Fake quantizer of an activation: symmetric codes of `bits` bits.

    The range max|x| starts at the first training batch's maximum; then it is either learned by gradient
    descent (LSQ, Esser et al. 2020: the gradient reaches the scale through the rounding's straight-through
    estimator, scaled by 1 / sqrt(N * Qp)) or, with learned=False, follows an EMA of the batches' maxima.
    """

    def __init__(self, name: str, bits: int, signed: bool = True, momentum: float = 0.1,
                 fixed_scale: float | None = None, learned: bool = True):
        super().__init__()
        self.name, self.bits, self.signed, self.momentum = name, bits, signed, momentum
        self.lo, self.hi = intops.code_range(bits, signed)
        self.fixed = fixed_scale is not None
        self.learned = learned and not self.fixed
        start = torch.tensor(fixed_scale * self.hi if self.fixed else 0.0)
        if self.learned:
            self.range_max = nn.Parameter(start)
        else:
            self.register_buffer("range_max", start)
        self.register_buffer("initialized", torch.tensor(self.fixed))
        self.enabled = True

    @property
    def scale(self) -> float:
        return max(abs(float(self.range_max.detach())), 1e-8) / self.hi

    @torch.no_grad()
    def floor_range(self, in_scale: float) -> None:
        """Raise a range finer than 2^-13 input LSBs: such a ratio has no 15-bit requantization multiplier
        (it happens to the 16-bit head output when the head's weights are still near zero)."""
        floor = float(in_scale) * self.hi / 2 ** 13
        if abs(float(self.range_max)) < floor:
            self.range_max.fill_(floor)

    def forward(self, x: torch.Tensor, in_scale: float | torch.Tensor | None = None) -> torch.Tensor:
        """Quantize x; with `in_scale` (x = integer * in_scale, a MAC result) by the integer requantization.

        In eval mode the integer is recovered exactly and requantized by the same 15-bit multiplier and shift
        as the integer program, so that the two agree word for word at this step.
        """
        if self.training and not self.fixed:
            with torch.no_grad():
                seen = x.detach().abs().max()
                if not bool(self.initialized):
                    self.range_max.copy_(seen)
                    self.initialized.fill_(True)
                elif not self.learned:
                    self.range_max.mul_(1 - self.momentum).add_(self.momentum * seen)
                if in_scale is not None:
                    self.floor_range(in_scale)
        if not self.enabled:
            return x
        rmax = torch.clamp(self.range_max.abs(), min=1e-8)
        if self.learned and self.training:
            g = 1.0 / math.sqrt(x.numel() * self.hi)
            rmax = (rmax - rmax * g).detach() + rmax * g
        else:
            rmax = rmax.detach()
        scale = rmax / self.hi
        if in_scale is not None and not self.training:
            rq = requant_constants(float(in_scale), self.scale, self.lo, self.hi)
            acc = torch.floor(x / float(in_scale) + 0.5)
            return emulate_shift(acc * rq.m, rq.s, self.lo, self.hi) * scale
        return fake_quant(x, scale, self.lo, self.hi)


class QuantLinear(nn.Linear):
    """A linear layer with fake-quantized weights (narrow symmetric) and bias at accumulator scale."""

    def __init__(self, name: str, fan_in: int, fan_out: int, bits: int, bias: bool = True):
        super().__init__(fan_in, fan_out, bias=bias)
        self.name, self.bits = name, bits
        self.qmax = (1 << (bits - 1)) - 1
        self.enabled = True

    def weight_scale(self) -> torch.Tensor:
        return torch.clamp(self.weight.detach().abs().max(), min=1e-8) / self.qmax

    def acc_scale(self, x_scale: float) -> float:
        return float(self.weight_scale()) * float(x_scale)

    def forward(self, x: torch.Tensor, x_scale: float | None, extra_bias: torch.Tensor | None = None):
        bias = self.bias if extra_bias is None else self.bias + extra_bias
        if not self.enabled:
            return F.linear(x, self.weight) + bias
        sw = self.weight_scale()
        w = fake_quant(self.weight, sw, -self.qmax, self.qmax)
        acc_scale = self.acc_scale(x_scale)
        return F.linear(x, w) + round_ste(bias / acc_scale) * acc_scale


def sinusoidal(tokens: int, d: int) -> torch.Tensor:
    pos = torch.arange(tokens, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(10000.0) / d))
    pe = torch.zeros(tokens, d)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div)[:, : d // 2]
    return pe


class Norm(nn.Module):
    """BatchNorm1d over channels (folded to a per-channel affine at export) or LayerNorm over each token."""

    def __init__(self, kind: str, d: int):
        super().__init__()
        self.kind = kind
        self.bn = nn.BatchNorm1d(d) if kind == "batch" else None
        self.ln = nn.LayerNorm(d) if kind == "layer" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bn is not None:
            b, t, d = x.shape
            return self.bn(x.reshape(b * t, d)).reshape(b, t, d)
        return self.ln(x)

    def affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(a, c) with norm(x) = a * x + c per channel (BatchNorm in eval mode)."""
        bn = self.bn
        a = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        return a.detach(), (bn.bias - bn.running_mean * a).detach()


class EncoderLayer(nn.Module):
    """Post-norm encoder layer: attention, residual, norm, feed-forward, residual, norm."""

    def __init__(self, i: int, cfg: ModelConfig):
        super().__init__()
        d, p = cfg.d_model, f"l{i}."
        b = cfg.bits_for
        self.cfg, self.heads, self.dh = cfg, cfg.heads, d // cfg.heads
        self.wq = QuantLinear(p + "wq", d, d, b(p + "wq"))
        self.wk = QuantLinear(p + "wk", d, d, b(p + "wk"))
        self.wv = QuantLinear(p + "wv", d, d, b(p + "wv"))
        self.wo = QuantLinear(p + "wo", d, d, b(p + "wo"))
        self.w1 = QuantLinear(p + "ffn1.w", d, cfg.ffn, b(p + "ffn1.w"))
        self.w2 = QuantLinear(p + "ffn2.w", cfg.ffn, d, b(p + "ffn2.w"))
        self.q_q = ActQuant(p + "q", b(p + "q"))
        self.q_k = ActQuant(p + "kt", b(p + "kt"))
        self.q_v = ActQuant(p + "v", b(p + "v"))
        self.q_s = ActQuant(p + "s", b(p + "s"))
        sbits = b(p + "a")
        self.q_a = ActQuant(p + "a", sbits, signed=False, fixed_scale=2.0 ** -sbits)
        self.q_ctx = ActQuant(p + "ctx", b(p + "ctx"))
        self.q_o = ActQuant(p + "o", b(p + "o"))
        self.q_r1 = ActQuant(p + "r1", b(p + "r1"))
        self.q_n1 = ActQuant(p + "n1", b(p + "n1"))
        if cfg.activation == "relu":
            self.q_z = None
            self.q_f = ActQuant(p + "ffn1", b(p + "ffn1"), signed=False)
        else:
            self.q_z = ActQuant(p + "ffn1.z", b(p + "ffn1.z"))
            self.q_f = ActQuant(p + "ffn1", b(p + "ffn1"))
        self.q_f2 = ActQuant(p + "ffn2", b(p + "ffn2"))
        self.q_r2 = ActQuant(p + "r2", b(p + "r2"))
        self.q_n2 = ActQuant(p + "n2", b(p + "n2"))
        self.norm1 = Norm(cfg.norm, d)
        self.norm2 = Norm(cfg.norm, d)

    def _emulating(self) -> bool:
        return not self.training and self.q_r1.enabled

    def _residual(self, q_r: ActQuant, a, sa: float, b, sb: float) -> torch.Tensor:
        """q_r(a + b); in eval mode by the integer residual sum (one shift, one rounding)."""
        if not self._emulating():
            return q_r(a + b)
        rc = residual_constants("", sa, sb, q_r.scale, q_r.lo, q_r.hi)
        codes = torch.floor(a / sa + 0.5) * rc.m_src + torch.floor(b / sb + 0.5) * rc.m_new
        return emulate_shift(codes, rc.s, q_r.lo, q_r.hi) * q_r.scale

    def _norm(self, norm: Norm, q_n: ActQuant, r: torch.Tensor, sr: float) -> torch.Tensor:
        """q_n(norm(r)); a BatchNorm in eval mode by the folded integer affine."""
        if norm.kind == "batch" and self._emulating():
            m, b, s = affine_constants(*norm.affine(), sr, q_n.scale)
            codes = torch.floor(r / sr + 0.5) * m + b
            return emulate_shift(codes, s, q_n.lo, q_n.hi) * q_n.scale
        y = q_n(norm(r))
        if norm.kind == "layer" and q_n.enabled:
            g, b, s, eps = (c.numpy() if torch.is_tensor(c) else c for c in layernorm_constants(norm.ln, sr, q_n.scale))
            y = integer_forward(y, lambda x: intops.layernorm_int(x, g, b, s, eps, q_n.lo, q_n.hi), r / sr, q_n.scale)
        return y

    def _softmax(self, scores: torch.Tensor) -> torch.Tensor:
        """Probabilities as unsigned codes at 2^-bits; with quantization on, by the integer softmax."""
        a = self.q_a(torch.softmax(scores, dim=-1))
        if not self.q_a.enabled:
            return a
        qs, bits = self.q_s, self.q_a.bits
        if self.cfg.softmax == "lut":
            table = intops.softmax_lut_table(qs.bits, qs.scale)
            fn = lambda z: intops.softmax_int(z, "lut", bits, table=table)
        else:
            c = intops.softmax_poly_constant(qs.scale)
            fn = lambda z: intops.softmax_int(z, "poly", bits, c=c)
        return integer_forward(a, fn, scores / qs.scale, self.q_a.scale)

    def forward(self, h: torch.Tensor, sh: float) -> torch.Tensor:
        bsz, t, d = h.shape
        acc = self.wq.acc_scale(sh)
        q = self.q_q(self.wq(h, sh), acc)
        k = self.q_k(self.wk(h, sh), self.wk.acc_scale(sh))
        v = self.q_v(self.wv(h, sh), self.wv.acc_scale(sh))
        qh = q.view(bsz, t, self.heads, self.dh).transpose(1, 2)
        kh = k.view(bsz, t, self.heads, self.dh).transpose(1, 2)
        vh = v.view(bsz, t, self.heads, self.dh).transpose(1, 2)
        s_scores = self.q_q.scale * self.q_k.scale / math.sqrt(self.dh)
        scores = self.q_s(qh @ kh.transpose(-1, -2) / math.sqrt(self.dh), s_scores)
        a = self._softmax(scores)
        ctx = self.q_ctx((a @ vh).transpose(1, 2).reshape(bsz, t, d), self.q_a.scale * self.q_v.scale)
        s_ctx = self.q_ctx.scale
        o = self.q_o(self.wo(ctx, s_ctx), self.wo.acc_scale(s_ctx))
        r1 = self._residual(self.q_r1, h, sh, o, self.q_o.scale)
        n1 = self._norm(self.norm1, self.q_n1, r1, self.q_r1.scale)
        s_n1 = self.q_n1.scale
        z = self.w1(n1, s_n1)
        if self.q_z is None:
            f = self.q_f(F.relu(z), self.w1.acc_scale(s_n1))
        else:
            f = self.q_f(F.gelu(self.q_z(z, self.w1.acc_scale(s_n1))))
        s_f = self.q_f.scale
        f2 = self.q_f2(self.w2(f, s_f), self.w2.acc_scale(s_f))
        r2 = self._residual(self.q_r2, n1, s_n1, f2, self.q_f2.scale)
        return self._norm(self.norm2, self.q_n2, r2, self.q_r2.scale)


class QATForecaster(nn.Module):
    """Input projection (+ positional encoding) -> L encoder layers -> mean pooling or flatten -> head.

    A classifier (cfg.task == "classify") is the same network without the skip: the head's C outputs are
    the class scores (logits in training; in eval mode the integer accumulators times their scale)."""

    def __init__(self, cfg: ModelConfig, quantize: bool = True):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        b = cfg.bits_for
        t, d = cfg.n_tokens, cfg.d_model
        in_bits = cfg.bits_overrides.get("x", max(cfg.io_bits, cfg.bits))
        # a detector's input range is fixed with headroom: a range learned on normal rows would clamp the
        # out-of-range values that make an anomaly, and the chip would not see them
        fixed = DETECT_INPUT_RANGE / ((1 << (in_bits - 1)) - 1) if cfg.task == "detect" else None
        self.q_in = ActQuant("x", in_bits, fixed_scale=fixed)
        # level removal: the window minus each series' last observed value, requantized to its own (finer) range;
        # at most 8 bits (input codes over 8 bits reach only the level steps and the skip, not a matrix product)
        self.q_level = (ActQuant("xc", cfg.bits_overrides.get("xc", min(self.q_in.bits, 8)))
                        if cfg.use_level else None)
        self.embed = QuantLinear("embed", cfg.token_dim, d, b("embed"))
        self.register_buffer("pos", sinusoidal(t, d))
        self.q_h = ActQuant("h", b("h"))
        self.layers = nn.ModuleList(EncoderLayer(i, cfg) for i in range(cfg.layers))
        self.drop = nn.Dropout(cfg.dropout)      # training only: before each layer and before the head
        self.q_pool = ActQuant("pool", b("pool")) if cfg.pooling == "mean" else None
        head_in = d if cfg.pooling == "mean" else t * d
        # a forecast's H steps, or a classifier's C scores (raw accumulators: the argmax needs no requantization)
        self.head = QuantLinear("head", head_in, cfg.outputs, b("head"))
        # the head's output and the forecast are 16-bit codes: no precision is lost at the end of the chain
        # (observed, not learned: at 16 bits there is nothing to gain by clipping, and a learned range that
        # starts at a zero head would grow only by the tiny LSQ gradient of 1 / sqrt(N * 32767))
        wide_head = cfg.skip or cfg.task == "detect"
        self.q_head = ActQuant("head.out", 16, learned=False) if wide_head else None
        self.q_out = ActQuant("out", 16, learned=False) if cfg.skip else None
        # a detector's forecast errors (forecast - actual), 16-bit codes: its score is their sum of magnitudes
        self.q_err = ActQuant("err", 16, learned=False) if cfg.task == "detect" else None
        # the detector's integer threshold T (flag: score > T), set on normal validation windows after training
        self.register_buffer("score_threshold", torch.tensor(0, dtype=torch.int64))
        if wide_head:
            # the head starts at zero, so every model starts as persistence and training must improve on it
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)
        self.set_quantize(quantize)

    def set_quantize(self, on: bool) -> None:
        self.quantize = on
        for mod in self.modules():
            if isinstance(mod, (ActQuant, QuantLinear)):
                mod.enabled = on

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """(B, n, m) windows -> (B, tokens, token_dim): time steps, or one token per series."""
        return x.transpose(1, 2) if self.cfg.tokens == "series" else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The forecast (or the class scores); a detector returns the errors of its estimate of the actual row,
        estimate - actual (B, inputs): the window's last row (reconstruct), or the next row, which then
        follows the window in the input (forecast: window + 1 rows)."""
        x = self.q_in(self.tokens(x))
        xe, s_xe = (self._level(x), self.q_level.scale) if self.q_level is not None else (x, self.q_in.scale)
        if self.cfg.task == "detect":       # the actual row: the window's last, or the one after the window
            actual = xe[:, -1, :]
            if self.cfg.detect_mode == "forecast":
                xe = xe[:, :-1, :]
        h = self.q_h(self.embed(xe, s_xe, extra_bias=self.pos), self.embed.acc_scale(s_xe))
        sh = self.q_h.scale
        for layer in self.layers:
            h = layer(self.drop(h), sh)
            sh = layer.q_n2.scale
        if self.q_pool is not None:
            t = h.shape[1]
            pooled = self.q_pool(h.sum(dim=1) / t, sh / t)
        else:
            pooled = h.flatten(1)
        sp = self.head_input_scale()
        y = self.head(self.drop(pooled), sp)
        if self.cfg.task == "detect":
            if not self.training:
                self.settle()
            return self._error(actual, s_xe, self.q_head(y, self.head.acc_scale(sp)))
        if not self.cfg.skip:
            return y
        if not self.training:
            self.settle()              # the weights may have moved since the last training batch
        y = self.q_head(y, self.head.acc_scale(sp))
        last = x[:, -1, self.cfg.target_index] if self.cfg.tokens == "time" else x[:, self.cfg.target_index, -1]
        return self._skip(last[:, None], y)

    def _level(self, x: torch.Tensor) -> torch.Tensor:
        """q_level(x - last) with last = each series' last observed value (NLinear / RevIN-style level removal):
        the Transformer sees the window's shape, not its level. In eval mode by the integer residual sum of
        the program's "level.center" step: x * m - last * m, one shift, one rounding. A detector's last
        observed row is the window's last, the one before the actual next row: that row becomes the actual
        change of each series."""
        r = self.cfg.window - 1
        last = x[:, r:r + 1, :] if self.cfg.tokens == "time" else x[:, :, -1:]
        q = self.q_level
        if self.training or not q.enabled:
            return q(x - last)
        rc = level_constants(self.q_in.scale, q)
        codes = (torch.floor(x / self.q_in.scale + 0.5) - torch.floor(last / self.q_in.scale + 0.5)) * rc.m_src
        return emulate_shift(codes, rc.s, q.lo, q.hi) * q.scale

    def head_input_scale(self) -> float:
        return self.q_pool.scale if self.q_pool is not None else self.layers[-1].q_n2.scale

    def settle(self) -> "QATForecaster":
        """Apply the head range floor for the current weights (before export)."""
        if self.q_head is not None:
            self.q_head.floor_range(self.head.acc_scale(self.head_input_scale()))
        return self

    def _skip(self, last: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """q_out(last + y): in eval mode by the integer residual sum, like the residuals inside the layers."""
        q = self.q_out
        if self.training or not q.enabled:
            return q(last + y)
        rc = residual_constants("", self.q_in.scale, self.q_head.scale, q.scale, q.lo, q.hi)
        codes = torch.floor(last / self.q_in.scale + 0.5) * rc.m_src + torch.floor(y / self.q_head.scale + 0.5) * rc.m_new
        return emulate_shift(codes, rc.s, q.lo, q.hi) * q.scale

    def _error(self, actual: torch.Tensor, s_actual: float, y: torch.Tensor) -> torch.Tensor:
        """q_err(y - actual), the detector's forecast error: in eval mode by the integer residual sum of the
        program's head step (the actual row times a negative multiplier, the forecast times a positive one,
        one shift, one rounding)."""
        q = self.q_err
        if self.training or not q.enabled:
            return q(y - actual)
        rc = error_constants(s_actual, self.q_head.scale, q)
        codes = (torch.floor(actual / s_actual + 0.5) * rc.m_src
                 + torch.floor(y / self.q_head.scale + 0.5) * rc.m_new)
        return emulate_shift(codes, rc.s, q.lo, q.hi) * q.scale
