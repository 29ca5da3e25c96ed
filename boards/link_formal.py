"""Formal harnesses of the host link (`boards.link`): its recovery after any bytes, any good frame accepted,
and its stream interfaces; `link_proofs` lists them, with the PHYs' and queues' (`boards.phy_formal`), for
one model's `DeviceInfo`.

Run by `accel.sby.run_proof` like the datapath's (SymbiYosys, smtbmc with Yices); `intformer.proofs`
gathers them with the datapath's. Every harness drives every input of the block it holds with `AnySeq`
(any byte at any time, any valid/ready pattern) and is an unbounded proof (k-induction).

The link holds its streaming ring (STEP) in every harness: `rows` rows of n_inputs / rows codes, by default
n_inputs rows of one code (the default model's shape, 24 time steps of one series).
"""
from __future__ import annotations

from amaranth.asserts import AnyConst, AnySeq
from amaranth.hdl import Assert, Assume, Cat, Module, Mux, Signal

from intformer.accel.formal_helpers import elaborated, harness, in_states, stream_rules
from intformer.accel.sby import Proof
from . import protocol as P
from .link import K_ERROR, K_FILLING, K_INFO, K_RESULT, Link
from .phy_formal import (fifo_harness, spi_input_harness, spi_output_harness, uart_rx_harness,
                         uart_tx_harness)
from .spi import FIFO_DEPTH


def _drive_link(m: Module, link: Link) -> None:
    """Every input of the link free: bytes at any time, any ready, any accelerator behaviour."""
    m.d.comb += [link.rx.valid.eq(AnySeq(1)), link.rx.payload.eq(AnySeq(8)), link.tx.ready.eq(AnySeq(1)),
                 link.acc_input.ready.eq(AnySeq(1)), link.acc_output.valid.eq(AnySeq(1)),
                 link.acc_output.payload.eq(AnySeq(32)), link.acc_busy.eq(AnySeq(1))]


def _ring_rows(info: P.DeviceInfo, rows: int | None) -> int:
    return info.n_inputs if rows is None else rows


def link_timeout_harness(info: P.DeviceInfo, timeout_cycles: int, rows: int | None = None) -> Module:
    """Link receiver: after any byte sequence, `timeout_cycles` cycles without a byte leave the parser hunting
    for SOF (unbounded: k-induction, for the real timeout).

    Asserted on every cycle: while a frame is being parsed, the parser's idle timer equals the harness's count
    of cycles since the last byte; once that count reaches the timeout, the parser is hunting.
    """
    m = harness()
    link = Link(info, timeout_cycles, rows=_ring_rows(info, rows))
    m.submodules.link = elaborated(link)
    _drive_link(m, link)
    quiet = Signal(range(timeout_cycles + 1))
    with m.If(link.rx.valid):
        m.d.sync += quiet.eq(0)
    with m.Elif(quiet != timeout_cycles):
        m.d.sync += quiet.eq(quiet + 1)
    with m.If(link.parsing):
        m.d.comb += Assert(link.timer == quiet)
    with m.If(quiet == timeout_cycles):
        m.d.comb += Assert(~link.parsing)
    return m


def link_accepts_harness(info: P.DeviceInfo, timeout_cycles: int, broken: bool = False,
                         rows: int | None = None) -> Module:
    """Link receiver: from any state in which it hunts, any good frame is accepted (unbounded: k-induction).

    Bytes are any bytes at any time, except that at any moment when the parser hunts, the harness may start
    sending a good frame, one byte per cycle: SOF, a command chosen by `AnyConst` (INFO, LEN 0; INFER, LEN
    n_inputs x bytes_per_code; or STEP, LEN cols x bytes_per_code), any SEQ, for INFER any window of codes
    in the model's input range (`AnyConst`, 1 or 2 bytes per code as the protocol says; STEP: its first
    row), and the CRC-16 the harness computes as it sends. Asserted at the frame's last byte: the parser
    queues the reply the protocol prescribes, with the frame's SEQ: INFO_REPLY for INFO; RESULT for INFER,
    or ERROR 6 (busy) when a window already waits; for STEP, RESULT when the ring held rows - 1 rows or
    more, FILLING with the rows it then holds otherwise, or ERROR 6 when a window waits.
    Asserted at every byte of the frame, so that the induction closes: the parser is in the state for that
    byte, its CMD, SEQ, LEN, payload count and running CRC are the frame's, and no code was found out of
    range. With `link_timeout_harness` (silence for the frame timeout leaves the parser hunting) this
    gives: after any byte sequence and a pause of the frame timeout, the next good frame is accepted.
    `broken` sends a CRC with its lowest bit flipped (a deliberately bad frame: the proof must fail).
    """
    from .link import crc16_next
    m = harness()
    link = Link(info, timeout_cycles, rows=_ring_rows(info, rows))
    m.submodules.link = elaborated(link)
    queue = link.queue
    State = Link.ParserState
    m.d.comb += [link.tx.ready.eq(AnySeq(1)), link.acc_input.ready.eq(AnySeq(1)),
                 link.acc_output.valid.eq(AnySeq(1)), link.acc_output.payload.eq(AnySeq(32)),
                 link.acc_busy.eq(AnySeq(1))]
    n_bytes, wide = info.infer_len, info.bytes_per_code == 2
    lo, hi = info.code_range
    # the frame: command, SEQ and window chosen once (AnyConst), the CRC computed while sending
    choice, fseq = Signal(2), Signal(8)
    m.d.comb += [choice.eq(AnyConst(2)), fseq.eq(AnyConst(8)), Assume(choice != 3)]
    infer, step = choice == 1, choice == 2
    fcmd = Mux(infer, P.INFER, Mux(step, P.STEP, P.INFO))
    flen = Signal(16)
    m.d.comb += flen.eq(Mux(infer, n_bytes, Mux(step, link.step_len, 0)))
    payload = []
    for i in range(info.n_inputs):
        code = Signal(16 if wide else 8, name=f"code{i}")
        value = code.as_signed() if info.signed else code
        m.d.comb += [code.eq(AnyConst(len(code))), Assume((value >= lo) & (value <= hi))]
        payload += [code[:8], code[8:]] if wide else [code]
    last = len(payload) + 6
    pos = Signal(range(last + 1))
    hcrc = Signal(16)
    byte = Signal(8)
    crc_lo, crc_hi = hcrc[:8] ^ int(broken), hcrc[8:]
    with m.Switch(pos):
        for i, b in enumerate([P.SOF, fcmd, fseq, flen[:8], flen[8:]]):
            with m.Case(i):
                m.d.comb += byte.eq(b)
        for i, b in enumerate(payload + [crc_lo, crc_hi]):   # payload byte i, or the CRC after a shorter one
            with m.Case(5 + i):
                m.d.comb += byte.eq(Mux(i < flen, b, Mux(i == flen, crc_lo, crc_hi)))
    end = Signal()
    m.d.comb += end.eq(pos == 6 + flen)
    go = Signal()
    m.d.comb += go.eq(AnySeq(1))
    sending = (pos != 0) | (go & ~link.parsing)
    with m.If(sending):
        m.d.comb += [link.rx.valid.eq(1), link.rx.payload.eq(byte)]
        m.d.sync += pos.eq(Mux(end, 0, pos + 1))
        with m.If(pos == 0):
            m.d.sync += hcrc.eq(P.CRC_INIT)
        with m.Elif(pos < 5 + flen):
            m.d.sync += hcrc.eq(crc16_next(hcrc, byte))
    with m.Else():
        m.d.comb += [link.rx.valid.eq(AnySeq(1)), link.rx.payload.eq(AnySeq(8))]

    state = link.parser_state
    m.d.comb += Assert(pos <= 6 + flen)
    with m.If(pos != 0):
        m.d.comb += [Assert(link.crc == hcrc), Assert(~link.bad_code)]
    for k, s in enumerate([State.CMD, State.SEQ, State.LEN0, State.LEN1], start=1):
        with m.If(pos == k):
            m.d.comb += Assert(state == s)
    with m.If(pos >= 2):
        m.d.comb += Assert(link.cmd == fcmd)
    with m.If(pos >= 3):
        m.d.comb += Assert(link.seq == fseq)
    with m.If(pos >= 4):
        m.d.comb += Assert(link.length[:8] == flen[:8])
    with m.If(pos >= 5):
        m.d.comb += Assert(link.length == flen)
    with m.If(pos != 0):
        m.d.comb += Assert(link.count == Mux(pos < 5, 0, Mux(pos < 5 + flen, pos - 5, flen)))
    with m.If((pos >= 5) & (pos < 5 + flen)):
        m.d.comb += Assert(state == State.PAYLOAD)
    with m.If(pos == 5 + flen):
        m.d.comb += Assert(state == State.CRC0)
    with m.If(end):
        m.d.comb += [Assert(state == State.CRC1), Assert(queue.w_en), Assert(queue.w_data[2:10] == fseq)]
        kind, code = queue.w_data[0:2], queue.w_data[10:]
        busy = (kind == K_ERROR) & (code == P.ERR_BUSY)
        with m.If(infer):
            m.d.comb += Assert((kind == K_RESULT) | busy)
        with m.Elif(step):
            window = link.fill >= link.rows - 1
            m.d.comb += Assert(busy | (window & (kind == K_RESULT))
                               | (~window & (kind == K_FILLING) & (code == link.fill + 1)))
        with m.Else():
            m.d.comb += Assert(kind == K_INFO)
    return m


def link_streams_harness(info: P.DeviceInfo, timeout_cycles: int, rows: int | None = None,
                         fault: str | None = None) -> Module:
    """Link's producer streams: `tx` (replies to the UART transmitter) and `acc_input` (the window into the
    accelerator) keep valid and payload until ready, for any valid/ready pattern (unbounded: k-induction).
    The feeder also sends each window's n_inputs codes exactly once and in ring order: transfer j (the
    harness's count of transfers since `acc_start`) reads the window buffer at (oldest + j) mod n_inputs,
    oldest being the ring's oldest row when the window started (`head`: 0 after an INFER, the row the next
    STEP replaces after a STEP), so the rows go oldest first and wrap at the buffer's end; and a window is
    started only once the previous one has been sent whole. Asserted too, so that the induction closes: the
    oldest row is a row boundary below n_inputs; while the feeder sends, the window buffer is marked full
    (the parser cannot write it, nor move `head`) and codes remain to send. `fault` builds the link with
    that fault (`Link`'s `fault`: "ring_start" starts a row late; the proof must fail).
    """
    m = harness()
    link = Link(info, timeout_cycles, rows=_ring_rows(info, rows), fault=fault)
    m.submodules.link = elaborated(link)
    _drive_link(m, link)
    stream_rules(m, link.tx, "tx")
    stream_rules(m, link.acc_input, "acc_input")
    n, cols = info.n_inputs, link.cols
    sent = Signal(range(n + 1), init=n)
    oldest = Signal(range(max(2, n)))
    m.d.comb += Assert(Cat(*[link.head == r * cols for r in range(link.rows)]).any())
    with m.If(link.acc_start):
        m.d.comb += Assert(sent == n)
        m.d.sync += [sent.eq(0), oldest.eq(link.head)]
    at = oldest + sent
    want = Mux(at >= n, at - n, at)
    feeding = link.feeder_state != Link.FeederState.IDLE
    with m.If(feeding):                 # the window waits whole in its buffer while it is sent
        m.d.comb += [Assert(link.full), Assert(sent < n), Assert(link.faddr == want), Assert(link.head == oldest)]
    with m.Else():
        m.d.comb += Assert(sent == n)
    with m.If(link.acc_input.valid):
        m.d.comb += [Assert(sent < n), Assert(link.faddr == want)]
        with m.If(link.acc_input.ready):
            m.d.sync += sent.eq(sent + 1)
    return m


def link_results_harness(info: P.DeviceInfo, timeout_cycles: int, broken: bool = False,
                         rows: int | None = None) -> Module:
    """Link's `acc_output` (the accelerator's words into RESULT frames): every word taken goes out whole,
    once, in order, and a RESULT takes exactly n_outputs words (unbounded: k-induction).

    Every input of the link free (bytes, the accelerator's valid and payload, the transmitter's ready). The
    harness follows one word taken from `acc_output`, chosen by `AnySeq`, and counts the words the current
    RESULT has taken. Asserted on every cycle: the followed word's 4 bytes are the next 4 payload bytes the
    transmitter takes, least significant first (the first word is taken before the header, which goes out
    meanwhile); a RESULT frame's CRC comes after exactly n_outputs words. Asserted too, so that the induction
    closes: while the word is followed, the sender holds it and is in its HEAD state (the first word, none of
    its bytes sent) or its PAYLOAD state at the byte due next. `broken` expects the bytes most significant
    first (it must fail).
    """
    m = harness()
    link = Link(info, timeout_cycles, rows=_ring_rows(info, rows))
    m.submodules.link = elaborated(link)
    _drive_link(m, link)
    State, state = Link.SenderState, link.sender_state
    took = link.acc_output.valid & link.acc_output.ready
    sent = link.tx.valid & link.tx.ready
    pick, following = Signal(), Signal()
    held = Signal(32)
    k = Signal(range(4))
    m.d.comb += pick.eq(AnySeq(1))
    with m.If(~following & took & pick):
        m.d.sync += [following.eq(1), held.eq(link.acc_output.payload), k.eq(0)]
    with m.If(following):
        m.d.comb += [Assert(in_states(state, State.HEAD, State.PAYLOAD)), Assert(link.kind == K_RESULT),
                     Assert(link.word == held)]
        with m.If(state == State.HEAD):
            m.d.comb += Assert(k == 0)
        with m.If(state == State.PAYLOAD):
            m.d.comb += Assert(link.idx[:2] == k)
        with m.If(sent & (state == State.PAYLOAD)):
            order = (3 - k)[:2] if broken else k
            m.d.comb += Assert(link.tx.payload == held.word_select(order, 8))
            m.d.sync += k.eq(k + 1)
            with m.If(k == 3):
                m.d.sync += following.eq(0)
    # the words of the current RESULT
    n_out = info.n_outputs
    taken = Signal(range(n_out + 2))
    with m.If(state == State.IDLE):
        m.d.sync += taken.eq(0)
    with m.Elif(took):
        m.d.sync += taken.eq(taken + 1)
    result, idx = link.kind == K_RESULT, link.idx
    m.d.comb += Assert(taken <= n_out)
    with m.If(state == State.WORD):
        m.d.comb += [Assert(result), Assert(taken == idx[2:]), Assert(idx[:2] == 0), Assert(idx[2:] < n_out)]
    with m.If(result & (state == State.PAYLOAD)):
        m.d.comb += [Assert(taken == idx[2:] + 1), Assert(idx < 4 * n_out)]
    with m.If(result & in_states(state, State.CRC0, State.CRC1)):
        m.d.comb += Assert(taken == n_out)
    with m.If(state == State.WAIT):
        m.d.comb += Assert(result)
    with m.If(~result | (state == State.WAIT)):
        m.d.comb += Assert(taken == 0)
    with m.If(result & (state == State.HEAD)):
        m.d.comb += Assert(taken == min(1, n_out))
    return m


def link_proofs(info: P.DeviceInfo, timeout_cycles: int, divisor: int = 104, rows: int | None = None) -> list[Proof]:
    """The host link's proofs for one model's `DeviceInfo` (window size, code range), frame timeout and ring
    (`rows` rows, `boards.top.ring_rows`; None: n_inputs rows of one code)."""
    return [
        Proof("link.timeout_hunts", lambda: link_timeout_harness(info, timeout_cycles, rows), "prove", 3),
        Proof("link.good_frame_accepted", lambda: link_accepts_harness(info, timeout_cycles, rows=rows), "prove", 4),
        Proof("stream.link_tx_acc_input", lambda: link_streams_harness(info, timeout_cycles, rows), "prove", 4),
        Proof("stream.link_acc_output", lambda: link_results_harness(info, timeout_cycles, rows=rows), "prove", 4),
        Proof("stream.uart_rx_output", lambda: uart_rx_harness(divisor), "prove", 3),
        Proof("stream.uart_tx_input", lambda: uart_tx_harness(divisor), "prove", 3),
        Proof("stream.reply_queue", lambda: fifo_harness(18, P.REPLY_QUEUE), "prove", 2),
        Proof("stream.spi_output", lambda: spi_output_harness(FIFO_DEPTH), "prove", 3),
        Proof("stream.spi_tx_queue", lambda: fifo_harness(8, FIFO_DEPTH), "prove", 2),
        Proof("stream.spi_input", lambda: spi_input_harness(FIFO_DEPTH), "prove", 3),
    ]
