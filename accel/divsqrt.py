"""Sequential reciprocal and square root: one result bit per cycle, used once per row by the row units."""
from __future__ import annotations

from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out


class Reciprocal(wiring.Component):
    """q = floor(2^k / max(n, 1)): `intops.reciprocal`, by restoring division, `radix_bits` quotient bits
    per cycle (1: radix 2; 2: radix 4).

    Algorithm: the remainder starts at 2^k and the divisor at n * 2^(q_bits - radix_bits), rounded to a
    multiple of the radix; each cycle the largest digit t in [0, 2^radix_bits) with t * divisor <= remainder
    is found (radix 4 compares with d, 2d and 3d at once), subtracted and appended to the quotient, and the
    divisor shifts right by radix_bits. `q_bits` (default k + 1, any n >= 1) may be lowered when n has a
    known lower bound: the quotient must be below 2^q_bits, i.e. n > 2^(k - q_bits) (softmax: the row
    maximum contributes exp(0) = 2^15 to the sum, so floor(2^31 / sum) has 17 bits).

    Timing: `start` samples n; `done` pulses ceil(q_bits / radix_bits) + 1 cycles later, and `q` holds
    until the next start; `busy` is high in between. Widths: n unsigned `n_width`; remainder k + 1 bits;
    divisor n_width + q_bits bits (and two more for 3d); q unsigned q_bits.
    """

    def __init__(self, k: int, n_width: int, q_bits: int | None = None, radix_bits: int = 1):
        assert radix_bits in (1, 2)
        self.k, self.n_width, self.radix_bits = k, n_width, radix_bits
        self.q_bits = k + 1 if q_bits is None else q_bits
        self.steps = -(-self.q_bits // radix_bits)
        self.latency = self.steps + 1
        super().__init__({
            "start": In(1), "n": In(unsigned(n_width)),
            "busy": Out(1), "done": Out(1), "q": Out(unsigned(self.q_bits)),
        })
        # the division's registers (the reciprocal proof observes them)
        self.top_shift = (self.steps - 1) * radix_bits      # the divisor's first shift
        self.rem = Signal(unsigned(k + 1))                  # the remainder
        self.div = Signal(unsigned(n_width + self.top_shift + 1))  # the divisor, shifted
        self.count = Signal(range(self.steps + 1))          # the steps left

    def elaborate(self, platform):
        m = Module()
        rb = self.radix_bits
        top = self.top_shift
        rem, div, count = self.rem, self.div, self.count
        q = Signal(unsigned(self.steps * rb))
        m.d.comb += self.q.eq(q)
        m.d.sync += self.done.eq(0)
        with m.If(self.start):
            n1 = self.n | (self.n == 0)                     # max(n, 1)
            m.d.sync += [rem.eq(1 << self.k), div.eq(n1 << top), q.eq(0), count.eq(self.steps), self.busy.eq(1)]
        with m.Elif(self.busy):
            if rb == 1:
                with m.If(rem >= div):
                    m.d.sync += [rem.eq(rem - div), q.eq((q << 1) | 1)]
                with m.Else():
                    m.d.sync += q.eq(q << 1)
            else:
                d2, d3 = Signal(len(div) + 1), Signal(len(div) + 2)
                m.d.comb += [d2.eq(div << 1), d3.eq(d2 + div)]
                with m.If(rem >= d3):
                    m.d.sync += [rem.eq(rem - d3), q.eq((q << 2) | 3)]
                with m.Elif(rem >= d2):
                    m.d.sync += [rem.eq(rem - d2), q.eq((q << 2) | 2)]
                with m.Elif(rem >= div):
                    m.d.sync += [rem.eq(rem - div), q.eq((q << 2) | 1)]
                with m.Else():
                    m.d.sync += q.eq(q << 2)
            m.d.sync += [div.eq(div >> rb), count.eq(count - 1)]
            with m.If(count == 1):
                m.d.sync += [self.busy.eq(0), self.done.eq(1)]
        return m


class Isqrt(wiring.Component):
    """r = floor(sqrt(v)): `intops.isqrt`, digit by digit (one result bit per cycle, no multiplier).

    Algorithm (the binary "abacus" method): with bit = 4^(R-1), for each of R = ceil(v_width / 2) steps,
    if num >= res + bit then num -= res + bit and res = res / 2 + bit, else res = res / 2; bit /= 4.
    res ends as floor(sqrt(v)) and num as the remainder v - res^2.

    Timing: `start` samples v; `done` pulses R + 1 cycles later, `r` holds until the next start.
    Widths: v unsigned `v_width`; num v_width bits; res and bit 2R bits; r unsigned R bits.
    """

    def __init__(self, v_width: int):
        self.v_width = v_width
        self.r_bits = (v_width + 1) // 2
        self.latency = self.r_bits + 1
        super().__init__({
            "start": In(1), "v": In(unsigned(v_width)),
            "busy": Out(1), "done": Out(1), "r": Out(unsigned(self.r_bits)),
        })
        # the root's registers (the square root proof observes them)
        width = 2 * self.r_bits
        self.num = Signal(unsigned(width))                  # the remainder v - res^2
        self.res = Signal(unsigned(width + 1))              # the root so far

    def elaborate(self, platform):
        m = Module()
        width = 2 * self.r_bits
        num, res = self.num, self.res
        bit = Signal(unsigned(width))
        trial = Signal(unsigned(width + 1))
        m.d.comb += [trial.eq(res + bit), self.r.eq(res)]
        m.d.sync += self.done.eq(0)
        with m.If(self.start):
            m.d.sync += [num.eq(self.v), res.eq(0), bit.eq(1 << (width - 2)), self.busy.eq(1)]
        with m.Elif(self.busy):
            with m.If(num >= trial):
                m.d.sync += [num.eq(num - trial), res.eq((res >> 1) + bit)]
            with m.Else():
                m.d.sync += res.eq(res >> 1)
            m.d.sync += bit.eq(bit >> 2)
            with m.If(bit == 1):
                m.d.sync += [self.busy.eq(0), self.done.eq(1)]
        return m
