"""Overflow audit: every narrowing assignment of a hardware block, found in its Amaranth statements, and an
assertion for each that its value fits (for the formal proofs in `accel.formal`).

Amaranth arithmetic is full precision: `a + b`, `a - b` and `a * b` have shapes wide enough for every pair
of operand values, so a value can only wrap where it is *narrowed*: assigned to a signal whose range does
not hold the range of the expression's shape (for example a product of the operands' full widths stored in
a register sized by the operands' real bounds), or cut by `[:w].as_signed()` / `.as_unsigned()` of an
arithmetic result. `narrowings(module)` lists every such place of one elaborated module, with the
condition under which it happens (the path of `If`/`Switch`/FSM cases that leads to it), and
`assert_no_overflow(module, ...)` adds to the same module, for each, `Assert(value in range(target))`
under that condition: a proof of the module then shows that no intermediate of the block wraps, for any
input its harness allows. Assignments whose target is wider than the expression's shape cannot wrap and
are not listed. Every kind of target is audited: a signal, a slice or part of one (a field of a `lib.data`
struct or array, such as `mac.result[l]`), a concatenation, an `Array` element (each element under the
condition that its index selects it), `x.as_signed()`; a memory write port's data is a signal of the
memory's shape. A target of any other kind raises `AuditError` naming it, rather than being skipped.

The condition is that of the assignment, not of the value's use: a combinational narrowing formed on every
cycle is asserted on every cycle, garbage cycles included. So a block forms a narrowed value where it is
kept (the MAC array sums under its `valid`), and a harness constrains inputs on the cycles that count.

Not audited: plain bit-field slices of a value (`x[:F]`, a deliberate modulo), assignments of a value without
arithmetic (a copy, a Mux of signals: each signal already holds a value of its own range), and submodules
(each has its own proof).
The walk reads an elaborated `Module`'s statements (`_statements`, Amaranth's internals: the project pins
amaranth 0.5.10, and `tests/test_overflow.py` fails first if they change).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from amaranth.hdl import Assert, Const, Value
from amaranth.hdl import _ast, _dsl

ARITH = {"+", "-", "*", "<<"}


@dataclass
class Narrowing:
    target: str                 # the signal assigned, or "slice of ..." for an explicit cut
    value: Value                # the expression at its full-precision shape
    lo: int                     # the range that the target holds
    hi: int
    cond: Value | None          # when the assignment happens (None: always)
    domain: str
    where: str                  # file:line of the assignment
    src_loc: tuple | None = None

    def __str__(self):
        return f"{self.target} <- [{self.lo}, {self.hi}] at {self.where}"


def shape_range(shape) -> tuple[int, int]:
    w = shape.width
    if shape.signed:
        return -(1 << (w - 1)) if w else 0, (1 << (w - 1)) - 1 if w else 0
    return 0, (1 << w) - 1


def _has_arith(v: Value) -> bool:
    if isinstance(v, _ast.Operator):
        return v.operator in ARITH or any(_has_arith(o) for o in v.operands)
    if isinstance(v, (_ast.Slice, _ast.Part)):
        return _has_arith(v.value)
    if isinstance(v, _ast.Concat):
        return any(_has_arith(p) for p in v.parts)
    if isinstance(v, _ast.SwitchValue):
        return any(_has_arith(val) for _, val in v.cases)
    return False


def _loc(src_loc) -> str:
    if not src_loc:
        return "?"
    return f"{src_loc[0].rsplit('/', 1)[-1]}:{src_loc[1]}"


def _cuts(v: Value, out: list):
    """Explicit narrowings inside an expression: `(arith)[:w].as_signed()` / `.as_unsigned()`."""
    if isinstance(v, _ast.Operator):
        if v.operator in ("s", "u") and isinstance(v.operands[0], _ast.Slice):
            sl = v.operands[0]
            if sl.start == 0 and _has_arith(sl.value) and sl.stop < len(sl.value):
                out.append((sl.value, shape_range(v.shape())))
        for o in v.operands:
            _cuts(o, out)
    elif isinstance(v, (_ast.Slice, _ast.Part)):
        _cuts(v.value, out)
    elif isinstance(v, _ast.Concat):
        for p in v.parts:
            _cuts(p, out)
    elif isinstance(v, _ast.SwitchValue):
        _cuts(v.test, out)
        for _, val in v.cases:
            _cuts(val, out)


def _and(a, b):
    if a is None:
        return b
    if b is None:
        return a
    return a & b


class AuditError(Exception):
    """An assignment target the audit cannot reason about (named by its kind): rather than skip it silently."""


def _name(v) -> str:
    """A readable name of an assignment target: the signal, `sig[a:b]`, `sig[part]`, `Cat(a, b)`, `sig[index]`."""
    if isinstance(v, _ast.Signal):
        return v.name
    if isinstance(v, _ast.Slice):
        return f"{_name(v.value)}[{v.start}:{v.stop}]"
    if isinstance(v, _ast.Part):
        return f"{_name(v.value)}[part {v.width}]"
    if isinstance(v, _ast.Concat):
        return "Cat(" + ", ".join(_name(p) for p in v.parts) + ")"
    if isinstance(v, _ast.Operator) and v.operator in ("u", "s"):
        return _name(v.operands[0])
    if isinstance(v, _ast.SwitchValue):
        return _name(v.cases[0][1]) + "[index]" if v.cases else "empty array"
    raise AuditError(f"overflow audit: cannot name an assignment target of kind {type(v).__name__}: {v!r}"[:200])


def target_range(lhs, value_signed: bool) -> tuple[int, int]:
    """The range of values that an assignment target keeps without losing one.

    A signal (or `x.as_signed()` / `.as_unsigned()` of one): its shape's range. A slice, a part (a variable
    bit field), a concatenation: their width, in the signedness of the value assigned. Their own shape is
    unsigned, but the bits are a field of something whose reader decides the sign (a signed element of an
    `ArrayLayout` such as `mac.result[l]`, a struct field of `lib.data`): the value keeps its meaning exactly
    when it fits that many bits of two's complement as formed, and wraps otherwise. Array elements
    (`SwitchValue`) are resolved per element by `_assigns`. Any other kind raises `AuditError`."""
    if isinstance(lhs, _ast.Signal):
        return shape_range(lhs.shape())
    if isinstance(lhs, _ast.Operator) and lhs.operator in ("u", "s"):
        inner = lhs.operands[0]
        if not isinstance(inner, (_ast.Signal, _ast.Slice, _ast.Part, _ast.Concat)):
            raise AuditError(f"overflow audit: cannot audit a target of kind {type(inner).__name__} under "
                             f"as_{'signed' if lhs.operator == 's' else 'unsigned'}()")
        return shape_range(_ast.Shape(len(inner), lhs.operator == "s"))
    if isinstance(lhs, (_ast.Slice, _ast.Part, _ast.Concat)):
        for part in ([lhs.value] if not isinstance(lhs, _ast.Concat) else lhs.parts):
            _name(part)                     # raises on an inner kind the audit does not know
        return shape_range(_ast.Shape(len(lhs), value_signed))
    raise AuditError(f"overflow audit: cannot audit an assignment to a target of kind {type(lhs).__name__}: "
                     f"{lhs!r}"[:200])


def _cases(sv, cond):
    """The (element, condition) of each case of a `SwitchValue` target (an `Array` element, `arr[i].eq(v)`):
    the element that the index selects, first match first, as a `Switch` decides."""
    earlier = None
    for patterns, elem in sv.cases:
        if patterns is None:
            here = ~earlier if earlier is not None else None
        else:
            match = sv.test.matches(*patterns) if patterns else Const(0)
            here = match if earlier is None else (match & ~earlier)
            earlier = match if earlier is None else (earlier | match)
        yield elem, _and(cond, here)


def _assigns(lhs, cond):
    """The plain targets of one assignment's left-hand side, each with the condition under which it is the
    one assigned: an array element expands into its elements (also inside a slice or a field of it)."""
    if isinstance(lhs, _ast.SwitchValue):
        for elem, here in _cases(lhs, cond):
            yield from _assigns(elem, here)
    elif isinstance(lhs, (_ast.Slice, _ast.Part)) and isinstance(lhs.value, _ast.SwitchValue):
        for elem, here in _cases(lhs.value, cond):
            part = (elem[lhs.start:lhs.stop] if isinstance(lhs, _ast.Slice)
                    else _ast.Part(elem, lhs.offset, lhs.width, lhs.stride))
            yield from _assigns(part, here)
    else:
        yield lhs, cond


def _walk(stmts, cond, domain, out: list):
    for st in stmts:
        if isinstance(st, _dsl._LateBoundStatement):
            st = st.resolve()               # `m.next = S`: the FSM's state register takes a constant
        if isinstance(st, _ast.Assign):
            cuts = []
            _cuts(st.rhs, cuts)
            where = _loc(getattr(st, "src_loc", None))
            for value, (lo, hi) in cuts:
                vlo, vhi = shape_range(value.shape())
                if vlo < lo or vhi > hi:
                    out.append(Narrowing(f"cut of {value!r}"[:80], value, lo, hi, cond, domain, where, st.src_loc))
            for lhs, here in _assigns(st.lhs, cond):
                lo, hi = target_range(lhs, st.rhs.shape().signed)     # raises on a kind it cannot reason about
                if not _has_arith(st.rhs):
                    continue
                vlo, vhi = shape_range(st.rhs.shape())
                if vlo < lo or vhi > hi:
                    out.append(Narrowing(_name(lhs), st.rhs, lo, hi, here, domain, where, st.src_loc))
        elif isinstance(st, _ast.Switch):
            earlier = None
            for patterns, body, _ in st.cases:
                if patterns is None:
                    here = ~earlier if earlier is not None else None
                else:
                    match = st.test.matches(*patterns) if patterns else Const(0)
                    here = match if earlier is None else (match & ~earlier)
                    earlier = match if earlier is None else (earlier | match)
                _walk(body, _and(cond, here), domain, out)
        elif not isinstance(st, (_ast.Property, _ast.Print)):
            raise AuditError(f"overflow audit: cannot audit a statement of kind {type(st).__name__}")


def narrowings(module) -> list[Narrowing]:
    """Every narrowing assignment and explicit cut of an elaborated `Module`, in source order."""
    out: list[Narrowing] = []
    module._flush()                         # close an If/Switch chain still open at the end of elaborate
    for domain, stmts in module._statements.items():
        _walk(stmts, None, domain, out)
    return out


def assert_no_overflow(module, skip: str | None = None) -> list[Narrowing]:
    """Add to `module` an assertion per narrowing that its full-precision value lies in the target's range
    whenever the assignment happens. `skip`: a regular expression of targets left out (their own proof
    covers them, e.g. the MAC accumulators). Returns the narrowings asserted."""
    found = [n for n in narrowings(module) if not (skip and re.fullmatch(skip, n.target))]
    for n in found:
        check = Assert((n.value >= n.lo) & (n.value <= n.hi))
        if n.src_loc:
            check.src_loc = n.src_loc       # a failure names the assignment, not this line
        if n.cond is None:
            module.d.comb += check
        else:
            with module.If(n.cond):
                module.d.comb += check
    return found
