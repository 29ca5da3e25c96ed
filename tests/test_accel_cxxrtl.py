"""accel.cxxsim: the compiled (CXXRTL) simulation computes the same words in the same cycles as Amaranth's."""
import dataclasses

import numpy as np
import pytest
from amaranth.hdl import Mux, Signal, Value
from program_factory import random_inputs, random_program

from intformer.accel import cxxsim
from intformer.accel.accelerator import Accelerator
from intformer.accel.plan import make_plan
from intformer.accel.simulate import first_mismatch, simulate
from intformer.model.intref import run_program

pytestmark = pytest.mark.skipif(not cxxsim.available(), reason="g++ is not installed")


def test_compiled_equals_python_simulation_and_reference():
    rng = np.random.default_rng(11)
    program = random_program(rng, n=4, m=2, d=4, heads=2, ffn=6, horizon=2, bits=6, norm="layer",
                             activation="gelu", softmax="poly", pooling="mean", skip=True)
    x = random_inputs(rng, program, 3)
    result = simulate(program, x, 3, engine="cxxrtl")
    words, cycles = result
    np.testing.assert_array_equal(words, run_program(program, x))
    words_py, cycles_py = simulate(program, x[:1], 3)
    np.testing.assert_array_equal(words[:1], words_py)
    assert cycles == cycles_py
    # a mismatch found by the fast engine is explained by re-running that window in Amaranth
    wrong = words + (np.arange(words.size).reshape(words.shape) == 3)
    text = first_mismatch(program, x, dataclasses.replace(result, words=wrong), words)
    assert "window 1, output word 1" in text


def test_pair_steps_compiled_bit_exact():
    """The compiled engine on a 4-bit program with pair steps (P = 4, attention's among them): every word over
    8 windows."""
    rng = np.random.default_rng(21)
    program = random_program(rng, n=6, m=1, d=4, heads=1, ffn=8, horizon=2, bits=4, norm="batch")
    assert make_plan(program, 4).pairs.w_buffers == {"l0.kt", "l0.v"}
    x = random_inputs(rng, program, 8)
    words, _ = cxxsim.simulate_cxxrtl(program, x, 4)
    np.testing.assert_array_equal(words, run_program(program, x))


def test_workers_split_the_windows_in_order():
    """Windows shared among processes come back in window order, the same words and cycles as one process."""
    rng = np.random.default_rng(12)
    program = random_program(rng, n=4, m=1, d=4, heads=1, ffn=4, horizon=2, bits=8, norm="batch",
                             activation="relu", softmax="lut", pooling="mean")
    x = random_inputs(rng, program, 7)
    words, cycles = cxxsim.simulate_cxxrtl(program, x, 2, workers=1)
    np.testing.assert_array_equal(words, run_program(program, x))
    words3, cycles3 = cxxsim.simulate_cxxrtl(program, x, 2, workers=3)
    np.testing.assert_array_equal(words3, words)
    assert cycles3 == cycles
    # the fast path holds: one eval() per cycle settles the model, commits copy without comparing
    config = (cxxsim.build(program, 2).parent / "config.h").read_text()
    assert "#define SETTLES_IN_ONE_EVAL 1" in config and "fast_commit" in config


def test_memory_write_guard_only_where_a_zero_enable_is_a_zero_mask():
    lines = [
        ("\t\t\tmemory_p_a.update(tmp_1.index, p_d.curr, p_en.slice<1>().val().repeat<8>().concat(p_en.slice<0>()"
         ".val().repeat<8>()).val(), 0);"),
        "\t\t\tmemory_p_b.update(tmp_2.index, p_d.curr, p_v.curr.repeat<16>().val(), 0);",
        "\t\t\tmemory_p_c.update(tmp_3.index, p_d.curr, value<16>{0xffffu}, 0);",                  # always writes
        "\t\t\tmemory_p_d.update(tmp_4.index, p_d.curr, p_x.curr.concat(p_y.curr).val(), 0);",     # two signals
        "\t\t\tmemory_p_e.update(tmp_5.index, p_d.curr, not_u<8>(p_en.curr), 0);",                # not zero-preserving
    ]
    out = cxxsim._guard_memory_writes("\n".join(lines)).split("\n")
    assert out[0] == "\t\t\tif (!p_en.is_zero()) " + lines[0].strip()
    assert out[1] == "\t\t\tif (!p_v.curr.is_zero()) " + lines[1].strip()
    assert out[2:] == lines[2:]


class Misbehaving(Accelerator):
    """The real accelerator with one fault chosen at run time by the first input code of the window (one
    compiled binary for every driver check): 1 drops output word 1, 2 offers words after the last, 3 pulses
    the `error` flag for one cycle before the output, 4 never raises `done`; other codes: no fault."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        mode = Signal(3)
        with m.If(self.load_en & (self.load_count == 0)):
            m.d.sync += mode.eq(Value.cast(self.input.payload)[:3])
        valid, index = self.out_port.output.valid, self.out_index
        m.d.comb += [
            self.output.valid.eq(Mux(mode == 1, valid & (index != 1),
                                     Mux(mode == 2, valid | (index == self.plan.output.cols), valid))),
            self.error.eq(self.drain.error | ((mode == 3) & self.busy & (self.cycles == 8))),
            self.done.eq(self.control.done & (mode != 4)),
        ]
        return m


@pytest.mark.parametrize("engine", ["cxxrtl", "amaranth"])
def test_both_drivers_count_words_limit_cycles_and_watch_the_error_flag(engine):
    """Both engines, the same faulty design: too few and too many words, an error pulse outside the output
    phase, a design that never finishes: each fails with its message; without a fault the words are right."""
    from test_fault_catalogue import small_program

    from intformer.accel.simulate import SimulationError, cycle_limit
    program, x = small_program()
    lanes = 2

    def run(mode):
        window = x[:1].copy()
        window.reshape(-1)[0] = mode
        return simulate(program, window, lanes, read_buffers=False, engine=engine, design=Misbehaving), window

    result, window = run(0)
    np.testing.assert_array_equal(result.words, run_program(program, window))
    for mode, message in [(1, r"window 0: .* sent 1 output words, expected 2 \(too few\)"),
                          (2, r"window 0: .* output words, expected 2 \(too many\)"),
                          (3, r"window 0: .*drain-overrun error flag .*cycle"),
                          (4, rf"window 0: .*no progress within {cycle_limit(program, lanes)} cycles")]:
        with pytest.raises(SimulationError, match=message):
            run(mode)
