"""Small arithmetic helpers shared by the hardware blocks: the one rounding rule and clamping as expressions.

They build Amaranth expressions (no state); the blocks decide where the pipeline registers go. Each mirrors
a function of `model.intops` so that the hardware has a single place where the rounding rule is written.
"""
from __future__ import annotations

from amaranth.hdl import Cat, Const, Mux, Value, signed, unsigned

from intformer.model import intops


def round_shift(x: Value, s: Value) -> Value:
    """intops.round_shift: (x + 2^(s-1)) >> s for s >= 1, x for s = 0; arithmetic shift, round half up.

    Result width = width of x. For s >= width(x) the result is 0 (|x| <= 2^(w-1) <= half), so the half
    LSB never needs more than w + 1 bits.
    """
    w = len(x)
    if isinstance(s, int):
        if s == 0:
            return x
        return ((x.as_signed() + (1 << (s - 1))) >> s)[:w].as_signed() if s < w else Const(0, signed(w))
    half = ((Const(1, unsigned(w + 2)) << s) >> 1)[:w + 1]    # 2^(s-1), and 0 when s = 0
    shifted = ((x.as_signed() + half.as_unsigned()) >> s)[:w].as_signed()
    return Mux(s >= w, 0, shifted)


DSP_BITS = 16           # signed operand width of the multiplier blocks we plan for (iCE40 SB_MAC16: 16 x 16)


def shift_add_mul(x: Value, bits: Value) -> Value:
    """x * bits for a short unsigned `bits`, as a sum of shifted copies of x: adders in logic that synthesis
    does not put into a multiplier block (a `*` would take a whole DSP for a few partial products)."""
    terms = [Mux(bits[i], x, 0) << i for i in range(len(bits))]
    total = terms[0]
    for t in terms[1:]:
        total = total + t
    return total


def booth_mul(x: Value, w: Value, drop_carry: bool = False) -> Value:
    """x * w (both signed) from logic: radix-4 Booth digits of w in {-2..2} select 0, x or 2x (negated),
    ceil(width(w) / 2) partial products summed. About 210 iCE40 LUT4s for 9 x 9 bits: the price of a
    multiplier block that the device does not have. `drop_carry` (a deliberate fault, for the must-fail
    product proof: `accel.formal.mac_products_harness`) negates by inverting the bits without the +1, the
    classic Booth slip; off, the logic is unchanged."""
    n = len(w) + (len(w) % 2)
    wx = Cat(Const(0, 1), w, w[-1]) if len(w) % 2 else Cat(Const(0, 1), w)
    terms = []
    for d in range(n // 2):
        b0, b1, b2 = wx[2 * d], wx[2 * d + 1], wx[2 * d + 2]
        one = b0 ^ b1
        two = (b2 & ~b1 & ~b0) | (~b2 & b1 & b0)
        mag = Mux(one, x, Mux(two, x << 1, 0))
        terms.append(Mux(b2, ~mag if drop_carry else -mag, mag) << (2 * d))
    total = terms[0]
    for t in terms[1:]:
        total = total + t
    return total


def mul_signature():
    """A multiplier shared between blocks: operands `a`, `b` (signed 16) out, their product `p` in, one cycle
    later (the product register of the multiplier block)."""
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out
    return wiring.Signature({"a": Out(signed(DSP_BITS)), "b": Out(signed(DSP_BITS)),
                             "p": In(signed(2 * DSP_BITS))})


def round_shift_in(x: Value, s: Value, s_range: tuple[int, int]) -> Value:
    """round_shift(x, s) for a shift s known to lie in s_range = (s_min, s_max): the step table of a program
    holds few shifts, so the shifter needs only log2(s_max - s_min + 1) stages instead of log2(width).

    For s >= 1, round_shift(x, s) = ((x >> (s - 1)) + 1) >> 1 (the half LSB added after dropping the bits
    below it: they cannot carry into it), and x >> (s - 1) = (x >> (s_min - 1)) >> (s - s_min): a fixed
    shift, then a short variable one. Result width: width(x) - s_min + 1 (signed).
    """
    s_min, s_max = s_range
    if s_min == s_max:
        return round_shift(x, s_min)
    if s_min < 1:
        return round_shift(x, s)
    x = x.as_signed()
    y = x >> (s_min - 1) if s_min > 1 else x
    u = (s - s_min)[:max(1, (s_max - s_min).bit_length())].as_unsigned()
    return ((y >> u) + 1) >> 1


def round_shift_parts(x: Value, s: Value, s_range: tuple[int, int]):
    """`round_shift_in(x, s, s_range)` cut in two for a pipeline register between them: (pre, post) with
    post(pre) == round_shift_in(x, s, s_range), where `pre` is the shifted value before its half LSB is added
    (a short variable shift) and `post(r)` adds it (an increment and a fixed shift), so that the adder before
    the shift and the increment after it fall in different cycles. `post` uses s only where s may be 0
    (then nothing is split); s must then be the shift of the value in the register."""
    s_min, s_max = s_range
    w = len(x)
    if s_min == s_max:
        if s_min == 0 or s_min >= w:
            return round_shift(x, s_min), lambda r: r
        pre = x.as_signed() >> (s_min - 1) if s_min > 1 else x.as_signed()
        return pre, lambda r: ((r + 1) >> 1)[:w].as_signed()
    if s_min < 1:
        return x, lambda r: round_shift(r, s)
    x = x.as_signed()
    y = x >> (s_min - 1) if s_min > 1 else x
    u = (s - s_min)[:max(1, (s_max - s_min).bit_length())].as_unsigned()
    return y >> u, lambda r: (r + 1) >> 1


def clamp(x: Value, lo: Value, hi: Value) -> Value:
    """min(max(x, lo), hi)."""
    return Mux(x < lo, lo, Mux(x > hi, hi, x))


def width_signed(lo: int, hi: int) -> int:
    return intops.bits_signed(lo, hi)


def code_shape(bits: int, signed_: bool):
    """Shape of a stored code of a buffer."""
    return signed(bits) if signed_ else unsigned(bits)


def ext_width(bits: int, signed_: bool) -> int:
    """Width of the signed register that holds any code of the buffer (unsigned codes gain a sign bit)."""
    return bits if signed_ else bits + 1
