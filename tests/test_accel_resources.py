"""accel.resources: the estimate follows the design's structure, and check_fit names what is short."""
from itertools import pairwise

import numpy as np
import pytest

from intformer.accel.plan import LOGIC_BITS, block_count, make_plan
from intformer.accel.resources import DEVICES, check_fit, estimate, lanes_in_logic
from intformer.model.errors import IntformerError
from program_factory import random_program


@pytest.fixture(scope="module")
def program():
    return random_program(np.random.default_rng(0))          # the default size: n 24, d 16, FFN 64, 8 bits


def test_estimate_structure(program):
    e4, e8 = estimate(program, 4), estimate(program, 8)
    assert e4.multipliers["mac lanes"][2] == 4 and e8.multipliers["mac lanes"][2] == 8
    plan = make_plan(program, 4)
    banks = [name for name in e4.memories if name.startswith("bank ")]
    assert len(banks) == len(plan.banks) < len(program.buffers)
    # one weight word per (k, group): twice the lanes, about half the words, the same bits
    assert e8.memories["weights"][0] < e4.memories["weights"][0]
    for dev in DEVICES.values():
        assert e8.dsp_count(dev) > e4.dsp_count(dev) and e8.lut_count(dev) > e4.lut_count(dev)
    # MAC lanes in logic trade DSP blocks for LUTs
    up5k = DEVICES["ice40-up5k"]
    e8l = estimate(program, 8, logic_lanes=4)
    assert e8l.multipliers["mac lanes"][2] == 4
    assert e8l.dsp_count(up5k) == e8.dsp_count(up5k) - 4 and e8l.lut_count(up5k) > e8.lut_count(up5k)


def test_banks_share_memories_without_port_conflicts(program):
    """Every buffer in exactly one bank at its own words; no step reads (or writes) two buffers of a bank;
    fewer, fuller block RAMs than one memory per buffer."""
    for lanes in (1, 2, 4, 8):
        plan = make_plan(program, lanes)
        held = [n for b in plan.banks for n in b.buffers]
        assert sorted(held) == sorted(program.buffers)
        for b in plan.banks:
            spans = sorted((plan.layouts[n].base, plan.layouts[n].base + plan.layouts[n].depth) for n in b.buffers)
            assert all(e0 <= s1 for (_, e0), (s1, _) in pairwise(spans)) and spans[-1][1] <= b.depth
        for rec in plan.steps:
            for b in plan.banks:                   # one role per port: the table holds one code per bank
                assert rec.read_role[b.index] in range(6) and rec.write_role[b.index] in range(4)
        own = sum(block_count(lay.depth, lay.bits * lanes) for lay in plan.layouts.values()
                  if lay.depth * lay.bits * lanes > LOGIC_BITS)
        shared = sum(block_count(b.depth, b.width) for b in plan.banks if not b.logic)
        assert shared < own
    # the default model at P = 8: three banks of 64-bit words, 12 block RAMs (one memory per buffer: 44)
    plan = make_plan(program, 8)
    assert sum(block_count(b.depth, b.width) for b in plan.banks if not b.logic) <= 12


def test_lanes_in_logic_fit_the_up5k(program):
    """The UP5K's eight DSP blocks: P = 4 needs no MAC lane in logic, P = 8 four; check_fit picks them when
    asked (logic_lanes=None), and by default checks what Accelerator(program, lanes) builds."""
    assert lanes_in_logic(program, 4, "ice40-up5k") == 0
    assert lanes_in_logic(program, 8, "ice40-up5k") == 4
    assert lanes_in_logic(program, 8, "xc7s15") == 0
    assert check_fit(program, 4, "ice40-up5k").logic_lanes == 0
    est = check_fit(program, 8, "ice40-up5k", logic_lanes=None)
    assert est.logic_lanes == 4 and est.dsp_count(DEVICES["ice40-up5k"]) <= 8
    with pytest.raises(IntformerError, match="DSP.*--lanes 4"):
        check_fit(program, 8, "ice40-up5k")


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


def test_attention_pairs_yield_to_the_up5k_block_ram():
    """A pair step reading W from a bank gives the bank a second copy. At 4 bits the default model (24, 16)
    keeps attention's pair steps at P = 4 and fits the UP5K; (24, 32) at P = 2 would overflow the UP5K's 30
    EBR with them (it fits without): the plan drops them there and keeps the ROM steps' pairs."""
    from intformer.accel.resources import design_plan
    up5k = DEVICES["ice40-up5k"]
    small = random_program(np.random.default_rng(0), bits=4, d=16, ffn=64)
    plan = design_plan(small, 4)
    assert plan.pairs.w_buffers == {"l0.kt", "l0.v"}
    assert estimate(small, 4, plan).ram_blocks(up5k) <= up5k.ram_blocks
    wide = random_program(np.random.default_rng(0), bits=4, d=32, ffn=128)
    with_banks = make_plan(wide, 2)                     # the plan with every pair it can have
    assert with_banks.pairs.w_buffers and estimate(wide, 2, with_banks).ram_blocks(up5k) > up5k.ram_blocks
    plan = design_plan(wide, 2)
    assert plan.pairs.w_buffers == frozenset() and {"l0.q", "l0.ffn1", "l0.ffn2"} <= plan.pairs.steps
    assert estimate(wide, 2, plan).ram_blocks(up5k) <= up5k.ram_blocks
    check_fit(wide, 2, "ice40-up5k")
