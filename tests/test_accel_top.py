"""The whole accelerator against `model.intref.run_program`: small random programs, every output word and
every buffer compared."""
import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from intformer.accel.simulate import first_mismatch, simulate
from intformer.model.intref import run_program
from program_factory import random_inputs, random_program


def check(program, x, lanes, logic_lanes=0):
    result = simulate(program, x, lanes, logic_lanes=logic_lanes)
    words, cycles = result
    expected, trace = run_program(program, x, trace=True)
    assert (words == expected).all(), first_mismatch(program, x, result, expected)
    # every buffer as the reference leaves it (the output words alone can hide a wrong intermediate)
    final = {buf: value for _, buf, value in trace}
    assert len(result.buffers) == len(x)
    for b, hw in enumerate(result.buffers):
        for name, value in final.items():
            np.testing.assert_array_equal(hw[name], value[b], err_msg=f"window {b}, buffer {name}")
    return cycles


@settings(max_examples=8, deadline=None)
@given(bits=st.integers(2, 8), lanes=st.integers(1, 5), n=st.integers(2, 5), m=st.integers(1, 2),
       heads=st.sampled_from([1, 2]), dh=st.integers(1, 3), ffn=st.integers(1, 6), horizon=st.integers(1, 3),
       norm=st.sampled_from(["batch", "layer"]), activation=st.sampled_from(["relu", "gelu"]),
       softmax=st.sampled_from(["lut", "poly"]), pooling=st.sampled_from(["mean", "flatten"]), skip=st.booleans(),
       seed=st.integers(0, 2**32 - 1))
def test_random_programs(bits, lanes, n, m, heads, dh, ffn, horizon, norm, activation, softmax, pooling, skip,
                         seed):
    rng = np.random.default_rng(seed)
    program = random_program(rng, n=n, m=m, d=heads * dh, heads=heads, ffn=ffn, horizon=horizon, bits=bits,
                             norm=norm, activation=activation, softmax=softmax, pooling=pooling, skip=skip)
    check(program, random_inputs(rng, program, 2), lanes)


@pytest.mark.parametrize("lanes, logic_lanes", [(1, 0), (3, 1), (4, 0)])
def test_two_layers_every_option(lanes, logic_lanes):
    """Two layers (a layer's output feeds the next), two heads, LayerNorm, GELU, polynomial softmax; MAC
    lanes in logic too."""
    rng = np.random.default_rng(lanes)
    program = random_program(rng, n=4, m=2, d=4, heads=2, ffn=6, horizon=2, bits=6, norm="layer",
                             activation="gelu", softmax="poly", pooling="flatten", layers=2, skip=True)
    check(program, random_inputs(rng, program, 1), lanes, logic_lanes)


def test_cycles_near_mac_bound():
    """Back-to-back groups: a MAC-dominated program runs within 1.2 x MACs / P plus a per-step constant."""
    rng = np.random.default_rng(7)
    program = random_program(rng, n=8, m=1, d=8, ffn=32, horizon=1, bits=8)
    lanes = 4
    cycles = check(program, random_inputs(rng, program, 1), lanes)
    steps = len(program.steps)
    assert cycles <= 1.2 * program.macs() / lanes + 30 * steps + 64, cycles


def test_first_mismatch_names_the_step():
    rng = np.random.default_rng(3)
    program = random_program(rng, n=3, m=1, d=2, ffn=2, horizon=1, bits=4)
    x = random_inputs(rng, program, 1)
    result = simulate(program, x, 2)
    expected = run_program(program, x)
    assert first_mismatch(program, x, result, expected) == "no mismatch"
    result.buffers[0]["l0.v"][1, 0] += 1             # pretend the hardware got one element wrong
    text = first_mismatch(program, x, dataclasses.replace(result, words=result.words + 1), expected)
    assert "output word 0" in text and "'l0.v'" in text and "l0.v[1, 0]" in text


EXPORTED = [  # (id, ModelConfig options): the exporter's own programs, from calibrated (untrained) QAT models
    ("skip-batch-relu-lut-mean-b8", dict(norm="batch", activation="relu", softmax="lut", pooling="mean", bits=8)),
    ("skip-layer-gelu-poly-flatten-h2-b4-io6", dict(norm="layer", activation="gelu", softmax="poly", pooling="flatten",
                                                    heads=2, bits=4, horizon=2, io_bits=6)),
    ("noskip-series-batch-gelu-lut-mean-b6", dict(norm="batch", activation="gelu", softmax="lut", pooling="mean",
                                                  tokens="series", inputs=3, bits=6, skip=False)),
    # level removal (--level): the window minus each series' last value, by the two copy steps level.last and
    # level.center (ones operand against a buffer row; residual with m_src = -m_new)
    ("level-skip-time-m3-batch-relu-lut-mean-b8", dict(norm="batch", activation="relu", softmax="lut",
                                                       pooling="mean", inputs=3, bits=8, horizon=3, level=True)),
    ("level-skip-time-m1-layer-gelu-poly-flatten-b4-io6", dict(norm="layer", activation="gelu", softmax="poly",
                                                               pooling="flatten", bits=4, io_bits=6, level=True)),
    ("level-noskip-series-batch-relu-lut-mean-b6", dict(norm="batch", activation="relu", softmax="lut",
                                                        pooling="mean", tokens="series", inputs=3, bits=6,
                                                        skip=False, level=True)),
]


@pytest.mark.parametrize("options", [c[1] for c in EXPORTED], ids=[c[0] for c in EXPORTED])
def test_exported_programs(options):
    """Programs from model.export.to_program (what a trained model becomes), windows beyond the calibrated
    ranges included: the accelerator's words equal the integer reference's."""
    torch = pytest.importorskip("torch")
    from intformer.model.config import ModelConfig
    from intformer.model.export import to_program
    from intformer.model.intref import quantize_input
    from intformer.model.qat import QATForecaster

    options = dict(options)
    inputs = options.pop("inputs", 1)
    skip = options.pop("skip", True)
    cfg = ModelConfig(window=6, inputs=inputs, d_model=4, ffn=6, skip=skip,
                      target_index=inputs - 1 if skip else None, **options).validate()
    torch.manual_seed(0)
    model = QATForecaster(cfg)
    gen = torch.Generator().manual_seed(1)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(16, cfg.window, cfg.inputs, generator=gen))
    program = to_program(model.eval().double())
    x = np.random.default_rng(2).normal(size=(2, cfg.window, cfg.inputs))
    x[0] *= 6.0                                          # saturating codes
    check(program, quantize_input(program, x), lanes=3)


def test_blocks_kept_as_modules_compute_the_same():
    """`Accelerator(keep_blocks=True)` (each block a module of its own, for `bench/lc_breakdown.py`) is the same
    design: every output word and buffer equal to the reference, in the same cycles as the flat one."""
    import functools

    from intformer.accel.accelerator import Accelerator
    rng = np.random.default_rng(11)
    program = random_program(rng, n=4, m=2, d=4, heads=2, ffn=6, horizon=2, bits=6, norm="layer",
                             softmax="poly", skip=True)
    x = random_inputs(rng, program, 1)
    kept = simulate(program, x, 2, design=functools.partial(Accelerator, keep_blocks=True))
    flat = simulate(program, x, 2)
    expected = run_program(program, x)
    assert (kept.words == expected).all(), first_mismatch(program, x, kept, expected)
    assert kept.cycles == flat.cycles


@pytest.mark.parametrize("bits, lanes", [(4, 2), (3, 4), (2, 2)])
def test_pair_steps_bit_exact_in_fewer_cycles(bits, lanes, monkeypatch):
    """Codes of up to 4 bits at even P: the linear steps pair (two k per multiplier block, `accel.packed`),
    those with ROM weights and attention's, whose W (K^T, V) comes from a bank read at rows k and k + 1; every
    output word and every buffer equals the reference, in fewer cycles than the same design without pair
    steps (which also stays exact)."""
    from intformer.accel import plan as plan_module
    rng = np.random.default_rng(bits)
    program = random_program(rng, n=6, m=2, d=8, heads=1, ffn=32, horizon=2, bits=bits, norm="layer",
                             activation="gelu", skip=True)
    x = random_inputs(rng, program, 1)
    plan = plan_module.make_plan(program, lanes)
    pairs = plan.pairs
    assert pairs is not None and {"l0.q", "l0.ffn1", "l0.ffn2", "l0.h0.scores", "l0.h0.ctx"} <= pairs.steps
    assert pairs.w_buffers == {"l0.kt", "l0.v"} and plan.pair_w_banks()
    paired = check(program, x, lanes)
    monkeypatch.setattr(plan_module, "pairing", lambda *a, **k: None)
    single = check(program, x, lanes)
    assert paired < 0.8 * single, (paired, single)


def test_attention_pair_steps_read_the_next_row(monkeypatch):
    """Must fail: a crossbar whose pair W banks read row k at their second port too (`SameRowCrossbar`)
    breaks the attention outputs of a pair design (two heads, the second's columns from an offset of K^T
    and V), while the real one is exact."""
    from faulty_blocks import SameRowCrossbar

    from intformer.accel import accelerator
    rng = np.random.default_rng(5)
    program = random_program(rng, n=4, m=1, d=8, heads=2, ffn=8, horizon=1, bits=4)
    x = random_inputs(rng, program, 2)
    check(program, x, 2)
    monkeypatch.setattr(accelerator, "BankCrossbar", SameRowCrossbar)
    result = simulate(program, x, 2)
    expected, trace = run_program(program, x, trace=True)
    assert result.buffers[0]["l0.ctx"].tolist() != dict((b, v) for _, b, v in trace)["l0.ctx"][0].tolist()


def test_no_pairs_at_odd_lanes_or_wide_codes():
    """P odd (a pair's two X elements would straddle words), or 6-bit codes (they do not pack into 16-bit
    multiplier ports; 5-bit signed codes do, with S = 10): no step pairs."""
    from intformer.accel.plan import make_plan
    four = random_program(np.random.default_rng(0), n=4, m=1, d=4, ffn=4, bits=4)
    assert make_plan(four, 3).pairs is None and make_plan(four, 4).pairs is not None
    six = random_program(np.random.default_rng(0), n=4, m=1, d=4, ffn=4, bits=6)
    assert make_plan(six, 4).pairs is None
