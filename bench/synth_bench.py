"""Yosys resource counts of the accelerator for the default model on the iCE40 UP5K and the Spartan-7 XC7S15.

    python bench/synth_bench.py [--bits 8 6 4] [--lanes 1 2 4 8 16] [--devices ice40-up5k xc7s15]
                                [--random] [--all] [--jobs 2]

For each device and bit width it builds the default model configuration (n = 24, m = 1, d = 16, one layer,
one head, FFN 64, BatchNorm, ReLU, LUT softmax, last-value skip head; trained for one epoch on ETTh1, or
`--random`: the same shape from tests/program_factory.py without training), and for each lane count P:
the estimate (`accel.resources`) first; a build the estimate says cannot fit is skipped with the reason
(`--all` synthesizes it anyway); otherwise `Accelerator(program, P, logic_lanes)` goes through yosys
(`boards.synth`), with as many MAC lanes multiplied in logic as the device's DSP blocks need
(`accel.resources.lanes_in_logic`). Prints LUT, FF, DSP and block RAM used / available (XC7S15: LUTRAM too,
LUT sites used as distributed RAM, which the LUT budget pays for), and the largest P that fits each device.
Trained programs are cached in build/synth_bench/ (`--fresh` retrains). A benchmark, not a test.
"""
from __future__ import annotations

import argparse
import pickle
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests")]      # program_factory (the package itself is installed)

from intformer.accel.accelerator import Accelerator  # noqa: E402
from intformer.accel.resources import design_plan  # noqa: E402
from intformer.accel.resources import DEVICES as EST_DEVICES, estimate, lanes_in_logic  # noqa: E402
from intformer.boards.synth import synthesize  # noqa: E402
from intformer.model.errors import IntformerError  # noqa: E402

CACHE = ROOT / "build" / "synth_bench"
DATA = Path("/work/shared/data/ETTh1.csv")


def default_program(bits: int, random: bool, fresh: bool):
    if random:
        import numpy as np
        from program_factory import random_program
        return random_program(np.random.default_rng(0), bits=bits, skip=True)
    path = CACHE / f"default-b{bits}.pkl"
    if path.is_file() and not fresh:
        return pickle.loads(path.read_bytes())
    from intformer.model.config import ModelConfig, TrainConfig
    from intformer.model.data import load_series
    from intformer.model.train import train_models
    series = load_series(str(DATA))
    program = train_models(series, ModelConfig(bits=bits), TrainConfig(epochs=1, max_train_windows=500),
                           progress=False).program
    CACHE.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(program))
    return program


def plan_row(program, device: str, lanes: int, synth_all: bool):
    """(logic_lanes, estimate needs, skip reason or None)."""
    dev = EST_DEVICES[device]
    try:
        plan = design_plan(program, lanes)
    except IntformerError as e:
        return 0, None, str(e)
    ll = lanes_in_logic(program, lanes, device, plan)
    need = estimate(program, lanes, plan, ll).needs(dev)
    limits = {"LUT": dev.luts, "DSP": dev.dsps, "RAM": dev.ram_blocks}
    short = [f"{k} needs ~{need[k]:g} of {limits[k]}" for k in limits if need[k] > limits[k]]
    return ll, need, ("estimate: " + ", ".join(short)) if short and not synth_all else None


def cell(res, k: str, width: int) -> str:
    return f"{res.used.get(k, 0):,}/{res.available[k]:,}".rjust(width)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bits", type=int, nargs="+", default=[8, 6, 4])
    ap.add_argument("--lanes", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    ap.add_argument("--devices", nargs="+", default=["ice40-up5k", "xc7s15"])
    ap.add_argument("--random", action="store_true", help="random weights in the default shape (no training)")
    ap.add_argument("--all", action="store_true", help="synthesize even what the estimate says cannot fit")
    ap.add_argument("--fresh", action="store_true", help="retrain the cached programs")
    ap.add_argument("--jobs", type=int, default=2, help="syntheses at once")
    a = ap.parse_args()

    programs = {b: default_program(b, a.random, a.fresh) for b in a.bits}
    jobs = []                                    # (device, bits, lanes, logic_lanes, need, skip)
    for device in a.devices:
        for b in a.bits:
            for p in a.lanes:
                ll, need, skip = plan_row(programs[b], device, p, a.all)
                jobs.append((device, b, p, ll, need, skip))

    def run(job):
        device, b, p, ll, _, skip = job
        if skip:
            return None
        t = time.perf_counter()
        res = synthesize(Accelerator(programs[b], p, logic_lanes=ll), device)
        return res, time.perf_counter() - t

    best: dict[tuple[str, int], int] = {}
    shown = None
    with ThreadPoolExecutor(max(1, a.jobs)) as pool:
        for job, out in zip(jobs, pool.map(run, jobs)):       # in order, as they finish
            device, b, p, ll, need, skip = job
            lutram = device == "xc7s15"
            if device != shown:
                shown = device
                print(f"\n{device}")
                print(f"{'bits':>4} {'P':>3} {'logic':>5}  {'LUT':>11} {'FF':>11} {'DSP':>7} {'BRAM':>7}"
                      + (f" {'LUTRAM':>9}" if lutram else "") + f"  {'fits':>4}  {'est LUT/DSP/BRAM':>17}  {'s':>4}")
            est = f"{need['LUT']:>6,}/{need['DSP']:>2}/{need['RAM']:>4g}" if need else ""
            if out is None:
                print(f"{b:>4} {p:>3} {ll:>5}  skipped: {skip}", flush=True)
                continue
            res, sec = out
            print(f"{b:>4} {p:>3} {ll:>5}  {cell(res, 'LUT', 11)} {cell(res, 'FF', 11)} {cell(res, 'DSP', 7)} "
                  f"{cell(res, 'BRAM', 7)}" + (f" {cell(res, 'LUTRAM', 9)}" if lutram else "")
                  + f"  {'yes' if res.fits() else 'NO':>4}  {est:>17}  {sec:>4.0f}", flush=True)
            if res.fits():
                best[(device, b)] = max(best.get((device, b), 0), p)
    print("\nlargest P that fits, of those tried (yosys counts; 'logic': MAC lanes multiplied in logic):")
    for device in a.devices:
        print(f"  {device}: " + ", ".join(f"{b} bits: P = {best.get((device, b), 'none')}" for b in a.bits))


if __name__ == "__main__":
    main()
