"""accel.cxxsim: the compiled (CXXRTL) simulation computes the same words in the same cycles as Amaranth's."""
import numpy as np
import pytest
from program_factory import random_inputs, random_program

from accel import cxxsim
from accel.simulate import first_mismatch, simulate
from model.intref import run_program

pytestmark = pytest.mark.skipif(not cxxsim.available(), reason="g++ is not installed")


def test_compiled_equals_python_simulation_and_reference():
    rng = np.random.default_rng(11)
    program = random_program(rng, n=4, m=2, d=4, heads=2, ffn=6, horizon=2, bits=6, norm="layer",
                             activation="gelu", softmax="poly", pooling="mean", skip=True)
    x = random_inputs(rng, program, 3)
    words, cycles = simulate(program, x, 3, engine="cxxrtl")
    np.testing.assert_array_equal(words, run_program(program, x))
    words_py, cycles_py = simulate(program, x[:1], 3)
    np.testing.assert_array_equal(words[:1], words_py)
    assert cycles == cycles_py
    # a mismatch found by the fast engine is explained by re-running that window in Amaranth
    text = first_mismatch(program, x, words + (np.arange(words.size).reshape(words.shape) == 3), words)
    assert "window 1, output word 1" in text
