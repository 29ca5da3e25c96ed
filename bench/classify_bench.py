"""Classification figures: test accuracy and macro F1 of the float, fake-quant and integer paths at 8 and 4
bits, beside the majority class and MiniRocket trained on the same training part, on UEA/UCR sets that aeon
ships in its wheel (offline), each against the issue's targets.

    python bench/classify_bench.py [--sets BasicMotions,JapaneseVowels,...] [--bits 8,4] [--out FILE.json]

Targets (issue 13): int8 within 1 point of float; BasicMotions >= 0.95; elsewhere within 5 points of
MiniRocket. One run each (seed 0), the default classification options (`intformer train --task classify`);
JapaneseVowels has unequal lengths and is padded (--unequal pad). About 3 minutes a set and width on two
cores.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import intformer
from intformer.model.tsdata import embedded_folder

UNEQUAL = {"JapaneseVowels": "pad"}


def one(name: str, bits: int, folder: Path) -> dict:
    data = None if name == "BasicMotions" else {"path": str(embedded_folder() / name / f"{name}_TRAIN.ts"),
                                                "unequal": UNEQUAL.get(name)}
    start = time.perf_counter()
    run = intformer.train(data, model={"task": "classify", "bits": bits}, out=folder / f"{name}-{bits}")
    ev = run.evaluate()
    return {"set": name, "bits": bits, "seconds": time.perf_counter() - start,
            **{k: ev["test"][k]["accuracy"] for k in ev["test"]},
            **{f"{k}_f1": ev["test"][k]["f1_macro"] for k in ev["test"]},
            "majority": ev["baselines"]["majority"]["accuracy"], "minirocket": ev["baselines"]["minirocket"]["accuracy"],
            "class_agreement": ev["agreement"]["class_fraction"], "score_agreement": ev["agreement"]["exact_fraction"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sets", default="BasicMotions,JapaneseVowels,ItalyPowerDemand")
    ap.add_argument("--bits", default="8,4")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.sets.split(","):
            for bits in (int(b) for b in a.bits.split(",")):
                r = one(name, bits, Path(tmp))
                rows.append(r)
                target = 0.95 if name == "BasicMotions" else r["minirocket"] - 0.05
                print(f"{name:<18} int{bits}: float {r.get('float', float('nan')):.3f}  fake-quant {r['fakequant']:.3f}  "
                      f"integer {r['integer']:.3f} (F1 {r['integer_f1']:.3f})  | majority {r['majority']:.3f}  "
                      f"MiniRocket {r['minirocket']:.3f}  | target >= {target:.3f}: "
                      f"{'met' if r['integer'] >= target else 'NOT met'}; integer - float "
                      f"{r['integer'] - r.get('float', r['integer']):+.3f} (bound -0.010)  "
                      f"classes equal {r['class_agreement']:.3f}  {r['seconds']:.0f} s", flush=True)
    if a.out:
        a.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
