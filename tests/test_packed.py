"""Two products per multiplier block (`accel.packed`): where the packing fits, its numpy model against the exact
dot product, the proof for every operand at 2 to 4 bits, a must-fail fault, and one SB_MAC16 per pair."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from intformer.accel import formal, sby
from intformer.accel.packed import PairProduct, operand_bits, pair_dot_model, pair_stride
from intformer.model import intops


def code_ranges(bits: int) -> dict[str, tuple[int, int]]:
    return {"signed": (-(1 << (bits - 1)), (1 << (bits - 1)) - 1), "unsigned": (0, (1 << bits) - 1),
            "weights": intops.weight_range(bits)}


def test_pair_stride_rules():
    """Up to 4-bit codes pack on a 16 x 16 block, 5-bit codes need 18-bit ports, 6 bits and more never fit."""
    for bits in (2, 3, 4):
        r = code_ranges(bits)
        assert pair_stride(r["unsigned"], r["weights"]) is not None, bits
        assert pair_stride(r["signed"], r["signed"]) is not None, bits
    assert pair_stride(code_ranges(4)["unsigned"], code_ranges(4)["weights"]) == 9
    r5 = code_ranges(5)
    assert pair_stride(r5["unsigned"], r5["weights"]) is None
    assert pair_stride(r5["unsigned"], r5["weights"], port_bits=18) == 11
    for bits in (6, 7, 8):
        r = code_ranges(bits)
        assert pair_stride(r["unsigned"], r["weights"], port_bits=18) is None, bits


@settings(max_examples=60, deadline=None)
@given(bits=st.integers(2, 5), kind=st.sampled_from(["signed", "unsigned"]), seed=st.integers(0, 2**32 - 1))
def test_pair_model_is_the_dot_product(bits, kind, seed):
    """The packed arithmetic, bit for bit (`pair_dot_model`), equals x0 * w0 + x1 * w1 on random codes and on
    the ranges' corners; without the borrow it is wrong where x0 * w1 < 0."""
    r = code_ranges(bits)
    x_range, w_range = r[kind], r["weights"]
    stride = pair_stride(x_range, w_range, port_bits=16 if bits <= 4 else 18)
    rng = np.random.default_rng(seed)
    corners = np.array(np.meshgrid(x_range, x_range, w_range, w_range)).reshape(4, -1)
    drawn = np.stack([rng.integers(lo, hi + 1, 500) for lo, hi in (x_range, x_range, w_range, w_range)])
    x0, x1, w0, w1 = np.concatenate([corners, drawn], axis=1)
    np.testing.assert_array_equal(pair_dot_model(x0, x1, w0, w1, stride), x0 * w0 + x1 * w1)
    wrong = pair_dot_model(x0, x1, w0, w1, stride, borrow=False) != x0 * w0 + x1 * w1
    np.testing.assert_array_equal(wrong, x0 * w1 < 0)


@pytest.mark.parametrize("bits, kind", [(2, "unsigned"), (3, "signed"), (4, "unsigned"), (4, "signed")])
def test_pair_products_are_exact(bits, kind, tmp_path):
    """For every pair of codes of the ranges (x unsigned or signed, w the weights' symmetric range), the block's
    output is the dot product of the previous cycle's operands."""
    r = code_ranges(bits)
    proof = sby.Proof(f"pair{bits}{kind}", lambda: formal.pair_products_harness(r[kind], r["weights"]), "prove", 2)
    result = sby.run_proof(proof, tmp_path, timeout=300)
    assert result.status == "pass", result


def test_pair_without_borrow_fails_from_reset(tmp_path):
    """Dropping L's sign bit from the extraction (`PairProduct(fault="no_borrow")`) breaks the block: the
    proof fails in its base case, from reset."""
    r = code_ranges(4)
    proof = sby.Proof("pair_no_borrow", lambda: formal.pair_products_harness(r["unsigned"], r["weights"],
                                                                            fault="no_borrow"), "prove", 2)
    result = sby.run_proof(proof, tmp_path, timeout=300)
    assert result.status == "fail", result
    assert result.step == "basecase" and result.from_reset, result


def test_pair_takes_one_multiplier_block(tmp_path):
    """Two 4-bit products cost one SB_MAC16 on the UP5K, and logic only for the operands' pre-adders (a negative
    x0 or w1 borrows from the term above it) and the borrow's adder: less than one product in logic."""
    from intformer.accel.resources import BOOTH_LUTS
    from intformer.boards.synth import synthesize
    r = code_ranges(4)
    stride = pair_stride(r["unsigned"], r["weights"])
    pair = PairProduct(operand_bits(r["unsigned"]), operand_bits(r["weights"]), stride)
    res = synthesize(pair, "ice40-up5k", name="pair", workdir=tmp_path)
    assert res.used["DSP"] == 1, res.used
    assert res.used["LUT"] < BOOTH_LUTS * pair.x_bits * pair.w_bits, res.used


def test_mac_pairs_exact_and_must_fail(tmp_path):
    """The MAC array as a 4-bit pair program builds it: a multiplier-block lane and a lane in logic add
    x_k w_k + x_k+1 w_k+1 on pair cycles for every code of the pairing's ranges; without the borrow
    (`MacArray(fault="pair_borrow")`) the proof fails from reset."""
    import numpy as np
    from program_factory import random_program

    from intformer.accel.plan import make_plan
    plan = make_plan(random_program(np.random.default_rng(0), n=4, m=2, d=4, ffn=6, horizon=2, bits=4), 2)
    assert plan.pairs is not None
    for name, logic in (("block", 0), ("logic", 1)):
        proof = sby.Proof(f"mac_pairs_{name}", lambda: formal.mac_pairs_harness(
            1, plan.x_bits, plan.w_bits, plan.pairs, logic_lanes=logic), "prove", 2)
        assert sby.run_proof(proof, tmp_path, timeout=300).status == "pass", name
    broken = sby.Proof("mac_pairs_no_borrow", lambda: formal.mac_pairs_harness(
        1, plan.x_bits, plan.w_bits, plan.pairs, fault="pair_borrow"), "prove", 2)
    result = sby.run_proof(broken, tmp_path, timeout=300)
    assert result.status == "fail" and result.step == "basecase" and result.from_reset, result
