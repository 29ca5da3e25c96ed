"""Board tops: the accelerator behind the serial link (`boards.protocol`) on a development board.

`SimTop(program, lanes, divisor)` is the whole device with plain `rx` / `tx` pins (UART receiver and
transmitter, `boards.link.Link`, `accel.Accelerator`): what the simulation tests drive bit by bit, and what
every board top contains. `make_top(program, lanes, board)` wraps it for one of `BOARDS`: the UART pins of
the board's USB-serial bridge (amaranth-boards' resource "uart" 0), the divisor from the board's clock and
the baud rate, the frame timeout (`protocol.FRAME_TIMEOUT_S`) in cycles, and status LEDs:

    board        clock    UART (USB bridge)     LEDs: alive / busy / error / rx activity
    icebreaker   12 MHz   FTDI 2232H ch. B      led 1 (green): alive, on while busy; led 0 (red): error
    ulx3s        25 MHz   FTDI FT231X           led 0 / 1 / 2 / 3
    arty_s7      100 MHz  FTDI 2232H ch. B      led 0 / 1 / 2 / 3
    cmod_s7      12 MHz   FTDI 2232H ch. B      led 0 / 1 / 2 / 3
    orangecrab   48 MHz   none: refused         (its USB port is wired to the FPGA itself)

"alive" blinks at 1 Hz (the clock runs and the design is configured); "busy" is on while the accelerator
computes or a reply is sent; "error" lights for 0.2 s after an ERROR reply, a dropped reply, a UART framing
error or overrun, and stays on after an accelerator drain overrun (a scheduling bug); "rx activity" lights
for 0.05 s after each received byte.
"""
from __future__ import annotations

import importlib

from amaranth.hdl import Elaboratable, Module, Signal
from amaranth.lib import io, wiring
from amaranth.lib.wiring import In, Out

from accel.accelerator import Accelerator
from model.errors import IntformerError
from model.program import IntProgram

from . import protocol as P
from .link import Link
from .uart import UARTRx, UARTTx, divisor_for

# board -> (module, default platform class, led roles)
BOARDS = {
    "icebreaker": ("amaranth_boards.icebreaker", "ICEBreakerPlatform", {"alive": 1, "error": 0}),
    "orangecrab": ("amaranth_boards.orangecrab_r0_2", "OrangeCrabR0_2_25FPlatform", {}),
    "ulx3s": ("amaranth_boards.ulx3s", "ULX3S_25F_Platform", {"alive": 0, "busy": 1, "error": 2, "activity": 3}),
    "arty_s7": ("amaranth_boards.arty_s7", "ArtyS7_50Platform", {"alive": 0, "busy": 1, "error": 2, "activity": 3}),
    "cmod_s7": ("amaranth_boards.cmod_s7", "CmodS7_Platform", {"alive": 0, "busy": 1, "error": 2, "activity": 3}),
}

ERROR_LED_S = 0.2
ACTIVITY_LED_S = 0.05


def platform_class(board: str):
    """The amaranth-boards platform class `make_top` checks `board` against (ulx3s: the 25F, arty_s7: the
    S7-50; the other variants have the same pins, so their platforms build the same top)."""
    if board not in BOARDS:
        raise IntformerError(f"unknown board {board!r}; choose one of {', '.join(BOARDS)}")
    module, name, _ = BOARDS[board]
    return getattr(importlib.import_module(module), name)


def _has(platform, name: str, number: int = 0) -> bool:
    return (name, number) in platform.resources


def check_board(board: str):
    """The board's platform instance, once it is known to have what the link needs (a UART, LEDs)."""
    platform = platform_class(board)()
    if not _has(platform, "uart"):
        usable = ", ".join(b for b in BOARDS if _has(platform_class(b)(), "uart"))
        raise IntformerError(f"board {board!r} has no UART resource in amaranth-boards (no USB-serial bridge: "
                             f"its USB port is wired to the FPGA itself, which would need a USB core); "
                             f"the serial link runs on {usable}")
    for role, number in BOARDS[board][2].items():
        if not _has(platform, "led", number):
            raise IntformerError(f"board {board!r} has no LED {number} for {role}")
    return platform


class SimTop(wiring.Component):
    """The device: UART receiver and transmitter (`divisor` cycles per bit), `Link`, `Accelerator`.

    Ports: `rx` (line in, idle high), `tx` (line out); status: `busy` (computing or replying), `error`
    (pulse: ERROR reply queued, reply dropped, UART framing error or overrun), `acc_error` (the
    accelerator's sticky drain overrun flag), `activity` (pulse: a byte was received).
    `timeout_cycles` is the frame timeout (default: 40 bit times, 4 bytes' worth of silence).
    """

    def __init__(self, program: IntProgram, lanes: int, divisor: int, timeout_cycles: int | None = None):
        self.program, self.lanes, self.divisor = program, lanes, divisor
        self.info = P.DeviceInfo.from_program(program, lanes)
        self.accelerator = Accelerator(program, lanes)
        out_bits = self.accelerator.plan.output.bits
        if out_bits > 8 * P.WORD_BYTES:
            raise IntformerError(f"output words of {out_bits} bits do not fit the link's {8 * P.WORD_BYTES}-bit "
                                 f"words")
        self.timeout_cycles = timeout_cycles or 40 * divisor
        super().__init__({
            "rx": In(1, init=1),
            "tx": Out(1, init=1),
            "busy": Out(1),
            "error": Out(1),
            "acc_error": Out(1),
            "activity": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.acc = acc = self.accelerator
        m.submodules.uart_rx = urx = UARTRx(self.divisor)
        m.submodules.uart_tx = utx = UARTTx(self.divisor)
        m.submodules.link = link = Link(self.info, self.timeout_cycles)
        m.d.comb += [urx.rx.eq(self.rx), self.tx.eq(utx.tx)]
        wiring.connect(m, urx.output, link.rx)
        wiring.connect(m, link.tx, utx.input)
        m.d.comb += [
            acc.input.valid.eq(link.acc_input.valid),
            acc.input.payload.eq(link.acc_input.payload),           # truncated to the code width
            link.acc_input.ready.eq(acc.input.ready),
            link.acc_output.valid.eq(acc.output.valid),
            link.acc_output.payload.eq(acc.output.payload),         # sign-extended to 32 bits
            acc.output.ready.eq(link.acc_output.ready),
            acc.start.eq(link.acc_start),
            link.acc_busy.eq(acc.busy),
            self.busy.eq(acc.busy | utx.busy),
            self.error.eq(link.error | link.dropped | urx.frame_error | urx.overrun),
            self.acc_error.eq(acc.error),
            self.activity.eq(urx.output.valid & urx.output.ready),
        ]
        return m


class _Stretch(Elaboratable):
    """`out` is high for `cycles` cycles after each pulse on `pulse`."""

    def __init__(self, cycles: int):
        self.cycles = max(1, cycles)
        self.pulse = Signal()
        self.out = Signal()

    def elaborate(self, platform):
        m = Module()
        left = Signal(range(self.cycles + 1))
        with m.If(self.pulse):
            m.d.sync += left.eq(self.cycles)
        with m.Elif(left != 0):
            m.d.sync += left.eq(left - 1)
        m.d.comb += self.out.eq(left != 0)
        return m


class BoardTop(Elaboratable):
    """`SimTop` on a board's UART pins and LEDs (see the module docstring); made by `make_top`."""

    def __init__(self, program: IntProgram, lanes: int, board: str, baud: int, clock_hz: float, divisor: int):
        self.board, self.baud, self.clock_hz, self.divisor = board, baud, clock_hz, divisor
        self.core = SimTop(program, lanes, self.divisor, timeout_cycles=round(P.FRAME_TIMEOUT_S * clock_hz))
        self.leds = BOARDS[board][2]

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = self.core
        if platform is None:                      # elaborated without a board (e.g. rtlil of the logic alone)
            return m
        uart = platform.request("uart", 0, dir="-")
        m.submodules.rx_pin = rx_pin = io.Buffer("i", uart.rx)
        m.submodules.tx_pin = tx_pin = io.Buffer("o", uart.tx)
        m.d.comb += [core.rx.eq(rx_pin.i), tx_pin.o.eq(core.tx)]

        half = max(1, round(self.clock_hz / 2))
        beat = Signal(range(half))
        alive = Signal()
        with m.If(beat == half - 1):
            m.d.sync += [beat.eq(0), alive.eq(~alive)]
        with m.Else():
            m.d.sync += beat.eq(beat + 1)
        m.submodules.err_led = err = _Stretch(round(ERROR_LED_S * self.clock_hz))
        m.submodules.act_led = act = _Stretch(round(ACTIVITY_LED_S * self.clock_hz))
        m.d.comb += [err.pulse.eq(core.error), act.pulse.eq(core.activity)]
        roles = {"alive": alive, "busy": core.busy, "error": err.out | core.acc_error, "activity": act.out}
        if "busy" not in self.leds:
            roles["alive"] = alive | core.busy
        for role, number in self.leds.items():
            m.submodules[f"led_{role}"] = led = io.Buffer("o", platform.request("led", number, dir="-"))
            m.d.comb += led.o.eq(roles[role])
        return m


def make_top(program: IntProgram, lanes: int, board: str, baud: int = 115200, clock_hz: float | None = None):
    """The top for `board` (one of `BOARDS`): the accelerator with P = `lanes` behind the serial link at
    `baud`, on the board's UART and LEDs. `clock_hz` is the frequency of the `sync` domain the design runs
    in: by default the board's default clock, which the platform then provides; with another value the
    caller provides that domain (a PLL) itself. Raises `IntformerError` for an unknown board, a board
    without a UART, or a baud rate the clock cannot make."""
    platform = check_board(board)
    if clock_hz is None:
        clock_hz = platform.default_clk_frequency
    return BoardTop(program, lanes, board, baud, clock_hz, divisor_for(clock_hz, baud))
