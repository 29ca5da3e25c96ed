"""The headline table in one command: the reference system's ETTh1 configurations, ours beside theirs.

    python bench/headline.py [--epochs 30] [--up5k-clock 24] [--configs 24,16,8 24,16,6 ...] [--no-build]
                             [--out build/headline] [--fresh]

For each (n, d, bits) configuration of the reference system's ETTh1 runs (../shared/docs/field-notes.md):
train it here on ETTh1 (univariate OT, n = 24, one step ahead: their setting), then

* test MSE (scaled) of our float, fake-quant and integer paths, and persistence;
* iCE40 UP5K (iCEBreaker, serial-link top): a real build with the YoWASP flow at the largest lane count the
  resource estimate allows, at --up5k-clock through the PLL (default 24 MHz, our Fmax target; the reference
  ran its UP5K design at 16 MHz): logic cells, DSP, block RAM, Fmax, cycles, latency, and the energy ESTIMATE of boards/power.py;
* Spartan-7 XC7S15 (the reference's device): yosys' resource counts at the largest lane count that fits,
  cycles from simulation, latency at 100 MHz (the reference's clock; no timing here without Vivado, so the
  clock is ASSUMED, not met), and the energy estimate;
* the reference's figures on the same data: their fake-quant and integer-path MSE and their cycles (GHDL),
  so latency at 100 MHz = cycles / 100 us; ratios ours / theirs.

Their published AirU figures (latency, energy) are on other data and other shapes; the table prints them
below for context, without ratios. Trained runs are kept in OUT/runs (reused unless --fresh).
A benchmark, not a test: about 5 to 10 minutes per configuration on two cores.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

DATA = ROOT.parent / "shared" / "data" / "ETTh1.csv"

# the reference system on ETTh1 as run here (field notes): fake-quant MSE, integer-path MSE, GHDL cycles
REFERENCE = {
    (24, 16, 8): {"fakequant_mse": 0.00562, "integer_mse": 0.1707, "cycles": 126_700},
    (24, 16, 6): {"fakequant_mse": 0.00782, "integer_mse": 0.2913, "cycles": 121_800},
    (24, 16, 4): {"fakequant_mse": 0.02329, "integer_mse": 0.2083, "cycles": 121_000},
    (24, 32, 8): {"fakequant_mse": 0.00478, "integer_mse": 0.2326, "cycles": 354_700},
    (24, 32, 4): {"fakequant_mse": 0.02741, "integer_mse": 0.3245, "cycles": 353_660},
}
REFERENCE_CLOCK_MHZ = 100.0
PUBLISHED_AIRU = [("(6, 64, 8)", "2.82 ms", "0.212 mJ"), ("(12, 64, 6)", "4.61 ms", "0.364 mJ"),
                  ("(12, 32, 4)", "1.33 ms", "0.084 mJ")]


def train(cfg: tuple[int, int, int], epochs: int, folder: Path, fresh: bool) -> Path:
    from intformer.train_cmd import train_run

    n, d, bits = cfg
    run = folder / f"n{n}-d{d}-b{bits}"
    if (run / "run.json").exists() and not fresh and json.loads((run / "run.json").read_text())["status"] == "complete":
        return run
    spec = {"path": str(DATA), "fmt": "ett", "target": "OT", "features": None, "multivariate": False,
            "fill": None, "sensor": None, "split_time": None}
    kw = {"window": n, "horizon": 1, "d_model": d, "heads": 1, "layers": 1, "ffn": 4 * d, "bits": bits,
          "bits_override": (), "norm": "batch", "activation": "relu", "softmax": "lut", "pooling": "mean",
          "tokens": "time", "io_bits": 8, "skip": True, "epochs": epochs, "batch_size": 256, "lr": 1e-3,
          "patience": 6, "weight_decay": 0.0, "seed": 0, "float_baseline": True, "max_train_windows": None}
    from intformer.options import model_options           # the CLI's defaults for anything added since
    defaults = {p.name: p.default for p in model_options(lambda **k: None).__click_params__}
    kw = {**{k: v for k, v in defaults.items() if k not in kw}, **kw}
    train_run(spec, kw, run, force=True, progress=True)
    return run


def xc7s15(program) -> dict:
    from intformer.accel.accelerator import Accelerator
    from intformer.accel.resources import largest_lanes
    from intformer.boards import power
    from intformer.boards.build import cycles_per_inference
    from intformer.boards.synth import synthesize

    lanes = largest_lanes(program, "xc7s15")
    if not lanes:
        return {"error": "does not fit the XC7S15 at any lane count (estimate)"}
    res = synthesize(Accelerator(program, lanes), "xc7s15")
    cycles, _ = cycles_per_inference(program, lanes)
    used = {k: res.total(k) for k in res.available}
    energy = power.energy_uj("xc7s15", used, REFERENCE_CLOCK_MHZ, cycles)
    return {"lanes": lanes, "fits": res.fits(), "resources": {k: {"used": used[k], "available": v}
                                                               for k, v in res.available.items()},
            "cycles": cycles, "latency_us": cycles / REFERENCE_CLOCK_MHZ, "energy_uj": energy["energy_uj"]}


def up5k(run: Path, clock: float, out: Path) -> dict:
    from intformer.accel.resources import largest_lanes
    from intformer.model import runfolder
    from intformer.model.errors import IntformerError
    from intformer.build_cmd import build_run

    lanes = largest_lanes(runfolder.open_run(run).program, "ice40-up5k")
    if not lanes:
        return {"error": "does not fit the UP5K at any lane count (estimate)"}
    try:
        r = build_run(run, "icebreaker", lanes, clock, out / f"{run.name}-up5k", True,
                      progress=lambda m: print(f"    {m}", file=sys.stderr))
    except IntformerError as exc:
        return {"lanes": lanes, "error": str(exc)}
    return {"lanes": lanes, "fmax_mhz": r["fmax_mhz"], "timing_met": r["timing_met"], "clock_mhz": r["clock_mhz"],
            "resources": r["resources"], "cycles": r["cycles_per_inference"], "latency_us": r["latency_us"],
            "energy_uj": r["energy_uj_estimate"]}


def markdown(rows: list[dict], up5k_clock: float) -> str:
    def f(x, spec=",.1f"):
        return "n/a" if x is None else format(x, spec)

    lines = ["| (n, d, bits) | persistence MSE | our float MSE | our integer MSE | their integer (fake-quant) MSE | "
             "their/our integer MSE | their cycles | our cycles XC7S15 (P) | their/our cycles | latency us @100 MHz "
             "(theirs / ours) | XC7S15 LUT / DSP / BRAM | energy uJ XC7S15 (est.) | UP5K P | UP5K LC / DSP / BRAM | "
             f"UP5K Fmax MHz | UP5K latency us @{up5k_clock:g} MHz | UP5K energy uJ (est.) |",
             "|" + "---|" * 17]
    for r in rows:
        ref, x, u = r["reference"], r["xc7s15"], r["up5k"]
        ours = r["mse"]
        xc = "error" not in x
        uu = "error" not in u
        ratio_cycles = ref["cycles"] / x["cycles"] if xc else None
        lines.append("| " + " | ".join([
            str(r["config"]), f"{ours['persistence']:.5f}", f"{ours.get('float', float('nan')):.5f}",
            f"{ours['integer']:.5f}", f"{ref['integer_mse']:.4f} ({ref['fakequant_mse']:.5f})", f"{ref['integer_mse'] / ours['integer']:.1f}x",
            f"{ref['cycles']:,}", f"{x['cycles']:,} ({x['lanes']})" if xc else x["error"],
            f"{ratio_cycles:.1f}x" if xc else "",
            f"{ref['cycles'] / REFERENCE_CLOCK_MHZ:,.0f} / {x['latency_us']:,.0f}" if xc else "",
            (f"{x['resources']['LUT']['used']:,} / {x['resources']['DSP']['used']} / {x['resources']['BRAM']['used']}"
             if xc else ""),
            f(x.get("energy_uj"), ".3g") if xc else "",
            str(u.get("lanes", "")),
            (f"{u['resources']['LC']['used']:,} / {u['resources']['DSP']['used']} / {u['resources']['BRAM']['used']}"
             if uu else u["error"][:80]),
            f(u.get("fmax_mhz")) if uu else "", f(u.get("latency_us")) if uu else "",
            f(u.get("energy_uj"), ".3g") if uu else ""]) + " |")
    lines += ["", "The reference's published figures (AirU data, XC7S15 at 100 MHz; other data and shapes, so no "
                  "ratios): " + "; ".join(f"{c}: {lat}, {e}" for c, lat, e in PUBLISHED_AIRU) + ".",
              "XC7S15 latency is at an ASSUMED 100 MHz (no Vivado here: no timing); energy figures are ESTIMATES "
              "from boards/power.py, not measurements."]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--up5k-clock", type=float, default=24.0)
    ap.add_argument("--configs", nargs="+", default=[",".join(map(str, c)) for c in REFERENCE])
    ap.add_argument("--no-build", action="store_true", help="skip the UP5K place and route")
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "headline")
    ap.add_argument("--fresh", action="store_true", help="retrain the runs kept in OUT/runs")
    a = ap.parse_args()
    if not DATA.is_file():
        raise SystemExit(f"ETTh1 not found at {DATA}: this benchmark needs ../shared/data beside the repository")
    import torch
    torch.set_num_threads(1)
    from intformer.eval_cmd import evaluate_run

    rows = []
    for item in a.configs:
        cfg = tuple(int(v) for v in item.split(","))
        if cfg not in REFERENCE:
            raise SystemExit(f"{cfg}: not one of the reference configurations {list(REFERENCE)}")
        start = time.perf_counter()
        print(f"== {cfg}: training", file=sys.stderr)
        run = train(cfg, a.epochs, a.out / "runs", a.fresh)
        ev = evaluate_run(run, None, None)
        mse = {k: v["mse"] for k, v in ev["test"].items()}
        mse["persistence"] = ev["baselines"]["persistence"]["mse"]
        from intformer.model import runfolder
        program = runfolder.open_run(run).program
        print(f"== {cfg}: XC7S15 synthesis (yosys)", file=sys.stderr)
        x = xc7s15(program)
        u = {"error": "not built (--no-build)"}
        if not a.no_build:
            print(f"== {cfg}: UP5K build", file=sys.stderr)
            u = up5k(run, a.up5k_clock, a.out)
        rows.append({"config": cfg, "mse": mse, "reference": REFERENCE[cfg], "xc7s15": x, "up5k": u,
                     "seconds": time.perf_counter() - start})
        print(markdown(rows[-1:], a.up5k_clock), file=sys.stderr)
    text = markdown(rows, a.up5k_clock)
    print(text)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "headline.md").write_text(text + "\n")
    (a.out / "headline.json").write_text(json.dumps(rows, indent=2, default=str))


if __name__ == "__main__":
    main()
