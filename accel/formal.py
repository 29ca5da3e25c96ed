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
from amaranth.hdl import Assert, Assume, Const, Module, Mux, Signal, signed, unsigned

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
                      acc_lo: int, acc_hi: int, logic_lanes: int = 0) -> Module:
    """MAC array: no accumulator ever wraps, and each result is its group's exact sum (unbounded: k-induction).

    The `MacArray` as the accelerator builds it (P lanes, the plan's operand and accumulator widths). Inputs:
    any valid/first/last/shift pattern, x any code in `x_range`, each lane's w any value of its port.
    Assumed: within a group, every partial sum of a lane's products stays in [acc_lo, acc_hi], the plan's
    accumulator range (`check_mac_budget` verifies this premise on the program: for every step, column and
    prefix, over every code of the X buffer). Asserted on every cycle, for every lane: the accumulator
    equals the exact sum of its group's products so far (kept in a shadow register 4 bits wider, which
    cannot wrap under the assumption) and lies in [acc_lo, acc_hi]; every result register lies in
    [acc_lo, acc_hi]. One bit less of accumulator fails this proof.
    """
    from .mac_array import MacArray
    m = harness()
    mac = MacArray(lanes, x_bits, w_bits, k_max, logic_lanes=logic_lanes, acc_bits=acc_bits)
    dut = elaborated(mac)
    m.submodules.mac = dut
    wide = max(acc_bits, x_bits + w_bits + 2) + 4
    for port in ("valid", "first", "last", "shift"):
        m.d.comb += getattr(mac, port).eq(AnySeq(1))
    m.d.comb += [mac.x.eq(AnySeq(x_bits + 1)), Assume(in_range(mac.x, *x_range))]
    # the block's stage-1 valid and first: registers of the same inputs
    valid_d, first_d = Signal(), Signal()
    m.d.sync += [valid_d.eq(mac.valid), first_d.eq(mac.first)]
    for l in range(lanes):
        m.d.comb += mac.w[l].eq(AnySeq(w_bits + 1))
        prod, acc = mac.prod[l], mac.acc[l]
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
                         fault: str | None = None) -> Module:
    """MAC products: every lane's product register is x * w of the previous cycle's operands, for every
    operand of the ports' widths (unbounded: k-induction; the products are one register after the inputs).

    The `MacArray` as the accelerator builds it (P lanes, the plan's operand widths), `logic_lanes` of
    them multiplying in logic (`arith.booth_mul`), the others with `*` (a multiplier block). Inputs: x and
    each lane's w any values of their ports (signed x_bits + 1 and w_bits + 1 bits: every code, and more),
    every other input any pattern. The harness keeps the previous cycle's x and w (registers starting at 0,
    as the product registers do). Asserted on every cycle, for every lane: prod == x_prev * w_prev, at full
    precision. This is the premise that `mac_array_harness` takes as given (it reads the product
    registers). `fault` builds the array with a design fault (`MacArray.FAULTS`: it must fail from reset).
    """
    from .mac_array import MacArray
    m = harness()
    mac = MacArray(lanes, x_bits, w_bits, k_max=1, logic_lanes=logic_lanes, fault=fault)
    m.submodules.mac = elaborated(mac)
    for port in ("valid", "first", "last", "shift"):
        m.d.comb += getattr(mac, port).eq(AnySeq(1))
    x_d = Signal(signed(x_bits + 1))
    m.d.comb += mac.x.eq(AnySeq(x_bits + 1))
    m.d.sync += x_d.eq(mac.x)
    for l in range(lanes):
        w_d = Signal(signed(w_bits + 1), name=f"w_prev{l}")
        m.d.comb += mac.w[l].eq(AnySeq(w_bits + 1))
        m.d.sync += w_d.eq(mac.w[l])
        m.d.comb += Assert(mac.prod[l] == x_d * w_d)
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
    max(n, 1), so the quotient is the largest one, i.e. floor(2^k / n).
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
    if exact:
        with m.If(div.done):
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

# Narrowings of the softmax unit that its out_range proof leaves to others: the read and write walkers'
# counters (`rowio.RowReader`, `RowWriter`, whose registers are in the unit's module: addresses, bounded by rows
# and cols), the row sum `total` (the row_sum proof), and d = max - z,
# which is >= 0 only for z of the row whose maximum max is (the drain computes both; the harness's z and
# max are unrelated).
SOFTMAX_NOT_AUDITED = r"word|lane|col|row_e|base_e|outstanding|n_col|row_n|rows_norm_issued|out_row|w_word|w_lane|rows_written|total|d"


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
    from .softmax import SoftmaxUnit
    m = harness()
    methods = tuple(sorted({"poly" if r.sm_poly else "lut" for r in plan.steps if r.softmax}))
    TW = max(1, (len(plan.exp_rom) - 1).bit_length())
    E = plan.elem_width
    sm = SoftmaxUnit(lanes=plan.lanes, elem_width=E, addr_width=plan.addr_width, max_rows=plan.max_rows,
                     max_cols=plan.max_cols, methods=methods, table_addr_width=TW, exp_width=plan.exp_width,
                     min_sum=plan.min_exp_sum, out_width=E, shared_mul=False,
                     out_bits_range=plan.shift_range("sm_out_bits", (0, 8)), fault=fault)
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
                 sm.poly.eq(AnyConst(1) if methods == ("lut", "poly") else int(methods == ("poly",))),
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


# ----------------------------------------------------------------------------- LayerNorm row unit

# Narrowings of the LayerNorm unit that its out_range proof leaves out: the walkers' counters (addresses), and
# the statistics path, whose bounds (`ln_widths`) are interval arithmetic over the row: the sums S and Q
# (bounded by the row length), D S, the variance D Q - S^2 (>= 0 by Cauchy-Schwarz, beyond a SAT solver),
# v, t2 = t1 x inv (inv <= 2^34 needs the divider's result) and n. The simulation tests check them.
LAYERNORM_NOT_AUDITED = (r"word|lane|col|row_s|row_n|base_s|base_n|param__addr|out_row|w_word|w_lane|rows_written"
                         r"|s_row|q_row|d2|a_ds|diff|vreg|t2|n3|cut of .*t2.*")


def layernorm_out_harness(plan, audit: bool = True) -> Module:
    """LayerNorm row unit: every output word is in [lo, hi] (unbounded: k-induction).

    The `LayerNormUnit` as the accelerator builds it for `plan`. Inputs: every port any pattern or constant
    (rows, cols within their ranges, lo <= hi, s in the plan's shift range), read data any code, the
    parameter ROM's g and b any values of their widths. Asserted on every cycle: every word written lies
    in [lo, hi], and (with `audit`) the narrowings of the NORM pass's output (`accel.overflow`): the affine
    n x g + b has its full width, its shift and clamp. Not covered: the statistics path
    (`LAYERNORM_NOT_AUDITED`).
    """
    from .layernorm import LayerNormUnit
    m = harness()
    ln = LayerNormUnit(lanes=plan.lanes, elem_width=plan.elem_width, addr_width=plan.addr_width,
                       max_rows=plan.max_rows, max_cols=plan.max_cols, eps_max=plan.eps_max, g_width=plan.ln_g_width,
                       b_width=plan.ln_b_width, param_addr_width=max(1, (len(plan.ln_rom) - 1).bit_length()),
                       out_width=plan.elem_width, s_range=plan.shift_range("ln_shift"))
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


# --------------------------------------------------------------------------------------- a model's proofs

def model_proofs(program: IntProgram, lanes: int = 8, full: bool = True) -> list[Proof]:
    """The datapath proofs for one program at P = `lanes`, with the widths, ranges and shifts its plan builds.

    `full` adds the bounded proof of the LayerNorm square root (tens of seconds); every other proof takes
    seconds: all are unbounded but the softmax row sum (bounded: every row sum with the fused maximum).
    """
    from .layernorm import ln_widths
    from .plan import _acc_range, make_plan
    from .softmax import recip_bits
    plan = make_plan(program, lanes)
    linear = [s for s in program.steps if isinstance(s, LinearStep)]
    ranges = [_acc_range(s, program) for s in linear]
    acc_lo, acc_hi = min(r[0] for r, _ in ranges), max(r[1] for r, _ in ranges)
    d_lo, d_hi = min(r[0] for _, r in ranges), max(r[1] for _, r in ranges)
    check_mac_budget(program, acc_lo, acc_hi)
    xb = plan.x_bits
    x_range = (-(1 << xb), (1 << xb) - 1)
    proofs = [
        Proof("mac_array.accumulators", lambda: mac_array_harness(
            lanes, plan.x_bits, plan.w_bits, plan.k_max, plan.acc_width, x_range, acc_lo, acc_hi), "prove", 3),
        Proof("mac_array.products", lambda: mac_products_harness(lanes, plan.x_bits, plan.w_bits), "prove", 2),
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
            1, plan.x_bits, plan.w_bits, logic_lanes=1), "prove", 2))
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
        v_width = ln_widths(plan.elem_width, plan.max_cols, plan.eps_max)["v"]
        r_bits = (v_width + 1) // 2
        k_inv = intops.LN_FRAC_BITS + intops.LN_RECIP_BITS
        proofs.append(Proof("layernorm.reciprocal", lambda: reciprocal_harness(
            k_inv, r_bits, None, 2, 1, (1 << r_bits) - 1), "prove", 2))
        if full:
            proofs.append(Proof("layernorm.isqrt", lambda: isqrt_harness(v_width, 0, (1 << v_width) - 1), "bmc",
                                (v_width + 1) // 2 + 4))
    return proofs
