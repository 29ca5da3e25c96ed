"""Input codes wider than 8 bits (--io-bits up to 12): on trained ETTh1 models (multivariate, one step ahead),
the fake-quant model in eval mode, the integer reference and the accelerator (Amaranth's simulator and the
compiled engine) agree word for word, also on the extreme input codes; the serial link (one byte per code)
refuses such a model with a message that names the way out.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from model.config import ModelConfig, TrainConfig
from model.data import load_series, make_windows
from model.errors import IntformerError
from model.evaluate import agreement, integer_forecast
from model.intref import quantize_input, run_program
from model.train import predict, train_models

ETTH1 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ETTh1.csv"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.usefixtures("torch_one_thread"),
    pytest.mark.skipif(not ETTH1.is_file(), reason=f"ETTh1.csv not found at {ETTH1} (the shared data is absent)"),
]


def test_validation_range():
    for b in (2, 8, 10, 12):
        assert ModelConfig(io_bits=b, target_index=0).validate().io_bits == b
    for b in (1, 13, 16):
        with pytest.raises(IntformerError, match="--io-bits must be between 2 and 12"):
            ModelConfig(io_bits=b, target_index=0).validate()


@pytest.fixture(scope="module", params=[(10, 4, True), (12, 8, True), (12, 4, False)],
                ids=lambda p: f"io{p[0]}-{p[1]}bit-{'level' if p[2] else 'nolevel'}")
def trained(request, torch_one_thread):
    io_bits, bits, level = request.param
    series = load_series(str(ETTH1), multivariate=True)
    mcfg = ModelConfig(window=24, horizon=1, d_model=16, layers=1, heads=1, ffn=64, bits=bits, io_bits=io_bits,
                       level=level)
    tcfg = TrainConfig(epochs=2, patience=2, max_train_windows=2000, float_baseline=False)
    tr = train_models(series, mcfg, tcfg, progress=False)
    test = make_windows(series, tr.scaler, mcfg.window, mcfg.horizon, "test")
    return mcfg, tr, test


def test_wide_input_codes_bit_exact(trained):
    from accel import cxxsim
    from accel.simulate import simulate

    mcfg, tr, test = trained
    x = tr.program.input
    assert x.bits == mcfg.io_bits and x.signed
    if mcfg.level:
        # the level steps read the wide codes; the first matrix product reads xc, at most 8 bits
        assert [s.name for s in tr.program.steps[:3]] == ["level.last", "level.center", "embed"]
        assert tr.program.buffers["xc"].bits == 8
    codes = quantize_input(tr.program, test.x)
    assert np.abs(codes).max() > 127                          # the codes do use the wider range

    fq = predict(tr.qat, test.x)
    words, _ = integer_forecast(tr.program, test.x)
    a = agreement(fq, words, tr.program)
    assert a["exact_fraction"] == 1.0 and a["max_abs_lsb"] == 0.0, a

    # the hardware on test windows and on the extreme codes of the input width (clamped in the drain)
    lo, hi = x.range
    extreme = np.stack([np.full(codes.shape[1:], lo), np.full(codes.shape[1:], hi),
                        np.where(np.indices(codes.shape[1:]).sum(0) % 2, lo, hi)]).astype(np.int64)
    batch = np.concatenate([codes[:2], extreme])
    hw, _ = simulate(tr.program, batch, lanes=4, read_buffers=False)
    np.testing.assert_array_equal(hw, run_program(tr.program, batch))
    if cxxsim.available():
        batch = np.concatenate([codes[:300], extreme])
        hw, _ = simulate(tr.program, batch, lanes=8, engine="cxxrtl")
        np.testing.assert_array_equal(hw, run_program(tr.program, batch))


def test_link_refuses_wide_input_codes(trained):
    from boards import protocol as P

    mcfg, tr, _ = trained
    with pytest.raises(IntformerError, match="one byte per code.*--io-bits 8.*--bare"):
        P.DeviceInfo.from_program(tr.program, 4)


def test_cli_trains_wide_codes_and_build_refuses_the_link(tmp_path):
    from cli_helpers import SMALL, invoke, ok, user_error

    user_error(invoke("train", *SMALL, "--io-bits", "13", "--out", tmp_path / "bad"), "--io-bits", "12")
    assert not (tmp_path / "bad").exists()
    run = tmp_path / "run"
    ok(invoke("train", *SMALL, "--io-bits", "10", "--out", run, "--json"))
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    user_error(invoke("build", run, "--board", "icebreaker", "--lanes", "2"), "10 bits", "one byte per code",
               "--bare")
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before      # nothing written
