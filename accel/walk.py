"""The walker along a row of a chunked P-wide buffer layout (`accel.plan.BufferLayout`).

A row is cut into chunks of `chunk` columns, each starting on a word; within a chunk, P consecutive columns
share a word. The accelerator's address generators (input loader, issue sequencer, drain, output port) keep
a (word, lane, within) position and step it one column at a time instead of dividing: `walk` in hardware,
`walk_model` its golden model. `accel.formal.walk_harness` proves (walk.address) that the steps visit
exactly the layout's word and lane of every column.
"""
from __future__ import annotations

from amaranth.hdl import Mux

WALK_FAULTS = ("no_chunk_step",)


def walk(word, lane, within, chunk, lanes: int, fault: str | None = None):
    """Next (word, lane, within) along a row of a chunked P-wide layout: the next lane, or the next word at a
    word's last lane or a chunk's last column (`within` counts the columns of the chunk).

    `fault`: a deliberate design fault for the must-fail proof (`accel.formal.walk_harness`); None (every
    generator) is the real walk. "no_chunk_step": a chunk's last column does not move to the next word when
    it ends mid-word (chunk not a multiple of P), so the next chunk starts inside the previous one's word."""
    if fault not in (None, *WALK_FAULTS):
        raise ValueError(f"unknown walk fault {fault!r}")
    chunk_end = within == chunk - 1
    end = (lane == lanes - 1) if fault == "no_chunk_step" else (chunk_end | (lane == lanes - 1))
    return (Mux(end, word + 1, word), Mux(end, 0, lane + 1), Mux(chunk_end, 0, within + 1))


def walk_model(word: int, lane: int, within: int, chunk: int, lanes: int) -> tuple[int, int, int]:
    """Golden model of `walk`."""
    end = within == chunk - 1 or lane == lanes - 1
    return (word + 1 if end else word, 0 if end else lane + 1, 0 if within == chunk - 1 else within + 1)
