"""An anomaly detector on the chip (issue 13, hardware side): the anomaly scorer against its golden model at
every width 2..8, the exported detector's errors, score and flag word for word equal to the integer reference
(and the fake-quant model equal to the reference) in both simulation engines, the plan's refusals, its
resources, the formal proof of the scorer with its must-fail variants, a broken scorer caught by the
simulation comparison, and the board link's reply carrying errors, score and flag; the score smoothed over
consecutive windows (`DetectStep.decay`): its rule and bound, the reference's stream segments, and an INFO
restarting the stream on the board."""
from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st
from amaranth.sim import Simulator

from intformer.accel import cxxsim, sby
from intformer.accel.accelerator import Accelerator
from intformer.accel.anomaly import AnomalyScorer
from intformer.accel.anomaly_formal import anomaly_proof, anomaly_proofs
from intformer.accel.plan import make_plan
from intformer.accel.resources import estimate
from intformer.accel.simulate import first_mismatch, simulate
from intformer.boards import protocol as P
from intformer.model import intops
from intformer.model.config import ModelConfig
from intformer.model.errors import IntformerError
from intformer.model.export import to_program
from intformer.model.intref import quantize_input, run_program
from intformer.model.program import DetectStep
from intformer.model.qat import QATForecaster
from intformer.model.train import predict

pytestmark = pytest.mark.usefixtures("torch_one_thread")
LANES = 4


def detector(mode: str = "reconstruct", level: bool = False, bits: int = 6, window: int = 8, channels: int = 3,
             layers: int = 1, seed: int = 0, quantile_of: float = 0.5, decay: int = 0):
    """An exported detector (a calibrated QAT model with a random head, so its errors are not just -actual) and
    inputs for it (the window, and in mode "forecast" the actual next row after it); its threshold is the
    `quantile_of` quantile of their scores, so that some windows are flagged and some not. `decay`: the
    score's EWMA shift (0: each window alone)."""
    torch.manual_seed(seed)
    cfg = ModelConfig(window=window, inputs=channels, d_model=8, ffn=16, bits=bits, layers=layers, task="detect",
                      skip=False, level=level, norm="layer", detect_mode=mode,
                      score_decay=decay).validate()
    model = QATForecaster(cfg)
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(48, cfg.input_rows, channels)).cumsum(axis=1) * 0.4).astype(np.float32)
    x[:4, -1] += 5.0                                 # an anomalous next row
    model.train()
    with torch.no_grad():
        torch.nn.init.normal_(model.head.weight, std=0.3)
        for _ in range(3):
            model(torch.as_tensor(x))
    model.eval()
    program = to_program(copy.deepcopy(model).double())
    score = run_program(program, quantize_input(program, x))[:, channels]
    model.score_threshold.fill_(int(np.quantile(score, quantile_of, method="higher")))
    program = to_program(copy.deepcopy(model).double())
    return model, program, x


@pytest.fixture(scope="module")
def exported(torch_one_thread):
    return detector()


# ------------------------------------------------------------------------------------- the scorer alone
@pytest.mark.parametrize("decay", [0, 3])
@pytest.mark.parametrize("bits", range(2, 9))
def test_scorer_equals_golden_model(bits, decay):
    """Random error vectors of every width 2..8 (the extremes included), one vector after another with a
    `start` between them and idle cycles inside, and two more strobes after the C-th error (the score and flag
    words) that must be ignored: score and flag equal `intops.anomaly_score` and `anomaly_flag`, a score
    equal to the threshold included (not flagged). With a decay, the score is smoothed from vector to vector
    (`intops.score_ewma`), and a `clear` pulsed in the middle of vector 9 restarts the stream at vector 10."""
    rng = np.random.default_rng(bits)
    lo, hi = intops.code_range(bits)
    starts = np.zeros(20, dtype=bool)
    starts[[0, 10]] = True
    for channels in (1, 3, 5):
        score_bits = intops.bits_signed(0, intops.score_bound(channels * max(-lo, hi), decay))
        vectors = rng.integers(lo, hi + 1, (20, channels))
        vectors[0], vectors[1] = lo, hi
        threshold = int(np.median(intops.score_ewma(np.abs(vectors).sum(axis=1), decay, starts)))
        if decay == 0:
            vectors[2] = 0
            vectors[2, 0] = min(threshold, hi)           # a score at (or near) the threshold
        dut = AnomalyScorer(channels, score_bits, threshold, decay, error_bits=bits)
        got = []

        async def tb(ctx):
            for i, vec in enumerate(vectors):
                ctx.set(dut.start, 1)
                await ctx.tick()
                ctx.set(dut.start, 0)
                for j, e in enumerate(vec):
                    ctx.set(dut.clear, int(i == 9 and j == 0))       # one cycle
                    if rng.random() < 0.3:
                        ctx.set(dut.valid, 0)
                        await ctx.tick()
                    ctx.set(dut.valid, 1)
                    ctx.set(dut.error, int(e))
                    await ctx.tick()
                    ctx.set(dut.clear, 0)
                ctx.set(dut.error, hi)                   # the score and flag words' strobes: ignored
                await ctx.tick()
                await ctx.tick()
                ctx.set(dut.valid, 0)
                got.append((ctx.get(dut.score), ctx.get(dut.flag)))

        sim = Simulator(dut)
        sim.add_clock(1e-6)
        sim.add_testbench(tb)
        sim.run()
        score, flag = AnomalyScorer.model(vectors, threshold, decay, starts if decay else None)
        np.testing.assert_array_equal(np.array(got), np.stack([score, flag], axis=1))
        assert 0 < flag.sum() < len(flag)


# ------------------------------------------------------------------------------------ the accelerator
def test_fakequant_detector_equals_reference(exported):
    """The fake-quant model's errors, read as codes, equal the reference's error words; its score and flag
    rule equals the reference's words C and C+1."""
    model, program, x = exported
    words = run_program(program, quantize_input(program, x))
    codes = np.floor(predict(model, x) / program.output_scale + 0.5).astype(np.int64)
    np.testing.assert_array_equal(codes, words[:, :3])
    t = program.steps[-1].threshold
    np.testing.assert_array_equal(words[:, 3], np.abs(codes).sum(axis=1))
    np.testing.assert_array_equal(words[:, 4], (words[:, 3] > t).astype(np.int64))
    assert 0 < words[:, 4].sum() < len(words)


@pytest.mark.parametrize("mode, level, decay", [("reconstruct", False, 0), ("forecast", False, 0),
                                                ("forecast", True, 0), ("reconstruct", False, 2)])
def test_errors_score_and_flag_equal_reference(mode, level, decay):
    """Every output word (the C errors, the score, the flag) equal to `model.intref` in Amaranth's engine, for
    both modes (the actual row the window's last, or the row after it), with and without level removal (the
    actual row then comes centred from the level step), and with a score smoothed over the windows (the
    simulation runs them one after another from reset: one stream, as the reference)."""
    _, program, x = detector(mode, level=level, bits=4, seed=1, decay=decay)
    assert make_plan(program, LANES).detect == (3, program.steps[-1].threshold, decay)
    flags = run_program(program, quantize_input(program, x))[:, 4]
    picks = list(np.flatnonzero(flags)[:2]) + list(np.flatnonzero(flags == 0)[:2])   # flagged and not
    want = run_program(program, quantize_input(program, x[picks]))
    sim = simulate(program, quantize_input(program, x[picks]), LANES, read_buffers=False)
    np.testing.assert_array_equal(sim.words, want)
    assert 0 < want[:, 4].sum() < len(picks)


@pytest.mark.skipif(not cxxsim.available(), reason="g++ is not installed")
def test_compiled_engine_equals_reference(exported):
    """The compiled engine: every word of 48 windows (an 8-bit forecasting detector, level removal on, the score
    smoothed over the 48 windows with decay 4), and the same cycles as Amaranth's."""
    _, program, x = detector("forecast", level=True, bits=8, seed=2, decay=4)
    codes = quantize_input(program, x)
    words, cycles = simulate(program, codes, LANES, engine="cxxrtl")
    np.testing.assert_array_equal(words, run_program(program, codes))
    assert not np.array_equal(words, run_program(dataclasses.replace(
        program, steps=program.steps[:-1] + [dataclasses.replace(program.steps[-1], decay=0)]), codes))
    assert cycles == simulate(program, codes[:1], LANES, read_buffers=False).cycles


class SignedSumAccelerator(Accelerator):
    """The accelerator with its scorer broken (it adds the signed error, not its magnitude)."""

    def _make_blocks(self):
        super()._make_blocks()
        port = self.out_port
        port.scorer._MustUse__silence = True             # replaced, never built
        port.scorer = AnomalyScorer(*port.detect[:1], port.layout.bits, *port.detect[1:], fault="signed_sum",
                                    error_bits=port.scorer.error_bits)


def test_broken_scorer_is_caught(exported):
    """The simulation comparison fails on a scorer that sums signed errors, and names the output port (every
    buffer matches)."""
    _, program, x = exported
    codes = quantize_input(program, x[:2])
    want = run_program(program, codes)
    assert (want[:, :3] < 0).any()
    sim = simulate(program, codes, LANES, design=SignedSumAccelerator)
    np.testing.assert_array_equal(sim.words[:, :3], want[:, :3])
    assert (sim.words[:, 3] != want[:, 3]).any()
    text = first_mismatch(program, codes, sim, want)
    assert "the difference is in the output port" in text, text


def test_plan_refuses_what_the_port_cannot_compute(exported):
    _, program, _ = exported
    last = program.steps[-1]
    moved = dataclasses.replace(program, steps=program.steps[:-1] + [dataclasses.replace(last, out_col=2)])
    with pytest.raises((IntformerError, ValueError)):
        make_plan(moved.check(), LANES)
    out = program.buffers["out"]
    narrow = dataclasses.replace(program, buffers={**program.buffers, "out": dataclasses.replace(out, bits=8)})
    with pytest.raises(ValueError, match="cannot hold the score"):
        narrow.check()
    late = dataclasses.replace(program, steps=[last] + program.steps)
    with pytest.raises(IntformerError, match="last step"):
        make_plan(late, LANES)


def test_resources_count_the_scorer(exported):
    _, program, _ = exported
    assert estimate(program, LANES).parts["scorer"] > 0
    base = dataclasses.replace(program, steps=program.steps[:-1])
    assert "scorer" not in estimate(base, LANES).parts


# ---------------------------------------------------------------------------------------------- formal
def test_scorer_proof_at_the_programs_widths(tmp_path):
    """`anomaly_proofs`: the program's channels, output bits, threshold, error range and score decay (none
    for another program); it passes (k-induction)."""
    _, program, _ = detector(decay=4)
    (proof,) = anomaly_proofs(program)
    assert f"c3_b{program.buffers['out'].bits}_d4" in proof.name
    assert sby.run_proof(proof, tmp_path, timeout=300).status == "pass"
    assert anomaly_proofs(dataclasses.replace(program, steps=program.steps[:-1])) == []


@pytest.mark.parametrize("fault", AnomalyScorer.FAULTS)
def test_scorer_proof_fails_on_a_broken_scorer(fault, tmp_path):
    """`>=` instead of `>`, a signed sum, or the whole last score carried: a counterexample from reset."""
    r = sby.run_proof(anomaly_proof(3, 21, 1000, (-32768, 32767), decay=3, fault=fault), tmp_path, timeout=300)
    assert r.status == "fail" and r.step == "basecase" and r.from_reset, r


# ------------------------------------------------------------------------------------------ the link
def test_uart_reply_carries_errors_score_and_flag(exported):
    """The board top behind the UART (board-level simulation): each RESULT is the C errors, the score and
    the flag, word for word the reference's."""
    from test_board_sim import LANES as SIM_LANES, run
    _, program, x = exported
    codes = quantize_input(program, x[[0, 30]])
    info = P.DeviceInfo.from_program(program, SIM_LANES)
    assert info.n_inputs == 8 * 3 and info.n_outputs == 5
    seen = []

    async def script(h):
        for i, window in enumerate(codes):
            await h.send(P.encode_frame(P.INFER, 7 + i, P.infer_payload(window, info)))
            (reply,) = await h.replies(1)
            assert reply.cmd == P.RESULT and reply.seq == 7 + i
            words = P.result_words(reply.payload)
            np.testing.assert_array_equal(words, run_program(program, window[None])[0])
            seen.append(int(words[-1]))

    assert run(program, script) == 2 and len(seen) == 2
    assert isinstance(program.steps[-1], DetectStep)


def test_uart_smoothed_score_restarts_on_info():
    """A detector whose score is smoothed (decay 3) behind the UART: each RESULT's score carries the windows
    before it, and an INFO starts a new stream, as `run_program`'s segments say (two windows, INFO, two)."""
    from test_board_sim import LANES as SIM_LANES, run
    _, program, x = detector(decay=3, seed=3)
    codes = quantize_input(program, x[[0, 1, 2, 3]])
    info = P.DeviceInfo.from_program(program, SIM_LANES)
    want = run_program(program, codes, segments=[0, 0, 1, 1])
    assert not np.array_equal(want, run_program(program, codes))     # the INFO matters
    got = []

    async def script(h):
        for i, window in enumerate(codes):
            if i == 2:
                await h.send(P.encode_frame(P.INFO, 40, b""))
                (reply,) = await h.replies(1)
                assert reply.cmd == P.INFO_REPLY
            await h.send(P.encode_frame(P.INFER, i, P.infer_payload(window, info)))
            (reply,) = await h.replies(1)
            assert reply.cmd == P.RESULT
            got.append(P.result_words(reply.payload))

    run(program, script)
    np.testing.assert_array_equal(np.array(got), want)


# ------------------------------------------------------------------------------ the smoothed score's rule
@given(st.lists(st.integers(0, 5000), min_size=1, max_size=60), st.integers(0, 6),
       st.lists(st.booleans(), min_size=60, max_size=60))
def test_score_ewma_rule_and_bound(rows, decay, restart):
    """`intops.score_ewma` is the recurrence s = s - floor(s / 2^k) + r from 0 at every start, and never passes
    `score_bound` of the largest row score (the width the exporter gives the score word)."""
    starts = np.array(restart[:len(rows)])
    got = intops.score_ewma(rows, decay, starts)
    s = 0
    for t, r in enumerate(rows):
        s = r if (t == 0 or starts[t]) else s - (s >> decay) + r
        assert got[t] == s
    assert got.max() <= intops.score_bound(max(rows), decay)
    if decay == 0:
        np.testing.assert_array_equal(got, rows)
    # at the bound's fixed point the recurrence stays at the bound: it is tight
    b = intops.score_bound(max(rows), decay)
    assert b - (b >> decay) + max(rows) == b


def test_run_program_segments_restart_the_stream():
    """The reference's `segments`: windows of a new label start from 0, as after an INFO; a stateless
    program ignores them."""
    _, program, x = detector(decay=3, seed=4)
    codes = quantize_input(program, x[:6])
    whole = run_program(program, codes)
    split = run_program(program, codes, segments=[0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(split[:3], whole[:3])
    np.testing.assert_array_equal(split[3:], run_program(program, codes[3:]))
    assert not np.array_equal(split[3:, 3], whole[3:, 3]) and program.stateful
    _, plain, _ = detector(decay=0, seed=4)
    assert not plain.stateful
    np.testing.assert_array_equal(run_program(plain, codes, segments=[0, 1, 2, 3, 4, 5]),
                                  run_program(plain, codes))
    with pytest.raises(ValueError, match="segment labels"):
        run_program(program, codes, segments=[0, 1])
