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

    `pairs` (`plan.Pairing`, None: single products only): a cycle with `pair` high takes two k, X elements
    `x` (k) and `x1` (k + 1), and in each W lane the pair (w_k in the low `pairs.w_bits` bits, w_k+1 above):
    the lane's multiplier block computes A * B = (x + x1 2^S) (w_k+1 + w_k 2^S) and adds its middle S bits
    with the borrow, x w_k + x1 w_k+1 (`accel.packed`; exact for the codes the pairing was chosen for, the
    proof `accel.formal.mac_pairs_harness`). Same latency; the multiplier's operands gain a multiplexer,
    the addend an S-bit adder and a multiplexer. A lane in logic adds two narrow Booth products instead.

    `fault` (deliberate design faults for the must-fail proofs of `accel.formal`; None builds the real
    array): "booth_carry" drops the +1 of the Booth multipliers' negation, "dsp_sign" multiplies x as
    unsigned in the multiplier-block lanes (a wrong sign mode), "pair_borrow" drops a pair's borrow p[S-1].
    """

    FAULTS = ("booth_carry", "dsp_sign", "pair_borrow")

    LATENCY = 3

    def __init__(self, lanes: int, x_bits: int, w_bits: int, k_max: int, tag_width: int = 8, logic_lanes: int = 0,
                 acc_bits: int | None = None, fault: str | None = None, pairs=None):
        if fault is not None and fault not in self.FAULTS:
            raise ValueError(f"unknown MacArray fault {fault!r}: one of {self.FAULTS}")
        self.fault = fault
        self.lanes, self.x_bits, self.w_bits, self.k_max = lanes, x_bits, w_bits, k_max
        self.logic_lanes = max(0, min(lanes, logic_lanes))
        self.pairs = pairs
        self.acc_width = acc_width(x_bits, w_bits, k_max) if acc_bits is None else acc_bits
        pair_ports = {"x1": In(signed(x_bits + 1)), "pair": In(1)} if pairs else {}
        super().__init__({
            **pair_ports,
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
        if pairs:       # the operands A, B of a pair as wide as the single ones or wider (`packed.PairProduct`)
            prod_w = (max(x_bits + 1, pairs.x_bits + pairs.stride + 1)
                      + max(w_bits + 1, pairs.w_bits + pairs.stride + 1))
        self.prod = [Signal(signed(prod_w), name=f"prod{l}", reset_less=True) for l in range(lanes)]
        self.acc = [Signal(signed(self.acc_width), name=f"acc{l}") for l in range(lanes)]
        # what each lane adds: its product, or a pair's middle bits (the accumulator proof reads these)
        self.addend = [Signal(signed(max(prod_w, pairs.stride if pairs else 0)), name=f"addend{l}")
                       for l in range(lanes)]

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
                prod = self._booth(l)
            else:
                x, w = self._operands(l)
                prod = (x.as_unsigned() if self.fault == "dsp_sign" else x) * w
            m.d.sync += prods[l].eq(prod)
        self._addends(m)

        # stage 2: accumulate (the sum is formed only where it is kept: the overflow audit asserts it there)
        with m.If(valid):
            for l in range(self.lanes):
                m.d.sync += accs[l].eq(Mux(first, self.addend[l], accs[l] + self.addend[l]))

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

    def _booth(self, lane: int):
        """A lane in logic: x * w, or in a pair cycle x w_k + x1 w_k+1 from two Booth multipliers of the pair
        steps' narrow codes (its addend is then its product register)."""
        carry = self.fault == "booth_carry"
        single = booth_mul(self.x, self.w[lane], drop_carry=carry)
        if not self.pairs:
            return single
        xb, wb, w = self.pairs.x_bits, self.pairs.w_bits, self.w[lane]
        two = (booth_mul(self.x[:xb].as_signed(), w[:wb].as_signed(), drop_carry=carry)
               + booth_mul(self.x1[:xb].as_signed(), w[wb:2 * wb].as_signed(), drop_carry=carry))
        return Mux(self.pair, two, single)

    def _operands(self, lane: int):
        """The multiplier's operands: x and w, or in a pair cycle A = x + x1 2^S and B = w_k+1 + w_k 2^S (plain
        slices of the ports: a pair step's codes fit the pairing's widths; `shift_left`, not `<<` of an int,
        which Amaranth sizes as a variable shift: a 21 x 20 product, three SB_MAC16 per lane). No kept wires
        between the multiplexers and the multiplier: with them yosys 0.70's ice40_dsp leaves operand bits of
        the SB_MAC16 undefined (`boards.netlist.undefined_inputs` finds them, tests/test_netlist.py)."""
        if not self.pairs:
            return self.x, self.w[lane]
        s, xb, wb = self.pairs.stride, self.pairs.x_bits, self.pairs.w_bits
        w = self.w[lane]
        a = Mux(self.pair, self.x[:xb].as_signed() + self.x1[:xb].as_signed().shift_left(s), self.x)
        b = Mux(self.pair, w[wb:2 * wb].as_signed() + w[:wb].as_signed().shift_left(s), w)
        return a, b

    def _addends(self, m: Module) -> None:
        """Each lane's addend: its product, or in a pair cycle the middle bits p[S:2S] plus the borrow p[S-1]
        (the sign of the low product x w_k+1), as an S-bit two's complement number."""
        if not self.pairs:
            m.d.comb += [self.addend[l].eq(self.prod[l]) for l in range(self.lanes)]
            return
        s = self.pairs.stride
        pair_d = Signal()                              # the pair flag of the products in the registers
        m.d.sync += pair_d.eq(self.pair)
        for l in range(self.lanes):
            p = self.prod[l]
            if l >= self.lanes - self.logic_lanes:     # a lane in logic formed the pair's sum itself
                m.d.comb += self.addend[l].eq(p)
                continue
            middle = Signal(s + 1, name=f"middle{l}")  # unsigned, wide enough: the cut below is a plain slice
            borrow = 0 if self.fault == "pair_borrow" else p[s - 1]
            m.d.comb += [middle.eq(p[s:2 * s] + borrow),
                         self.addend[l].eq(Mux(pair_d, middle[:s].as_signed(), p))]
