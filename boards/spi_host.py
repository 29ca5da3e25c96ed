"""The host side of the SPI link: `boards.host.Session` over a Linux spidev device instead of a serial port.

`open_spi("/dev/spidevX.Y", hz)` opens the kernel's SPI device with the `spidev` module (mode 0, 8 bits per
word, MSB first: what `boards.spi.SPIPeripheral` speaks) and returns an `SpiPort`, which has the part of a
pyserial port that `Session` uses (`write`, `read`, `in_waiting`, `flush`, `close`), so INFO, INFER, the
retries, the reply timeout and the tally are those of the serial link.

SPI is full duplex and the host makes the clock, so:

* `write(data)` clocks the frame out (one transaction per `chunk` bytes, CS low throughout) and keeps the
  bytes the device clocked back meanwhile: they may be a reply to an earlier request (with two windows in
  flight).
* `read(n)` returns what it holds; holding nothing, it polls: it clocks `poll_bytes` filler bytes (0x00,
  which the device's parser skips while it hunts for SOF; more when a reply frame is under way: the rest
  of that frame) and, when that brings nothing either, sleeps `poll_interval` seconds (so an idle poll
  loop neither floods the bus nor spins). `Session`'s reply timeout and its retries bound the polling.
* The device fills every byte it has nothing to send with 0x00 (`spi.FILLER`). `FillerStripper` follows
  the frames in the byte stream from the device (SOF, LEN, payload, CRC) and drops the fillers between
  frames, so the decoder sees the device's frames and nothing else (non-filler bytes between frames still
  reach it, and count as decoder skips).
* The protocol's "silence" after an error (longer than the device's frame timeout) holds here too; but a
  host that polls during it feeds the device zeros, which end any frame the device was still waiting for
  (it answers ERROR: bad CRC or bad length, which `Session` counts as a stale reply) instead of the frame
  timeout: either way the device hunts for SOF again before the next request.
"""
from __future__ import annotations

import os
import re
import time

from intformer.model.errors import IntformerError

from . import protocol as P
from .spi import FILLER

DEFAULT_HZ = 1_000_000
SPIDEV_CHUNK = 4096                     # the spidev driver's default buffer (module parameter bufsiz)


class FillerStripper:
    """Drops `FILLER` bytes outside the frames of a byte stream from the device (see the module doc). Inside
    a frame (from SOF to its CRC, by its LEN) every byte is kept; a LEN larger than `max_len` is not
    followed (the decoder will skip that SOF), so a corrupt header costs at most a few kept fillers."""

    def __init__(self, max_len: int = P.MAX_LEN):
        self.max_len = max_len
        self._header = bytearray()        # the header so far, while it is incomplete
        self._left = 0                    # bytes of the current frame still to come, after its header

    @property
    def wanted(self) -> int:
        """Bytes still to come of the frame under way (0 between frames)."""
        if self._header:
            return P.HEADER_LEN - len(self._header) + P.CRC_LEN
        return self._left

    def feed(self, data: bytes) -> bytes:
        out = bytearray()
        for b in data:
            if self._left:
                self._left -= 1
                out.append(b)
            elif self._header:
                self._header.append(b)
                out.append(b)
                if len(self._header) == P.HEADER_LEN:
                    length = self._header[3] | self._header[4] << 8
                    self._left = length + P.CRC_LEN if length <= self.max_len else 0
                    self._header.clear()
            elif b == P.SOF:
                self._header.append(b)
                out.append(b)
            elif b != FILLER:
                out.append(b)                 # not a filler: the decoder reports it
        return bytes(out)


class SpiPort:
    """A serial-port look-alike over an open spidev object (anything with `xfer2(list) -> list` and
    `close()`); see the module docstring."""

    def __init__(self, spi, device: str = "spi", poll_bytes: int = 32, poll_interval: float = 0.0005,
                 chunk: int = SPIDEV_CHUNK, sleep=time.sleep):
        if poll_bytes < 1 or chunk < 1:
            raise ValueError("poll_bytes and chunk must be positive")
        self.spi, self.device = spi, device
        self.poll_bytes, self.poll_interval, self.chunk, self.sleep = poll_bytes, poll_interval, chunk, sleep
        self.stripper = FillerStripper()
        self._rx = bytearray()
        self.clocked_out = 0              # bytes clocked out (frames and fillers)
        self.polls = 0

    def _xfer(self, data: bytes) -> None:
        for i in range(0, len(data), self.chunk):
            part = data[i:i + self.chunk]
            try:
                got = self.spi.xfer2(list(part))
            except OSError as exc:
                raise IntformerError(f"{self.device}: SPI transfer failed: {exc}") from None
            self.clocked_out += len(part)
            self._rx += self.stripper.feed(bytes(got))

    def write(self, data: bytes) -> int:
        self._xfer(bytes(data))
        return len(data)

    @property
    def in_waiting(self) -> int:
        return len(self._rx)

    def read(self, n: int = 1) -> bytes:
        if not self._rx:
            self.polls += 1
            self._xfer(bytes([FILLER]) * max(self.poll_bytes, self.stripper.wanted))
            if not self._rx and self.poll_interval > 0:
                self.sleep(self.poll_interval)
        data = bytes(self._rx[:n])
        del self._rx[:n]
        return data

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.spi.close()


_SPIDEV_PATH = re.compile(r"^/dev/spidev(\d+)\.(\d+)$")


def open_spi(device: str, hz: int = DEFAULT_HZ) -> SpiPort:
    """Open `device` (/dev/spidevX.Y) at `hz` in mode 0 as an `SpiPort`; IntformerError when it cannot."""
    m = _SPIDEV_PATH.match(str(device))
    if not m:
        raise IntformerError(f"{device}: not an SPI device name; expected /dev/spidevX.Y (bus X, chip select Y), "
                             f"e.g. /dev/spidev0.0 for a Raspberry Pi's SPI0 CE0")
    try:
        import spidev
    except ImportError:
        raise IntformerError(f"the SPI link needs the spidev module (Linux only): pip install spidev; then "
                             f"{device} (/dev/spidevX.Y) must exist (Raspberry Pi: enable SPI with raspi-config)") \
            from None
    if not os.path.exists(device):
        raise IntformerError(f"{device}: no such SPI device; is the kernel's spidev driver loaded (Raspberry Pi: "
                             f"enable SPI with raspi-config, or dtparam=spi=on in config.txt)?")
    if hz <= 0:
        raise IntformerError(f"--spi-hz must be positive, not {hz}")
    spi = spidev.SpiDev()
    try:
        spi.open(int(m.group(1)), int(m.group(2)))
    except PermissionError:
        raise IntformerError(f"{device}: permission denied; add this user to the device's group (usually spi) "
                             f"or use a udev rule") from None
    except OSError as exc:
        raise IntformerError(f"{device}: cannot open the SPI device: {exc}") from None
    try:
        spi.mode = 0
        spi.bits_per_word = 8
        spi.lsbfirst = False
        spi.max_speed_hz = int(hz)
    except (OSError, AttributeError, TypeError) as exc:
        spi.close()
        raise IntformerError(f"{device}: cannot set mode 0 at {hz} Hz: {exc}") from None
    return SpiPort(spi, device)


def spi_link_bound(info: P.DeviceInfo, hz: float, in_flight: int) -> float:
    """Windows per second the SPI clock allows (8 clocks a byte): with two windows in flight a request's
    bytes and an earlier reply's share the same clocks, with one they take turns."""
    up = P.OVERHEAD + info.infer_len
    down = P.OVERHEAD + info.n_outputs * P.WORD_BYTES
    bytes_per_s = hz / 8
    return bytes_per_s / (max(up, down) if in_flight > 1 else up + down)
