"""Small arithmetic helpers shared by the hardware blocks: the one rounding rule and clamping as expressions.

They build Amaranth expressions (no state); the blocks decide where the pipeline registers go. Each mirrors
a function of `model.intops` so that the hardware has a single place where the rounding rule is written.
"""
from __future__ import annotations

from amaranth.hdl import Const, Mux, Value, signed, unsigned

from model import intops


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
