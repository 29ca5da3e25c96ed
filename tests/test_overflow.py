"""The overflow audit (`accel.overflow`): which assignments it finds, under which condition, and that the
assertions it adds make a proof fail exactly when a value can wrap."""
from __future__ import annotations

import pytest
from amaranth.asserts import AnySeq
from amaranth.hdl import Array, Assume, Cat, ClockDomain, ClockSignal, Module, Signal, signed, unsigned

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


# ------------------------------------------------------------------ every kind of assignment target

def _two_bytes():
    return Signal(unsigned(8), name="a"), Signal(unsigned(8), name="b")


def test_slice_and_part_targets_are_audited():
    """A sum of two bytes stored into an 8-bit field of a wider register wraps like an 8-bit register: the
    audit reports it (it used to skip every target that is not a plain signal); a 9-bit field holds it."""
    m = _module()
    a, b = _two_bytes()
    reg = Signal(unsigned(16), name="reg")
    m.d.comb += reg[:8].eq(a + b)
    [n] = overflow.narrowings(m)
    assert (n.target, n.lo, n.hi) == ("reg[0:8]", 0, 255)
    m = _module()
    m.d.comb += reg[4:13].eq(a + b)
    assert overflow.narrowings(m) == []
    m = _module()
    sel = Signal(range(2), name="sel")
    m.d.comb += reg.word_select(sel, 8).eq(a + b)
    [n] = overflow.narrowings(m)
    assert n.target == "reg[part 8]" and (n.lo, n.hi) == (0, 255)


def test_signed_value_into_a_field_keeps_its_own_sign():
    """A field (slice) holds a signed value's two's complement: x - y of two signed bytes needs 9 signed bits,
    so a 9-bit field of a struct (e.g. a signed element of `mac.result`) holds it and an 8-bit one does not."""
    from amaranth.lib import data
    x, y = Signal(signed(8), name="x"), Signal(signed(8), name="y")
    m = _module()
    res = Signal(data.ArrayLayout(signed(9), 2), name="res")
    m.d.comb += res[1].eq(x - y)
    assert overflow.narrowings(m) == []
    m = _module()
    res8 = Signal(data.ArrayLayout(signed(8), 2), name="res8")
    m.d.comb += res8[1].eq(x - y)
    [n] = overflow.narrowings(m)
    assert n.target == "res8[8:16]" and (n.lo, n.hi) == (-128, 127)


def test_concatenation_target_is_audited_as_a_whole():
    """Cat(low, carry) of 8 + 1 bits holds every sum of two bytes; Cat of 4 + 3 bits does not."""
    a, b = _two_bytes()
    lo8, carry = Signal(unsigned(8), name="lo8"), Signal(name="carry")
    m = _module()
    m.d.comb += Cat(lo8, carry).eq(a + b)
    assert overflow.narrowings(m) == []
    lo4, hi3 = Signal(unsigned(4), name="lo4"), Signal(unsigned(3), name="hi3")
    m = _module()
    m.d.comb += Cat(lo4, hi3).eq(a + b)
    [n] = overflow.narrowings(m)
    assert n.target == "Cat(lo4, hi3)" and (n.lo, n.hi) == (0, 127)


def test_array_element_target_is_audited_per_element_with_its_index():
    """arr[i].eq(a + b): each element is a target of its own, under the condition that the index selects it;
    only the 8-bit element can wrap."""
    a, b = _two_bytes()
    i = Signal(range(2), name="i")
    arr = Array([Signal(unsigned(9), name="wide"), Signal(unsigned(8), name="narrow")])
    m = _module()
    m.d.comb += arr[i].eq(a + b)
    [n] = overflow.narrowings(m)
    assert n.target == "narrow" and n.cond is not None


def test_memory_write_port_data_is_audited():
    """A memory write port's data is a signal of the memory's shape: a sum stored there is audited."""
    from amaranth.lib.memory import Memory
    a, b = _two_bytes()
    m = _module()
    m.submodules.mem = mem = Memory(shape=unsigned(8), depth=4, init=[])
    mem._MustUse__silence = True        # audited here, not elaborated
    wr = mem.write_port()
    m.d.comb += [wr.data.eq(a + b), wr.en.eq(1)]
    [n] = overflow.narrowings(m)
    assert (n.lo, n.hi) == (0, 255)


def test_a_target_it_cannot_reason_about_is_named_not_skipped():
    a, b = _two_bytes()
    m = _module()
    m.domains.other = ClockDomain("other")
    m.d.comb += ClockSignal("other").eq(a + b)
    with pytest.raises(overflow.AuditError, match="ClockSignal"):
        overflow.narrowings(m)


def _cat_audited(width_hi: int):
    def build():
        top = harness()
        dut = _module()
        a, b = _two_bytes()
        lo4, hi = Signal(unsigned(4), name="lo4"), Signal(unsigned(width_hi), name="hi")
        dut.d.sync += Cat(lo4, hi).eq(a + b)
        top.submodules.dut = dut
        top.d.comb += [a.eq(AnySeq(8)), b.eq(AnySeq(8))]
        overflow.assert_no_overflow(dut)
        return top
    return build


def test_audit_proof_fails_on_a_concatenation_that_wraps(tmp_path):
    """The assertion the audit adds for a Cat target fails from reset when the parts are a bit too narrow."""
    bad = sby.run_proof(sby.Proof("cat_wraps", _cat_audited(4), "prove", 2), tmp_path, timeout=120)
    assert bad.status == "fail" and bad.from_reset, bad
    assert "test_overflow.py" in bad.message
    good = sby.run_proof(sby.Proof("cat_fits", _cat_audited(5), "prove", 2), tmp_path, timeout=120)
    assert good.status == "pass", good
