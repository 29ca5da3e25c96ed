"""The boards intformer builds for, one `Board` entry each: adding a board is adding one entry to `BOARDS`.

An entry holds everything the build (`boards.build`), the board top (`boards.top`) and the programmer
(`boards.program`) need to know of the board: its amaranth-boards platform, FPGA family and device, the
oscillator, the LEDs and their roles, the host link's pins (the USB-serial bridge's UART, and SPI pins on a
connector), and the programmer with its arguments.

    board        clock    UART (USB bridge)      SPI link pins: CS / COPI / CIPO / SCK   LEDs
    icebreaker   12 MHz   FTDI 2232H ch. B       PMOD1A 1 / 2 / 3 / 4                    led 1 (green), led 0 (red)
    ulx3s        25 MHz   FTDI FT231X            GP0 / GP1 / GP2 / GP3                   led 0 / 1 / 2 / 3
    arty_s7      100 MHz  FTDI 2232H ch. B       JA 1 / 2 / 3 / 4                        led 0 / 1 / 2 / 3
    cmod_s7      12 MHz   FTDI 2232H ch. B       JA 1 / 2 / 3 / 4                        led 0 / 1 / 2 / 3
    orangecrab   48 MHz   none (SPI by default)  Feather 10 / MO / MI / SCK              RGB LED: g / - / r / b

    icebreaker            iceprog -S top.bin (SRAM) / iceprog top.bin (SPI flash)        Debian: fpga-icestorm
    ulx3s, ulx3s-85f      openFPGALoader -b ulx3s -m|-f top.bit                           Debian: openfpgaloader
    arty_s7, arty_s7_25   openFPGALoader -b arty_s7_50|arty_s7_25 -m|-f top.bit           Debian: openfpgaloader
    cmod_s7               openFPGALoader -b cmod_s7 -m|-f top.bit                         Debian: openfpgaloader
    orangecrab            dfu-util -d 1209:5af0 -a 0 -D top.bit (its bootloader writes the flash)   Debian: dfu-util

The variants (ulx3s-85f, arty_s7_25) have their own platform and device, and the pins of the board named
by `top_name`, whose top they build. LED roles are alive / busy / error / rx activity (`boards.top`).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field, replace

from .errors import UnknownBoard


@dataclass(frozen=True)
class Programmer:
    """A programmer program: its name, the environment variable that replaces it (as amaranth-boards
    does), and the Debian package that has it."""
    tool: str
    env: str
    package: str


ICEPROG = Programmer("iceprog", "ICEPROG", "fpga-icestorm")
OPENFPGALOADER = Programmer("openFPGALoader", "OPENFPGALOADER", "openfpgaloader")
DFU_UTIL = Programmer("dfu-util", "DFU_UTIL", "dfu-util")


@dataclass(frozen=True)
class SpiPins:
    """The SPI link's pins on a connector of the board (the Pmod SPI pinout where there is a Pmod: 1 CS,
    2 COPI, 3 CIPO, 4 SCK), added to the platform as the resource "spi_link" 0 (`boards.top.spi_resource`)."""
    connector: str                       # amaranth-boards connector name ...
    number: int                          # ... and number
    pins: dict[str, str]                 # cs_n, copi, cipo, sck -> the connector's pin
    attrs: dict[str, object]             # I/O attributes of every pin
    pull_up: dict[str, object]           # the attribute that pulls CS_n up (unconnected: deselected)


PMOD_SPI = {"cs_n": "1", "copi": "2", "cipo": "3", "sck": "4"}
XILINX_PMOD_SPI = SpiPins("pmod", 0, PMOD_SPI, {"IOSTANDARD": "LVCMOS33"}, {"PULLUP": "TRUE"})
ULX3S_SPI = SpiPins("gpio", 0, {"cs_n": "0+", "copi": "1+", "cipo": "2+", "sck": "3+"}, {"IO_TYPE": "LVCMOS33"},
                    {"PULLMODE": "UP"})
FOUR_LEDS = {"alive": 0, "busy": 1, "error": 2, "activity": 3}


@dataclass(frozen=True)
class Board:
    """One development board (see the module docstring)."""
    name: str                            # the name on the command line
    description: str
    platform: str                        # "module:Class" in amaranth_boards
    family: str                          # ice40, ecp5, xc7
    device: str                          # the FPGA (power model, report)
    fit_device: str | None               # accel.resources device of the pre-synthesis check (None: none that size)
    estimate_device: str                 # the accel.resources device that stands for it (the nearest smaller one)
    osc_hz: float                        # the board oscillator
    bitstream: str                       # the bitstream file's suffix
    top_name: str                        # the board whose pins and top it has (a variant: the same board)
    spi: SpiPins | None                  # the SPI link's pins (None: none defined)
    programmer: Programmer
    flash_args: tuple[str, ...]          # the programmer's arguments (before the bitstream) to write the flash
    sram_args: tuple[str, ...] | None    # ... to load the FPGA's SRAM; None: it always writes the flash
    flash_only_note: str = ""            # said when SRAM was asked for and the programmer writes the flash
    uart: bool = True                    # a USB-serial bridge on amaranth-boards' resource "uart" 0
    leds: dict[str, int] = field(default_factory=lambda: dict(FOUR_LEDS))    # role -> "led" number
    rgb_leds: dict[str, str] | None = None     # role -> colour of "rgb_led" 0, for a board with an RGB LED

    def platform_class(self):
        module, _, cls = self.platform.partition(":")
        return getattr(importlib.import_module(module), cls)

    @property
    def default_link(self) -> str:
        """The link the board gets unless told: the UART where it has a USB-serial bridge, SPI otherwise."""
        return "uart" if self.uart else "spi"


def _openfpgaloader(name: str) -> dict:
    """The programmer fields of a board that openFPGALoader loads as `-b name`."""
    return {"programmer": OPENFPGALOADER, "flash_args": ("-b", name, "-f"), "sram_args": ("-b", name, "-m")}


_ICEBREAKER = Board(
    name="icebreaker", description="1BitSquared iCEBreaker (iCE40UP5K-SG48)",
    platform="amaranth_boards.icebreaker:ICEBreakerPlatform", family="ice40", device="ice40-up5k",
    fit_device="ice40-up5k", estimate_device="ice40-up5k", osc_hz=12e6, bitstream="bin", top_name="icebreaker",
    spi=SpiPins("pmod", 0, PMOD_SPI, {"IO_STANDARD": "SB_LVCMOS"}, {"PULLUP": 1}),
    programmer=ICEPROG, flash_args=(), sram_args=("-S",),
    leds={"alive": 1, "error": 0})
_ORANGECRAB = Board(
    name="orangecrab", description="OrangeCrab r0.2 (LFE5U-25F-8MG285)",
    platform="amaranth_boards.orangecrab_r0_2:OrangeCrabR0_2_25FPlatform", family="ecp5", device="ecp5-25f",
    fit_device="ecp5-25f", estimate_device="ecp5-25f", osc_hz=48e6, bitstream="bit", top_name="orangecrab",
    spi=SpiPins("io", 0, {"cs_n": "10", "copi": "copi", "cipo": "cipo", "sck": "sck"}, {"IO_TYPE": "LVCMOS33"},
                {"PULLMODE": "UP"}),
    programmer=DFU_UTIL, flash_args=("-d", "1209:5af0", "-a", "0", "-D"), sram_args=None,
    flash_only_note="the OrangeCrab's DFU bootloader always writes the flash (hold its button while plugging it "
                    "in to enter the bootloader)",
    uart=False, leds={}, rgb_leds={"alive": "g", "error": "r", "activity": "b"})
_ULX3S = Board(
    name="ulx3s", description="Radiona ULX3S, 25F variant (LFE5U-25F-6BG381)",
    platform="amaranth_boards.ulx3s:ULX3S_25F_Platform", family="ecp5", device="ecp5-25f",
    fit_device="ecp5-25f", estimate_device="ecp5-25f", osc_hz=25e6, bitstream="bit", top_name="ulx3s",
    spi=ULX3S_SPI, **_openfpgaloader("ulx3s"))
_ULX3S_85F = replace(      # the same board with the larger part (no yosys fit device of its own)
    _ULX3S, name="ulx3s-85f", description="Radiona ULX3S, 85F variant (LFE5U-85F-6BG381)",
    platform="amaranth_boards.ulx3s:ULX3S_85F_Platform", device="ecp5-85f", fit_device=None)
_ARTY_S7 = Board(
    name="arty_s7", description="Digilent Arty S7-50 (XC7S50-1CSGA324)",
    platform="amaranth_boards.arty_s7:ArtyS7_50Platform", family="xc7", device="xc7s50",
    fit_device=None, estimate_device="xc7s15", osc_hz=100e6, bitstream="bit", top_name="arty_s7",
    spi=XILINX_PMOD_SPI, **_openfpgaloader("arty_s7_50"))
_ARTY_S7_25 = replace(    # the same board with the smaller part
    _ARTY_S7, name="arty_s7_25", description="Digilent Arty S7-25 (XC7S25-1CSGA324)",
    platform="amaranth_boards.arty_s7:ArtyS7_25Platform", device="xc7s25", **_openfpgaloader("arty_s7_25"))
_CMOD_S7 = Board(
    name="cmod_s7", description="Digilent Cmod S7 (XC7S25-1CSGA225)",
    platform="amaranth_boards.cmod_s7:CmodS7_Platform", family="xc7", device="xc7s25",
    fit_device=None, estimate_device="xc7s15", osc_hz=12e6, bitstream="bit", top_name="cmod_s7",
    spi=XILINX_PMOD_SPI, **_openfpgaloader("cmod_s7"))

BOARDS: dict[str, Board] = {b.name: b for b in (_ICEBREAKER, _ORANGECRAB, _ULX3S, _ULX3S_85F, _ARTY_S7, _ARTY_S7_25,
                                                _CMOD_S7)}


def board(name: str) -> Board:
    """The catalogue's entry for `name`; `UnknownBoard` naming the known ones."""
    if name not in BOARDS:
        raise UnknownBoard(f"unknown board {name!r}; choose one of {', '.join(BOARDS)}")
    return BOARDS[name]
