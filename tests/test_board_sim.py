"""The whole device (`boards.top.SimTop`: UART, link, accelerator) in simulation, driven by a simulated host
bit by bit on its rx pin and decoding its tx pin: forecasts word for word equal to `model.intref`, every
malformed frame answered with the right ERROR, and the link recovering after each."""
from __future__ import annotations

import numpy as np
import pytest
from amaranth.sim import Simulator

from intformer.boards import protocol as P
from intformer.boards.top import SimTop
from intformer.model.intref import run_program
from program_factory import random_inputs, random_program

DIVISOR = 4
LANES = 2


class Host:
    """The host's side of the line inside a testbench: `send` bytes (8N1, LSB first), `idle`, and
    `replies` (the frames decoded from tx since the last call)."""

    def __init__(self, ctx, dut, received):
        self.ctx, self.dut, self.received = ctx, dut, received
        self.taken = 0

    async def send(self, data: bytes):
        for byte in data:
            for bit in [0] + [(byte >> i) & 1 for i in range(8)] + [1]:
                self.ctx.set(self.dut.rx, bit)
                await self.ctx.tick().repeat(DIVISOR)

    async def idle(self, cycles: int):
        await self.ctx.tick().repeat(cycles)

    async def replies(self, n: int, limit: int = 20_000) -> list[P.Frame]:
        for _ in range(0, limit, 16):
            if len(self.received) >= self.taken + n:
                break
            await self.ctx.tick().repeat(16)
        got = self.received[self.taken:]
        self.taken = len(self.received)
        assert len(got) == n, f"expected {n} replies, got {got}"
        return got

    async def quiet(self):
        """Stay silent past the device's frame timeout (the host rule after an error)."""
        await self.idle(self.dut.timeout_cycles + 8 * DIVISOR)


def run(program, script, timeout_cycles=None):
    """Run `script(host)` against a fresh SimTop; returns the replies left unread and the number of
    accelerator starts."""
    dut = SimTop(program, LANES, DIVISOR, timeout_cycles=timeout_cycles)
    received, starts = [], [0]
    decoder = P.FrameDecoder()

    async def host(ctx):
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(4 * DIVISOR)
        h = Host(ctx, dut, received)
        await script(h)
        await h.idle(20 * DIVISOR)
        assert received[h.taken:] == [], f"unexpected replies {received[h.taken:]}"

    async def listen(ctx):                          # an 8N1 receiver sampling mid-bit
        wait, bits = None, []
        async for _, _, tx, start, acc_error in ctx.tick().sample(dut.tx, dut.accelerator.start, dut.acc_error):
            assert not acc_error
            starts[0] += start
            if wait is None:
                if not tx:
                    wait, bits = DIVISOR // 2 + DIVISOR - 1, []
                continue
            if wait:
                wait -= 1
                continue
            bits.append(tx)
            wait = DIVISOR - 1
            if len(bits) == 9:
                assert bits[8] == 1, "stop bit"
                received.extend(decoder.feed(bytes([sum(b << i for i, b in enumerate(bits[:8]))])))
                wait = None

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(host)
    sim.add_testbench(listen, background=True)
    sim.run()
    assert decoder.errors == [] and decoder.pending == 0, decoder.errors
    return starts[0]


def infer(seq, codes):
    return P.encode_frame(P.INFER, seq, P.infer_payload(codes))


def expect_result(frame, seq, program, codes):
    assert frame.cmd == P.RESULT and frame.seq == seq, frame
    want = run_program(program, np.asarray(codes)[None])[0]
    np.testing.assert_array_equal(P.result_words(frame.payload), want)


def expect_error(frame, seq, code):
    assert (frame.cmd, frame.seq, frame.payload) == (P.ERROR, seq, bytes([code])), \
        f"{frame} is not ERROR {code} ({P.ERROR_NAMES[code]}) for seq {seq}"


@pytest.fixture(scope="module")
def program():
    """n=4, m=1, d=4, ffn=8, 2 outputs, 8 bits, the last-value skip (16-bit signed output words)."""
    return random_program(np.random.default_rng(11), n=4, m=1, d=4, ffn=8, horizon=2, bits=8, skip=True)


@pytest.fixture(scope="module")
def narrow_program():
    """The same shape with 4-bit codes (input codes -8..7) and raw accumulator outputs."""
    return random_program(np.random.default_rng(13), n=4, m=1, d=4, ffn=8, horizon=2, bits=4)


def test_forecasts_equal_reference(program):
    pool = random_inputs(np.random.default_rng(0), program, 32)
    words = run_program(program, pool)
    windows = pool[[int(np.argmin(words[:, 0])), int(np.argmax(words[:, 0])), 0]]   # 0: holds -128 and 127
    expected = run_program(program, windows)
    assert (expected < 0).any() and (expected > 0).any()         # both signs of words on the wire

    async def script(h):
        await h.send(P.encode_frame(P.INFO, 200))
        (reply,) = await h.replies(1)
        assert (reply.cmd, reply.seq) == (P.INFO_REPLY, 200)
        assert P.DeviceInfo.from_payload(reply.payload) == P.DeviceInfo.from_program(program, LANES)
        for i, window in enumerate(windows):
            await h.send(infer(i * 100 + 7, window))
            (reply,) = await h.replies(1)
            expect_result(reply, i * 100 + 7, program, window)

    assert run(program, script) == 3


@pytest.mark.parametrize("link", ["real", "result_order", "crc_poly"])
def test_forecast_check_fails_on_a_faulty_link(program, link, monkeypatch):
    """The device check above (one INFER, its RESULT decoded and compared word for word with
    `model.intref`) with a faulty `Link` in the device (tests/faulty_blocks.py) fails, at the word or the
    reply it names, and passes with the real one. "result_order" (a RESULT word's bytes sent most
    significant first): the frame's CRC is good, so the first word that differs is the reference word with
    its 4 bytes reversed. "crc_poly" (the receiver's CRC with one wrong polynomial bit): the good INFER is
    answered ERROR 1 (bad CRC) and the accelerator never starts."""
    import faulty_blocks as F
    from intformer.boards import top
    if link != "real":
        monkeypatch.setattr(top, "Link", {"result_order": F.SwappedResultLink, "crc_poly": F.BadCrcLink}[link])
    window = random_inputs(np.random.default_rng(3), program, 1)[0]
    want = run_program(program, window[None])[0]
    replies = []

    async def script(h):
        await h.send(infer(7, window))
        replies.extend(await h.replies(1))

    starts = run(program, script)
    (reply,) = replies
    if link == "real":
        expect_result(reply, 7, program, window)
        assert starts == 1
        return
    with pytest.raises(AssertionError):
        expect_result(reply, 7, program, window)
    if link == "crc_poly":
        expect_error(reply, 7, P.ERR_CRC)
        assert starts == 0
        return
    got = P.result_words(reply.payload)
    first = int(np.flatnonzero(got != want)[0])
    swapped = int.from_bytes(int(want[first]).to_bytes(4, "little", signed=True), "big", signed=True)
    assert got[first] == swapped != want[first], (first, got, want)
    assert starts == 1


def test_errors_and_recovery(narrow_program):
    prog = narrow_program
    rng = np.random.default_rng(1)
    w = random_inputs(rng, prog, 12)
    n = prog.input.rows * prog.input.cols
    results = [0]

    async def good(h, seq, window):
        await h.send(infer(seq, window))
        (reply,) = await h.replies(1)
        expect_result(reply, seq, prog, window)
        results[0] += 1

    async def script(h):
        # bad CRC (one payload bit flipped): ERROR 1, the accelerator never started; then a good frame
        bad = bytearray(infer(1, w[0]))
        bad[6] ^= 0x04
        await h.send(bytes(bad))
        expect_error(*(await h.replies(1)), 1, P.ERR_CRC)
        bad = bytearray(infer(2, w[0]))
        bad[-1] ^= 0x80                                          # the CRC itself
        await h.send(bytes(bad))
        expect_error(*(await h.replies(1)), 2, P.ERR_CRC)
        await good(h, 3, w[0])

        # truncated mid-payload, and right after SOF and CMD: ERROR 4 (SEQ 0 when it never came)
        await h.send(infer(4, w[1])[:7])
        expect_error(*(await h.replies(1)), 4, P.ERR_TIMEOUT)
        await good(h, 5, w[1])
        await h.send(bytes([P.SOF, P.INFER]))
        expect_error(*(await h.replies(1)), 0, P.ERR_TIMEOUT)
        await good(h, 6, w[2])

        # wrong lengths: short (whole frame read, then ERROR 2), long (ERROR 2 from the header alone)
        await h.send(P.encode_frame(P.INFER, 7, P.infer_payload(w[3]) [:n - 1]))
        expect_error(*(await h.replies(1)), 7, P.ERR_LENGTH)
        await good(h, 8, w[3])
        await h.send(P.encode_frame(P.INFER, 9, P.infer_payload(w[4]) + bytes([1])))
        expect_error(*(await h.replies(1)), 9, P.ERR_LENGTH)
        await h.quiet()
        await good(h, 10, w[4])
        await h.send(P.encode_frame(P.INFO, 11, b"\x00"))
        expect_error(*(await h.replies(1)), 11, P.ERR_LENGTH)

        # unknown command; a code outside the 4-bit range
        await h.send(P.encode_frame(0x33, 12, b"\x01\x02"))
        expect_error(*(await h.replies(1)), 12, P.ERR_COMMAND)
        await h.send(P.encode_frame(P.INFER, 13, bytes([1, 2, 100, 3])))
        expect_error(*(await h.replies(1)), 13, P.ERR_CODE)
        await good(h, 14, w[5])

        # garbage (no SOF) around and between frames sent back to back: both answered, in order
        await h.send(b"\x00\x13\xff" + infer(15, w[6]) + b"\x5a\x77" + P.encode_frame(P.INFO, 16) + b"\x01")
        r1, r2 = await h.replies(2)
        expect_result(r1, 15, prog, w[6])
        results[0] += 1
        assert (r2.cmd, r2.seq) == (P.INFO_REPLY, 16)
        # garbage holding an SOF, then silence: ERROR 4, and the next frame is fine
        await h.send(b"\x00\xa5\x01")
        expect_error(*(await h.replies(1)), 0, P.ERR_TIMEOUT)
        await good(h, 17, w[7])

        # four INFERs and an INFO back to back while the accelerator computes: replies in request order,
        # each INFER either its correct RESULT or ERROR 6 (one window computes, one waits), never lost
        burst = [20, 21, 22, 23]
        await h.send(b"".join(infer(s, w[8 + i]) for i, s in enumerate(burst)) + P.encode_frame(P.INFO, 24))
        replies = await h.replies(5)
        assert [r.seq for r in replies] == burst + [24]
        busy = 0
        for i, r in enumerate(replies[:4]):
            if r.cmd == P.ERROR:
                expect_error(r, burst[i], P.ERR_BUSY)
                busy += 1
            else:
                expect_result(r, burst[i], prog, w[8 + i])
                results[0] += 1
        assert 1 <= busy <= 2 and replies[0].cmd == P.RESULT and replies[1].cmd == P.RESULT
        assert replies[4].cmd == P.INFO_REPLY
        await good(h, 25, w[11])

    starts = run(prog, script)
    assert starts == results[0]                   # the accelerator ran exactly the windows answered


def test_reply_words_are_sign_extended(narrow_program):
    """Raw accumulator words narrower than 32 bits reach the host sign-extended (checked on windows that
    make negative and positive words)."""
    prog = narrow_program
    rng = np.random.default_rng(5)
    windows = random_inputs(rng, prog, 16)
    words = run_program(prog, windows)
    pick = [int(np.argmin(words[:, 0])), int(np.argmax(words[:, 0]))]
    assert words[pick[0], 0] < 0 < words[pick[1], 0]

    async def script(h):
        for i in pick:
            await h.send(infer(i, windows[i]))
            expect_result(*(await h.replies(1)), i, prog, windows[i])

    run(prog, script)


@pytest.mark.parametrize("input_bits", [10, 12])
def test_wide_input_codes_two_bytes_each(input_bits):
    """Input codes over 8 bits (a model trained with --io-bits 10..12: level steps read them, the rest stays
    at 8 bits) travel as 2 bytes each, 16-bit little-endian two's complement: INFO_REPLY tells the host so,
    every forecast equals the integer reference word for word (windows holding the extreme codes included),
    and a wrong LEN (one byte per code, or an odd byte count), or a code outside the input range in its
    16 bits, gets the ERROR reply; the link recovers after each."""
    prog = random_program(np.random.default_rng(17 + input_bits), n=4, m=2, d=4, ffn=8, horizon=2, bits=8,
                          skip=True, input_bits=input_bits)
    x = prog.input
    assert x.bits == input_bits and x.signed
    info = P.DeviceInfo.from_program(prog, LANES)
    assert info.bytes_per_code == 2 and info.infer_len == 2 * info.n_inputs
    lo, hi = x.range
    rng = np.random.default_rng(3)
    windows = random_inputs(rng, prog, 4)
    windows[1] = lo
    windows[2] = hi
    assert np.abs(windows).max() > 127
    n = info.n_inputs

    def infer2(seq, codes):
        return P.encode_frame(P.INFER, seq, P.infer_payload(codes, info))

    async def script(h):
        await h.send(P.encode_frame(P.INFO, 200))
        (reply,) = await h.replies(1)
        assert P.DeviceInfo.from_payload(reply.payload) == info
        for i, window in enumerate(windows):
            await h.send(infer2(i + 1, window))
            expect_result(*(await h.replies(1)), i + 1, prog, window)
        # one byte per code (LEN n): ERROR 2 after the whole frame
        await h.send(P.encode_frame(P.INFER, 10, P.infer_payload(windows[0] & 0x7F)))
        expect_error(*(await h.replies(1)), 10, P.ERR_LENGTH)
        # an odd LEN, one byte short
        await h.send(P.encode_frame(P.INFER, 11, P.infer_payload(windows[0], info)[:2 * n - 1]))
        expect_error(*(await h.replies(1)), 11, P.ERR_LENGTH)
        # longer than n_inputs x 2: ERROR 2 from the header alone, then silence for the frame timeout
        await h.send(P.encode_frame(P.INFER, 12, P.infer_payload(windows[0], info) + b"\x00\x00"))
        expect_error(*(await h.replies(1)), 12, P.ERR_LENGTH)
        await h.quiet()
        await h.send(infer2(13, windows[3]))
        expect_result(*(await h.replies(1)), 13, prog, windows[3])
        # a code just outside the input range (and one with a high byte that is no sign extension)
        for seq, bad in ((14, hi + 1), (15, 0x4000)):
            codes = windows[0].copy().reshape(-1)
            codes[n - 1] = bad
            await h.send(P.encode_frame(P.INFER, seq, P.infer_payload(codes, bytes_per_code=2)))
            expect_error(*(await h.replies(1)), seq, P.ERR_CODE)
        await h.send(infer2(16, windows[0]))
        expect_result(*(await h.replies(1)), 16, prog, windows[0])

    assert run(prog, script) == len(windows) + 2
