"""Integer-only operations: the arithmetic contract shared by the integer reference and the hardware.

Every function here takes and returns numpy int64 arrays and uses integer arithmetic only. The integer
reference (`model.intref`) is built from these functions, and every hardware block in `accel/` uses the
function it implements as its golden model: there is one copy of each piece of arithmetic.

Conventions
-----------
* Codes: a signed b-bit tensor holds codes in [-2^(b-1), 2^(b-1)-1], an unsigned one in [0, 2^b-1];
  weights use the narrow symmetric range [-(2^(b-1)-1), 2^(b-1)-1]. Activations are symmetric (zero point 0):
  0.0 is always exactly representable, and a product needs no zero-point cross terms, so a MAC is a plain
  multiply-add (this also avoids the reference system's saturating folded BatchNorm).
* One rounding rule everywhere: `round_shift(x, s) = floor((x + 2^(s-1)) / 2^s)`, round half up (towards
  +inf), which is an add and an arithmetic shift in hardware. The fake-quant model rounds the same way.
* Requantization: `clamp(round_shift(acc * M, S), lo, hi)` with a 15-bit multiplier M in [2^14, 2^15) and a
  shift S >= 1 (`quantize_multiplier`): the ratio M / 2^S is within 2^-15 (relative) of the float scale ratio.

Widths: each function's docstring gives the widths of its inputs, output and worst-case intermediate;
`bits_signed(lo, hi)` turns a bound into a register width. The hardware sizes its registers from these.
"""
from __future__ import annotations

import math

import numpy as np

MULT_BITS = 15          # requantization multipliers M in [2^14, 2^15): fit a signed 16-bit multiplier port
EXP_BITS = 15           # softmax exponentials are unsigned fixed point with 15 fraction bits (1.0 = 2^15)
RECIP_BITS = 31         # softmax reciprocal: floor(2^RECIP_BITS / sum)
LN_FRAC_BITS = 10       # LayerNorm: normalized value carried with 10 fraction bits
LN_RECIP_BITS = 24      # LayerNorm: extra reciprocal precision, so inv = floor(2^(10 + 24) / R) keeps >= 2^-14
POLY_FRAC_BITS = 15     # base-2 exponent fixed point in the polynomial exponential


# ---------------------------------------------------------------------------------------------- ranges

def code_range(bits: int, signed: bool = True) -> tuple[int, int]:
    """The code range of an activation of `bits` bits."""
    if signed:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def weight_range(bits: int) -> tuple[int, int]:
    """The narrow symmetric range of a weight of `bits` bits (2 bits: ternary)."""
    q = (1 << (bits - 1)) - 1
    return -q, q


def bits_signed(lo: int, hi: int) -> int:
    """Width of the smallest two's-complement register that holds every integer in [lo, hi]."""
    lo, hi = int(lo), int(hi)
    width = 1
    while not (-(1 << (width - 1)) <= lo and hi <= (1 << (width - 1)) - 1):
        width += 1
    return width


def bits_unsigned(hi: int) -> int:
    """Width of the smallest unsigned register that holds [0, hi]."""
    return max(1, int(hi).bit_length())


def mac_bound(k: int, x_range: tuple[int, int], w_range: tuple[int, int], bias_max: int = 0) -> tuple[int, int]:
    """Worst-case range of sum_{i<k} x_i * w_i + bias over all codes in the given ranges.

    The bound that sizes a MAC accumulator: k products, each within the extreme corner products, plus the
    largest bias magnitude actually exported.
    """
    corners = [a * b for a in x_range for b in w_range]
    return k * min(corners) - bias_max, k * max(corners) + bias_max


# -------------------------------------------------------------------------------------- requantization

def round_shift(x, s: int | np.ndarray):
    """floor(x / 2^s + 1/2) for s >= 0: add half an LSB, shift right arithmetically (round half up).

    Width: the sum x + 2^(s-1) needs one bit more than x when s > 0.
    """
    x = np.asarray(x, dtype=np.int64)
    s = np.asarray(s, dtype=np.int64)
    half = np.where(s > 0, np.left_shift(np.int64(1), np.maximum(s - 1, 0)), 0)
    return np.right_shift(x + half, s)


def quantize_multiplier(ratio: float) -> tuple[int, int]:
    """Approximate a positive real ratio by M / 2^S with M in [2^14, 2^15) and S >= 1.

    Requantizing by M / 2^S instead of the float ratio changes a result by at most 2^-14 relative before
    rounding. Ratios too large or too small for a 48-bit shift are refused (they mean a broken model).
    """
    if not (ratio > 0 and math.isfinite(ratio)):
        raise ValueError(f"requantization ratio must be positive and finite, got {ratio}")
    mant, exp = math.frexp(ratio)                # ratio = mant * 2^exp, mant in [0.5, 1)
    m = int(math.floor(mant * (1 << MULT_BITS) + 0.5))
    s = MULT_BITS - exp
    if m == 1 << MULT_BITS:                      # mantissa rounded up to 1.0
        m >>= 1
        s -= 1
    if s < 1:
        raise ValueError(f"requantization ratio {ratio} is too large (>= 2^14)")
    if s > 62:
        m >>= s - 62
        s = 62
        if m == 0:
            raise ValueError(f"requantization ratio {ratio} is too small")
    return m, s


def requantize(acc, m: int, s: int, lo: int, hi: int):
    """clamp(round_shift(acc * m, s), lo, hi): a scale change by m / 2^s into [lo, hi].

    Widths: acc of A bits times m (15 bits unsigned) gives a product of A + 15 bits; the output has the
    width of [lo, hi]. ReLU is this with lo = 0.
    """
    return np.clip(round_shift(np.asarray(acc, dtype=np.int64) * np.int64(m), s), lo, hi)


def requantize_per_channel(x, m, b, s: int, lo: int, hi: int):
    """clamp(round_shift(x * m[c] + b[c], s), lo, hi) over the last axis c: a folded BatchNorm.

    m[c] is a signed multiplier (|m| < 2^15, a negative gamma flips the sign), b[c] the folded shift at
    2^s scale. Width of the sum: bits(x) + 16 + 1, plus the bias width.
    """
    x = np.asarray(x, dtype=np.int64)
    return np.clip(round_shift(x * np.asarray(m, np.int64) + np.asarray(b, np.int64), s), lo, hi)


def residual_add(a, b, ma: int, mb: int, s: int, lo: int, hi: int):
    """clamp(round_shift(a * ma + b * mb, s), lo, hi): the residual sum of two codes at different scales.

    Both requantizations share one shift so that there is a single rounding. Width of the sum: the wider of
    bits(a), bits(b) plus 15 plus 1.
    """
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    return np.clip(round_shift(a * np.int64(ma) + b * np.int64(mb), s), lo, hi)


def matmul_acc(x, w, bias=None):
    """sum_k x[..., k] * w[k, j] (+ bias[..., j]) with exact int64 accumulation (the MAC array's result)."""
    acc = np.matmul(np.asarray(x, dtype=np.int64), np.asarray(w, dtype=np.int64))
    if bias is not None:
        acc = acc + np.asarray(bias, dtype=np.int64)
    return acc


# ----------------------------------------------------------------------------------------- reciprocal

def isqrt(n):
    """floor(sqrt(n)) for n >= 0, exact: the hardware computes it bit by bit (one result bit per cycle)."""
    n = np.asarray(n, dtype=np.int64)
    root = np.zeros_like(n)
    for bit in range(31, -1, -1):                # results < 2^32 for n < 2^63
        trial = root | np.int64(1 << bit)
        root = np.where(trial <= n // trial, trial, root)   # trial^2 <= n without overflow
    return root


def reciprocal(n, k: int):
    """floor(2^k / n) for n >= 1: one restoring division (k + 1 cycles in hardware)."""
    n = np.asarray(n, dtype=np.int64)
    return np.floor_divide(np.int64(1) << np.int64(k), np.maximum(n, 1))


# --------------------------------------------------------------------------------------------- softmax

def softmax_lut_table(bits: int, scale: float) -> np.ndarray:
    """exp(-k * scale) for every k = max - z in [0, 2^bits - 1], unsigned, 1.0 = 2^EXP_BITS."""
    k = np.arange(1 << bits, dtype=np.float64)
    return np.floor(np.exp(-k * scale) * (1 << EXP_BITS) + 0.5).astype(np.int64)


def exp_lut(d, table):
    """exp of d = z - max(z) <= 0 by table look-up: table[-d]. Output: EXP_BITS + 1 bits unsigned."""
    return np.asarray(table, dtype=np.int64)[-np.asarray(d, dtype=np.int64)]


# 2^-f for f in [0, 1) as 1 - f * (P1 - P2 * f): a second-order polynomial with P(0) = 1, P(1) = 1/2 exactly
# and the least maximum relative error in between (0.27 %, fitted on a grid of 10,001 points); the
# constants at 2^POLY_FRAC_BITS scale.
POLY_P1 = 21951
POLY_P2 = 5567           # P1 - P2 = 2^14, so P(1) = 1 - (P1 - P2) / 2^15 = 1/2


def softmax_poly_constant(scale: float) -> int:
    """C = round(scale * log2(e) * 2^POLY_FRAC_BITS): turns a code difference into a base-2 exponent."""
    c = int(math.floor(scale * math.log2(math.e) * (1 << POLY_FRAC_BITS) + 0.5))
    return max(1, min(c, (1 << 20) - 1))


def exp_poly(d, c: int):
    """exp(d * scale) for d <= 0 in integers: base 2, integer part by a shift, fraction by a polynomial.

    u = -d * c is -d * scale * log2(e) in fixed point (POLY_FRAC_BITS fraction bits); with q = u >> 15 and
    f = u mod 2^15, exp = 2^-q * 2^(-f/2^15) ~ (2^15 - f * (P1 - P2 * f / 2^15) / 2^15) >> q.
    Widths: |d| < 2^9 and c < 2^20 give u < 2^29; f * P2 < 2^28; f * (P1 - ...) < 2^30; output 16 bits.
    """
    u = -np.asarray(d, dtype=np.int64) * np.int64(c)
    q = np.right_shift(u, POLY_FRAC_BITS)
    f = np.bitwise_and(u, (1 << POLY_FRAC_BITS) - 1)
    slope = POLY_P1 - np.right_shift(f * POLY_P2, POLY_FRAC_BITS)
    p = (1 << EXP_BITS) - np.right_shift(f * slope, POLY_FRAC_BITS)
    return np.where(q > EXP_BITS, 0, np.right_shift(p, np.minimum(q, EXP_BITS)))


def softmax_normalize(e, out_bits: int):
    """Probabilities from exponentials along the last axis: one reciprocal per row, one multiply per element.

    r = floor(2^RECIP_BITS / sum(e)) <= 2^16; p = clamp(round_shift(e * r, RECIP_BITS - out_bits), 0, 2^out_bits - 1),
    unsigned codes at scale 2^-out_bits. Widths: e <= 2^15, sum < 2^(16 + log2 n), r <= 2^(RECIP_BITS - 15)
    (the maximum element contributes 2^15, so sum >= 2^15), e * r < 2^(RECIP_BITS + 1).
    """
    e = np.asarray(e, dtype=np.int64)
    total = e.sum(axis=-1, keepdims=True)
    r = reciprocal(total, RECIP_BITS)
    return np.clip(round_shift(e * r, RECIP_BITS - out_bits), 0, (1 << out_bits) - 1)


def softmax_int(z, method: str, out_bits: int, table=None, c: int | None = None):
    """Integer softmax along the last axis of codes z: max, exp of the differences, normalization."""
    z = np.asarray(z, dtype=np.int64)
    d = z - z.max(axis=-1, keepdims=True)
    if method == "lut":
        e = exp_lut(d, table)
    elif method == "poly":
        e = exp_poly(d, c)
    else:
        raise ValueError(f"unknown softmax method {method!r}")
    return softmax_normalize(e, out_bits)


# ------------------------------------------------------------------------------------------- LayerNorm

def layernorm_int(x, g, b, s: int, eps_int: int, lo: int, hi: int):
    """Integer LayerNorm over the last axis (width D) of codes x, then the affine gamma, beta.

    Centre without division: xc = D * x - sum(x) (= D * (x - mean)); v = sum(xc^2) * D + eps_int
    (= D^4 * (var + eps) in code units); R = isqrt(v) (= D^2 * std);
    inv = floor(2^(LN_FRAC_BITS + LN_RECIP_BITS) / R); n = round_shift(xc * D * inv, LN_RECIP_BITS) (= normalized value with LN_FRAC_BITS fraction bits);
    y = clamp(round_shift(n * g[c] + b[c], s), lo, hi) with g, b the affine at 2^(s) / 2^LN_FRAC_BITS scale.
    Widths for x of B bits and D <= 2^L: xc < 2^(B+L), xc^2 summed < 2^(2B+3L), v < 2^(2B+4L+1),
    R < 2^(B+2L+1), inv < 2^(LN_FRAC_BITS + LN_RECIP_BITS), xc * D * inv < 2^(B+2L+34),
n < 2^(LN_FRAC_BITS + L/2 + 1) (|normalized| <= sqrt(D)).
    """
    x = np.asarray(x, dtype=np.int64)
    d = x.shape[-1]
    xc = d * x - x.sum(axis=-1, keepdims=True)
    v = (xc * xc).sum(axis=-1, keepdims=True) * d + np.int64(eps_int)
    root = isqrt(v)
    inv = reciprocal(root, LN_FRAC_BITS + LN_RECIP_BITS)
    n = round_shift(xc * d * inv, LN_RECIP_BITS)
    return np.clip(round_shift(n * np.asarray(g, np.int64) + np.asarray(b, np.int64), s), lo, hi)


# --------------------------------------------------------------------------------------- table lookups

def argmax_first(scores):
    """The index of the largest score along the last axis; of equal largest scores, the FIRST (lowest
    index) wins. This is the tie rule of the chip too: it scans the scores in order and replaces its best
    only on a strictly larger score. Inputs: int64 scores (any width); output: int64 indices in [0, C)."""
    return np.argmax(np.asarray(scores, dtype=np.int64), axis=-1).astype(np.int64)   # numpy: first maximum


def anomaly_score(errors):
    """An anomaly detector's integer score: the sum of the magnitudes of its C forecast errors (codes) along
    the last axis, the L1 residual of SKAB's forecasting baselines. int64; exact for |error| < 2^31."""
    return np.abs(np.asarray(errors, dtype=np.int64)).sum(axis=-1)


def score_ewma(row_scores, decay: int, starts=None):
    """A detector's smoothed score over consecutive windows, the integer EWMA control chart (Roberts 1959):
    s_t = s_(t-1) - floor(s_(t-1) / 2^decay) + r_t, with s = 0 before the first window and before every window
    that `starts` marks (a new stream: the chip clears its score on reset and after an INFO). decay = 0
    gives s_t = r_t (each window alone); decay = k weighs window t - j by about (1 - 2^-k)^j, a time
    constant of about 2^k windows. The floor is an arithmetic right shift, exactly what the chip does.
    Inputs: the row scores (N,) int64 >= 0 in stream order, starts (N,) bool or None (only window 0);
    output (N,) int64, at most `score_bound(max r, decay)`."""
    r = np.asarray(row_scores, dtype=np.int64).reshape(-1)
    if decay == 0:
        return r.copy()
    starts = np.zeros(len(r), dtype=bool) if starts is None else np.asarray(starts, dtype=bool).reshape(-1)
    out = np.empty_like(r)
    s = 0
    for t, (value, start) in enumerate(zip(r.tolist(), starts.tolist())):
        s = value if (start or t == 0) else s - (s >> decay) + value
        out[t] = s
    return out


def score_bound(row_max: int, decay: int) -> int:
    """The largest smoothed score (`score_ewma`) when every row score is at most row_max: B = (row_max + 1)
    * 2^decay - 1. By induction: s <= B gives s - floor(s / 2^decay) <= B - floor(B / 2^decay) (the map
    is nondecreasing in s) = B - row_max, so s' <= B. decay = 0 gives row_max."""
    return ((int(row_max) + 1) << decay) - 1


def anomaly_flag(score, threshold: int):
    """1 where the score is STRICTLY greater than the integer threshold (SKAB: residual > UCL), else 0."""
    return (np.asarray(score, dtype=np.int64) > int(threshold)).astype(np.int64)


def lut_apply(z, table, lo: int):
    """table[z - lo]: an elementwise function of a code (integer GELU) as a ROM of 2^bits entries."""
    return np.asarray(table, dtype=np.int64)[np.asarray(z, dtype=np.int64) - lo]
