"""Fuzzing the chain, a small fixed-seed share (`bench/fuzz_bench.py` runs minutes of it):

* random model configurations -> a few training steps -> export -> the export file round trip -> the integer
  reference against the accelerator's simulation, every output word, on the data's windows and on the
  extreme codes of the input width (`intformer.fuzz.check_config`);
* random corruptions of export files: every one refused with IntformerError (hypothesis);
* random corruptions of link frames: the host's decoder never delivers a corrupted frame and always the good
  one that follows (hypothesis); and the device's own parser (`boards.top.SimTop` in simulation) answers
  corrupted frames with ERRORs only and then accepts a good frame.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from intformer import fuzz
from intformer.boards import protocol as P
from intformer.model import modelfile
from intformer.model.config import ModelConfig
from intformer.model.errors import IntformerError
from program_factory import random_program

pytestmark = pytest.mark.usefixtures("torch_one_thread")

# (seed, lanes): random configurations from intformer.fuzz.random_config, drawn once and pinned here by their seed
CHAIN_SEEDS = [(0, 2), (5, 3), (8, 1), (15, 2)]      # 0: a forecasting detector, 15: a classifier


def small_config(seed: int) -> ModelConfig:
    """A random configuration small enough for Amaranth's simulator in a few seconds."""
    return fuzz.random_config(np.random.default_rng(seed), {"window": (2, 6), "d_model": (2, 8), "ffn": (1, 8)})


@pytest.mark.parametrize("seed, lanes", CHAIN_SEEDS)
def test_chain_random_config(seed, lanes, tmp_path):
    cfg = small_config(seed)
    result = fuzz.check_config(cfg, seed, engine="amaranth", lanes=lanes, data_windows=2, random_windows=1,
                               tmp_dir=tmp_path)
    outputs = {"forecast": cfg.horizon, "classify": cfg.classes + 1, "detect": cfg.inputs + 2}[cfg.task]
    assert result.windows == 2 + 5 + 1 and result.words == result.windows * outputs
    assert result.fakequant_windows == 2
    if seed == CHAIN_SEEDS[0][0]:           # one configuration's hardware through the quick formal proofs too
        proven, failed = fuzz.prove_config(result, tmp_path / "formal", timeout=300)
        assert not failed and proven >= 8, failed


def test_the_share_covers_the_options():
    """The pinned seeds are not all one kind of model."""
    cfgs = [small_config(s) for s, _ in CHAIN_SEEDS]
    seen = {k: {getattr(c, k) for c in cfgs} for k in ("norm", "activation", "softmax", "pooling", "skip")}
    assert all(len(v) == 2 for v in seen.values()), seen
    assert len({c.bits for c in cfgs}) >= 2 and any(c.heads > 1 for c in cfgs) and any(c.inputs > 1 for c in cfgs)
    assert {c.task for c in cfgs} == {"forecast", "classify", "detect"}


def test_random_configs_are_valid_and_within_limits():
    for seed in range(200):
        cfg = fuzz.random_config(np.random.default_rng(seed))
        cfg.validate()
        for name, (lo, hi) in fuzz.LIMITS.items():
            assert lo <= getattr(cfg, name) <= hi, (seed, name)
        assert cfg.d_model % cfg.heads == 0


def test_a_mismatch_is_reported():
    """The comparison can fail: a hardware word off by one is named."""
    import intformer.accel.simulate as S

    cfg = small_config(CHAIN_SEEDS[0][0])
    real = S.simulate

    def wrong(program, codes, lanes, **kw):
        result = real(program, codes, lanes, **kw)
        words = result.words.copy()
        words[-1, 0] += 1
        return dataclasses.replace(result, words=words)
    S.simulate = wrong
    try:
        with pytest.raises(fuzz.FuzzMismatch, match="hardware differs from the integer reference"):
            fuzz.check_config(cfg, 1, engine="amaranth", lanes=1, data_windows=1, random_windows=0)
    finally:
        S.simulate = real


@pytest.mark.skipif(not __import__("intformer.accel.cxxsim", fromlist=["available"]).available(),
                    reason="the CXXRTL engine needs g++ (apt-get install g++)")
def test_chain_on_the_compiled_engine(tmp_path):
    cfg = small_config(7)
    result = fuzz.check_config(cfg, 7, engine="cxxrtl", lanes=4, data_windows=8, tmp_dir=tmp_path)
    assert result.engine == "cxxrtl" and result.windows == 8 + 5 + 2


# ------------------------------------------------------------------------------------------ export files

@pytest.fixture(scope="module")
def export(tmp_path_factory):
    rng = np.random.default_rng(3)
    program = random_program(rng, n=4, m=2, d=4, heads=2, ffn=6, horizon=2, bits=5, norm="layer",
                             activation="gelu", softmax="lut", skip=True)
    cfg = ModelConfig(window=4, inputs=2, horizon=2, d_model=4, heads=2, ffn=6, bits=5, norm="layer",
                      activation="gelu", target_index=1)
    path = tmp_path_factory.mktemp("export") / "model.intf"
    modelfile.save(path, program, cfg.to_dict(), {"mean": [0.0, 1.0], "std": [1.0, 2.0], "target_mean": 0.0,
                                                   "target_std": 1.0}, {})
    raw = path.read_bytes()
    return raw, modelfile.load(path)[0]


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(fuzz.EXPORT_CORRUPTIONS), seed=st.integers(0, 2 ** 32 - 1))
def test_corrupt_export_refused(export, kind, seed, tmp_path):
    raw, original = export
    _, bad = fuzz.corrupt_export(raw, np.random.default_rng(seed), kind)
    outcome = fuzz.check_export_corruption(raw, original, kind, bad, tmp_path)
    assert outcome == "refused" or kind in fuzz.REHASHED


def test_every_export_corruption_kind_is_refused(export, tmp_path):
    """25 of each kind: all refused, but for the edits whose checksum was fixed (a consistent edit loads, an
    inconsistent one is refused by the structure check)."""
    raw, original = export
    rng = np.random.default_rng(0)
    for kind in fuzz.EXPORT_CORRUPTIONS:
        outcomes = [fuzz.check_export_corruption(raw, original, kind, fuzz.corrupt_export(raw, rng, kind)[1],
                                                 tmp_path) for _ in range(25)]
        if kind == "tensor_edit_rehashed":
            assert set(outcomes) == {"edited"}
        elif kind == "header_edit_rehashed":
            assert "refused" in outcomes and "edited" in outcomes
        else:
            assert set(outcomes) == {"refused"}, (kind, outcomes)


def test_edited_and_rechecksummed_header_is_checked(export, tmp_path):
    """A header edited by hand with its checksum fixed: a step that reads past its buffer is refused by the
    consistency check (it used to load and then fail inside the reference with a traceback)."""
    import hashlib
    import json

    raw, _ = export
    prefix = modelfile._PREFIX
    _, version, head_len = prefix.unpack_from(raw)
    header = json.loads(raw[prefix.size:prefix.size + head_len])
    header["program"]["steps"][1]["k_len"] += 3
    head = json.dumps(header).encode()
    body = prefix.pack(modelfile.MAGIC, version, len(head)) + head + raw[prefix.size + head_len:-32]
    path = tmp_path / "edited.intf"
    path.write_bytes(body + hashlib.sha256(body).digest())
    with pytest.raises(IntformerError, match="malformed export file .*reads past"):
        modelfile.load(path)


def test_polynomial_softmax_naming_a_table_is_refused(tmp_path):
    """Found by the fuzz bench: a polynomial softmax step whose `table` was edited to -1 (checksum fixed)
    loaded, and the reference then failed with a KeyError. The consistency check now refuses it."""
    import hashlib
    import json

    program = random_program(np.random.default_rng(1), bits=6, softmax="poly")
    path = tmp_path / "model.intf"
    modelfile.save(path, program, {}, {}, {})
    raw = path.read_bytes()
    prefix = modelfile._PREFIX
    _, version, head_len = prefix.unpack_from(raw)
    header = json.loads(raw[prefix.size:prefix.size + head_len])
    step = next(st for st in header["program"]["steps"] if st.get("method") == "poly")
    step["table"] = -1
    head = json.dumps(header).encode()
    body = prefix.pack(modelfile.MAGIC, version, len(head)) + head + raw[prefix.size + head_len:-32]
    path.write_bytes(body + hashlib.sha256(body).digest())
    with pytest.raises(IntformerError, match="malformed export file .*polynomial softmax names a table"):
        modelfile.load(path)


# ------------------------------------------------------------------------------------------- link frames

@settings(max_examples=400, deadline=None, derandomize=True)
@given(kind=st.sampled_from(fuzz.FRAME_CORRUPTIONS), seed=st.integers(0, 2 ** 32 - 1), split=st.floats(0, 1))
def test_corrupt_frame_never_delivered_and_next_frame_accepted(kind, seed, split):
    rng = np.random.default_rng(seed)
    original, good = fuzz.random_frame(rng), fuzz.random_frame(rng)
    _, bad = fuzz.corrupt_frame(original, rng, kind)
    try:
        assert fuzz.check_link_corruption(bad, good, kind, int(split * (len(bad) + len(good))), original) >= 1
    except fuzz.CrcAccident:        # a 2^-16 event of the code, told apart from a decoder fault
        pass


def test_crc_accident_is_told_from_a_decoder_fault():
    """Bytes that hold a valid frame by accident (here: garbage that is a whole frame) are a CrcAccident;
    a frame the CRC must have caught (one flipped bit, delivered) is an AssertionError."""
    good, stray = P.encode_frame(P.INFO, 4), P.encode_frame(P.INFO, 9, b"\x01")
    original = P.encode_frame(P.INFER, 3, b"\x01\x02")
    with pytest.raises(fuzz.CrcAccident):
        fuzz.check_link_corruption(stray + original[:4], good, "garbage_before", None, original)
    with pytest.raises(AssertionError, match="delivered"):
        fuzz.check_link_corruption(original, good, "bitflip", None, P.encode_frame(P.INFER, 3, b"\x01\x03"))


def test_the_link_check_can_fail():
    """A 'corruption' that is no corruption at all is caught: the frame comes out."""
    frame = P.encode_frame(P.INFER, 3, b"\x01\x02")
    with pytest.raises(AssertionError, match="delivered"):
        fuzz.check_link_corruption(frame, P.encode_frame(P.INFO, 4), "bitflip")


def test_device_parser_rejects_corrupted_frames_then_accepts_a_good_one():
    """The gateware's parser (boards.top.SimTop, bit by bit on its UART): six random corruptions of INFER
    frames, each answered by ERRORs only (or nothing, when the SOF is gone), each followed by a good INFER
    answered with the reference's words."""
    from test_board_sim import expect_result, infer, run

    prog = random_program(np.random.default_rng(13), n=4, m=1, d=4, ffn=8, horizon=2, bits=4)
    rng = np.random.default_rng(2024)
    windows = rng.integers(-8, 8, (6, 4, 1))
    kinds = ["bitflip", "burst", "truncate", "len_edit", "insert_byte", "sof"]
    corrupted = [fuzz.corrupt_frame(infer(10 + i, windows[i]), rng, k)[1] for i, k in enumerate(kinds)]
    seen = []

    async def script(h):
        for i, bad in enumerate(corrupted):
            await h.send(bad)
            await h.quiet()
            await h.idle(2000)                          # room for a few ERROR frames on the line
            replies = h.received[h.taken:]
            h.taken = len(h.received)
            assert all(r.cmd == P.ERROR for r in replies), (kinds[i], replies)
            seen.append((kinds[i], [r.payload[0] for r in replies]))
            await h.send(infer(100 + i, windows[i]))
            (reply,) = await h.replies(1)
            expect_result(reply, 100 + i, prog, windows[i])

    run(prog, script)
    assert len(seen) == len(kinds)
    assert seen[0][1] == [P.ERR_CRC]                       # one flipped bit: a CRC error, nothing else
    assert all(codes for kind, codes in seen if kind != "sof"), seen


def test_found_by_fuzzing_a_residual_multiplier_beyond_16_bits(tmp_path):
    """bench/fuzz_bench.py --seed 1 found it: 2-bit input codes skipped into the 16-bit head make a ratio of
    scales near 10^6, whose multiplier (with the smallest shift, 1) needs 23 bits; the accelerator's residual
    multiplier was 16 bits wide and wrapped where the reference clamps. It is now sized from the program."""
    cfg = ModelConfig(window=2, inputs=2, horizon=1, d_model=11, heads=1, layers=2, ffn=5, bits=2, io_bits=2,
                      norm="batch", activation="relu", softmax="lut", pooling="flatten", tokens="time", skip=True,
                      target_index=1)
    result = fuzz.check_config(cfg, 1000012, engine="amaranth", lanes=3, data_windows=1, random_windows=0,
                               tmp_dir=tmp_path)
    assert result.windows >= 5
