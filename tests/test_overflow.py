"""The overflow audit (`accel.overflow`): which assignments it finds, under which condition, and that the
assertions it adds make a proof fail exactly when a value can wrap."""
from __future__ import annotations

from amaranth.asserts import AnySeq
from amaranth.hdl import Assume, Module, Signal, signed, unsigned

from intformer.accel import overflow, sby
from intformer.accel.formal_helpers import harness


def _module() -> Module:
    m = Module()
    m._MustUse__silence = True          # audited here, not elaborated
    return m


def _adder(out_width: int, gated: bool = False) -> tuple[Module, Signal, Signal, Signal]:
    m = _module()
    a, b = Signal(unsigned(8), name="a"), Signal(unsigned(8), name="b")
    y = Signal(unsigned(out_width), name="y")
    go = Signal(name="go")
    if gated:
        with m.If(go):
            m.d.sync += y.eq(a + b)
    else:
        m.d.comb += y.eq(a + b)
    return m, a, b, go


def test_narrowing_found_only_where_a_value_can_wrap():
    m, *_ = _adder(8)
    [n] = overflow.narrowings(m)
    assert (n.target, n.lo, n.hi, n.cond) == ("y", 0, 255, None)
    assert "test_overflow.py" in n.where
    m, *_ = _adder(9)                          # 9 bits hold every sum of two bytes
    assert overflow.narrowings(m) == []


def test_narrowing_keeps_its_condition_and_finds_explicit_cuts():
    m, *_ = _adder(8, gated=True)
    [n] = overflow.narrowings(m)
    assert n.domain == "sync" and n.cond is not None
    m2 = _module()
    x = Signal(signed(8), name="x")
    z = Signal(signed(12), name="z")
    m2.d.comb += z.eq((x * 3)[:8].as_signed())          # a cut of a product back to 8 bits
    found = overflow.narrowings(m2)
    assert len(found) == 1 and found[0].target.startswith("cut of") and (found[0].lo, found[0].hi) == (-128, 127)
    m3 = _module()
    m3.d.comb += z.eq(x[:4])                             # a plain bit-field slice is not audited
    assert overflow.narrowings(m3) == []


def _audited(limit: int | None):
    def build():
        top = harness()
        dut, a, b, go = _adder(8, gated=True)
        top.submodules.dut = dut
        top.d.comb += [a.eq(AnySeq(8)), b.eq(AnySeq(8)), go.eq(AnySeq(1))]
        if limit is not None:
            top.d.comb += [Assume(a < limit), Assume(b < limit)]
        overflow.assert_no_overflow(dut)
        return top
    return build


def test_audit_proof_fails_when_the_sum_can_wrap_and_passes_when_it_cannot(tmp_path):
    bad = sby.run_proof(sby.Proof("wraps", _audited(None), "prove", 2), tmp_path, timeout=120)
    assert bad.status == "fail", bad
    assert "test_overflow.py" in bad.message            # the failure names the assignment, not the audit
    good = sby.run_proof(sby.Proof("fits", _audited(128), "prove", 2), tmp_path, timeout=120)
    assert good.status == "pass", good
