"""`Block`: a component whose parent builds its logic into the parent's own module.

The accelerator's blocks (input loader, issue sequencer, drain, bank crossbar, output port, top control)
are components of their own, each with its ports, its docstring and its tests, which elaborate it alone.
The accelerator does not add them as submodules, though: it calls `build(m)` on its own module, so the
design that synthesis sees has the hierarchy it had when the accelerator was one function (the top, and
the arithmetic units beneath it). Synthesis flows that keep the hierarchy (yosys `synth_xilinx`) optimize
only within a module: behind a module boundary a block's unused outputs would keep their logic, and
multiplier registers would not move into the DSP blocks as they did, changing the resource counts.
"""
from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring


class Block(wiring.Component):
    """A `wiring.Component` whose logic `build(m)` adds to a module: its own (`elaborate`, alone, as in its
    tests) or its parent's (the parent drives the block's ports as signals of its own module)."""

    def build(self, m: Module) -> None:
        """Add the block's logic to `m` (a subclass defines `_build`)."""
        self._MustUse__used = True          # built, not elaborated: Amaranth would warn it was never used
        self._build(m)

    def _build(self, m: Module) -> None:
        raise NotImplementedError

    def elaborate(self, platform):
        m = Module()
        self.build(m)
        return m


def show_fsm_state(m: Module, fsm, state: Signal, states) -> None:
    """Drive the enum-typed `state` from the FSM `fsm` (`with m.FSM() as fsm`), for proofs: nothing in the
    logic reads it. When the enum lists the states in the FSM's order, which is its encoding, `state` is the
    FSM's state register itself, a wire that costs nothing; otherwise (a design that names its states in
    another order) a decoder of `fsm.ongoing` per state, which synthesis removes as unused, though it can
    change what ABC makes of the rest by a few LUTs."""
    if fsm.encoding == {s.name: s.value for s in states}:
        m.d.comb += state.eq(fsm.state)
        return
    for s in states:
        with m.If(fsm.ongoing(s.name)):
            m.d.comb += state.eq(s)
