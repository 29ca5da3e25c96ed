"""Input codes wider than 8 bits (--io-bits up to 12): on trained ETTh1 models (multivariate, one step ahead),
the fake-quant model in eval mode, the integer reference and the accelerator (Amaranth's simulator and the
compiled engine) agree word for word, also on the extreme input codes; behind the serial link such a model
takes 2 bytes per input code (`boards.protocol`), and the whole device (UART, link, accelerator) in simulation
answers its windows word for word; `intformer infer` sends them so.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from intformer.model.config import ModelConfig, TrainConfig
from intformer.model.data import load_series, make_windows
from intformer.model.errors import IntformerError
from intformer.model.evaluate import agreement, integer_forecast
from intformer.model.intref import quantize_input, run_program
from intformer.model.train import predict, train_models

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
    from intformer.accel import cxxsim
    from intformer.accel.simulate import simulate

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


def test_link_takes_wide_input_codes(trained):
    """The board behind the link (`boards.top.SimTop`, simulated bit by bit on its UART pins): INFO_REPLY
    says 2 bytes per code, and a test window and a window of the extreme codes get their forecasts word for
    word; a LEN of one byte per code gets ERROR 2."""
    from intformer.boards import protocol as P
    from test_board_sim import LANES, expect_error, expect_result, run

    mcfg, tr, test = trained
    program = tr.program
    info = P.DeviceInfo.from_program(program, LANES)
    assert info.bits == mcfg.io_bits and info.bytes_per_code == 2 and info.infer_len == 2 * info.n_inputs
    lo, hi = program.input.range
    codes = quantize_input(program, test.x[:1])
    windows = np.concatenate([codes, np.where(np.indices(codes.shape[1:]).sum(0) % 2, lo, hi)[None]])

    async def script(h):
        await h.send(P.encode_frame(P.INFO, 1))
        (reply,) = await h.replies(1)
        assert P.DeviceInfo.from_payload(reply.payload) == info
        for i, window in enumerate(windows):
            await h.send(P.encode_frame(P.INFER, 2 + i, P.infer_payload(window, info)))
            expect_result(*(await h.replies(1, limit=400_000)), 2 + i, program, window)
        await h.send(P.encode_frame(P.INFER, 9, bytes(info.n_inputs)))
        expect_error(*(await h.replies(1)), 9, P.ERR_LENGTH)

    assert run(program, script) == len(windows)


def test_cli_trains_wide_codes_and_infers_over_the_link(tmp_path):
    """`intformer train --io-bits 10`, then `intformer infer` against a stand-in device on a pseudo-terminal
    (`test_board_cli.FakeDevice`, which decodes 2-byte codes): every window bit-exact. (`intformer build`'s
    check before any work is `DeviceInfo.from_program`, which now takes the model.)"""
    import json

    from intformer.boards import protocol as P
    from cli_helpers import SMALL, invoke, ok, user_error
    from intformer.model import runfolder
    from test_board_cli import FakeDevice

    user_error(invoke("train", *SMALL, "--io-bits", "13", "--out", tmp_path / "bad"), "--io-bits", "12")
    assert not (tmp_path / "bad").exists()
    run = tmp_path / "run"
    ok(invoke("train", *SMALL, "--io-bits", "10", "--out", run, "--json"))
    program = runfolder.open_run(run).program
    assert program.input.bits == 10 and P.DeviceInfo.from_program(program, 2).bytes_per_code == 2
    dev = FakeDevice(program)
    try:
        r = json.loads(ok(invoke("infer", run, "--port", dev.path, "--timeout", "0.3", "--json", "--windows",
                                 "6")).stdout)
    finally:
        dev.close()
    assert (r["windows"], r["matched"], r["mismatched"], r["failed"]) == (6, 6, 0, 0)
