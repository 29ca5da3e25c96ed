"""Benchmark: the compiled (CXXRTL) simulation engine against Amaranth's simulator, and the whole ETTh1 test split.

On the default design (n = 24, d_model = 16, one layer, one head, FFN 64, 8 bits, P = 8 lanes), trained for
a couple of epochs on ETTh1 (the weights do not change the cycle count or the simulators' speed):

1. Amaranth's simulator: cycles per second over a few windows. The rate is the steady one: the time of
   1 + K windows less the time of 1 window (elaboration and simulator set-up excluded, in Amaranth's favour).
2. CXXRTL: cycles per second over many windows in ONE process (workers = 1), compilation excluded.
3. Their ratio (target: at least 1,000). Both rates are wall clock in the same run; the CPU-time rates are
   printed beside them, since the machine is shared.
4. `intformer sim RUN --engine cxxrtl --windows all` on the ETTh1 test split, timed end to end as a command:
   cold (an empty compile cache: yosys and g++ included) and warm (target: under 2 minutes cold). This one
   runs as the CLI does, with one process per core.

    python bench/sim_bench.py [--run RUN] [--data ../shared/data/ETTh1.csv] [--amaranth-windows 2]
                              [--cxxrtl-windows 1000] [--json]

Without --run it trains the model into build/sim_bench/etth1 (kept for the next run). Throwaway files go
under build/sim_bench/. A benchmark, not a test.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from intformer.accel import cxxsim  # noqa: E402
from intformer.accel.simulate import simulate  # noqa: E402
from intformer.model import runfolder  # noqa: E402
from intformer.model.data import make_windows  # noqa: E402
from intformer.model.intref import quantize_input, run_program  # noqa: E402

WORK = ROOT / "build" / "sim_bench"


def intformer(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    exe = shutil.which("intformer")
    cmd = [exe] if exe else [sys.executable, "-c", "from intformer.cli import main; main()"]
    return subprocess.run([*cmd, *args], cwd=ROOT, capture_output=True, text=True, env=env, check=False)


def ensure_run(run: str | None, data: Path) -> Path:
    if run:
        return Path(run)
    path = WORK / "etth1"
    if not (path / "model.intf").is_file():
        if not data.is_file():
            sys.exit(f"{data}: ETTh1 is not there (see ../shared/data/README.md); pass --data or --run")
        print(f"training the default model on ETTh1 into {path} ...", file=sys.stderr)
        res = intformer("train", "--data", str(data), "--format", "ett", "--out", str(path), "--epochs", "2",
                        "--force")
        if res.returncode:
            sys.exit(f"intformer train failed:\n{res.stdout[-2000:]}{res.stderr[-2000:]}")
    return path


def child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def amaranth_rate(program, codes, lanes: int, extra: int) -> dict:
    """Steady cycles/s of Amaranth's simulator: (1 + extra windows) less 1 window."""
    runs = {}
    for k in (1, 1 + extra):
        wall, cpu = time.perf_counter(), time.process_time()
        words, cycles = simulate(program, codes[:k], lanes, read_buffers=False)
        runs[k] = (time.perf_counter() - wall, time.process_time() - cpu, cycles)
        assert (words == run_program(program, codes[:k])).all(), "Amaranth's simulation differs from the reference"
    (w1, c1, cyc), (wk, ck, _) = runs[1], runs[1 + extra]
    return {"windows": extra, "cycles_per_window": cyc, "cycles_per_second": extra * cyc / (wk - w1),
            "cycles_per_cpu_second": extra * cyc / (ck - c1), "setup_and_one_window_seconds": w1,
            "cycles_per_second_with_setup": (1 + extra) * cyc / wk}


def cxxrtl_rate(program, codes, lanes: int, windows: int) -> dict:
    """Cycles/s of the compiled model in one process, the model already compiled."""
    cxxsim.build(program, lanes)
    x = codes[:windows]
    wall, cpu = time.perf_counter(), child_cpu()
    words, cycles = cxxsim.simulate_cxxrtl(program, x, lanes, workers=1)
    wall, cpu = time.perf_counter() - wall, child_cpu() - cpu
    assert (words == run_program(program, x)).all(), "the compiled simulation differs from the reference"
    return {"windows": len(x), "cycles_per_window": cycles, "seconds": wall,
            "cycles_per_second": len(x) * cycles / wall, "cycles_per_cpu_second": len(x) * cycles / cpu}


def whole_split(run: Path, lanes: int, cache: Path) -> dict:
    """`intformer sim RUN --engine cxxrtl --windows all`, cold (empty cache) then warm."""
    shutil.rmtree(cache, ignore_errors=True)
    env = dict(os.environ, INTFORMER_CXXRTL_CACHE=str(cache))
    out = {}
    for label in ("cold", "warm"):
        start = time.perf_counter()
        res = intformer("sim", str(run), "--engine", "cxxrtl", "--windows", "all", "--lanes", str(lanes), "--json",
                        env=env)
        seconds = time.perf_counter() - start
        if res.returncode:
            sys.exit(f"intformer sim failed ({label}):\n{res.stdout[-2000:]}{res.stderr[-2000:]}")
        r = json.loads(res.stdout)
        out[label] = {"command_seconds": seconds, "compile_seconds": r["compile_seconds"],
                      "simulation_seconds": r["seconds"], "windows": r["windows"], "words": r["words"],
                      "mismatches": r["mismatches"], "cycles_per_inference": r["cycles_per_inference"],
                      "sim_cycles_per_second": r["sim_cycles_per_second"]}
    out["workers"] = cxxsim.default_workers(out["cold"]["windows"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", help="a trained run folder of the default model (default: train one on ETTh1)")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "ETTh1.csv")
    ap.add_argument("--lanes", type=int, default=8)
    ap.add_argument("--amaranth-windows", type=int, default=2, help="windows timed in Amaranth (after one)")
    ap.add_argument("--cxxrtl-windows", type=int, default=1000, help="windows timed in the compiled model")
    ap.add_argument("--skip-split", action="store_true", help="only the rates, not the whole-split command")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if not cxxsim.available():
        sys.exit("g++ is not installed: the compiled engine cannot run")
    run_path = ensure_run(a.run, a.data)
    run = runfolder.open_run(run_path)
    cfg = run.config
    test = make_windows(run.series(), run.scaler, cfg.window, cfg.horizon, "test")
    codes = quantize_input(run.program, test.x)
    result = {"run": str(run_path), "lanes": a.lanes, "macs_per_inference": run.program.macs(),
              "load_average_before": os.getloadavg()}
    print(f"default design from {run_path}: {run.program.macs():,} MACs per inference, P = {a.lanes}",
          file=sys.stderr)
    print("Amaranth's simulator ...", file=sys.stderr)
    result["amaranth"] = amaranth_rate(run.program, codes, a.lanes, a.amaranth_windows)
    print("compiled (CXXRTL), one process ...", file=sys.stderr)
    result["cxxrtl"] = cxxrtl_rate(run.program, codes, a.lanes, a.cxxrtl_windows)
    am, cx = result["amaranth"], result["cxxrtl"]
    result["ratio"] = cx["cycles_per_second"] / am["cycles_per_second"]
    result["ratio_cpu"] = cx["cycles_per_cpu_second"] / am["cycles_per_cpu_second"]
    if not a.skip_split:
        print("intformer sim --engine cxxrtl --windows all, cold and warm ...", file=sys.stderr)
        result["whole_split"] = whole_split(run_path, a.lanes, WORK / "cxxrtl-cold")
    result["load_average_after"] = os.getloadavg()
    if a.json:
        print(json.dumps(result, indent=2))
        return
    print(f"cycles per inference {cx['cycles_per_window']:,}; load average {result['load_average_before'][0]:.1f} "
          f"before, {result['load_average_after'][0]:.1f} after (2 cores, shared)")
    print(f"Amaranth simulator   {am['cycles_per_second']:>12,.0f} cycles/s  ({am['cycles_per_cpu_second']:,.0f} per CPU s;"
          f" {am['windows']} windows after the first; {am['cycles_per_second_with_setup']:,.0f} with set-up)")
    print(f"CXXRTL, one process  {cx['cycles_per_second']:>12,.0f} cycles/s  ({cx['cycles_per_cpu_second']:,.0f} per CPU s;"
          f" {cx['windows']} windows in {cx['seconds']:.2f} s)")
    print(f"ratio                {result['ratio']:>12,.0f} x        ({result['ratio_cpu']:,.0f} x in CPU time; target 1,000 x)")
    if "whole_split" in result:
        ws = result["whole_split"]
        for label in ("cold", "warm"):
            r = ws[label]
            verdict = "bit-exact" if r["mismatches"] == 0 else f"{r['mismatches']} MISMATCHES"
            print(f"whole split, {label} cache: {r['command_seconds']:6.1f} s for the command (compile "
                  f"{r['compile_seconds']:.1f} s, simulation {r['simulation_seconds']:.1f} s, {ws['workers']} "
                  f"processes); {r['windows']:,} windows, {r['words']:,} words: {verdict}")
        print("target: the whole split in under 120 s, compilation included")


if __name__ == "__main__":
    main()
