"""The link gateware: frames from the UART receiver into the accelerator, replies back to the transmitter.

`Link` implements the device side of `boards.protocol` (the frame format, the commands, the error codes and
the order of the checks are specified there). Three parts run side by side:

* the parser (FSM "parser") takes every received byte, never stalling (`rx.ready` is constant 1): it hunts
  for SOF, reads CMD, SEQ and LEN, streams the payload into the window buffer (a `Memory` of n_inputs
  codes of the link's code width: 8 bits for 1-byte codes, 16 for 2-byte codes, `protocol.DeviceInfo.
  bytes_per_code`) while it computes the CRC-16 one byte per cycle (`crc16_next`); a 2-byte code's low
  byte waits in a register and the pair is written (and range-checked) at its high byte. At the frame's
  CRC it decides:
  an INFER that passes every check marks the buffer full and queues a RESULT reply; INFO queues an
  INFO_REPLY; anything else queues an ERROR. A counter of the cycles since the last byte ends a frame that
  stops for `timeout_cycles` (ERROR 4). The buffer is written only while it is not full, so a window
  that waits for the accelerator is never overwritten (an INFER that arrives meanwhile gets ERROR 6), and
  the accelerator never sees a byte of a frame that failed its CRC.
* the feeder (FSM "feeder") starts the accelerator when the buffer is full and the accelerator idle, and
  streams the n_inputs codes into it, whole codes of the code width (2 cycles per code, whatever the
  bytes per code), then frees the buffer.
* the sender (FSM "sender") takes replies from a small queue (`REPLY_QUEUE` entries of kind, SEQ and error
  code) in order and writes each as a frame, computing its CRC on the way; a RESULT waits for the
  accelerator's first output word before its SOF (so a frame never pauses mid-way for the computation),
  then takes one word per 4 payload bytes, sign-extended to 32 bits, least significant byte first.

Latency: with the queue empty, a reply's SOF is offered to the transmitter 2 cycles after the frame's last
byte is received (ERROR, INFO_REPLY), or 1 cycle after the accelerator offers its first word (RESULT).
An INFER's window reaches the accelerator from 1 cycle after its CRC byte, at 2 cycles per code.

Widths: SEQ, CMD 8 bits; LEN and the byte counters 16 bits; the CRC 16 bits; the timeout counter
range(timeout_cycles + 1); the window buffer and `acc_input` 8 bits per code (1-byte codes) or 16 bits
(2-byte codes, plus an 8-bit low-byte register); INFER's LEN is n_inputs x bytes_per_code; the output words
enter as signed 32 bits (the top sign-extends narrower ones). The 2-byte codes add no latency: a window
still reaches the accelerator 1 cycle after its CRC byte, at 2 cycles per code.
"""
from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from . import protocol as P

# reply kinds in the queue
K_RESULT, K_INFO, K_ERROR = 0, 1, 2
_KIND_CMD = {K_RESULT: P.RESULT, K_INFO: P.INFO_REPLY, K_ERROR: P.ERROR}


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


class Link(wiring.Component):
    """Device side of the serial protocol between the UART byte streams and the accelerator (see the module
    docstring). `info` (a `protocol.DeviceInfo`) sets the window size, the output count and the INFO reply;
    `timeout_cycles` is the frame timeout in clock cycles.

    Ports: `rx` (bytes in), `tx` (bytes out), `acc_input` (codes to the accelerator's `input`, the raw
    byte or 16-bit pair: the top truncates it to the code width, which the parser has range-checked), `acc_output`
    (the accelerator's output words, signed 32), `acc_start`, `acc_busy`; status: `parsing` (a frame is
    being received), `error` (pulse: an ERROR reply was queued), `dropped` (pulse: a reply found the queue
    full and was dropped; for an INFER that means it was not accepted either).
    """

    def __init__(self, info: P.DeviceInfo, timeout_cycles: int, queue_depth: int = P.REPLY_QUEUE):
        if timeout_cycles < 2:
            raise ValueError("timeout_cycles must be at least 2")
        self.info = info
        self.timeout_cycles = timeout_cycles
        self.queue_depth = queue_depth
        self.code_width = 8 * info.bytes_per_code
        super().__init__({
            "rx": In(stream.Signature(8)),
            "tx": Out(stream.Signature(8)),
            "acc_input": Out(stream.Signature(self.code_width)),
            "acc_output": In(stream.Signature(signed(32))),
            "acc_start": Out(1),
            "acc_busy": In(1),
            "parsing": Out(1),
            "error": Out(1),
            "dropped": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        info = self.info
        n_in, n_out = info.n_inputs, info.n_outputs
        lo, hi = info.code_range
        wide = info.bytes_per_code == 2
        n_bytes = info.infer_len                                   # INFER's LEN

        m.submodules.window = window = Memory(shape=self.code_width, depth=n_in, init=[])
        wp = window.write_port()
        rp = window.read_port()
        m.submodules.queue = queue = SyncFIFO(width=2 + 8 + 8, depth=self.queue_depth)

        # ------------------------------------------------------------------------------- the parser
        b = self.rx.payload
        got = self.rx.valid
        m.d.comb += self.rx.ready.eq(1)
        cmd, seq = Signal(8, name="cmd"), Signal(8, name="seq")
        length, count = Signal(16, name="length"), Signal(16, name="count")
        crc, crc_lo = Signal(16, init=P.CRC_INIT, name="crc"), Signal(8, name="crc_lo")
        bad_code, blocked, full = Signal(name="bad_code"), Signal(name="blocked"), Signal(name="full")
        free_buf = Signal()                                        # the feeder has sent the window
        timer = Signal(range(self.timeout_cycles + 1))
        hunting = Signal()
        timeout = Signal()
        crc_next = crc16_next(crc, b)

        push, push_kind, push_code = Signal(), Signal(2), Signal(8)
        m.d.comb += [queue.w_data.eq(Cat(push_kind, seq, push_code)), queue.w_en.eq(push)]
        m.d.sync += [self.error.eq(push & queue.w_rdy & (push_kind == K_ERROR)),
                     self.dropped.eq(push & ~queue.w_rdy)]

        def reply(kind, code=0):
            m.d.comb += [push.eq(1), push_kind.eq(kind), push_code.eq(code)]

        with m.If(got | hunting):
            m.d.sync += timer.eq(0)
        with m.Else():
            m.d.sync += timer.eq(timer + 1)
        m.d.comb += [timeout.eq(~hunting & ~got & (timer >= self.timeout_cycles - 1)),
                     self.parsing.eq(~hunting)]

        if wide:                                                   # a code is complete at its high byte
            low = Signal(8)
            code, code_done, code_addr = Cat(low, b), count[0], count[1:]
        else:
            code, code_done, code_addr = b, Const(1), count
        in_range = (code.as_signed() >= lo) & (code.as_signed() <= hi) if info.signed else (code <= hi)
        store = (cmd == P.INFER) & (length == n_bytes)
        payload_byte = Signal()
        m.d.comb += [wp.addr.eq(code_addr), wp.data.eq(code), wp.en.eq(payload_byte & code_done & store & ~full)]

        with m.FSM(name="parser"):
            with m.State("HUNT"):
                m.d.comb += hunting.eq(1)
                with m.If(got & (b == P.SOF)):
                    m.d.sync += [crc.eq(P.CRC_INIT), seq.eq(0), count.eq(0), bad_code.eq(0), blocked.eq(0)]
                    m.next = "CMD"

            def state(name, action, nxt):
                with m.State(name):
                    with m.If(got):
                        m.d.sync += crc.eq(crc_next)
                        action()
                        if nxt is not None:
                            m.next = nxt
                    with m.Elif(timeout):
                        reply(K_ERROR, P.ERR_TIMEOUT)
                        m.next = "HUNT"

            def latch(sig):
                def action():
                    m.d.sync += sig.eq(b)
                return action
            state("CMD", latch(cmd), "SEQ")
            state("SEQ", latch(seq), "LEN0")
            state("LEN0", latch(length[:8]), "LEN1")

            def len1():
                new_len = Cat(length[:8], b)
                m.d.sync += length[8:].eq(b)
                with m.If(new_len > n_bytes):
                    reply(K_ERROR, P.ERR_LENGTH)
                    m.next = "HUNT"
                with m.Elif(new_len == 0):
                    m.next = "CRC0"
                with m.Else():
                    m.next = "PAYLOAD"
            state("LEN1", len1, None)

            def payload():
                m.d.comb += payload_byte.eq(1)
                m.d.sync += count.eq(count + 1)
                if wide:
                    m.d.sync += low.eq(b)
                with m.If(store):
                    with m.If(full):
                        m.d.sync += blocked.eq(1)
                    with m.If(code_done & ~in_range):
                        m.d.sync += bad_code.eq(1)
                with m.If(count == length - 1):
                    m.next = "CRC0"
            state("PAYLOAD", payload, None)

            with m.State("CRC0"):
                with m.If(got):
                    m.d.sync += crc_lo.eq(b)
                    m.next = "CRC1"
                with m.Elif(timeout):
                    reply(K_ERROR, P.ERR_TIMEOUT)
                    m.next = "HUNT"
            with m.State("CRC1"):
                with m.If(got):
                    m.next = "HUNT"
                    with m.If(Cat(crc_lo, b) != crc):
                        reply(K_ERROR, P.ERR_CRC)
                    with m.Elif(cmd == P.INFER):
                        with m.If(length != n_bytes):
                            reply(K_ERROR, P.ERR_LENGTH)
                        with m.Elif(bad_code):
                            reply(K_ERROR, P.ERR_CODE)
                        with m.Elif(blocked | full):
                            reply(K_ERROR, P.ERR_BUSY)
                        with m.Else():
                            reply(K_RESULT)
                            with m.If(queue.w_rdy):             # never compute a window nobody will read
                                m.d.sync += full.eq(1)
                    with m.Elif(cmd == P.INFO):
                        with m.If(length != 0):
                            reply(K_ERROR, P.ERR_LENGTH)
                        with m.Else():
                            reply(K_INFO)
                    with m.Else():
                        reply(K_ERROR, P.ERR_COMMAND)
                with m.Elif(timeout):
                    reply(K_ERROR, P.ERR_TIMEOUT)
                    m.next = "HUNT"
        with m.If(free_buf):
            m.d.sync += full.eq(0)

        # ------------------------------------------------------------------------------- the feeder
        faddr = Signal(range(max(2, n_in)))
        m.d.comb += [rp.addr.eq(faddr), self.acc_input.payload.eq(rp.data)]
        with m.FSM(name="feeder"):
            with m.State("IDLE"):
                with m.If(full & ~self.acc_busy):
                    m.d.comb += self.acc_start.eq(1)
                    m.d.sync += faddr.eq(0)
                    m.next = "READ"
            with m.State("READ"):                                   # rp.data follows faddr next cycle
                m.next = "SEND"
            with m.State("SEND"):
                m.d.comb += self.acc_input.valid.eq(1)
                with m.If(self.acc_input.ready):
                    m.d.sync += faddr.eq(faddr + 1)
                    m.next = "READ"
                    with m.If(faddr == n_in - 1):
                        m.d.comb += free_buf.eq(1)
                        m.next = "IDLE"

        # ------------------------------------------------------------------------------- the sender
        kind, rseq, rcode = Signal(2, name="kind"), Signal(8, name="rseq"), Signal(8, name="rcode")
        idx = Signal(16)
        tcrc = Signal(16)
        word = Signal(32)
        plen = Signal(16)
        byte = Signal(8)
        send = Signal()
        sent = Signal()
        m.d.comb += [self.tx.payload.eq(byte), self.tx.valid.eq(send), sent.eq(send & self.tx.ready)]
        with m.Switch(kind):
            with m.Case(K_RESULT):
                m.d.comb += plen.eq(n_out * P.WORD_BYTES)
            with m.Case(K_INFO):
                m.d.comb += plen.eq(P.INFO_LEN)
            with m.Default():
                m.d.comb += plen.eq(1)
        reply_cmd = Signal(8)
        with m.Switch(kind):
            for k, c in _KIND_CMD.items():
                with m.Case(k):
                    m.d.comb += reply_cmd.eq(c)
        info_bytes = info.payload()
        with m.FSM(name="sender"):
            with m.State("IDLE"):
                m.d.comb += queue.r_en.eq(1)
                with m.If(queue.r_rdy):
                    r = queue.r_data
                    m.d.sync += [kind.eq(r[0:2]), rseq.eq(r[2:10]), rcode.eq(r[10:18]), idx.eq(0),
                                 tcrc.eq(P.CRC_INIT)]
                    with m.If(r[0:2] == K_RESULT):
                        m.next = "WAIT"
                    with m.Else():
                        m.next = "HEAD"
            with m.State("WAIT"):
                with m.If(self.acc_output.valid):
                    m.next = "HEAD"
            with m.State("HEAD"):
                m.d.comb += send.eq(1)
                with m.Switch(idx[:3]):
                    for i, v in enumerate([Const(P.SOF, 8), reply_cmd, rseq, plen[:8], plen[8:]]):
                        with m.Case(i):
                            m.d.comb += byte.eq(v)
                with m.If(sent):
                    m.d.sync += idx.eq(idx + 1)
                    with m.If(idx != 0):
                        m.d.sync += tcrc.eq(crc16_next(tcrc, byte))
                    with m.If(idx == P.HEADER_LEN - 1):
                        m.d.sync += idx.eq(0)
                        m.next = "WORD" if n_out else "CRC0"
                        with m.If(kind != K_RESULT):
                            m.next = "PAYLOAD"
            with m.State("WORD"):
                m.d.comb += self.acc_output.ready.eq(1)
                with m.If(self.acc_output.valid):
                    m.d.sync += word.eq(self.acc_output.payload)
                    m.next = "PAYLOAD"
            with m.State("PAYLOAD"):
                m.d.comb += send.eq(1)
                with m.Switch(kind):
                    with m.Case(K_RESULT):
                        m.d.comb += byte.eq(word.word_select(idx[:2], 8))
                    with m.Case(K_INFO):
                        with m.Switch(idx[:4]):
                            for i, v in enumerate(info_bytes):
                                with m.Case(i):
                                    m.d.comb += byte.eq(v)
                    with m.Default():
                        m.d.comb += byte.eq(rcode)
                with m.If(sent):
                    m.d.sync += [idx.eq(idx + 1), tcrc.eq(crc16_next(tcrc, byte))]
                    with m.If(idx == plen - 1):
                        m.next = "CRC0"
                    with m.Elif((kind == K_RESULT) & (idx[:2] == 3)):
                        m.next = "WORD"
            with m.State("CRC0"):
                m.d.comb += [send.eq(1), byte.eq(tcrc[:8])]
                with m.If(sent):
                    m.next = "CRC1"
            with m.State("CRC1"):
                m.d.comb += [send.eq(1), byte.eq(tcrc[8:])]
                with m.If(sent):
                    m.next = "IDLE"
        return m
