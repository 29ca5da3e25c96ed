"""The accelerator's own components (accel/loader.py, sequencer.py, drain.py, crossbar.py, output_port.py,
control.py, pipeline.py, walk.py), each in Amaranth's simulator against a small Python model of its job."""
import numpy as np
import pytest
from amaranth.hdl import Module, Signal, signed
from amaranth.sim import Simulator

from intformer.accel.control import State, TopControl
from intformer.accel.crossbar import BankCrossbar
from intformer.accel.drain import Drain
from intformer.accel.loader import InputLoader
from intformer.accel.output_port import OutputPort
from intformer.accel.pipeline import Delay, delay_model
from intformer.accel.plan import R_RES, R_W, R_X, W_DRAIN, BufferLayout, make_plan
from intformer.accel.sequencer import IssueSequencer
from intformer.accel.steps import STEP_FIELDS, StepFields, StepRecord
from intformer.accel.walk import walk, walk_model
from intformer.model import intops
from intformer.model.program import LinearStep
from program_factory import random_program


def run(dut, tb):
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()


def small_program(seed=0, **kw):
    args = dict(n=3, m=1, d=2, ffn=3, horizon=1, bits=4, skip=True, norm="batch", activation="gelu")
    args.update(kw)
    return random_program(np.random.default_rng(seed), **args)


def lane_of(word: int, lane: int, lane_bits: int, bits: int, signed_: bool) -> int:
    v = (word >> (lane * lane_bits)) & ((1 << lane_bits) - 1)
    v &= (1 << lane_bits) - 1
    if signed_ and v >> (lane_bits - 1):
        v -= 1 << lane_bits
    return v


# --------------------------------------------------------------------------------- step table, walker

def test_step_fields_refuse_a_misspelt_name():
    """A field of the step table is read by its `StepRecord` name; a misspelt one fails while building."""
    plan = make_plan(small_program(), 2)
    rec = Signal(plan.step_layout())
    f = StepFields(rec)
    assert len(f.groups_per_chunk) == len(rec["groups_per_chunk"])
    unused = next(n for n in STEP_FIELDS if n not in dict(plan.step_layout()) and n not in
                  ("read_role", "write_role", "read_signed"))
    assert f.__getattr__(unused).value == 0            # a field no step of this program uses reads as 0
    with pytest.raises(AttributeError):
        f.gpc
    with pytest.raises(AttributeError):
        f.read_role                                    # per bank: f.bank("read_role", j)
    with pytest.raises(TypeError):
        StepRecord(gpc=1)


@pytest.mark.parametrize("cols, chunk, lanes", [(6, 6, 4), (6, 3, 2), (8, 4, 3), (5, 5, 1)])
def test_walk_follows_the_layout(cols, chunk, lanes):
    """`walk_model` steps column by column exactly as `BufferLayout.col_pos` places them, and `walk` (in
    hardware) is `walk_model`."""
    lay = BufferLayout("b", 0, 2, cols, 4, True, lanes, chunk)
    pos = lay.col_pos(0)
    for c in range(1, cols):
        pos = walk_model(*pos, chunk, lanes)
        assert pos == lay.col_pos(c)
    word, lane, within = Signal(8), Signal(4), Signal(4)
    m = Module()
    nxt = [Signal(8), Signal(4), Signal(4)]
    m.d.comb += [s.eq(v) for s, v in zip(nxt, walk(word, lane, within, chunk, lanes))]
    cases = [lay.col_pos(c) for c in range(cols)]

    async def tb(ctx):
        for w, l, i in cases:
            ctx.set(word, w + 3)
            ctx.set(lane, l)
            ctx.set(within, i)
            ew, el, ei = walk_model(w + 3, l, i, chunk, lanes)
            assert (ctx.get(nxt[0]), ctx.get(nxt[1]), ctx.get(nxt[2])) == (ew, el, ei)

    sim = Simulator(m)
    sim.add_testbench(tb)
    sim.run()


@pytest.mark.parametrize("cycles", [0, 1, 3])
def test_delay_line(cycles):
    dut = Delay(signed(6), cycles)
    rng = np.random.default_rng(cycles)
    values = [int(v) for v in rng.integers(-32, 32, 20)]
    got = []

    async def tb(ctx):
        for v in values:
            ctx.set(dut.i, v)
            got.append(ctx.get(dut.o))
            await ctx.tick()

    m = Module()                        # a clock domain even where the line has no register (0 cycles)
    m.submodules.dut = dut
    tick = Signal()
    m.d.sync += tick.eq(~tick)
    run(m, tb)
    assert got == delay_model(values, cycles)


# ------------------------------------------------------------------------------------- input loader

@pytest.mark.parametrize("cols, chunk, lanes", [(5, 5, 2), (6, 3, 2), (4, 4, 1)])
def test_input_loader_writes_each_code_where_the_layout_puts_it(cols, chunk, lanes):
    lay = BufferLayout("x", 0, 3, cols, 4, False, lanes, chunk)
    lay.base = 7
    dut = InputLoader(lay, lanes, addr_width=6)
    rng = np.random.default_rng(cols)
    codes = [int(v) for v in rng.integers(0, 16, lay.rows * cols)]
    writes, lasts = [], []

    async def tb(ctx):
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        ctx.set(dut.active, 1)
        k = 0
        while k < len(codes):
            valid = int(rng.random() < 0.6)
            ctx.set(dut.input.valid, valid)
            ctx.set(dut.input.payload, codes[k])
            assert ctx.get(dut.input.ready) == 1 and ctx.get(dut.en) == valid
            assert ctx.get(dut.count) == k
            if valid:
                writes.append((ctx.get(dut.addr), ctx.get(dut.lane), ctx.get(dut.data)))
                lasts.append(ctx.get(dut.last))
                k += 1
            await ctx.tick()
        ctx.set(dut.active, 0)
        ctx.set(dut.input.valid, 1)
        assert ctx.get(dut.input.ready) == 0 and ctx.get(dut.en) == 0

    run(dut, tb)
    expect = []
    for k, code in enumerate(codes):
        word, lane = lay.word_lane(*divmod(k, cols))
        expect.append((lay.base + word, lane, code))
    assert writes == expect
    assert lasts == [0] * (len(codes) - 1) + [1]


# -------------------------------------------------------------------------------------- output port

@pytest.mark.parametrize("cols, chunk, lanes", [(5, 5, 2), (4, 2, 2), (3, 3, 1)])
def test_output_port_sends_each_word_once_in_order(cols, chunk, lanes):
    lay = BufferLayout("out", 0, 1, cols, 12, True, lanes, chunk, wide=True)
    lay.base, lay.lane_bits = 3, 16
    dut = OutputPort(lay, lanes, addr_width=5, lane_bits=16, bank_width=16 * lanes)
    rng = np.random.default_rng(cols)
    words = {a: int(rng.integers(0, 1 << (16 * lanes))) for a in range(32)}
    sent = []

    async def tb(ctx):
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        for n in range(cols):
            assert ctx.get(dut.index) == n and ctx.get(dut.last) == (n == cols - 1)
            addr = ctx.get(dut.addr)                 # READ: the bank sees the address ...
            await ctx.tick()
            ctx.set(dut.data, words[addr])           # ... and answers a cycle later: LATCH
            ctx.set(dut.latch, 1)
            await ctx.tick()
            ctx.set(dut.latch, 0)
            ctx.set(dut.data, 0)
            ctx.set(dut.send, 1)                     # SEND until ready
            while True:
                ready = int(rng.random() < 0.5)
                ctx.set(dut.output.ready, ready)
                assert ctx.get(dut.output.valid) == 1
                payload = ctx.get(dut.output.payload)
                await ctx.tick()
                if ready:
                    sent.append(payload)
                    break
            ctx.set(dut.send, 0)
            ctx.set(dut.output.ready, 0)
        assert ctx.get(dut.index) == cols

    run(dut, tb)
    expect = []
    for c in range(cols):
        word, lane = lay.word_lane(0, c)
        v = (words[lay.base + word] >> (16 * lane)) & 0xFFF
        expect.append(v - (1 << 12) if v >> 11 else v)
    assert sent == expect


# ------------------------------------------------------------------------------- top state machine

def control_model(state: State, step: int, n_steps: int, rec, i: dict) -> tuple[State, int]:
    """The top state machine's next (state, step) for the inputs `i` this cycle."""
    if state == State.IDLE:
        return (State.LOAD, 0) if i["start"] else (state, step)
    if state == State.LOAD:
        return (State.STEP, step) if i["load_last"] else (state, step)
    if state == State.STEP:
        return State.WAIT, step
    if state == State.WAIT:
        ok = ((not rec.linear or i["lin_done"]) and (not rec.softmax or i["sm_done"])
              and (not rec.layernorm or i["ln_done"]))
        if not ok:
            return state, step
        return (State.OUT_READ if step == n_steps - 1 else State.STEP), step + 1
    if state == State.OUT_READ:
        return State.OUT_LATCH, step
    if state == State.OUT_LATCH:
        return State.OUT_SEND, step
    if i["out_ready"]:
        return (State.IDLE if i["out_last"] else State.OUT_READ), step
    return state, step


def test_top_control_follows_its_model():
    """Random inputs; every cycle the state, the step index, the current step's record and the strobes are
    what the model says; `cycles` counts from `start` to `done`."""
    plan = make_plan(small_program(norm="layer", activation="gelu", softmax="poly"), 2)
    dut = TopControl(plan)
    layout, rom = plan.step_layout(), plan.step_rom()
    rng = np.random.default_rng(1)
    n = len(plan.steps)

    async def tb(ctx):
        state, step, cycle, started, inferences = State.IDLE, 0, 0, None, 0
        while inferences < 2:
            i = {k: int(rng.random() < 0.3) for k in ("start", "load_last", "lin_done", "sm_done", "ln_done",
                                                       "out_ready", "out_last")}
            for k, v in i.items():
                ctx.set(getattr(dut, k), v)
            assert ctx.get(dut.state) == state
            assert ctx.get(dut.step) == min(step, n)
            # the record of the current step (after the last step: the table read past its end, 0)
            want = layout.const(rom[step]).as_value().value if step < n else 0
            assert ctx.get(dut.record).as_value().value == want
            rec = plan.steps[min(step, n - 1)]
            assert ctx.get(dut.load) == (state == State.LOAD)
            assert ctx.get(dut.load_start) == (state == State.IDLE and i["start"])
            assert ctx.get(dut.step_start) == (state == State.STEP)
            assert ctx.get(dut.linear_start) == (state == State.STEP and rec.linear)
            assert ctx.get(dut.out) == (state in (State.OUT_READ, State.OUT_LATCH, State.OUT_SEND))
            assert ctx.get(dut.out_latch) == (state == State.OUT_LATCH)
            assert ctx.get(dut.out_send) == (state == State.OUT_SEND)
            assert ctx.get(dut.busy) == (state != State.IDLE)
            nxt, step = control_model(state, step, n, rec, i)
            if state == State.IDLE and i["start"]:
                started = cycle
            finished = state == State.OUT_SEND and nxt == State.IDLE
            state = nxt
            await ctx.tick()
            cycle += 1
            assert ctx.get(dut.done) == finished
            if finished:
                assert ctx.get(dut.cycles) == cycle - started
                inferences += 1

    run(dut, tb)


# ----------------------------------------------------------------------------------- issue sequencer

def issue_model(rec, P: int) -> list:
    """Per cycle after `start`: None (no issue) or (x word, x lane, w address, first, last, tag); a pair step's
    issue takes two columns of the X walk (its record's k_len counts issues)."""
    out = []
    for i in range(rec.rows):
        w_grp = rec.w_base
        x_row = rec.x_word + i * rec.x_words_per_row
        for g in range(rec.groups):
            tag = rec.lanes_in_last_group if g % rec.groups_per_chunk == rec.groups_per_chunk - 1 else P
            pos = (x_row, rec.x_lane, rec.x_within)
            for k in range(rec.k_len):
                out.append((pos[0], pos[1], w_grp + k * rec.w_k_stride, int(k == 0), int(k == rec.k_len - 1), tag))
                for _ in range(2 if rec.pair else 1):
                    pos = walk_model(*pos, rec.x_chunk, P)
            out += [None] * rec.issue_gap
            w_grp += rec.w_group_stride
    while out and out[-1] is None:
        out.pop()
    return out


@pytest.mark.parametrize("lanes", [1, 2, 3, 4])
def test_issue_sequencer_issues_each_k_and_group_in_order(lanes):
    """Each linear step of a program: the issued (x, w) addresses, first/last and tags, and the MAC-side
    copies `LATENCY` cycles later (x: the element read back, or 1 for the ones operand; with pair steps, at
    even P for these 4-bit codes, x1 the second element and the pair flag)."""
    plan = make_plan(small_program(pooling="flatten", heads=2, d=4), lanes)
    assert (plan.pairs is not None) == (lanes % 2 == 0)
    dut = IssueSequencer(plan)
    layout = plan.step_layout()
    rng = np.random.default_rng(lanes)
    L = IssueSequencer.LATENCY

    async def tb(ctx):
        for rec, word in zip(plan.steps, plan.step_rom()):
            if not rec.linear:
                continue
            ctx.set(dut.step, layout.const(word))
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            expect = issue_model(rec, lanes)
            elems, elems1 = [], []
            for cycle in range(len(expect) + L + 2):
                elem = int(rng.integers(-8, 8))
                ctx.set(dut.x_elem, elem)
                elems.append(elem)
                if plan.pairs:
                    elems1.append(int(rng.integers(-8, 8)))
                    ctx.set(dut.x_elem1, elems1[-1])
                ex = expect[cycle] if cycle < len(expect) else None
                if ex is not None:
                    assert ctx.get(dut.busy) == 1
                    assert (ctx.get(dut.x_addr), ctx.get(dut.w_addr)) == (ex[0], ex[2]), (cycle, ex)
                if cycle >= 1 and cycle - 1 < len(expect) and expect[cycle - 1] is not None:
                    assert ctx.get(dut.x_lane) == expect[cycle - 1][1]
                back = expect[cycle - L] if 0 <= cycle - L < len(expect) else None
                assert ctx.get(dut.valid) == (back is not None)
                if back is not None:
                    assert (ctx.get(dut.first), ctx.get(dut.last), ctx.get(dut.tag)) == back[3:]
                    assert ctx.get(dut.x) == (1 if rec.x_ones else elems[cycle - 1])
                    if plan.pairs:
                        assert ctx.get(dut.pair) == rec.pair
                        if rec.pair:
                            assert ctx.get(dut.x1) == elems1[cycle - 1]
                await ctx.tick()
            assert ctx.get(dut.busy) == 0

    run(dut, tb)


# -------------------------------------------------------------------------------------------- drain

def linear_of(plan):
    """(record, program step) of each macro step with a linear part."""
    steps = {s.name: s for s in plan.program.steps}
    return [(rec, steps[names[0]]) for rec, names in zip(plan.steps, plan.step_names) if rec.linear]


def drain_model(s: LinearStep, program, acc: np.ndarray, src: np.ndarray | None) -> np.ndarray:
    """What the drain writes for linear step `s`: accumulators (rows, cols) -> values (rows, cols)."""
    v = acc.astype(np.int64)
    if s.bias:
        b = np.asarray(program.tensors[s.bias], dtype=np.int64)
        v = v + (b[:s.rows, :s.cols] if b.ndim == 2 and b.shape[0] > 1 else b.reshape(-1)[:s.cols])
    if s.requant:
        q = s.requant
        v = intops.requantize(v, q.m, q.s, q.lo, q.hi)
    if s.lut:
        v = intops.lut_apply(v, program.tensors[s.lut], s.requant.lo)
    if s.residual:
        r = s.residual
        v = intops.residual_add(src, v, r.m_src, r.m_new, r.s, r.lo, r.hi)
    if s.affine:
        a = s.affine
        v = intops.requantize_per_channel(v, np.broadcast_to(program.tensors[a.m], (s.cols,)),
                                          np.broadcast_to(program.tensors[a.b], (s.cols,)), a.s, a.lo, a.hi)
    return np.asarray(v, dtype=np.int64)


class SyncReads:
    """The drain's ROMs and its residual bank as synchronous memories: each answers, in the cycle after an
    address, the entry at that address; and the multiplier block the affine shares with the softmax
    (`plan.share_mul`: the product of the operands of a cycle ago)."""

    def __init__(self, dut, plan, codes):
        self.dut, self.plan, self.codes, self.prev, self.product = dut, plan, codes, None, 0
        am, ab = plan.aff_m_width, plan.aff_b_width
        self.affine = [((mm & ((1 << am) - 1)) | (bb << am)) & ((1 << (am + ab)) - 1) for mm, bb in plan.aff_rom]

    def answer(self, ctx, res_bank):
        dut = self.dut
        if self.prev is not None:
            bias, lut, aff, res = self.prev
            rom = self.plan.lut_rom
            ctx.set(dut.bias_data, self.plan.bias_rom[bias] if bias < len(self.plan.bias_rom) else 0)
            ctx.set(dut.lut_data, rom[lut] if lut < len(rom) else 0)
            ctx.set(dut.affine_data, self.affine[aff] if aff < len(self.affine) else 0)
            ctx.set(dut.res_elem, self.codes(res_bank, res, ctx.get(dut.res_lane)))
        self.prev = (ctx.get(dut.bias_addr), ctx.get(dut.lut_addr), ctx.get(dut.affine_addr), ctx.get(dut.res_addr))
        if self.plan.share_mul:
            ctx.set(dut.affine.mul.p, self.product)
            self.product = ctx.get(dut.affine.mul.a) * ctx.get(dut.affine.mul.b)


def group_sizes(rec, P: int) -> list[int]:
    """The output columns of each group of one output row, in the MAC array's order."""
    return [rec.lanes_in_last_group if g % rec.groups_per_chunk == rec.groups_per_chunk - 1 else P
            for g in range(rec.groups)]


def residual_sources(s: LinearStep, plan, code) -> np.ndarray | None:
    """The residual source element of each output (i, j), read from the bank model `code`."""
    if not s.residual:
        return None
    r, lay = s.residual, plan.layouts[s.residual.src]
    src = np.zeros((s.rows, s.cols), dtype=np.int64)
    for i in range(s.rows):
        for j in range(s.cols):
            row, col = (r.row, r.col) if getattr(r, "row", None) is not None else (i, s.out_col + j)
            word, lane = lay.word_lane(row, col)
            src[i, j] = code(lay.bank, lay.base + word, lane)
    return src


@pytest.mark.parametrize("lanes", [2, 3])
def test_drain_writes_the_linear_steps_values(lanes):
    """Each linear step of a program with bias, requantization, table, residual and affine: random
    accumulators shifted out group by group as the MAC array does, with random gaps; every write (address,
    lane, value) and its cycle (`Drain.LATENCY` after the element leaves the MAC array), `shift`, the rows
    done and `done`."""
    program = small_program()
    plan = make_plan(program, lanes)
    dut = Drain(plan, tag_width=(lanes + 1).bit_length())
    layout = plan.step_layout()
    rng = np.random.default_rng(lanes)
    bank_codes = {}                                     # (bank, addr, lane) -> the code stored there

    def code(bank, addr, lane):
        b = plan.banks[bank]
        lay = next(plan.layouts[n] for n in b.buffers if plan.layouts[n].base <= addr)
        lo, hi = intops.code_range(lay.bits, lay.signed)
        return bank_codes.setdefault((bank, addr, lane), int(rng.integers(lo, hi + 1)))

    steps = {st.name: st for st in program.steps}
    lim = min(40, 1 << (plan.acc_width - 2))

    async def tb(ctx):
        reads = SyncReads(dut, plan, code)
        for rec, word, names in zip(plan.steps, plan.step_rom(), plan.step_names):
            if not rec.linear:
                continue
            s = steps[names[0]]
            acc = rng.integers(-lim, lim, (s.rows, s.cols))
            expect = drain_model(s, program, acc, residual_sources(s, plan, code))
            ctx.set(dut.step, layout.const(word))
            ctx.set(dut.start, 1)
            reads.answer(ctx, rec.res_bank)             # the bias ROM is read at the start's address
            await ctx.tick()
            ctx.set(dut.start, 0)
            order = [(i, j) for i in range(s.rows) for j in range(s.cols)]
            groups = group_sizes(rec, lanes) * s.rows
            queue, feed, sent_at, writes, cycle = list(order), [], {}, [], 0
            while len(writes) < len(order):
                new_group = not feed and groups and rng.random() < 0.6
                if new_group:
                    feed = [queue.pop(0) for _ in range(groups.pop(0))]
                    ctx.set(dut.result_tag, len(feed))
                ctx.set(dut.result_valid, int(bool(new_group)))
                if feed:
                    i, j = feed.pop(0)
                    ctx.set(dut.result, int(acc[i, j]))
                    sent_at[(i, j)] = cycle
                    assert ctx.get(dut.shift) == 1
                else:
                    assert ctx.get(dut.shift) == 0
                reads.answer(ctx, rec.res_bank)
                if ctx.get(dut.wr_en):
                    writes.append((cycle, ctx.get(dut.wr_addr), ctx.get(dut.wr_lane), ctx.get(dut.wr_data)))
                await ctx.tick()
                cycle += 1
                assert len(writes) < len(order) or ctx.get(dut.done) == 1
            assert ctx.get(dut.done) == 1 and ctx.get(dut.error) == 0
            assert ctx.get(dut.rows_done) == s.rows
            out = plan.layouts[s.out]
            for (i, j), (at, addr, lane, value) in zip(order, writes):
                assert at == sent_at[(i, j)] + Drain.LATENCY
                wd, ln = out.word_lane(s.out_col + j, i) if s.out_transposed else out.word_lane(i, s.out_col + j)
                assert (addr, lane, value) == (out.base + wd, ln, expect[i, j]), (s.name, i, j)

    run(dut, tb)


# ------------------------------------------------------------------------------------- bank crossbar

@pytest.mark.parametrize("lanes", [1, 3])
def test_bank_crossbar_routes_each_role_to_its_bank(lanes):
    """For each linear step: the X, W and residual reads return, a cycle after their address, the lane
    the step's bank holds (extended as its buffer's codes are); the drain's write lands in its lane of the
    step's output bank, the other lanes kept; the output port reads its bank while it is active."""
    from amaranth.hdl import unsigned
    from amaranth.lib.memory import Memory
    plan = make_plan(small_program(pooling="flatten", heads=2, d=4), lanes)
    memories = {b.name: Memory(shape=unsigned(b.width), depth=b.depth, init=[]) for b in plan.banks}
    x = plan.layouts["x"]
    dut = BankCrossbar(plan, memories, signed(x.bits) if x.signed else unsigned(x.bits))
    layout = plan.step_layout()
    rng = np.random.default_rng(lanes)
    contents = {b.index: [int(rng.integers(0, 1 << b.width)) for _ in range(b.depth)] for b in plan.banks}

    def lane_value(bank, addr, lane, signed_read):
        b = plan.banks[bank]
        v = (contents[bank][addr] >> (lane * b.lane_bits)) & ((1 << b.lane_bits) - 1)
        return v - (1 << b.lane_bits) if signed_read and v >> (b.lane_bits - 1) else v

    def reads_signed(rec, bank):
        b = plan.banks[bank]
        return b.signed_read if b.signed_read is not None else rec.read_signed[bank]

    async def tb(ctx):
        for b in plan.banks:
            for a, w in enumerate(contents[b.index]):
                ctx.set(memories[b.name].data[a], w)
        for rec, word in zip(plan.steps, plan.step_rom()):
            if not rec.linear:
                continue
            ctx.set(dut.step, layout.const(word))
            for _ in range(4):
                ports = {}
                for role, name, field in ((R_X, "x", "x_bank"), (R_W, "w", "w_bank"), (R_RES, "res", "res_bank")):
                    bank = getattr(rec, field)
                    if rec.read_role[bank] != role or plan.banks[bank].wide:
                        continue
                    addr = int(rng.integers(0, plan.banks[bank].depth))
                    ctx.set(getattr(dut, f"{name}_addr"), addr)
                    ports[name] = (bank, addr)
                await ctx.tick()
                for name, (bank, addr) in ports.items():
                    if name == "w":
                        expect = [lane_value(bank, addr, l, reads_signed(rec, bank)) for l in range(lanes)]
                        assert [ctx.get(dut.w_word[l]) for l in range(lanes)] == expect
                        continue
                    lane = int(rng.integers(0, plan.banks[bank].lanes))
                    ctx.set(getattr(dut, f"{name}_lane"), lane)
                    expect = lane_value(bank, addr, lane, reads_signed(rec, bank))
                    assert ctx.get(getattr(dut, f"{name}_elem")) == expect
            # a drain write
            bank = rec.out_bank
            if rec.write_role[bank] == W_DRAIN:
                b = plan.banks[bank]
                addr, lane = int(rng.integers(0, b.depth)), int(rng.integers(0, b.lanes))
                value = int(rng.integers(-(1 << (b.lane_bits - 1)), 1 << (b.lane_bits - 1)))
                ctx.set(dut.drain.en, 1)
                ctx.set(dut.drain.addr, addr)
                ctx.set(dut.drain.lane, lane)
                ctx.set(dut.drain.data, value)
                await ctx.tick()
                ctx.set(dut.drain.en, 0)
                mask = ((1 << b.lane_bits) - 1) << (lane * b.lane_bits)
                contents[bank][addr] = (contents[bank][addr] & ~mask) | ((value << (lane * b.lane_bits)) & mask)
                assert ctx.get(memories[b.name].data[addr]) == contents[bank][addr]
        # the output port
        ob = plan.output.bank
        ctx.set(dut.out_active, 1)
        addr = plan.banks[ob].depth - 1
        ctx.set(dut.out_addr, addr)
        await ctx.tick()
        assert ctx.get(dut.out_data) == contents[ob][addr]

    run(dut, tb)
