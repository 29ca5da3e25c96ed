"""Formal proof of the anomaly scorer: its score is the sum of the magnitudes of the errors taken, on top of
what the last window's score carries (s - floor(s / 2^decay), 0 after reset or `clear`), and its flag is
exactly score > threshold.

The harness holds an `AnomalyScorer` exactly as the output port builds it (C channels, the output buffer's
bits, the program's threshold), drives `start`, `valid` and `error` with any values (`AnySeq`), the errors
within the range the head's clamp gives them (`lo`..`hi`: the program's check sizes the score's width from
it), and keeps its own record: the count of errors taken and their sum of magnitudes, one bit wider than the
score, and whether the next window starts a stream. Asserted on every cycle: the scorer's count equals the
record's, its score equals the recorded sum (so it never wraps: the record is wider), the sum lies in
[0, B - (C - count) x the largest magnitude] (B = `intops.score_bound`, the bound the program's check sizes
the score for), and once an error is taken its flag is (sum > threshold), strictly: the reference's rule
(`model.intops.anomaly_flag`, `score_ewma`). After the C-th error these are the words C and C+1 the output
port sends.
The overflow audit (`accel.overflow`) adds that the count, the magnitude and the sum never wrap where they
are stored.

`anomaly_proofs(program)` lists the proof for a detector program's configuration (none for another);
`anomaly_proof(channels, bits, threshold, error_range, decay, fault)` for any size (`AnomalyScorer.FAULTS`:
"ge", flags a score equal to the threshold; "signed_sum", adds the error instead of its magnitude;
"no_decay", carries the whole last score; each must fail from reset).
"""
from __future__ import annotations

from amaranth.asserts import AnySeq
from amaranth.hdl import Assert, Assume, Module, Mux, Signal, signed

from intformer.model import intops
from intformer.model.program import IntProgram

from .anomaly import AnomalyScorer
from .formal_helpers import elaborated, harness, in_range
from .sby import Proof


def anomaly_harness(channels: int, bits: int, threshold: int, error_range: tuple[int, int], decay: int = 0,
                    fault: str | None = None) -> Module:
    """The scorer under any `start`/`valid`/`error`/`clear` sequence; see the module docstring. Its errors
    are as wide as the output port makes them: the error range's own width."""
    m = harness()
    eb = intops.bits_signed(*error_range)
    sc = AnomalyScorer(channels, bits, threshold, decay, fault=fault, error_bits=eb)
    m.submodules.scorer = dut = elaborated(sc)
    err = Signal(signed(sc.error_bits))
    m.d.comb += [sc.start.eq(AnySeq(1)), sc.valid.eq(AnySeq(1)), sc.clear.eq(AnySeq(1)),
                 err.eq(AnySeq(sc.error_bits)),
                 Assume(in_range(err, *error_range)), sc.error.eq(err)]
    n = Signal(range(channels + 1))
    total = Signal(signed(bits + 1))
    fresh = Signal(init=1)
    carried = total - (total >> decay) if decay else 0
    with m.If(sc.start):
        m.d.sync += [n.eq(0), total.eq(Mux(fresh, 0, carried)), fresh.eq(0)]
    with m.Elif(sc.valid & (n < channels)):
        m.d.sync += [n.eq(n + 1), total.eq(total + Mux(err < 0, -err, err))]
    with m.If(sc.clear):
        m.d.sync += fresh.eq(1)
    biggest = max(-error_range[0], error_range[1])
    bound = intops.score_bound(channels * biggest, decay)
    # what the induction needs: the score is at most the bound less the errors still to come (so a state
    # where a next error would wrap the score is unreachable, not only unreached); the carried part of a
    # score at the bound is bound - C x biggest (`intops.score_bound`)
    m.d.comb += [Assert(sc.count == n), Assert(sc.score == total), Assert(sc.fresh == fresh),
                 Assert(sc.flag == ((n > 0) & (total > threshold))),
                 Assert(total >= 0), Assert(total <= bound - (channels - n) * biggest)]
    from .overflow import assert_no_overflow
    assert_no_overflow(dut)             # the count, the magnitude and the sum, narrowed where they are stored
    return m


def anomaly_proof(channels: int, bits: int, threshold: int, error_range: tuple[int, int], decay: int = 0,
                  fault: str | None = None) -> Proof:
    """The unbounded proof (k-induction) of `anomaly_harness`; depth 2C + 4 lets a faulty design's base case
    reach every channel of a second window (where a wrong carry shows)."""
    name = f"anomaly_c{channels}_b{bits}" + (f"_d{decay}" if decay else "") + (f"_{fault}" if fault else "")
    return Proof(name, lambda: anomaly_harness(channels, bits, threshold, error_range, decay, fault), "prove",
                 2 * channels + 4)


def anomaly_proofs(program: IntProgram) -> list[Proof]:
    """The scorer's proof at a detector program's channels, output bits, threshold, error range and score
    decay (none for another program)."""
    from intformer.model.program import _error_range
    from .plan import _detect
    detect = _detect(program)
    if not detect:
        return []
    out = program.buffers[program.output]
    return [anomaly_proof(detect[0], out.bits, detect[1], _error_range(program, program.steps[-1], out),
                          detect[2])]
