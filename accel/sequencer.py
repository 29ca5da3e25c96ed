"""The issue sequencer: the order in which a linear step's (k, group) pairs reach the MAC array."""
from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data
from amaranth.lib.wiring import In, Out

from .block import Block
from .drain import addr_bits
from .pipeline import delay
from .plan import Plan
from .steps import StepFields
from .walk import walk


class IssueSequencer(Block):
    """Issues a linear step to the MAC array: for each output row i, each group of up to P output columns,
    each k: one X element (row i, column x_col + k, broadcast to every lane) and one P-wide W word (word
    w_base + group x w_group_stride + k x w_k_stride), back to back; a group with fewer k than lanes is
    followed by `issue_gap` idle cycles, so that the drain (one element per cycle) keeps up.

    `start` (a pulse, the step's start) begins the step; `busy` is high while it issues. The operands are
    read the cycle after the issue (`x_addr` and `w_addr` are the read addresses; `x_lane` is the lane of
    the X element read a cycle ago, for the bank's lane select), come back as `x_elem` and `w_word`, and are
    registered once more (the bank and lane selection ends in a register, not at the multiplier blocks'
    inputs: Fmax). Latency: `LATENCY` = 2 cycles from the issue to the MAC array's inputs `valid`, `first`
    (k = 0), `last` (the group's last k), `tag` (the group's output columns), `x`, `w`.
    Widths: `x` signed x_bits + 1 (the ones operand is 1), `w` P lanes of signed w_bits + 1, addresses
    `plan.addr_width` (W: wide enough for the weight ROM too).

    A pair step (`plan.pairs`, the record's `pair`) issues two k at a time: the X walk moves two columns per
    issue, `x_elem1` (the element after `x_elem`, the next lane of the same word) comes out as `x1`, the W
    word holds both k's weights, `pair` marks the issue, and the group's last issue is its k_len-th (the
    record's k_len counts issues).
    """

    OPERAND_READ = 1         # the memories' read
    OPERAND_REGISTER = 1     # the register before the MAC array
    LATENCY = OPERAND_READ + OPERAND_REGISTER

    def __init__(self, plan: Plan):
        self.plan = plan
        P, AW = plan.lanes, plan.addr_width
        LW = max(1, P - 1).bit_length()
        WB = plan.w_bits + 1
        self.w_addr_width = max(addr_bits(len(plan.weight_words)), AW) + 1
        super().__init__({
            "step": In(plan.step_layout()), "start": In(1), "busy": Out(1),
            "x_addr": Out(AW), "x_lane": Out(LW), "w_addr": Out(unsigned(self.w_addr_width)),
            "x_elem": In(signed(plan.elem_width)), "w_word": In(data.ArrayLayout(signed(WB), P)),
            "valid": Out(1), "first": Out(1), "last": Out(1), "tag": Out(range(P + 1)),
            "x": Out(signed(plan.x_bits + 1)), "w": Out(data.ArrayLayout(signed(WB), P)),
            **({"x_elem1": In(signed(plan.elem_width)), "x1": Out(signed(plan.x_bits + 1)), "pair": Out(1)}
               if plan.pairs else {}),
        })

    def _build(self, m: Module) -> None:
        plan, P, AW = self.plan, self.plan.lanes, self.plan.addr_width
        f = StepFields(self.step)
        iss = Signal()                                   # a (k, group) is issued this cycle
        i_row = Signal(range(plan.max_rows + 2))
        max_groups = max([1] + [r.groups for r in plan.steps if r.linear])
        i_grp = Signal(range(max_groups + 1))             # group of the row
        i_gg = Signal(range(max_groups + 1))              # group within its chunk
        i_k = Signal(range(plan.k_max + 1))
        chunk_max = max(lay.chunk for lay in plan.layouts.values())
        x_word, x_row = Signal(AW), Signal(AW)
        x_lane, x_within = Signal(len(self.x_lane)), Signal(range(chunk_max + 1))
        w_addr, w_grp = Signal(self.w_addr_width), Signal(self.w_addr_width)
        gap = Signal(range(P + 1))
        first, last, tag = Signal(), Signal(), Signal.like(self.tag)
        m.d.comb += [first.eq(i_k == 0), last.eq(i_k == f.k_len - 1),
                     tag.eq(Mux(i_gg == f.groups_per_chunk - 1, f.lanes_in_last_group, P))]
        with m.FSM(name="issue") as fsm:
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [i_row.eq(0), i_grp.eq(0), i_gg.eq(0), i_k.eq(0), gap.eq(0),
                                 x_row.eq(f.x_word), x_word.eq(f.x_word), x_lane.eq(f.x_lane),
                                 x_within.eq(f.x_within), w_addr.eq(f.w_base), w_grp.eq(f.w_base)]
                    m.next = "ISSUE"
            with m.State("ISSUE"):
                with m.If(gap != 0):
                    m.d.sync += gap.eq(gap - 1)
                with m.Else():
                    m.d.comb += iss.eq(1)
                    with m.If(last):
                        m.d.sync += [i_k.eq(0), gap.eq(f.issue_gap), x_lane.eq(f.x_lane), x_within.eq(f.x_within)]
                        with m.If(i_grp == f.groups - 1):
                            m.d.sync += [i_grp.eq(0), i_gg.eq(0), w_grp.eq(f.w_base), w_addr.eq(f.w_base),
                                         x_row.eq(x_row + f.x_words_per_row), x_word.eq(x_row + f.x_words_per_row),
                                         i_row.eq(i_row + 1)]
                            with m.If(i_row == f.rows - 1):
                                m.next = "IDLE"
                        with m.Else():
                            m.d.sync += [i_grp.eq(i_grp + 1),
                                         i_gg.eq(Mux(i_gg == f.groups_per_chunk - 1, 0, i_gg + 1)),
                                         w_grp.eq(w_grp + f.w_group_stride), w_addr.eq(w_grp + f.w_group_stride),
                                         x_word.eq(x_row)]
                    with m.Else():
                        nw, nl, ni = self._next_x(f, x_word, x_lane, x_within)
                        m.d.sync += [i_k.eq(i_k + 1), x_word.eq(nw), x_lane.eq(nl), x_within.eq(ni),
                                     w_addr.eq(w_addr + f.w_k_stride)]
        m.d.comb += [self.busy.eq(fsm.ongoing("ISSUE")), self.x_addr.eq(x_word), self.w_addr.eq(w_addr)]
        m.d.sync += self.x_lane.eq(x_lane)
        # the operands' register: the MAC array sees each (k, group) LATENCY cycles after its issue
        x_q = Signal(signed(plan.x_bits + 1), reset_less=True)
        w_q = Signal(data.ArrayLayout(signed(plan.w_bits + 1), P), reset_less=True)
        m.d.sync += [x_q.eq(Mux(f.x_ones, 1, self.x_elem)), w_q.eq(self.w_word)]
        m.d.comb += [self.valid.eq(delay(m, iss, self.LATENCY, "iss")),
                     self.first.eq(delay(m, first, self.LATENCY, "first")),
                     self.last.eq(delay(m, last, self.LATENCY, "last")),
                     self.tag.eq(delay(m, tag, self.LATENCY, "tag")), self.x.eq(x_q), self.w.eq(w_q)]
        if plan.pairs:
            x1_q = Signal(signed(plan.x_bits + 1), reset_less=True)
            m.d.sync += x1_q.eq(self.x_elem1)
            m.d.comb += [self.x1.eq(x1_q), self.pair.eq(delay(m, f.pair, self.LATENCY, "pair"))]

    def _next_x(self, f, word, lane, within):
        """The X walk's next position: one column on, or two in a pair step (the pair's columns share a word:
        `plan.pairing`)."""
        P = self.plan.lanes
        one = walk(word, lane, within, f.x_chunk, P)
        if not self.plan.pairs:
            return one
        word1, lane1, within1 = one
        two = walk(word1, lane1, within1, f.x_chunk, P)
        return tuple(Mux(f.pair, b, a) for a, b in zip(one, two))
