"""Formal harnesses of the serial PHYs and queues under the host link: the UART receiver and transmitter,
the SPI peripheral (both directions), and the `SyncFIFO` queues (the link's replies, SPI's transmit bytes).

Run by `accel.sby.run_proof` like every harness (SymbiYosys, smtbmc with Yices); `boards.link_formal.
link_proofs` lists them with the link's own. Every input is driven with `AnySeq` (any line, pin and
valid/ready pattern), and every proof is unbounded (k-induction).

A queue's pointers and level agree in every reachable state: Amaranth's `SyncFIFO` asserts it itself when
elaborated for the formal platform (as `accel.formal_helpers` elaborates and `accel.sby` converts every
harness), which is the invariant an induction over a design holding a queue needs.
"""
from __future__ import annotations

from amaranth.asserts import AnySeq
from amaranth.hdl import Assert, Cat, Const, Module, Mux, Signal
from amaranth.lib.fifo import SyncFIFO

from intformer.accel.formal_helpers import elaborated, harness, in_range, stream_rules
from .uart import UARTRx


def uart_rx_harness(divisor: int) -> Module:
    """UART receiver output: valid and the byte stay until ready, whatever the line does (k-induction)."""
    m = harness()
    rx = UARTRx(divisor)
    m.submodules.rx = rx
    m.d.comb += [rx.rx.eq(AnySeq(1)), rx.output.ready.eq(AnySeq(1))]
    stream_rules(m, rx.output, "rx")
    return m

def uart_tx_harness(divisor: int, broken: bool = False) -> Module:
    """UART transmitter's `input`: every byte taken goes out whole and once on the line, at the baud rate
    (unbounded: k-induction, at the real divisor).

    Inputs: valid and the byte any pattern. The harness follows one byte taken, chosen by `AnySeq`, and
    counts the cycles since. Asserted on every cycle while it is followed: the line carries bit j of its
    frame (a start bit 0, the 8 data bits least significant first, a stop bit 1) during cycles
    j x divisor + 1 .. (j + 1) x divisor of the count, and no byte is taken before its stop bit has been
    on the line for a whole bit time. Asserted too, so that the induction closes: the shift register holds
    the rest of the frame, the bit counter and timer agree with the cycle count. `broken` expects the data
    bits most significant first (it must fail).
    """
    from .uart import UARTTx
    m = harness()
    tx = UARTTx(divisor)
    m.submodules.tx = elaborated(tx)
    m.d.comb += [tx.input.valid.eq(AnySeq(1)), tx.input.payload.eq(AnySeq(8))]
    took = tx.input.valid & tx.input.ready
    pick, following = Signal(), Signal()
    frame = Signal(10)
    cyc = Signal(range(10 * divisor + 2))
    m.d.comb += pick.eq(AnySeq(1))
    payload = tx.input.payload[::-1] if broken else tx.input.payload
    with m.If(~following & took & pick):
        m.d.sync += [following.eq(1), frame.eq(Cat(Const(0, 1), payload, Const(1, 1))), cyc.eq(0)]
    with m.If(following):
        left, timer, shreg = tx.left, tx.timer, tx.shreg
        j = Signal(range(11))
        m.d.comb += j.eq(10 - left)
        m.d.comb += [Assert(in_range(left, 1, 10)), Assert(timer < divisor),
                     Assert(cyc == j * divisor + (divisor - 1 - timer)),
                     Assert(tx.tx == frame.bit_select(j, 1)),
                     Assert(shreg == ((frame >> j) | (Const(0x3FF, 10) << left)[:10])),
                     Assert(~took)]
        m.d.sync += cyc.eq(cyc + 1)
        with m.If((left == 1) & (timer == 0)):
            m.d.sync += following.eq(0)
    return m

def spi_output_harness(fifo_depth: int) -> Module:
    """SPI peripheral's received-byte stream: valid and the byte stay until ready, whatever SCK, COPI and
    CS do (k-induction): a byte that completes while the previous one still waits is dropped (and flagged by
    `overrun`), never written over the waiting one."""
    from .spi import SPIPeripheral
    m = harness()
    spi = SPIPeripheral(fifo_depth)
    m.submodules.spi = spi
    m.d.comb += [spi.sck.eq(AnySeq(1)), spi.copi.eq(AnySeq(1)), spi.cs_n.eq(AnySeq(1)),
                 spi.output.ready.eq(AnySeq(1)), spi.input.valid.eq(AnySeq(1)), spi.input.payload.eq(AnySeq(8))]
    stream_rules(m, spi.output, "spi_out")
    return m

def spi_input_harness(fifo_depth: int, broken: bool = False) -> Module:
    """SPI peripheral's `input` (bytes to the host): every byte leaves the transmit queue only after its
    8 bits went out on CIPO, most significant first, one per SCK rising edge, whatever SCK, COPI and CS do
    (unbounded: k-induction).

    The harness follows the byte loaded from the queue at the start of a byte (chosen by `AnySeq`) and
    counts the SCK rising edges since (as the peripheral sees them, after its synchronisers). Asserted on
    every cycle while it is followed: at the k-th rising edge CIPO carries bit 7 - k of the byte; the byte
    is taken from the queue only at the 8th edge (and the queue's head is still that byte); CS going high
    before then leaves it in the queue, to be sent again whole. Asserted too, so that the induction closes:
    the shift register holds the byte shifted by the edges so far, and the bit counter counts them.
    `broken` expects the bits least significant first (it must fail).
    """
    from .spi import SPIPeripheral
    m = harness()
    spi = SPIPeripheral(fifo_depth)
    m.submodules.spi = elaborated(spi)
    fifo = spi.fifo                     # its pointers' bookkeeping: asserted by the FIFO itself (see above)
    m.d.comb += [spi.sck.eq(AnySeq(1)), spi.copi.eq(AnySeq(1)), spi.cs_n.eq(AnySeq(1)),
                 spi.output.ready.eq(AnySeq(1)), spi.input.valid.eq(AnySeq(1)), spi.input.payload.eq(AnySeq(8))]
    sck_s, sck_p, cs_s, cs_p, bit = spi.sck_s, spi.sck_p, spi.cs_s, spi.cs_p, spi.bit
    selected = ~cs_s
    rise = selected & sck_s & ~sck_p
    fall = selected & ~sck_s & sck_p
    load = selected & ((~cs_s & cs_p) | (fall & (bit == 0)))
    pick, following = Signal(), Signal()
    byte = Signal(8)
    k = Signal(range(8))
    m.d.comb += pick.eq(AnySeq(1))
    with m.If(~following & load & fifo.r_rdy & pick):
        m.d.sync += [following.eq(1), byte.eq(fifo.r_data), k.eq(0)]
    with m.If(following):
        order = k if broken else (7 - k)[:3]
        m.d.comb += [Assert(spi.from_fifo), Assert(fifo.r_rdy), Assert(fifo.r_data == byte),
                     Assert(bit == k),
                     Assert(spi.txreg == (byte << Mux(sck_p & (k != 0), k - 1, k).as_unsigned()[:3])[:8])]
        with m.If(~selected):
            m.d.comb += Assert(~fifo.r_en)
            m.d.sync += following.eq(0)                  # broken off: the byte stays queued
        with m.Elif(rise):
            m.d.comb += [Assert(spi.cipo == byte.bit_select(order, 1)), Assert(fifo.r_en == (k == 7))]
            m.d.sync += k.eq(k + 1)
            with m.If(k == 7):
                m.d.sync += following.eq(0)
        with m.Else():
            m.d.comb += Assert(~fifo.r_en)
    return m

def syncfifo_internals(module: Module):
    """The write and read pointers and the storage of a `SyncFIFO` elaborated as `module`.

    Amaranth's `SyncFIFO` keeps them as locals of its `elaborate` (no attribute, no public port), and the
    queue proof must name the slot an entry went to; so they are found here, once, in the module's private
    structures (amaranth pinned at 0.5.10), with an error that says so if they are not where they were."""
    driven = {s.name: s for s in module._driving.keys()}
    storage = module._named_submodules.get("storage")
    if "produce" not in driven or "consume" not in driven or storage is None:
        raise RuntimeError(f"SyncFIFO's produce/consume/storage not found: has amaranth changed? ({sorted(driven)})")
    return driven["produce"], driven["consume"], storage[0]


def fifo_harness(width: int, depth: int) -> Module:
    """The link's reply queue (`SyncFIFO` at its width and depth): no entry lost, duplicated or reordered,
    for any pattern of writes and reads (unbounded: k-induction).

    The harness tracks one written entry, chosen by `AnySeq` among all writes: it remembers the slot it went
    to and its data, and counts the entries ahead of it. Asserted on every cycle: the queue's pointers and
    level agree (level = produce - consume modulo depth, full or empty when they meet: the FIFO's own
    assertions for the formal platform); while the entry is tracked, its slot still holds its data, the
    count ahead is its distance from the read pointer and less than the level; the read that takes it out
    comes when none is left ahead and returns its data.
    """
    m = harness()
    fifo = SyncFIFO(width=width, depth=depth)
    dut = elaborated(fifo)
    m.submodules.fifo = dut
    produce, consume, storage = syncfifo_internals(dut)
    peek = storage.read_port(domain="comb")
    level = fifo.level
    m.d.comb += [fifo.w_en.eq(AnySeq(1)), fifo.w_data.eq(AnySeq(width)), fifo.r_en.eq(AnySeq(1))]
    pick = Signal()
    m.d.comb += pick.eq(AnySeq(1))
    tracking = Signal()
    data = Signal(width)
    slot = Signal.like(produce)
    ahead = Signal(range(depth + 1))
    wr = fifo.w_en & fifo.w_rdy
    rd = fifo.r_en & fifo.r_rdy
    with m.If(~tracking & wr & pick):
        m.d.sync += [tracking.eq(1), data.eq(fifo.w_data), slot.eq(produce), ahead.eq(level - rd)]
    with m.If(tracking & rd):
        with m.If(ahead == 0):
            m.d.comb += Assert(fifo.r_data == data)
            m.d.sync += tracking.eq(0)
        with m.Else():
            m.d.sync += ahead.eq(ahead - 1)
    with m.If(tracking):
        dist = Mux(slot >= consume, slot - consume, depth + slot - consume)
        m.d.comb += [peek.addr.eq(slot), Assert(peek.data == data), Assert(ahead < level),
                     Assert(ahead == dist)]
    return m
