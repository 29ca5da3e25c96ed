"""End to end on ETTh1 (univariate OT): trained 8-, 6- and 4-bit models; the integer reference's test
forecasts must equal the fake-quant model's word for word over all 2880 test windows.

A quick configuration (2 epochs on 2000 sampled training windows) keeps this under ~20 s; INTFORMER_FULL=1
trains the full size (30 epochs on every training window).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from intformer.model.config import ModelConfig, TrainConfig
from intformer.model.data import load_series, make_windows
from intformer.model.evaluate import agreement, baselines, errors, integer_forecast
from intformer.model.intref import quantize_input, run_program
from intformer.model.train import predict, train_models

ETTH1 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ETTh1.csv"
FULL = os.environ.get("INTFORMER_FULL") == "1"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.usefixtures("torch_one_thread"),
    pytest.mark.skipif(not ETTH1.is_file(), reason=f"ETTh1.csv not found at {ETTH1} (the shared data is absent)"),
]


@pytest.fixture(scope="module")
def series():
    return load_series(str(ETTH1))


@pytest.fixture(scope="module", params=[8, 6, 4], ids=lambda b: f"{b}bit")
def trained(request, series, torch_one_thread):
    mcfg = ModelConfig(window=24, horizon=1, d_model=16, layers=1, heads=1, ffn=64, bits=request.param)
    tcfg = TrainConfig(epochs=30, seed=0) if FULL else TrainConfig(epochs=2, patience=2, max_train_windows=2000)
    tr = train_models(series, mcfg, tcfg, progress=False)
    test = make_windows(series, tr.scaler, mcfg.window, mcfg.horizon, "test")
    return mcfg, tr, test


def test_integer_reference_equals_fakequant_on_every_test_window(trained):
    mcfg, tr, test = trained
    assert len(test.x) == 2880
    fq = predict(tr.qat, test.x)
    words, integer = integer_forecast(tr.program, test.x)
    assert words.shape == (2880, 1) and words.dtype == np.int64
    a = agreement(fq, words, tr.program)
    assert a["exact_fraction"] == 1.0 and a["max_abs_lsb"] == 0.0, a
    # the same words through the lower-level path, and forecasts identical as floats
    assert np.array_equal(run_program(tr.program, quantize_input(tr.program, test.x)), words)
    np.testing.assert_allclose(integer, fq, rtol=0, atol=1e-9 * max(1.0, float(np.abs(fq).max())))


def test_integer_test_error_is_sane(trained, series):
    mcfg, tr, test = trained
    _, integer = integer_forecast(tr.program, test.x)
    e = errors(integer, test.y, tr.scaler)
    assert all(np.isfinite(v) for v in e.values()), e
    assert e["mse"] < 0.05, e
    assert np.unique(integer).size > 10                         # a forecast, not a constant
    persistence = baselines(series, tr.scaler, mcfg.window, mcfg.horizon, 24)["persistence"]
    assert e["mse"] < 20 * persistence["mse"], (e, persistence)
    assert tr.history["qat"] and all(np.isfinite(h["val_mse"]) for h in tr.history["qat"])
    if tr.float_model is not None:
        fl = errors(predict(tr.float_model, test.x), test.y, tr.scaler)
        assert np.isfinite(fl["mse"]) and fl["mse"] < 0.05, fl


def test_accelerator_bit_exact_on_etth1_model(trained, series):
    """The hardware on the trained ETTh1 model: Amaranth's simulator on test windows, and the compiled
    engine on more, every output word equal to the integer reference."""
    from intformer.accel import cxxsim
    from intformer.accel.simulate import simulate

    _, tr, test = trained
    codes = quantize_input(tr.program, test.x[:2])
    words, cycles = simulate(tr.program, codes, lanes=4, read_buffers=False)
    np.testing.assert_array_equal(words, run_program(tr.program, codes))
    from intformer.accel.plan import make_plan
    pairs = make_plan(tr.program, 4).pairs          # a pair step (4 bits) takes two k per cycle
    assert cycles > tr.program.macs() / (8 if pairs else 4)
    if cxxsim.available():
        codes = quantize_input(tr.program, test.x[:200])
        words, _ = simulate(tr.program, codes, lanes=8, engine="cxxrtl")
        np.testing.assert_array_equal(words, run_program(tr.program, codes))


@pytest.fixture(scope="module", params=[8, 4], ids=lambda b: f"{b}bit")
def trained_level(request, torch_one_thread):
    """Multivariate (all seven columns), 24 steps ahead, with level removal (--level)."""
    series = load_series(str(ETTH1), multivariate=True)
    mcfg = ModelConfig(window=24, horizon=24, d_model=16, layers=1, heads=1, ffn=64, bits=request.param, level=True)
    tcfg = TrainConfig(epochs=30, seed=0) if FULL else TrainConfig(epochs=2, patience=2, max_train_windows=2000)
    tr = train_models(series, mcfg, tcfg, progress=False)
    test = make_windows(series, tr.scaler, mcfg.window, mcfg.horizon, "test")
    return series, mcfg, tr, test


def test_level_removal_integer_equals_fakequant(trained_level):
    """The level-removal steps (level.last, level.center) in the program; the fake-quant model in eval mode
    reproduces them word for word over every test window; the hardware computes the same words."""
    from intformer.accel import cxxsim
    from intformer.accel.simulate import simulate

    series, mcfg, tr, test = trained_level
    names = [s.name for s in tr.program.steps]
    assert names[:3] == ["level.last", "level.center", "embed"]
    assert tr.program.steps[2].x == "xc"
    fq = predict(tr.qat, test.x)
    words, integer = integer_forecast(tr.program, test.x)
    assert words.shape == (len(test.x), 24)
    a = agreement(fq, words, tr.program)
    assert a["exact_fraction"] == 1.0 and a["max_abs_lsb"] == 0.0, a
    e = errors(integer, test.y, tr.scaler)
    assert np.isfinite(e["mse"]) and e["mse"] < 0.2, e
    codes = quantize_input(tr.program, test.x[:1])
    hw, _ = simulate(tr.program, codes, lanes=4, read_buffers=False)
    np.testing.assert_array_equal(hw, run_program(tr.program, codes))
    if cxxsim.available():
        codes = quantize_input(tr.program, test.x[:100])
        hw, _ = simulate(tr.program, codes, lanes=8, engine="cxxrtl")
        np.testing.assert_array_equal(hw, run_program(tr.program, codes))
