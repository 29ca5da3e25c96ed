"""The host side of `intformer infer`: windows to a board over its serial port, every forecast checked.

`open_port` opens the serial port (pyserial, exclusively, so that two hosts never share one board) and turns
the usual failures into one clear `PortError` (`boards.errors`): no such port, port busy, no permission.

`Session` speaks `boards.protocol`: INFO once (is it the run's model?), then INFER frames with sequence
numbers, up to `in_flight` (1 or 2: the device holds one window computing and one waiting) outstanding,
and RESULT frames matched to their window by SEQ. A window whose reply does not come within `reply_timeout`,
or comes back as a retryable ERROR (bad CRC, frame timeout, busy), is sent again, up to `retries` times,
after a silence longer than the device's frame timeout (the protocol's host rules); an ERROR saying the
request itself is wrong (length, command, code) fails the window at once. Replies with an unknown SEQ (late
replies to a window already resent) are counted and ignored.

`Session.stream` speaks the streaming mode (STEP): the INFER of the first window fills the device's ring, then
one STEP per new sample, each answered by the RESULT of the window ending at it, up to `in_flight` outstanding.
The ring holds what the device accepted, so a STEP that fails is not resent as it is: the later ones in
flight are dropped (their replies, if any, are stale), and after the silence the host resynchronizes with an
INFER of the failed sample's whole window (counted in `resyncs`), then streams on from there.

Every window ends in exactly one of: matched (the words equal `model.intref.run_program`'s), mismatched,
failed (no good reply after the retries). For a classifier (`classes` = C given to `Session.run`) the last
word is the class the chip computed, decoded as a field of its own: `result["classes"]` (one per window,
None where none came), and a mismatch says whether a score or the class differs. The tally also counts
frames sent, retries, device errors by kind, stale replies and bytes the decoder skipped.
"""
from __future__ import annotations

import collections
import time
from dataclasses import dataclass, field

import numpy as np

from intformer.model.errors import IntformerError

from . import protocol as P
from .errors import NoAnswer, PortError

RETRYABLE = (P.ERR_CRC, P.ERR_TIMEOUT, P.ERR_BUSY)


def open_port(device: str, baud: int, timeout: float = 0.01):
    """Open `device` as a raw 8N1 serial port at `baud` (exclusive). `PortError` when it cannot."""
    try:
        import serial
    except ImportError:
        raise PortError("pyserial is not installed: pip install 'pyserial>=3.5'") from None
    try:
        return serial.Serial(device, baudrate=baud, bytesize=8, parity="N", stopbits=1, timeout=timeout,
                             write_timeout=5.0, exclusive=True)
    except ValueError as exc:
        raise PortError(f"{device}: {exc}") from None
    except serial.SerialException as exc:
        text = str(exc)
        errno = getattr(exc, "errno", None)
        if errno == 2 or "No such file" in text or "could not open port" in text and "No such" in text:
            raise PortError(f"{device}: no such serial port; is the board plugged in? (the USB-serial "
                            f"bridge is usually /dev/ttyUSB* or /dev/ttyACM*; the iCEBreaker's is the "
                            f"second one, e.g. /dev/ttyUSB1)") from None
        if errno in (11, 16) or "lock" in text.lower() or "busy" in text.lower():
            raise PortError(f"{device}: the serial port is busy (another program has it open: a terminal, "
                            f"another intformer infer?)") from None
        if errno == 13 or "Permission denied" in text:
            raise PortError(f"{device}: permission denied; add this user to the port's group (usually "
                            f"dialout) or use a udev rule") from None
        raise PortError(f"{device}: cannot open the serial port: {text}") from None


@dataclass
class Tally:
    windows: int = 0                 # windows to run
    sent: int = 0                    # windows sent at least once
    answered: int = 0                # windows with a RESULT (matched + mismatched)
    matched: int = 0
    mismatched: int = 0
    failed: int = 0
    frames_sent: int = 0             # INFER frames written, retries included
    retries: int = 0
    timeouts: int = 0                # replies that did not come in time
    stale_replies: int = 0           # replies with an unknown SEQ (late, after a resend)
    device_errors: dict = field(default_factory=dict)      # ERROR replies by name
    decode_errors: int = 0           # stretches of bytes the decoder skipped (garbage, bad CRC, truncated)
    resyncs: int = 0                 # streaming: INFERs that refilled the ring after a failed STEP

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class Session:
    """The protocol over an open port (anything with `write(bytes)` and `read(n)`, see the module doc)."""

    def __init__(self, port, reply_timeout: float = 1.0, retries: int = 3, in_flight: int = 2,
                 frame_timeout: float = P.FRAME_TIMEOUT_S, clock=time.monotonic):
        if in_flight not in (1, 2):
            raise IntformerError(f"in_flight must be 1 or 2 (the device holds two windows), not {in_flight}")
        if retries < 0 or reply_timeout <= 0:
            raise IntformerError("--retries must be >= 0 and --timeout > 0")
        self.port, self.reply_timeout, self.retries = port, reply_timeout, retries
        self.in_flight, self.frame_timeout, self.clock = in_flight, frame_timeout, clock
        self.decoder = P.FrameDecoder()
        self._seq = 0
        self._last_rx = clock()
        self.tally = Tally()

    # ------------------------------------------------------------------------------------ the line
    def _next_seq(self) -> int:
        self._seq = self._seq % 255 + 1          # 1..255: an ERROR for a frame cut before its SEQ carries 0
        return self._seq

    def _read(self) -> list[P.Frame]:
        waiting = getattr(self.port, "in_waiting", 0)
        data = self.port.read(max(1, waiting))
        now = self.clock()
        if data:
            self._last_rx = now
            frames = self.decoder.feed(data)
        elif self.decoder.pending and now - self._last_rx > 2 * self.frame_timeout:
            frames = self.decoder.flush()                 # a partial frame the line gave up on
        else:
            frames = []
        self.tally.decode_errors += len(self.decoder.take_errors())
        return frames

    def _write(self, cmd: int, seq: int, payload: bytes) -> None:
        self.port.write(P.encode_frame(cmd, seq, payload))
        flush = getattr(self.port, "flush", None)
        if flush:
            flush()

    def _quiet(self) -> None:
        """Silence longer than the device's frame timeout (reading what arrives meanwhile is fine)."""
        end = self.clock() + 2 * self.frame_timeout
        while self.clock() < end:
            for frame in self._read():
                self.tally.stale_replies += 1
        self.decoder.flush()
        self.tally.decode_errors += len(self.decoder.take_errors())

    # ---------------------------------------------------------------------------------------- INFO
    def info(self) -> P.DeviceInfo:
        last = "no reply"
        for attempt in range(self.retries + 1):
            if attempt:
                self._quiet()
            seq = self._next_seq()
            self._write(P.INFO, seq, b"")
            deadline = self.clock() + self.reply_timeout
            while self.clock() < deadline:
                for frame in self._read():
                    if frame.seq != seq:
                        self.tally.stale_replies += 1
                    elif frame.cmd == P.INFO_REPLY:
                        return P.DeviceInfo.from_payload(frame.payload)
                    elif frame.cmd == P.ERROR:
                        code = frame.payload[0] if frame.payload else 0
                        last = f"device error {code} ({P.ERROR_NAMES.get(code, 'unknown')})"
                        deadline = 0
                        break
            else:
                last = f"no reply within {self.reply_timeout:g} s"
        raise NoAnswer(f"the device does not answer INFO ({last} after {self.retries + 1} tries): is the "
                       f"board programmed with an `intformer build` bitstream (not --bare), and is this its "
                       f"serial port and baud rate?")

    # --------------------------------------------------------------------------------------- INFER
    def run(self, codes: np.ndarray, expected: np.ndarray, info: P.DeviceInfo, progress=None,
            classes: int = 0) -> dict:
        """Send every window of `codes` (B, ...) and check its RESULT against `expected` (B, H). `classes`:
        a classifier's C (`protocol.program_classes`): each RESULT is C scores and the class."""
        if classes and info.n_outputs != classes + 1:
            raise IntformerError(f"the device sends {info.n_outputs} words; a classifier of {classes} classes "
                                 f"sends {classes + 1} (its scores, then the class)")
        codes = np.asarray(codes, dtype=np.int64)
        batch = len(codes)
        t = self.tally
        payloads = [P.infer_payload(c, info) for c in codes]
        book = _Book(t, np.asarray(expected, dtype=np.int64), batch, info.n_outputs, progress)
        attempts, settle = book.attempts, book.settle
        queue = collections.deque(range(batch))
        outstanding: dict[int, tuple[int, float]] = {}   # seq -> (window, sent at)
        quiet_until = 0.0
        start = self.clock()

        def retry_or_fail(w: int, reason: str) -> None:
            nonlocal quiet_until
            quiet_until = self.clock() + 2 * self.frame_timeout
            if attempts[w] <= self.retries:
                t.retries += 1
                queue.appendleft(w)
            else:
                t.failed += 1
                settle(w, "failed", f"{reason} (after {attempts[w]} tries)")

        while queue or outstanding:
            now = self.clock()
            while queue and len(outstanding) < self.in_flight and now >= quiet_until:
                if quiet_until and not outstanding:
                    self.decoder.flush()                   # the silence is over: start clean
                    t.decode_errors += len(self.decoder.take_errors())
                    quiet_until = 0.0
                w = queue.popleft()
                seq = self._next_seq()
                self._write(P.INFER, seq, payloads[w])
                if attempts[w] == 0:
                    t.sent += 1
                attempts[w] += 1
                t.frames_sent += 1
                outstanding[seq] = (w, self.clock())
            for frame in self._read():
                if frame.seq not in outstanding:
                    t.stale_replies += 1
                    continue
                w, sent_at = outstanding.pop(frame.seq)
                if frame.cmd == P.RESULT and len(frame.payload) == info.n_outputs * P.WORD_BYTES:
                    book.result(w, frame.payload, self.clock() - sent_at)
                elif frame.cmd == P.ERROR:
                    code, name = book.device_error(frame)
                    if code in RETRYABLE:
                        retry_or_fail(w, f"device error {code} ({name})")
                    else:
                        t.failed += 1
                        settle(w, "failed", f"device error {code} ({name}): the request itself is wrong")
                else:
                    retry_or_fail(w, f"unexpected reply {frame!r}")
            now = self.clock()
            for seq, (w, sent_at) in list(outstanding.items()):
                if now - sent_at > self.reply_timeout:
                    del outstanding[seq]
                    t.timeouts += 1
                    retry_or_fail(w, f"no reply within {self.reply_timeout:g} s")
        self.words = book.got
        return book.summary(self.clock() - start, classes)

    # -------------------------------------------------------------------------------------- STREAM
    def stream(self, samples, expected: np.ndarray, info: P.DeviceInfo, rows: int, progress=None,
               classes: int = 0) -> dict:
        """Stream consecutive `samples` (T, cols: one row of codes per time step): INFER of the first window,
        then a STEP per sample; check the RESULT of each window k (ending at sample rows - 1 + k) against
        `expected[k]` (T - rows + 1, H). See the module doc for the resynchronization after a failure."""
        infers, steps = stream_requests(samples, info, rows)
        expected = np.asarray(expected, dtype=np.int64)
        batch = len(infers)
        if expected.shape != (batch, info.n_outputs):
            raise IntformerError(f"expected words of shape {expected.shape}, not {(batch, info.n_outputs)}")
        t = self.tally
        book = _Book(t, expected, batch, info.n_outputs, progress)
        attempts, settle = book.attempts, book.settle
        outstanding: dict[int, tuple[int, float]] = {}   # seq -> (window, sent at), in sending order
        nxt, resync, quiet_until = 0, True, 0.0
        start = self.clock()

        def fail(w: int, reason: str, retryable: bool = True) -> None:
            """Window w's request failed: drop what follows it in flight, and resynchronize at w (or, after
            its last try, at w + 1) once the line has been quiet."""
            nonlocal nxt, resync, quiet_until
            for later, _ in outstanding.values():           # dropped, not failed: their try does not count
                attempts[later] -= 1
            outstanding.clear()
            quiet_until = self.clock() + 2 * self.frame_timeout
            resync = True
            if retryable and attempts[w] <= self.retries:
                t.retries += 1
                nxt = w
            else:
                t.failed += 1
                settle(w, "failed", reason if not retryable else f"{reason} (after {attempts[w]} tries)")
                nxt = w + 1

        while nxt < batch or outstanding:
            now = self.clock()
            while nxt < batch and len(outstanding) < self.in_flight and now >= quiet_until:
                if resync and not outstanding:
                    self.decoder.flush()
                    t.decode_errors += len(self.decoder.take_errors())
                    t.resyncs += t.frames_sent > 0         # (the first INFER starts the stream)
                seq = self._next_seq()
                cmd, payload = (P.INFER, infers[nxt]) if resync else (P.STEP, steps[nxt])
                self._write(cmd, seq, payload)
                resync = False
                t.sent += attempts[nxt] == 0
                attempts[nxt] += 1
                t.frames_sent += 1
                outstanding[seq] = (nxt, self.clock())
                nxt += 1
            for frame in self._read():
                if frame.seq not in outstanding:
                    t.stale_replies += 1
                    continue
                w, sent_at = outstanding.pop(frame.seq)
                if frame.cmd == P.RESULT and len(frame.payload) == info.n_outputs * P.WORD_BYTES:
                    book.result(w, frame.payload, self.clock() - sent_at)
                elif frame.cmd == P.ERROR:
                    code, name = book.device_error(frame)
                    retryable = code in RETRYABLE
                    fail(w, f"device error {code} ({name})" + ("" if retryable else
                                                                ": the request itself is wrong"), retryable)
                else:
                    fail(w, f"unexpected reply {frame!r}")
            now = self.clock()
            late = [seq for seq, (_, sent_at) in outstanding.items() if now - sent_at > self.reply_timeout]
            if late:
                t.timeouts += 1
                w, _ = outstanding.pop(late[0])
                fail(w, f"no reply within {self.reply_timeout:g} s")
        self.words = book.got
        return book.summary(self.clock() - start, classes)


class _Book:
    """What `Session.run` and `Session.stream` keep of each window: its state (waiting, matched, mismatched,
    failed), its tries, its words, the reason it failed, the round trips; the tally's counts; and the result
    they return (`summary`)."""

    def __init__(self, tally: Tally, expected: np.ndarray, batch: int, n_outputs: int, progress=None):
        self.t, self.expected, self.progress = tally, expected, progress
        tally.windows = batch
        self.got = np.zeros((batch, n_outputs), dtype=np.int64)
        self.state = ["waiting"] * batch
        self.attempts = [0] * batch
        self.failures: dict[int, str] = {}
        self.round_trips: list[float] = []
        self.done = 0

    def settle(self, w: int, outcome: str, reason: str | None = None) -> None:
        self.state[w] = outcome
        self.done += 1
        if reason:
            self.failures[w] = reason
        if self.progress:
            self.progress(self.done, len(self.state))

    def result(self, w: int, payload: bytes, round_trip: float) -> None:
        """Window w's RESULT: its words, checked against the expected ones."""
        self.got[w] = P.result_words(payload)
        self.round_trips.append(round_trip)
        self.t.answered += 1
        ok = bool(np.array_equal(self.got[w], self.expected[w]))
        self.t.matched += ok
        self.t.mismatched += not ok
        self.settle(w, "matched" if ok else "mismatched")

    def device_error(self, frame) -> tuple[int, str]:
        """An ERROR frame's code and name, counted."""
        code = frame.payload[0] if frame.payload else 0
        name = P.ERROR_NAMES.get(code, f"error {code}")
        self.t.device_errors[name] = self.t.device_errors.get(name, 0) + 1
        return code, name

    def summary(self, seconds: float, classes: int) -> dict:
        """The tally, the rate, the first mismatch, the classes."""
        t, got, expected, state = self.t, self.got, self.expected, self.state
        batch = len(state)
        result = {"tally": t.to_dict(), "seconds": seconds,
                  "windows_per_second": t.answered / seconds if seconds > 0 else 0.0,
                  "mean_round_trip_ms": 1000 * float(np.mean(self.round_trips)) if self.round_trips else None,
                  "failures": {int(w): r for w, r in sorted(self.failures.items())}}
        bad = [w for w in range(batch) if state[w] == "mismatched"]
        if bad:
            w = bad[0]
            h = int(np.flatnonzero(got[w] != expected[w])[0])
            result["first_mismatch"] = {"window": w, "word": h, "expected": int(expected[w, h]),
                                        "got": int(got[w, h])}
            if classes:
                result["first_mismatch"]["field"] = "class" if h == classes else f"score {h}"
        if classes:
            answered = [state[w] in ("matched", "mismatched") for w in range(batch)]
            result["classes"] = [int(got[w, classes]) if answered[w] else None for w in range(batch)]
        return result


def stream_requests(samples, info: P.DeviceInfo, rows: int) -> tuple[list[bytes], list[bytes]]:
    """For consecutive samples (T, cols) of codes: per window k = 0..T - rows, the INFER payload of its whole
    window and the STEP payload of its newest sample (window k ends at sample rows - 1 + k)."""
    samples = np.asarray(samples, dtype=np.int64)
    if samples.ndim != 2 or samples.shape[1] * rows != info.n_inputs:
        raise IntformerError(f"samples of shape {samples.shape}; the device's ring holds {rows} rows of "
                             f"{info.n_inputs // rows} codes")
    if len(samples) < rows:
        raise IntformerError(f"{len(samples)} samples do not make one window of {rows}")
    infers = [P.infer_payload(samples[k:k + rows], info) for k in range(len(samples) - rows + 1)]
    steps = [P.step_payload(samples[rows - 1 + k], info, rows) for k in range(len(samples) - rows + 1)]
    return infers, steps


def link_bound(info: P.DeviceInfo, baud: int, in_flight: int) -> float:
    """Windows per second the serial line allows (10 bits a byte): with two windows in flight the request
    and reply directions overlap, with one they take turns."""
    up = P.OVERHEAD + info.infer_len
    down = P.OVERHEAD + info.n_outputs * P.WORD_BYTES
    bytes_per_s = baud / 10
    return bytes_per_s / (max(up, down) if in_flight > 1 else up + down)


def stream_bound(info: P.DeviceInfo, rows: int, rate: int, in_flight: int, spi: bool = False) -> float:
    """Samples (windows) per second the line allows when streaming: a STEP frame up, a RESULT down, each
    byte 10 bit times on the UART at `rate` baud (8 SCK cycles over SPI at `rate` Hz); with two in flight
    the two directions overlap (`link_bound`, `spi_host.spi_link_bound`), with one they take turns."""
    up = P.OVERHEAD + (info.n_inputs // rows) * info.bytes_per_code
    down = P.OVERHEAD + info.n_outputs * P.WORD_BYTES
    return rate / (8 if spi else 10) / (max(up, down) if in_flight > 1 else up + down)
