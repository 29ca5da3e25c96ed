"""Requantization: the scale change between a wide accumulator and a narrow code, one value per cycle."""
from __future__ import annotations

from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from intformer.model import intops

from .arith import DSP_BITS, clamp, mul_signature, round_shift_parts, shift_add_mul

SHIFT_MAX = 62          # intops.quantize_multiplier never returns a larger shift
KEEP_SECOND_PRODUCT = True  # see ScaleShiftClamp: a yosys 0.70 iCE40 DSP-packing bug without it
KEEP_FIRST_PRODUCT = True   # see ScaleShiftClamp: another yosys 0.70 iCE40 DSP-packing bug without it


class Requantizer(wiring.Component):
    """clamp(round_shift(acc * m, s), lo, hi): `intops.requantize`, pipelined, one value per cycle.

    Algorithm: stage 1 multiplies the accumulator by the multiplier m; stage 2 shifts the product right
    arithmetically by s - 1; stage 3 adds one and shifts by one more (round half up: the same as adding
    2^(s-1) and shifting by s, `arith.round_shift_parts`) and clamps to [lo, hi] (ReLU is lo = 0). The golden
    model is `intops.requantize`.
    The parameters m, s, lo, hi are sampled together with each input value and travel with it, so the
    sequencer may change them between values (between steps) without draining the pipeline.

    Latency: 3 cycles from an accepted input to its output. Throughput: one value per cycle. Back-pressure
    stalls the whole pipeline (`input.ready = ~output.valid | output.ready`).

    Widths: acc is signed `acc_width`; m is unsigned `m_bits` (15: M in [2^14, 2^15)); the product is
    acc_width + m_bits + 1 bits signed, the rounded sum one bit more; lo, hi and the output are signed
    `out_width` (9 holds every signed or unsigned code of up to 8 bits). s is in `s_range` (default
    [0, 62]; a program's few shifts make a short shifter, `arith.round_shift_in`).

    `static_params`: s, lo and hi stay constant while values are in the pipeline (the accelerator changes
    them only between steps, with the drain empty), so they are used where needed instead of travelling
    with the value: some 70 flip-flops less (m is sampled with the value either way).

    Multiplier: one 16 x 16 block. An accumulator wider than 16 bits is split into its top 16 bits (signed,
    times m in the block) and its low `low_bits` = acc_width - 16 bits (times m by shift and add in logic):
    acc * m = (hi * m) << low_bits + lo * m, exactly. That no part of it wraps, for any accumulator and
    multiplier, is proven in `accel.formal.requantizer_harness` (every narrowing, `accel.overflow`).
    """

    def __init__(self, acc_width: int, out_width: int = 9, m_bits: int = intops.MULT_BITS,
                 s_range: tuple[int, int] = (0, SHIFT_MAX), static_params: bool = False):
        self.acc_width, self.out_width, self.m_bits = acc_width, out_width, m_bits
        self.s_range, self.static_params = s_range, static_params
        super().__init__({
            "input": In(stream.Signature(signed(acc_width))),
            "output": Out(stream.Signature(signed(out_width))),
            "m": In(unsigned(m_bits)),
            "s": In(range(SHIFT_MAX + 1)),
            "lo": In(signed(out_width)),
            "hi": In(signed(out_width)),
        })
        # the pipeline's registers and its enable (the stream proof follows a value through them)
        self.en = Signal()                              # the pipeline moves on (not stalled by the output)
        self.v1, self.v2, self.v3 = Signal(name="v1"), Signal(name="v2"), Signal(name="v3")
        self.prod = Signal(signed(acc_width + m_bits + 1), reset_less=True)         # stage 1: acc x m
        pre_width = len(round_shift_parts(self.prod, Signal.like(self.s), s_range)[0])     # any shift signal
        self.shifted = Signal(signed(pre_width))        # stage 2: shifted, its half LSB not yet added
        self.out = Signal(signed(out_width))            # stage 3: rounded and clamped

    LATENCY = 3

    @property
    def low_bits(self) -> int:
        """Accumulator bits below the 16 that the multiplier block takes."""
        return max(0, self.acc_width - DSP_BITS)

    def elaborate(self, platform):
        m = Module()
        en = self.en
        m.d.comb += [en.eq(~self.output.valid | self.output.ready), self.input.ready.eq(en)]

        v1, v2, v3 = self.v1, self.v2, self.v3
        prod = self.prod
        s1 = Signal.like(self.s)
        lo1, hi1, lo2, hi2 = (Signal(signed(self.out_width)) for _ in range(4))
        pre, post = round_shift_parts(prod, s1, self.s_range)
        shifted = self.shifted
        s2 = Signal.like(self.s)
        out = self.out
        acc = self.input.payload
        L = self.low_bits
        if L:
            p_hi = Signal(signed(DSP_BITS + self.m_bits + 1), reset_less=True)    # into the DSP block
            p_lo = Signal(unsigned(L + self.m_bits), reset_less=True)
            with m.If(en):
                m.d.sync += [p_hi.eq(acc[L:].as_signed() * self.m), p_lo.eq(shift_add_mul(self.m, acc[:L]))]
            m.d.comb += prod.eq((p_hi << L) + p_lo)
        else:
            with m.If(en):
                m.d.sync += prod.eq(acc * self.m)
        if self.static_params:
            m.d.comb += [s1.eq(self.s), s2.eq(self.s), lo2.eq(self.lo), hi2.eq(self.hi)]
        else:
            with m.If(en):
                m.d.sync += [s1.eq(self.s), s2.eq(s1), lo1.eq(self.lo), hi1.eq(self.hi), lo2.eq(lo1), hi2.eq(hi1)]
        post = round_shift_parts(prod, s2, self.s_range)[1]      # s2: the shift of the value in `shifted`
        with m.If(en):
            m.d.sync += [
                v1.eq(self.input.valid),
                v2.eq(v1), shifted.eq(pre),
                v3.eq(v2), out.eq(clamp(post(shifted), lo2, hi2)),
            ]
        m.d.comb += [self.output.valid.eq(v3), self.output.payload.eq(out)]
        return m


class ScaleShiftClamp(wiring.Component):
    """clamp(round_shift(a * ma + b * mb + c, s), lo, hi): the residual sum and the folded BatchNorm.

    `intops.residual_add` is (a, ma, b, mb) with c = 0; `intops.requantize_per_channel` is (x, m[c]) with
    mb = 0 and c = b[c]. A fixed-latency pipeline with an enable (`en`), no stream handshake: the drain
    pipeline of the accelerator never stalls. Parameters travel with the data like in `Requantizer`.

    Latency: 3 cycles (products; sum and shift by s - 1; the rounding increment and the clamp); the golden
    models are `intops.residual_add` and `intops.requantize_per_channel`. Widths: a, b signed `in_width`; ma, mb
    signed `m_width`; c signed `c_width`; output signed `out_width`; the sum has
    max(in_width + m_width, c_width) + 2 bits.

    `shared_mul`: the product a * ma comes from a multiplier outside (the `mul` port, operands out, product
    in one cycle later; `en` must stay high), so that blocks never busy at once can share one; in_width
    and m_width are then at most 16. `use_b`: False leaves out b * mb (the folded BatchNorm has none).
    s lies in `s_range` (a short shifter when a program has few shifts). `static_params`: s, lo and hi
    stay constant while values are in the pipeline (as in `Requantizer`); the products' factors and c
    travel with the value either way.
    """

    LATENCY = 3

    def __init__(self, in_width: int, m_width: int, c_width: int, out_width: int = 9, shared_mul: bool = False,
                 use_b: bool = True, s_range: tuple[int, int] = (0, SHIFT_MAX), static_params: bool = False):
        self.in_width, self.m_width, self.c_width, self.out_width = in_width, m_width, c_width, out_width
        self.s_range, self.static_params = s_range, static_params
        self.shared_mul, self.use_b = shared_mul, use_b
        assert not shared_mul or max(in_width, m_width) <= DSP_BITS
        ports = {
            "en": In(1, init=1),
            "valid_in": In(1), "a": In(signed(in_width)), "ma": In(signed(m_width)),
            "b": In(signed(in_width)), "mb": In(signed(m_width)), "c": In(signed(c_width)),
            "s": In(range(SHIFT_MAX + 1)), "lo": In(signed(out_width)), "hi": In(signed(out_width)),
            "valid_out": Out(1), "y": Out(signed(out_width)),
        }
        if shared_mul:
            ports["mul"] = Out(mul_signature())
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        sum_w = max(self.in_width + self.m_width, self.c_width) + 2
        v1, v2, v3 = Signal(name="v1"), Signal(name="v2"), Signal(name="v3")
        pw = self.in_width + self.m_width
        pa = Signal(signed(pw), reset_less=True)
        # `keep` on the second product's register: without it yosys 0.70's ice40_dsp pass takes this one
        # flip-flop into two SB_MAC16s (as the adder's C/D input register of the block adding pa + pb, and as
        # the product register of the block computing pb), deletes the second block and leaves C/D undefined,
        # so every residual sum on an iCE40 loses pb. The netlist simulation (boards/netlist.py) found it;
        # tests/test_netlist.py turns KEEP_SECOND_PRODUCT off to see the check catch it again (with
        # KEEP_FIRST_PRODUCT off too: the kept wire below also keeps the adder out of pa's block, which
        # avoids this fault; both stay, as neither layout should depend on the other's workaround).
        pb = Signal(signed(pw), reset_less=True, attrs={"keep": 1} if KEEP_SECOND_PRODUCT else {})
        c1 = Signal(signed(self.c_width))
        s1 = Signal.like(self.s)
        lo1, hi1, lo2, hi2 = (Signal(signed(self.out_width)) for _ in range(4))
        total = Signal(signed(sum_w))
        pre, _ = round_shift_parts(total, s1, self.s_range)
        shifted = Signal(signed(len(pre)))              # shifted, its half LSB not yet added
        s2 = Signal.like(self.s)
        m.d.comb += total.eq(pa + pb + c1)
        if self.shared_mul:
            m.d.comb += [self.mul.a.eq(self.a), self.mul.b.eq(self.ma), pa.eq(self.mul.p)]
        else:
            # `keep` on the first product before its register: the drain drives `a` from a narrower element
            # (sign-extended), so yosys narrows the multiplier's output below pa's width, and pa's flip-flop
            # holds copies of the product's sign bit. Yosys 0.70's ice40_dsp takes that flip-flop into the
            # SB_MAC16 as its product register for the bits the block outputs, deletes the whole flip-flop
            # and leaves pa's upper (sign) bits undriven: they become the flip-flop's init value 0, so every
            # negative pa reads as a large positive one (the skip head's 16-bit codes: every word of the
            # default model on the iCEBreaker wrong). With a kept wire on the register's input ice40_dsp
            # leaves the register out of pa's block (it becomes the C/D input register of the block adding
            # pa + pb, all 32 bits driven); pb needs none (b is never narrower: its product is the
            # multiplier's whole output). tests/test_netlist.py turns it off to see the fault.
            product = Signal(signed(pw), attrs={"keep": 1} if KEEP_FIRST_PRODUCT else {})
            m.d.comb += product.eq(self.a * self.ma)
            with m.If(self.en):
                m.d.sync += pa.eq(product)
        if self.use_b:
            with m.If(self.en):
                m.d.sync += pb.eq(self.b * self.mb)
        if self.static_params:
            m.d.comb += [s1.eq(self.s), s2.eq(self.s), lo2.eq(self.lo), hi2.eq(self.hi)]
        else:
            with m.If(self.en):
                m.d.sync += [s1.eq(self.s), s2.eq(s1), lo1.eq(self.lo), hi1.eq(self.hi), lo2.eq(lo1), hi2.eq(hi1)]
        post = round_shift_parts(total, s2, self.s_range)[1]     # s2: the shift of the value in `shifted`
        with m.If(self.en):
            m.d.sync += [
                v1.eq(self.valid_in), c1.eq(self.c),
                v2.eq(v1), shifted.eq(pre),
                v3.eq(v2), self.y.eq(clamp(post(shifted), lo2, hi2)),
            ]
        m.d.comb += self.valid_out.eq(v3)
        return m
