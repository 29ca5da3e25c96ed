"""Benchmark: test MSE of the float and the 8-, 6- and 4-bit integer models on ETTh1, and training time.

Settings (n = 24, d = 16, one layer, one head, FFN 64): univariate one step ahead; multivariate (all seven
columns in, OT out) one step ahead; univariate and multivariate 24 steps ahead. Targets: 8-bit integer MSE
within 3 % of float, 4-bit within 15 %; for H = 24 and the multivariate setting, below persistence.

The defaults: level removal (--level), dropout 0.3 in training, and the head's change from the last value shrunk
on validation (--shrink); --no-level --dropout 0 --no-shrink gives the model before these options.

    python bench/train_bench.py [--epochs 30] [--settings "univariate H=24"] [--data ../shared/data/ETTh1.csv] [--json]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from intformer.model.config import ModelConfig, TrainConfig
from intformer.model.data import load_series, make_windows
from intformer.model.evaluate import baselines, errors, integer_forecast
from intformer.model.train import predict, train_models

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {"univariate H=1": dict(horizon=1, multivariate=False),
            "multivariate H=1": dict(horizon=1, multivariate=True),
            "univariate H=24": dict(horizon=24, multivariate=False),
            "multivariate H=24": dict(horizon=24, multivariate=True)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "ETTh1.csv"))
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--bits", default="8,6,4")
    ap.add_argument("--settings", default=",".join(SETTINGS))
    ap.add_argument("--level", action=argparse.BooleanOptionalAction, default=True,
                    help="level removal (intformer train --level)")
    ap.add_argument("--dropout", type=float, default=ModelConfig.dropout,
                    help="training dropout (intformer train --dropout)")
    ap.add_argument("--shrink", action=argparse.BooleanOptionalAction, default=TrainConfig.shrink,
                    help="shrink the head's change toward persistence on validation (intformer train --shrink)")
    ap.add_argument("--io-bits", type=int, default=ModelConfig.io_bits,
                    help="bit width of the input codes (intformer train --io-bits)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lr", type=float, default=TrainConfig.lr)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if not Path(args.data).exists():
        print(f"ETTh1 not found at {args.data}: pass --data", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    results = {}
    for name in args.settings.split(","):
        s = SETTINGS[name]
        series = load_series(args.data, multivariate=s["multivariate"])
        tcfg = TrainConfig(epochs=args.epochs, patience=8, seed=args.seed, lr=args.lr, shrink=args.shrink)
        row, float_model = {}, None
        for bits in (int(b) for b in args.bits.split(",")):
            mcfg = ModelConfig(window=24, horizon=s["horizon"], d_model=16, heads=1, layers=1, ffn=64, bits=bits,
                                io_bits=args.io_bits, level=args.level, dropout=args.dropout)
            start = time.perf_counter()
            trained = train_models(series, mcfg, tcfg, progress=False, float_model=float_model)
            test = make_windows(series, trained.scaler, 24, s["horizon"], "test")
            if float_model is None:
                float_model = trained.float_model
                row["float"] = {"mse": errors(predict(float_model, test.x), test.y, trained.scaler)["mse"],
                                "train_s": trained.seconds["float"], "shrink": trained.shrink.get("float")}
                row["persistence"] = baselines(series, trained.scaler, 24, s["horizon"], None)["persistence"]["mse"]
            _, pred = integer_forecast(trained.program, test.x)
            row[f"int{bits}"] = {"mse": errors(pred, test.y, trained.scaler)["mse"],
                                 "train_s": trained.seconds["qat"], "wall_s": time.perf_counter() - start,
                                 "shrink": trained.shrink.get("qat")}
        results[name] = row
        if not args.json:
            f = row["float"]["mse"]
            alpha = lambda v: f"  shrink {v['shrink']:.2f}" if v.get("shrink") is not None else ""
            print(f"{name}: persistence {row['persistence']:.5f}  float {f:.5f} ({row['float']['train_s']:.0f} s)"
                  f"{alpha(row['float'])}")
            for k, v in row.items():
                if k.startswith("int"):
                    print(f"    {k:<5} MSE {v['mse']:.5f}  ({(v['mse'] / f - 1) * 100:+.1f} % vs float, "
                          f"{(v['mse'] / row['persistence'] - 1) * 100:+.1f} % vs persistence)  QAT {v['train_s']:.0f} s"
                      f"{alpha(v)}")
            sys.stdout.flush()
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
