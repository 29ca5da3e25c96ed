"""The errors of the board layer, by kind, so that a caller catches the kind it can handle (`except
NoSerialBridge`) instead of matching a message's text. Every one is an `IntformerError` (a problem the user
can fix, with what to do in its message), so the command line shows it as one clear line as before.

    BoardError            what a board cannot do
      UnknownBoard          a name the catalogue (`boards.catalogue.BOARDS`) does not hold
      LinkUnavailable       the board has no pins for the link asked for
        NoSerialBridge        the UART link on a board without a USB-serial bridge (`--link spi`, `--bare`)
      ClockUnavailable      a clock the board's PLL cannot make
    BuildError            a build that cannot finish
      DoesNotFit            the design is larger than the device (the estimate, yosys or nextpnr says so)
      TimingNotMet          nextpnr's Fmax is below the requested clock
      ToolchainError        a tool is missing or failed, or left no report or bitstream
      BuildExists           the build folder is not empty (`--force`)
    ProgramError          loading a bitstream onto a board
      NoBuild               no (finished) build of the board in the run
      NoDrive               no USB drive to copy onto, for a board programmed by a copy (iCESugar: --drive)
    PortError             the host's serial port (missing, busy, no permission)
    NoAnswer              the device does not answer INFO (not programmed, another port or baud rate)
"""
from __future__ import annotations

from intformer.model.errors import IntformerError


class BoardError(IntformerError):
    """A board cannot do what was asked."""


class UnknownBoard(BoardError):
    """A board name that the catalogue does not hold."""


class LinkUnavailable(BoardError):
    """The board has no pins for the host link asked for (`link`: "uart" or "spi")."""

    def __init__(self, message: str, link: str):
        super().__init__(message)
        self.link = link


class NoSerialBridge(LinkUnavailable):
    """The UART link on a board whose USB port is wired to the FPGA itself (no USB-serial bridge)."""

    def __init__(self, message: str):
        super().__init__(message, "uart")


class ClockUnavailable(BoardError):
    """A clock the board's PLL cannot make."""


class BuildError(IntformerError):
    """A build that cannot finish."""


class DoesNotFit(BuildError):
    """The design is larger than the device."""


class TimingNotMet(BuildError):
    """The placed design's Fmax is below the requested clock (the build stays in its folder)."""


class ToolchainError(BuildError):
    """A tool of the toolchain is missing or failed, or finished without what it should have written."""


class BuildExists(BuildError):
    """The build folder already holds files."""


class ProgramError(IntformerError):
    """The bitstream could not be loaded onto the board."""


class NoBuild(ProgramError):
    """The run has no finished build for the board."""


class NoDrive(ProgramError):
    """A board programmed by copying its bitstream onto a USB mass-storage drive (the iCESugar's iCELink),
    and no such drive given, mounted or writable."""


class PortError(IntformerError):
    """The host's serial port cannot be opened."""


class NoAnswer(IntformerError):
    """The device does not answer the host's INFO."""
