"""Cycles per inference against the bit width: pair steps (two k per multiplier block, `accel.packed`) at 4 bits
and below, beside the bound each configuration has.

    python bench/bitwidth_cycles.py [--bits 8 6 4 3] [--d 16 32] [--lanes 4 16] [--windows 2] [--random]

For each model width d (n = 24, one layer, one head, FFN 4 d) and bit width, a model trained for one quick
epoch on the embedded data (`--random`: random weights of the same shape, tests/program_factory.py), runs
`--windows` windows through the compiled simulator (`accel.cxxsim`) at each P, every output word checked
against `model.intref.run_program`. Printed: the linear steps that pair, the cycles, the bound
max(sum over steps of MACs / products per cycle, outputs / 1 drain lane), where a step's products per cycle
are 2 P when it pairs and P otherwise, the ratio of the cycles to it, and the cycles against those of the
widest bit width at the same P (the issue's target: 4 bits <= 0.55 x 8 bits). A benchmark, not a test.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests")]      # program_factory (the package itself is installed)

from intformer.accel.plan import make_plan  # noqa: E402
from intformer.accel.simulate import simulate  # noqa: E402
from intformer.model.intref import run_program  # noqa: E402
from intformer.model.program import LinearStep  # noqa: E402


def trained_program(bits: int, d: int):
    """The default configuration at this width and bit width, one quick epoch on the embedded data."""
    from intformer.model.config import ModelConfig, TrainConfig
    from intformer.model.data import load_series
    from intformer.model.train import train_models
    config = ModelConfig(bits=bits, d_model=d, ffn=4 * d)
    return train_models(load_series(), config, TrainConfig(epochs=1, max_train_windows=500),
                        progress=False).program


def random_default(bits: int, d: int):
    from program_factory import random_program
    return random_program(np.random.default_rng(0), bits=bits, d=d, ffn=4 * d)


def bound(program, plan) -> float:
    """max(sum of MACs / products per cycle, outputs / one drain lane) over the linear steps."""
    P = plan.lanes
    paired = plan.pairs.steps if plan.pairs else frozenset()
    linear = [s for s in program.steps if isinstance(s, LinearStep)]
    products = sum(s.rows * s.cols * s.k_len / (2 * P if s.name in paired else P) for s in linear)
    outputs = sum(s.rows * s.cols for s in linear)
    return max(products, outputs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bits", type=int, nargs="+", default=[8, 6, 4, 3])
    ap.add_argument("--d", type=int, nargs="+", default=[16, 32])
    ap.add_argument("--lanes", type=int, nargs="+", default=[4, 16])
    ap.add_argument("--windows", type=int, default=2)
    ap.add_argument("--random", action="store_true", help="random weights (no training)")
    a = ap.parse_args()
    from program_factory import random_inputs
    print(f"{'d':>3}{'bits':>5}{'P':>4}{'MACs':>9}{'paired MACs':>13}{'cycles':>9}{'bound':>9}{'x bound':>9}"
          f"{'x widest':>10}{'sim s':>7}")
    for d in a.d:
        for P in a.lanes:
            widest = None
            for bits in sorted(a.bits, reverse=True):
                program = random_default(bits, d) if a.random else trained_program(bits, d)
                plan = make_plan(program, P)
                x = random_inputs(np.random.default_rng(bits), program, a.windows)
                t = time.perf_counter()
                result = simulate(program, x, P, engine="cxxrtl")
                seconds = time.perf_counter() - t
                if not (result.words == run_program(program, x)).all():
                    raise SystemExit(f"d {d}, {bits} bits, P {P}: the output words differ from the reference")
                paired = plan.pairs.steps if plan.pairs else frozenset()
                linear = [s for s in program.steps if isinstance(s, LinearStep)]
                macs = sum(s.rows * s.cols * s.k_len for s in linear)
                pmacs = sum(s.rows * s.cols * s.k_len for s in linear if s.name in paired)
                b = bound(program, plan)
                widest = widest or result.cycles
                print(f"{d:>3}{bits:>5}{P:>4}{macs:>9,}{pmacs:>13,}{result.cycles:>9,}{b:>9,.0f}"
                      f"{result.cycles / b:>9.3f}{result.cycles / widest:>10.3f}{seconds:>7.1f}")


if __name__ == "__main__":
    main()
