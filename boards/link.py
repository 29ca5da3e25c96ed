"""The link gateware: frames from the UART receiver into the accelerator, replies back to the transmitter.

`Link` implements the device side of `boards.protocol` (the frame format, the commands, the error codes and
the order of the checks are specified there). Three parts run side by side:

* the parser (FSM "parser", states `ParserState`, one method `_parser_<state>` each) takes every received byte, never stalling (`rx.ready` is constant 1): it hunts
  for SOF, reads CMD, SEQ and LEN, streams the payload into the window buffer (a `Memory` of n_inputs
  codes of the link's code width: 8 bits for 1-byte codes, 16 for 2-byte codes, `protocol.DeviceInfo.
  bytes_per_code`) while it computes the CRC-16 one byte per cycle (`crc16_next`); a 2-byte code's low
  byte waits in a register and the pair is written (and range-checked) at its high byte. At the frame's
  CRC it decides:
  an INFER that passes every check marks the buffer full and queues a RESULT reply; INFO queues an INFO_REPLY;
  a STEP (streaming) that passes them queues a RESULT (and marks the buffer full) once the ring holds a
  window, else a FILLING; anything else queues an ERROR. A counter of the cycles since the last byte ends a
  frame that stops for `timeout_cycles` (ERROR 4). The buffer is written only while it is not full, so a
  window that waits for the accelerator is never overwritten (an INFER that arrives meanwhile gets ERROR 6),
  and the accelerator never sees a byte of a frame that failed its CRC.
* (the state the parser and the feeder share) the ring (streaming, `rows` given: the program's input rows,
  time tokens): the window buffer is also a ring of rows rows of cols = n_inputs / rows codes. `head` is the
  address of its oldest row: a STEP's payload is written over that row (address head + code index), and once
  accepted `head` moves one row on (wrapping), so the row just written is the newest and `head` again the
  oldest. An accepted INFER wrote the rows in order from address 0: `head` 0. `fill` counts the rows held
  (saturating at rows): rows after an accepted INFER, 0 from an INFER's first payload code until it is
  accepted (it overwrites the ring), +1 per accepted STEP. No copy and no second buffer: the accelerator holds
  its own copy of the window once it is fed, so the next STEP may arrive while the last window computes; a
  STEP while a window waits to be fed is busy (ERROR 6), and its bytes, like those of a failed STEP, reach at
  most the oldest row, which the next accepted STEP replaces whole.
* the feeder (FSM "feeder", `FeederState`, `_feeder_<state>`) starts the accelerator when the buffer is full
  and the accelerator idle, and streams the n_inputs codes into it in ring order, from the address `head` on,
  wrapping at the buffer's end (after an INFER: 0 to n_inputs - 1), whole codes of the code width (2 cycles
  per code, whatever the bytes per code), then frees the buffer. `fault="ring_start"` starts a row late (a
  deliberately wrong ring: the must-fail of the stream tests and of the feeder's proof).
* the sender (FSM "sender", `SenderState`, `_sender_<state>`) takes replies from a small queue (`REPLY_QUEUE`
  entries of kind, SEQ and error code) in order and writes each as a frame, computing its CRC on the way; a
  RESULT waits for the accelerator's first output word and takes it before its SOF (so a frame never pauses
  mid-way for the computation, and a one-word model's accelerator is free for the next window while the frame
  is on the line), then one word per 4 payload bytes, sign-extended to 32 bits, least significant byte first.
  A classifier's words are its C scores and then its class (the accelerator's output port computes it): the
  link sends them as any other words, n_outputs = C + 1 of them.

Latency: with the queue empty, a reply's SOF is offered to the transmitter 2 cycles after the frame's last
byte is received (ERROR, INFO_REPLY, FILLING), or 1 cycle after the accelerator offers its first word
(RESULT). A STEP's window reaches the accelerator as an INFER's does.
An INFER's window reaches the accelerator from 1 cycle after its CRC byte, at 2 cycles per code.

Widths: SEQ, CMD 8 bits; LEN and the byte counters 16 bits; the CRC 16 bits; the timeout counter
range(timeout_cycles + 1); the window buffer and `acc_input` 8 bits per code (1-byte codes) or 16 bits
(2-byte codes, plus an 8-bit low-byte register); INFER's LEN is n_inputs x bytes_per_code; the output words
enter as signed 32 bits (the top sign-extends narrower ones). The 2-byte codes add no latency: a window
still reaches the accelerator 1 cycle after its CRC byte, at 2 cycles per code. The ring: `head` and the
feeder's address range(n_inputs), `fill` range(rows + 1); a reply's code (ERROR's, FILLING's rows) max(8,
bits of rows) bits in the reply queue.
"""
from __future__ import annotations

import enum
from contextlib import contextmanager
from typing import NamedTuple

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from intformer.accel.block import show_fsm_state

from . import protocol as P

# reply kinds in the queue
K_RESULT, K_INFO, K_ERROR, K_FILLING = 0, 1, 2, 3
_KIND_CMD = {K_RESULT: P.RESULT, K_INFO: P.INFO_REPLY, K_ERROR: P.ERROR, K_FILLING: P.FILLING}
LINK_FAULTS = (None, "ring_start")


def _masks() -> list[int]:
    """For each input bit of the CRC update (crc bits 0..15, then byte bits 0..7) the output bits it flips:
    the update is linear over GF(2), so this table is the whole function."""
    return [P.crc16_update(1 << i, 0) for i in range(16)] + [P.crc16_update(0, 1 << i) for i in range(8)]


_MASKS = _masks()


def crc16_next(crc, byte):
    """CRC-16/CCITT-FALSE after one more byte, as a combinational XOR network (16 bits from 24): the same
    function as `protocol.crc16_update`, from which the network is derived."""
    inputs = [crc[i] for i in range(16)] + [byte[i] for i in range(8)]
    out = []
    for j in range(16):
        terms = [inputs[i] for i, mask in enumerate(_MASKS) if mask >> j & 1]
        bit = terms[0]
        for t in terms[1:]:
            bit = bit ^ t
        out.append(bit)
    return Cat(*out)


class ParserState(enum.Enum):
    """The parser's states, in the FSM's order (its encoding: the order in which the FSM first names them;
    LEN1 names CRC0 before PAYLOAD). HUNT, the initial state, is 0."""
    HUNT = 0           # skip bytes until SOF
    CMD = 1
    SEQ = 2
    LEN0 = 3           # LEN, low byte
    LEN1 = 4           # LEN, high byte: too long is ERROR 2 at once
    CRC0 = 5
    PAYLOAD = 6        # LEN bytes, into the window buffer when it is an INFER's
    CRC1 = 7           # the frame's last byte: the reply is queued


class FeederState(enum.Enum):
    """The feeder's states, in the FSM's order."""
    IDLE = 0           # until the window buffer is full and the accelerator idle
    READ = 1           # the buffer's read port follows the address a cycle later
    SEND = 2           # one code offered to the accelerator


class SenderState(enum.Enum):
    """The sender's states, in the FSM's order."""
    IDLE = 0           # take the next reply from the queue
    WAIT = 1           # a RESULT waits for the accelerator's first word, and takes it
    HEAD = 2           # SOF, CMD, SEQ, LEN
    WORD = 3           # a RESULT takes its next output word
    PAYLOAD = 4
    CRC0 = 5
    CRC1 = 6


class _Received(NamedTuple):
    """What the byte on `rx` means to the parser (expressions, computed once per elaboration)."""
    crc_next: object          # the frame's CRC with this byte
    code: object              # the code this byte completes (a 2-byte code: the low byte register and it)
    code_done: object         # this byte completes a code (2-byte codes: at the high byte)
    code_addr: object         # the code's address in the window
    code_in_range: object     # the code is in the model's input range
    store: object             # the frame is an INFER or STEP of the right length: its payload goes to the window
    step: object              # the frame is a STEP of the right length: its row goes to the ring's oldest row


class Link(wiring.Component):
    """Device side of the serial protocol between the UART byte streams and the accelerator (see the module
    docstring). `info` (a `protocol.DeviceInfo`) sets the window size, the output count and the INFO reply;
    `timeout_cycles` is the frame timeout in clock cycles; `rows` the streaming ring's rows (None: no
    streaming, STEP is an unknown command); `fault` one of `LINK_FAULTS` (None: the real link).

    Ports: `rx` (bytes in), `tx` (bytes out), `acc_input` (codes to the accelerator's `input`, the raw
    byte or 16-bit pair: the top truncates it to the code width, which the parser has range-checked), `acc_output`
    (the accelerator's output words, signed 32), `acc_start`, `acc_busy`, `acc_clear` (an INFO was accepted:
    a detector's next window starts its smoothed score from 0); status: `parsing` (a frame is
    being received), `error` (pulse: an ERROR reply was queued), `dropped` (pulse: a reply found the queue
    full and was dropped; for an INFER that means it was not accepted either).

    What the formal harnesses (`boards.link_formal`) observe is an attribute: the parser's registers `cmd`,
    `seq`, `length`, `count`, `crc`, `bad_code`, `full` and its idle `timer`; the ring's `head` and `fill`;
    the feeder's address `faddr`;
    the sender's reply `kind`, `word` and byte index `idx`; the reply `queue`; and the three FSMs' states
    `parser_state`, `feeder_state`, `sender_state` (`ParserState`, `FeederState`, `SenderState`, driven from
    the FSMs at no cost in logic).
    """

    ParserState, FeederState, SenderState = ParserState, FeederState, SenderState

    def __init__(self, info: P.DeviceInfo, timeout_cycles: int, queue_depth: int = P.REPLY_QUEUE,
                 rows: int | None = None, fault: str | None = None):
        if timeout_cycles < 2:
            raise ValueError("timeout_cycles must be at least 2")
        if rows is not None and (rows < 1 or info.n_inputs % rows):
            raise ValueError(f"rows {rows} must divide the window's {info.n_inputs} inputs")
        if fault not in LINK_FAULTS:
            raise ValueError(f"fault {fault!r}: one of {LINK_FAULTS}")
        self.info, self.rows, self.fault = info, rows, fault
        self.cols = info.n_inputs // rows if rows else 0
        self.step_len = self.cols * info.bytes_per_code             # STEP's LEN (0: no streaming)
        self.code_bits = max(8, rows.bit_length()) if rows else 8   # a reply's code: ERROR's, FILLING's rows
        self.timeout_cycles = timeout_cycles
        self.queue_depth = queue_depth
        self.code_width = 8 * info.bytes_per_code
        self.wide = info.bytes_per_code == 2                       # 2-byte codes: low byte, then high byte
        super().__init__({
            "rx": In(stream.Signature(8)),
            "tx": Out(stream.Signature(8)),
            "acc_input": Out(stream.Signature(self.code_width)),
            "acc_output": In(stream.Signature(signed(32))),
            "acc_start": Out(1),
            "acc_busy": In(1),
            "acc_clear": Out(1),       # pulse: an accepted INFO (a host's session begins) restarts a detector's score

            "parsing": Out(1),
            "error": Out(1),
            "dropped": Out(1),
        })
        # replies: kind (2 bits), SEQ, error code (or FILLING's rows)
        self.queue = SyncFIFO(width=2 + 8 + self.code_bits, depth=queue_depth)
        self.push, self.push_kind, self.push_code = Signal(), Signal(2), Signal(self.code_bits)
        # the parser
        self.parser_state = Signal(ParserState)
        self.cmd, self.seq = Signal(8, name="cmd"), Signal(8, name="seq")
        self.length, self.count = Signal(16, name="length"), Signal(16, name="count")
        self.crc, self.crc_lo = Signal(16, init=P.CRC_INIT, name="crc"), Signal(8, name="crc_lo")
        self.bad_code, self.blocked, self.full = Signal(name="bad_code"), Signal(name="blocked"), Signal(name="full")
        self.timer = Signal(range(timeout_cycles + 1))             # cycles since the last byte of a frame
        self.hunting = Signal()
        self.timeout = Signal()                                    # this cycle ends the frame (ERROR 4)
        self.low = Signal(8) if self.wide else None                # a 2-byte code's low byte
        self.payload_byte = Signal()
        # the feeder
        self.feeder_state = Signal(FeederState)
        self.free_buf = Signal()                                   # the feeder has sent the window
        self.faddr = Signal(range(max(2, info.n_inputs)))           # the buffer address read
        # the ring (streaming): the address of its oldest row, the next STEP's; the rows it holds
        self.head = Signal(range(max(2, info.n_inputs)), name="head")
        self.fill = Signal(range((rows or 0) + 1), name="fill")
        # the sender
        self.sender_state = Signal(SenderState)
        self.kind, self.rseq, self.rcode = (Signal(2, name="kind"), Signal(8, name="rseq"),
                                         Signal(self.code_bits, name="rcode"))
        self.idx = Signal(16)                                      # byte index within the header or payload
        self.tcrc = Signal(16)
        self.word = Signal(32)                                     # the output word being sent
        self.plen = Signal(16)                                     # the reply's LEN
        self.byte = Signal(8)                                      # the byte offered to tx
        self.send, self.sent = Signal(), Signal()
        self.reply_cmd = Signal(8)

    def elaborate(self, platform):
        m = Module()
        m.submodules.window = window = Memory(shape=self.code_width, depth=self.info.n_inputs, init=[])
        write, read = window.write_port(), window.read_port()
        m.submodules.queue = self.queue
        self._reply_queue(m)
        self._frame_timer(m)
        rx = self._received()
        self._window_write(m, write, rx)
        self._parser(m, rx)
        self._feeder(m, read)
        self._sender(m)
        return m

    # ---------------------------------------------------------------------------------- the parser
    def _reply_queue(self, m: Module) -> None:
        """A reply is queued with the frame's SEQ; `error` and `dropped` pulse a cycle later."""
        queue = self.queue
        m.d.comb += [queue.w_data.eq(Cat(self.push_kind, self.seq, self.push_code)), queue.w_en.eq(self.push)]
        m.d.sync += [self.error.eq(self.push & queue.w_rdy & (self.push_kind == K_ERROR)),
                     self.dropped.eq(self.push & ~queue.w_rdy)]

    def _reply(self, m: Module, kind: int, code: int = 0) -> None:
        m.d.comb += [self.push.eq(1), self.push_kind.eq(kind), self.push_code.eq(code)]

    def _frame_timer(self, m: Module) -> None:
        """The cycles since the last byte of a frame; `timeout` when they reach the frame timeout."""
        got = self.rx.valid
        with m.If(got | self.hunting):
            m.d.sync += self.timer.eq(0)
        with m.Else():
            m.d.sync += self.timer.eq(self.timer + 1)
        m.d.comb += [self.timeout.eq(~self.hunting & ~got & (self.timer >= self.timeout_cycles - 1)),
                     self.parsing.eq(~self.hunting)]

    def _received(self) -> _Received:
        info, b = self.info, self.rx.payload
        lo, hi = info.code_range
        if self.wide:                                              # a code is complete at its high byte
            code, code_done, code_addr = Cat(self.low, b), self.count[0], self.count[1:]
        else:
            code, code_done, code_addr = b, Const(1), self.count
        in_range = (code.as_signed() >= lo) & (code.as_signed() <= hi) if info.signed else (code <= hi)
        infer = (self.cmd == P.INFER) & (self.length == info.infer_len)
        step = (self.cmd == P.STEP) & (self.length == self.step_len) if self.rows else Const(0)
        if self.rows:                                              # a STEP's codes go to the oldest row
            code_addr = Mux(step, self.head + code_addr, code_addr)
        return _Received(crc16_next(self.crc, b), code, code_done, code_addr, in_range, infer | step, step)

    def _window_write(self, m: Module, write, rx: _Received) -> None:
        """An INFER's payload into the window buffer, a code at its last byte, only while it is not full."""
        m.d.comb += [write.addr.eq(rx.code_addr), write.data.eq(rx.code),
                     write.en.eq(self.payload_byte & rx.code_done & rx.store & ~self.full)]
        if self.rows:                          # an INFER overwrites the ring from its first code: it is empty
            with m.If(write.en & ~rx.step):    # until the INFER is accepted (`_parser_crc1`)
                m.d.sync += self.fill.eq(0)

    def _parser(self, m: Module, rx: _Received) -> None:
        m.d.comb += self.rx.ready.eq(1)
        with m.FSM(name="parser") as fsm:
            with m.State("HUNT"):
                self._parser_hunt(m)
            with m.State("CMD"):
                self._parser_cmd(m, rx)
            with m.State("SEQ"):
                self._parser_seq(m, rx)
            with m.State("LEN0"):
                self._parser_len0(m, rx)
            with m.State("LEN1"):
                self._parser_len1(m, rx)
            with m.State("PAYLOAD"):
                self._parser_payload(m, rx)
            with m.State("CRC0"):
                self._parser_crc0(m)
            with m.State("CRC1"):
                self._parser_crc1(m)
        show_fsm_state(m, fsm, self.parser_state, ParserState)
        with m.If(self.free_buf):                                  # (after the FSM: this wins over CRC1's set)
            m.d.sync += self.full.eq(0)

    @contextmanager
    def _frame_byte(self, m: Module, rx: _Received, next_state: str | None = None):
        """The body runs on a frame's byte (CMD to PAYLOAD: it enters the CRC), then the FSM goes to
        `next_state`; silence for the timeout queues ERROR 4 and goes back to HUNT."""
        with m.If(self.rx.valid):
            m.d.sync += self.crc.eq(rx.crc_next)
            yield
            if next_state is not None:
                m.next = next_state
        with m.Elif(self.timeout):
            self._reply(m, K_ERROR, P.ERR_TIMEOUT)
            m.next = "HUNT"

    def _parser_hunt(self, m: Module) -> None:
        m.d.comb += self.hunting.eq(1)
        with m.If(self.rx.valid & (self.rx.payload == P.SOF)):
            m.d.sync += [self.crc.eq(P.CRC_INIT), self.seq.eq(0), self.count.eq(0), self.bad_code.eq(0),
                         self.blocked.eq(0)]
            m.next = "CMD"

    def _parser_cmd(self, m: Module, rx: _Received) -> None:
        with self._frame_byte(m, rx, "SEQ"):
            m.d.sync += self.cmd.eq(self.rx.payload)

    def _parser_seq(self, m: Module, rx: _Received) -> None:
        with self._frame_byte(m, rx, "LEN0"):
            m.d.sync += self.seq.eq(self.rx.payload)

    def _parser_len0(self, m: Module, rx: _Received) -> None:
        with self._frame_byte(m, rx, "LEN1"):
            m.d.sync += self.length[:8].eq(self.rx.payload)

    def _parser_len1(self, m: Module, rx: _Received) -> None:
        """LEN's high byte: longer than an INFER's is ERROR 2 at once; 0 goes straight to the CRC."""
        b = self.rx.payload
        with self._frame_byte(m, rx):
            new_len = Cat(self.length[:8], b)
            m.d.sync += self.length[8:].eq(b)
            with m.If(new_len > self.info.infer_len):
                self._reply(m, K_ERROR, P.ERR_LENGTH)
                m.next = "HUNT"
            with m.Elif(new_len == 0):
                m.next = "CRC0"
            with m.Else():
                m.next = "PAYLOAD"

    def _parser_payload(self, m: Module, rx: _Received) -> None:
        """A payload byte (`_window_write` stores it); a window that waits marks the frame blocked."""
        with self._frame_byte(m, rx):
            m.d.comb += self.payload_byte.eq(1)
            m.d.sync += self.count.eq(self.count + 1)
            if self.wide:
                m.d.sync += self.low.eq(self.rx.payload)
            with m.If(rx.store):
                with m.If(self.full):
                    m.d.sync += self.blocked.eq(1)
                with m.If(rx.code_done & ~rx.code_in_range):
                    m.d.sync += self.bad_code.eq(1)
            with m.If(self.count == self.length - 1):
                m.next = "CRC0"

    def _parser_crc0(self, m: Module) -> None:
        with m.If(self.rx.valid):
            m.d.sync += self.crc_lo.eq(self.rx.payload)
            m.next = "CRC1"
        with m.Elif(self.timeout):
            self._reply(m, K_ERROR, P.ERR_TIMEOUT)
            m.next = "HUNT"

    def _parser_crc1(self, m: Module) -> None:
        """The frame's last byte: the checks in the protocol's order, and the reply they give."""
        with m.If(self.rx.valid):
            m.next = "HUNT"
            with m.If(Cat(self.crc_lo, self.rx.payload) != self.crc):
                self._reply(m, K_ERROR, P.ERR_CRC)
            with m.Elif(self.cmd == P.INFER):
                with m.If(self.length != self.info.infer_len):
                    self._reply(m, K_ERROR, P.ERR_LENGTH)
                with m.Elif(self.bad_code):
                    self._reply(m, K_ERROR, P.ERR_CODE)
                with m.Elif(self.blocked | self.full):
                    self._reply(m, K_ERROR, P.ERR_BUSY)
                with m.Else():
                    self._reply(m, K_RESULT)
                    with m.If(self.queue.w_rdy):                   # never compute a window nobody will read
                        m.d.sync += [self.full.eq(1), self.head.eq(0)]
                        if self.rows:
                            m.d.sync += self.fill.eq(self.rows)
            if self.rows:                                          # (no ring: STEP is an unknown command)
                with m.Elif(self.cmd == P.STEP):
                    self._accept_step(m)
            with m.Elif(self.cmd == P.INFO):
                with m.If(self.length != 0):
                    self._reply(m, K_ERROR, P.ERR_LENGTH)
                with m.Else():
                    self._reply(m, K_INFO)
                    m.d.comb += self.acc_clear.eq(1)
            with m.Else():
                self._reply(m, K_ERROR, P.ERR_COMMAND)
        with m.Elif(self.timeout):
            self._reply(m, K_ERROR, P.ERR_TIMEOUT)
            m.next = "HUNT"

    def _accept_step(self, m: Module) -> None:
        """A STEP's checks (INFER's, with its LEN), then: the row it wrote becomes the newest, the ring's oldest
        row the next one (`head` one row on, wrapping); RESULT of the ring's window once it holds rows rows,
        else FILLING with the rows it holds. A reply the queue cannot take accepts nothing."""
        with m.If(self.length != self.step_len):
            self._reply(m, K_ERROR, P.ERR_LENGTH)
        with m.Elif(self.bad_code):
            self._reply(m, K_ERROR, P.ERR_CODE)
        with m.Elif(self.blocked | self.full):
            self._reply(m, K_ERROR, P.ERR_BUSY)
        with m.Else():
            window = self.fill >= self.rows - 1
            with m.If(window):
                self._reply(m, K_RESULT)
            with m.Else():
                self._reply(m, K_FILLING, self.fill + 1)
            with m.If(self.queue.w_rdy):
                last_row = self.info.n_inputs - self.cols
                m.d.sync += self.head.eq(Mux(self.head == last_row, 0, self.head + self.cols))
                with m.If(window):
                    m.d.sync += [self.full.eq(1), self.fill.eq(self.rows)]
                with m.Else():
                    m.d.sync += self.fill.eq(self.fill + 1)

    # ---------------------------------------------------------------------------------- the feeder
    def _feeder(self, m: Module, read) -> None:
        m.d.comb += [read.addr.eq(self.faddr), self.acc_input.payload.eq(read.data)]
        with m.FSM(name="feeder") as fsm:
            with m.State("IDLE"):
                self._feeder_idle(m)
            with m.State("READ"):                                   # read.data follows faddr next cycle
                m.next = "SEND"
            with m.State("SEND"):
                self._feeder_send(m)
        show_fsm_state(m, fsm, self.feeder_state, FeederState)

    def _feed_start(self):
        """The address a window starts at: the ring's oldest row (`head`: 0 after an INFER), which stays put
        while the window is fed (the buffer is full)."""
        if self.fault == "ring_start":         # a deliberately wrong ring: the window starts a row late
            return Mux(self.head == self.info.n_inputs - self.cols, 0, self.head + self.cols)
        return self.head

    def _feeder_idle(self, m: Module) -> None:
        with m.If(self.full & ~self.acc_busy):
            m.d.comb += self.acc_start.eq(1)
            m.d.sync += self.faddr.eq(self._feed_start())
            m.next = "READ"

    def _feeder_send(self, m: Module) -> None:
        """One code, then the next address: one on, wrapping at the buffer's end (the ring's rows in order);
        the window ends when the next address is its start again (n_inputs codes, no counter)."""
        m.d.comb += self.acc_input.valid.eq(1)
        with m.If(self.acc_input.ready):
            last = self.info.n_inputs - 1
            following = Mux(self.faddr == last, 0, self.faddr + 1)
            m.d.sync += self.faddr.eq(following)
            m.next = "READ"
            with m.If(following == self._feed_start()):
                m.d.comb += self.free_buf.eq(1)
                m.next = "IDLE"

    # ---------------------------------------------------------------------------------- the sender
    def _sender(self, m: Module) -> None:
        m.d.comb += [self.tx.payload.eq(self.byte), self.tx.valid.eq(self.send),
                     self.sent.eq(self.send & self.tx.ready)]
        self._reply_header_fields(m)
        with m.FSM(name="sender") as fsm:
            with m.State("IDLE"):
                self._sender_idle(m)
            with m.State("WAIT"):
                self._sender_wait(m)
            with m.State("HEAD"):
                self._sender_head(m)
            with m.State("WORD"):
                self._sender_word(m)
            with m.State("PAYLOAD"):
                self._sender_payload(m)
            with m.State("CRC0"):
                self._sender_crc_byte(m, self.tcrc[:8], "CRC1")
            with m.State("CRC1"):
                self._sender_crc_byte(m, self.tcrc[8:], "IDLE")
        show_fsm_state(m, fsm, self.sender_state, SenderState)

    def _reply_header_fields(self, m: Module) -> None:
        """The reply's LEN and CMD from its kind."""
        with m.Switch(self.kind):
            with m.Case(K_RESULT):
                m.d.comb += self.plen.eq(self.info.n_outputs * P.WORD_BYTES)
            with m.Case(K_INFO):
                m.d.comb += self.plen.eq(P.INFO_LEN)
            with m.Case(K_FILLING):
                m.d.comb += self.plen.eq(P.FILLING_LEN)
            with m.Default():
                m.d.comb += self.plen.eq(1)
        with m.Switch(self.kind):
            for k, c in _KIND_CMD.items():
                with m.Case(k):
                    m.d.comb += self.reply_cmd.eq(c)

    def _sender_idle(self, m: Module) -> None:
        queue = self.queue
        m.d.comb += queue.r_en.eq(1)
        with m.If(queue.r_rdy):
            r = queue.r_data
            m.d.sync += [self.kind.eq(r[0:2]), self.rseq.eq(r[2:10]), self.rcode.eq(r[10:]), self.idx.eq(0),
                         self.tcrc.eq(P.CRC_INIT)]
            with m.If(r[0:2] == K_RESULT):
                m.next = "WAIT"
            with m.Else():
                m.next = "HEAD"

    def _sender_wait(self, m: Module) -> None:
        """A RESULT's first word is taken as soon as the accelerator offers it (before the header goes out):
        a one-word model's accelerator is then free for the next window while the reply is on the line."""
        if not self.info.n_outputs:
            m.next = "HEAD"
            return
        m.d.comb += self.acc_output.ready.eq(1)
        with m.If(self.acc_output.valid):
            m.d.sync += self.word.eq(self.acc_output.payload)
            m.next = "HEAD"

    def _sender_head(self, m: Module) -> None:
        """SOF, CMD, SEQ, LEN (the CRC from CMD on); then the payload, a RESULT's first word first."""
        idx = self.idx
        m.d.comb += self.send.eq(1)
        with m.Switch(idx[:3]):
            for i, v in enumerate([Const(P.SOF, 8), self.reply_cmd, self.rseq, self.plen[:8], self.plen[8:]]):
                with m.Case(i):
                    m.d.comb += self.byte.eq(v)
        with m.If(self.sent):
            m.d.sync += idx.eq(idx + 1)
            with m.If(idx != 0):
                m.d.sync += self.tcrc.eq(crc16_next(self.tcrc, self.byte))
            with m.If(idx == P.HEADER_LEN - 1):
                m.d.sync += idx.eq(0)
                m.next = "PAYLOAD" if self.info.n_outputs else "CRC0"   # a RESULT holds its first word
                with m.If(self.kind != K_RESULT):
                    m.next = "PAYLOAD"

    def _sender_word(self, m: Module) -> None:
        m.d.comb += self.acc_output.ready.eq(1)
        with m.If(self.acc_output.valid):
            m.d.sync += self.word.eq(self.acc_output.payload)
            m.next = "PAYLOAD"

    def _sender_payload(self, m: Module) -> None:
        """A RESULT's word, least significant byte first; INFO's bytes; an ERROR's code."""
        idx = self.idx
        m.d.comb += self.send.eq(1)
        with m.Switch(self.kind):
            with m.Case(K_RESULT):
                m.d.comb += self.byte.eq(self.word.word_select(idx[:2], 8))
            with m.Case(K_INFO):
                with m.Switch(idx[:4]):
                    for i, v in enumerate(self.info.payload()):
                        with m.Case(i):
                            m.d.comb += self.byte.eq(v)
            with m.Case(K_FILLING):                                 # the rows held, 2 bytes LE
                m.d.comb += self.byte.eq(Mux(idx[0], self.rcode >> 8, self.rcode[:8]))
            with m.Default():
                m.d.comb += self.byte.eq(self.rcode)
        with m.If(self.sent):
            m.d.sync += [idx.eq(idx + 1), self.tcrc.eq(crc16_next(self.tcrc, self.byte))]
            with m.If(idx == self.plen - 1):
                m.next = "CRC0"
            with m.Elif((self.kind == K_RESULT) & (idx[:2] == 3)):
                m.next = "WORD"

    def _sender_crc_byte(self, m: Module, byte, next_state: str) -> None:
        m.d.comb += [self.send.eq(1), self.byte.eq(byte)]
        with m.If(self.sent):
            m.next = next_state
