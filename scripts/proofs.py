"""Every formal proof of one model, gathered: the datapath's (`accel.formal.model_proofs`), a classifier's
on-chip argmax (`accel.argmax_formal.argmax_proofs`, none for a forecaster), a detector's score and flag
(`accel.anomaly_formal.anomaly_proofs`) and the host link's with its PHYs, queues and streaming ring
(`boards.link_formal.link_proofs`).

The registry sits above both layers, so that neither knows the other: `accel` proves the datapath without
any board, `boards` proves the link with the runner and helpers of `accel` (`accel.sby`,
`accel.formal_helpers`). `intformer verify --formal`, `bench/formal_bench.py` and the fuzzer take their
proofs from `all_proofs`, and run each with `accel.sby.run_proof`.
"""
from __future__ import annotations

from intformer.accel.anomaly_formal import anomaly_proofs
from intformer.accel.argmax_formal import argmax_proofs
from intformer.accel.formal import model_proofs
from intformer.accel.sby import Proof
from intformer.boards import protocol as P
from intformer.boards.link_formal import link_proofs
from intformer.boards.top import ring_rows
from intformer.model.program import IntProgram

ICEBREAKER_HZ = 12e6                # the frame timeout's clock when none is given: the iCEBreaker's 12 MHz


def all_proofs(program: IntProgram, lanes: int = 8, full: bool = True,
               timeout_cycles: int | None = None) -> list[Proof]:
    """The datapath proofs and the host link's, for one program at P = `lanes`. `full` adds the bounded
    LayerNorm square root; `timeout_cycles` is the link's frame timeout (default: `FRAME_TIMEOUT_S` at
    12 MHz)."""
    info = P.DeviceInfo.from_program(program, lanes)
    t = timeout_cycles or round(P.FRAME_TIMEOUT_S * ICEBREAKER_HZ)
    return (model_proofs(program, lanes, full) + argmax_proofs(program) + anomaly_proofs(program)
            + link_proofs(info, t, rows=ring_rows(program)))
