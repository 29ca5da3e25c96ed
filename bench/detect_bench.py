"""Anomaly-detection figures: point-wise F1, FAR and MAR (SKAB's leaderboard rule) of the float, fake-quant
and integer detectors at 8 and 4 bits beside the null detector and the classical baselines fitted on the same
rows in the same run; and for each data set the default detector's cycles per inference against its MAC
bound, and (with --build) its iCEBreaker (UP5K) build: logic cells, DSP, EBR, Fmax, latency, energy estimate.

    python bench/detect_bench.py [--skab ../shared/data/skab] [--bits 8,4] [--decays 4,0] [--ucr] [--build]
                                 [--out FILE.json]

Data: SKAB valve1 with SKAB's protocol (each experiment's first 400 rows train, one model on all 16 training
parts, the rest test: 11,760 test rows, 6,309 anomalous), from the shared data folder; with --ucr also the
UCR anomaly series that aeon ships (KDD-TSAD 135, the embedded default of `intformer run --task detect`).
Target (issue 13): F1 >= 0.78 on SKAB (the best of its public leaderboard over all 34 experiments: Conv-AE
0.78, T-squared+Q 0.76, LSTM-AE 0.74, Vanilla LSTM 0.54, isolation forest 0.29). One run each (seed 0), the
default detection options (`intformer train --task detect`) at each score decay of --decays (4, the default:
the score an integer EWMA over consecutive rows; 0: each row alone, as before it), the baselines beside it
with the same smoothing ("_ewma"). About 1 minute a width on two cores, plus 4
minutes for a build.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import intformer

SKAB = Path(__file__).resolve().parents[2] / "shared" / "data" / "skab"
TARGET_F1 = 0.78


def one(name: str, data: dict | None, bits: int, decay: int, folder: Path, build: bool) -> dict:
    start = time.perf_counter()
    run = intformer.train(data, model={"task": "detect", "bits": bits, "score_decay": decay},
                          out=folder / f"{name}-{bits}-d{decay}")
    ev = run.evaluate()
    row = {"set": name, "bits": bits, "decay": decay, "seconds": time.perf_counter() - start,
           "protocol": ev["protocol"],
           "threshold": ev["threshold"], "test": ev["test"], "baselines": ev["baselines"],
           "flag_agreement": ev["agreement"]["flag_fraction"], "macs": run.program.macs()}
    sim = run.simulate(windows=4, lanes=4, engine="cxxrtl")
    row.update(cycles=sim["cycles_per_inference"], mac_bound_ratio=sim["mac_bound_ratio"],
               sim_mismatches=sim["mismatches"])
    if build:
        b = run.build("icebreaker", lanes=4, out=folder / f"{name}-{bits}-d{decay}-build")
        row["build"] = {k: b.get(k) for k in ("lanes", "clock_mhz", "fmax_mhz", "cycles_per_inference",
                                              "latency_us", "energy_uj_estimate", "resources")}
    return row


def show(r: dict) -> None:
    def line(name, m):
        return f"    {name:<22} F1 {m['f1']:.2f}  FAR {m['far'] * 100:6.2f} %  MAR {m['mar'] * 100:6.2f} %"
    print(f"{r['set']} int{r['bits']} score decay {r['decay']} ({r['protocol']}); threshold score > "
          f"{r['threshold']:,}; {r['seconds']:.0f} s")
    for k, m in list(r["test"].items()) + list(r["baselines"].items()):
        print(line(k, m))
    f1 = r["test"]["integer"]["f1"]
    print(f"    integer F1 {f1:.2f} against the target {TARGET_F1}: {'met' if f1 >= TARGET_F1 else 'NOT met'}; "
          f"integer - float {f1 - r['test'].get('float', r['test']['integer'])['f1']:+.2f}; flags equal "
          f"(fake-quant vs integer) {r['flag_agreement']:.3f}")
    print(f"    P = 4: {r['cycles']:,} cycles per inference, {r['mac_bound_ratio']:.3f} x the MAC bound "
          f"({r['macs']:,} MACs / 4), {r['sim_mismatches']} mismatches (compiled engine, 4 test windows)")
    if "build" in r:
        b, res = r["build"], r["build"]["resources"]
        used = ", ".join(f"{k} {v['used']:,}/{v['available']:,}" for k, v in res.items())
        print(f"    iCEBreaker P = {b['lanes']}: {used}; Fmax {b['fmax_mhz']:.1f} MHz at {b['clock_mhz']:g} MHz; "
              f"{b['latency_us']:,.0f} us; {b['energy_uj_estimate']:.3g} uJ (estimate)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--skab", type=Path, default=SKAB)
    ap.add_argument("--bits", default="8,4")
    ap.add_argument("--decays", default="4,0", help="score decays (EWMA shifts) to train each width at")
    ap.add_argument("--ucr", action="store_true", help="also the UCR series aeon ships")
    ap.add_argument("--build", action="store_true", help="also build each 8-bit model for the iCEBreaker")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    sets = []
    if a.skab.is_dir():
        sets.append(("skab-valve1", {"path": str(a.skab)}))
    else:
        print(f"SKAB data not found at {a.skab}: skipped")
    if a.ucr:
        sets.append(("ucr-135", None))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in sets:
            decays = [int(d) for d in a.decays.split(",")]
            for bits in (int(b) for b in a.bits.split(",")):
                for decay in decays:
                    rows.append(one(name, data, bits, decay, Path(tmp), a.build and bits == 8 and decay == decays[0]))
                    show(rows[-1])
    if a.out:
        a.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
