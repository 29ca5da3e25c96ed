"""Each accelerator block against its `model.intops` golden model: random inputs, every output word compared."""
import numpy as np
from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.sim import Simulator
from hypothesis import given, settings, strategies as st

from intformer.accel.arith import booth_mul, round_shift_in, shift_add_mul
from intformer.accel.divsqrt import Isqrt, Reciprocal
from intformer.accel.layernorm import LayerNormUnit
from intformer.accel.mac_array import MacArray, operand_range
from intformer.accel.requant import Requantizer, ScaleShiftClamp
from intformer.accel.softmax import SoftmaxUnit
from intformer.model import intops

SETTINGS = settings(max_examples=6, deadline=None)


def run(dut, tb):
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()


# ------------------------------------------------------------------------------------------- requantizer

@SETTINGS
@given(bits=st.integers(2, 8), k=st.integers(1, 64), signed_out=st.booleans(), narrow=st.booleans(),
       static=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_requantizer(bits, k, signed_out, narrow, static, seed):
    """Parameters change with every value (they travel with it); the output side applies back-pressure;
    `narrow`: the shifter covers only the shifts used (as the accelerator builds it from a program);
    `static`: one shift for every value, not carried along (as within an accelerator step)."""
    rng = np.random.default_rng(seed)
    lo_acc, hi_acc = intops.mac_bound(k, intops.code_range(bits), intops.weight_range(bits))
    acc_w = intops.bits_signed(lo_acc, hi_acc)
    n = 40
    acc = rng.integers(lo_acc, hi_acc + 1, n)
    acc[:4] = [lo_acc, hi_acc, 0, -1]
    ms = rng.integers(1 << 14, 1 << 15, n)
    ss = np.where(rng.random(n) < 0.9, rng.integers(1, acc_w + 16, n), rng.integers(1, 63, n))
    if static:
        ss[:] = ss[0]
    lo, hi = intops.code_range(bits, signed_out)
    expect = [int(intops.requantize(a, mm, s, lo, hi)) for a, mm, s in zip(acc, ms, ss)]
    dut = Requantizer(acc_w, s_range=(int(ss.min()), int(ss.max())) if narrow else (0, 62), static_params=static)
    assert requantizer_outputs(dut, acc, ms, ss, lo, hi, rng) == expect


def requantizer_outputs(dut, acc, ms, ss, lo: int, hi: int, rng) -> list[int]:
    """The words `dut` (a `Requantizer`) gives for the accumulators `acc` with multipliers `ms` and shifts
    `ss`, one value offered per cycle while the output side is ready 70 % of the cycles."""
    n = len(acc)
    got = []

    async def tb(ctx):
        ctx.set(dut.lo, lo)
        ctx.set(dut.hi, hi)
        i = 0
        while len(got) < n:
            ready = int(rng.random() < 0.7)
            ctx.set(dut.output.ready, ready)
            if i < n:
                ctx.set(dut.input.valid, 1)
                ctx.set(dut.input.payload, int(acc[i]))
                ctx.set(dut.m, int(ms[i]))
                ctx.set(dut.s, int(ss[i]))
            else:
                ctx.set(dut.input.valid, 0)
            if ctx.get(dut.output.valid) and ready:
                got.append(ctx.get(dut.output.payload))
            if i < n and ctx.get(dut.input.ready):
                i += 1
            await ctx.tick()

    run(dut, tb)
    return got


def test_requantizer_check_fails_on_a_requantizer_that_rounds_down():
    """The check above on a faulty requantizer (tests/faulty_blocks.py: the real block whose last stage
    rounds down instead of half up) fails, and at the right words: the first word that differs from
    `intops.requantize` is one below it, where the bits shifted out are at least a half; every word the
    faulty block gives is the floor of acc x m / 2^s, clamped. The real block gives every reference word."""
    from faulty_blocks import RoundDownRequantizer
    rng = np.random.default_rng(7)
    lo_acc, hi_acc = intops.mac_bound(16, intops.code_range(8), intops.weight_range(8))
    acc_w, n, s = intops.bits_signed(lo_acc, hi_acc), 40, 26          # words mostly inside [lo, hi]
    acc, ms, ss = rng.integers(lo_acc, hi_acc + 1, n), rng.integers(1 << 14, 1 << 15, n), np.full(n, s)
    lo, hi = intops.code_range(8, True)
    expect = [int(intops.requantize(a, m, s, lo, hi)) for a, m in zip(acc, ms)]
    floor = [int(np.clip((int(a) * int(m)) >> s, lo, hi)) for a, m in zip(acc, ms)]
    real = requantizer_outputs(Requantizer(acc_w, s_range=(s, s), static_params=True), acc, ms, ss, lo, hi, rng)
    assert real == expect
    faulty = requantizer_outputs(RoundDownRequantizer(acc_w, s_range=(s, s), static_params=True),
                                 acc, ms, ss, lo, hi, rng)
    assert faulty == floor
    differ = [i for i in range(n) if faulty[i] != expect[i]]
    assert differ, "the check passed on a requantizer that rounds down"
    i = differ[0]
    assert faulty[i] == expect[i] - 1 and (int(acc[i]) * int(ms[i])) >> (s - 1) & 1, (i, acc[i], ms[i])


@SETTINGS
@given(bits=st.integers(2, 8), residual=st.booleans(), narrow=st.booleans(), static=st.booleans(),
       seed=st.integers(0, 2**32 - 1))
def test_scale_shift_clamp(bits, residual, narrow, static, seed):
    """The residual sum (intops.residual_add) and the folded BatchNorm (intops.requantize_per_channel)."""
    rng = np.random.default_rng(seed)
    n = 30
    lo, hi = intops.code_range(bits)
    a = rng.integers(lo, hi + 1, n)
    b = rng.integers(0, (1 << bits), n)           # an unsigned operand too
    ma = rng.integers(-(1 << 15) + 1, 1 << 15, n) if not residual else rng.integers(0, 1 << 15, n)
    mb = rng.integers(0, 1 << 15, n) if residual else np.zeros(n, np.int64)
    c = np.zeros(n, np.int64) if residual else rng.integers(-(1 << 30), 1 << 30, n)
    s = rng.integers(1, 30, n)
    if static:
        s[:] = s[0]
    if residual:
        expect = [int(intops.residual_add(*v, lo, hi)) for v in zip(a, b, ma, mb, s)]
    else:
        expect = [int(intops.requantize_per_channel(x, mm, cc, ss, lo, hi)) for x, mm, cc, ss in zip(a, ma, c, s)]
    dut = ScaleShiftClamp(in_width=bits + 1, m_width=16, c_width=32,
                          s_range=(int(s.min()), int(s.max())) if narrow else (0, 62), static_params=static)
    got = []

    async def tb(ctx):
        ctx.set(dut.lo, lo)
        ctx.set(dut.hi, hi)
        for i in range(n + dut.LATENCY):
            if i < n:
                for port, v in ((dut.a, a), (dut.b, b), (dut.ma, ma), (dut.mb, mb), (dut.c, c), (dut.s, s)):
                    ctx.set(port, int(v[i]))
            ctx.set(dut.valid_in, int(i < n))
            await ctx.tick()
            if ctx.get(dut.valid_out):
                got.append(ctx.get(dut.y))

    run(dut, tb)
    assert got == expect


def comb_outputs(m, inputs, outputs, vectors):
    """Drive `inputs` with each vector of values in turn (a combinational module) and read `outputs`."""
    got = []

    async def tb(ctx):
        for vec in vectors:
            for sig, v in zip(inputs, vec):
                ctx.set(sig, int(v))
            got.append(tuple(ctx.get(o) for o in outputs))
    sim = Simulator(m)
    sim.add_testbench(tb)
    sim.run()
    return got


def test_round_shift_in_and_logic_multipliers():
    """The short shifter (a shift known to lie in a range) is intops.round_shift; the Booth multiplier and
    shift-and-add are products: random and extreme operands."""
    rng = np.random.default_rng(5)
    for width, s_range in [(12, (1, 1)), (12, (1, 14)), (20, (3, 9)), (9, (0, 5)), (30, (12, 24)), (8, (2, 40))]:
        xs = np.concatenate([rng.integers(-(1 << (width - 1)), 1 << (width - 1), 60),
                             [-(1 << (width - 1)), (1 << (width - 1)) - 1, 0, -1, 1]])
        ss = rng.integers(s_range[0], s_range[1] + 1, len(xs))
        x, sh, y = Signal(signed(width)), Signal(range(63)), Signal(signed(width + 1))
        m = Module()
        m.d.comb += y.eq(round_shift_in(x, sh, s_range))
        got = comb_outputs(m, (x, sh), (y,), zip(xs, ss))
        assert got == [(int(intops.round_shift(int(a), int(b))),) for a, b in zip(xs, ss)], (width, s_range)
    for xb, wb in [(3, 3), (5, 4), (9, 9), (4, 7)]:
        x, w, u = Signal(signed(xb)), Signal(signed(wb)), Signal(unsigned(wb))
        y, z = Signal(signed(xb + wb)), Signal(signed(xb + wb + 1))
        m = Module()
        m.d.comb += [y.eq(booth_mul(x, w)), z.eq(shift_add_mul(x, u))]
        xv, wv = range(-(1 << (xb - 1)), 1 << (xb - 1)), range(-(1 << (wb - 1)), 1 << (wb - 1))
        if xb * wb > 40:                  # extremes and a random sample
            xv = sorted({*xv[:3], *xv[-3:], 0, *rng.choice(xv, 12).tolist()})
            wv = sorted({*wv[:3], *wv[-3:], 0, *rng.choice(wv, 12).tolist()})
        vectors = [(a, b, b % (1 << wb)) for a in xv for b in wv]
        got = comb_outputs(m, (x, w, u), (y, z), vectors)
        assert got == [(a * b, a * ub) for a, b, ub in vectors], (xb, wb)


# --------------------------------------------------------------------------------------------- MAC array

@SETTINGS
@given(lanes=st.integers(1, 5), x_bits=st.integers(2, 8), w_bits=st.integers(2, 8), logic_lanes=st.integers(0, 3),
       seed=st.integers(0, 2**32 - 1))
def test_mac_array(lanes, x_bits, w_bits, logic_lanes, seed):
    """Groups of random length back to back (and sometimes with idle cycles inside), extreme operands; some
    lanes multiply in logic (Booth) instead of a multiplier block."""
    rng = np.random.default_rng(seed)
    k_max = 12
    xlo, xhi = operand_range(x_bits)
    wlo, whi = operand_range(w_bits)
    groups = []
    for _ in range(8):
        k = int(rng.integers(1, k_max + 1))
        corner = rng.random() < 0.3          # all-extreme group: the accumulator's worst case
        x = np.full(k, xlo if rng.random() < .5 else xhi) if corner else rng.integers(xlo, xhi + 1, k)
        w = np.full((k, lanes), wlo if rng.random() < .5 else whi) if corner else rng.integers(wlo, whi + 1, (k, lanes))
        groups.append((x, w))
    expect = [(list(intops.matmul_acc(x[None, :], w)[0]), gi) for gi, (x, w) in enumerate(groups)]
    dut = MacArray(lanes, x_bits, w_bits, k_max, logic_lanes=logic_lanes)
    got = []

    async def tb(ctx):
        schedule = []
        for gi, (x, w) in enumerate(groups):
            for k in range(len(x)):
                while rng.random() < 0.1:
                    schedule.append(None)
                schedule.append((x[k], w[k], k == 0, k == len(x) - 1, gi))
        for item in schedule + [None] * 4:
            if item is None:
                ctx.set(dut.valid, 0)
            else:
                x, w, first, last, gi = item
                ctx.set(dut.valid, 1)
                ctx.set(dut.x, int(x))
                ctx.set(dut.w, [int(v) for v in w])
                ctx.set(dut.first, int(first))
                ctx.set(dut.last, int(last))
                ctx.set(dut.tag, gi)
            await ctx.tick()
            if ctx.get(dut.result_valid):
                got.append(([ctx.get(dut.result[l]) for l in range(lanes)], ctx.get(dut.result_tag)))

    run(dut, tb)
    assert dut.acc_width == intops.bits_signed(*intops.mac_bound(k_max, (xlo, xhi), (wlo, whi)))
    assert got == expect


# ------------------------------------------------------------------------------- reciprocal and isqrt

def run_sequential(dut, inputs, port, result):
    """Start the block on each input in turn; collect `result` at each `done`, check the stated latency."""
    got = []

    async def tb(ctx):
        for value in inputs:
            ctx.set(port, int(value))
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            cycles = 1
            while not ctx.get(dut.done):
                await ctx.tick()
                cycles += 1
            assert cycles == dut.latency
            got.append(ctx.get(result))

    run(dut, tb)
    return got


@SETTINGS
@given(k=st.integers(8, 34), seed=st.integers(0, 2**32 - 1), short=st.booleans(), radix_bits=st.sampled_from([1, 2]))
def test_reciprocal(k, seed, short, radix_bits):
    rng = np.random.default_rng(seed)
    n_width = 20
    short = short and k > 9
    q_bits = k - 8 if short else None            # short division: n > 2^8 guaranteed
    low = (1 << 8) + 1 if short else 0
    ns = list(rng.integers(low, 1 << n_width, 6)) + [low, (1 << n_width) - 1] + ([] if short else [0, 1, 2, 3])
    dut = Reciprocal(k, n_width, q_bits, radix_bits)
    got = run_sequential(dut, ns, dut.n, dut.q)
    assert got == [int(intops.reciprocal(n, k)) for n in ns]


@SETTINGS
@given(v_width=st.integers(1, 48), seed=st.integers(0, 2**32 - 1))
def test_isqrt(v_width, seed):
    rng = np.random.default_rng(seed)
    top = (1 << v_width) - 1
    vs = [int(v) for v in rng.integers(0, top + 1, 6, dtype=np.int64)] + [0, top, 1, min(top, 4), min(top, 3)]
    r = int(intops.isqrt(top))
    vs += [v for v in (r * r, r * r - 1) if 0 <= v <= top]
    dut = Isqrt(v_width)
    got = run_sequential(dut, vs, dut.v, dut.r)
    assert got == [int(intops.isqrt(v)) for v in vs]


# -------------------------------------------------------------------------------------------- row units

class RowBench:
    """Emulates the accelerator around a row unit: P-wide buffers behind the element interface (data one
    cycle after the address), constant tables behind lookups, and records every element written."""

    def __init__(self, lanes, src, src_base, out_base, out_cols, tables=None, junk=-3):
        self.lanes = lanes
        self.src = np.asarray(src)
        rows, cols = self.src.shape
        self.src_base, self.out_base = src_base, out_base
        self.src_wpr = -(-cols // lanes) + 1          # a spare word per row: the unit must honour wpr
        self.out_wpr = -(-out_cols // lanes)
        self.mem = {}
        for r in range(rows):
            for w in range(self.src_wpr):
                for l in range(lanes):
                    c = w * lanes + l
                    self.mem[(src_base + r * self.src_wpr + w, l)] = int(self.src[r, c]) if c < cols else junk
        self.tables = tables or {}
        self.written = {}

    def out_array(self, rows, cols):
        out = np.full((rows, cols), -999, np.int64)
        for r in range(rows):
            for c in range(cols):
                key = (self.out_base + r * self.out_wpr + c // self.lanes, c % self.lanes)
                if key in self.written:
                    out[r, c] = self.written[key]
        return out

    async def serve(self, ctx, dut, params, start_hook=None, cycle_hook=None, max_cycles=20000):
        for port, value in params.items():
            ctx.set(getattr(dut, port), value)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        pending = None
        lookups = {}
        for cycle in range(max_cycles):
            if pending is not None:
                ctx.set(dut.rd.data, self.mem.get(pending, 0))
            for name, addr in lookups.items():
                ctx.set(getattr(dut, name).data, self.tables[name](addr))
            if cycle_hook:
                cycle_hook(ctx, cycle)
            pending = (ctx.get(dut.rd.addr), ctx.get(dut.rd.lane)) if ctx.get(dut.rd.en) else pending
            lookups = {name: ctx.get(getattr(dut, name).addr) for name in self.tables}
            if ctx.get(dut.wr.en):
                key = (ctx.get(dut.wr.addr), ctx.get(dut.wr.lane))
                assert key not in self.written, f"element {key} written twice"
                self.written[key] = ctx.get(dut.wr.data)
            if ctx.get(dut.done):
                return cycle
            await ctx.tick()
        raise AssertionError("the row unit did not finish")


@settings(max_examples=10, deadline=None)
@given(bits=st.integers(2, 8), out_bits=st.integers(2, 8), rows=st.integers(1, 4), cols=st.integers(1, 9),
       lanes=st.integers(1, 4), method=st.sampled_from(["lut", "poly"]), ext_max=st.booleans(),
       slow_producer=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_softmax_unit(bits, out_bits, rows, cols, lanes, method, ext_max, slow_producer, seed):
    rng = np.random.default_rng(seed)
    lo, hi = intops.code_range(bits)
    z = rng.integers(lo, hi + 1, (rows, cols))
    if rng.random() < 0.3:
        z[0, :] = z[0, 0]                           # a constant row: every element is the maximum
    scale = float(rng.uniform(0.02, 1.5)) * 8 / (1 << bits)
    table = intops.softmax_lut_table(bits, scale)
    c = intops.softmax_poly_constant(scale)
    expect = intops.softmax_int(z, method, out_bits, table, c)
    dut = SoftmaxUnit(lanes=lanes, elem_width=9, addr_width=8, max_rows=4, max_cols=9, methods=(method,),
                      table_addr_width=9)
    bench = RowBench(lanes, z, src_base=3, out_base=1, out_cols=cols,
                     tables={"table": lambda a: int(table[a - 5]) if 0 <= a - 5 < len(table) else 0,
                             "rmax": lambda a: int(z[a].max()) if a < rows else 0})
    params = dict(rows=rows, cols=cols, src_base=bench.src_base, src_wpr=bench.src_wpr, out_base=bench.out_base,
                  out_wpr=bench.out_wpr, poly=int(method == "poly"), c=c, out_bits=out_bits, t_base=5,
                  ext_max=int(ext_max), rows_ready=0 if slow_producer else rows)

    def producer(ctx, cycle):                         # rows appear one by one, as a linear step writes them
        if slow_producer:
            ctx.set(dut.rows_ready, min(rows, cycle // 15))

    async def tb(ctx):
        cycles = await bench.serve(ctx, dut, params, cycle_hook=producer)
        assert cycles > 0

    run(dut, tb)
    np.testing.assert_array_equal(bench.out_array(rows, cols), expect)
    assert len(bench.written) == rows * cols


@settings(max_examples=10, deadline=None)
@given(bits=st.integers(2, 8), signed_in=st.booleans(), rows=st.integers(1, 4), cols=st.integers(1, 12),
       lanes=st.integers(1, 4), ext_sums=st.booleans(), slow_producer=st.booleans(), big_eps=st.booleans(),
       seed=st.integers(0, 2**32 - 1))
def test_layernorm_unit(bits, signed_in, rows, cols, lanes, ext_sums, slow_producer, big_eps, seed):
    rng = np.random.default_rng(seed)
    lo_in, hi_in = intops.code_range(bits, signed_in)
    x = rng.integers(lo_in, hi_in + 1, (rows, cols))
    if rng.random() < 0.3:
        x[0, :] = x[0, 0]                           # zero variance: R = isqrt(eps)
    g = rng.integers(-(1 << 14), 1 << 14, cols)
    b = rng.integers(-(1 << 20), 1 << 20, cols)
    s = int(rng.integers(8, 24))
    eps = int(rng.integers(0, 1 << 40)) if big_eps else int(rng.integers(0, 64))
    lo, hi = intops.code_range(8)
    expect = intops.layernorm_int(x, g, b, s, eps, lo, hi)
    dut = LayerNormUnit(lanes=lanes, elem_width=9, addr_width=8, max_rows=4, max_cols=12, eps_max=(1 << 40) - 1,
                        g_width=16, b_width=22)
    bench = RowBench(lanes, x, src_base=2, out_base=0, out_cols=cols,
                     tables={"param": lambda a: {"g": int(g[a - 7]), "b": int(b[a - 7])} if 0 <= a - 7 < cols
                             else {"g": 0, "b": 0},
                             "rsum": lambda a: {"s": int(x[a].sum()), "q": int((x[a] * x[a]).sum())} if a < rows
                             else {"s": 0, "q": 0}})
    params = dict(rows=rows, cols=cols, src_base=bench.src_base, src_wpr=bench.src_wpr, out_base=bench.out_base,
                  out_wpr=bench.out_wpr, p_base=7, s=s, eps=eps, lo=lo, hi=hi, ext_sums=int(ext_sums),
                  rows_ready=0 if slow_producer else rows)

    def producer(ctx, cycle):
        if slow_producer:
            ctx.set(dut.rows_ready, min(rows, cycle // 15))

    async def tb(ctx):
        await bench.serve(ctx, dut, params, cycle_hook=producer)

    run(dut, tb)
    np.testing.assert_array_equal(bench.out_array(rows, cols), expect)
    assert len(bench.written) == rows * cols
