"""The serial link protocol between a host and the accelerator on a board: the one definition, used by the
gateware (`boards.link`) and by the host (`boards.host`, through `encode_frame` and `FrameDecoder`).

Frames
------
Every message, in both directions, is one frame::

    SOF      1 byte   0xA5
    CMD      1 byte   the command (below)
    SEQ      1 byte   a sequence number chosen by the host; every reply carries the SEQ of its request
    LEN      2 bytes  payload length in bytes, little-endian
    PAYLOAD  LEN bytes
    CRC      2 bytes  CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, not reflected, no final xor) over
                      CMD, SEQ, LEN and PAYLOAD, little-endian

The line is 8N1 (8 data bits, no parity, one stop bit, least significant bit first), 115200 baud by default
(`--baud`: a standard rate up to 3,000,000 that the board clock makes within 2 %, `boards.uart`).

Commands, host -> device
------------------------
``INFER 0x01``  payload: the window's input codes, row-major over the program's input buffer ``x`` (rows x
                cols: the order the accelerator's `input` stream takes), each in bytes_per_code bytes:
                bytes_per_code = 1 when the input codes are at most 8 bits wide (the byte is the code's two's
                complement for signed codes, -128..127, or the code itself for unsigned ones), 2 when they
                are wider (9..16 bits; `--io-bits` 10..12): the code as a 16-bit two's complement
                (sign-extended; unsigned codes zero-extended), least significant byte first. The host derives
                bytes_per_code from INFO_REPLY's input code bits (`DeviceInfo.bytes_per_code`); LEN must
                equal n_inputs x bytes_per_code (n_inputs = rows x cols). Reply: RESULT.
``INFO  0x02``  empty payload. Reply: INFO_REPLY. It also begins a session: a detector whose score is
                smoothed over consecutive windows (`DetectStep.decay` > 0) starts the next window's score
                from 0, as after power-up (a window already computing keeps its own).
``STEP  0x03``  streaming: payload: ONE new sample, the input buffer's next row (cols codes, bytes_per_code
                bytes each, coded as INFER's; LEN must equal cols x bytes_per_code, `DeviceInfo.step_len`).
                The device keeps the window as a ring of its rows rows: the row replaces the oldest one,
                and the window ending at this sample (oldest row first, the order INFER sends) is computed.
                Reply: RESULT of that window once the ring holds rows rows, else FILLING. An accepted INFER
                fills the ring with its window (so an INFER of the first window, then one STEP per new
                sample, is a stream whose every reply is a RESULT); an INFER frame that fails after its
                payload began to reach the ring (bad CRC, bad code, timeout) leaves it empty (its old rows
                partly overwritten). The ring is empty after power-up. Only for programs with time
                tokens (one row per time step); with series tokens (`IntProgram.series_tokens`, the window
                transposed) the device answers STEP with ERROR 3 (unknown command).

Replies, device -> host
-----------------------
``RESULT 0x81``     payload: the forecast's n_outputs output words, each 4 bytes, little-endian two's
                    complement (the words `model.intref.run_program` returns). A classifier's (a program
                    ending in an `ArgmaxStep` of C classes, `program_classes`): n_outputs = C + 1, the C
                    integer scores (raw accumulators) in class order, then the class the chip computed,
                    0..C-1 (the first of equal largest scores); `classifier_reply` splits them. A
                    detector's (`DetectStep`): n_outputs = C + 2, the C errors, the score (smoothed over
                    the windows since power-up or the last INFO when the program's decay > 0: each
                    RESULT depends on the windows before it, so a window computed twice counts twice)
                    and the flag.
``INFO_REPLY 0x82`` payload, 10 bytes: n_inputs (2 bytes LE), n_outputs (2 bytes LE), input code bits
                    (1 byte: the width in bits 0..6, bit 7 set when the input codes are unsigned), lanes
                    (1 byte: the accelerator's P), model checksum (4 bytes LE: `program_checksum`).
                    Unchanged by the 2-byte codes: bytes_per_code follows from the input code bits (1 up
                    to 8 bits, else 2), so hosts and devices of 8-bit models read each other as before.
``FILLING 0x83``    STEP's reply while the ring holds fewer than rows rows: payload 2 bytes LE, the rows it
                    holds now (1..rows-1); a STEP with rows - 1 rows held is answered RESULT.
``ERROR 0xE0``      payload: one byte, the error code; SEQ is the SEQ of the frame that failed (0 when the
                    frame broke off before its SEQ byte).

Error codes: ``1`` bad CRC; ``2`` bad length (INFER's LEN is not n_inputs x bytes_per_code, INFO's is not 0,
STEP's is not cols x bytes_per_code, or any LEN is larger than n_inputs x bytes_per_code); ``3`` unknown
command; ``4`` frame timeout (the bytes of a frame stopped for longer than the device's frame timeout,
`FRAME_TIMEOUT_S` on a board); and two the device adds: ``5`` bad code (an input code outside the input
buffer's code range, only possible for input codes narrower than 8 bits or, with 2-byte codes, narrower than
16 bits) and ``6`` busy (an INFER or STEP arrived while an earlier window was still waiting for the
accelerator: the device holds one window in flight and one waiting; wait for a RESULT before sending
more). A STEP answered with an ERROR left the ring as it was.

How the device parses
---------------------
It hunts for SOF, skipping any other byte. After the header, a LEN larger than n_inputs x bytes_per_code (the
largest payload it accepts) is answered at once with ERROR 2, and it goes back to hunting: the rest of that
frame is skipped as garbage. Otherwise it takes LEN payload bytes and the CRC; then, in this order: a bad CRC
-> ERROR 1; an unknown command -> ERROR 3; a bad length -> ERROR 2; a bad code -> ERROR 5; INFER or STEP while
a window waits -> ERROR 6; else the request is accepted. INFER payloads are buffered and reach the accelerator
only once the CRC has checked; so do STEP rows (a STEP that fails wrote at most the ring's oldest row, the one
the next accepted STEP replaces). Bytes are parsed while the accelerator computes; replies leave in the order
their requests (or failures) completed, so a RESULT goes out before the reply to any later request. If the
bytes stop mid-frame for the frame timeout, it answers ERROR 4 and hunts again. A reply queue of 4 frames
holds replies waiting for the line; one that finds the queue full is dropped (the board's error LED shows it),
which only a host that does not read its replies can cause.

Host rules
----------
Send one request (or two INFERs, or two STEPs) and read the reply. A stream (`Session.stream`): INFER of the
first window, then STEP of each next sample, two outstanding at most, in order. A STEP that fails is not
resent as it is (a later STEP in flight may have moved the ring on): the host drops the later ones and,
after the silence below, resynchronizes with an INFER of the window ending at the failed sample (it refills
the ring), then streams on from there. After an ERROR, or no reply within the reply
timeout, stay silent for longer than the frame timeout before resending: then the device is hunting for SOF
again whatever bytes it saw (a corrupt LEN, or an SOF among skipped bytes, can otherwise swallow the resent
frame's first bytes; the resent frame would then fail, never be misread). `boards.host` follows them.
The host's `FrameDecoder` re-scans from the byte after a failed SOF, so it never needs such a pause.
"""
from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass

import numpy as np

from intformer.model.errors import IntformerError

SOF = 0xA5
HEADER_LEN = 5                  # SOF, CMD, SEQ, LEN (2)
CRC_LEN = 2
OVERHEAD = HEADER_LEN + CRC_LEN
MAX_LEN = 0xFFFF

# commands
INFER = 0x01
INFO = 0x02
STEP = 0x03
RESULT = 0x81
INFO_REPLY = 0x82
FILLING = 0x83
ERROR = 0xE0
COMMAND_NAMES = {INFER: "INFER", INFO: "INFO", STEP: "STEP", RESULT: "RESULT", INFO_REPLY: "INFO_REPLY",
                 FILLING: "FILLING", ERROR: "ERROR"}

# error codes (payload of ERROR)
ERR_CRC = 1
ERR_LENGTH = 2
ERR_COMMAND = 3
ERR_TIMEOUT = 4
ERR_CODE = 5
ERR_BUSY = 6
ERROR_NAMES = {ERR_CRC: "bad CRC", ERR_LENGTH: "bad length", ERR_COMMAND: "unknown command",
               ERR_TIMEOUT: "frame timeout", ERR_CODE: "input code out of range", ERR_BUSY: "busy"}

WORD_BYTES = 4                  # one RESULT word
INFO_LEN = 10                   # INFO_REPLY payload
FILLING_LEN = 2                 # FILLING payload
FRAME_TIMEOUT_S = 0.1           # the boards' frame timeout (`boards.top`)
REPLY_QUEUE = 4                 # replies the device holds waiting for the line

CRC_INIT = 0xFFFF
CRC_POLY = 0x1021


# ------------------------------------------------------------------------------------------- CRC-16
def crc16_update(crc: int, byte: int) -> int:
    """One byte into CRC-16/CCITT-FALSE (MSB first). A linear map of (crc, byte) over GF(2): the gateware
    (`boards.link.crc16_next`) is derived from this function."""
    crc ^= (byte & 0xFF) << 8
    for _ in range(8):
        crc = ((crc << 1) ^ CRC_POLY) if crc & 0x8000 else (crc << 1)
        crc &= 0xFFFF
    return crc


def _table() -> list[int]:
    return [crc16_update(0, b) for b in range(256)]


_TABLE = _table()


def crc16(data: bytes, crc: int = CRC_INIT) -> int:
    """CRC-16/CCITT-FALSE of `data` (check value: crc16(b"123456789") == 0x29B1)."""
    for b in data:
        crc = ((crc << 8) & 0xFFFF) ^ _TABLE[(crc >> 8) ^ b]
    return crc


# ------------------------------------------------------------------------------------------- frames
@dataclass(frozen=True)
class Frame:
    cmd: int
    seq: int
    payload: bytes = b""

    def encode(self) -> bytes:
        return encode_frame(self.cmd, self.seq, self.payload)

    def __repr__(self) -> str:
        name = COMMAND_NAMES.get(self.cmd, f"0x{self.cmd:02X}")
        return f"Frame({name}, seq={self.seq}, payload={self.payload.hex() or '-'})"


def encode_frame(cmd: int, seq: int, payload: bytes = b"") -> bytes:
    """SOF | CMD | SEQ | LEN (LE) | PAYLOAD | CRC (LE) over CMD..PAYLOAD."""
    payload = bytes(payload)
    if not 0 <= cmd <= 0xFF or not 0 <= seq <= 0xFF:
        raise ValueError(f"cmd {cmd} and seq {seq} must be bytes")
    if len(payload) > MAX_LEN:
        raise ValueError(f"payload of {len(payload)} bytes is longer than {MAX_LEN}")
    body = bytes([cmd, seq]) + struct.pack("<H", len(payload)) + payload
    return bytes([SOF]) + body + struct.pack("<H", crc16(body))


@dataclass(frozen=True)
class DecodeError:
    """Something the decoder skipped: `kind` "garbage" (bytes outside any frame), "length" (a header whose
    LEN exceeds the decoder's max_len), "crc" (a complete candidate frame with a bad CRC) or "truncated"
    (a partial frame given up by `flush`). `offset` is the stream offset of its first byte."""
    kind: str
    offset: int
    count: int = 1


class FrameDecoder:
    """Streaming frame decoder: `feed` bytes as they arrive and get the complete, CRC-checked frames.

    It resynchronizes on its own: bytes before an SOF are skipped as garbage; a candidate frame whose LEN
    is too large or whose CRC is bad is abandoned at its SOF alone, and the search for the next SOF starts
    at the byte after it, so a frame that follows garbage or a corrupted frame is found even when the
    garbage held an SOF. A candidate that claims more bytes than ever arrive (a corrupt LEN) holds back the
    frames behind it until `flush` (call it when the line has been silent for a while) gives it up.
    Every skip is recorded in `errors` (`DecodeError`s; `take_errors` empties the list).
    """

    def __init__(self, max_len: int = MAX_LEN):
        self.max_len = max_len
        self._buf = bytearray()
        self._base = 0                    # stream offset of _buf[0]
        self.errors: list[DecodeError] = []

    def take_errors(self) -> list[DecodeError]:
        errors, self.errors = self.errors, []
        return errors

    @property
    def pending(self) -> int:
        """Bytes held (a partial frame)."""
        return len(self._buf)

    def _drop(self, n: int, kind: str | None = None) -> None:
        if kind == "garbage" and self.errors and self.errors[-1].kind == "garbage" and \
                self.errors[-1].offset + self.errors[-1].count == self._base:
            last = self.errors.pop()
            self.errors.append(DecodeError("garbage", last.offset, last.count + n))
        elif kind is not None:
            self.errors.append(DecodeError(kind, self._base, n))
        del self._buf[:n]
        self._base += n

    def _parse(self) -> list[Frame]:
        frames = []
        buf = self._buf
        while buf:
            i = buf.find(SOF)
            if i < 0:
                self._drop(len(buf), "garbage")
                break
            if i > 0:
                self._drop(i, "garbage")
            if len(buf) < HEADER_LEN:
                break
            length = buf[3] | (buf[4] << 8)
            if length > self.max_len:
                self._drop(1, "length")
                continue
            total = HEADER_LEN + length + CRC_LEN
            if len(buf) < total:
                break
            body = bytes(buf[1:HEADER_LEN + length])
            if crc16(body) != buf[total - 2] | (buf[total - 1] << 8):
                self._drop(1, "crc")
                continue
            frames.append(Frame(buf[1], buf[2], body[4:]))
            self._drop(total)
        return frames

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        return self._parse()

    def flush(self) -> list[Frame]:
        """The stream ended (or went silent): give up the partial frame at the front, one SOF at a time,
        and return any frames found behind it. Afterwards nothing is pending."""
        frames = self._parse()
        while self._buf:
            self._drop(1, "truncated")
            frames += self._parse()
        return frames


# ------------------------------------------------------------------------------ model description
def program_checksum(program) -> int:
    """A 32-bit checksum (CRC-32) of an `IntProgram`: its structure as sorted JSON, then each tensor (sorted
    by name) as name, shape and int64 little-endian values. INFO_REPLY reports it so that a host can tell
    which model a board runs."""
    crc = zlib.crc32(json.dumps(program.structure(), sort_keys=True).encode())
    for name in sorted(program.tensors):
        arr = np.ascontiguousarray(program.tensors[name], dtype="<i8")
        crc = zlib.crc32(name.encode() + b"\0" + json.dumps(list(arr.shape)).encode(), crc)
        crc = zlib.crc32(arr.tobytes(), crc)
    return crc & 0xFFFFFFFF


@dataclass(frozen=True)
class DeviceInfo:
    """What INFO_REPLY says about the model a device runs."""
    n_inputs: int
    n_outputs: int
    bits: int                 # input code width
    signed: bool              # input codes signed
    lanes: int
    checksum: int

    @classmethod
    def from_program(cls, program, lanes: int) -> DeviceInfo:
        x = program.input
        if x.bits > 16:
            raise IntformerError(f"input codes of {x.bits} bits do not fit the link's 2 bytes per code: build "
                                 f"the accelerator alone with --bare")
        n_in = x.rows * x.cols
        n_out = program.buffers[program.output].cols
        if n_in * code_bytes(x.bits) > MAX_LEN or n_out * WORD_BYTES > MAX_LEN:
            raise IntformerError(f"a window of {n_in} inputs or {n_out} outputs is too large for one frame")
        if not 1 <= lanes <= 255:
            raise IntformerError(f"lanes {lanes} does not fit the INFO reply's byte")
        return cls(n_in, n_out, x.bits, x.signed, lanes, program_checksum(program))

    @property
    def bytes_per_code(self) -> int:
        """Bytes per input code in an INFER payload: 1 up to 8 bits, else 2."""
        return code_bytes(self.bits)

    @property
    def infer_len(self) -> int:
        """INFER's LEN: n_inputs x bytes_per_code."""
        return self.n_inputs * self.bytes_per_code

    @property
    def code_range(self) -> tuple[int, int]:
        if self.signed:
            return -(1 << (self.bits - 1)), (1 << (self.bits - 1)) - 1
        return 0, (1 << self.bits) - 1

    def payload(self) -> bytes:
        return struct.pack("<HHBBI", self.n_inputs, self.n_outputs, self.bits | (0 if self.signed else 0x80),
                           self.lanes, self.checksum)

    @classmethod
    def from_payload(cls, payload: bytes) -> DeviceInfo:
        if len(payload) != INFO_LEN:
            raise IntformerError(f"INFO_REPLY payload of {len(payload)} bytes, expected {INFO_LEN}")
        n_in, n_out, bits, lanes, checksum = struct.unpack("<HHBBI", payload)
        return cls(n_in, n_out, bits & 0x7F, not bits & 0x80, lanes, checksum)


def code_bytes(bits: int) -> int:
    """Bytes per input code of `bits` bits in an INFER payload: 1 up to 8 bits, else 2 (up to 16 bits)."""
    if not 1 <= bits <= 16:
        raise IntformerError(f"input codes of {bits} bits do not fit the link (1..16 bits)")
    return 1 if bits <= 8 else 2


def infer_codes(payload: bytes, info: DeviceInfo) -> np.ndarray:
    """The device side of `infer_payload`: an INFER payload -> its input codes, flat (what `Link` stores;
    stand-in devices in the tests use it)."""
    width = info.bytes_per_code
    raw = np.frombuffer(payload, dtype="<u1" if width == 1 else "<u2").astype(np.int64)
    if info.signed:
        half = 1 << (8 * width - 1)
        raw = np.where(raw >= half, raw - 2 * half, raw)
    return raw


def infer_payload(codes, info: DeviceInfo | None = None, bytes_per_code: int | None = None) -> bytes:
    """Input codes (any shape, row-major) -> INFER payload of `bytes_per_code` bytes per code (little-endian
    two's complement); with `info`, the width is `info.bytes_per_code` and the codes' count and range are
    checked; without either, 1 byte per code."""
    flat = np.asarray(codes, dtype=np.int64).reshape(-1)
    if bytes_per_code is None:
        bytes_per_code = 1 if info is None else info.bytes_per_code
    elif info is not None and bytes_per_code != info.bytes_per_code:
        raise IntformerError(f"{bytes_per_code} bytes per code; the device's model takes {info.bytes_per_code}")
    if bytes_per_code not in (1, 2):
        raise ValueError(f"bytes_per_code {bytes_per_code} must be 1 or 2")
    if info is not None:
        lo, hi = info.code_range
        if flat.size != info.n_inputs:
            raise IntformerError(f"a window of {flat.size} codes; the device's model takes {info.n_inputs}")
        if flat.size and (flat.min() < lo or flat.max() > hi):
            raise IntformerError(f"input codes outside {lo}..{hi}; quantize with model.intref.quantize_input")
    elif bytes_per_code == 1 and flat.size and (flat.min() < -128 or flat.max() > 255):
        raise IntformerError("input codes must fit one byte")
    elif bytes_per_code == 2 and flat.size and (flat.min() < -(1 << 15) or flat.max() > 0xFFFF):
        raise IntformerError("input codes must fit two bytes")
    if bytes_per_code == 1:
        return bytes((flat & 0xFF).astype(np.uint8).tobytes())
    return bytes((flat & 0xFFFF).astype("<u2").tobytes())


def stream_rows(program) -> int:
    """The rows of a program's ring (its input buffer's rows, one per time step) for STEP; a program with
    series tokens (the window transposed: a sample is a column) cannot stream."""
    if program.series_tokens:
        raise IntformerError("streaming (STEP) needs a model with time tokens: with --tokens series the window "
                             "is transposed and a new sample is a column, not a row; send whole windows instead")
    return program.input.rows


def step_payload(row, info: DeviceInfo, rows: int) -> bytes:
    """One sample (the input buffer's next row: n_inputs / rows codes) -> STEP payload, coded as INFER's."""
    flat = np.asarray(row, dtype=np.int64).reshape(-1)
    cols = info.n_inputs // rows
    if flat.size != cols:
        raise IntformerError(f"a sample of {flat.size} codes; the device's rows hold {cols}")
    lo, hi = info.code_range
    if flat.size and (flat.min() < lo or flat.max() > hi):
        raise IntformerError(f"input codes outside {lo}..{hi}; quantize with model.intref.quantize_input")
    return infer_payload(flat, bytes_per_code=info.bytes_per_code)


def filling_rows(payload: bytes) -> int:
    """FILLING payload -> the rows the device's ring holds."""
    if len(payload) != FILLING_LEN:
        raise IntformerError(f"FILLING payload of {len(payload)} bytes, expected {FILLING_LEN}")
    return payload[0] | payload[1] << 8


def result_words(payload: bytes) -> np.ndarray:
    """RESULT payload -> output words (int64)."""
    if len(payload) % WORD_BYTES:
        raise IntformerError(f"RESULT payload of {len(payload)} bytes is not a whole number of words")
    return np.frombuffer(payload, dtype="<i4").astype(np.int64)


def program_classes(program) -> int:
    """A classifier program's class count C (its last step is an `ArgmaxStep`: its RESULT holds C scores,
    then the class), else 0."""
    from intformer.model.program import ArgmaxStep
    last = program.steps[-1] if program.steps else None
    return int(last.cols) if isinstance(last, ArgmaxStep) else 0


def classifier_reply(words, classes: int) -> tuple[np.ndarray, int]:
    """A classifier's RESULT words -> (its C scores, the class the chip computed)."""
    words = np.asarray(words, dtype=np.int64)
    if classes < 2 or words.shape != (classes + 1,):
        raise IntformerError(f"a classifier's RESULT of {classes} classes holds {classes + 1} words, got "
                             f"{words.size}")
    cls = int(words[classes])
    if not 0 <= cls < classes:
        raise IntformerError(f"the device sent class {cls}, outside 0..{classes - 1}")
    return words[:classes], cls


def result_payload(words) -> bytes:
    """Output words -> RESULT payload (what the device sends; for tests and device models)."""
    return np.asarray(words, dtype=np.int64).astype("<i4").tobytes()
