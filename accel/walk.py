"""The walker along a row of a chunked P-wide buffer layout (`accel.plan.BufferLayout`).

A row is cut into chunks of `chunk` columns, each starting on a word; within a chunk, P consecutive columns
share a word. The accelerator's address generators (input loader, issue sequencer, drain, output port) keep
a (word, lane, within) position and step it one column at a time instead of dividing: `walk` in hardware,
`walk_model` its golden model.
"""
from __future__ import annotations

from amaranth.hdl import Mux


def walk(word, lane, within, chunk, lanes: int):
    """Next (word, lane, within) along a row of a chunked P-wide layout: the next lane, or the next word at a
    word's last lane or a chunk's last column (`within` counts the columns of the chunk)."""
    end = (within == chunk - 1) | (lane == lanes - 1)
    return (Mux(end, word + 1, word), Mux(end, 0, lane + 1), Mux(within == chunk - 1, 0, within + 1))


def walk_model(word: int, lane: int, within: int, chunk: int, lanes: int) -> tuple[int, int, int]:
    """Golden model of `walk`."""
    end = within == chunk - 1 or lane == lanes - 1
    return (word + 1 if end else word, 0 if end else lane + 1, 0 if within == chunk - 1 else within + 1)
