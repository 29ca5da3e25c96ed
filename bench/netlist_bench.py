"""Netlist simulation figures (boards.netlist, Verilator): the mapped accelerator's cells, synthesis time,
Verilator compile time, simulated cycles per second and the time for the windows, each beside its bound;
the whole test split's time (measured with --windows all, else estimated from the windows run, and said so).

    python bench/netlist_bench.py [--board icebreaker] [--lanes 2] [--windows 64|all] [--run RUN] [--no-dsp]

Without --run: the small random program of tests/test_netlist.py; with it: the run's model and test split.
Before (the CXXRTL attempt on the same small program, from its note): ~81,000 cycles/s and ~14 min to build
(yosys read-back with the cell models ~4 min, g++ -O1 ~10 min)."""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

BOUND_SPLIT_SECONDS = 600          # "minutes, not hours": the whole test split within 10 minutes
BOUND_COMPILE_SECONDS = 300        # a compile that CI can afford for each family
BEFORE = {"cycles_per_second": 81_000, "build_seconds": 14 * 60}


def _small(args):
    from program_factory import random_inputs, random_program

    from intformer.boards import netlist
    rng = np.random.default_rng(1)
    program = random_program(rng, n=4, m=1, d=4, heads=1, ffn=4, horizon=2, bits=8, norm="batch")
    x = random_inputs(rng, program, int(args.windows))
    with tempfile.TemporaryDirectory() as tmp:
        net = netlist.synthesize(program, args.lanes, args.board, tmp, dsp=not args.no_dsp)
        r = netlist.verify(net, program, x)
    return net.seconds, r, None


def _run(args):
    from intformer.boards import netlist
    from intformer.verify_cmd import netlist_run
    t = time.perf_counter()
    r = netlist_run(args.run, args.board, args.lanes, "all" if args.windows in ("0", "all") else args.windows)
    total = time.perf_counter() - t
    return netlist.load(Path(r["netlist"]).parent).seconds, r, total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--board", default="icebreaker")
    ap.add_argument("--lanes", type=int, default=2)
    ap.add_argument("--windows", default="64", help="windows to run (with --run: all or 0, the whole split)")
    ap.add_argument("--run", default=None)
    ap.add_argument("--no-dsp", action="store_true", help="iCE40: map the multipliers to logic (a diagnosis)")
    args = ap.parse_args()
    from intformer.boards import netlist
    synth_s, r, total = (_run if args.run else _small)(args)
    print(netlist.describe(r))
    for what, found in (("undefined multiplier inputs", r["undefined_inputs"]), ("undriven net bits", r["undriven"])):
        print(f"{what}: {'; '.join(found) if found else 'none'}")
    print("cells:", ", ".join(f"{k} {v}" for k, v in sorted(r["cells"].items())),
          f"({sum(r['cells'].values()):,} in all)")
    print(f"synthesis {synth_s:.1f} s")
    print(f"compile {r['compile_seconds']:.1f} s (0: cached; bound {BOUND_COMPILE_SECONDS} s; "
          f"before: CXXRTL ~{BEFORE['build_seconds']} s)")
    cps = r.get("cycles_per_second", 0)
    print(f"simulate {r.get('simulate_seconds', 0):.2f} s for {r['windows']} windows, {r.get('cycles', 0):,} cycles: "
          f"{cps:,} cycles/s (before: CXXRTL ~{BEFORE['cycles_per_second']:,} cycles/s)")
    split = r.get("split_windows")
    if split and r.get("simulate_seconds"):
        whole = r["simulate_seconds"] * split / r["windows"]
        kind = "measured" if split == r["windows"] else f"estimated from {r['windows']} windows"
        print(f"whole test split: {split} windows, simulation {whole:.0f} s ({kind}; bound {BOUND_SPLIT_SECONDS} s)"
              + (f"; the command took {total:.0f} s in all" if total else ""))


if __name__ == "__main__":
    main()
