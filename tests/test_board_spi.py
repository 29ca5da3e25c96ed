"""The SPI link: `boards.spi.SPIPeripheral` against its golden model (`SPIModel`) under hypothesis; the whole
SPI device (`boards.top.SpiSimTop`: SPI peripheral, link, accelerator) driven by a simulated SPI host with
framed windows; the host side (`boards.spi_host`) against a fake spidev; and the SPI board tops and build
options."""
from __future__ import annotations

import random
import sys

import numpy as np
import pytest
from amaranth.sim import Simulator
from hypothesis import HealthCheck, given, settings, strategies as st

from intformer.boards import protocol as P
from intformer.boards.spi import FILLER, MIN_HALF_PERIOD, SPIModel, SPIPeripheral
from intformer.boards.spi_host import FillerStripper, SpiPort, open_spi
from intformer.boards.top import SpiSimTop
from intformer.model.errors import IntformerError
from intformer.model.intref import run_program
from program_factory import random_inputs, random_program


class SpiHost:
    """An SPI host (mode 0, MSB first) inside a testbench. Each SCK phase, the CS lead and the CS high time
    last `phase()` cycles (at least `MIN_HALF_PERIOD`); CIPO is sampled in the last cycle of the low phase
    and must hold through the rising edge (one cycle of setup margin)."""

    def __init__(self, ctx, dut, phase=lambda: MIN_HALF_PERIOD):
        self.ctx, self.dut, self.phase = ctx, dut, phase

    async def _low(self, bit: int) -> int:
        self.ctx.set(self.dut.copi, bit)
        await self.ctx.tick().repeat(self.phase() - 1)
        got = self.ctx.get(self.dut.cipo)
        await self.ctx.tick()
        assert self.ctx.get(self.dut.cipo) == got, "CIPO changed in the cycle before the rising edge"
        return got

    async def transfer(self, data: bytes, partial_bits: int = 0) -> tuple[bytes, int | None]:
        """One transaction: CS low, the bytes of `data` (and `partial_bits` bits of one more, 0xFF), CS
        high. Returns the bytes clocked in and the partial byte's bits."""
        ctx, dut = self.ctx, self.dut
        bits = [(b >> (7 - i)) & 1 for b in data for i in range(8)] + [1] * partial_bits
        got = []
        ctx.set(dut.cs_n, 0)
        for i, bit in enumerate(bits):
            if i:
                ctx.set(dut.sck, 0)
            got.append(await self._low(bit))
            ctx.set(dut.sck, 1)
            await ctx.tick().repeat(self.phase())
        ctx.set(dut.sck, 0)
        await ctx.tick().repeat(self.phase())
        ctx.set(dut.cs_n, 1)
        await ctx.tick().repeat(self.phase())
        out = bytes(sum(b << (7 - i) for i, b in enumerate(got[k:k + 8])) for k in range(0, 8 * len(data), 8))
        partial = sum(b << (partial_bits - 1 - i) for i, b in enumerate(got[8 * len(data):])) if partial_bits \
            else None
        return out, partial


# ------------------------------------------------------------------------------------- the peripheral
transactions = st.lists(st.tuples(st.binary(min_size=0, max_size=5),          # host bytes
                                  st.integers(0, 7),                          # bits of a broken-off byte
                                  st.binary(max_size=7)),                     # bytes the device queues first
                        min_size=1, max_size=6)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(transactions, st.integers(0, 2 ** 32 - 1))
def test_peripheral_equals_model(script, seed):
    """Random bytes both ways, random SCK phases >= the minimum, CS raised between bytes (and sometimes
    mid-byte): the host clocks in exactly what the model says, the device receives exactly the host's
    whole bytes, and no byte the device queued is lost or repeated."""
    timing = random.Random(seed)

    def phase():
        return MIN_HALF_PERIOD + (0 if timing.random() < 0.5 else timing.randint(1, 6))

    clocked, received, model = against_model(SPIPeripheral(fifo_depth=4), script, phase)   # small: backs up
    for (data, partial_bits, _), (got, want) in zip(script, clocked):
        assert got == want, (data, partial_bits)
    assert received == bytes(model.received)


@pytest.mark.parametrize("fault", ["lsb_first", "early_take"])
def test_peripheral_check_fails_on_a_faulty_peripheral(fault):
    """The check above on a faulty peripheral (tests/faulty_blocks.py) fails, at the byte it names, and
    passes on the real one with the same script. "lsb_first" (CIPO from bit 0 of the shift register): the
    host clocks in 0x81 as 0x80 (bit 0 first, then zeros). "early_take" (the byte taken from the queue at the
    7th SCK edge): the byte 0x5A the host broke off after 7 bits is lost, so the next transaction starts
    with the byte after it, 0x3C, where the model (and the real peripheral) send 0x5A again."""
    from faulty_blocks import EarlyTakeSPIPeripheral, LsbFirstSPIPeripheral
    script = {"lsb_first": [(b"\x00\x00", 0, b"\x81\x3c")],
              "early_take": [(b"", 7, b"\x5a\x3c"), (b"\x00\x00", 0, b"")]}[fault]
    faulty = {"lsb_first": LsbFirstSPIPeripheral, "early_take": EarlyTakeSPIPeripheral}[fault]
    clocked, _, _ = against_model(SPIPeripheral(fifo_depth=4), script)
    assert all(got == want for got, want in clocked)
    clocked, _, _ = against_model(faulty(fifo_depth=4), script)
    first = next(i for i, (got, want) in enumerate(clocked) if got != want)
    (got, _), (want, _) = clocked[first]
    byte = next(k for k in range(len(want)) if got[k] != want[k])
    if fault == "lsb_first":
        assert (first, byte, got[byte], want[byte]) == (0, 0, 0x80, 0x81), clocked
    else:
        assert clocked[0] == ((b"", 0x5A >> 1), (b"", 0x5A >> 1))        # the broken-off byte's 7 bits
        assert (first, byte, got[byte], want[byte]) == (1, 0, 0x3C, 0x5A), clocked


def against_model(dut, script, phase=lambda: MIN_HALF_PERIOD):
    """Run `script` (transactions: host bytes, bits of a broken-off byte, bytes the device queues first)
    on `dut` (an `SPIPeripheral`) and on `SPIModel`: for each transaction what the host clocked in from
    `dut` and what the model says it should (bytes and the broken-off byte's bits), the bytes `dut`
    received, and the model."""
    model = SPIModel()
    clocked = []
    feed: list[int] = []
    received = bytearray()

    async def feeder(ctx):
        while True:
            offered = bool(feed)
            ctx.set(dut.input.valid, offered)
            if offered:
                ctx.set(dut.input.payload, feed[0])
            ready = ctx.get(dut.input.ready)
            await ctx.tick()
            if offered and ready:
                feed.pop(0)

    async def sink(ctx):
        ctx.set(dut.output.ready, 1)
        async for _, _, valid, payload, overrun in ctx.tick().sample(dut.output.valid, dut.output.payload,
                                                                    dut.overrun):
            assert not overrun
            if valid:
                received.append(payload)

    async def host(ctx):
        h = SpiHost(ctx, dut, phase)
        await ctx.tick().repeat(4)
        for data, partial_bits, queued in script:
            feed.extend(queued)
            model.send(queued)
            await ctx.tick().repeat(len(queued) + 4)       # into the FIFO (or waiting at its input)
            got = await h.transfer(data, partial_bits)
            clocked.append((got, model.transfer(data, partial_bits)))
        await ctx.tick().repeat(8)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(host)
    sim.add_testbench(feeder, background=True)
    sim.add_testbench(sink, background=True)
    sim.run()
    return clocked, bytes(received), model


def test_model_basics():
    m = SPIModel()
    assert m.transfer(b"\x01\x02") == (b"\x00\x00", None)
    m.send(b"\xa5\x81")
    assert m.transfer(b"\x00", partial_bits=3) == (b"\xa5", 0x81 >> 5)       # the broken-off byte stays
    assert m.transfer(b"\x00\x00\x00") == (b"\x81\x00\x00", None)
    assert bytes(m.received) == b"\x01\x02\x00\x00\x00\x00"
    with pytest.raises(ValueError):
        SPIPeripheral(filler=P.SOF)


def test_peripheral_overrun():
    """A received byte that finds the previous one not taken is dropped, and `overrun` pulses."""
    dut = SPIPeripheral()
    overruns = []

    async def host(ctx):
        ctx.set(dut.output.ready, 0)
        h = SpiHost(ctx, dut)
        await h.transfer(b"\x12\x34")
        assert ctx.get(dut.output.valid) and ctx.get(dut.output.payload) == 0x12
        ctx.set(dut.output.ready, 1)
        await ctx.tick()
        assert not ctx.get(dut.output.valid)

    async def watch(ctx):
        async for _, _, overrun in ctx.tick().sample(dut.overrun):
            overruns.append(overrun)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(host)
    sim.add_testbench(watch, background=True)
    sim.run()
    assert sum(overruns) == 1


# -------------------------------------------------------------------------------- the whole SPI device
@pytest.fixture(scope="module")
def program():
    """n=4, m=1, d=4, ffn=8, 2 outputs, 8 bits, the last-value skip (as tests/test_board_sim.py)."""
    return random_program(np.random.default_rng(11), n=4, m=1, d=4, ffn=8, horizon=2, bits=8, skip=True)


class FrameHost(SpiHost):
    """An SPI host that speaks the protocol: `send` frames (one transaction each, or one per byte), `poll`
    for replies by clocking filler bytes, as `boards.spi_host.SpiPort` does (its `FillerStripper` too)."""

    def __init__(self, ctx, dut):
        super().__init__(ctx, dut)
        self.stripper, self.decoder = FillerStripper(), P.FrameDecoder()
        self.frames: list[P.Frame] = []

    def _take(self, data: bytes) -> None:
        self.frames += self.decoder.feed(self.stripper.feed(data))

    async def send(self, data: bytes, per_byte: bool = False):
        for chunk in ([data[i:i + 1] for i in range(len(data))] if per_byte else [data]):
            self._take((await self.transfer(chunk))[0])

    async def replies(self, n: int, limit: int = 200) -> list[P.Frame]:
        for _ in range(limit):
            if len(self.frames) >= n:
                break
            self._take((await self.transfer(bytes([FILLER]) * max(8, self.stripper.wanted)))[0])
        got, self.frames = self.frames, []
        assert len(got) == n, f"expected {n} replies, got {got}"
        assert self.decoder.errors == [], self.decoder.errors
        return got


def run_device(program, script, timeout_cycles=3000):
    dut = SpiSimTop(program, 2, timeout_cycles=timeout_cycles)
    starts = [0]

    async def host(ctx):
        await ctx.tick().repeat(4)
        h = FrameHost(ctx, dut)
        await script(h)
        for _ in range(3):                                 # nothing more to say
            got, _ = await h.transfer(bytes(8))
            assert got == bytes(8)

    async def watch(ctx):
        async for _, _, start, acc_error in ctx.tick().sample(dut.accelerator.start, dut.acc_error):
            assert not acc_error
            starts[0] += start

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(host)
    sim.add_testbench(watch, background=True)
    sim.run()
    return starts[0]


def infer(seq, codes):
    return P.encode_frame(P.INFER, seq, P.infer_payload(codes))


def expect_result(frame, seq, program, codes):
    assert frame.cmd == P.RESULT and frame.seq == seq, frame
    np.testing.assert_array_equal(P.result_words(frame.payload), run_program(program, np.asarray(codes)[None])[0])


def expect_error(frame, seq, code):
    assert (frame.cmd, frame.seq, frame.payload) == (P.ERROR, seq, bytes([code])), frame


def test_spi_device_forecasts_and_errors(program):
    """INFO; forecasts word for word equal to the integer reference (one frame per transaction, one byte
    per transaction, and two requests in one); a corrupted frame gets ERROR 1 and the next good frame its
    RESULT; a frame cut short is ended by the host's polling zeros (ERROR 1) or, with the host silent, by
    the frame timeout (ERROR 4); the accelerator runs exactly the windows answered."""
    pool = random_inputs(np.random.default_rng(0), program, 32)
    words = run_program(program, pool)
    w = pool[[int(np.argmin(words[:, 0])), int(np.argmax(words[:, 0])), 0, 1, 2, 3]]

    async def script(h):
        await h.send(P.encode_frame(P.INFO, 200))
        (reply,) = await h.replies(1)
        assert (reply.cmd, reply.seq) == (P.INFO_REPLY, 200)
        assert P.DeviceInfo.from_payload(reply.payload) == P.DeviceInfo.from_program(program, 2)
        await h.send(infer(1, w[0]))
        expect_result(*(await h.replies(1)), 1, program, w[0])
        await h.send(infer(2, w[1]), per_byte=True)                 # CS raised between every byte
        expect_result(*(await h.replies(1)), 2, program, w[1])

        bad = bytearray(infer(3, w[2]))
        bad[6] ^= 0x10                                              # a payload bit: bad CRC
        await h.send(bytes(bad))
        expect_error(*(await h.replies(1)), 3, P.ERR_CRC)
        await h.send(infer(4, w[2]))
        expect_result(*(await h.replies(1)), 4, program, w[2])

        await h.send(infer(5, w[3])[:7])                            # cut short; the polling zeros end it
        expect_error(*(await h.replies(1)), 5, P.ERR_CRC)
        await h.send(infer(6, w[3])[:7])                            # cut short; the host stays silent
        await h.ctx.tick().repeat(h.dut.timeout_cycles + 16)
        expect_error(*(await h.replies(1)), 6, P.ERR_TIMEOUT)

        await h.send(infer(7, w[4]) + infer(8, w[5]))                # two in flight, in one transaction
        r1, r2 = await h.replies(2)
        expect_result(r1, 7, program, w[4])
        expect_result(r2, 8, program, w[5])

    assert run_device(program, script) == 5


# ------------------------------------------------------------------------------------ the host side
class FakeSpiDev:
    """A spidev.SpiDev stand-in wired to a protocol-level model of the device: what the host clocks out is
    parsed (fillers skipped as the device does), replies are computed with `model.intref` and clocked back
    on later transfers, with 0x00 wherever the device has nothing to send. mode: "ok"; "corrupt" (the first
    RESULT has a flipped bit); "mute" (INFER never answered); "silent" (nothing answered: no board)."""

    def __init__(self, program, lanes=1, mode="ok"):
        self.program, self.behaviour = program, mode
        self.info = P.DeviceInfo.from_program(program, lanes)
        self.decoder = P.FrameDecoder()
        self.out = bytearray()
        self.results = 0
        self.clocked = 0
        self.closed = False
        self.opened = None
        self.mode = self.max_speed_hz = self.bits_per_word = None      # set by open_spi

    def open(self, bus, dev):
        self.opened = (bus, dev)

    def close(self):
        self.closed = True

    def _reply(self, frame):
        if self.behaviour == "silent":
            return b""
        if frame.cmd == P.INFO:
            return P.encode_frame(P.INFO_REPLY, frame.seq, self.info.payload())
        if self.behaviour == "mute":
            return b""
        x = self.program.input
        words = run_program(self.program, P.infer_codes(frame.payload, self.info).reshape(1, x.rows, x.cols))[0]
        reply = bytearray(P.encode_frame(P.RESULT, frame.seq, P.result_payload(words)))
        self.results += 1
        if self.behaviour == "corrupt" and self.results == 1:
            reply[7] ^= 0x01
        return bytes(reply)

    def xfer2(self, data):
        self.clocked += len(data)
        got = []
        for b in data:                       # full duplex: a reply starts at the earliest one byte later
            got.append(self.out.pop(0) if self.out else FILLER)
            for frame in self.decoder.feed(bytes([b])):
                self.out += self._reply(frame)
        return got


def test_filler_stripper_keeps_frames_drops_fillers():
    frames = [P.Frame(P.RESULT, 3, bytes([0, 0, 0xA5, 0])), P.Frame(P.INFO_REPLY, 0, b""), P.Frame(P.ERROR, 9, b"\0")]
    stream = b"\0\0" + frames[0].encode() + b"\0" * 5 + frames[1].encode() + frames[2].encode() + b"\0\0"
    for chunk in (1, 3, len(stream)):
        s, dec = FillerStripper(), P.FrameDecoder()
        got = []
        for i in range(0, len(stream), chunk):
            got += dec.feed(s.feed(stream[i:i + chunk]))
        assert got == frames and dec.errors == [] and dec.pending == 0 and s.wanted == 0
    s = FillerStripper()
    assert s.feed(b"\0\x13\0") == b"\x13"                # other bytes between frames still reach the decoder
    s.feed(bytes([P.SOF, P.RESULT, 1, 8, 0]))
    assert s.wanted == 8 + P.CRC_LEN


def test_spi_port_session_and_retries(program):
    """`boards.host.Session` over `SpiPort`: every forecast matched; a corrupted RESULT is retried."""
    from intformer.boards.host import Session

    codes = random_inputs(np.random.default_rng(3), program, 5)
    expected = run_program(program, codes)
    for mode, retries in (("ok", 0), ("corrupt", 1)):
        fake = FakeSpiDev(program, mode=mode)
        port = SpiPort(fake, poll_interval=0)
        session = Session(port, reply_timeout=0.5, frame_timeout=0.01)
        info = session.info()
        assert info == fake.info
        r = session.run(codes, expected, info)
        t = r["tally"]
        assert (t["matched"], t["failed"], t["retries"]) == (5, 0, retries), t
        assert (t["decode_errors"] > 0) == (mode == "corrupt")      # the fillers are never counted
        port.close()
        assert fake.closed


def test_spi_port_mute_device_times_out(program):
    from intformer.boards.host import Session

    codes = random_inputs(np.random.default_rng(4), program, 2)
    fake = FakeSpiDev(program, mode="mute")
    session = Session(SpiPort(fake, poll_interval=0.001), reply_timeout=0.05, retries=1, frame_timeout=0.01)
    r = session.run(codes, run_program(program, codes), session.info())
    t = r["tally"]
    assert (t["failed"], t["timeouts"], t["frames_sent"]) == (2, 4, 4)
    assert fake.clocked > 100                           # it kept polling until the timeout


def test_open_spi_errors(monkeypatch, tmp_path, program):
    with pytest.raises(IntformerError, match="/dev/spidevX.Y"):
        open_spi("/dev/ttyUSB0")
    monkeypatch.setitem(sys.modules, "spidev", None)                 # not installed
    with pytest.raises(IntformerError, match="pip install spidev"):
        open_spi("/dev/spidev0.0")

    class Module:
        SpiDev = staticmethod(lambda: made.append(FakeSpiDev(program)) or made[-1])
    made: list = []
    monkeypatch.setitem(sys.modules, "spidev", Module)
    with pytest.raises(IntformerError, match="no such SPI device"):
        open_spi("/dev/spidev9.7")
    monkeypatch.setattr("os.path.exists", lambda p: True)
    port = open_spi("/dev/spidev1.2", 2_000_000)
    assert made[0].opened == (1, 2) and made[0].max_speed_hz == 2_000_000 and made[0].mode == 0


# --------------------------------------------------------------------------------- board tops, CLI
def test_orangecrab_top_uses_spi_by_default(program):
    from intformer.boards.top import check_board, make_top, platform_class
    top = make_top(program, 1, "orangecrab")
    assert top.link == "spi" and isinstance(top.core, SpiSimTop)
    assert top.core.timeout_cycles == round(P.FRAME_TIMEOUT_S * 48e6)
    lpf = platform_class("orangecrab")().prepare(top, name="top").files["top.lpf"]
    for port, pin in [("sck", "R17"), ("copi", "N16"), ("cipo", "N15"), ("cs_n", "B8")]:
        assert f'LOCATE COMP "spi_link_0__{port}__io" SITE "{pin}";' in lpf
    assert "PULLMODE=UP" in lpf and all(f"rgb_led_0__{c}__io" in lpf for c in "rgb")
    with pytest.raises(IntformerError, match="no UART resource.*--link spi"):
        check_board("orangecrab", "uart")
    ice = make_top(program, 1, "icebreaker", link="spi")              # any board: its PMOD
    pcf = platform_class("icebreaker")().prepare(ice, name="top").files["top.pcf"]
    for port, pin in [("cs_n", 4), ("copi", 2), ("cipo", 47), ("sck", 45)]:
        assert f"set_io spi_link_0__{port}__io {pin}" in pcf
    assert make_top(program, 1, "icebreaker").link == "uart"


def test_infer_cli_over_spi(monkeypatch, tmp_path):
    """`intformer infer RUN --spi /dev/spidev0.0` with a fake spidev module: every window matched."""
    from cli_helpers import SMALL, invoke, ok, user_error
    import json
    import torch

    torch.set_num_threads(1)
    run_dir = tmp_path / "run"
    ok(invoke("train", *SMALL, "--out", run_dir, "--json"))
    from intformer.model import runfolder
    prog = runfolder.open_run(run_dir).program
    made: list = []

    modes = ["ok", "ok", "silent"]

    class Module:
        @staticmethod
        def SpiDev():
            made.append(FakeSpiDev(prog, mode=modes[len(made)]))
            return made[-1]
    user_error(invoke("infer", run_dir), "--port", "--spi")
    monkeypatch.setitem(sys.modules, "spidev", None)
    user_error(invoke("infer", run_dir, "--spi", "/dev/spidev0.0"), "pip install spidev")
    monkeypatch.setitem(sys.modules, "spidev", Module)
    monkeypatch.setattr("intformer.boards.spi_host.os.path.exists", lambda p: True)
    r = json.loads(ok(invoke("infer", run_dir, "--spi", "/dev/spidev0.0", "--spi-hz", "4000000", "--windows", "6",
                             "--json")).stdout)
    assert (r["link"], r["spi_hz"], r["matched"], r["failed"]) == ("spi", 4_000_000, 6, 0), r
    assert made[0].max_speed_hz == 4_000_000 and made[0].closed
    out = ok(invoke("infer", run_dir, "--spi", "/dev/spidev0.0", "--windows", "2")).stdout
    assert "all bit-exact" in out and "SPI clock" in out
    user_error(invoke("infer", run_dir, "--spi", "/dev/spidev0.0", "--retries", "0", "--timeout", "0.1"),
               "does not answer INFO", "Over SPI", "--spi-hz")
