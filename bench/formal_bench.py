"""Formal proof times: every proof of `intformer verify --formal` for the default configuration (8 bits, n = 24,
d_model 16, one layer and head, FFN 64, P = 8) and its 4-bit twin, on random programs of that shape."""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from accel import formal  # noqa: E402
from program_factory import random_program  # noqa: E402


def main():
    total = 0.0
    for bits in (8, 4):
        program = random_program(np.random.default_rng(0), bits=bits)
        with tempfile.TemporaryDirectory(dir=".") as work:
            for proof in formal.all_proofs(program, 8, full=True):
                r = formal.run_proof(proof, Path(work), timeout=600)
                total += r.seconds
                print(f"{bits}-bit  {r.name:30s} {r.status:7s} {r.mode:5s} depth {r.depth:3d} {r.seconds:7.1f} s",
                      flush=True)
    print(f"total {total:.1f} s")


if __name__ == "__main__":
    main()
