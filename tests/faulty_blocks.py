"""Faulty copies of the host link's blocks (the link, the UART transmitter, the SPI peripheral), of the
drain's requantizer and of the bank crossbar, for the must-fail tests: each is a subclass of the real block whose elaboration is
the real one plus one deliberate bug, added to the same module after the real logic (Amaranth lets a later
assignment to a signal in the same module override an earlier one), so that everything else, the
registers the proofs observe among it, is the real block's.

The formal must-fail tests (tests/test_formal.py) put them under the unchanged harnesses in place of the
class the harness builds (pytest's monkeypatch on the name the harness looks up); the simulation ones
(tests/test_board_link.py, tests/test_board_sim.py, tests/test_board_spi.py, tests/test_accel_blocks.py)
run the check the real block passes on them. `trace_steps` reads a failed proof's counterexample.
"""
from __future__ import annotations

from amaranth.hdl import Cat, Module

from intformer.accel.arith import clamp, round_shift_parts
from intformer.accel.crossbar import BankCrossbar
from intformer.accel.requant import Requantizer
from intformer.boards import protocol as P
from intformer.boards.link import K_RESULT, Link
from intformer.boards.spi import SPIPeripheral
from intformer.boards.uart import UARTTx

# CRC-16/CCITT's polynomial with one bit (x^5) dropped: 0x1021 -> 0x1001
BAD_CRC_POLY = P.CRC_POLY ^ (1 << 5)


def crc16_update_poly(crc: int, byte: int, poly: int) -> int:
    """`protocol.crc16_update` with another polynomial."""
    crc ^= (byte & 0xFF) << 8
    for _ in range(8):
        crc = ((crc << 1) ^ poly) if crc & 0x8000 else (crc << 1)
        crc &= 0xFFFF
    return crc


def crc16_network(poly: int):
    """`link.crc16_next`'s XOR network, derived the same way from the CRC of polynomial `poly`."""
    masks = [crc16_update_poly(1 << i, 0, poly) for i in range(16)] + \
            [crc16_update_poly(0, 1 << i, poly) for i in range(8)]

    def next_crc(crc, byte):
        inputs = [crc[i] for i in range(16)] + [byte[i] for i in range(8)]
        out = []
        for j in range(16):
            terms = [inputs[i] for i, mask in enumerate(masks) if mask >> j & 1]
            bit = terms[0]
            for t in terms[1:]:
                bit = bit ^ t
            out.append(bit)
        return Cat(*out)
    return next_crc


class BadCrcLink(Link):
    """The link whose receiver's CRC network has one wrong polynomial bit (`BAD_CRC_POLY`): it computes a
    different CRC of every frame, so it answers good frames with ERROR 1."""

    def _received(self):
        rx = super()._received()
        return rx._replace(crc_next=crc16_network(BAD_CRC_POLY)(self.crc, self.rx.payload))


class SwappedResultLink(Link):
    """The link whose sender puts a RESULT word's bytes out most significant first (the protocol says least
    significant first): byte k of the frame's word is the word's byte 3 - k."""

    def _sender_payload(self, m: Module) -> None:
        super()._sender_payload(m)
        with m.If(self.kind == K_RESULT):
            m.d.comb += self.byte.eq(self.word.word_select((3 - self.idx[:2])[:2], 8))


class FastBitUARTTx(UARTTx):
    """The transmitter with its baud divider off by one: every bit lasts divisor - 1 cycles, not divisor
    (its bit timer reloads with divisor - 2)."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        load = (self.left == 0) & self.input.valid
        shift = (self.left != 0) & (self.timer == 0)
        with m.If(load | shift):
            m.d.sync += self.timer.eq(self.divisor - 2)
        return m


class LsbFirstSPIPeripheral(SPIPeripheral):
    """The SPI peripheral with CIPO wired to bit 0 of its transmit register, not bit 7: a byte's bits go out
    from the wrong end (bit 0 first, then the zeros shifted in)."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        m.d.comb += self.cipo.eq(self.txreg[0])
        return m


class EarlyTakeSPIPeripheral(SPIPeripheral):
    """The SPI peripheral that takes the byte it sends from its transmit queue at the 7th rising SCK edge,
    not the 8th: a byte the host breaks off after 7 bits is lost instead of sent again whole."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        selected = ~self.cs_s
        rise = selected & self.sck_s & ~self.sck_p
        starts = ~self.cs_s & self.cs_p                   # a byte start wins over an edge, as in the real one
        m.d.comb += self.fifo.r_en.eq(rise & ~starts & (self.bit == 6) & self.from_fifo)
        return m


class RoundDownRequantizer(Requantizer):
    """The requantizer (static parameters, shifts >= 1) whose last stage rounds down (floor) instead of
    half up: clamp(floor(acc x m / 2^s)) instead of `intops.requantize`'s clamp(round_shift(acc x m, s))."""

    def elaborate(self, platform):
        if not self.static_params or self.s_range[0] < 1:
            raise ValueError("the faulty requantizer needs static parameters and shifts >= 1")
        m = super().elaborate(platform)
        with m.If(self.en):
            m.d.sync += self.out.eq(clamp(self.shifted >> 1, self.lo, self.hi))
        return m


class StallBlindRequantizer(Requantizer):
    """The requantizer (static parameters, shifts >= 1) whose output register loads the next value even
    while the output is stalled (`en` low): the value waiting on `output` is overwritten, lost."""

    def elaborate(self, platform):
        if not self.static_params or self.s_range[0] < 1:
            raise ValueError("the faulty requantizer needs static parameters and shifts >= 1")
        m = super().elaborate(platform)
        post = round_shift_parts(self.prod, self.s, self.s_range)[1]
        with m.If(~self.en):
            m.d.sync += self.out.eq(clamp(post(self.shifted), self.lo, self.hi))
        return m


def trace_steps(vcd_path) -> list[dict[str, int]]:
    """A counterexample trace (SymbiYosys's VCD) as one dict per step: the hierarchical name of each signal
    under the harness (`top.k`, `top.link.crc`, ...) -> its value (x and z read as 0). A must-fail test
    reads in it the word or byte the failed assertion is about."""
    names: dict[str, list[str]] = {}
    scope: list[str] = []
    values: dict[str, int] = {}
    steps: dict[int, dict[str, int]] = {}
    with open(vcd_path) as f:
        for line in f:
            tok = line.split()
            if not tok:
                continue
            if tok[0] == "$scope":
                scope.append(tok[2])
            elif tok[0] == "$upscope":
                scope.pop()
            elif tok[0] == "$var":
                names.setdefault(tok[3], []).append(".".join(scope + [tok[4]]) if scope else tok[4])
            elif tok[0].startswith("#"):
                if "smt_step" in values:
                    steps[values["smt_step"]] = dict(values)
            elif tok[0][0] in "bB" and len(tok) == 2:
                for name in names.get(tok[1], []):
                    values[name] = int(tok[0][1:].replace("x", "0").replace("z", "0") or "0", 2)
            elif tok[0][0] in "01xz" and len(tok) == 1 and len(tok[0]) > 1:
                for name in names.get(tok[0][1:], []):
                    values[name] = int(tok[0][0] == "1")
    if "smt_step" in values:
        steps[values["smt_step"]] = dict(values)
    return [steps[k] for k in sorted(steps)]


class SameRowCrossbar(BankCrossbar):
    """The crossbar whose pair steps' W banks read row k at their second port too (the address without its
    half stride): a pair step multiplies x_k+1 by w_k, every attention output that a pair step computes from
    K^T or V is off."""

    def _pair_w_ports(self, m, f):
        ports = super()._pair_w_ports(m, f)
        for port in ports.values():
            m.d.comb += port.addr.eq(self.w_addr)
        return ports
