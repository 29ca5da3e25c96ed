"""Run the accelerator in Amaranth's simulator on input windows, and name the first place it parts from the
integer reference.

`simulate` drives the `input` stream, collects the `output` words and reads the cycle counter, one window
after another on one accelerator instance, and returns all it saw as a `Simulation`: the words, the cycles
and (with `read_buffers`) every buffer memory as the window left it. `first_mismatch` takes that result and
names the first step whose written values differ from `model.intref`, re-simulating the window where the
result holds no buffers (the compiled engine, or `read_buffers=False`). Nothing is kept between calls.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from amaranth.sim import Simulator

from intformer.model.intref import run_program
from intformer.model.program import FINAL_STEPS, IntProgram, LinearStep

from . import sim_checks as checks
from .accelerator import Accelerator

# the checks' public names, as callers import them from here
SimulationError, cycle_bound, cycle_limit = checks.SimulationError, checks.cycle_bound, checks.cycle_limit

ENGINES = ("amaranth", "cxxrtl")


@dataclass
class Simulation:
    """What one `simulate` call observed. It unpacks as `words, cycles = simulate(...)`, the pair that
    callers read; `first_mismatch` takes the whole of it."""
    words: np.ndarray          # (B, H) int64: the output words, window by window
    cycles: int                # cycles per inference of the last window
    lanes: int                 # the accelerator simulated: P MAC lanes, `logic_lanes` of them in logic
    logic_lanes: int = 0
    engine: str = "amaranth"
    # per window, buffer name -> (rows, cols) int64 values as the accelerator left them in its memories
    # (`plan.layouts`); empty where nothing was read back (`read_buffers=False`, or the cxxrtl engine)
    buffers: list[dict[str, np.ndarray]] = field(default_factory=list)

    def __iter__(self):
        return iter((self.words, self.cycles))


def simulate(program: IntProgram, x_codes: np.ndarray, lanes: int, max_cycles: int | None = None,
             read_buffers: bool = True, profile: dict | None = None, engine: str = "amaranth",
             logic_lanes: int = 0, design=None) -> Simulation:
    """Run windows of input codes (B, rows, cols) through the accelerator with P = `lanes`.

    Returns a `Simulation` (words (B, H) int64, cycles per inference of the last window; it unpacks as that
    pair). With `read_buffers` the buffer memories are read back after each window (for `first_mismatch`).
    A `profile` dict receives, for the last window, the cycles spent in each step of the step table ("load"
    and "output" for the ports; fused steps are named "a + b"). engine "cxxrtl" runs the same design
    compiled (`accel.cxxsim`), over a thousand times faster, without buffer read-back or profile.
    `logic_lanes`: as in `Accelerator`. `design`: a class to build in place of `Accelerator` (same
    arguments; the fault catalogue's broken variants).

    Both engines count the output words of each window, from `start` until `sim_checks.TAIL_CYCLES` after
    `done`, and raise `SimulationError` on too few or too many, on a window that takes more than
    `sim_checks.cycle_limit` cycles, and on any cycle with the drain-overrun `error` flag high.
    """
    if engine == "cxxrtl":
        from .cxxsim import simulate_cxxrtl
        words, cycles = simulate_cxxrtl(program, x_codes, lanes, logic_lanes, design=design)
        return Simulation(words, cycles, lanes, logic_lanes, engine)
    if engine != "amaranth":
        raise ValueError(f"unknown simulation engine {engine!r}: amaranth or cxxrtl")
    return _simulate_amaranth(program, np.asarray(x_codes, dtype=np.int64), lanes, logic_lanes, max_cycles,
                              read_buffers, profile, design)


def _simulate_amaranth(program: IntProgram, x_codes: np.ndarray, lanes: int, logic_lanes: int,
                       max_cycles: int | None, read_buffers: bool, profile: dict | None,
                       design=None) -> Simulation:
    dut = (design or Accelerator)(program, lanes, logic_lanes)
    plan = dut.plan
    batch = x_codes.shape[0]
    horizon = plan.output.cols
    words = np.full((batch, horizon), checks.MISSING_WORD, dtype=np.int64)
    cycles = []
    buffers = []
    spent = {}
    errors = []                             # (window, cycle in it) of every edge that saw `error` high
    now = {"window": 0, "cycle": 0}
    limit = max_cycles or checks.cycle_limit(program, lanes)

    async def edge(ctx, *signals):
        """One clock edge and the signals' values as it sees them; fails past the window's cycle limit."""
        now["cycle"] += 1
        if now["cycle"] > limit:
            raise SimulationError(f"window {now['window']}: the accelerator made no progress within {limit} "
                                  f"cycles (the limit: {checks.LIMIT_MULTIPLE} x the estimate of "
                                  f"{checks.cycle_bound(program, lanes)} + {checks.LIMIT_MARGIN}); it received "
                                  f"{i_seen[0]} of {n_in} codes and sent "
                                  f"{h_seen[0]} of {horizon} words")
        values = await ctx.tick().sample(*signals)
        return values[-len(signals):]

    n_in = int(np.prod(x_codes.shape[1:]))
    i_seen, h_seen = [0], [0]

    async def tb(ctx):
        ctx.set(dut.output.ready, 1)
        for b in range(batch):
            spent.clear()                    # the profile is of the last window
            now.update(window=b, cycle=0)
            i_seen[0] = h_seen[0] = 0
            ctx.set(dut.start, 1)
            await edge(ctx, dut.done)
            ctx.set(dut.start, 0)
            for code in x_codes[b].reshape(-1):
                ctx.set(dut.input.valid, 1)
                ctx.set(dut.input.payload, int(code))
                while not (await edge(ctx, dut.input.ready))[0]:
                    pass
                i_seen[0] += 1
            ctx.set(dut.input.valid, 0)
            while True:                      # every word until `done`, counted (a word may come with `done`)
                word, valid, done = await edge(ctx, dut.output.payload, dut.output.valid, dut.done)
                if valid:
                    if h_seen[0] < horizon:
                        words[b, h_seen[0]] = word
                    h_seen[0] += 1
                if done:
                    break
            cycles.append(ctx.get(dut.cycles))
            for _ in range(checks.TAIL_CYCLES):     # nothing more may come out of this window
                if (await edge(ctx, dut.output.valid))[0]:
                    h_seen[0] += 1
            checks.check_count(b, horizon, h_seen[0])
            if read_buffers:
                buffers.append(_read_buffers(ctx, dut))

    async def error_monitor(ctx):            # every edge, in the background: the sticky drain-overrun flag
        async for _, _, err in ctx.tick().sample(dut.error):
            if err:
                errors.append((now["window"], now["cycle"]))

    async def monitor(ctx):                  # cycles per step of the step table (background: never blocks)
        async for _, _, step, busy, loading in ctx.tick().sample(dut.step, dut.busy, dut.input.ready):
            if busy:
                key = "load" if loading else step
                spent[key] = spent.get(key, 0) + 1

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.add_testbench(error_monitor, background=True)
    if profile is not None:
        sim.add_testbench(monitor, background=True)
    sim.run()
    if errors:
        w, c = errors[0]
        raise SimulationError(f"window {w}: the accelerator raised its drain-overrun error flag at cycle {c} "
                              f"(a scheduling bug; {len(errors)} cycles with the flag high)")
    if profile is not None:
        names = [" + ".join(group) for group in plan.step_names] + ["output"]
        profile.clear()
        order = sorted(spent, key=lambda k: -1 if k == "load" else k)
        profile.update({(k if k == "load" else names[k]): spent[k] for k in order})
    return Simulation(words, int(cycles[-1]), lanes, logic_lanes, "amaranth", buffers)


def _read_buffers(ctx, dut: Accelerator) -> dict[str, np.ndarray]:
    """Every buffer of the plan, unpacked from the bank memories as they are now."""
    plan = dut.plan
    words_of = {b.index: [ctx.get(dut.memories[b.name].data[i]) for i in range(b.depth)] for b in plan.banks}
    return {name: lay.unpack(words_of[lay.bank]) for name, lay in plan.layouts.items()}


def _region(step, program: IntProgram):
    """(buffer, row slice, column slice) that a step writes."""
    if isinstance(step, LinearStep):
        if step.out_transposed:
            return step.out, slice(step.out_col, step.out_col + step.cols), slice(0, step.rows)
        return step.out, slice(0, step.rows), slice(step.out_col, step.out_col + step.cols)
    return step.out, slice(0, step.rows), slice(0, step.cols)


def compare(program: IntProgram, x_codes: np.ndarray, result: Simulation, expected: np.ndarray) -> dict:
    """The simulation's verdict, every output word against the reference's: {"mismatches": count}, and
    where there are any, "first_mismatch" (`first_mismatch`'s text)."""
    mismatches = int(np.sum(np.asarray(result.words) != np.asarray(expected)))
    verdict = {"mismatches": mismatches}
    if mismatches:
        verdict["first_mismatch"] = first_mismatch(program, x_codes, result, expected)
    return verdict


def first_mismatch(program: IntProgram, x_codes: np.ndarray, result: Simulation, expected: np.ndarray) -> str:
    """Describe the first output word of `result` that differs from `expected` and the first step whose
    written region differs from the reference's, in that window: from the buffers `result` holds, or, where
    it holds none for the window, from a new Amaranth simulation of it on the same accelerator (its lanes)."""
    words, expected = np.asarray(result.words), np.asarray(expected)
    diff = np.argwhere(words != expected)
    if diff.size == 0:
        return "no mismatch"
    b, h = (int(v) for v in diff[0])
    text = f"window {b}, output word {h}: accelerator {int(words[b, h])}, reference {int(expected[b, h])}"
    window = np.asarray(x_codes)[b:b + 1]
    if b < len(result.buffers):
        hw = result.buffers[b]
    else:
        hw = simulate(program, window, result.lanes, logic_lanes=result.logic_lanes).buffers[0]
    _, trace = run_program(program, window, trace=True)
    final = {}
    for _, buf, value in trace:
        final[buf] = value[0]
    for step in program.steps:
        if isinstance(step, FINAL_STEPS):       # the class, score and flag are the output port's, never in a buffer
            continue
        buf, rows, cols = _region(step, program)
        got, want = hw[buf][rows, cols], final[buf][rows, cols]
        bad = np.argwhere(got != want)
        if bad.size:
            r, c = (int(v) for v in bad[0])
            r += rows.start
            c += cols.start
            return (f"{text}; first differing step {step.name!r}: {buf}[{r}, {c}] accelerator "
                    f"{int(hw[buf][r, c])}, reference {int(final[buf][r, c])} ({len(bad)} elements differ)")
    return text + "; every buffer matches (the difference is in the output port)"
