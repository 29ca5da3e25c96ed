"""The element interface of the row units, and the walker that steps along a buffer row.

A buffer is stored in P-wide words, a word holding P consecutive codes of one row (`accel.plan`): element
(r, c) of a plain row-major buffer lies at word base + r * words_per_row + c // P, lane c % P. The row
units (softmax, LayerNorm) walk rows in order, so they keep a (word, lane) pair and step it instead of
dividing. The accelerator points the interface at any buffer by its word base and words per row.
"""
from __future__ import annotations

from amaranth.hdl import Mux, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out


def read_signature(addr_width: int, lanes: int, data_width: int) -> wiring.Signature:
    """Element read: `en`, `addr` (word), `lane` out; `data` in, valid one cycle after `en` (a sync read)."""
    return wiring.Signature({
        "en": Out(1), "addr": Out(unsigned(addr_width)), "lane": Out(range(max(lanes, 2))),
        "data": In(signed(data_width)),
    })


def write_signature(addr_width: int, lanes: int, data_width: int) -> wiring.Signature:
    """Element write: `en`, `addr` (word), `lane`, `data`, all in the same cycle."""
    return wiring.Signature({
        "en": Out(1), "addr": Out(unsigned(addr_width)), "lane": Out(range(max(lanes, 2))),
        "data": Out(signed(data_width)),
    })


def lookup_signature(addr_width: int, data_shape) -> wiring.Signature:
    """A constant table (ROM) read: `addr` out, `data` in one cycle later."""
    return wiring.Signature({"addr": Out(unsigned(addr_width)), "data": In(data_shape)})


def step_lane(word, lane, lanes: int):
    """The (word, lane) of the next element of a row-major P-wide row: lane + 1, or the next word."""
    wrap = lane == lanes - 1
    return Mux(wrap, word + 1, word), Mux(wrap, 0, lane + 1)
