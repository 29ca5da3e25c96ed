"""The accelerator's top state machine and its step table (the ROM of `accel.steps` records)."""
from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import enum
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .block import Block
from .plan import Plan
from .steps import StepFields


class State(enum.Enum, shape=3):
    """The top state machine's states, in its order (an `amaranth.lib.enum`: a signal of it compares with
    the members and reads back as one in simulation)."""
    IDLE = 0            # waiting for `start`
    LOAD = 1            # the input loader takes the x buffer
    STEP = 2            # one cycle: start the current macro step's units
    WAIT = 3            # until each unit the step uses is done
    OUT_READ = 4        # the output port reads a word ...
    OUT_LATCH = 5       # ... registers it ...
    OUT_SEND = 6        # ... and offers it on `output`


class TopControl(Block):
    """The top state machine: load, then each macro step of the step table in turn, then the output.

    IDLE -> (start) LOAD -> (the loader's `load_last`) STEP -> WAIT -> (each unit the step uses done:
    `lin_done`, `sm_done`, `ln_done`) STEP of the next step, or after the last step OUT_READ -> OUT_LATCH ->
    OUT_SEND -> (`out_ready`: a word taken) OUT_READ, or after the last word (`out_last`) IDLE with a
    one-cycle `done`. `busy` is high from the cycle after `start` until `done`; `cycles` counts the cycles
    from `start` to `done` (it holds the last inference's count while idle).

    The step table: a ROM of one word per macro step (`plan.step_layout()`), and `record`, the current step's
    word in a register (the table read at the step's next value, so that the fields reach the datapath
    straight from flip-flops, not through the table's decoding: Fmax). `step` is the current step's index.

    Strobes to the blocks (combinational, from the state): `load` (LOAD), `load_start` (IDLE and `start`:
    rewind the loader), `step_start` (STEP), `linear_start` (STEP of a step with a linear part), `out`
    (the three OUT states: the output port owns its bank's read address), `out_start` (WAIT, the last step
    done: rewind the output port), `out_latch`, `out_send`. Latency: 1 cycle from `start` to LOAD, 1 from a
    step's last unit done to the next STEP.
    """
    State = State

    def __init__(self, plan: Plan):
        self.plan = plan
        self.n_steps = n = len(plan.steps)
        self.layout = plan.step_layout()
        super().__init__({
            "start": In(1), "busy": Out(1), "done": Out(1), "cycles": Out(32),
            "step": Out(range(n + 1)), "record": Out(self.layout, init=plan.step_rom()[0]),
            "load_last": In(1), "lin_done": In(1), "sm_done": In(1), "ln_done": In(1),
            "out_ready": In(1), "out_last": In(1),
            "load": Out(1), "load_start": Out(1), "step_start": Out(1), "linear_start": Out(1),
            "out": Out(1), "out_start": Out(1), "out_latch": Out(1), "out_send": Out(1),
        })
        self.state = Signal(State)                   # the FSM's state, for proofs (not used by the design)

    def _build(self, m: Module) -> None:
        plan = self.plan
        m.submodules.steps = table = Memory(shape=self.layout, depth=self.n_steps, init=plan.step_rom(),
                                            attrs={"ram_style": "logic"})
        step_next = Signal.like(self.step)               # what `step` holds next cycle (the FSM sets it)
        read = table.read_port(domain="comb")
        m.d.comb += [step_next.eq(self.step), read.addr.eq(step_next)]
        m.d.sync += [self.step.eq(step_next), self.record.eq(read.data)]
        f = StepFields(self.record)

        m.d.sync += self.done.eq(0)
        with m.If(self.start & ~self.busy):
            m.d.sync += self.cycles.eq(1)
        with m.Elif(self.busy):
            m.d.sync += self.cycles.eq(self.cycles + 1)
        with m.FSM(name="top") as fsm:
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += self.busy.eq(1)
                    m.d.comb += [self.load_start.eq(1), step_next.eq(0)]
                    m.next = "LOAD"
            with m.State("LOAD"):
                m.d.comb += self.load.eq(1)
                with m.If(self.load_last):
                    m.next = "STEP"
            with m.State("STEP"):
                m.d.comb += [self.step_start.eq(1), self.linear_start.eq(f.linear)]
                m.next = "WAIT"
            with m.State("WAIT"):
                ok = (~f.linear | self.lin_done) & (~f.softmax | self.sm_done) & (~f.layernorm | self.ln_done)
                with m.If(ok):
                    m.d.comb += step_next.eq(self.step + 1)
                    with m.If(self.step == self.n_steps - 1):
                        m.d.comb += self.out_start.eq(1)
                        m.next = "OUT_READ"
                    with m.Else():
                        m.next = "STEP"
            with m.State("OUT_READ"):
                m.d.comb += self.out.eq(1)
                m.next = "OUT_LATCH"
            with m.State("OUT_LATCH"):
                m.d.comb += [self.out.eq(1), self.out_latch.eq(1)]
                m.next = "OUT_SEND"
            with m.State("OUT_SEND"):
                m.d.comb += [self.out.eq(1), self.out_send.eq(1)]
                with m.If(self.out_ready):
                    with m.If(self.out_last):
                        m.d.sync += [self.busy.eq(0), self.done.eq(1)]
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "OUT_READ"
        # a decoder per state rather than `accel.block.show_fsm_state`'s wire: unused by the design either way,
        # but with the wire ABC maps the default model one LUT larger on the UP5K than before the split
        for s in State:
            with m.If(fsm.ongoing(s.name)):
                m.d.comb += self.state.eq(s)
