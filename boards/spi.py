"""An SPI peripheral (target) for the host link: mode 0, MSB first, byte streams on the inside.

`SPIPeripheral` lets an SPI host (a Raspberry Pi's SPI0, a USB-SPI bridge) carry the `boards.protocol` byte
stream where a board has no USB-UART bridge (the OrangeCrab). Its `output` stream (bytes the host sent)
has the interface of `boards.uart.UARTRx.output` and feeds `boards.link.Link.rx`; its `input` stream
(bytes to send) takes `Link.tx`, as `UARTTx.input` does. `SPIModel` is the byte-level golden model.

The exchange
------------
SPI is full duplex and the host makes the clock: for every byte the host clocks out on COPI, the device
clocks one byte back on CIPO. While the host clocks and the device has nothing to send, the device sends
the filler byte `FILLER` (0x00, not the SOF 0xA5); the host reads replies by clocking filler bytes (0x00)
in, which the device's parser skips while it hunts for SOF (`boards.link`: every non-SOF byte is skipped
outside a frame). A byte the host breaks off (CS raised before its 8th rising SCK edge) is lost in the
host -> device direction, and not lost in the other: the device sends that byte again, whole, at the start
of the next byte the host clocks. So every reply byte reaches the host exactly once, in order, provided the
host only ever raises CS between whole bytes or accepts a repeat of the broken-off byte.

Mode 0: SCK idles low; both sides put a bit out while SCK is low (after CS falls, then after each falling
edge) and sample on the rising edge; MSB first. CS (`cs_n`) is active low; it may stay low for many bytes
or rise between any two bytes.

Algorithm
---------
`sck`, `copi` and `cs_n` pass 2-flop synchronisers into the `sync` domain (cs_n's reset to 1, not
selected); a third flop of sck and cs_n gives the edges. `cipo` is driven from a flip-flop (bit 7 of the
transmit shift register), always (the pin is not tristated: one device on its select line).

* A byte starts when the (synchronised) CS falls, and at the falling SCK edge after a byte's 8th rising
  edge. Then the transmit register loads the head of the transmit FIFO (without taking it) or, with the
  FIFO empty, `FILLER`, and remembers which (`from_fifo`).
* On each rising edge while selected, the receive register shifts COPI in (LSB end) and the bit counter
  counts; at the 8th the byte is offered on `output` and, if it came from the FIFO, the FIFO's head is
  taken. On each falling edge inside a byte the transmit register shifts left (the next bit to `cipo`).
* CS high resets the bit counter: a partial byte is dropped (the host's half) or kept (the device's: not
  taken from the FIFO, so it starts the next byte).

`input` feeds a `SyncFIFO` of `fifo_depth` bytes (`input.ready` is its `w_rdy`); `output.valid` stays high
until `output.ready`, and a byte that completes while the previous one is still not taken is dropped and
`overrun` pulses (the `Link` takes every byte at once, so it never happens there).

Timing and latency
------------------
A pin edge reaches the edge detector after the two synchroniser flops (1-2 cycles, by its phase against
the clock), and `cipo` changes at the clock edge after that: 2-3 system clock cycles from a falling SCK edge
(or CS falling) to the next bit on CIPO. The host samples CIPO on the following rising edge, so each SCK phase, high and low, must last at
least `MIN_HALF_PERIOD` = 4 system clock cycles, which leaves one cycle for the pad, the wire and the
host's setup time:

    SCK       <= sys_clk / 8   (6 MHz at the OrangeCrab's 48 MHz, 1.5 MHz at 12 MHz), duty cycle 50 %
    CS lead   >= 4 cycles      from CS falling to the first rising SCK edge (half an SCK period)
    CS high   >= 4 cycles      between transactions

A received byte is offered on `output` 2-3 cycles after its 8th rising SCK edge at the pin. A byte written
to `input` goes out at the next byte start once it is at the FIFO's head (from the cycle after `input`
takes it, when the FIFO was empty): at the earliest one byte later while the host keeps clocking.

Widths: three 8-bit registers (transmit, receive, output), a bit counter of range(8), 8 synchroniser and
edge flops, the FIFO of `fifo_depth` x 8 bits with its range(fifo_depth + 1) level.
"""
from __future__ import annotations

import collections

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

FILLER = 0x00                   # what the device sends with nothing to send, and what a polling host sends
MIN_HALF_PERIOD = 4             # system clock cycles per SCK phase (and CS lead and CS high time), at least
FIFO_DEPTH = 16


class SPIPeripheral(wiring.Component):
    """SPI target, mode 0, MSB first (see the module docstring).

    Ports: pins `sck`, `copi`, `cs_n` (in, asynchronous: synchronised inside) and `cipo` (out, a
    flip-flop); `output` (stream of received bytes), `input` (stream of bytes to send, through a FIFO of
    `fifo_depth` bytes); status: `selected` (CS low, synchronised), `overrun` (pulse: a received byte was
    dropped because `output` was not ready), `pending` (the transmit FIFO holds bytes).
    """

    def __init__(self, fifo_depth: int = FIFO_DEPTH, filler: int = FILLER):
        if fifo_depth < 2:
            raise ValueError("fifo_depth must be at least 2")
        if not 0 <= filler <= 0xFF or filler == 0xA5:
            raise ValueError("the filler must be a byte other than SOF (0xA5)")
        self.fifo_depth, self.filler = fifo_depth, filler
        super().__init__({
            "sck": In(1),
            "copi": In(1),
            "cs_n": In(1, init=1),
            "cipo": Out(1),
            "output": Out(stream.Signature(8)),
            "input": In(stream.Signature(8)),
            "selected": Out(1),
            "overrun": Out(1),
            "pending": Out(1),
        })
        # the transmit queue and the registers the SPI proofs observe
        self.fifo = SyncFIFO(width=8, depth=fifo_depth)
        self.sck_s, self.sck_p = Signal(name="sck_s"), Signal(name="sck_p")     # SCK synchronised, and delayed
        self.cs_s, self.cs_p = Signal(init=1, name="cs_s"), Signal(init=1, name="cs_p")   # the same for cs_n
        self.txreg = Signal(8, name="txreg")            # the byte being sent, its next bit at bit 7
        self.from_fifo = Signal(name="from_fifo")       # that byte is the FIFO's head (not the filler)
        self.bit = Signal(range(8))                     # rising SCK edges of the byte so far

    def elaborate(self, platform):
        m = Module()
        m.submodules.fifo = fifo = self.fifo
        m.d.comb += [fifo.w_data.eq(self.input.payload), fifo.w_en.eq(self.input.valid),
                     self.input.ready.eq(fifo.w_rdy), self.pending.eq(fifo.r_rdy)]

        # synchronisers (2 flops) and a third flop for the edges
        sck1, sck_s, sck_p = Signal(name="sck1"), self.sck_s, self.sck_p
        copi1, copi_s = Signal(name="copi1"), Signal(name="copi_s")
        cs1, cs_s, cs_p = Signal(init=1, name="cs1"), self.cs_s, self.cs_p
        m.d.sync += [sck1.eq(self.sck), sck_s.eq(sck1), sck_p.eq(sck_s),
                     copi1.eq(self.copi), copi_s.eq(copi1),
                     cs1.eq(self.cs_n), cs_s.eq(cs1), cs_p.eq(cs_s)]
        selected = ~cs_s
        rise = selected & sck_s & ~sck_p
        fall = selected & ~sck_s & sck_p
        select = ~cs_s & cs_p
        m.d.comb += self.selected.eq(selected)

        txreg, rxreg, data = self.txreg, Signal(8, name="rxreg"), Signal(8, name="data")
        from_fifo, valid = self.from_fifo, Signal(name="valid")
        bit = self.bit
        m.d.comb += [self.cipo.eq(txreg[7]), self.output.payload.eq(data), self.output.valid.eq(valid)]
        with m.If(self.output.ready):
            m.d.sync += valid.eq(0)
        m.d.sync += self.overrun.eq(0)

        with m.If(~selected):
            m.d.sync += bit.eq(0)
        with m.Elif(select | (fall & (bit == 0))):                   # a byte starts: load, do not take yet
            m.d.sync += [txreg.eq(fifo.r_data), from_fifo.eq(fifo.r_rdy)]
            with m.If(~fifo.r_rdy):
                m.d.sync += txreg.eq(self.filler)
        with m.Elif(fall):
            m.d.sync += txreg.eq(Cat(0, txreg[:7]))
        with m.Elif(rise):
            byte = Cat(copi_s, rxreg[:7])
            m.d.sync += [rxreg.eq(byte), bit.eq(bit + 1)]
            with m.If(bit == 7):
                m.d.comb += fifo.r_en.eq(from_fifo)                   # the byte went out whole: take it
                m.d.sync += from_fifo.eq(0)
                with m.If(valid & ~self.output.ready):
                    m.d.sync += self.overrun.eq(1)
                with m.Else():
                    m.d.sync += [data.eq(byte), valid.eq(1)]
        return m


class SPIModel:
    """The byte exchange of `SPIPeripheral` (the golden model): `send` queues bytes the device is to send
    (those its FIFO holds when a transaction starts), `transfer` is one transaction (CS low .. CS high) of
    whole host bytes, optionally broken off after `partial_bits` (1..7) bits of one more byte. It returns
    what the host clocked in: one byte per whole host byte (the queue's head, or `FILLER` with the queue
    empty) and, for a broken-off byte, the top `partial_bits` bits of the byte that was being sent (which
    stays at the queue's head). `received` holds every whole byte the device got."""

    def __init__(self, filler: int = FILLER):
        self.filler = filler
        self.queue: collections.deque[int] = collections.deque()
        self.received = bytearray()

    def send(self, data: bytes) -> None:
        self.queue.extend(data)

    def transfer(self, host: bytes, partial_bits: int = 0) -> tuple[bytes, int | None]:
        out = bytearray()
        for b in host:
            self.received.append(b)
            out.append(self.queue.popleft() if self.queue else self.filler)
        partial = None
        if partial_bits:
            head = self.queue[0] if self.queue else self.filler
            partial = head >> (8 - partial_bits)
        return bytes(out), partial
