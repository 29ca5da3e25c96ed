"""The largest model that fits each device, by the pre-synthesis estimate, confirmed by yosys.

    python bench/largest_fit.py [--devices ice40-up5k xc7s15] [--bits 8 6 4] [--windows 12 24 48 96]
                                [--d-models 8 16 24 32 48 64] [--no-synth]

For each device and bit width: every (n, d) of the grid (one layer, one head, FFN 4d, BatchNorm, LUT
softmax: the reference system's family of shapes) is exported untrained (a model of that shape calibrated
on one batch: the resources depend on shapes and bit widths, not on trained values) and checked with
`accel.resources.check_fit` at the largest lane count that fits. The configurations are ranked by MACs per
inference; the largest the estimate accepts is synthesized with yosys (`boards.synth`, out of context:
the accelerator alone, no serial link), and if yosys counts more than the device has, fewer lanes and then
the next configuration down are tried. Prints the largest fitting configuration per device and bit width, with its P, cycles (simulated)
and yosys' counts. A benchmark, not a test.
"""
from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def program_for(series, n: int, d: int, bits: int):
    import torch

    from intformer.model.config import ModelConfig
    from intformer.model.data import Scaler, make_windows
    from intformer.model.export import to_program
    from intformer.model.qat import QATForecaster
    from intformer.model.train import bind_data

    cfg = bind_data(ModelConfig(window=n, d_model=d, ffn=4 * d, bits=bits), series)
    w = make_windows(series, Scaler.fit(series), n, 1, "train")
    torch.manual_seed(0)
    model = QATForecaster(cfg).train()
    with torch.no_grad():
        model(torch.as_tensor(w.x[:256]))
    return to_program(copy.deepcopy(model).double())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", nargs="+", default=["ice40-up5k", "xc7s15"])
    ap.add_argument("--bits", type=int, nargs="+", default=[8, 6, 4])
    ap.add_argument("--windows", type=int, nargs="+", default=[12, 24, 48, 96])
    ap.add_argument("--d-models", type=int, nargs="+", default=[8, 16, 24, 32, 48, 64])
    ap.add_argument("--no-synth", action="store_true", help="the estimate only")
    a = ap.parse_args()
    import torch
    torch.set_num_threads(1)
    from intformer.accel.accelerator import Accelerator
    from intformer.accel.resources import largest_lanes
    from intformer.boards.build import cycles_per_inference
    from intformer.boards.synth import synthesize
    from intformer.model.data import load_series

    series = load_series(None)
    print(f"{'device':<11}{'bits':>5}  {'largest (n, d)':<15}{'MACs':>10}{'P':>4}{'cycles':>9}  yosys "
          f"(used / available)")
    for device in a.devices:
        for bits in a.bits:
            fitting = []
            for n in a.windows:
                for d in a.d_models:
                    program = program_for(series, n, d, bits)
                    p = largest_lanes(program, device)
                    if p:
                        fitting.append((program.macs(), n, d, p, program))
            fitting.sort(key=lambda t: t[0], reverse=True)
            shown = False
            for macs, n, d, p, program in fitting:
                counts = "(estimate only)"
                while not a.no_synth and p:
                    res = synthesize(Accelerator(program, p), device)
                    if res.fits():
                        counts = ", ".join(f"{k} {res.total(k):,}/{v:,}" for k, v in res.available.items())
                        break
                    print(f"{device:<11}{bits:>5}  ({n}, {d}) P={p}: yosys says it does not fit "
                          f"({', '.join(res.short())}); trying fewer lanes", file=sys.stderr)
                    p //= 2
                if not p:
                    continue
                cycles, _ = cycles_per_inference(program, p)
                print(f"{device:<11}{bits:>5}  ({n}, {d}){'':<{15 - len(f'({n}, {d})')}}{macs:>10,}{p:>4}"
                      f"{cycles:>9,}  {counts}", flush=True)
                shown = True
                break
            if not shown:
                print(f"{device:<11}{bits:>5}  nothing in the grid fits", flush=True)


if __name__ == "__main__":
    main()
