"""The boards intformer builds for, one `Board` entry each: adding a board is adding one entry to `BOARDS`.

An entry holds everything the build (`boards.build`), the board top (`boards.top`) and the programmer
(`boards.program`) need to know of the board: its amaranth-boards platform, FPGA family and device, the
oscillator, the LEDs and their roles, the host link's pins (the USB-serial bridge's UART, and SPI pins on a
connector), and the programmer with its arguments.

    board        clock    UART (USB bridge)      SPI link pins: CS / COPI / CIPO / SCK   LEDs
    icebreaker   12 MHz   FTDI 2232H ch. B       PMOD1A 1 / 2 / 3 / 4                    led 1 (green), led 0 (red)
    upduino_v3   12 MHz*  none (SPI by default)  header 27 / 26 / 25 / 23 (Pmod 1 to 4)  RGB LED: g / - / r / b
    icesugar     12 MHz   iCELink CDC (4 / 6)    PMOD2 1 / 2 / 3 / 4 (46 / 44 / 42 / 37) led 1 g / - / led 0 r / led 2 b
    ulx3s        25 MHz   FTDI FT231X            GP0 / GP1 / GP2 / GP3                   led 0 / 1 / 2 / 3
    arty_s7      100 MHz  FTDI 2232H ch. B       JA 1 / 2 / 3 / 4                        led 0 / 1 / 2 / 3
    cmod_s7      12 MHz   FTDI 2232H ch. B       JA 1 / 2 / 3 / 4                        led 0 / 1 / 2 / 3
    tang_nano_9k 27 MHz   BL702 (18 rx / 17 tx)  none                                    led 0 / 1 / 2 / 3 (active low)
    tang_primer_20k 27 MHz Dock BL616 (T13 / M11) Dock PMOD0 1 / 2 / 3 / 4 (B11 D11 N7 N8) Dock led 0 / 1 / 2 / 3
    orangecrab   48 MHz   none (SPI by default)  Feather 10 / MO / MI / SCK              RGB LED: g / - / r / b

    icebreaker            iceprog -S top.bin (SRAM) / iceprog top.bin (SPI flash)        Debian: fpga-icestorm
    upduino_v3            iceprog top.bin (SPI flash; SRAM only with its CRAM jumpers)   Debian: fpga-icestorm
    icesugar              top.bin copied onto the iCELink drive (--drive, ICESUGAR_DRIVE), which writes the flash;
                          or icesprog top.bin (github.com/wuxx/icesugar, not in Debian)
    ulx3s, ulx3s-85f      openFPGALoader -b ulx3s -m|-f top.bit                           Debian: openfpgaloader
    arty_s7, arty_s7_25   openFPGALoader -b arty_s7_50|arty_s7_25 -m|-f top.bit           Debian: openfpgaloader
    cmod_s7               openFPGALoader -b cmod_s7 -m|-f top.bit                         Debian: openfpgaloader
    tang_nano_9k          openFPGALoader -b tangnano9k -m|-f top.fs                       Debian: openfpgaloader
    tang_primer_20k       openFPGALoader -b tangprimer20k -m|-f top.fs                    Debian: openfpgaloader
    orangecrab            dfu-util -d 1209:5af0 -a 0 -D top.bit (its bootloader writes the flash)   Debian: dfu-util

The variants (ulx3s-85f, arty_s7_25) have their own platform and device, and the pins of the board named
by `top_name`, whose top they build. LED roles are alive / busy / error / rx activity (`boards.top`).

The UPduino v3's FT232H is wired to the flash only (USB to SPI, no UART to the FPGA): its link is SPI on
the header row laid out as a Pmod (FPGA pins 27 CS, 26 COPI, 25 CIPO, 23 SCK, then GND, 3V3), so a Pmod
SPI cable fits. * Its clock is the UP5K's internal oscillator (SB_HFOSC, 48 MHz / 4 = 12 MHz, within
10 %, which the SPI link does not mind): the board's 12 MHz crystal oscillator reaches the FPGA only with
the OSC jumper shorted, so there is no PLL (`clock_pin` False). The iCESugar's iCELink (an STM32) gives a
USB-serial port (CDC) on FPGA pins 4 (rx) and 6 (tx), and its 12 MHz on pin 35, as the iCEBreaker's.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field, replace

from .errors import UnknownBoard


@dataclass(frozen=True)
class Programmer:
    """A programmer: of kind "command", a program (its name, the environment variable that replaces it as
    amaranth-boards does, the Debian package that has it); of kind "drive", a USB mass-storage drive that
    the board's own programmer chip presents and that loads a bitstream copied onto it (`tool`: the drive's
    name, `env`: the variable holding its mount point, as `--drive` does; `package`: the command-line
    programmer that does the same, for the notes)."""
    tool: str
    env: str
    package: str
    kind: str = "command"                # "command" or "drive" (`boards.program`)


ICEPROG = Programmer("iceprog", "ICEPROG", "fpga-icestorm")
OPENFPGALOADER = Programmer("openFPGALoader", "OPENFPGALOADER", "openfpgaloader")
DFU_UTIL = Programmer("dfu-util", "DFU_UTIL", "dfu-util")
# the iCESugar's iCELink (an STM32 running DAPLink-derived firmware) shows up as a drive named iCELink
ICELINK_DRIVE = Programmer("iCELink", "ICESUGAR_DRIVE", "icesprog (github.com/wuxx/icesugar, not in Debian)",
                           kind="drive")


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
_PLATFORM_VARIANTS: dict[tuple, type] = {}     # (platform, platform_attrs) -> its subclass (`Board.platform_class`)


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
    # class attributes the entry sets on its platform (a subclass of it; UPduino v3: the SB_HFOSC divider)
    platform_attrs: dict[str, object] = field(default_factory=dict)
    clock_pin: bool = True               # the oscillator enters on a pin a PLL can take; False: internal (SB_HFOSC)

    def platform_class(self):
        module, _, cls = self.platform.partition(":")
        base = getattr(importlib.import_module(module), cls)
        if not self.platform_attrs:
            return base
        key = (self.platform, tuple(sorted(self.platform_attrs.items())))
        if key not in _PLATFORM_VARIANTS:      # one class per setting, so that every caller gets the same one
            _PLATFORM_VARIANTS[key] = type(base.__name__, (base,), dict(self.platform_attrs))
        return _PLATFORM_VARIANTS[key]

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
# The other UP5K-SG48 boards share the iCEBreaker's device, fit check, power model and flow (hence
# `replace`); they differ in pins, clock and programmer.
_UPDUINO_V3 = replace(
    _ICEBREAKER, name="upduino_v3", description="tinyVision.ai UPduino v3.0 / v3.1 (iCE40UP5K-SG48)",
    platform="amaranth_boards.upduino_v3:UpduinoV3Platform", top_name="upduino_v3",
    # the internal 48 MHz oscillator / 4: its 12 MHz crystal oscillator reaches the FPGA (pin 20) only once the
    # OSC jumper (R16) is shorted, so an unmodified board has no clock pin for a PLL
    platform_attrs={"hfosc_div": 2}, clock_pin=False,
    # the header row laid out as a Pmod (silkscreen 27 26 25 23 GND 3V3: Pmod pins 1 to 6)
    spi=replace(_ICEBREAKER.spi, connector="j", number=0, pins={"cs_n": "10", "copi": "9", "cipo": "8", "sck": "7"}),
    sram_args=None,
    flash_only_note="the UPduino v3 configures itself from its SPI flash, which iceprog writes (loading the "
                    "SRAM with iceprog -S needs its CRAM jumpers: R12/R13 removed, R11/R27 fitted)",
    uart=False, leds={}, rgb_leds={"alive": "g", "error": "r", "activity": "b"})
_ICESUGAR = replace(
    _ICEBREAKER, name="icesugar", description="MuseLab iCESugar (iCE40UP5K-SG48)",
    platform="amaranth_boards.icesugar:ICESugarPlatform", top_name="icesugar",
    spi=replace(_ICEBREAKER.spi, number=1),          # PMOD2 (PMOD1 shares its pins with the UART and USB)
    programmer=ICELINK_DRIVE, flash_args=(), sram_args=None,
    flash_only_note="the iCELink writes the SPI flash and then restarts the FPGA (a few seconds: leave the board "
                    "plugged in)",
    leds={"alive": 1, "error": 0, "activity": 2})       # led 0 red, 1 green, 2 blue
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
# Gowin: the open flow (yosys synth_gowin, nextpnr-himbaechel-gowin, apicula's gowin_pack; `boards.build`). Both
# boards have a 27 MHz oscillator, a USB-UART in their debugger chip and active-low LEDs (amaranth-boards inverts
# them); no estimate of `accel.resources` covers Gowin parts, so nextpnr decides what fits.
_TANG_NANO_9K = Board(
    name="tang_nano_9k", description="Sipeed Tang Nano 9K (GW1NR-LV9QN88PC6/I5)",
    platform="amaranth_boards.tang_nano_9k:TangNano9kPlatform", family="gowin", device="gw1nr-9",
    fit_device=None, estimate_device="ice40-up5k", osc_hz=27e6, bitstream="fs", top_name="tang_nano_9k",
    spi=None,                  # amaranth-boards defines no connector on it: the link is the BL702's UART
    **_openfpgaloader("tangnano9k"))
_TANG_PRIMER_20K = Board(      # the core board on its Dock (the LEDs, Pmods and the BL616's UART are on the Dock)
    name="tang_primer_20k", description="Sipeed Tang Primer 20K on its Dock (GW2A-LV18PG256C8/I7)",
    platform="amaranth_boards.tang_primer_20k:TangPrimer20kDockPlatform", family="gowin", device="gw2a-18",
    fit_device=None, estimate_device="xc7s15", osc_hz=27e6, bitstream="fs", top_name="tang_primer_20k",
    spi=SpiPins("pmod", 0, PMOD_SPI, {"IO_TYPE": "LVCMOS33"}, {"PULL_MODE": "UP"}),
    **_openfpgaloader("tangprimer20k"))

BOARDS: dict[str, Board] = {b.name: b for b in (_ICEBREAKER, _UPDUINO_V3, _ICESUGAR, _ORANGECRAB, _ULX3S,
                                                _ULX3S_85F, _ARTY_S7, _ARTY_S7_25, _CMOD_S7, _TANG_NANO_9K,
                                                _TANG_PRIMER_20K)}


def board(name: str) -> Board:
    """The catalogue's entry for `name`; `UnknownBoard` naming the known ones."""
    if name not in BOARDS:
        raise UnknownBoard(f"unknown board {name!r}; choose one of {', '.join(BOARDS)}")
    return BOARDS[name]
