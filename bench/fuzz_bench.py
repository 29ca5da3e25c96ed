"""Fuzz the chain for a while and count what was checked (see `intformer.fuzz`).

    python bench/fuzz_bench.py --minutes 5 --seed 0 [--engine auto|cxxrtl|amaranth] [--json]

Each round: one random configuration trained for a few steps, exported, reloaded and run on the integer
reference and the accelerator simulation (every word of every window: the data's test windows and the
extreme codes of the input width), its quick formal proofs (`--no-proofs` leaves them out), then a batch
of export-file corruptions of that model and of link-frame corruptions. It prints the configurations, windows and words compared, the corruptions tried and refused,
and the time taken; any mismatch or corruption that was not refused is printed with its seed and exits 1.
"""
from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from intformer import fuzz  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--engine", choices=["auto", "cxxrtl", "amaranth"], default="auto")
    ap.add_argument("--data-windows", type=int, default=32, help="test windows of the data per configuration")
    ap.add_argument("--export-corruptions", type=int, default=200, help="per configuration")
    ap.add_argument("--frame-corruptions", type=int, default=2000, help="per configuration")
    ap.add_argument("--no-proofs", action="store_true", help="leave out the formal proofs of each configuration")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)

    deadline = time.perf_counter() + args.minutes * 60
    start = time.perf_counter()
    counts = collections.Counter()
    seconds = collections.Counter()
    export_outcomes, frame_kinds = collections.Counter(), collections.Counter()
    failures = []
    options = collections.defaultdict(collections.Counter)
    round_ = 0
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        while time.perf_counter() < deadline:
            seed = args.seed * 1_000_003 + round_
            round_ += 1
            rng = np.random.default_rng(seed)
            cfg = fuzz.random_config(rng)
            try:
                r = fuzz.check_config(cfg, seed, engine=args.engine, data_windows=args.data_windows, tmp_dir=tmp)
            except fuzz.FuzzMismatch as exc:
                failures.append(str(exc))
                counts["mismatching_configs"] += 1
                print(f"MISMATCH {exc}", file=sys.stderr)
                continue
            counts["configs"] += 1
            counts["windows"] += r.windows
            counts["words"] += r.words
            counts["fakequant_windows"] += r.fakequant_windows
            seconds.update(r.seconds)
            for k in ("bits", "norm", "activation", "softmax", "pooling", "tokens", "skip", "heads", "layers"):
                options[k][str(r.config[k])] += 1

            # the quick formal proofs of this configuration's hardware
            if not args.no_proofs:
                t = time.perf_counter()
                proven, failed = fuzz.prove_config(r, tmp / f"formal{round_}")
                counts["proofs"] += proven + len(failed)
                counts["proofs_failed"] += len(failed)
                failures += failed
                seconds["formal"] += time.perf_counter() - t

            # corruptions of this model's export file
            t = time.perf_counter()
            program, raw = r.program, r.export
            for _ in range(args.export_corruptions):
                kind, bad = fuzz.corrupt_export(raw, rng)
                try:
                    export_outcomes[fuzz.check_export_corruption(raw, program, kind, bad, tmp)] += 1
                except AssertionError as exc:
                    failures.append(f"export corruption (config seed {seed}): {exc}")
                    export_outcomes["NOT REFUSED"] += 1
            seconds["export_corruption"] += time.perf_counter() - t

            # corruptions of link frames
            t = time.perf_counter()
            for _ in range(args.frame_corruptions):
                original, good = fuzz.random_frame(rng), fuzz.random_frame(rng)
                kind, bad = fuzz.corrupt_frame(original, rng)
                split = int(rng.integers(0, len(bad) + len(good) + 1))
                try:
                    fuzz.check_link_corruption(bad, good, kind, split, original)
                    frame_kinds[kind] += 1
                except fuzz.CrcAccident:
                    frame_kinds["crc_accident"] += 1
                except AssertionError as exc:
                    failures.append(f"frame corruption (seed {seed}): {exc}")
                    frame_kinds["NOT REJECTED"] += 1
            seconds["frame_corruption"] += time.perf_counter() - t
            if not args.json:
                print(f"[{time.perf_counter() - start:6.0f} s] config {counts['configs']}: {fuzz.describe(cfg)}; "
                      f"{r.windows} windows on {r.engine}", file=sys.stderr)

    total = time.perf_counter() - start
    result = {"seed": args.seed, "minutes": args.minutes, "seconds": round(total, 1),
              "configs": counts["configs"], "mismatching_configs": counts["mismatching_configs"],
              "windows": counts["windows"], "words": counts["words"],
              "fakequant_windows": counts["fakequant_windows"],
              "proofs": counts["proofs"], "proofs_failed": counts["proofs_failed"],
              "export_corruptions": sum(export_outcomes.values()), "export_outcomes": dict(export_outcomes),
              "frame_corruptions": sum(frame_kinds.values()), "frame_kinds": dict(frame_kinds),
              "stage_seconds": {k: round(v, 1) for k, v in seconds.items()},
              "options_seen": {k: dict(v) for k, v in options.items()}, "failures": failures[:20]}
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True))
    else:
        print(f"{result['configs']} random configurations, {result['windows']} windows ({result['words']} words) "
              f"compared word for word with the hardware simulation; {result['fakequant_windows']} windows "
              f"fake-quant vs integer; {result['mismatching_configs']} mismatching")
        print(f"{result['proofs']} formal proofs of these configurations, {result['proofs_failed']} not passed")
        print(f"{result['export_corruptions']} export-file corruptions: {result['export_outcomes']}")
        accidents = result["frame_kinds"].get("crc_accident", 0)
        print(f"{result['frame_corruptions']} link-frame corruptions: rejected and the next frame accepted, but "
              f"{accidents} CRC-16 accidents (corrupted bytes holding a frame with a matching CRC, about 1 in "
              f"65,536 candidate frames)")
        print(f"{total:.0f} s; stages: {result['stage_seconds']}")
        print(f"options seen: {result['options_seen']}")
        for f in failures[:20]:
            print(f"FAILURE: {f}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
