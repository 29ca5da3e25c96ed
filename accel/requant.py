"""Requantization: the scale change between a wide accumulator and a narrow code, one value per cycle."""
from __future__ import annotations

from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from model import intops

from .arith import clamp, round_shift

SHIFT_MAX = 62          # intops.quantize_multiplier never returns a larger shift


class Requantizer(wiring.Component):
    """clamp(round_shift(acc * m, s), lo, hi): `intops.requantize`, pipelined, one value per cycle.

    Algorithm: stage 1 multiplies the accumulator by the multiplier m; stage 2 adds half an LSB, 2^(s-1),
    and shifts right arithmetically by s (round half up); stage 3 clamps to [lo, hi] (ReLU is lo = 0).
    The parameters m, s, lo, hi are sampled together with each input value and travel with it, so the
    sequencer may change them between values (between steps) without draining the pipeline.

    Latency: 3 cycles from an accepted input to its output. Throughput: one value per cycle. Back-pressure
    stalls the whole pipeline (`input.ready = ~output.valid | output.ready`).

    Widths: acc is signed `acc_width`; m is unsigned `m_bits` (15: M in [2^14, 2^15)); the product is
    acc_width + m_bits + 1 bits signed, the rounded sum one bit more; lo, hi and the output are signed
    `out_width` (9 holds every signed or unsigned code of up to 8 bits). s is in [0, 62].
    """

    def __init__(self, acc_width: int, out_width: int = 9, m_bits: int = intops.MULT_BITS):
        self.acc_width, self.out_width, self.m_bits = acc_width, out_width, m_bits
        super().__init__({
            "input": In(stream.Signature(signed(acc_width))),
            "output": Out(stream.Signature(signed(out_width))),
            "m": In(unsigned(m_bits)),
            "s": In(range(SHIFT_MAX + 1)),
            "lo": In(signed(out_width)),
            "hi": In(signed(out_width)),
        })

    LATENCY = 3

    def elaborate(self, platform):
        m = Module()
        en = Signal()
        m.d.comb += [en.eq(~self.output.valid | self.output.ready), self.input.ready.eq(en)]

        prod_w = self.acc_width + self.m_bits + 1
        v1, v2, v3 = Signal(), Signal(), Signal()
        prod = Signal(signed(prod_w))
        s1 = Signal.like(self.s)
        lo1, hi1, lo2, hi2 = (Signal(signed(self.out_width)) for _ in range(4))
        shifted = Signal(signed(prod_w))
        out = Signal(signed(self.out_width))
        with m.If(en):
            m.d.sync += [
                v1.eq(self.input.valid), prod.eq(self.input.payload * self.m),
                s1.eq(self.s), lo1.eq(self.lo), hi1.eq(self.hi),
                v2.eq(v1), shifted.eq(round_shift(prod, s1)), lo2.eq(lo1), hi2.eq(hi1),
                v3.eq(v2), out.eq(clamp(shifted, lo2, hi2)),
            ]
        m.d.comb += [self.output.valid.eq(v3), self.output.payload.eq(out)]
        return m


class ScaleShiftClamp(wiring.Component):
    """clamp(round_shift(a * ma + b * mb + c, s), lo, hi): the residual sum and the folded BatchNorm.

    `intops.residual_add` is (a, ma, b, mb) with c = 0; `intops.requantize_per_channel` is (x, m[c]) with
    mb = 0 and c = b[c]. A fixed-latency pipeline with an enable (`en`), no stream handshake: the drain
    pipeline of the accelerator never stalls. Parameters travel with the data like in `Requantizer`.

    Latency: 3 cycles (products; sum, round and shift; clamp). Widths: a, b signed `in_width`; ma, mb
    signed `m_width`; c signed `c_width`; output signed `out_width`; the sum has
    max(in_width + m_width, c_width) + 2 bits.
    """

    LATENCY = 3

    def __init__(self, in_width: int, m_width: int, c_width: int, out_width: int = 9):
        self.in_width, self.m_width, self.c_width, self.out_width = in_width, m_width, c_width, out_width
        super().__init__({
            "en": In(1, init=1),
            "valid_in": In(1), "a": In(signed(in_width)), "ma": In(signed(m_width)),
            "b": In(signed(in_width)), "mb": In(signed(m_width)), "c": In(signed(c_width)),
            "s": In(range(SHIFT_MAX + 1)), "lo": In(signed(out_width)), "hi": In(signed(out_width)),
            "valid_out": Out(1), "y": Out(signed(out_width)),
        })

    def elaborate(self, platform):
        m = Module()
        sum_w = max(self.in_width + self.m_width, self.c_width) + 2
        v1, v2, v3 = Signal(), Signal(), Signal()
        pa, pb = Signal(signed(self.in_width + self.m_width)), Signal(signed(self.in_width + self.m_width))
        c1 = Signal(signed(self.c_width))
        s1 = Signal.like(self.s)
        lo1, hi1, lo2, hi2 = (Signal(signed(self.out_width)) for _ in range(4))
        shifted = Signal(signed(sum_w))
        total = Signal(signed(sum_w))
        m.d.comb += total.eq(pa + pb + c1)
        with m.If(self.en):
            m.d.sync += [
                v1.eq(self.valid_in), pa.eq(self.a * self.ma), pb.eq(self.b * self.mb), c1.eq(self.c),
                s1.eq(self.s), lo1.eq(self.lo), hi1.eq(self.hi),
                v2.eq(v1), shifted.eq(round_shift(total, s1)), lo2.eq(lo1), hi2.eq(hi1),
                v3.eq(v2), self.y.eq(clamp(shifted, lo2, hi2)),
            ]
        m.d.comb += self.valid_out.eq(v3)
        return m
