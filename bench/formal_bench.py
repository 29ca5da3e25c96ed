"""Formal proof times: every proof of `intformer verify --formal` for the default configuration (8 bits, n = 24,
d_model 16, one layer and head, FFN 64, P = 8), its 4-bit twin, an 8-bit LayerNorm model with the polynomial
softmax, and an 8-bit model with 10-bit input codes (2 bytes per code on the link), on random programs of
those shapes. `--quick` runs the quick proofs (`intformer verify --formal --quick`: without the 8-bit Booth
products, minutes each, and the LayerNorm square root)."""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from intformer.accel.sby import run_proof  # noqa: E402
from intformer.proofs import all_proofs  # noqa: E402
from program_factory import random_program  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the quick proofs only (verify --formal --quick)")
    full = not parser.parse_args().quick
    total, count, passed = 0.0, 0, 0
    configs = {"8-bit": dict(bits=8), "4-bit": dict(bits=4), "8b-LN": dict(bits=8, norm="layer", softmax="poly"),
               "8b-io10": dict(bits=8, input_bits=10)}
    for label, kw in configs.items():
        program = random_program(np.random.default_rng(0), **kw)
        with tempfile.TemporaryDirectory(dir=".") as work:
            for proof in all_proofs(program, 8, full=full):
                r = run_proof(proof, Path(work), timeout=600)
                total += r.seconds
                count += 1
                passed += r.status == "pass"
                print(f"{label:8s} {r.name:30s} {r.status:7s} {r.mode:5s} depth {r.depth:3d} {r.seconds:7.1f} s",
                      flush=True)
    print(f"{'full' if full else 'quick'}: {count} proofs, {passed} pass, total {total:.1f} s")


if __name__ == "__main__":
    main()
