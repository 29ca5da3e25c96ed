"""The MAC array: P lanes that share one broadcast X operand and read one P-wide W word per cycle."""
from __future__ import annotations

from amaranth.hdl import Mux, Module, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from intformer.model import intops

from .arith import booth_mul


def operand_range(bits: int) -> tuple[int, int]:
    """Every signed or unsigned code of `bits` bits: [-2^(bits-1), 2^bits - 1] (held in bits + 1 signed)."""
    return -(1 << (bits - 1)), (1 << bits) - 1


def acc_width(x_bits: int, w_bits: int, k_max: int) -> int:
    """Accumulator width for up to k_max products of x_bits by w_bits codes, signed or unsigned:
    the worst case of `intops.mac_bound` over both operand ranges (a bias is added later, in the drain)."""
    return intops.bits_signed(*intops.mac_bound(k_max, operand_range(x_bits), operand_range(w_bits)))


class MacArray(wiring.Component):
    """P multiply-accumulate lanes: acc[l] += x * w[l], one k per cycle, groups back to back.

    Each cycle with `valid`, lane l adds x * w[l]; `first` marks a group's first k (the lane starts from
    its product instead of the old sum: no clearing cycle) and `last` its last k: that cycle's sums are
    copied to `result` with a one-cycle `result_valid` pulse, and `tag` (for example the number of
    valid lanes of the group) comes out with them as `result_tag`. A new group may start on the very next
    cycle: `result` stays stable until the next group's last k, so the drain has K cycles to take it.
    `shift` (a cycle without a new result) moves `result` down one lane (result[l] takes result[l + 1]): the
    result registers are the drain's shift register, read at result[0].

    Latency: 3 cycles from the `last` input to `result_valid` (a product register, the accumulator, the
    result register).

    Widths: x is signed x_bits + 1 (so unsigned x_bits codes fit), each w lane signed w_bits + 1; a
    product has x_bits + w_bits + 2 bits; the accumulators have `acc_width(x_bits, w_bits, k_max)` bits,
    the worst case over every code of those bit widths and k_max products (`intops.mac_bound`).

    `acc_bits` narrows the accumulators where a tighter bound is known (the accelerator's plan bounds each
    step by its weights and operand buffers; two's complement sums stay exact if the final sum fits).
    `logic_lanes`: the last lanes multiply in logic (`arith.booth_mul`) instead of a multiplier block, for a
    device with fewer blocks than lanes.

    `fault` (deliberate design faults for the must-fail proofs of `accel.formal`; None builds the real
    array): "booth_carry" drops the +1 of the Booth multipliers' negation, "dsp_sign" multiplies x as
    unsigned in the multiplier-block lanes (a wrong sign mode).
    """

    FAULTS = ("booth_carry", "dsp_sign")

    LATENCY = 3

    def __init__(self, lanes: int, x_bits: int, w_bits: int, k_max: int, tag_width: int = 8, logic_lanes: int = 0,
                 acc_bits: int | None = None, fault: str | None = None):
        if fault is not None and fault not in self.FAULTS:
            raise ValueError(f"unknown MacArray fault {fault!r}: one of {self.FAULTS}")
        self.fault = fault
        self.lanes, self.x_bits, self.w_bits, self.k_max = lanes, x_bits, w_bits, k_max
        self.logic_lanes = max(0, min(lanes, logic_lanes))
        self.acc_width = acc_width(x_bits, w_bits, k_max) if acc_bits is None else acc_bits
        super().__init__({
            "valid": In(1), "first": In(1), "last": In(1), "shift": In(1),
            "x": In(signed(x_bits + 1)),
            "w": In(data.ArrayLayout(signed(w_bits + 1), lanes)),
            "tag": In(unsigned(tag_width)),
            "result": Out(data.ArrayLayout(signed(self.acc_width), lanes)),
            "result_valid": Out(1),
            "result_tag": Out(unsigned(tag_width)),
        })
        # each lane's product and accumulator registers (the MAC proof observes them).
        # No reset on the product registers: yosys then moves them into the DSP blocks (an iCE40 SB_MAC16's
        # output register has only an asynchronous reset)
        prod_w = x_bits + w_bits + 2
        self.prod = [Signal(signed(prod_w), name=f"prod{l}", reset_less=True) for l in range(lanes)]
        self.acc = [Signal(signed(self.acc_width), name=f"acc{l}") for l in range(lanes)]

    def elaborate(self, platform):
        m = Module()
        prods, accs = self.prod, self.acc
        valid, first, last = Signal(), Signal(), Signal()
        tag = Signal.like(self.tag)

        # stage 1: products (a register after each multiplier keeps the DSP blocks fast)
        m.d.sync += [valid.eq(self.valid), first.eq(self.first), last.eq(self.last), tag.eq(self.tag)]
        for l in range(self.lanes):
            logic = l >= self.lanes - self.logic_lanes
            if logic:
                prod = booth_mul(self.x, self.w[l], drop_carry=self.fault == "booth_carry")
            else:
                prod = (self.x.as_unsigned() if self.fault == "dsp_sign" else self.x) * self.w[l]
            m.d.sync += prods[l].eq(prod)

        # stage 2: accumulate (the sum is formed only where it is kept: the overflow audit asserts it there)
        with m.If(valid):
            for l in range(self.lanes):
                m.d.sync += accs[l].eq(Mux(first, prods[l], accs[l] + prods[l]))

        # stage 3: a group's sums are copied from the accumulators the cycle after its last k (the adders
        # then drive only the accumulators: an iCE40 logic cell holds the adder and its register)
        done, done_tag = Signal(), Signal.like(tag)
        m.d.sync += [done.eq(valid & last), self.result_valid.eq(done)]
        with m.If(valid & last):
            m.d.sync += done_tag.eq(tag)
        with m.If(done):
            m.d.sync += self.result_tag.eq(done_tag)
            for l in range(self.lanes):
                m.d.sync += self.result[l].eq(accs[l])
        with m.Elif(self.shift):
            for l in range(self.lanes - 1):
                m.d.sync += self.result[l].eq(self.result[l + 1])
        return m
