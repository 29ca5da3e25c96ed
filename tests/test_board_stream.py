"""Streaming (the protocol's STEP): the whole device (`boards.top.SimTop`: UART with the real divisor, link,
accelerator) in board-level simulation, fed one sample of real data per STEP, every RESULT word for word equal
to `model.intref.run_program` on the window ending at that sample; the ring's FILLING replies, its errors and
recovery, and a ring that starts its window a row late (`Link(fault="ring_start")`) caught."""
from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pytest

from intformer.boards import protocol as P
from intformer.boards import top
from intformer.boards.line_sim import simulate_line
from intformer.boards.link import Link
from intformer.boards.top import SimTop
from intformer.boards.uart import divisor_for
from intformer.model.data import Scaler, load_series, make_windows
from intformer.model.intref import quantize_input, run_program
from program_factory import random_program

LANES = 2
CLOCK_HZ = 12e6                          # the iCEBreaker's oscillator


@pytest.fixture(scope="module")
def program():
    """n = 6 time steps of m = 2 series (a row is 2 codes: the ring's row order matters), d = 4, 8 bits, the
    last-value skip (16-bit output words)."""
    return random_program(np.random.default_rng(21), n=6, m=2, d=4, ffn=8, horizon=2, bits=8, skip=True)


@pytest.fixture(scope="module")
def samples(program):
    """The embedded weather series' first two columns (test split), scaled and quantized: codes (T, 2), one
    row per time step, consecutive."""
    series = load_series(multivariate=True)
    series = dataclasses.replace(series, values=series.values[:, :2], columns=series.columns[:2])
    windows = make_windows(series, Scaler.fit(series), program.input.rows, 1, "test")
    codes = quantize_input(program, windows.x[:40])             # (40, n, 2), window k+1 = window k shifted
    assert np.array_equal(codes[1:, :-1], codes[:-1, 1:])
    rows = np.concatenate([codes[0], codes[1:, -1]])
    assert len(np.unique(rows, axis=0)) > 10                    # real, varying data
    return rows


def window_at(rows, k, n):
    """The window ending at sample k (oldest row first)."""
    return rows[k - n + 1:k + 1]


def step(seq, row, info, n):
    return P.encode_frame(P.STEP, seq, P.step_payload(row, info, n))


def check_result(frame, seq, program, window):
    assert (frame.cmd, frame.seq) == (P.RESULT, seq), frame
    np.testing.assert_array_equal(P.result_words(frame.payload), run_program(program, window[None])[0])


@pytest.mark.parametrize("baud", [3_000_000, 1_000_000])
def test_stream_equals_reference(program, samples, baud):
    """From power-up: rows - 1 STEPs answered FILLING (1..rows - 1 rows held), then a RESULT per STEP, two
    STEPs outstanding (the next arrives while the last window computes); an INFER in mid-stream refills the
    ring, and STEPs go on from its window. Every RESULT equals the reference's on its window."""
    divisor = divisor_for(CLOCK_HZ, baud)
    dut = SimTop(program, LANES, divisor)
    info, n = dut.info, program.input.rows
    results = []

    async def script(h):
        for k in range(n - 1):
            await h.send(step(k + 1, samples[k], info, n))
            (reply,) = await h.replies(1)
            assert (reply.cmd, reply.seq, P.filling_rows(reply.payload)) == (P.FILLING, k + 1, k + 1), reply
        await h.send(step(n, samples[n - 1], info, n))
        outstanding = [n - 1]
        for k in range(n, 24):                                  # two in flight: send, then read the oldest
            await h.send(step(k % 255 + 1, samples[k], info, n))
            outstanding.append(k)
            (reply,) = await h.replies(1, limit=200_000)
            j = outstanding.pop(0)
            check_result(reply, j % 255 + 1, program, window_at(samples, j, n))
            results.append(j)
        (reply,) = await h.replies(1, limit=200_000)
        check_result(reply, outstanding[0] % 255 + 1, program, window_at(samples, outstanding[0], n))
        # an INFER of the window ending at sample 30 refills the ring; STEP 31 follows it
        await h.send(P.encode_frame(P.INFER, 100, P.infer_payload(window_at(samples, 30, n), info)))
        check_result(*(await h.replies(1, limit=200_000)), 100, program, window_at(samples, 30, n))
        await h.send(step(101, samples[31], info, n))
        check_result(*(await h.replies(1, limit=200_000)), 101, program, window_at(samples, 31, n))
        results.extend([23, 30, 31])

    line = simulate_line(dut, script, CLOCK_HZ)
    assert line.starts == len(results) == 24 - (n - 1) + 2


def test_stream_errors_leave_the_ring(program, samples):
    """A STEP that fails (bad CRC, bad length, busy) leaves the ring as it was: resent, it is answered with the
    right window. Three STEPs back to back while a window computes: the third finds one waiting (ERROR 6)."""
    dut = SimTop(program, LANES, divisor_for(CLOCK_HZ, 3_000_000))
    info, n = dut.info, program.input.rows

    async def script(h):
        await h.send(P.encode_frame(P.INFER, 1, P.infer_payload(window_at(samples, n - 1, n), info)))
        check_result(*(await h.replies(1, limit=200_000)), 1, program, window_at(samples, n - 1, n))
        bad = bytearray(step(2, samples[n], info, n))
        bad[5] ^= 0x01                                          # a payload bit
        await h.send(bytes(bad))
        (reply,) = await h.replies(1)
        assert (reply.cmd, reply.seq, reply.payload) == (P.ERROR, 2, bytes([P.ERR_CRC]))
        await h.send(P.encode_frame(P.STEP, 3, P.step_payload(samples[n], info, n)[:-1]))
        (reply,) = await h.replies(1)
        assert (reply.cmd, reply.seq, reply.payload) == (P.ERROR, 3, bytes([P.ERR_LENGTH]))
        await h.send(step(4, samples[n], info, n))
        check_result(*(await h.replies(1, limit=200_000)), 4, program, window_at(samples, n, n))
        # a burst of three: the first computes, the second waits, the third is busy (the ring untouched)
        await h.send(b"".join(step(5 + i, samples[n + 1 + i], info, n) for i in range(3)))
        r = await h.replies(3, limit=200_000)
        check_result(r[0], 5, program, window_at(samples, n + 1, n))
        check_result(r[1], 6, program, window_at(samples, n + 2, n))
        assert (r[2].cmd, r[2].seq, r[2].payload) == (P.ERROR, 7, bytes([P.ERR_BUSY])), r[2]
        await h.send(step(8, samples[n + 3], info, n))
        check_result(*(await h.replies(1, limit=200_000)), 8, program, window_at(samples, n + 3, n))
        # an INFER cut off mid-payload (timeout) empties the ring: the next STEP finds 1 row
        await h.send(P.encode_frame(P.INFER, 9, P.infer_payload(window_at(samples, n, n), info))[:9])
        (reply,) = await h.replies(1, limit=200_000)
        assert (reply.cmd, reply.payload) == (P.ERROR, bytes([P.ERR_TIMEOUT]))
        await h.send(step(10, samples[0], info, n))
        (reply,) = await h.replies(1)
        assert (reply.cmd, reply.seq, P.filling_rows(reply.payload)) == (P.FILLING, 10, 1)

    line = simulate_line(dut, script, CLOCK_HZ)
    assert line.starts == 5


def test_series_tokens_cannot_stream(program, samples):
    """A program with series tokens (the window transposed) has no ring: STEP is an unknown command, and the
    host refuses to stream it with one line."""
    series = dataclasses.replace(program, series_tokens=True)
    dut = SimTop(series, LANES, divisor_for(CLOCK_HZ, 3_000_000))

    async def script(h):
        await h.send(P.encode_frame(P.STEP, 1, bytes(2)))
        (reply,) = await h.replies(1)
        assert (reply.cmd, reply.payload) == (P.ERROR, bytes([P.ERR_COMMAND]))

    simulate_line(dut, script, CLOCK_HZ)
    with pytest.raises(P.IntformerError, match="needs a model with time tokens"):
        P.stream_rows(series)


@pytest.mark.parametrize("ring", ["real", "ring_start"])
def test_stream_check_fails_on_a_faulty_ring(program, samples, ring, monkeypatch):
    """The stream check above with a ring whose windows start a row late (`Link(fault="ring_start")`: the
    newest row first, then the oldest ones) fails at the first RESULT; with the real ring it passes."""
    if ring != "real":
        monkeypatch.setattr(top, "Link", functools.partial(Link, fault=ring))
    dut = SimTop(program, LANES, divisor_for(CLOCK_HZ, 3_000_000))
    info, n = dut.info, program.input.rows
    got = []

    async def script(h):
        await h.send(P.encode_frame(P.INFER, 1, P.infer_payload(window_at(samples, n - 1, n), info)))
        for k in range(n, n + 4):
            await h.send(step(k, samples[k], info, n))
            got.extend(await h.replies(1, limit=200_000))
        got.extend(await h.replies(1, limit=200_000))

    simulate_line(dut, script, CLOCK_HZ)
    seqs = [1] + list(range(n, n + 4))
    windows = [window_at(samples, k, n) for k in [n - 1] + list(range(n, n + 4))]
    if ring == "real":
        for frame, seq, window in zip(got, seqs, windows):
            check_result(frame, seq, program, window)
        return
    with pytest.raises(AssertionError):
        check_result(got[0], seqs[0], program, windows[0])
    rotated = np.roll(windows[0], -1, axis=0)                   # what the faulty ring computed
    np.testing.assert_array_equal(P.result_words(got[0].payload), run_program(program, rotated[None])[0])


# ------------------------------------------------------------------------------------- the ring, proven
RING_INFO = P.DeviceInfo(n_inputs=6, n_outputs=1, bits=8, signed=True, lanes=LANES, checksum=0)


@pytest.mark.parametrize("fault", [None, "ring_start"])
def test_ring_read_order_proof(fault, tmp_path):
    """The feeder proof (`link_streams_harness`) on a ring of 3 rows of 2 codes: each window's codes go out in
    ring order from its oldest row, wrapping at the buffer's end (unbounded); with a ring whose windows start
    a row late it fails, at the read address."""
    from intformer.accel import sby
    from intformer.boards.link_formal import link_streams_harness
    proof = sby.Proof("ring_order", lambda: link_streams_harness(RING_INFO, 1000, rows=3, fault=fault), "prove", 4)
    r = sby.run_proof(proof, tmp_path, timeout=300)
    assert r.status == ("pass" if fault is None else "fail"), r


def test_step_accepted_proof(tmp_path):
    """The good-frame proof (`link_accepts_harness`: INFO, INFER or STEP from any state in which the parser
    hunts, with the reply the protocol prescribes, FILLING's row count included) on a ring of 3 rows of 2."""
    from intformer.accel import sby
    from intformer.boards.link_formal import link_accepts_harness
    proof = sby.Proof("step_accepted", lambda: link_accepts_harness(RING_INFO, 1000, rows=3), "prove", 4)
    r = sby.run_proof(proof, tmp_path, timeout=300)
    assert r.status == "pass", r


# --------------------------------------------------------------------------- the host: `infer --stream`
class RingDevice:
    """A stand-in device with the protocol's ring (a Python list of rows), on a pseudo-terminal
    (`test_board_cli.FakeDevice`'s thread and INFO); mode "busy_once": the third STEP is answered ERROR 6
    and its row not taken, so the host must resynchronize."""

    def __new__(cls, program, mode="ok"):
        from test_board_cli import FakeDevice

        class Ring(FakeDevice):
            def _reply(self, frame):
                x = program.input
                if frame.cmd == P.INFER:
                    self.ring = list(self._codes(frame.payload)[0])
                    self.infer_frames += 1
                elif frame.cmd == P.STEP:
                    self.steps += 1
                    if mode == "busy_once" and self.steps == 3:
                        return P.encode_frame(P.ERROR, frame.seq, bytes([P.ERR_BUSY]))
                    self.ring = (self.ring + [P.infer_codes(frame.payload, self.info)])[-x.rows:]
                    if len(self.ring) < x.rows:
                        return P.encode_frame(P.FILLING, frame.seq, len(self.ring).to_bytes(2, "little"))
                else:
                    return super()._reply(frame)
                words = run_program(program, np.asarray(self.ring)[None])[0]
                return P.encode_frame(P.RESULT, frame.seq, P.result_payload(words))

        dev = Ring.__new__(Ring)
        dev.ring, dev.steps, dev.infer_frames = [], 0, 0
        Ring.__init__(dev, program)
        return dev


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, torch_one_thread):
    from cli_helpers import SMALL, invoke, ok
    out = tmp_path_factory.mktemp("stream_cli") / "run"
    ok(invoke("train", *SMALL, "--out", out, "--json"))
    return out


@pytest.fixture
def ring_device(run_dir):
    from intformer.model import runfolder
    made = []

    def make(mode="ok"):
        made.append(RingDevice(runfolder.open_run(run_dir).program, mode))
        return made[-1]

    yield make
    for dev in made:
        dev.close()


def test_infer_stream_bit_exact(run_dir, ring_device):
    """`infer --stream`: one INFER, then one STEP per sample; every forecast bit-exact; the text says so."""
    import json

    from cli_helpers import invoke, ok
    dev = ring_device()
    r = json.loads(ok(invoke("infer", run_dir, "--port", dev.path, "--stream", "--windows", "20", "--json")).stdout)
    assert (r["mode"], r["windows"], r["matched"], r["failed"], r["resyncs"]) == ("stream", 20, 20, 0, 0)
    assert r["frames_sent"] == 20 and (dev.infer_frames, dev.steps) == (1, 19)
    assert r["baud"] == 115200 and r["baud_from"] == "default"
    text = ok(invoke("infer", run_dir, "--port", dev.path, "--stream", "--windows", "4")).stdout
    assert "all bit-exact" in text and "sample by sample" in text


def test_infer_stream_resynchronizes_after_a_failed_step(run_dir, ring_device):
    """A STEP answered busy (its row not taken): the later one in flight is dropped, an INFER of the failed
    sample's window refills the ring, and the stream goes on, every forecast still bit-exact."""
    import json

    from cli_helpers import invoke, ok
    dev = ring_device("busy_once")
    r = json.loads(ok(invoke("infer", run_dir, "--port", dev.path, "--stream", "--windows", "10", "--timeout", "0.3",
                             "--json")).stdout)
    assert (r["matched"], r["failed"], r["resyncs"], r["retries"]) == (10, 0, 1, 1)
    assert r["device_errors"] == {"busy": 1} and dev.infer_frames == 2


def test_infer_takes_the_builds_baud(run_dir, ring_device):
    """Without --baud, infer uses the baud rate the run's UART build recorded in build.json."""
    import json

    from cli_helpers import invoke, ok
    from test_board_cli import fake_build
    folder = fake_build(run_dir, "icebreaker", lanes=2, baud=1_000_000, link="uart")
    try:
        dev = ring_device()
        r = json.loads(ok(invoke("infer", run_dir, "--port", dev.path, "--windows", "2", "--json")).stdout)
        assert r["baud"] == 1_000_000 and r["baud_from"] == str(folder / "build.json")
        r = json.loads(ok(invoke("infer", run_dir, "--port", dev.path, "--windows", "2", "--baud", "3000000",
                                 "--json")).stdout)
        assert (r["baud"], r["baud_from"]) == (3_000_000, "--baud")
    finally:
        import shutil
        shutil.rmtree(folder)


def test_a_baud_rate_that_cannot_be_made_is_refused(run_dir, tmp_path):
    """A rate that is no standard one, and one the 12 MHz clock cannot make within 2 % (2.5 Mbaud: divisor
    5, 4 % off), are refused with one line before any work, naming rates that work."""
    from cli_helpers import invoke, user_error
    user_error(invoke("infer", run_dir, "--port", "/dev/null", "--baud", "123456"), "not a standard serial rate")
    out = tmp_path / "build"
    user_error(invoke("build", run_dir, "--board", "icebreaker", "--baud", "2500000", "--out", out),
               "off by 4.0%", "choose another baud rate", "1,000,000", "3,000,000")
    assert not out.exists()
    user_error(invoke("build", run_dir, "--board", "icebreaker", "--baud", "4000000", "--out", out),
               "not a standard serial rate up to 3,000,000")
