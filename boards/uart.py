"""An 8N1 UART: `UARTRx` and `UARTTx`, byte streams on one side, the serial line on the other.

The line idles high; a byte is a start bit (0), 8 data bits least significant first, and a stop bit (1),
each `divisor` clock cycles long (divisor = clock frequency / baud rate, rounded; `divisor_for`). The rates
a build takes: `STANDARD_BAUDS` (`check_baud`), 115,200 by default, up to 3,000,000 (divisor 4 at 12 MHz).
"""
from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from intformer.model.errors import IntformerError

MIN_DIVISOR = 4
DEFAULT_BAUD = 115200              # the safe default: every USB-serial bridge carries it
MAX_BAUD = 3_000_000               # the iCEBreaker's FT2232H carries 1 to 3 Mbaud
STANDARD_BAUDS = (9600, 19200, 38400, 57600, 115200, 230400, 460800, 500000, 576000, 921600, 1_000_000,
                  1_152_000, 1_500_000, 2_000_000, 2_500_000, 3_000_000)


def check_baud(baud: int) -> int:
    """`baud` if it is one of the standard rates the host's serial drivers set (`STANDARD_BAUDS`, up to
    3 Mbaud); otherwise one clear error naming them. Whether the board clock makes it: `divisor_for`."""
    if baud not in STANDARD_BAUDS:
        rates = ", ".join(f"{b:,}" for b in STANDARD_BAUDS)
        raise IntformerError(f"--baud {baud:,} is not a standard serial rate up to {MAX_BAUD:,}: choose one "
                             f"of {rates}")
    return baud


def divisor_for(clock_hz: float, baud: int, tolerance: float = 0.02) -> int:
    """Clock cycles per bit for `baud` at `clock_hz`; refuses a rate the clock cannot make within
    `tolerance` (2 %: 8N1 survives about 4-5 % of mismatch between the two ends together)."""
    if baud <= 0 or clock_hz <= 0:
        raise IntformerError(f"baud rate {baud} and clock {clock_hz} Hz must be positive")
    divisor = round(clock_hz / baud)
    if divisor < MIN_DIVISOR:
        raise IntformerError(f"{baud} baud is too fast for a {clock_hz / 1e6:g} MHz clock "
                             f"(needs at least {MIN_DIVISOR} cycles per bit)")
    error = abs(clock_hz / divisor - baud) / baud
    if error > tolerance:
        good = [f"{b:,}" for b in STANDARD_BAUDS if b >= DEFAULT_BAUD and _makes(clock_hz, b, tolerance)]
        raise IntformerError(f"{baud} baud from a {clock_hz / 1e6:g} MHz clock is off by {error:.1%} "
                             f"(divisor {divisor}); choose another baud rate (this clock makes "
                             f"{', '.join(good) or 'none of the standard rates'})")
    return divisor


def _makes(clock_hz: float, baud: int, tolerance: float) -> bool:
    divisor = round(clock_hz / baud)
    return divisor >= MIN_DIVISOR and abs(clock_hz / divisor - baud) / baud <= tolerance


class UARTRx(wiring.Component):
    """8N1 receiver.

    Ports: `rx` (the line), `output` (stream of received bytes), `frame_error` and `overrun` (one-cycle
    pulses).

    Algorithm: `rx` passes a 2-flop synchronizer (both flops reset to 1, the idle level). A falling edge
    (a 0 while idle) starts a byte: the receiver waits divisor // 2 cycles to the middle of the start bit and
    checks it is still 0 (else it was a glitch: back to idle), then samples each of the 8 data bits and the
    stop bit one divisor later, in the middle of each bit. A stop bit of 0 is a framing error (a break or a
    wrong baud rate): the byte is dropped, `frame_error` pulses, and the receiver waits for the line to
    return high. After the stop bit's sample it is idle again, so back-to-back bytes (and a sender up to
    about 1/20 slower or faster) are received.

    Latency: a byte is offered on `output` 2 + divisor // 2 + 9 x divisor cycles after its start bit's
    falling edge reached `rx`, i.e. in the middle of its stop bit. `output.valid` stays high until
    `output.ready`; a byte that completes while the previous one is still not taken replaces nothing: it is
    dropped, and `overrun` pulses (a consumer must take a byte within 10 x divisor cycles).

    Widths: a timer of range(divisor), a bit counter of range(8), an 8-bit shift register.
    """

    def __init__(self, divisor: int):
        if divisor < MIN_DIVISOR:
            raise ValueError(f"divisor {divisor} < {MIN_DIVISOR}")
        self.divisor = divisor
        super().__init__({
            "rx": In(1, init=1),
            "output": Out(stream.Signature(8)),
            "frame_error": Out(1),
            "overrun": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        d = self.divisor
        sync1 = Signal(init=1)
        line = Signal(init=1)
        m.d.sync += [sync1.eq(self.rx), line.eq(sync1)]

        timer = Signal(range(d))
        bit = Signal(range(8))
        shreg = Signal(8)
        data = Signal(8)
        valid = Signal()
        m.d.comb += [self.output.payload.eq(data), self.output.valid.eq(valid)]
        with m.If(self.output.ready):
            m.d.sync += valid.eq(0)
        m.d.sync += [self.frame_error.eq(0), self.overrun.eq(0)]

        with m.FSM(name="uart_rx"):
            with m.State("IDLE"):
                with m.If(~line):
                    m.d.sync += timer.eq(d // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(line):
                    m.next = "IDLE"                           # a glitch, not a start bit
                with m.Else():
                    m.d.sync += [timer.eq(d - 1), bit.eq(0)]
                    m.next = "DATA"
            with m.State("DATA"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    m.d.sync += [shreg.eq(Cat(shreg[1:], line)), timer.eq(d - 1),
                                 bit.eq(bit + 1)]
                    with m.If(bit == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(line):
                    with m.If(valid & ~self.output.ready):
                        m.d.sync += self.overrun.eq(1)
                    with m.Else():
                        m.d.sync += [data.eq(shreg), valid.eq(1)]
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += self.frame_error.eq(1)
                    m.next = "BREAK"
            with m.State("BREAK"):
                with m.If(line):
                    m.next = "IDLE"
        return m


class UARTTx(wiring.Component):
    """8N1 transmitter.

    Ports: `input` (stream of bytes to send), `tx` (the line, a flip-flop output, idle high), `busy`.

    Algorithm: a byte taken from `input` is loaded, with its start and stop bits, into a 10-bit shift
    register whose bit 0 drives `tx`; every `divisor` cycles it shifts right, filling with 1 (idle). After
    the 10th bit it is ready for the next byte.

    Latency: `tx` falls (start bit) the cycle after the byte is taken; a byte occupies 10 x divisor + 1
    cycles (the extra cycle lengthens the stop bit), so the throughput is one byte per 10 x divisor + 1
    cycles with `input` kept valid. Widths: a 10-bit shift register, a timer of range(divisor), a bit
    counter of range(11).
    """

    def __init__(self, divisor: int):
        if divisor < MIN_DIVISOR:
            raise ValueError(f"divisor {divisor} < {MIN_DIVISOR}")
        self.divisor = divisor
        super().__init__({
            "input": In(stream.Signature(8)),
            "tx": Out(1, init=1),
            "busy": Out(1),
        })
        # the transmitter's registers (the transmit proof observes them)
        self.shreg = Signal(10, init=0x3FF)             # the frame's bits still to send, bit 0 on the line
        self.timer = Signal(range(divisor))             # cycles left of the current bit
        self.left = Signal(range(11))                   # bits left of the frame (0: idle)

    def elaborate(self, platform):
        m = Module()
        d = self.divisor
        shreg, timer, left = self.shreg, self.timer, self.left
        m.d.comb += [self.tx.eq(shreg[0]), self.busy.eq(left != 0), self.input.ready.eq(left == 0)]
        with m.If(left == 0):
            with m.If(self.input.valid):
                m.d.sync += [shreg.eq((1 << 9) | (self.input.payload << 1)), timer.eq(d - 1), left.eq(10)]
        with m.Elif(timer != 0):
            m.d.sync += timer.eq(timer - 1)
        with m.Else():
            m.d.sync += [shreg.eq((1 << 9) | (shreg >> 1)), timer.eq(d - 1), left.eq(left - 1)]
        return m
