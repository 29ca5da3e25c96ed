"""A host on the UART line of a simulated device (`boards.top.SimTop`), for Amaranth testbenches: it drives
the device's `rx` pin bit by bit (8N1, least significant bit first, `divisor` cycles a bit) and decodes its
`tx` pin into frames (`protocol.FrameDecoder`), noting the cycle at which each frame's last byte arrived.

Board-level simulation with the real divisor (clock / baud, `uart.divisor_for`): the tests and
`bench/stream_bench.py` use it to run INFER and STEP frames through the whole device, UART included.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from amaranth.sim import Simulator

from . import protocol as P


@dataclass
class Line:
    """What the listener decoded: `frames` (in arrival order), `at` (the cycle each one completed), the
    accelerator's `starts` and the cycles they came at (`start_at`), and the cycle count `now`."""
    frames: list = field(default_factory=list)
    at: list = field(default_factory=list)
    starts: int = 0
    start_at: list = field(default_factory=list)
    now: int = 0
    decoder: P.FrameDecoder = field(default_factory=P.FrameDecoder)


class LineHost:
    """The host's side inside a testbench: `send` bytes, `idle`, `replies(n)` (the next n frames, waiting
    for them up to `limit` cycles)."""

    def __init__(self, ctx, dut, line: Line):
        self.ctx, self.dut, self.line = ctx, dut, line
        self.divisor = dut.divisor
        self.taken = 0

    async def send(self, data: bytes):
        for byte in data:
            for bit in [0] + [(byte >> i) & 1 for i in range(8)] + [1]:
                self.ctx.set(self.dut.rx, bit)
                await self.ctx.tick().repeat(self.divisor)

    async def idle(self, cycles: int):
        await self.ctx.tick().repeat(cycles)

    async def replies(self, n: int, limit: int = 20_000) -> list[P.Frame]:
        step = max(1, min(16, self.divisor))
        for _ in range(0, limit, step):
            if len(self.line.frames) >= self.taken + n:
                break
            await self.ctx.tick().repeat(step)
        got = self.line.frames[self.taken:self.taken + n]
        self.taken += len(got)
        assert len(got) == n, f"expected {n} replies, got {got}"
        return got

    def unread(self) -> list[P.Frame]:
        return self.line.frames[self.taken:]

    async def quiet(self):
        """Stay silent past the device's frame timeout (the host rule after an error)."""
        await self.idle(self.dut.timeout_cycles + 8 * self.divisor)


def simulate_line(dut, script, clock_hz: float = 12e6, vcd: str | None = None) -> Line:
    """Run `script(host)` (an async function of a `LineHost`) against `dut` (a `SimTop`); the listener
    decodes `tx` as an 8N1 receiver sampling mid-bit and fails on the accelerator's drain overrun flag."""
    line = Line()
    d = dut.divisor

    async def host(ctx):
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(4 * d)
        await script(LineHost(ctx, dut, line))

    async def listen(ctx):
        wait, bits = None, []
        async for _, _, tx, start, acc_error in ctx.tick().sample(dut.tx, dut.accelerator.start, dut.acc_error):
            assert not acc_error, "accelerator drain overrun"
            line.now += 1
            if start:
                line.starts += 1
                line.start_at.append(line.now)
            if wait is None:
                if not tx:
                    wait, bits = d // 2 + d - 1, []
                continue
            if wait:
                wait -= 1
                continue
            bits.append(tx)
            wait = d - 1
            if len(bits) == 9:
                assert bits[8] == 1, "stop bit"
                frames = line.decoder.feed(bytes([sum(b << i for i, b in enumerate(bits[:8]))]))
                line.frames += frames
                line.at += [line.now] * len(frames)
                wait = None

    sim = Simulator(dut)
    sim.add_clock(1 / clock_hz)
    sim.add_testbench(host)
    sim.add_testbench(listen, background=True)
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
    assert line.decoder.errors == [] and line.decoder.pending == 0, line.decoder.errors
    return line
