"""The bank crossbar: the buffer memories (banks) and the multiplexers between them and their users."""
from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .block import Block
from .plan import R_LN, R_RES, R_SM, R_W, R_X, W_DRAIN, W_LN, W_SM, Bank, Plan
from .rowio import write_signature
from .steps import StepFields

# the element readers: role -> (the port prefix, the step field naming the bank it reads)
READERS = {R_X: ("x", "x_bank"), R_RES: ("res", "res_bank"), R_SM: ("sm", "sm_src_bank"),
           R_LN: ("ln", "ln_src_bank")}
WRITERS = {W_DRAIN: "drain", W_SM: "sm", W_LN: "ln"}


def bank_roles(plan: Plan) -> tuple[dict[int, list[int]], dict[int, list[int]]]:
    """Which banks can take which read role, and which write role, in some step of the table (the data
    multiplexers include only those)."""
    reads = {r: [b.index for b in plan.banks if any(rec.read_role[b.index] == r for rec in plan.steps)]
             for r in (R_X, R_W, R_RES, R_SM, R_LN)}
    writes = {r: [b.index for b in plan.banks if any(rec.write_role[b.index] == r for rec in plan.steps)]
              for r in (W_DRAIN, W_SM, W_LN)}
    return reads, writes


class BankCrossbar(Block):
    """The banks (`plan.banks`, one read and one write port each) and their multiplexers.

    Reads: each bank's read address is the address of the role that the current step gives it
    (`read_role` of the step table: X operand `x_addr`, W operand `w_addr`, residual source `res_addr`,
    row units `sm_addr`, `ln_addr`), or the output port's `out_addr` while `out_active`. The data come one
    cycle later: each bank selects the lane of the role that reads it (`*_lane`, the lane of the element
    read a cycle ago; one lane multiplexer per bank) and extends it to a signed code (sign or zero, as the
    bank's buffers need), then each role selects its bank (`*_elem`). `w_word` is the W operand, all P lanes
    of the W bank's word, or the weight ROM's word (`w_rom_data`, when the step says `w_from_rom`).
    `out_data` is the output buffer's bank word, whole. With pair steps (`plan.pairs`), `x_elem1` is the X
    element in the lane after `x_lane` (lane | 1: a pair starts at an even lane), from the same word; a
    pair step's W bank (`plan.pair_w_banks`: attention's K^T and V) has a second read port at
    w_addr + w_k_stride / 2 (the step walks two rows per issue, the port reads row k + 1), and each W lane
    carries the pair as a ROM lane does: row k's code in its low `pairs.w_bits` bits, row k + 1's above.

    Writes: a bank is written by the input loader (`load`, the x buffer's bank) or by the role the step
    gives it (`write_role`: the drain, the softmax or the LayerNorm unit), one lane of a word at a time
    (the lane's value replicated over the word, the lane's write enable set).

    Latency: 1 cycle from an address to its element (the memories' synchronous read); writes take effect
    the next cycle. Widths: addresses `plan.addr_width`, elements signed `plan.elem_width`, bank words
    P x the bank's `lane_bits`.
    """

    def __init__(self, plan: Plan, memories: dict, loader_data_shape):
        self.plan, self.memories = plan, memories
        self.has_sm, self.has_ln = plan.uses("softmax"), plan.uses("layernorm")
        P, E, AW = plan.lanes, plan.elem_width, plan.addr_width
        LW = max(1, P - 1).bit_length()
        self.read_roles, self.write_roles = bank_roles(plan)
        out_bank = plan.banks[plan.output.bank]
        members = {
            "step": In(plan.step_layout()),
            "x_addr": In(AW), "w_addr": In(AW), "res_addr": In(AW),
            "w_rom_data": In(unsigned(plan.weight_width * P)),
            "w_word": Out(data.ArrayLayout(signed(plan.w_bits + 1), P)),
            "out_active": In(1), "out_addr": In(AW), "out_data": Out(unsigned(out_bank.width)),
            "load": In(wiring.Signature({"en": Out(1), "addr": Out(AW), "lane": Out(LW),
                                         "data": Out(loader_data_shape)})),
            "drain": In(write_signature(AW, P, plan.drain_width)),
        }
        for role, (name, _) in READERS.items():
            if (role == R_SM and not self.has_sm) or (role == R_LN and not self.has_ln):
                continue
            members.update({f"{name}_lane": In(LW), f"{name}_elem": Out(signed(E))})
            if role in (R_SM, R_LN):
                members[f"{name}_addr"] = In(AW)
        if plan.pairs:
            members["x_elem1"] = Out(signed(E))
        if self.has_sm:
            members["sm"] = In(write_signature(AW, P, E))
        if self.has_ln:
            members["ln"] = In(write_signature(AW, P, E))
        super().__init__(members)

    def _readers(self):
        """role -> (lane, elem, bank field) of each element reader this design has."""
        return {role: (getattr(self, f"{name}_lane"), getattr(self, f"{name}_elem"), field)
                for role, (name, field) in READERS.items() if hasattr(self, f"{name}_elem")}

    def _build(self, m: Module) -> None:
        f = StepFields(self.step)
        rports, wports = {}, {}
        for b in self.plan.banks:
            mem = self.memories[b.name]
            m.submodules[b.name] = mem
            rports[b.index] = mem.read_port()
            wports[b.index] = mem.write_port(granularity=b.lane_bits)
        rports1 = self._pair_w_ports(m, f)
        self._read_addresses(m, f, rports)
        self._writes(m, f, wports)
        self._elements(m, f, rports)
        self._w_operand(m, f, rports, rports1)
        m.d.comb += self.out_data.eq(rports[self.plan.output.bank].data)

    def _pair_w_ports(self, m, f) -> dict:
        """The second read port of each pair steps' W bank, at row k + 1 of the W walk (half the step's k
        stride on: a pair step walks two rows per issue)."""
        ports = {}
        for j in self.plan.pair_w_banks():
            ports[j] = self.memories[self.plan.banks[j].name].read_port()
            m.d.comb += ports[j].addr.eq(self.w_addr + (f.w_k_stride >> 1))
        return ports

    def _extend(self, f, b: Bank, raw):
        """A lane read from bank b as a signed code (zero- or sign-extended as the buffer needs)."""
        if b.signed_read is None:
            return Mux(f.bank("read_signed", b.index), raw.as_signed(), raw.as_unsigned())
        return raw.as_signed() if b.signed_read else raw.as_unsigned()

    def _read_addresses(self, m, f, rports):
        sources = {R_X: self.x_addr, R_W: self.w_addr, R_RES: self.res_addr}
        if self.has_sm:
            sources[R_SM] = self.sm_addr
        if self.has_ln:
            sources[R_LN] = self.ln_addr
        for b in self.plan.banks:
            rp = rports[b.index]
            if b.index == self.plan.output.bank:
                with m.If(self.out_active):
                    m.d.comb += rp.addr.eq(self.out_addr)
            with m.If(~self.out_active):
                with m.Switch(f.bank("read_role", b.index)):
                    for role, addr in sources.items():
                        if b.index in self.read_roles.get(role, []):
                            with m.Case(role):
                                m.d.comb += rp.addr.eq(addr)

    def _write(self, m, wp, b: Bank, addr, lane, value):
        lane_value = Signal(signed(b.lane_bits) if value.shape().signed else unsigned(b.lane_bits))
        n = b.lanes
        m.d.comb += [lane_value.eq(value), wp.addr.eq(addr), wp.data.eq(lane_value.replicate(n)),
                     wp.en.eq((Const(1, n) << lane)[:n] if n > 1 else 1)]

    def _writes(self, m, f, wports):
        sources = {role: getattr(self, name) for role, name in WRITERS.items() if hasattr(self, name)}
        x_bank = self.plan.layouts["x"].bank
        for b in self.plan.banks:
            wp = wports[b.index]
            if b.index == x_bank:
                with m.If(self.load.en):
                    self._write(m, wp, b, self.load.addr, self.load.lane, self.load.data)
            with m.Switch(f.bank("write_role", b.index)):
                for role, port in sources.items():
                    if b.index in self.write_roles.get(role, []):
                        with m.Case(role):
                            with m.If(port.en):
                                self._write(m, wp, b, port.addr, port.lane, port.data)

    def _elements(self, m, f, rports):
        """Each bank selects the lane of the role that reads it, then each role selects its bank."""
        readers = self._readers()
        LW = len(self.x_lane)
        bank_elem = {}
        for b in self.plan.banks:
            roles = [r for r in readers if b.index in self.read_roles[r]]
            if b.wide or not roles:
                continue
            lane = Signal(LW, name=f"{b.name}_lane")
            if len(roles) == 1:
                m.d.comb += lane.eq(readers[roles[0]][0])
            else:
                with m.Switch(f.bank("read_role", b.index)):
                    for r in roles:
                        with m.Case(r):
                            m.d.comb += lane.eq(readers[r][0])
            word = rports[b.index].data
            raw = word.word_select(lane, b.lane_bits) if self.plan.lanes > 1 else word
            e = Signal(signed(self.plan.elem_width), name=f"{b.name}_elem")
            m.d.comb += e.eq(self._extend(f, b, raw))
            bank_elem[b.index] = e
        for role, (_, elem, field) in readers.items():
            with m.Switch(getattr(f, field)):
                for j in self.read_roles[role]:
                    with m.Case(j):
                        m.d.comb += elem.eq(bank_elem[j])
        if self.plan.pairs:
            self._pair_elements(m, f, rports)

    def _pair_elements(self, m, f, rports):
        """A pair step's second X element: lane x_lane | 1 of the X bank's word (the X role's lane select again,
        one lane on)."""
        lane = Signal(len(self.x_lane), name="x_lane1")
        m.d.comb += lane.eq(self.x_lane | 1)
        with m.Switch(f.x_bank):
            for j in self.read_roles[R_X]:
                b = self.plan.banks[j]
                if b.wide:
                    continue
                with m.Case(j):
                    raw = rports[j].data.word_select(lane, b.lane_bits)
                    m.d.comb += self.x_elem1.eq(self._extend(f, b, raw))

    def _w_operand(self, m, f, rports, rports1):
        """The W operand's P lanes: the weight ROM's word, or the W bank's word lane by lane (in a pair step,
        each lane the pair of rows k and k + 1 from the bank's two read ports)."""
        P, width = self.plan.lanes, self.plan.weight_width
        with m.If(f.w_from_rom):
            for l in range(P):
                m.d.comb += self.w_word[l].eq(self.w_rom_data[l * width:(l + 1) * width].as_signed())
        with m.Else():
            with m.Switch(f.w_bank):
                for j in self.read_roles[R_W]:
                    with m.Case(j):
                        b = self.plan.banks[j]
                        lb = b.lane_bits
                        for l in range(P):
                            single = self._extend(f, b, rports[j].data[l * lb:(l + 1) * lb])
                            if j not in rports1:
                                m.d.comb += self.w_word[l].eq(single)
                                continue
                            wb = self.plan.pairs.w_bits
                            second = self._extend(f, b, rports1[j].data[l * lb:(l + 1) * lb])
                            m.d.comb += self.w_word[l].eq(Mux(f.pair, Cat(single[:wb], second[:wb]).as_signed(),
                                                              single))
