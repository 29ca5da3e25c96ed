"""Cycles per inference against the bit width: pair steps (two k per multiplier block, `accel.packed`) at 4 bits
and below, beside the bound each configuration has.

    python bench/bitwidth_cycles.py [--bits 8 6 4 3] [--d 16 32] [--lanes 4 16] [--windows 2] [--random]
                                    [--mixed 4]

For each model width d (n = 24, one layer, one head, FFN 4 d) and bit width, a model trained for one quick
epoch on the embedded data (`--random`: random weights of the same shape, tests/program_factory.py), runs
`--windows` windows through the compiled simulator (`accel.cxxsim`) at each P, every output word checked
against `model.intref.run_program`. Printed: the linear steps that pair, the cycles, the bound
max(sum over steps of MACs / products per cycle, outputs / 1 drain lane), where a step's products per cycle
are 2 P when it pairs and P otherwise, the ratio of the cycles to it, and the cycles against those of the
widest bit width at the same P (the issue's target: 4 bits <= 0.55 x 8 bits). `--mixed 4`: also the widest bit
width with attention's and the feed-forward block's operands at 4 bits (bits "8/4"; mixed precision as the
sweep searches it, `sweep_tasks.part_bits_overrides`). A benchmark, not a test.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests")]      # program_factory (the package itself is installed)

from intformer.accel.resources import design_plan  # noqa: E402
from intformer.accel.simulate import simulate  # noqa: E402
from intformer.model.intref import run_program  # noqa: E402
from intformer.model.program import LinearStep  # noqa: E402


def trained_program(bits: int, d: int, overrides: dict | None = None):
    """The default configuration at this width and bit width (and bit-width overrides), one quick epoch on the
    embedded data."""
    from intformer.model.config import ModelConfig, TrainConfig
    from intformer.model.data import load_series
    from intformer.model.train import train_models
    config = ModelConfig(bits=bits, d_model=d, ffn=4 * d, bits_overrides=dict(overrides or {}))
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
    ap.add_argument("--mixed", type=int, nargs="*", default=[],
                    help="also the widest bit width with attention and the feed-forward block at these bits "
                         "(mixed precision, the sweep's attn_bits and ffn_bits; trained models only)")
    a = ap.parse_args()
    if a.random and a.mixed:
        ap.error("--mixed needs trained models (the random programs have one bit width): drop --random")
    from program_factory import random_inputs

    from intformer.sweep_tasks import part_bits_overrides
    top = max(a.bits)
    configs = [(str(b), b, {}) for b in sorted(a.bits, reverse=True)]
    configs += [(f"{top}/{m}", top, part_bits_overrides({"bits": top, "layers": 1, "attn_bits": m, "ffn_bits": m}))
                for m in a.mixed]
    print(f"{'d':>3}{'bits':>6}{'P':>4}{'MACs':>9}{'paired MACs':>13}{'cycles':>9}{'bound':>9}{'x bound':>9}"
          f"{'x widest':>10}{'sim s':>7}")
    for d in a.d:
        for P in a.lanes:
            widest = None
            for label, bits, overrides in configs:
                program = random_default(bits, d) if a.random else trained_program(bits, d, overrides)
                plan = design_plan(program, P)
                x = random_inputs(np.random.default_rng(bits), program, a.windows)
                t = time.perf_counter()
                result = simulate(program, x, P, engine="cxxrtl")
                seconds = time.perf_counter() - t
                if not (result.words == run_program(program, x)).all():
                    raise SystemExit(f"d {d}, {label} bits, P {P}: the output words differ from the reference")
                paired = plan.pairs.steps if plan.pairs else frozenset()
                linear = [s for s in program.steps if isinstance(s, LinearStep)]
                macs = sum(s.rows * s.cols * s.k_len for s in linear)
                pmacs = sum(s.rows * s.cols * s.k_len for s in linear if s.name in paired)
                b = bound(program, plan)
                widest = widest or result.cycles
                print(f"{d:>3}{label:>6}{P:>4}{macs:>9,}{pmacs:>13,}{result.cycles:>9,}{b:>9,.0f}"
                      f"{result.cycles / b:>9.3f}{result.cycles / widest:>10.3f}{seconds:>7.1f}")


if __name__ == "__main__":
    main()
