"""Pipeline helpers shared by the accelerator's blocks: a delay line of registers.

`delay(m, value, cycles)` is what the blocks call while they elaborate (it adds `cycles` registers to
`m.d.sync` and returns the last one); `taps(m, value, cycles, name)` is the same line with every stage
exposed; `Delay` is the same line as a `wiring.Component` of its own, for a parent that wants a submodule
with ports (and for its test against the golden model `delay_model`).
"""
from __future__ import annotations

from amaranth.hdl import Module, Shape, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out


def delay(m: Module, value, cycles: int, name: str | None = None) -> Value:
    """`value` delayed by `cycles` clock cycles (`cycles` registers of its shape in m.d.sync; 0: `value`
    itself). The registers are named `{name}_1` .. `{name}_{cycles}` (default: the value's own name)."""
    if cycles < 0:
        raise ValueError(f"a delay of {cycles} cycles")
    value = Value.cast(value)
    name = name or getattr(value, "name", None) or "delay"
    out = value
    for i in range(cycles):
        reg = Signal(value.shape(), name=f"{name}_{i + 1}")
        m.d.sync += reg.eq(out)
        out = reg
    return out


def taps(m: Module, value, cycles: int, name: str) -> list:
    """[value, value one cycle ago, ..., `cycles` cycles ago]: a delay line with every stage exposed (the
    registers are named `{name}{k}`)."""
    out = [Value.cast(value)]
    for k in range(1, cycles + 1):
        reg = Signal(out[0].shape(), name=f"{name}{k}")
        m.d.sync += reg.eq(out[-1])
        out.append(reg)
    return out


def delay_model(values, cycles: int, reset=0) -> list:
    """Golden model of a delay line: the output sequence for the input sequence `values` (one per cycle)."""
    values = list(values)
    return ([reset] * cycles + values)[:len(values)]


class Delay(wiring.Component):
    """A delay line: `o` is `i` of `cycles` cycles ago (`cycles` registers; reset value 0).

    Latency: `cycles` (= `LATENCY`). Widths: `i` and `o` of `shape`.
    """

    def __init__(self, shape, cycles: int):
        self.LATENCY = cycles
        super().__init__({"i": In(Shape.cast(shape)), "o": Out(Shape.cast(shape))})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.o.eq(delay(m, self.i, self.LATENCY, "stage"))
        return m
