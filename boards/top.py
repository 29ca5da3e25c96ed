"""Board tops: the accelerator behind the serial link (`boards.protocol`) on a development board.

`SimTop(program, lanes, divisor)` is the whole device with plain `rx` / `tx` pins (UART receiver and
transmitter, `boards.link.Link`, `accel.Accelerator`): what the simulation tests drive bit by bit, and what
every board top contains. `SpiSimTop(program, lanes)` is the same device behind an SPI peripheral
(`boards.spi`: pins `sck`, `copi`, `cipo`, `cs_n`) instead of the UART. `make_top(program, lanes, board,
link=...)` wraps one of them for one of the boards of `boards.catalogue` (whose docstring tables their
clocks, link pins and LEDs): with the UART link, the UART pins of the board's USB-serial bridge
(amaranth-boards' resource "uart" 0) and the divisor from the board's clock and the baud rate; with the SPI
link, the board's `SpiPins` (added to the platform as the resource "spi_link" 0); the frame timeout
(`protocol.FRAME_TIMEOUT_S`) in cycles, and status LEDs. The link is the UART where the board has one, SPI
otherwise (the OrangeCrab); `link="spi"` puts any board's link on SPI. `logic_lanes` (the MAC lanes that
multiply in logic, `accel.resources.lanes_in_logic`) goes down to the accelerator as it is made. The link's
streaming ring (the protocol's STEP) has the program's input rows (`ring_rows`: none for series tokens).

LED roles: alive / busy / error / rx activity (iCEBreaker: green alive, on while busy; red error; the
OrangeCrab's RGB LED likewise: green alive and busy, red error, blue rx activity). The SPI pins follow the
Pmod SPI pinout (Digilent's Pmod interface type 2: 1 CS, 2 COPI, 3 CIPO, 4 SCK). On the OrangeCrab they
are the Feather header's SPI pins and its pin 10 for CS (amaranth-boards' connector "io" 0: "sck" R17,
"copi" N16, "cipo" N15, "10" B8); a Raspberry Pi's SPI0 connects as

    OrangeCrab (Feather)   FPGA pin   signal          Raspberry Pi (40-pin header)
    SCK                    R17        SCK  (in)       pin 23, GPIO11, SPI0 SCLK
    MO (copi)              N16        COPI (in)       pin 19, GPIO10, SPI0 MOSI
    MI (cipo)              N15        CIPO (out)      pin 21, GPIO9,  SPI0 MISO
    10                     B8         CS_n (in)       pin 24, GPIO8,  SPI0 CE0  (-> /dev/spidev0.0)
    GND                    -          ground          pin 25 (or any GND)

all 3.3 V (LVCMOS33; CS_n has a pull-up, so an unconnected select leaves the device deselected). SPI mode
0, SCK at most sys_clk / 8 (each phase at least `spi.MIN_HALF_PERIOD` = 4 cycles): 6 MHz at 48 MHz.

"alive" blinks at 1 Hz (the clock runs and the design is configured); "busy" is on while the accelerator
computes or a reply is sent; "error" lights for 0.2 s after an ERROR reply, a dropped reply, a UART framing
error or overrun (SPI: a receive overrun), and stays on after an accelerator drain overrun (a scheduling
bug); "rx activity" lights for 0.05 s after each received byte (SPI: each received byte other than the
filler 0x00 a polling host clocks).
"""
from __future__ import annotations

from amaranth.build import Attrs, Pins, Resource, Subsignal
from amaranth.hdl import Elaboratable, Module, Signal
from amaranth.lib import io, wiring
from amaranth.lib.wiring import In, Out

from intformer.accel.accelerator import Accelerator
from intformer.model.errors import IntformerError
from intformer.model.program import IntProgram

from . import protocol as P
from .catalogue import BOARDS, board as catalogue_board
from .errors import BoardError, LinkUnavailable, NoSerialBridge
from .link import Link
from .spi import FILLER, SPIPeripheral
from .uart import UARTRx, UARTTx, divisor_for

LINKS = ("uart", "spi")

ERROR_LED_S = 0.2
ACTIVITY_LED_S = 0.05


def platform_class(board: str):
    """The amaranth-boards platform class of `board` (`boards.catalogue`; ulx3s: the 25F, arty_s7: the
    S7-50; the other variants have the same pins, so their platforms build the same top)."""
    return catalogue_board(board).platform_class()


def _has(platform, name: str, number: int = 0) -> bool:
    return (name, number) in platform.resources


def spi_resource(board: str) -> Resource:
    """The SPI link's pins on `board` as the amaranth resource "spi_link" 0 (subsignals sck, copi, cs_n in,
    cipo out; see `catalogue.SpiPins` and the module docstring)."""
    spi = catalogue_board(board).spi
    dirs = {"cs_n": "i", "copi": "i", "cipo": "o", "sck": "i"}
    return Resource("spi_link", 0, *[
        Subsignal(sig, Pins(spi.pins[sig], dir=dirs[sig], conn=(spi.connector, spi.number)),
                  *([Attrs(**spi.pull_up)] if sig == "cs_n" else []))
        for sig in ("cs_n", "copi", "cipo", "sck")], Attrs(**spi.attrs))


def default_link(board: str) -> str:
    """The link a board gets unless told: the UART where it has a USB-serial bridge, SPI otherwise."""
    return catalogue_board(board).default_link


def check_board(board: str, link: str = "uart"):
    """The board's platform instance, once it is known to have what the link needs (a UART, or SPI pins in
    the catalogue; LEDs). Raises `UnknownBoard`, `NoSerialBridge`, `LinkUnavailable` or `BoardError`."""
    b = catalogue_board(board)
    platform = b.platform_class()()
    if link not in LINKS:
        raise BoardError(f"unknown link {link!r}; choose one of {', '.join(LINKS)}")
    if link == "uart" and not (b.uart and _has(platform, "uart")):
        usable = ", ".join(name for name, other in BOARDS.items() if other.uart and other.top_name == name)
        raise NoSerialBridge(f"board {board!r} has no UART resource in amaranth-boards (no USB-serial bridge: "
                             f"its USB port is wired to the FPGA itself, which would need a USB core); "
                             f"the serial link runs on {usable}; --link spi puts the link on SPI pins")
    if link == "spi" and b.spi is None:
        raise LinkUnavailable(f"no SPI link pins defined for board {board!r} (boards.catalogue has them for "
                              f"{', '.join(name for name, other in BOARDS.items() if other.spi)})", "spi")
    for role, number in b.leds.items():
        if not _has(platform, "led", number):
            raise BoardError(f"board {board!r} has no LED {number} for {role}")
    if b.rgb_leds and not _has(platform, "rgb_led"):
        raise BoardError(f"board {board!r} has no RGB LED")
    return platform


# the status outputs of every device top (LEDs): see the tops' docstrings
STATUS_PORTS = {"busy": Out(1), "error": Out(1), "acc_error": Out(1), "activity": Out(1)}


def _linked_accelerator(program: IntProgram, lanes: int, logic_lanes: int,
                        keep_blocks: bool = False) -> tuple[P.DeviceInfo, Accelerator]:
    """The accelerator behind a link (`logic_lanes` of its MAC lanes multiply in logic; `keep_blocks`: its
    blocks as modules of their own, `Accelerator`), and what the link reports of it; output words must fit
    the link's."""
    accelerator = Accelerator(program, lanes, logic_lanes, keep_blocks=keep_blocks)
    out_bits = accelerator.plan.output.bits
    if out_bits > 8 * P.WORD_BYTES:
        raise IntformerError(f"output words of {out_bits} bits do not fit the link's {8 * P.WORD_BYTES}-bit words")
    return P.DeviceInfo.from_program(program, lanes), accelerator


def ring_rows(program: IntProgram) -> int | None:
    """The rows of the link's streaming ring (`protocol` STEP): the input buffer's rows for time tokens; None
    (no streaming: STEP is an unknown command) for series tokens, whose samples are columns."""
    return None if program.series_tokens else program.input.rows


def _connect(m: Module, link: Link, acc: Accelerator) -> None:
    """The link's accelerator side to the accelerator."""
    m.d.comb += [
        acc.input.valid.eq(link.acc_input.valid),
        acc.input.payload.eq(link.acc_input.payload),           # truncated to the code width
        link.acc_input.ready.eq(acc.input.ready),
        link.acc_output.valid.eq(acc.output.valid),
        link.acc_output.payload.eq(acc.output.payload),         # sign-extended to 32 bits
        acc.output.ready.eq(link.acc_output.ready),
        acc.start.eq(link.acc_start),
        acc.clear.eq(link.acc_clear),
        link.acc_busy.eq(acc.busy),
    ]


class SimTop(wiring.Component):
    """The device: UART receiver and transmitter (`divisor` cycles per bit), `Link`, `Accelerator`.

    Ports: `rx` (line in, idle high), `tx` (line out); status: `busy` (computing or replying), `error`
    (pulse: ERROR reply queued, reply dropped, UART framing error or overrun), `acc_error` (the
    accelerator's sticky drain overrun flag), `activity` (pulse: a byte was received).
    `timeout_cycles` is the frame timeout (default: 40 bit times, 4 bytes' worth of silence); `logic_lanes`
    of the accelerator's MAC lanes multiply in logic (`accel.resources.lanes_in_logic`); `keep_blocks` keeps
    the accelerator's blocks as modules of their own (for a per-block count, `bench/lc_breakdown.py`).
    """

    def __init__(self, program: IntProgram, lanes: int, divisor: int, timeout_cycles: int | None = None,
                 logic_lanes: int = 0, keep_blocks: bool = False):
        self.program, self.lanes, self.divisor = program, lanes, divisor
        self.info, self.accelerator = _linked_accelerator(program, lanes, logic_lanes, keep_blocks)
        self.timeout_cycles = timeout_cycles or 40 * divisor
        super().__init__({
            "rx": In(1, init=1),
            "tx": Out(1, init=1),
            **STATUS_PORTS,
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.acc = acc = self.accelerator
        m.submodules.uart_rx = urx = UARTRx(self.divisor)
        m.submodules.uart_tx = utx = UARTTx(self.divisor)
        m.submodules.link = link = Link(self.info, self.timeout_cycles, rows=ring_rows(self.program))
        m.d.comb += [urx.rx.eq(self.rx), self.tx.eq(utx.tx)]
        wiring.connect(m, urx.output, link.rx)
        wiring.connect(m, link.tx, utx.input)
        _connect(m, link, acc)
        m.d.comb += [
            self.busy.eq(acc.busy | utx.busy),
            self.error.eq(link.error | link.dropped | urx.frame_error | urx.overrun),
            self.acc_error.eq(acc.error),
            self.activity.eq(urx.output.valid & urx.output.ready),
        ]
        return m


class SpiSimTop(wiring.Component):
    """The device behind SPI: `boards.spi.SPIPeripheral` (transmit FIFO of `fifo_depth` bytes), `Link`,
    `Accelerator`.

    Ports: `sck`, `copi`, `cs_n` (in; cs_n idles high), `cipo` (out); status: `busy` (computing, or reply
    bytes wait for the host to clock them out), `error` (pulse: ERROR reply queued, reply dropped, SPI
    receive overrun), `acc_error` (the accelerator's sticky drain overrun flag), `activity` (pulse: a byte
    other than the filler was received). `timeout_cycles` is the frame timeout (default 4096 cycles: the
    boards use `protocol.FRAME_TIMEOUT_S`). SCK at most sys_clk / (2 x `spi.MIN_HALF_PERIOD`). `logic_lanes`
    of the accelerator's MAC lanes multiply in logic.
    """

    def __init__(self, program: IntProgram, lanes: int, timeout_cycles: int | None = None,
                 fifo_depth: int = 16, logic_lanes: int = 0):
        self.program, self.lanes = program, lanes
        self.info, self.accelerator = _linked_accelerator(program, lanes, logic_lanes)
        self.timeout_cycles = timeout_cycles or 4096
        self.spi = SPIPeripheral(fifo_depth)
        super().__init__({
            "sck": In(1),
            "copi": In(1),
            "cs_n": In(1, init=1),
            "cipo": Out(1),
            **STATUS_PORTS,
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.acc = acc = self.accelerator
        m.submodules.spi = spi = self.spi
        m.submodules.link = link = Link(self.info, self.timeout_cycles, rows=ring_rows(self.program))
        m.d.comb += [spi.sck.eq(self.sck), spi.copi.eq(self.copi), spi.cs_n.eq(self.cs_n),
                     self.cipo.eq(spi.cipo)]
        wiring.connect(m, spi.output, link.rx)
        wiring.connect(m, link.tx, spi.input)
        _connect(m, link, acc)
        m.d.comb += [
            self.busy.eq(acc.busy | spi.pending),
            self.error.eq(link.error | link.dropped | spi.overrun),
            self.acc_error.eq(acc.error),
            self.activity.eq(spi.output.valid & spi.output.ready & (spi.output.payload != FILLER)),
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
    """`SimTop` (link "uart") or `SpiSimTop` (link "spi") on a board's pins and LEDs (see the module
    docstring), `logic_lanes` of the accelerator's MAC lanes multiplying in logic; made by `make_top`."""

    def __init__(self, program: IntProgram, lanes: int, board: str, baud: int, clock_hz: float,
                 divisor: int | None, link: str = "uart", logic_lanes: int = 0):
        self.board, self.baud, self.clock_hz, self.divisor, self.link = board, baud, clock_hz, divisor, link
        timeout = round(P.FRAME_TIMEOUT_S * clock_hz)
        if link == "spi":
            self.core = SpiSimTop(program, lanes, timeout_cycles=timeout, logic_lanes=logic_lanes)
        else:
            self.core = SimTop(program, lanes, self.divisor, timeout_cycles=timeout, logic_lanes=logic_lanes)
        self.leds = catalogue_board(board).leds                  # role -> led number
        self.rgb_leds = catalogue_board(board).rgb_leds          # role -> colour of the RGB LED, or None

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = self.core
        if platform is None:                      # elaborated without a board (e.g. rtlil of the logic alone)
            return m
        if self.link == "spi":
            if ("spi_link", 0) not in platform.resources:
                platform.add_resources([spi_resource(self.board)])
            pins = platform.request("spi_link", 0, dir="-")
            for name in ("sck", "copi", "cs_n"):
                m.submodules[f"{name}_pin"] = buf = io.Buffer("i", getattr(pins, name))
                m.d.comb += getattr(core, name).eq(buf.i)
            m.submodules.cipo_pin = cipo = io.Buffer("o", pins.cipo)
            m.d.comb += cipo.o.eq(core.cipo)
        else:
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
        rgb = self.rgb_leds
        if "busy" not in (rgb or self.leds):
            roles["alive"] = alive | core.busy
        if rgb:
            colours = platform.request("rgb_led", 0, dir={"r": "-", "g": "-", "b": "-"})
            for role, colour in rgb.items():
                m.submodules[f"led_{role}"] = led = io.Buffer("o", getattr(colours, colour))
                m.d.comb += led.o.eq(roles[role])
        for role, number in self.leds.items():
            m.submodules[f"led_{role}"] = led = io.Buffer("o", platform.request("led", number, dir="-"))
            m.d.comb += led.o.eq(roles[role])
        return m


def make_top(program: IntProgram, lanes: int, board: str, baud: int = 115200, clock_hz: float | None = None,
             link: str | None = None, logic_lanes: int = 0):
    """The top for `board` (one of `catalogue.BOARDS`): the accelerator with P = `lanes` (`logic_lanes` of
    them multiplying in logic) behind the serial link, on the board's UART at `baud` (link "uart") or on its
    SPI pins (link "spi", `catalogue.SpiPins`), and its LEDs; `link`
    None: the UART where the board has one, SPI otherwise (`default_link`). `clock_hz` is the frequency of
    the `sync` domain the design runs in: by default the board's default clock, which the platform then
    provides; with another value the caller provides that domain (a PLL) itself. Raises `IntformerError`
    for an unknown board, a board without the link's pins (a UART, or SPI pins), or a baud rate the clock
    cannot make (`UnknownBoard`, `NoSerialBridge`, `LinkUnavailable`, `BoardError`)."""
    if link is None:
        link = default_link(board)
    platform = check_board(board, link)
    if clock_hz is None:
        clock_hz = platform.default_clk_frequency
    divisor = divisor_for(clock_hz, baud) if link == "uart" else None
    return BoardTop(program, lanes, board, baud, clock_hz, divisor, link, logic_lanes)
