"""A classifier on the chip (issue 13, hardware side): the argmax tracker against its golden model, the
accelerator's C scores and class word for word equal to the integer reference in both simulation engines
(ties included), the plan's refusals, its resources, the formal proof of the tie rule and its must-fail
variant, and the board link's reply (UART and SPI) carrying the scores and the class."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from amaranth.sim import Simulator

from intformer.accel import cxxsim, sby
from intformer.accel.accelerator import Accelerator
from intformer.accel.argmax import ArgmaxTracker
from intformer.accel.argmax_formal import argmax_proof, argmax_proofs
from intformer.accel.plan import make_plan
from intformer.accel.resources import estimate
from intformer.accel.sim_checks import cycle_bound
from intformer.accel.simulate import first_mismatch, simulate
from intformer.boards import protocol as P
from intformer.boards.host import Session
from intformer.model import intops
from intformer.model.errors import IntformerError
from intformer.model.intref import run_program
from intformer.model.program import ArgmaxStep
from program_factory import random_inputs, random_program

LANES = 2
SHAPE = dict(n=4, m=2, d=4, ffn=8, bits=4)          # a small but whole encoder: attention, FFN, pooling


def classifier(ties=None, classes=4, seed=0, **kw):
    return random_program(np.random.default_rng(seed), **{**SHAPE, **kw}, classes=classes, ties=ties)


def varied_windows(program, count, seed=1, pool=64):
    """`count` windows of a pool, one of each class the pool reaches first (the class is then not the same
    for every window), then the rest in pool order."""
    x = random_inputs(np.random.default_rng(seed), program, pool)
    cls = run_program(program, x)[:, -1]
    first = [int(np.flatnonzero(cls == c)[0]) for c in np.unique(cls)]
    order = first + [i for i in range(pool) if i not in first]
    return x[order[:count]]


def scores_only(program):
    """The same program without its argmax: the output buffer's first C words, the scores."""
    c = program.steps[-1].cols
    out = dataclasses.replace(program.buffers[program.output], cols=c)
    return dataclasses.replace(program, steps=list(program.steps[:-1]),
                               buffers={**program.buffers, program.output: out})


# ------------------------------------------------------------------------------------- the tracker alone
@pytest.mark.parametrize("bits", range(2, 9))
def test_tracker_equals_golden_model(bits):
    """Random score vectors of every width 2..8 (many with equal scores: a narrow range), one vector after
    another with a `start` between them and idle cycles inside, and a `valid` after the C-th score that
    must be ignored: `cls` equals `intops.argmax_first` of each vector."""
    rng = np.random.default_rng(bits)
    lo, hi = intops.code_range(bits)
    for classes in (2, 3, 6):
        vectors = rng.integers(lo, hi + 1, (24, classes))
        vectors[:8] = rng.integers(lo, min(hi, lo + 2) + 1, (8, classes))      # ties, many
        vectors[8] = hi
        dut = ArgmaxTracker(classes, bits)
        got = []

        async def tb(ctx):
            for vec in vectors:
                ctx.set(dut.start, 1)
                await ctx.tick()
                ctx.set(dut.start, 0)
                for score in vec:
                    if rng.random() < 0.3:                   # an idle cycle between two scores
                        ctx.set(dut.valid, 0)
                        await ctx.tick()
                    ctx.set(dut.valid, 1)
                    ctx.set(dut.score, int(score))
                    await ctx.tick()
                ctx.set(dut.score, hi)                   # one more strobe (the class word): ignored
                await ctx.tick()
                ctx.set(dut.valid, 0)
                got.append(ctx.get(dut.cls))

        sim = Simulator(dut)
        sim.add_clock(1e-6)
        sim.add_testbench(tb)
        sim.run()
        want = ArgmaxTracker.model(vectors)
        np.testing.assert_array_equal(got, want)
        assert len(set(want)) > 1


# ------------------------------------------------------------------------------------ the accelerator
@pytest.mark.parametrize("ties", [None, "duplicate", "zero"])
def test_scores_and_class_equal_reference(ties):
    """Every output word (the C scores, then the class) equal to `model.intref`; the class costs one word's
    3 cycles more than the scores alone, and `cycle_bound` counts it so."""
    program = classifier(ties)
    x = varied_windows(program, 4)
    want = run_program(program, x)
    sim = simulate(program, x, LANES, read_buffers=False)
    np.testing.assert_array_equal(sim.words, want)
    cls = want[:, -1]
    if ties is None:
        assert len(set(cls)) > 1                            # the windows reach more than one class
    elif ties == "duplicate":
        np.testing.assert_array_equal(want[:, 1:4:2], want[:, 0:4:2])
        assert (cls % 2 == 0).all()                          # of each tied pair the first wins
    else:
        assert (want[:, :4] == want[:, :1]).all() and (cls == 0).all()
    base = scores_only(program)
    _, base_cycles = simulate(base, x[:1], LANES, read_buffers=False)
    assert sim.cycles == base_cycles + 3
    assert cycle_bound(program, LANES) == cycle_bound(base, LANES) + 3
    assert make_plan(program, LANES).classes == 4 and make_plan(base, LANES).classes == 0


@pytest.mark.skipif(not cxxsim.available(), reason="g++ is not installed")
def test_compiled_engine_equals_reference():
    """The compiled engine: the same words, ties included (6 classes, pairs duplicated, P = 3), and the
    same cycles as Amaranth's. No encoder layer (embedding, pooling, head: a design that compiles in
    seconds); the Amaranth tests above run the whole encoder."""
    program = classifier("duplicate", classes=6, bits=6, seed=2, layers=0)
    x = varied_windows(program, 16)
    words, cycles = simulate(program, x, 3, engine="cxxrtl")
    np.testing.assert_array_equal(words, run_program(program, x))
    assert cycles == simulate(program, x[:1], 3, read_buffers=False).cycles


def test_exported_classifier_on_the_chip(torch_one_thread):
    """A classifier as `model.export.to_program` writes it (a calibrated QAT model, 4 classes, 6 bits, two
    heads): every word of 24 windows, scores and class, equal to the reference in the compiled engine, and
    of 3 of them in Amaranth's, the same cycles."""
    import copy

    from test_export import calibrated_model

    from intformer.model.config import ModelConfig
    from intformer.model.export import to_program
    from intformer.model.intref import quantize_input
    cfg = ModelConfig(window=8, inputs=3, d_model=8, heads=2, layers=1, ffn=16, bits=6, task="classify",
                      classes=4, skip=False).validate()
    program = to_program(copy.deepcopy(calibrated_model(cfg)).double())
    assert isinstance(program.steps[-1], ArgmaxStep) and make_plan(program, 4).classes == 4
    codes = quantize_input(program, np.random.default_rng(0).normal(size=(24, 8, 3)))
    want = run_program(program, codes)
    assert len(set(want[:, -1])) > 1
    fast = simulate(program, codes, 4, engine="cxxrtl") if cxxsim.available() else None
    slow = simulate(program, codes[:3], 4, read_buffers=False)
    np.testing.assert_array_equal(slow.words, want[:3])
    if fast is not None:
        np.testing.assert_array_equal(fast.words, want)
        assert fast.cycles == slow.cycles


class TiesLastAccelerator(Accelerator):
    """The accelerator with its tracker broken (`>=`: of equal scores the last wins)."""

    def _make_blocks(self):
        super()._make_blocks()
        port = self.out_port
        port.argmax._MustUse__silence = True             # replaced, never built
        port.argmax = ArgmaxTracker(port.classes, port.layout.bits, fault="ties_last")


def test_broken_tie_rule_is_caught():
    """The simulation comparison fails on a tracker that breaks ties the other way, and names the output
    port (every buffer matches)."""
    program = classifier("duplicate")
    x = varied_windows(program, 2)
    want = run_program(program, x)
    sim = simulate(program, x, LANES, design=TiesLastAccelerator)
    np.testing.assert_array_equal(sim.words[:, :-1], want[:, :-1])
    np.testing.assert_array_equal(sim.words[:, -1], want[:, -1] + 1)
    text = first_mismatch(program, x, sim, want)
    assert "output word 4" in text and "the difference is in the output port" in text, text


def test_plan_refuses_what_the_port_cannot_compute():
    program = classifier()
    last = program.steps[-1]
    out = program.buffers["out"]
    wide = dataclasses.replace(out, cols=out.cols + 1)
    moved = dataclasses.replace(program, buffers={**program.buffers, "out": wide},
                                steps=program.steps[:-1] + [dataclasses.replace(last, out_col=4)])
    with pytest.raises(IntformerError, match="output port"):
        make_plan(moved, LANES)
    narrow = dataclasses.replace(program, buffers={**program.buffers, "out": dataclasses.replace(out, bits=2)},
                                 steps=program.steps[:-1] + [ArgmaxStep("argmax", "out", "out", 1, 4, 4)])
    with pytest.raises(IntformerError, match="does not fit"):
        make_plan(narrow, LANES)


def test_resources_count_the_tracker():
    program = classifier()
    assert estimate(program, LANES).parts["argmax"] > 0
    assert "argmax" not in estimate(scores_only(program), LANES).parts


# ---------------------------------------------------------------------------------------------- formal
@pytest.mark.parametrize("classes", [3, 4])
def test_tracker_proof_passes(classes, tmp_path):
    r = sby.run_proof(argmax_proof(classes, 6), tmp_path, timeout=300)
    assert r.status == "pass", r


def test_tracker_proof_at_the_programs_widths(tmp_path):
    """`argmax_proofs`: the program's class count and output bits (none for a forecaster)."""
    program = classifier(classes=5, bits=4)
    (proof,) = argmax_proofs(program)
    assert f"c5_b{program.buffers['out'].bits}" in proof.name
    assert sby.run_proof(proof, tmp_path, timeout=300).status == "pass"
    assert argmax_proofs(scores_only(program)) == []


def test_tracker_proof_fails_on_the_wrong_tie_rule(tmp_path):
    """`>=` instead of `>`: a counterexample from reset (two equal scores give class 1)."""
    r = sby.run_proof(argmax_proof(4, 6, fault="ties_last"), tmp_path, timeout=300)
    assert r.status == "fail" and r.step == "basecase" and r.from_reset, r


# ------------------------------------------------------------------------------------------ the link
@pytest.fixture(scope="module")
def link_program():
    return classifier("duplicate", classes=4, bits=4, seed=3)


def _check_reply(frame, seq, program, window):
    assert frame.cmd == P.RESULT and frame.seq == seq, frame
    words = P.result_words(frame.payload)
    want = run_program(program, np.asarray(window)[None])[0]
    np.testing.assert_array_equal(words, want)
    scores, cls = P.classifier_reply(words, P.program_classes(program))
    assert len(scores) == 4 and cls == int(intops.argmax_first(scores))
    return cls


def test_uart_reply_carries_scores_and_class(link_program):
    from test_board_sim import LANES as SIM_LANES, infer, run
    windows = varied_windows(link_program, 2)
    info = P.DeviceInfo.from_program(link_program, SIM_LANES)
    assert info.n_outputs == 5
    seen = []

    async def script(h):
        for i, window in enumerate(windows):
            await h.send(infer(10 + i, window))
            (reply,) = await h.replies(1)
            seen.append(_check_reply(reply, 10 + i, link_program, window))

    assert run(link_program, script) == 2 and len(seen) == 2


def test_spi_reply_carries_scores_and_class(link_program):
    from test_board_spi import infer, run_device
    windows = varied_windows(link_program, 2, seed=4)

    async def script(h):
        await h.send(infer(1, windows[0]) + infer(2, windows[1]))
        r1, r2 = await h.replies(2)
        _check_reply(r1, 1, link_program, windows[0])
        _check_reply(r2, 2, link_program, windows[1])

    assert run_device(link_program, script) == 2


class _ReplyPort:
    """A port that answers each INFER with the given words (what a device would send)."""

    def __init__(self, words_for):
        self.words_for, self.out, self.decoder = words_for, bytearray(), P.FrameDecoder()

    def write(self, data):
        for frame in self.decoder.feed(data):
            self.out += P.encode_frame(P.RESULT, frame.seq, P.result_payload(self.words_for(frame.payload)))

    def read(self, n):
        data, self.out[:] = bytes(self.out[:n]), self.out[n:]
        return data


def test_host_decodes_the_class_as_its_own_field(link_program):
    info = P.DeviceInfo.from_program(link_program, LANES)
    x = varied_windows(link_program, 3)
    want = run_program(link_program, x)
    by_payload = {P.infer_payload(w, info): want[i] for i, w in enumerate(x)}
    result = Session(_ReplyPort(by_payload.__getitem__)).run(x, want, info, classes=4)
    assert result["tally"]["matched"] == 3 and result["classes"] == [int(c) for c in want[:, -1]]
    wrong = want.copy()
    wrong[:, -1] += 1                                    # what a device that breaks ties the other way says
    result = Session(_ReplyPort(by_payload.__getitem__)).run(x, wrong, info, classes=4)
    assert result["first_mismatch"]["field"] == "class"
    with pytest.raises(IntformerError, match="5 words"):
        Session(_ReplyPort(by_payload.__getitem__)).run(x, want, info, classes=5)
    with pytest.raises(IntformerError, match="outside 0..3"):
        P.classifier_reply([1, 2, 3, 4, 4], 4)
