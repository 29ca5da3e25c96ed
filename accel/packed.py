"""Two products per multiplier block: a dot product of two pairs, x0 * w0 + x1 * w1, from one multiplication.

The algorithm (operand packing, as in Xilinx's INT8 and INT4 notes and HiKonv, Liu et al. 2022). Put each
pair into one operand of the multiplier, the second pair in the opposite order:

    A = x0 + x1 * 2^S,   B = w1 + w0 * 2^S
    A * B = x0*w1  +  (x0*w0 + x1*w1) * 2^S  +  x1*w0 * 2^(2S)
          =   L    +          M       * 2^S  +     H   * 2^(2S)

If L and M both lie in [-2^(S-1), 2^(S-1)) (S-bit two's complement), the low S bits of the product are L's,
and M is the next S bits plus the borrow that a negative L took from them: M = sext_S(p[S:2S] + p[S-1]),
where p[S-1] is L's sign bit. This needs no other correction: the x1*w0 term lies above bit 2S and cannot
reach M's bits, and the sign of M is recovered by the sign extension. `pair_stride` chooses the smallest S
that holds L and M for every code of the operands' ranges, with A and B within the multiplier's ports (16
bits on the iCE40 UP5K's SB_MAC16); the products' sum then costs one multiplier block, the pre-adders of A
and B (a negative x0 or w1 borrows from the term above it) and an S-bit adder for the borrow: 20 LUT4 at 4
bits, against about 55 for one 4-bit product in logic. A MAC lane so built takes two k per cycle: the cycles of a linear step halve.

`pair_stride` says where the packing fits: codes of up to 4 bits (x unsigned or signed, w signed) on a
16 x 16 multiplier (S = 9 at 4 bits); 5-bit codes need 18-bit ports (the ECP5's MULT18X18D, the DSP48E1's
18-bit port); 6 bits and more do not fit one 18-bit port.
"""
from __future__ import annotations

import numpy as np
from amaranth.hdl import Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from intformer.model import intops

from .arith import DSP_BITS


def pair_stride(x_range: tuple[int, int], w_range: tuple[int, int], port_bits: int = DSP_BITS) -> int | None:
    """The packing shift S for pairs of operands in x_range and w_range, or None where no S fits.

    S is the smallest shift with L = x0 * w1 and M = x0 * w0 + x1 * w1 within S-bit two's complement for
    every operand of the ranges, and with A = x0 + x1 * 2^S and B = w1 + w0 * 2^S within `port_bits`-bit
    signed words as `PairProduct` forms them: its operand ports signed (`operand_bits`), the sum one bit
    wider than the shifted term."""
    (xl, xh), (wl, wh) = x_range, w_range
    products = [a * b for a in (xl, xh) for b in (wl, wh)]
    p_lo, p_hi = min(products), max(products)
    for s in range(1, 2 * port_bits):
        half = 1 << (s - 1)
        if not (-half <= p_lo and p_hi < half and -half <= 2 * p_lo and 2 * p_hi < half):
            continue
        a_bits = operand_bits(x_range) + s + 1
        b_bits = operand_bits(w_range) + s + 1
        return s if max(a_bits, b_bits) <= port_bits else None
    return None


def operand_bits(code_range: tuple[int, int]) -> int:
    """Width of the signed port that holds every code of the range (an unsigned code gets its sign bit)."""
    return intops.bits_signed(*code_range)


def pair_dot_model(x0, x1, w0, w1, stride: int, borrow: bool = True) -> np.ndarray:
    """The packed algorithm in numpy, bit for bit as the hardware does it (int64; `borrow=False`: the
    deliberate fault of `PairProduct`): equal to x0 * w0 + x1 * w1 wherever `pair_stride` allowed `stride`."""
    x0, x1, w0, w1 = (np.asarray(v, dtype=np.int64) for v in (x0, x1, w0, w1))
    s = stride
    p = (x0 + (x1 << s)) * (w1 + (w0 << s))
    mid = ((p >> s) + (((p >> (s - 1)) & 1) if borrow else 0)) & ((1 << s) - 1)
    return np.where(mid >= 1 << (s - 1), mid - (1 << s), mid)


class PairProduct(wiring.Component):
    """dot = x0 * w0 + x1 * w1 of the previous cycle's operands, from one multiplier (see the module docstring).

    Ports: x0, x1 (signed `x_bits`), w0, w1 (signed `w_bits`) in; `dot` (signed, `stride` bits: M's range)
    out. The operands must lie in the ranges the stride was chosen for
    (`pair_stride(x_range, w_range)`); the proof `accel.formal.pair_products_harness` shows the output
    exact for every such operand.

    Latency: 1 cycle (the product register; no reset, so that synthesis moves it into the multiplier block
    as the MAC array's product registers). Widths: A is stride + x_bits signed, B stride + w_bits, the
    product their sum (at most 32 bits on a 16 x 16 block), the extraction one stride-bit adder.

    `fault` (for the must-fail proof): "no_borrow" drops p[S-1], L's sign: wrong whenever x0 * w1 < 0.
    """

    FAULTS = ("no_borrow",)
    LATENCY = 1

    def __init__(self, x_bits: int, w_bits: int, stride: int, fault: str | None = None):
        if fault is not None and fault not in self.FAULTS:
            raise ValueError(f"unknown PairProduct fault {fault!r}: one of {self.FAULTS}")
        self.x_bits, self.w_bits, self.stride, self.fault = x_bits, w_bits, stride, fault
        super().__init__({
            "x0": In(signed(x_bits)), "x1": In(signed(x_bits)),
            "w0": In(signed(w_bits)), "w1": In(signed(w_bits)),
            "dot": Out(signed(stride)),
        })
        self.product = Signal(signed((stride + x_bits + 1) + (stride + w_bits + 1)), reset_less=True)

    def elaborate(self, platform):
        m = Module()
        s = self.stride
        a = self.x0 + self.x1.shift_left(s)
        b = self.w1 + self.w0.shift_left(s)
        m.d.sync += self.product.eq(a * b)
        borrow = 0 if self.fault == "no_borrow" else self.product[s - 1]
        m.d.comb += self.dot.eq((self.product[s:2 * s] + borrow)[:s].as_signed())
        return m
