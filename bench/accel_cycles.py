"""Cycles per inference of the accelerator against the MAC bound (MACs / P), in the Amaranth simulator.

    python bench/accel_cycles.py [--lanes 1 2 4 8 16] [--bits 8] [--norm batch] ...

Builds the default-sized random program (tests/program_factory.py: n = 24, m = 1, d = 16, one layer, one
head, FFN 64, BatchNorm, ReLU, LUT softmax, mean pooling), runs one window per lane count, checks the
output against the integer reference, and prints cycles / (MACs / P). A benchmark, not a test.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests")]      # program_factory (the package itself is installed)

from intformer.accel.simulate import simulate  # noqa: E402
from intformer.model.intref import run_program  # noqa: E402
from program_factory import random_inputs, random_program  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lanes", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--m", type=int, default=1)
    ap.add_argument("--d", type=int, default=16)
    ap.add_argument("--heads", type=int, default=1)
    ap.add_argument("--ffn", type=int, default=64)
    ap.add_argument("--horizon", type=int, default=1)
    ap.add_argument("--bits", type=int, default=8)
    ap.add_argument("--norm", default="batch")
    ap.add_argument("--activation", default="relu")
    ap.add_argument("--softmax", default="lut")
    ap.add_argument("--pooling", default="mean")
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip", action="store_true", help="the exporter's last-value skip head (16-bit output)")
    ap.add_argument("--profile", action="store_true", help="cycles per step for each lane count")
    ap.add_argument("--engine", default="amaranth", choices=["amaranth", "cxxrtl"])
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    program = random_program(rng, n=a.n, m=a.m, d=a.d, heads=a.heads, ffn=a.ffn, horizon=a.horizon, bits=a.bits,
                             norm=a.norm, activation=a.activation, softmax=a.softmax, pooling=a.pooling,
                             layers=a.layers, skip=a.skip)
    x = random_inputs(rng, program, 1)
    expected = run_program(program, x)
    macs = program.macs()
    print(f"MACs per inference: {macs:,}")
    print(f"{'P':>3} {'cycles':>9} {'MACs/P':>9} {'ratio':>6} {'exact':>6} {'sim s':>6}")
    for lanes in a.lanes:
        t = time.perf_counter()
        profile = {} if a.profile else None
        words, cycles = simulate(program, x, lanes, read_buffers=False, profile=profile, engine=a.engine)
        sec = time.perf_counter() - t
        exact = bool((words == expected).all())
        print(f"{lanes:>3} {cycles:>9,} {macs / lanes:>9,.0f} {cycles / (macs / lanes):>6.3f} {str(exact):>6} "
              f"{sec:>6.1f}", flush=True)
        if profile:
            print("     " + ", ".join(f"{name} {c}" for name, c in profile.items()))


if __name__ == "__main__":
    main()
