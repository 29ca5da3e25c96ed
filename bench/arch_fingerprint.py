"""Fingerprint of the accelerator's behaviour: cycles, simulated output words and yosys resource counts.

    python bench/arch_fingerprint.py [--out FILE] [--windows N] [--no-synth] [--compare BEFORE.json]

The architecture issue reshapes the code with its behaviour unchanged; this prints (and writes as JSON) what
"unchanged" means, so that a run before the change and a run after it can be compared figure for figure:

* for the default model's shape (n = 24, d = 16, one layer, one head, FFN 64, last-value skip head) at 8, 6
  and 4 bits and the headline's (24, 32) at 8 and 4 bits, random weights from tests/program_factory.py
  (seed 0, so both runs see the same programs), plus a LayerNorm / GELU / polynomial-softmax model and a
  10-bit-input model, which exercise the row units and the level steps;
* the cycles per inference and a SHA-256 of every output word of N windows (compiled engine), at the lane
  counts the headline builds (XC7S15: P = 16, or 8 for (24, 32, 8); UP5K: P = 4, or 1 for (24, 32, 4));
* yosys resource counts (`boards.synth`) for the UP5K and the XC7S15 at those lane counts, with the MAC
  lanes multiplied in logic that each device needs.

`--compare` reads an earlier run's JSON and prints each figure before and after, and exits 1 if any differs.
A benchmark, not a test: it takes about ten minutes on two cores.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests")]

try:                                    # the installed package (after the architecture issue)
    from intformer.accel.accelerator import Accelerator
    from intformer.accel.resources import lanes_in_logic
    from intformer.accel.cxxsim import simulate_cxxrtl
    from intformer.boards.synth import synthesize
    from intformer.model.intref import run_program
except ImportError:                     # the checkout before it
    sys.path[:0] = [str(ROOT)]
    from accel.accelerator import Accelerator  # type: ignore[no-redef]
    from accel.resources import lanes_in_logic  # type: ignore[no-redef]
    from accel.cxxsim import simulate_cxxrtl  # type: ignore[no-redef]
    from boards.synth import synthesize  # type: ignore[no-redef]
    from model.intref import run_program  # type: ignore[no-redef]
from program_factory import random_inputs, random_program  # noqa: E402

# name: (random_program keyword arguments, lanes on the XC7S15, lanes on the UP5K)
CONFIGS = {
    "default-8": (dict(d=16, bits=8, skip=True), 16, 4),
    "default-6": (dict(d=16, bits=6, skip=True), 16, 4),
    "default-4": (dict(d=16, bits=4, skip=True), 16, 4),
    "d32-8": (dict(d=32, ffn=128, bits=8, skip=True), 8, 1),
    "d32-4": (dict(d=32, ffn=128, bits=4, skip=True), 16, 1),
    "layernorm-gelu-poly": (dict(d=16, bits=8, norm="layer", activation="gelu", softmax="poly"), 4, 1),
    "io10-level": (dict(d=16, bits=8, skip=True, input_bits=10), 16, 4),
}
DEVICES = {"xc7s15": 1, "ice40-up5k": 2}          # index of the lane count in CONFIGS


def behaviour(name: str, windows: int) -> dict:
    kwargs, *lanes = CONFIGS[name]
    program = random_program(np.random.default_rng(0), **kwargs)
    x = random_inputs(np.random.default_rng(1), program, windows)
    expected = run_program(program, x)
    out = {}
    for p in sorted(set(lanes)):
        words, cycles = simulate_cxxrtl(program, x, p, workers=1)
        out[f"P{p}"] = {"cycles": int(cycles), "words_sha256": hashlib.sha256(words.astype(np.int64).tobytes()).hexdigest(),
                        "exact": bool(np.array_equal(words, expected))}
    return out


def resources(name: str, device: str) -> dict:
    kwargs, *lanes = CONFIGS[name]
    p = lanes[DEVICES[device] - 1]
    program = random_program(np.random.default_rng(0), **kwargs)
    ll = lanes_in_logic(program, p, device)
    res = synthesize(Accelerator(program, p, logic_lanes=ll), device)
    return {"P": p, "logic_lanes": ll, "used": dict(sorted(res.used.items())), "cells": dict(sorted(res.cells.items()))}


def compare(before: dict, after: dict) -> int:
    differ = 0
    for name in after["behaviour"]:
        for key, a in after["behaviour"][name].items():
            b = before["behaviour"].get(name, {}).get(key)
            same = b == a
            differ += not same
            print(f"{name:22} {key:4} cycles {b and b['cycles']!s:>8} -> {a['cycles']:>8}  words "
                  f"{'equal' if b and b['words_sha256'] == a['words_sha256'] else 'DIFFER'}  exact {a['exact']}")
    for key, a in after.get("resources", {}).items():
        b = before.get("resources", {}).get(key)
        same = b is not None and b["used"] == a["used"]
        differ += not same
        print(f"{key:34} {'equal' if same else 'DIFFER'}  before {b and b['used']}  after {a['used']}")
    print("all equal" if not differ else f"{differ} figures differ")
    return 1 if differ else 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="build/arch_fingerprint.json")
    ap.add_argument("--windows", type=int, default=64)
    ap.add_argument("--no-synth", action="store_true")
    ap.add_argument("--compare", help="an earlier run's JSON")
    ap.add_argument("--jobs", type=int, default=2)
    a = ap.parse_args()
    result: dict = {"behaviour": {}, "resources": {}}
    for name in CONFIGS:
        result["behaviour"][name] = behaviour(name, a.windows)
        print(name, result["behaviour"][name], flush=True)
    if not a.no_synth:
        jobs = [(n, d) for n in CONFIGS for d in DEVICES]
        with ThreadPoolExecutor(a.jobs) as pool:
            for (n, d), res in zip(jobs, pool.map(lambda job: resources(*job), jobs)):
                result["resources"][f"{n}@{d}"] = res
                print(f"{n}@{d}", res["P"], res["used"], flush=True)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=1))
    if a.compare:
        sys.exit(compare(json.loads(Path(a.compare).read_text()), result))


if __name__ == "__main__":
    main()
