"""Formal proofs of the datapath: harnesses around the real `accel/` blocks, and the list of a model's proofs.

Each harness is an Amaranth `Module` that instantiates one block exactly as the accelerator builds it for a
given `IntProgram` (the same widths, shift ranges and lane count, taken from `accel.plan.make_plan`), drives
its inputs with `AnySeq` / `AnyConst` values constrained by `Assume` to what the accelerator can give it,
and states with `Assert` what must hold on every cycle of every run. Where a property is about a register
inside a block, the harness reads the block's attribute for it and adds its assertions to the block's own
elaborated module (`formal_helpers.elaborated`), so the hardware under proof is the hardware that is built,
unchanged.

`model_proofs(program, lanes)` lists the proofs for one model's configuration; `accel.sby.run_proof` runs
one (SymbiYosys, smtbmc with Yices: `mode prove` unbounded by k-induction, `mode bmc` bounded, each bounded
proof saying why its bound covers every behaviour where it does); `intformer.proofs.all_proofs` adds the
host link's (`boards.link_formal`).
"""
from __future__ import annotations

import numpy as np
from amaranth.asserts import AnyConst, AnySeq
from amaranth.hdl import Assert, Assume, Cat, Const, Module, Mux, Signal, signed, unsigned

from intformer.model import intops
from intformer.model.program import IntProgram, LinearStep, SoftmaxStep

from .formal_helpers import elaborated, harness, in_range, stream_rules, sum_or
from .sby import Proof

# ------------------------------------------------------------------------------------------- MAC array

def _x_ranges(program: IntProgram) -> list[tuple[int, int]]:
    """The distinct code ranges of the MAC array's X operand over the program's linear steps."""
    ranges = set()
    for s in program.steps:
        if isinstance(s, LinearStep):
            if s.x in program.buffers:
                b = program.buffers[s.x]
                ranges.add(intops.code_range(b.bits, b.signed))
            else:
                ranges.add((1, 1))                      # the ones operand of mean pooling
    return sorted(ranges)


def check_mac_budget(program: IntProgram, lo: int, hi: int) -> None:
    """The premise of the MAC proof, checked on the program itself: for every linear step, every output column
    and every prefix of its k products, the running sums of the per-product extremes over the X range
    (the `budget` the harness assumes) stay within [lo, hi]."""
    for s in program.steps:
        if not isinstance(s, LinearStep):
            continue
        xr = (1, 1) if s.x not in program.buffers else intops.code_range(program.buffers[s.x].bits,
                                                                        program.buffers[s.x].signed)
        if s.w in program.tensors:
            w = np.asarray(program.tensors[s.w][s.w_row:s.w_row + s.k_len, s.w_col:s.w_col + s.cols], np.int64)
        else:
            b = program.buffers[s.w]
            wl, wh = intops.code_range(b.bits, b.signed)
            w = np.array([[wl], [wh]], np.int64).repeat(s.k_len, axis=0)[:s.k_len]
            corners = [a * c for a in xr for c in (wl, wh)]
            if s.k_len * min(corners) < lo or s.k_len * max(corners) > hi:
                raise AssertionError(f"step {s.name}: buffer operand bound outside the accumulator range")
            continue
        t_hi = np.cumsum(np.maximum(w * xr[0], w * xr[1]), axis=0)
        t_lo = np.cumsum(np.minimum(w * xr[0], w * xr[1]), axis=0)
        if t_hi.max() > hi or t_lo.min() < lo:
            raise AssertionError(f"step {s.name}: a partial sum bound leaves the accumulator range [{lo}, {hi}]")


def mac_array_harness(lanes: int, x_bits: int, w_bits: int, k_max: int, acc_bits: int, x_range: tuple[int, int],
                      acc_lo: int, acc_hi: int, logic_lanes: int = 0, pairs=None) -> Module:
    """MAC array: no accumulator ever wraps, and each result is its group's exact sum (unbounded: k-induction).

    The `MacArray` as the accelerator builds it (P lanes, the plan's operand and accumulator widths). Inputs:
    any valid/first/last/shift pattern, x any code in `x_range`, each lane's w any value of its port.
    Assumed: within a group, every partial sum of a lane's products stays in [acc_lo, acc_hi], the plan's
    accumulator range (`check_mac_budget` verifies this premise on the program: for every step, column and
    prefix, over every code of the X buffer). Asserted on every cycle, for every lane: the accumulator
    equals the exact sum of its group's addends so far (kept in a shadow register 4 bits wider, which
    cannot wrap under the assumption) and lies in [acc_lo, acc_hi]; every result register lies in
    [acc_lo, acc_hi]. One bit less of accumulator fails this proof. With `pairs` (the plan's), the array
    as built for pair steps, `pair` any pattern: the addends are products or pairs' sums (`mac_pairs_harness`
    shows them exact), the prefixes at even k, among those `check_mac_budget` checks.
    """
    from .mac_array import MacArray
    m = harness()
    mac = MacArray(lanes, x_bits, w_bits, k_max, logic_lanes=logic_lanes, acc_bits=acc_bits, pairs=pairs)
    dut = elaborated(mac)
    m.submodules.mac = dut
    wide = max(acc_bits, len(mac.addend[0])) + 4
    for port in ("valid", "first", "last", "shift") + (("pair",) if pairs else ()):
        m.d.comb += getattr(mac, port).eq(AnySeq(1))
    m.d.comb += [mac.x.eq(AnySeq(x_bits + 1)), Assume(in_range(mac.x, *x_range))]
    if pairs:
        m.d.comb += [mac.x1.eq(AnySeq(x_bits + 1)), Assume(in_range(mac.x1, *x_range))]
    # the block's stage-1 valid and first: registers of the same inputs
    valid_d, first_d = Signal(), Signal()
    m.d.sync += [valid_d.eq(mac.valid), first_d.eq(mac.first)]
    for l in range(lanes):
        m.d.comb += mac.w[l].eq(AnySeq(w_bits + 1))
        prod, acc = mac.addend[l], mac.acc[l]
        shadow = Signal(signed(wide), name=f"shadow{l}")
        nxt = Signal(signed(wide), name=f"shadow_next{l}")
        m.d.comb += nxt.eq(Mux(first_d, prod, shadow + prod))
        with m.If(valid_d):
            m.d.comb += Assume(in_range(nxt, acc_lo, acc_hi))
            m.d.sync += shadow.eq(nxt)
        m.d.comb += [Assert(in_range(shadow, acc_lo, acc_hi)), Assert(acc == shadow),
                     Assert(in_range(mac.result[l], acc_lo, acc_hi))]
    from .overflow import assert_no_overflow
    assert_no_overflow(dut)             # the lanes' sums, and any other narrowing of the block
    return m


BOOTH_QUICK_BITS = 6            # the widest Booth operands (bits of a code) that quick mode proves


def mac_products_harness(lanes: int, x_bits: int, w_bits: int, logic_lanes: int = 0,
                         fault: str | None = None, pairs=None) -> Module:
    """MAC products: every lane's product register is x * w of the previous cycle's operands, for every
    operand of the ports' widths (unbounded: k-induction; the products are one register after the inputs).

    The `MacArray` as the accelerator builds it (P lanes, the plan's operand widths), `logic_lanes` of
    them multiplying in logic (`arith.booth_mul`), the others with `*` (a multiplier block). Inputs: x and
    each lane's w any values of their ports (signed x_bits + 1 and w_bits + 1 bits: every code, and more),
    every other input any pattern. The harness keeps the previous cycle's x and w (registers starting at 0,
    as the product registers do). Asserted on every cycle, for every lane: prod == x_prev * w_prev, at full
    precision. This is the premise that `mac_array_harness` takes as given (it reads the product
    registers). `fault` builds the array with a design fault (`MacArray.FAULTS`: it must fail from reset).
    With `pairs`, the array as built for pair steps, on its single-product cycles (`pair` low; the pair
    cycles: `mac_pairs_harness`).
    """
    from .mac_array import MacArray
    m = harness()
    mac = MacArray(lanes, x_bits, w_bits, k_max=1, logic_lanes=logic_lanes, fault=fault, pairs=pairs)
    m.submodules.mac = elaborated(mac)
    for port in ("valid", "first", "last", "shift"):
        m.d.comb += getattr(mac, port).eq(AnySeq(1))
    if pairs:
        m.d.comb += [mac.pair.eq(0), mac.x1.eq(AnySeq(x_bits + 1))]
    # the previous operands, sign-extended to the multiplier's operand widths: the same value, and with pairs
    # (whose multiplexed operands are wider) the same multiplication as the block's, which the solver then
    # matches term for term instead of proving two multipliers of different widths equal
    a_bits, b_bits = (len(mac.prod[0]) - w_bits - 1, w_bits + 1) if pairs is None else _pair_operand_bits(mac)
    x_d = Signal(signed(a_bits))
    m.d.comb += mac.x.eq(AnySeq(x_bits + 1))
    m.d.sync += x_d.eq(mac.x)
    for l in range(lanes):
        w_d = Signal(signed(b_bits), name=f"w_prev{l}")
        m.d.comb += mac.w[l].eq(AnySeq(w_bits + 1))
        m.d.sync += w_d.eq(mac.w[l])
        m.d.comb += Assert(mac.prod[l] == x_d * w_d)
    return m


def _pair_operand_bits(mac) -> tuple[int, int]:
    """The widths of a pair MAC array's multiplier operands (`MacArray._operands`)."""
    p = mac.pairs
    return max(mac.x_bits + 1, p.x_bits + p.stride + 1), max(mac.w_bits + 1, p.w_bits + p.stride + 1)


def mac_pairs_harness(lanes: int, x_bits: int, w_bits: int, pairs, logic_lanes: int = 0,
                      fault: str | None = None) -> Module:
    """MAC pairs: on a pair cycle, every lane's addend is x w_k + x1 w_k+1 of the previous cycle's operands,
    for every code of the pairing's ranges (unbounded: k-induction).

    The `MacArray` as the accelerator builds it for a plan with pair steps (`plan.Pairing`), `logic_lanes`
    of its lanes in logic (two Booth products). Inputs: `pair` high, x and x1 any codes of
    `pairs.x_range`, each W lane a pair (w_k in its low `pairs.w_bits` bits, w_k+1 above, each any weight of
    `pairs.w_range`) with any bits above the pair, the other inputs any pattern. Asserted on every cycle,
    for every lane: addend == x_prev * w_k_prev + x1_prev * w_k+1_prev. `fault`: `MacArray.FAULTS`.
    """
    from .mac_array import MacArray
    m = harness()
    mac = MacArray(lanes, x_bits, w_bits, k_max=2, logic_lanes=logic_lanes, fault=fault, pairs=pairs)
    m.submodules.mac = elaborated(mac)
    for port in ("valid", "first", "last", "shift"):
        m.d.comb += getattr(mac, port).eq(AnySeq(1))
    m.d.comb += mac.pair.eq(1)
    prev = {}
    for name in ("x", "x1"):
        port = getattr(mac, name)
        prev[name] = Signal(signed(x_bits + 1), name=f"{name}_prev")
        m.d.comb += [port.eq(AnySeq(x_bits + 1)), Assume(in_range(port, *pairs.x_range))]
        m.d.sync += prev[name].eq(port)
    wb, spare = pairs.w_bits, w_bits + 1 - 2 * pairs.w_bits
    for l in range(lanes):
        w0, w1 = Signal(signed(wb), name=f"w0_{l}"), Signal(signed(wb), name=f"w1_{l}")
        w0_d, w1_d = Signal(signed(wb), name=f"w0_prev{l}"), Signal(signed(wb), name=f"w1_prev{l}")
        m.d.comb += [w0.eq(AnySeq(wb)), w1.eq(AnySeq(wb)), Assume(in_range(w0, *pairs.w_range)),
                     Assume(in_range(w1, *pairs.w_range))]
        m.d.comb += mac.w[l].eq(Cat(w0, w1, AnySeq(spare)) if spare else Cat(w0, w1))
        m.d.sync += [w0_d.eq(w0), w1_d.eq(w1)]
        m.d.comb += Assert(mac.addend[l] == prev["x"] * w0_d + prev["x1"] * w1_d)
    return m


def pair_products_harness(x_range: tuple[int, int], w_range: tuple[int, int], fault: str | None = None,
                          port_bits: int = 16) -> Module:
    """Packed products: `PairProduct`'s output is x0 * w0 + x1 * w1 of the previous cycle's operands, for
    every operand of the ranges (unbounded: k-induction; one register after the inputs).

    The block at the stride `pair_stride(x_range, w_range, port_bits)` chooses. Inputs: x0, x1 any codes of
    x_range, w0, w1 any codes of w_range, every cycle. The harness keeps the previous cycle's operands
    (registers starting at 0, as the product register does). Asserted on every cycle: dot == x0 * w0 +
    x1 * w1 at full precision. `fault`: `PairProduct.FAULTS` (it must fail from reset).
    """
    from .packed import PairProduct, operand_bits, pair_stride
    stride = pair_stride(x_range, w_range, port_bits)
    if stride is None:
        raise ValueError(f"no packing of x in {x_range} and w in {w_range} fits {port_bits}-bit ports")
    xb, wb = operand_bits(x_range), operand_bits(w_range)
    m = harness()
    pair = PairProduct(xb, wb, stride, fault=fault)
    m.submodules.pair = elaborated(pair)
    ops = {"x0": (xb, x_range), "x1": (xb, x_range), "w0": (wb, w_range), "w1": (wb, w_range)}
    prev = {}
    for name, (bits, (lo, hi)) in ops.items():
        port = getattr(pair, name)
        prev[name] = Signal(signed(bits), name=f"{name}_prev")
        m.d.comb += [port.eq(AnySeq(bits)), Assume(in_range(port, lo, hi))]
        m.d.sync += prev[name].eq(port)
    m.d.comb += Assert(pair.dot == prev["x0"] * prev["w0"] + prev["x1"] * prev["w1"])
    return m


# ------------------------------------------------------------------------------------------ requantizer

def requantizer_harness(acc_width: int, out_width: int, s_range: tuple[int, int], acc_lo: int, acc_hi: int) -> Module:
    """Requantizer: no intermediate wraps and the output stays in [lo, hi] (unbounded: k-induction).

    The drain's `Requantizer` as the accelerator builds it (accumulator width, code width, the program's
    shift range, static parameters). Inputs: payload any accumulator in [acc_lo, acc_hi] (accumulator plus
    bias over the program's steps), valid and the output's ready any pattern, m any value of its 15 bits,
    s any constant in the shift range, lo <= hi any constants of the code width. Nothing is assumed about
    the products. Asserted on every cycle: every narrowing of the block (`accel.overflow`: the split
    product's low part, the shift amount, the clamped output) holds its full-precision value, and every
    output word lies in [lo, hi].
    """
    from .overflow import assert_no_overflow
    from .requant import Requantizer
    m = harness()
    rq = Requantizer(acc_width, out_width, s_range=s_range, static_params=True)
    dut = elaborated(rq)
    m.submodules.rq = dut
    acc = Signal(signed(acc_width))
    m.d.comb += [acc.eq(AnySeq(acc_width)), Assume(in_range(acc, acc_lo, acc_hi)), rq.input.payload.eq(acc),
                 rq.input.valid.eq(AnySeq(1)), rq.output.ready.eq(AnySeq(1)), rq.m.eq(AnySeq(intops.MULT_BITS))]
    s = Signal(range(s_range[1] + 1))
    lo, hi = Signal(signed(out_width)), Signal(signed(out_width))
    m.d.comb += [s.eq(AnyConst(len(s))), Assume(in_range(s, *s_range)), lo.eq(AnyConst(out_width)),
                 hi.eq(AnyConst(out_width)), Assume(lo <= hi), rq.s.eq(s), rq.lo.eq(lo), rq.hi.eq(hi)]
    assert_no_overflow(dut)
    with m.If(rq.output.valid):
        m.d.comb += Assert(in_range(rq.output.payload, lo, hi))
    return m


def requantizer_stream_harness(acc_width: int, out_width: int, s_range: tuple[int, int],
                               broken: bool = False) -> Module:
    """Requantizer streams: no value lost, duplicated or reordered, for any pattern of valid and ready
    (unbounded: k-induction).

    The drain's `Requantizer` at the program's widths and shift range. Inputs: payload any accumulator,
    valid and the output's ready any pattern; the parameters fixed at m = 2^14 and s = the smallest shift
    of the program, where the requantizer is clamp(round_shift(acc x 2^14, s)): the handshake does not
    depend on them (they are static), and the harness can compute each output it expects with shifts
    alone. The harness counts the values inside (accepted, not yet delivered) and follows one accepted
    value, chosen by `AnySeq`, through the pipeline's stages (a stage moves on when the pipeline's enable
    is high). Asserted on every cycle: the output keeps the stream rules (valid held, payload stable until
    ready); the count inside equals the number of valid stages; the stage that holds the followed value is
    valid and holds what that value must become; the value leaves from the last stage as the payload of
    an output transfer. `broken` follows a value one stage ahead of where it is (it must fail).
    """
    from .arith import clamp, round_shift, round_shift_parts
    from .requant import Requantizer
    m = harness()
    rq = Requantizer(acc_width, out_width, s_range=s_range, static_params=True)
    m.submodules.rq = elaborated(rq)
    shift = s_range[0]
    lo, hi = -(1 << (out_width - 1)), (1 << (out_width - 1)) - 1
    acc = Signal(signed(acc_width))
    m.d.comb += [acc.eq(AnySeq(acc_width)), rq.input.payload.eq(acc), rq.input.valid.eq(AnySeq(1)),
                 rq.output.ready.eq(AnySeq(1)), rq.m.eq(1 << 14), rq.s.eq(shift), rq.lo.eq(lo), rq.hi.eq(hi)]
    stream_rules(m, rq.output, "rq_out")
    take = rq.input.valid & rq.input.ready
    give = rq.output.valid & rq.output.ready
    inside = Signal(range(Requantizer.LATENCY + 2))
    m.d.sync += inside.eq(inside + take - give)
    stages = [rq.v1, rq.v2, rq.v3]
    m.d.comb += Assert(inside == stages[0] + stages[1] + stages[2])
    pick = Signal()
    pos = Signal(range(Requantizer.LATENCY + 1))         # 0: not following; k: in stage k
    want = Signal(signed(out_width))
    m.d.comb += pick.eq(AnySeq(1))
    with m.If((pos == 0) & take & pick):
        m.d.sync += [pos.eq(1 + int(broken)), want.eq(clamp(round_shift(acc.as_signed() << 14, shift), lo, hi))]
    with m.Elif((pos != 0) & rq.en):
        m.d.sync += pos.eq(Mux(pos == Requantizer.LATENCY, 0, pos + 1))
    _, post = round_shift_parts(rq.prod, Const(shift, range(shift + 1)), s_range)
    now = [clamp(round_shift(rq.prod, shift), lo, hi), clamp(post(rq.shifted), lo, hi), rq.out]
    for k in range(1, Requantizer.LATENCY + 1):
        with m.If(pos == k):
            m.d.comb += [Assert(stages[k - 1]), Assert(now[k - 1] == want)]
    with m.If((pos == Requantizer.LATENCY) & rq.en):
        m.d.comb += [Assert(give), Assert(rq.output.payload == want)]
    return m


def scale_shift_harness(in_width: int, m_width: int, c_width: int, out_width: int, s_range: tuple[int, int],
                        use_b: bool) -> Module:
    """Residual sum and per-channel affine: no intermediate wraps and the output stays in [lo, hi]
    (unbounded: k-induction).

    The `ScaleShiftClamp` as the accelerator builds it for the residual sum (a x ma + b x mb) or the
    per-channel affine (a x m + c): the program's widths and shift range, static parameters. Inputs: a, b,
    ma, mb, c any values of their widths, valid and en any pattern, s any constant in the shift range,
    lo <= hi any constants of the code width. Asserted on every cycle: every narrowing of the block
    (`accel.overflow`) holds its full-precision value, and every output word lies in [lo, hi]. The affine's
    product comes from a shared multiplier block when the plan shares one; it is the same exact 16 x 16
    product, so the harness builds the block with its own.
    """
    from .overflow import assert_no_overflow
    from .requant import ScaleShiftClamp
    m = harness()
    blk = ScaleShiftClamp(in_width, m_width, c_width, out_width, use_b=use_b, s_range=s_range, static_params=True)
    dut = elaborated(blk)
    m.submodules.blk = dut
    s = Signal(range(s_range[1] + 1))
    lo, hi = Signal(signed(out_width)), Signal(signed(out_width))
    m.d.comb += [blk.a.eq(AnySeq(in_width)), blk.ma.eq(AnySeq(m_width)), blk.c.eq(AnySeq(c_width)),
                 blk.valid_in.eq(AnySeq(1)), blk.en.eq(AnySeq(1)),
                 s.eq(AnyConst(len(s))), Assume(in_range(s, *s_range)), lo.eq(AnyConst(out_width)),
                 hi.eq(AnyConst(out_width)), Assume(lo <= hi), blk.s.eq(s), blk.lo.eq(lo), blk.hi.eq(hi)]
    if use_b:
        m.d.comb += [blk.b.eq(AnySeq(in_width)), blk.mb.eq(AnySeq(m_width))]
    assert_no_overflow(dut)
    with m.If(blk.valid_out):
        m.d.comb += Assert(in_range(blk.y, lo, hi))
    return m


# ------------------------------------------------------------------------- reciprocal and square root

def reciprocal_harness(k: int, n_width: int, q_bits: int | None, radix_bits: int, n_lo: int, n_hi: int,
                       exact: bool = True) -> Module:
    """Reciprocal floor(2^k / n): no quotient digit ever overflows, the result is exact (unbounded:
    k-induction).

    The `Reciprocal` divider as a row unit builds it (softmax: k = 31, the row sum's width and the quotient
    bits its lowest sum allows; LayerNorm: k = 34, radix 4, any square root). Inputs: start any pattern, n any
    value in [n_lo, n_hi] (the range the row unit can give it). Asserted on every cycle while busy: the step
    counter is in [1, steps], the divisor is the sampled max(n, 1) shifted left by radix_bits x (count - 1)
    (so the shift right of every step drops no bit) and the remainder is below radix x divisor (the next
    quotient digit fits its radix: no quotient bit is lost); at done (with `exact`): the remainder is below
    max(n, 1), so the quotient is the largest one, i.e. floor(2^k / n); and q <= 2^top <= 2^k (top = radix_bits
    x (steps - 1), the first divisor's shift): the bound on inv that the LayerNorm NORM pass's proof
    (`layernorm_norm_harness`) takes as given. Its induction carries the quotient's growth: after j >= 1
    digits q <= 2^(radix_bits (j - 1)), and q reaches that power only with remainder 0 (the first digit is
    0 or 1, and 1 only when the divisor takes the whole 2^k: every later digit is then 0).
    """
    from .divsqrt import Reciprocal
    m = harness()
    div = Reciprocal(k, n_width, q_bits, radix_bits)
    m.submodules.div = elaborated(div)
    n = Signal(unsigned(n_width))
    m.d.comb += [n.eq(AnySeq(n_width)), Assume(in_range(n, n_lo, n_hi)), div.n.eq(n), div.start.eq(AnySeq(1))]
    n_d = Signal.like(n)
    with m.If(div.start):
        m.d.sync += n_d.eq(Mux(n == 0, 1, n))
    rem, d, count = div.rem, div.div, div.count
    with m.If(div.busy):
        m.d.comb += [Assert(in_range(count, 1, div.steps)), Assert(n_d != 0),
                     Assert(d == (n_d << ((count - 1).as_unsigned()[:len(count)] * radix_bits))[:len(d)]),
                     Assert(rem < (d << radix_bits))]
        # the quotient's growth: q = 0 before the first digit, then at most 2^(radix_bits (j - 1)) after j
        # digits (j = steps - count), and equal to it only with nothing left to divide
        power = Const(1 << div.top_shift, unsigned(div.top_shift + 1)) >> (count * radix_bits)
        first = count == div.steps
        m.d.comb += Assert(Mux(first, (div.q == 0) & (rem == (1 << k)),
                               (div.q <= power) & ((div.q != power) | (rem == 0))))
    with m.If(div.done):
        m.d.comb += [Assert(div.q <= (1 << div.top_shift)), Assert(div.q <= (1 << k))]
        if exact:
            m.d.comb += Assert(rem < n_d)
    return m


def isqrt_harness(v_width: int, v_lo: int, v_hi: int) -> Module:
    """Integer square root: the root fits its output and is floor(sqrt(v)) (bounded).

    The LayerNorm unit's `Isqrt` at its width. Inputs: start any pattern, v any value in [v_lo, v_hi].
    Asserted at done: the root register is below 2^R (R = the output width: the truncation to the output
    loses nothing) and the remainder num = v - r^2 is at most 2r, i.e. r = floor(sqrt(v)). Bound:
    latency + 3 cycles from reset, which covers every computation (start loads every register).
    """
    from .divsqrt import Isqrt
    m = harness()
    sq = Isqrt(v_width)
    m.submodules.sqrt = elaborated(sq)
    v = Signal(unsigned(v_width))
    m.d.comb += [v.eq(AnySeq(v_width)), Assume(in_range(v, v_lo, v_hi)), sq.v.eq(v), sq.start.eq(AnySeq(1))]
    with m.If(sq.done):
        m.d.comb += [Assert(sq.res < (1 << sq.r_bits)), Assert(sq.num <= (sq.res << 1))]
    return m


# ------------------------------------------------------------------------------- softmax row unit

# Narrowings of the softmax unit that its out_range proof (k-induction, any read data) leaves to others: the
# read and write walkers' counters (`rowio.RowReader`, `RowWriter`, whose registers are in the unit's module:
# softmax.walkers), the row sum `total` (softmax.row_sum), and d = max - z, which is >= 0 only for z of the
# row whose maximum max is (softmax.max_diff, for the unit's own MAX pass); the schedulers' row counters
# (row_e, base_e, outstanding, n_col, row_n, rows_norm_issued, rows_written) are not proven.
SOFTMAX_NOT_AUDITED = r"word|lane|col|row_e|base_e|outstanding|n_col|row_n|rows_norm_issued|out_row|w_word|w_lane|rows_written|total|d"

def softmax_unit(plan, fault: str | None = None):
    """The `SoftmaxUnit` as the accelerator builds it for `plan` (its own multiplier; `fault`: a must-fail
    variant)."""
    from .softmax import SoftmaxUnit
    methods = tuple(sorted({"poly" if r.sm_poly else "lut" for r in plan.steps if r.softmax}))
    return SoftmaxUnit(lanes=plan.lanes, elem_width=plan.elem_width, addr_width=plan.addr_width,
                       max_rows=plan.max_rows, max_cols=plan.max_cols, methods=methods,
                       table_addr_width=max(1, (len(plan.exp_rom) - 1).bit_length()), exp_width=plan.exp_width,
                       min_sum=plan.min_exp_sum, out_width=plan.elem_width, shared_mul=False,
                       out_bits_range=plan.shift_range("sm_out_bits", (0, 8)), fault=fault)


def softmax_max_harness(plan, cols_max: int, fault: str | None = None) -> Module:
    """Softmax maximum: in every EXP pass, d = max - z >= 0 for every element z of the row, and d fits its
    unsigned elem_width bits: the running maximum of the unit's own MAX pass is >= every z it has seen
    (bounded: BMC, rows of up to `cols_max` columns).

    The `SoftmaxUnit` as the accelerator builds it for `plan`, with its own MAX pass (`ext_max` low: with
    the fused maximum, max is the drain's `stat_max` of the row, written while the scores are, and the
    unit only reads it). Inputs as `softmax_row_harness`; rows 1..max_rows, cols 1..cols_max. The source
    buffer does not change while the unit reads it (the accelerator lets it read only rows already
    written): the harness follows one element, at any word and lane (AnyConst), whose reads all return one
    value v (AnyConst); every other read returns any code. Asserted on every cycle: when that element is in
    stage 2 of an EXP pass, max >= v (so d = max - v >= 0) and d == max - v (no bit lost). As the element is
    any element, this holds for every z of every row. `fault` builds the unit with a design fault
    ("max_skip": the MAX pass leaves out its row's last element; it must fail from reset).
    Bound: a row's EXP pass reaches stage 2 with its last element 2 cols + 9 cycles after start, so depth
    2 cols_max + 10 covers the first row of every length up to cols_max (the MAX pass restarts at each
    row's first element, so later rows repeat it).
    """
    m = harness()
    sm = softmax_unit(plan, fault)
    E = plan.elem_width
    m.submodules.sm = elaborated(sm)
    rows, cols = Signal.like(sm.rows), Signal.like(sm.cols)
    ob = Signal.like(sm.out_bits)
    m.d.comb += [rows.eq(AnyConst(len(rows))), cols.eq(AnyConst(len(cols))), Assume(in_range(rows, 1, plan.max_rows)),
                 Assume(in_range(cols, 1, cols_max)), ob.eq(AnyConst(len(ob))),
                 Assume(in_range(ob, *sm.out_bits_range)), sm.rows.eq(rows), sm.cols.eq(cols), sm.rows_ready.eq(rows),
                 sm.out_bits.eq(ob), sm.start.eq(AnySeq(1)), sm.ext_max.eq(0),
                 sm.poly.eq(AnyConst(1) if sm.methods == ("lut", "poly") else int(sm.methods == ("poly",))),
                 sm.c.eq(AnyConst(20)), sm.t_base.eq(AnyConst(len(sm.t_base))),
                 sm.src_base.eq(AnyConst(len(sm.src_base))), sm.src_wpr.eq(AnyConst(len(sm.src_wpr))),
                 sm.out_base.eq(AnyConst(len(sm.out_base))), sm.out_wpr.eq(AnyConst(len(sm.out_wpr))),
                 sm.rmax.data.eq(AnySeq(E)), sm.table.data.eq(AnySeq(len(sm.table.data)))]
    # the followed element: its reads (data one cycle after the read) all return v
    at_word, at_lane, v = Signal.like(sm.rd.addr), Signal.like(sm.rd.lane), Signal(signed(E))
    data = Signal(signed(E))
    hit1, hit2 = Signal(), Signal()
    m.d.comb += [at_word.eq(AnyConst(len(at_word))), at_lane.eq(AnyConst(len(at_lane))), v.eq(AnyConst(E)),
                 data.eq(AnySeq(E)), sm.rd.data.eq(Mux(hit1, v, data))]
    m.d.sync += [hit1.eq(sm.rd.en & (sm.rd.addr == at_word) & (sm.rd.lane == at_lane)), hit2.eq(hit1)]
    with m.If(sm.exp_valid & hit2):
        m.d.comb += [Assert(sm.z == v), Assert(sm.mx >= v), Assert(sm.d == sm.mx - v)]
    return m


def softmax_row_harness(plan, cols_max: int, part: str = "sum", wide_extra: int = 4,
                        fault: str | None = None) -> Module:
    """Softmax row unit: the row sum never wraps (`part="sum"`, bounded), and every output is in
    [0, 2^out_bits - 1] (`part="out"`, unbounded: k-induction).

    The `SoftmaxUnit` as the accelerator builds it for `plan` (lanes, widths, methods, table, shift range).
    Inputs: `start` any pattern; rows, cols (1..cols_max, the program's longest softmax row), out_bits (its range), ext_max, poly, c, t_base any
    constants; read data and the row maximum any codes of the element width; the exponential table's data
    any value in [0, max(exp_rom)] (the ROM's contents). Asserted on every cycle: the row-sum register `acc`
    equals a shadow sum kept `wide_extra` bits wider (first element: the element, else the sum plus it,
    updated exactly when `acc` is) and the shadow stays below 2^sum_width, so no sum wraps; the sum handed
    to the divider equals its shadow too; every word the unit writes lies in [0, 2^out_bits - 1], and
    (`part="out"`) every narrowing of the unit (`accel.overflow`) holds its value: the normalizer's split
    product e x r (its high part and the recombined sum, for any e and r of their widths), its shift and
    clamp, and the polynomial exponential's terms; `SOFTMAX_NOT_AUDITED` says what is left out. `fault`
    builds the unit with a design fault (`SoftmaxUnit`'s: the must-fail variant). Bound: `depth`
    cycles from reset; the EXP pass of a row of cols elements reaches the sum in cols + 9 cycles with
    ext_max (2 cols + 9 without), so depth cols_max + 12 covers every row sum of every length with
    ext_max (the accelerator's fused softmax) and rows of up to cols_max / 2 - 2 without.
    """
    m = harness()
    sm = softmax_unit(plan, fault)
    E = plan.elem_width
    dut = elaborated(sm)
    m.submodules.sm = dut
    rows, cols = Signal.like(sm.rows), Signal.like(sm.cols)
    ob_lo, ob_hi = sm.out_bits_range
    ob = Signal.like(sm.out_bits)
    e_max = max(plan.exp_rom)
    td = Signal.like(sm.table.data)
    m.d.comb += [rows.eq(AnyConst(len(rows))), cols.eq(AnyConst(len(cols))), Assume(in_range(rows, 1, plan.max_rows)),
                 Assume(in_range(cols, 1, cols_max)), ob.eq(AnyConst(len(ob))), Assume(in_range(ob, ob_lo, ob_hi)),
                 sm.rows.eq(rows), sm.cols.eq(cols), sm.rows_ready.eq(rows), sm.out_bits.eq(ob),
                 sm.start.eq(AnySeq(1)), sm.ext_max.eq(AnyConst(1)),
                 sm.poly.eq(AnyConst(1) if sm.methods == ("lut", "poly") else int(sm.methods == ("poly",))),
                 sm.c.eq(AnyConst(20)), sm.t_base.eq(AnyConst(len(sm.t_base))),
                 sm.src_base.eq(AnyConst(len(sm.src_base))), sm.src_wpr.eq(AnyConst(len(sm.src_wpr))),
                 sm.out_base.eq(AnyConst(len(sm.out_base))), sm.out_wpr.eq(AnyConst(len(sm.out_wpr))),
                 sm.rd.data.eq(AnySeq(E)), sm.rmax.data.eq(AnySeq(E)), td.eq(AnySeq(len(td))),
                 Assume(td <= e_max), sm.table.data.eq(td)]
    W = sm.sum_width
    shadow = Signal(unsigned(W + wide_extra))
    pend_shadow = Signal.like(shadow)
    v4, first4, last4, e4 = sm.v_d4, sm.first_d4, sm.last_d4, sm.e4
    total = Signal.like(shadow)
    m.d.comb += total.eq(Mux(first4, e4, shadow + e4))
    with m.If(v4):
        m.d.sync += shadow.eq(total)
        with m.If(last4):
            m.d.sync += pend_shadow.eq(total)
    if part == "sum":
        m.d.comb += [Assert(sm.acc == shadow), Assert(shadow < (1 << W)),
                     Assert(sm.pend_sum == pend_shadow)]
    else:
        from .overflow import assert_no_overflow
        assert_no_overflow(dut, skip=SOFTMAX_NOT_AUDITED)
        with m.If(sm.wr.en):
            m.d.comb += Assert(in_range(sm.wr.data.as_signed(), 0, (1 << ob) - 1))
    return m


# ---------------------------------------------------------------------------- the row units' walkers

def rowio_walkers_harness(lanes: int, addr_width: int, max_rows: int, max_cols: int, start_first: bool = True,
                          fault: str | None = None) -> Module:
    """The row units' walkers: every address that `rowio.RowReader` reads and `RowWriter` writes is the
    element's own, word x P + lane = (base + r wpr) x P + c, inside its row's words [base + r wpr,
    base + (r + 1) wpr) of row r < rows, so it never leaves its buffer's region [base, base + rows wpr) and
    no counter wraps (unbounded: k-induction).

    The walkers as the softmax and LayerNorm units build them (P lanes, addr_width-bit words, rows of up to
    max_cols columns), in a harness module scheduled as the units schedule them: a start (any cycle, while
    idle) takes rows (1..max_rows), cols (1..max_cols), base and wpr (any constants of the port widths);
    each row the reader begins at the row's first word and issues one read a cycle until the row's last;
    the writer gets results at any cycles (valid any pattern) with the first and last tags of the row's
    columns, as the units' pipelines deliver them. The harness counts each side's row r and column c and
    the row's first word base + r wpr (full precision, added up row by row). Premise (the plan's layouts):
    a row's words fit its stride (cols <= P wpr), and each row lies in the address space (base + (r + 1)
    wpr <= 2^addr_width, for each row r < rows: the buffer fits). Asserted on every cycle: the reader's
    column is below cols and its lane below P; every read and every write is at the address above.
    `fault` builds the reader with a design fault ("word_narrow": its word counter one bit narrower; it
    must fail from reset).
    """
    from .rowio import RowReader, RowWriter, read_signature, write_signature
    m = harness()
    reader = RowReader(lanes=lanes, addr_width=addr_width, max_cols=max_cols, fault=fault)
    writer = RowWriter(lanes=lanes, addr_width=addr_width, start_first=start_first)
    rd = read_signature(addr_width, lanes, 8).create(path=("rd",))
    wr = write_signature(addr_width, lanes, 8).create(path=("wr",))
    rows, cols = Signal(range(max_rows + 1)), Signal(range(max_cols + 1))
    base, wpr = Signal(unsigned(addr_width)), Signal(unsigned(addr_width))
    start, top = Signal(), 1 << addr_width
    m.d.comb += [rows.eq(AnyConst(len(rows))), cols.eq(AnyConst(len(cols))), base.eq(AnyConst(addr_width)),
                 wpr.eq(AnyConst(addr_width)), Assume(in_range(rows, 1, max_rows)),
                 Assume(in_range(cols, 1, max_cols)), Assume(cols <= wpr * lanes)]
    reader.elaborate(m, cols, rd)
    # the read side: the units' schedule (begin a row, then issue its reads), the row counter and first word
    r_row, r_base = Signal(range(max_rows + 1)), Signal(unsigned(addr_width + 1))
    busy_r = Signal()
    m.d.comb += start.eq(AnySeq(1) & ~busy_r)
    with m.FSM(name="walk_rd"):
        with m.State("IDLE"):
            with m.If(start):
                m.d.sync += [r_row.eq(0), r_base.eq(base), busy_r.eq(1)]
                m.next = "BEGIN"
        with m.State("BEGIN"):
            with m.If(r_row == rows):
                m.d.sync += busy_r.eq(0)
                m.next = "IDLE"
            with m.Else():
                m.d.comb += Assume(r_base + wpr <= top)
                reader.begin(m, r_base[:addr_width])
                m.next = "ISSUE"
        with m.State("ISSUE"):
            reader.read_row(m, then="BEGIN", row_done=[r_row.eq(r_row + 1), r_base.eq(r_base + wpr)])
            m.d.comb += [Assert(r_row < rows), Assert(reader.col < cols), Assert(reader.lane < lanes),
                         Assert(r_base + wpr <= top)]
    with m.If(rd.en):
        m.d.comb += [Assert(rd.addr * lanes + rd.lane == r_base * lanes + reader.col),
                     Assert(in_range(rd.addr, r_base, r_base + wpr - 1))]
    # the write side: results with the row's tags at any cycles, rows x cols of them after a start
    w_row, w_col, w_base = Signal(range(max_rows + 1)), Signal(range(max_cols + 1)), Signal(unsigned(addr_width + 1))
    valid, w_last = Signal(), Signal()
    m.d.comb += [valid.eq(AnySeq(1) & (w_row < rows) & busy_r), w_last.eq(w_col == cols - 1)]
    with m.If(start):
        m.d.sync += [w_row.eq(0), w_col.eq(0), w_base.eq(base)]
    with m.Elif(valid):
        m.d.sync += [w_col.eq(Mux(w_last, 0, w_col + 1)), w_row.eq(w_row + w_last),
                     w_base.eq(w_base + Mux(w_last, wpr, 0))]
    writer.elaborate(m, wr, start=start, base=base, wpr=wpr, valid=valid & ~start, first=w_col == 0, last=w_last,
                     data=0)
    with m.If(busy_r & (w_row < rows)):
        m.d.comb += [Assume(w_base + wpr <= top), Assert(w_col < cols),
                     Assert(writer.out_row == w_base)]       # the writer's row and position: the induction's
        with m.If(w_col != 0):
            m.d.comb += [Assert(writer.w_lane < lanes),
                         Assert(writer.w_word * lanes + writer.w_lane == w_base * lanes + w_col)]
    with m.If(wr.en):
        m.d.comb += [Assert(wr.addr * lanes + wr.lane == w_base * lanes + w_col),
                     Assert(in_range(wr.addr, w_base, w_base + wpr - 1))]
    return m


# ----------------------------------------------------------------------------- LayerNorm row unit

# Narrowings of the LayerNorm unit that its out_range proof (k-induction) leaves to other proofs: the walkers'
# and schedulers' counters (LAYERNORM_COUNTERS: rowio.walkers proves the walkers' word, lane and column), the
# statistics path (LAYERNORM_STATS: layernorm.stats, bounded, proves each of them holds its value: the sums
# S and Q, D S, the variance D Q - S^2, >= 0 by Cauchy-Schwarz, which an induction cannot carry, and v), and
# the NORM pass's product t2 = t1 x inv and n (LAYERNORM_NORM: layernorm.norm_product, unbounded, on the
# divider's proven guarantee inv <= 2^34). Every narrowing of the unit but the schedulers' row counters is
# thus proven by one of them.
LAYERNORM_COUNTERS = r"word|lane|col|row_s|row_n|base_s|base_n|param__addr|out_row|w_word|w_lane|rows_written"
LAYERNORM_STATS = r"s_row|q_row|d2|a_ds|diff|vreg"
LAYERNORM_NORM = r"t2|n3|cut of .*t2.*"
LAYERNORM_NOT_AUDITED = "|".join([LAYERNORM_COUNTERS, LAYERNORM_STATS, LAYERNORM_NORM])  # by out_range


def _all_but(pattern: str) -> str:
    """A `skip` pattern for `assert_no_overflow` that leaves out every target but those `pattern` matches."""
    return f"(?!(?:{pattern})$).*"


def layernorm_unit(plan, max_cols: int | None = None, fault: str | None = None):
    """The `LayerNormUnit` as the accelerator builds it for `plan` (`max_cols`: a unit for rows of up to that
    many columns instead, its widths derived from it; `fault`: a must-fail variant)."""
    from .layernorm import LayerNormUnit
    return LayerNormUnit(lanes=plan.lanes, elem_width=plan.elem_width, addr_width=plan.addr_width,
                         max_rows=plan.max_rows, max_cols=max_cols or plan.max_cols, eps_max=plan.eps_max,
                         g_width=plan.ln_g_width, b_width=plan.ln_b_width,
                         param_addr_width=max(1, (len(plan.ln_rom) - 1).bit_length()), out_width=plan.elem_width,
                         s_range=plan.shift_range("ln_shift"), fault=fault)


def layernorm_stats_depth(cols_max: int) -> int:
    """Cycles from reset to v of a row of cols_max columns (`layernorm_stats_harness`'s bound): a start (cycle
    1), NEXT_S, the SUM pass's cols reads, their data a cycle later, the statistics engine's take of the
    sums (D Q - S^2, D S) and v, one cycle each: cols_max + 6 (+ 2 to spare)."""
    return cols_max + 8


def layernorm_stats_harness(plan, cols_max: int, unit_cols: int | None = None, fault: str | None = None,
                            lemma: bool | None = None) -> Module:
    """LayerNorm statistics: S = sum x and Q = sum x^2 equal their definitions, and every register of the
    statistics path holds its value: S, Q, D S, D Q - S^2 (>= 0), v = D^2 (D Q - S^2) + eps (bounded: BMC,
    rows of up to `cols_max` columns).

    The `LayerNormUnit` as the accelerator builds it for `plan` (`unit_cols`: built for rows of up to that
    many columns instead, its widths derived from it, as for a model whose rows are that long). Inputs as
    `layernorm_out_harness`, cols 1..cols_max, eps any value of its port, and `ext_sums` any constant: with
    it, the row's (S, Q) come from the `rsum` lookup, which the harness fills with the sums of any cols
    codes (AnyConst: the premise that the drain accumulates a row's codes as it writes them; the same codes
    for every row, as the bound covers the first). Asserted on every cycle: the SUM pass's S and Q registers
    equal a shadow sum and sum of squares of the codes read (kept 4 bits wider), over exactly cols codes
    once the row's sums are complete; every narrowing of the statistics path (`accel.overflow`,
    `LAYERNORM_STATS`) holds its full-precision value when it is assigned: the sums' registers, D S,
    D Q - S^2 in [0, 2^v - 1], v. Bound: `layernorm_stats_depth` (start, the SUM pass, v): every value of
    the first row of every length up to cols_max, both with the unit's own SUM pass and with the fused sums.

    The sign of D Q - S^2 (Cauchy-Schwarz) is, for the solver, a polynomial inequality proven bit by bit:
    within reach for codes up to `LN_STATS_BITS` wide, not for the 9-bit codes of 8-bit models. With
    `lemma` (default: for codes wider than `LN_STATS_BITS`) the harness assumes it as a lemma instead:

        for n <= D codes x_i, S = sum x_i, Q = sum x_i^2:  0 <= D Q - S^2 <= D Q.

    Proof: Lagrange's identity n Q - S^2 = sum over i < j of (x_i - x_j)^2 >= 0, and D Q >= n Q as Q >= 0;
    the upper bound as S^2 >= 0. The lemma is about sums of codes, not about the design: the harness assumes
    it of the unit's own expression D Q - S^2 (cols x q_row - s_row x s_row, so that the solver need not
    prove two multipliers equal) only on the cycles where s_row and q_row equal sums of at most cols codes
    that the harness formed itself (the shadow sums, or the fused sums it supplied); on any other cycle
    nothing is assumed, and the SUM pass's S and Q stay asserted equal to the shadow sums, so a wrong S or
    Q register still fails (`q_narrow` does, from reset). What is proven with the lemma:
    S and Q equal their definitions, and every other narrowing of the path (D S, the variance's upper end
    within its register, v = D^2 (D Q - S^2) + eps) holds; the variance's sign is the lemma's.
    `fault` builds the unit with a design fault ("q_narrow": Q one bit narrower; it must fail from reset).
    """
    from .overflow import assert_no_overflow
    m = harness()
    ln = layernorm_unit(plan, unit_cols, fault)
    dut = elaborated(ln)
    m.submodules.ln = dut
    E, D = plan.elem_width, ln.max_cols
    assert cols_max <= D, "rows longer than the unit's"
    if lemma is None:
        lemma = E > LN_STATS_BITS
    lo, hi, sh = Signal.like(ln.lo), Signal.like(ln.hi), Signal.like(ln.s)
    rows, cols, ext = Signal.like(ln.rows), Signal.like(ln.cols), Signal()
    m.d.comb += [lo.eq(AnyConst(len(lo))), hi.eq(AnyConst(len(hi))), Assume(lo <= hi), ln.lo.eq(lo), ln.hi.eq(hi),
                 sh.eq(AnyConst(len(sh))), Assume(in_range(sh, *plan.shift_range("ln_shift"))), ln.s.eq(sh),
                 rows.eq(AnyConst(len(rows))), Assume(in_range(rows, 1, plan.max_rows)), ln.rows.eq(rows),
                 ln.rows_ready.eq(rows), cols.eq(AnyConst(len(cols))), Assume(in_range(cols, 1, cols_max)),
                 ln.cols.eq(cols), ext.eq(AnyConst(1)), ln.ext_sums.eq(ext), ln.eps.eq(AnyConst(len(ln.eps))),
                 ln.src_base.eq(AnyConst(len(ln.src_base))), ln.src_wpr.eq(AnyConst(len(ln.src_wpr))),
                 ln.out_base.eq(AnyConst(len(ln.out_base))), ln.out_wpr.eq(AnyConst(len(ln.out_wpr))),
                 ln.p_base.eq(AnyConst(len(ln.p_base))),
                 ln.start.eq(AnySeq(1)), ln.param.data.g.eq(AnySeq(len(ln.param.data.g))),
                 ln.param.data.b.eq(AnySeq(len(ln.param.data.b))), ln.rd.data.eq(AnySeq(E))]
    # the fused sums: those of any cols codes of the element width
    codes = [Signal(signed(E), name=f"row_code{i}") for i in range(cols_max)]
    m.d.comb += [c.eq(AnyConst(E)) for c in codes]
    fused_s = Signal(signed(len(ln.rsum.data.s) + 4))
    fused_q = Signal(unsigned(len(ln.rsum.data.q) + 4))
    # (constants equal to the sums: one value for every cycle, where sums formed on each cycle would be a
    # copy of the squares per cycle, whose equality the solver would have to prove)
    m.d.comb += [fused_s.eq(AnyConst(len(fused_s))), fused_q.eq(AnyConst(len(fused_q))),
                 Assume(fused_s == sum(Mux(i < cols, c, 0) for i, c in enumerate(codes))),
                 Assume(fused_q == sum(Mux(i < cols, c * c, 0) for i, c in enumerate(codes))),
                 ln.rsum.data.s.eq(fused_s), ln.rsum.data.q.eq(fused_q)]
    # the SUM pass's shadow sums, and the count of codes in them; kept in the unit's own module (as its
    # assertions are), where the shadow's x * x and the unit's are one multiplier after yosys merges equal
    # cells: the solver then need not prove two multipliers equal (beyond its reach for 9-bit codes)
    wide = len(ln.q_row) + 4
    s_sh, q_sh, n_sh = Signal(signed(wide)), Signal(unsigned(wide)), Signal(range(D + 2))
    x = ln.rd.data
    with dut.If(ln.sum_valid):
        dut.d.sync += [s_sh.eq(Mux(ln.sum_first, x, s_sh + x)), q_sh.eq(Mux(ln.sum_first, x * x, q_sh + x * x)),
                       n_sh.eq(Mux(ln.sum_first, 1, n_sh + 1))]
    with dut.If(~ext):
        dut.d.comb += [Assert(ln.s_row == s_sh), Assert(ln.q_row == q_sh)]
        with dut.If(ln.sums_full):
            dut.d.comb += Assert(n_sh == cols)
    if lemma:
        sums_of_codes = Mux(ext, (ln.s_row == fused_s) & (ln.q_row == fused_q),
                            (ln.s_row == s_sh) & (ln.q_row == q_sh) & (n_sh <= cols))
        variance = ln.cols * ln.q_row - ln.s_row * ln.s_row      # the unit's expression (`_statistics`)
        with dut.If(sums_of_codes):
            dut.d.comb += Assume(in_range(variance, 0, ln.cols * ln.q_row))
    assert_no_overflow(dut, skip=LAYERNORM_COUNTERS + "|" + LAYERNORM_NORM)
    return m


def layernorm_out_harness(plan, audit: bool = True) -> Module:
    """LayerNorm row unit: every output word is in [lo, hi] (unbounded: k-induction).

    The `LayerNormUnit` as the accelerator builds it for `plan`. Inputs: every port any pattern or constant
    (rows, cols within their ranges, lo <= hi, s in the plan's shift range), read data any code, the
    parameter ROM's g and b any values of their widths. Asserted on every cycle: every word written lies
    in [lo, hi], and (with `audit`) the narrowings of the NORM pass's output (`accel.overflow`): the affine
    n x g + b has its full width, its shift and clamp. Left to other proofs (`LAYERNORM_NOT_AUDITED`): the
    walkers (layernorm.walkers), the statistics path (layernorm.stats), the NORM pass's t2 and n
    (layernorm.norm_product).
    """
    m = harness()
    ln = layernorm_unit(plan)
    dut = elaborated(ln)
    m.submodules.ln = dut
    lo, hi, sh = Signal.like(ln.lo), Signal.like(ln.hi), Signal.like(ln.s)
    m.d.comb += [lo.eq(AnyConst(len(lo))), hi.eq(AnyConst(len(hi))), Assume(lo <= hi), ln.lo.eq(lo), ln.hi.eq(hi),
                 sh.eq(AnyConst(len(sh))), Assume(in_range(sh, *plan.shift_range("ln_shift"))), ln.s.eq(sh),
                 ln.start.eq(AnySeq(1)), ln.param.data.g.eq(AnySeq(len(ln.param.data.g))),
                 ln.param.data.b.eq(AnySeq(len(ln.param.data.b))), ln.rd.data.eq(AnySeq(len(ln.rd.data)))]
    with m.If(ln.wr.en):
        m.d.comb += Assert(in_range(ln.wr.data.as_signed(), lo, hi))
    if audit:
        from .overflow import assert_no_overflow
        assert_no_overflow(dut, skip=LAYERNORM_NOT_AUDITED)
    return m


def layernorm_norm_harness(plan, unit_cols: int | None = None, fault: str | None = None) -> Module:
    """LayerNorm NORM pass: the product t2 = t1 x inv and n = round_shift(t2, 24) hold their full-precision
    values (unbounded: k-induction).

    The `LayerNormUnit` as the accelerator builds it for `plan` (`unit_cols`: built for rows of up to that
    many columns instead, its widths derived from it). Inputs: every port any pattern or constant (rows,
    cols within their ranges, lo <= hi, s in the plan's shift range, eps and ext_sums any constants), read
    data any code, the fused sums (`rsum`) and the parameters any values of their widths: the statistics are
    left free, so the proof holds for every S, Q, v and square root the unit can form, or not.

    Assume-guarantee: the one premise is the divider's guarantee, inv = q <= 2^34 whenever it is done
    (assumed at `div.done`, the only time the unit takes q into its `inv` registers). `layernorm.reciprocal`
    proves exactly this of the same `Reciprocal` (k = 34, radix 4, any R of its width, 0 included: q <=
    2^top = 2^34 at done, `reciprocal_harness`), so the chain is closed; neither the square root nor the divider is run
    through. t1 = D^2 x - D S is not a narrowing (its register holds every value of its expression) and
    needs no premise: any value of its register is allowed. Asserted on every cycle: both `inv` registers
    stay <= 2^34 (the invariant the induction carries), t2 lies in [t1_lo 2^34, t1_hi 2^34] (t1's register
    range: what n's bound needs), and the narrowings of t2 and n (`accel.overflow`, `LAYERNORM_NORM`) hold
    their values. `fault` builds the unit with a design fault ("t2_narrow": t2 one bit narrower; a run
    from reset with R = 1, inv = 2^34, and t1 near its bound wraps it).
    """
    from .overflow import assert_no_overflow, shape_range
    m = harness()
    ln = layernorm_unit(plan, unit_cols, fault)
    dut = elaborated(ln)
    m.submodules.ln = dut
    lo, hi, sh = Signal.like(ln.lo), Signal.like(ln.hi), Signal.like(ln.s)
    rows, cols = Signal.like(ln.rows), Signal.like(ln.cols)
    m.d.comb += [lo.eq(AnyConst(len(lo))), hi.eq(AnyConst(len(hi))), Assume(lo <= hi), ln.lo.eq(lo), ln.hi.eq(hi),
                 sh.eq(AnyConst(len(sh))), Assume(in_range(sh, *plan.shift_range("ln_shift"))), ln.s.eq(sh),
                 rows.eq(AnyConst(len(rows))), Assume(in_range(rows, 1, plan.max_rows)), ln.rows.eq(rows),
                 ln.rows_ready.eq(rows), cols.eq(AnyConst(len(cols))), Assume(in_range(cols, 1, ln.max_cols)),
                 ln.cols.eq(cols), ln.ext_sums.eq(AnyConst(1)), ln.eps.eq(AnyConst(len(ln.eps))),
                 ln.src_base.eq(AnyConst(len(ln.src_base))), ln.src_wpr.eq(AnyConst(len(ln.src_wpr))),
                 ln.out_base.eq(AnyConst(len(ln.out_base))), ln.out_wpr.eq(AnyConst(len(ln.out_wpr))),
                 ln.p_base.eq(AnyConst(len(ln.p_base))), ln.start.eq(AnySeq(1)),
                 ln.param.data.g.eq(AnySeq(len(ln.param.data.g))), ln.param.data.b.eq(AnySeq(len(ln.param.data.b))),
                 ln.rd.data.eq(AnySeq(plan.elem_width)), ln.rsum.data.s.eq(AnySeq(len(ln.rsum.data.s))),
                 ln.rsum.data.q.eq(AnySeq(len(ln.rsum.data.q)))]
    div = dut.submodules.div
    inv_max = 1 << ln.k_inv
    with m.If(div.done):
        m.d.comb += Assume(div.q <= inv_max)          # the guarantee of layernorm.reciprocal
    t1_lo, t1_hi = shape_range(signed(ln.w["t1"]))
    m.d.comb += [Assert(ln.inv[0] <= inv_max), Assert(ln.inv[1] <= inv_max),
                 Assert(in_range(ln.t2, t1_lo * inv_max, t1_hi * inv_max))]
    found = assert_no_overflow(dut, skip=_all_but(LAYERNORM_NORM))
    assert found, "the NORM pass's narrowings were not found"
    return m


# ------------------------------------------------------------------- the accelerator's own streams

def _in_state(acc, *names):
    """The accelerator's top state machine is in one of the states `names` (`Accelerator.State`)."""
    return sum_or([acc.state == acc.State[n] for n in names])


def faulty_accelerator(program: IntProgram, lanes: int, fault: str = ""):
    """The real `Accelerator` for `program`, or (with `fault`) the same design with one deliberate fault in
    its own logic, for the must-fail stream proofs: the harness and its assertions stay those of the passing
    proof. "ready_idle": the input's ready not gated by the state (high in IDLE too: the loader's ready
    leaks), "valid_idle": the output's valid not gated by the state (high in IDLE too), "payload": the
    output payload follows the output index and ready while valid waits (a payload register dropped). The
    fault is the last assignment to the port in the accelerator's module, so it replaces the design's."""
    from .accelerator import Accelerator
    if not fault:
        return Accelerator(program, lanes)
    if fault not in ("ready_idle", "valid_idle", "payload"):
        raise ValueError(f"unknown accelerator fault {fault!r}")

    class Faulty(Accelerator):
        def elaborate(self, platform):
            m = super().elaborate(platform)
            idle = self.state == self.State.IDLE
            if fault == "ready_idle":
                m.d.comb += self.input.ready.eq(self.loader.input.ready | idle)
            elif fault == "valid_idle":
                m.d.comb += self.output.valid.eq(self.out_port.output.valid | idle)
            else:
                m.d.comb += self.output.payload.eq(self.out_port.output.payload ^ self.out_index[0] ^
                                                   self.output.ready)
            return m
    return Faulty(program, lanes)


def accel_input_harness(program: IntProgram, lanes: int = 8, broken: str = "") -> Module:
    """The accelerator's `input` stream: no word lost or duplicated, N = rows x cols of x per inference
    (unbounded: k-induction).

    The real `Accelerator` for `program` at P = `lanes`. Inputs: `start`, `input.valid` and `input.payload`
    any pattern (AnySeq), `output.ready` any pattern; the environment obeys the stream rules (assumed: once
    valid is offered without ready, valid stays and the payload is unchanged next cycle). A harness counter
    counts the transfers (valid & ready) since the last accepted `start`. Asserted on every cycle: ready is
    high only in the LOAD state; the count never exceeds N; in LOAD it equals the loader's word counter and
    the loader's memory write is exactly the transfer (written iff valid & ready, the transfer's payload);
    once the accelerator has left LOAD (STEP .. OUT states) exactly N words were taken. `broken` builds the
    accelerator with a design fault (`faulty_accelerator`, e.g. "ready_idle": it must fail from reset).
    """
    m = harness()
    acc = faulty_accelerator(program, lanes, broken)
    m.submodules.acc = acc
    xl = acc.plan.layouts["x"]
    n_words = xl.rows * xl.cols
    w = len(acc.input.payload)
    valid, payload = Signal(), Signal(w)
    m.d.comb += [valid.eq(AnySeq(1)), payload.eq(AnySeq(w)), acc.start.eq(AnySeq(1)),
                 acc.output.ready.eq(AnySeq(1)), acc.input.valid.eq(valid), acc.input.payload.eq(payload)]
    ready = acc.input.ready
    # the environment's stream rules
    held_v, held_p = Signal(), Signal(w)
    m.d.sync += [held_v.eq(valid & ~ready), held_p.eq(payload)]
    with m.If(held_v):
        m.d.comb += [Assume(valid), Assume(payload == held_p)]
    count = Signal(range(n_words + 2))
    loading, after = _in_state(acc, "LOAD"), _in_state(acc, "STEP", "WAIT", "OUT_READ", "OUT_LATCH", "OUT_SEND")
    with m.If(acc.start & _in_state(acc, "IDLE")):
        m.d.sync += count.eq(0)
    with m.Elif(valid & ready):
        m.d.sync += count.eq(count + 1)
    m.d.comb += [Assert(~ready | loading), Assert(count <= n_words),
                 Assert(acc.load_en == (valid & acc.input.ready)), Assert(acc.busy == ~_in_state(acc, "IDLE"))]
    with m.If(loading):
        m.d.comb += [Assert(count == acc.load_count), Assert(acc.load_count < n_words)]
    with m.If(after):
        m.d.comb += Assert(count == n_words)
    return m


def accel_output_harness(program: IntProgram, lanes: int = 8, broken: str = "") -> Module:
    """The accelerator's `output` stream: the producer keeps the stream rules and sends exactly the output
    buffer's words, once each, per inference (unbounded: k-induction).

    The real `Accelerator` for `program` at P = `lanes`. Inputs: `start`, `input` and `output.ready` any
    pattern (AnySeq). A harness counter counts the output transfers since the last accepted `start`.
    Asserted on every cycle: once valid is offered without ready, valid stays and the payload is unchanged
    next cycle; valid only in OUT_SEND; in the OUT states the count equals the port's word index (the word
    sent next is the next one: none skipped or repeated) and stays below cols; before OUT the count is 0;
    `done` pulses exactly when the count reaches cols, the output buffer's word count. `broken` builds the
    accelerator with a design fault (`faulty_accelerator`: "valid_idle" fails from reset; "payload" only
    in the induction step, as OUT_SEND is a whole inference, thousands of cycles, from reset).
    """
    m = harness()
    acc = faulty_accelerator(program, lanes, broken)
    m.submodules.acc = acc
    n_out = acc.plan.output.cols
    m.d.comb += [acc.start.eq(AnySeq(1)), acc.input.valid.eq(AnySeq(1)),
                 acc.input.payload.eq(AnySeq(len(acc.input.payload))), acc.output.ready.eq(AnySeq(1))]
    valid, ready, payload = acc.output.valid, acc.output.ready, acc.output.payload
    held_v, held_p = Signal(), Signal.like(payload)
    m.d.sync += [held_v.eq(valid & ~ready), held_p.eq(payload)]
    with m.If(held_v):
        m.d.comb += [Assert(valid), Assert(payload == held_p)]
    count = Signal(range(n_out + 2))
    outs = _in_state(acc, "OUT_READ", "OUT_LATCH", "OUT_SEND")
    with m.If(acc.start & _in_state(acc, "IDLE")):
        m.d.sync += count.eq(0)
    with m.Elif(valid & ready):
        m.d.sync += count.eq(count + 1)
    m.d.comb += [Assert(~valid | _in_state(acc, "OUT_SEND")), Assert(count <= n_out),
                 Assert(acc.busy == ~_in_state(acc, "IDLE"))]
    with m.If(outs):
        m.d.comb += [Assert(count == acc.out_index), Assert(acc.out_index < n_out)]
    with m.If(_in_state(acc, "LOAD", "STEP", "WAIT")):
        m.d.comb += Assert(count == 0)
    with m.If(acc.done):
        m.d.comb += Assert(count == n_out)
    with m.If(_in_state(acc, "IDLE") & ~acc.done):
        m.d.comb += Assert((count == 0) | (count == n_out))
    return m


# ------------------------------------------------------------------ the accelerator's address generators

def walk_harness(lane_counts: list[int], addr_width: int, chunk_max: int, fault: str | None = None) -> Module:
    """The address generators' walk: stepped from any column of a chunked P-wide layout, `accel.walk.walk`
    visits exactly each next column's word and lane, and no counter wraps (unbounded: k-induction).

    One walker per lane count P in `lane_counts` (the plan's P, and a wide output buffer's narrower one),
    its registers as the generators keep them (`InputLoader`, `IssueSequencer`, `Drain`, `OutputPort`:
    word addr_width bits, lane max(1, P - 1).bit_length() bits, within range(chunk_max + 1)), stepped by
    `walk` exactly as they step it. Inputs: chunk any constant in [1, chunk_max] (a layout's chunk: a
    constant or a step-table field), base any constant word; a start (any cycle) puts the walker at any
    column c0 = k0 chunk + i0 (k0, i0 < chunk any constants), at the layout's position of it (what the plan
    gives the generators: `BufferLayout.col_pos`); then a step on any cycle. The harness follows the column
    c as i = c % chunk and its chunk's first word base + (c // chunk) wpc, counted at full precision (wpc =
    ceil(chunk / P) added at each chunk's end). Premise: every column stepped to lies in the address space
    (its word below 2^addr_width: the plan puts every buffer inside its bank). Asserted on every cycle after
    a start: within == i < chunk, lane == i % P < P and word == base + (c // chunk) wpc + i // P: the
    layout's word and lane of column c, for every column reached, every chunk and base; and
    (`accel.overflow`) the walk's word + 1, lane + 1 and within + 1 hold their values. Not covered: the step
    a generator takes after a buffer's last element (its position is never used: each generator reloads it
    at its next start), which may leave word at 2^addr_width, i.e. 0.
    `fault` builds the walk with a design fault (`walk.WALK_FAULTS`: "no_chunk_step"; it must fail from
    reset). That every generator steps with `walk`: `tests/test_formal.py`.
    """
    from .overflow import assert_no_overflow
    from .walk import walk
    m = harness()
    top = 1 << addr_width
    chunk, base = Signal(range(chunk_max + 1)), Signal(unsigned(addr_width))
    k0, i0 = Signal(unsigned(addr_width)), Signal(range(chunk_max + 1))
    start = Signal()
    m.d.comb += [chunk.eq(AnyConst(len(chunk))), Assume(in_range(chunk, 1, chunk_max)), base.eq(AnyConst(addr_width)),
                 k0.eq(AnyConst(addr_width)), i0.eq(AnyConst(len(i0))), Assume(i0 < chunk), start.eq(AnySeq(1))]
    walkers = Module()                  # the generators' registers and steps, audited on their own
    m.submodules.walkers = walkers
    for P in lane_counts:
        word = Signal(unsigned(addr_width), name=f"word_p{P}")
        lane = Signal(max(1, P - 1).bit_length(), name=f"lane_p{P}")
        within = Signal(range(chunk_max + 1), name=f"within_p{P}")
        wide = addr_width + chunk_max.bit_length() + 2
        # the column followed: i = c % chunk, and its chunk's first word base + (c // chunk) wpc, kept by adding
        # wpc at each chunk's end (no multiplication in the induction)
        i, kw = Signal(range(chunk_max + 1), name=f"i_p{P}"), Signal(wide, name=f"kw_p{P}")
        busy = Signal(name=f"busy_p{P}")
        wpc = Signal(range(chunk_max + 1), name=f"wpc_p{P}")
        at = Signal(wide, name=f"at_p{P}")                  # the layout's word of the column
        m.d.comb += [wpc.eq((chunk + (P - 1)) // P), at.eq(kw + i // P)]
        # the next column, and its word (the premise: it lies in the address space)
        kw_next = Mux(i == chunk - 1, kw + wpc, kw)
        i_next = Mux(i == chunk - 1, 0, i + 1)
        first_word, step = Signal(unsigned(addr_width), name=f"first_word_p{P}"), Signal(name=f"step_p{P}")
        kw0 = base + k0 * wpc
        m.d.comb += [Assume(~start | (kw0 + i0 // P < top)), first_word.eq((kw0 + i0 // P)[:addr_width]),
                     step.eq(AnySeq(1) & busy & ~start)]
        with m.If(step):
            m.d.comb += Assume(kw_next + i_next // P < top)
        with walkers.If(start):
            walkers.d.sync += [word.eq(first_word), lane.eq((i0 % P)[:len(lane)]), within.eq(i0)]
        with walkers.Elif(step):
            nw, nl, ni = walk(word, lane, within, chunk, P, fault)
            walkers.d.sync += [word.eq(nw), lane.eq(nl), within.eq(ni)]
        with m.If(start):
            m.d.sync += [kw.eq(kw0), i.eq(i0), busy.eq(1)]
        with m.Elif(step):
            m.d.sync += [kw.eq(kw_next), i.eq(i_next)]
        with m.If(busy):
            m.d.comb += [Assert(i < chunk), Assert(within == i), Assert(lane == i % P), Assert(lane < P),
                         Assert(at < top), Assert(word == at)]
    assert_no_overflow(walkers)
    return m


# --------------------------------------------------------------------------------------- a model's proofs

# The longest rows that the bounded proofs of the row units' values cover (softmax.max_diff, layernorm.stats):
# their BMC grows with the row (the 8-bit softmax: rows of 4 in about 20 s, of 8 in over 3 min on 2 busy
# cores), so quick mode proves rows of up to 3 columns and full mode up to 8; each proof's bound says which.
ROW_PROOF_COLS = {False: 3, True: 8}
# The LayerNorm statistics' proof rests on D Q - S^2 >= 0 (Cauchy-Schwarz), a polynomial inequality that the
# solver proves bit by bit for codes of 5 bits (4-bit models: about 12 s for rows of 2), but not for the 9-bit
# codes of 8-bit models (not within 6 minutes even for rows of 2). Codes wider than LN_STATS_BITS therefore
# take it as a lemma (`layernorm_stats_harness`: stated and proven in its docstring; about 12 s for rows of 2,
# 31 s for rows of 3). Rows of 2 (3 in full mode).
LN_STATS_BITS = 6
LN_STATS_COLS = {False: 2, True: 3}


def _row_unit_proofs(program: IntProgram, plan, full: bool) -> list[Proof]:
    """The walkers' proof of each row unit the plan builds, and the bounded proofs of their values."""
    from intformer.model.program import LayerNormStep
    proofs = []
    sm_cols = [s.cols for s in program.steps if isinstance(s, SoftmaxStep)]
    ln_cols = [s.cols for s in program.steps if isinstance(s, LayerNormStep)]
    if sm_cols:
        proofs.append(Proof("softmax.walkers", lambda: rowio_walkers_harness(
            plan.lanes, plan.addr_width, plan.max_rows, plan.max_cols, start_first=True), "prove", 3))
        cm = min(max(sm_cols), ROW_PROOF_COLS[full])
        proofs.append(Proof("softmax.max_diff", lambda: softmax_max_harness(plan, cm), "bmc", 2 * cm + 10,
                            bound=f"rows of up to {cm} columns"))
    if ln_cols and plan.uses("layernorm"):
        proofs.append(Proof("layernorm.walkers", lambda: rowio_walkers_harness(
            plan.lanes, plan.addr_width, plan.max_rows, plan.max_cols, start_first=False), "prove", 3))
        cl = min(max(ln_cols), LN_STATS_COLS[full])
        # the unit built for rows of up to cl columns, its widths derived from cl as the plan's from its rows:
        # at the plan's own widths (64 columns: a 41-bit v), the solver did not finish rows of 2 in 8 minutes
        lemma = " (D Q - S^2 >= 0: a lemma)" if plan.elem_width > LN_STATS_BITS else ""
        proofs.append(Proof("layernorm.stats", lambda: layernorm_stats_harness(plan, cl, unit_cols=cl), "bmc",
                            layernorm_stats_depth(cl), bound=f"a unit for rows of up to {cl} columns{lemma}"))
    return proofs


def model_proofs(program: IntProgram, lanes: int = 8, full: bool = True) -> list[Proof]:
    """The datapath proofs for one program at P = `lanes`, with the widths, ranges and shifts its plan builds.

    `full` adds the bounded proof of the LayerNorm square root (tens of seconds) and lengthens the rows of
    the row units' bounded proofs (`ROW_PROOF_COLS`, `LN_STATS_COLS`); every other proof takes seconds: all
    are unbounded but the softmax row sum (bounded: every row sum with the fused maximum), softmax.max_diff
    and layernorm.stats (bounded: rows up to their bound).
    """
    from .layernorm import ln_widths
    from .plan import _acc_range
    from .resources import design_plan
    from .softmax import recip_bits
    plan = design_plan(program, lanes)
    linear = [s for s in program.steps if isinstance(s, LinearStep)]
    ranges = [_acc_range(s, program) for s in linear]
    acc_lo, acc_hi = min(r[0] for r, _ in ranges), max(r[1] for r, _ in ranges)
    d_lo, d_hi = min(r[0] for _, r in ranges), max(r[1] for _, r in ranges)
    check_mac_budget(program, acc_lo, acc_hi)
    xb = plan.x_bits
    x_range = (-(1 << xb), (1 << xb) - 1)
    proofs = [
        Proof("mac_array.accumulators", lambda: mac_array_harness(
            lanes, plan.x_bits, plan.w_bits, plan.k_max, plan.acc_width, x_range, acc_lo, acc_hi,
            pairs=plan.pairs), "prove", 3),
        Proof("mac_array.products", lambda: mac_products_harness(lanes, plan.x_bits, plan.w_bits,
                                                                 pairs=plan.pairs), "prove", 2),
        Proof("requant.range", lambda: requantizer_harness(
            plan.drain_width, plan.code_width, plan.shift_range("requant_shift"), d_lo, d_hi), "prove", 4),
        Proof("stream.requant", lambda: requantizer_stream_harness(
            plan.drain_width, plan.code_width, plan.shift_range("requant_shift")), "prove", 4),
        Proof("stream.accel_input", lambda: accel_input_harness(program, lanes), "prove", 2),
        Proof("stream.accel_output", lambda: accel_output_harness(program, lanes), "prove", 2),
    ]
    # the logic-lane (Booth) multiplier, one lane: its equivalence with x * w grows hard for the solver with
    # the width (5 bits 5 s, 6 bits 11 s, 8 bits over 5 min on 2 cores): quick mode proves it up to 6 bits
    if full or max(plan.x_bits, plan.w_bits) <= BOOTH_QUICK_BITS:
        proofs.insert(1, Proof("mac_array.booth_products", lambda: mac_products_harness(
            1, plan.x_bits, plan.w_bits, logic_lanes=1, pairs=plan.pairs), "prove", 2))
    if plan.pairs:
        # a pair cycle: a multiplier-block lane's packed product, and a lane in logic's two Booth products.
        # One lane of each kind: the lanes are copies of one elaboration (`MacArray._operands`, `_addends`),
        # as for the Booth products; the solver's time grows faster than the lanes (4 lanes 104 s, 1 lane 14 s)
        proofs.insert(2, Proof("mac_array.pairs", lambda: mac_pairs_harness(
            1, plan.x_bits, plan.w_bits, plan.pairs), "prove", 2))
        proofs.insert(3, Proof("mac_array.booth_pairs", lambda: mac_pairs_harness(
            1, plan.x_bits, plan.w_bits, plan.pairs, logic_lanes=1), "prove", 2))
    if plan.uses("residual"):
        proofs.append(Proof("residual.range", lambda: scale_shift_harness(
            plan.code_width, plan.res_m_width, 1, plan.code_width, plan.shift_range("res_shift"), True), "prove", 4))
    if plan.uses("affine"):
        proofs.append(Proof("affine.range", lambda: scale_shift_harness(
            plan.aff_in_width, plan.aff_m_width, plan.aff_b_width, plan.code_width, plan.shift_range("affine_shift"), False),
            "prove", 4))
    sm_cols = [s.cols for s in program.steps if isinstance(s, SoftmaxStep)]
    if sm_cols:
        proofs.append(Proof("softmax.row_sum", lambda: softmax_row_harness(plan, max(sm_cols), "sum"), "bmc",
                            max(sm_cols) + 12))
        proofs.append(Proof("softmax.out_range", lambda: softmax_row_harness(plan, max(sm_cols), "out"), "prove", 2))
    if plan.uses("softmax"):
        q_bits = recip_bits(plan.min_exp_sum)
        sum_width = plan.exp_width + max(1, plan.max_cols).bit_length()
        e_max = (1 << intops.EXP_BITS) if not plan.exp_rom else max(max(plan.exp_rom), 1 << intops.EXP_BITS)
        sum_max = min((1 << sum_width) - 1, plan.max_cols * e_max)
        proofs.append(Proof("softmax.reciprocal", lambda: reciprocal_harness(
            intops.RECIP_BITS, sum_width, q_bits, 1, plan.min_exp_sum, sum_max), "prove", 2))
    if plan.uses("layernorm"):
        proofs.append(Proof("layernorm.out_range", lambda: layernorm_out_harness(plan), "prove", 2))
        proofs.append(Proof("layernorm.norm_product", lambda: layernorm_norm_harness(plan), "prove", 2))
        v_width = ln_widths(plan.elem_width, plan.max_cols, plan.eps_max)["v"]
        r_bits = (v_width + 1) // 2
        k_inv = intops.LN_FRAC_BITS + intops.LN_RECIP_BITS
        # every root R of its width, 0 included (the divider takes max(R, 1)): the premise of norm_product
        proofs.append(Proof("layernorm.reciprocal", lambda: reciprocal_harness(
            k_inv, r_bits, None, 2, 0, (1 << r_bits) - 1), "prove", 2))
        if full:
            proofs.append(Proof("layernorm.isqrt", lambda: isqrt_harness(v_width, 0, (1 << v_width) - 1), "bmc",
                                (v_width + 1) // 2 + 4))
    lane_counts = sorted({plan.lanes} | {lay.lanes for lay in plan.layouts.values()})
    chunk_max = max(lay.chunk for lay in plan.layouts.values())
    proofs.append(Proof("walk.address", lambda: walk_harness(lane_counts, plan.addr_width, chunk_max), "prove", 2))
    return proofs + _row_unit_proofs(program, plan, full)
