"""Formal proof of the argmax tracker: its class is the first maximum of any sequence of scores.

The harness holds an `ArgmaxTracker` exactly as the output port builds it (C classes, the output buffer's
bits), drives `start`, `valid` and `score` with any values (`AnySeq`), and keeps its own record of the
scores the tracker takes (`shadow`, one register per class, and their count). Asserted on every cycle,
after at least one score: `cls` < the count, no score taken is larger than score `cls`, and every score
before `cls` is strictly smaller (so `cls` is the FIRST maximum: the reference's tie rule,
`model.intops.argmax_first`); and the tracker's `count` and `best` agree with the record (what makes the
k-induction go through). After the C-th score, `cls` is the class the output port sends as word C. The
overflow audit (`accel.overflow`) adds that the count and the class index never wrap where they are
stored.

`argmax_proofs(program)` lists the proof for a classifier program's configuration (none for another
program); `argmax_proof(classes, bits, fault)` for any size (`ArgmaxTracker.FAULTS`: "ties_last", `>=`
instead of `>`, must fail from reset: two equal scores give class 1).
"""
from __future__ import annotations

from amaranth.asserts import AnySeq
from amaranth.hdl import Array, Assert, Module, Signal, signed

from intformer.model.program import IntProgram

from .argmax import ArgmaxTracker
from .formal_helpers import elaborated, harness
from .sby import Proof


def argmax_harness(classes: int, bits: int, fault: str | None = None) -> Module:
    """The tracker under any `start`/`valid`/`score` sequence; see the module docstring."""
    m = harness()
    trk = ArgmaxTracker(classes, bits, fault=fault)
    m.submodules.argmax = dut = elaborated(trk)
    m.d.comb += [trk.start.eq(AnySeq(1)), trk.valid.eq(AnySeq(1)), trk.score.eq(AnySeq(bits))]
    shadow = Array(Signal(signed(bits), name=f"shadow{i}") for i in range(classes))
    n = Signal(range(classes + 1))
    with m.If(trk.start):
        m.d.sync += n.eq(0)
    with m.Elif(trk.valid & (n < classes)):
        m.d.sync += [shadow[n].eq(trk.score), n.eq(n + 1)]
    best = shadow[trk.cls]
    m.d.comb += Assert(trk.count == n)
    with m.If(n > 0):
        m.d.comb += [Assert(trk.cls < n), Assert(trk.best == best)]
        for i in range(classes):
            with m.If(i < n):
                m.d.comb += Assert(shadow[i] <= best)
                with m.If(i < trk.cls):
                    m.d.comb += Assert(shadow[i] < best)
    from .overflow import assert_no_overflow
    assert_no_overflow(dut)             # the count and the class index, narrowed where they are stored
    return m


def argmax_proof(classes: int, bits: int, fault: str | None = None) -> Proof:
    """The unbounded proof (k-induction) of `argmax_harness`; depth C + 2 lets a faulty design's base case
    reach every class (two equal scores need 3 cycles from reset)."""
    name = f"argmax_c{classes}_b{bits}" + (f"_{fault}" if fault else "")
    return Proof(name, lambda: argmax_harness(classes, bits, fault), "prove", classes + 2)


def argmax_proofs(program: IntProgram) -> list[Proof]:
    """The argmax proof at a classifier program's class count and output bits (none for a forecaster)."""
    from .plan import _classes
    classes = _classes(program)
    if not classes:
        return []
    return [argmax_proof(classes, program.buffers[program.output].bits)]
