"""accel.resources: the estimate follows the design's structure, and check_fit names what is short."""
import numpy as np
import pytest

from accel.resources import DEVICES, check_fit, estimate
from model.errors import IntformerError
from program_factory import random_program


@pytest.fixture(scope="module")
def program():
    return random_program(np.random.default_rng(0))          # the default size: n 24, d 16, FFN 64, 8 bits


def test_estimate_structure(program):
    e4, e8 = estimate(program, 4), estimate(program, 8)
    assert e4.multipliers["mac lanes"][2] == 4 and e8.multipliers["mac lanes"][2] == 8
    assert {f"buffer {name}" for name in program.buffers} <= set(e4.memories)
    # one weight word per (k, group): twice the lanes, about half the words, the same bits
    assert e8.memories["weights"][0] < e4.memories["weights"][0]
    for dev in DEVICES.values():
        assert e8.dsp_count(dev) > e4.dsp_count(dev) and e8.lut_count(dev) > e4.lut_count(dev)


def test_check_fit_names_the_short_resource_and_a_lane_count_that_fits(program):
    assert check_fit(program, 2, "ecp5-25f").lanes == 2
    with pytest.raises(IntformerError) as err:
        check_fit(program, 32, "xc7s15")
    text = str(err.value)
    assert "xc7s15" in text and ("DSP" in text or "block RAM" in text or "LUT" in text)
    best = int(text.split("--lanes ")[1].rstrip(")"))
    assert 1 <= best < 32
    check_fit(program, best, "xc7s15")                        # the suggestion fits
    with pytest.raises(IntformerError):
        check_fit(program, best + 1, "xc7s15")


def test_check_fit_when_nothing_fits_and_unknown_device(program):
    big = random_program(np.random.default_rng(1), d=64, ffn=256, heads=4)
    with pytest.raises(IntformerError, match="no lane count fits"):
        check_fit(big, 4, "ice40-up5k")
    with pytest.raises(IntformerError, match="unknown device"):
        check_fit(program, 1, "xc9999")
