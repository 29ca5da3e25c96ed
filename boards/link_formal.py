"""Formal harnesses of the host link (`boards.link`, `boards.uart`) and of its stream interfaces.

Run by `accel.formal.run_proof` like the datapath's (SymbiYosys, smtbmc with Yices); `link_proofs` lists
them for one model's `DeviceInfo`. Every harness drives every input of the block it holds with `AnySeq`
(any byte at any time, any valid/ready pattern) and is an unbounded proof (k-induction) unless it says
otherwise.
"""
from __future__ import annotations

from amaranth.hdl import Assert, Assume, Module, Mux, Signal
from amaranth.hdl._ast import AnyConst, AnySeq
from amaranth.lib.fifo import SyncFIFO

from accel.formal import Proof, harness, probe
from . import protocol as P
from .link import K_INFO, Link
from .uart import UARTRx


def _drive_link(m: Module, link: Link) -> None:
    """Every input of the link free: bytes at any time, any ready, any accelerator behaviour."""
    m.d.comb += [link.rx.valid.eq(AnySeq(1)), link.rx.payload.eq(AnySeq(8)), link.tx.ready.eq(AnySeq(1)),
                 link.acc_input.ready.eq(AnySeq(1)), link.acc_output.valid.eq(AnySeq(1)),
                 link.acc_output.payload.eq(AnySeq(32)), link.acc_busy.eq(AnySeq(1))]


def link_timeout_harness(info: P.DeviceInfo, timeout_cycles: int) -> Module:
    """Link receiver: after any byte sequence, `timeout_cycles` cycles without a byte leave the parser hunting
    for SOF (unbounded: k-induction, for the real timeout).

    Asserted on every cycle: while a frame is being parsed, the parser's idle timer equals the harness's count
    of cycles since the last byte; once that count reaches the timeout, the parser is hunting.
    """
    m = harness()
    link = Link(info, timeout_cycles)
    dut, sig = probe(link)
    m.submodules.link = dut
    _drive_link(m, link)
    quiet = Signal(range(timeout_cycles + 1))
    with m.If(link.rx.valid):
        m.d.sync += quiet.eq(0)
    with m.Elif(quiet != timeout_cycles):
        m.d.sync += quiet.eq(quiet + 1)
    with m.If(link.parsing):
        m.d.comb += Assert(sig["timer"] == quiet)
    with m.If(quiet == timeout_cycles):
        m.d.comb += Assert(~link.parsing)
    return m


def link_accepts_harness(info: P.DeviceInfo, timeout_cycles: int, seq: int = 0x5A) -> Module:
    """Link receiver: from any state in which it hunts, a good frame is accepted (unbounded: k-induction).

    Bytes are any bytes at any time, except that at any moment when the parser hunts, the harness may send a
    good INFO frame (encoded by the host's `protocol.encode_frame`), one byte per cycle. Asserted: at the
    frame's last byte the parser queues the INFO reply. With `link_timeout_harness` (silence for the frame
    timeout leaves the parser hunting) this gives: after any byte sequence and a pause of the frame timeout,
    the next good frame is accepted (its reply is queued; the queue drops it only when the host has left 4
    replies unread).
    """
    frame = P.encode_frame(P.INFO, seq)
    m = harness()
    link = Link(info, timeout_cycles)
    dut, _ = probe(link)
    m.submodules.link = dut
    queue = dut._named_submodules["queue"][0]
    m.d.comb += [link.tx.ready.eq(AnySeq(1)), link.acc_input.ready.eq(AnySeq(1)),
                 link.acc_output.valid.eq(AnySeq(1)), link.acc_output.payload.eq(AnySeq(32)),
                 link.acc_busy.eq(AnySeq(1))]
    pos = Signal(range(len(frame) + 1))
    go = Signal()
    m.d.comb += go.eq(AnySeq(1))
    byte = Signal(8)
    with m.Switch(pos):
        for i, b in enumerate(frame):
            with m.Case(i):
                m.d.comb += byte.eq(b)
    sending = (pos != 0) | (go & ~link.parsing)
    with m.If(sending):
        m.d.comb += [link.rx.valid.eq(1), link.rx.payload.eq(byte)]
        m.d.sync += pos.eq(Mux(pos == len(frame) - 1, 0, pos + 1))
    with m.Else():
        m.d.comb += [link.rx.valid.eq(AnySeq(1)), link.rx.payload.eq(AnySeq(8))]
    with m.If(pos == len(frame) - 1):
        m.d.comb += Assert(queue.w_en & (queue.w_data[0:2] == K_INFO) & (queue.w_data[2:10] == seq))
    return m


def stream_rules(m: Module, stream, name: str) -> None:
    """The `lib.stream` rules for a producer: once valid is offered and not taken, the next cycle it is still
    offered with the same payload (ready is free: the harness drives it with AnySeq)."""
    held, payload = Signal(name=f"{name}_held"), Signal.like(stream.payload, name=f"{name}_prev")
    m.d.sync += [held.eq(stream.valid & ~stream.ready), payload.eq(stream.payload)]
    with m.If(held):
        m.d.comb += [Assert(stream.valid), Assert(stream.payload == payload)]


def link_streams_harness(info: P.DeviceInfo, timeout_cycles: int) -> Module:
    """Link's producer streams: `tx` (replies to the UART transmitter) and `acc_input` (the window into the
    accelerator) keep valid and payload until ready, for any valid/ready pattern (unbounded: k-induction).
    The feeder also sends each window's n_inputs codes exactly once and in order: each transfer reads the
    window buffer at the harness's count of transfers since `acc_start`, and a window is started only once
    the previous one has been sent whole.
    """
    m = harness()
    link = Link(info, timeout_cycles)
    dut, sig = probe(link)
    m.submodules.link = dut
    _drive_link(m, link)
    stream_rules(m, link.tx, "tx")
    stream_rules(m, link.acc_input, "acc_input")
    n = info.n_inputs
    sent = Signal(range(n + 1), init=n)
    with m.If(link.acc_start):
        m.d.comb += Assert(sent == n)
        m.d.sync += sent.eq(0)
    m.d.comb += Assert((sent == n) | (sig["faddr"] == sent))
    with m.If(link.acc_input.valid):
        m.d.comb += [Assert(sent < n), Assert(sig["faddr"] == sent)]
        with m.If(link.acc_input.ready):
            m.d.sync += sent.eq(sent + 1)
    return m


def uart_rx_harness(divisor: int) -> Module:
    """UART receiver output: valid and the byte stay until ready, whatever the line does (k-induction)."""
    m = harness()
    rx = UARTRx(divisor)
    m.submodules.rx = rx
    m.d.comb += [rx.rx.eq(AnySeq(1)), rx.output.ready.eq(AnySeq(1))]
    stream_rules(m, rx.output, "rx")
    return m


def fifo_harness(width: int, depth: int) -> Module:
    """The link's reply queue (`SyncFIFO` at its width and depth): no entry lost, duplicated or reordered,
    for any pattern of writes and reads (bounded: 16 cycles from reset, the queue filled and emptied twice).

    The harness tracks one written entry, chosen by `AnyConst` among all writes: it counts the entries ahead
    of it, and asserts that the read that takes it out comes when none is left ahead and returns its data.
    """
    m = harness()
    fifo = SyncFIFO(width=width, depth=depth)
    m.submodules.fifo = fifo
    m.d.comb += [fifo.w_en.eq(AnySeq(1)), fifo.w_data.eq(AnySeq(width)), fifo.r_en.eq(AnySeq(1))]
    pick = Signal()
    m.d.comb += pick.eq(AnySeq(1))
    tracking, done = Signal(), Signal()
    data = Signal(width)
    ahead = Signal(range(depth + 1))
    wr = fifo.w_en & fifo.w_rdy
    rd = fifo.r_en & fifo.r_rdy
    with m.If(~tracking & ~done & wr & pick):
        m.d.sync += [tracking.eq(1), data.eq(fifo.w_data), ahead.eq(fifo.level - rd)]
    with m.If(tracking & rd):
        with m.If(ahead == 0):
            m.d.comb += Assert(fifo.r_data == data)
            m.d.sync += [tracking.eq(0), done.eq(1)]
        with m.Else():
            m.d.sync += ahead.eq(ahead - 1)
    with m.If(tracking):
        m.d.comb += [Assert(ahead < fifo.level), Assert(fifo.level <= depth)]
    return m


def link_proofs(info: P.DeviceInfo, timeout_cycles: int, divisor: int = 104) -> list[Proof]:
    """The host link's proofs for one model's `DeviceInfo` (window size, code range) and frame timeout."""
    return [
        Proof("link.timeout_hunts", lambda: link_timeout_harness(info, timeout_cycles), "prove", 3),
        Proof("link.good_frame_accepted", lambda: link_accepts_harness(info, timeout_cycles), "prove", 10),
        Proof("stream.link_tx_acc_input", lambda: link_streams_harness(info, timeout_cycles), "bmc", 24,
              "bounded: 24 cycles from reset (k-induction does not close without more invariants)"),
        Proof("stream.uart_rx_output", lambda: uart_rx_harness(divisor), "prove", 3),
        Proof("stream.reply_queue", lambda: fifo_harness(18, P.REPLY_QUEUE), "bmc", 4 * P.REPLY_QUEUE,
              "bounded: 16 cycles, the queue filled and emptied twice"),
    ]
