"""What every formal harness is built from: the harness top, a block elaborated in place, the stream rules.

A harness is an Amaranth `Module` (`harness()`: a reset-less `sync` domain, so every run starts from the
registers' initial values) that holds one block exactly as the design builds it, drives its inputs with
`AnySeq` / `AnyConst` values (public in `amaranth.asserts`) constrained by `Assume`, and states with
`Assert` what must hold on every cycle. A property about a register inside a block reads the block's own
attribute (each block creates the signals a proof observes in its `__init__`, e.g. `uart_tx.timer`, and an
FSM's state as `block.state`, of its `State` enum: `in_states`), so that renaming one fails when the
harness is built, and the harness adds its assertions to the block's elaborated module (`elaborated`), so
the hardware under proof is the hardware that is built, unchanged.

Blocks are elaborated, and harnesses converted (`accel.sby.run_proof`), for `FORMAL_PLATFORM`: Amaranth's
own library blocks then add their invariants (a `SyncFIFO` asserts that its pointers and level agree),
which a k-induction over a design holding them needs.
"""
from __future__ import annotations

from amaranth.hdl import Assert, ClockDomain, Module, Signal

FORMAL_PLATFORM = "formal"      # the platform Amaranth's library recognises (amaranth.lib.fifo)


def harness() -> Module:
    """A harness top with a reset-less `sync` domain: every run starts from the registers' initial values."""
    m = Module()
    m.domains.sync = cd = ClockDomain("sync", reset_less=True)
    m.formal_clock = cd.clk                     # the one port of the harness (else it is tied off)
    return m


def elaborated(block, platform=FORMAL_PLATFORM) -> Module:
    """Elaborate `block` and return its module: a harness adds its assertions about the block's registers
    (its attributes) to this very module, so the hardware is not changed."""
    m = block.elaborate(platform)
    block._MustUse__silence = True              # elaborated here, not through the hierarchy
    return m


def stream_rules(m: Module, stream, name: str) -> None:
    """The `lib.stream` rules for a producer: once valid is offered and not taken, the next cycle it is still
    offered with the same payload (ready is free: the harness drives it with AnySeq)."""
    held, payload = Signal(name=f"{name}_held"), Signal.like(stream.payload, name=f"{name}_prev")
    m.d.sync += [held.eq(stream.valid & ~stream.ready), payload.eq(stream.payload)]
    with m.If(held):
        m.d.comb += [Assert(stream.valid), Assert(stream.payload == payload)]


def in_range(value, lo: int, hi: int):
    """lo <= value <= hi, as one condition."""
    return (value >= lo) & (value <= hi)


def sum_or(terms):
    """The OR of a non-empty list of conditions."""
    out = terms[0]
    for t in terms[1:]:
        out = out | t
    return out


def in_states(state, *states):
    """`state` (a block's `state` signal, of its `State` enum) is one of `states`."""
    return sum_or([state == s for s in states])
