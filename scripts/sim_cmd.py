"""`intformer sim`: test windows through the accelerator in simulation, every output word compared."""
from __future__ import annotations

import sys
import time

import click

from intformer.model import runfolder
from intformer.model.errors import IntformerError
from intformer.model.intref import quantize_input, run_program

from .options import check_task, task_option
from .output import emit
from .report import sim_windows


def simulate_run(run_path, windows: str, lanes: int, engine: str = "amaranth", task: str | None = None) -> dict:
    from intformer.accel.simulate import compare, simulate

    run = runfolder.open_run(run_path)
    run.require_task(check_task(task), "sim")
    test_x = run.test_inputs("test")         # a forecaster's test windows, or a classifier's test series
    count = len(test_x) if windows == "all" else int(windows)
    if count < 1:
        raise IntformerError(f"--windows must be a positive number or 'all', got {windows}")
    codes = quantize_input(run.program, test_x[:count])
    expected = run_program(run.program, codes)
    compile_seconds = 0.0
    if engine == "cxxrtl":              # compile (or find in the cache) before the clock starts
        from intformer.accel import cxxsim
        start = time.perf_counter()
        cxxsim.build(run.program, lanes)
        compile_seconds = time.perf_counter() - start
    start = time.perf_counter()
    simulated = simulate(run.program, codes, lanes, read_buffers=False, engine=engine)
    seconds = time.perf_counter() - start
    cycles = simulated.cycles
    verdict = compare(run.program, codes, simulated, expected)   # names the first differing window, word, step
    mismatches = verdict["mismatches"]
    result = {"engine": engine, "windows": len(codes), "split_windows": len(test_x), "task": run.task, "words": int(expected.size),
              "mismatches": mismatches,
              "cycles_per_inference": int(cycles), "macs_per_inference": run.program.macs(), "lanes": lanes,
              "mac_bound_ratio": cycles / (run.program.macs() / lanes),
              "sim_cycles_per_second": cycles * len(codes) / seconds, "seconds": seconds,
              "compile_seconds": compile_seconds}
    result.update(verdict)
    return result


def print_sim(r: dict) -> None:
    verdict = "bit-exact" if r["mismatches"] == 0 else f"{r['mismatches']} MISMATCHES"
    click.echo(f"{sim_windows(r)}, {r['words']} words compared: {verdict}")
    click.echo(f"cycles/inference {r['cycles_per_inference']:,} = {r['mac_bound_ratio']:.3f} x MACs/P "
               f"({r['macs_per_inference']:,} MACs, P = {r['lanes']})")
    compiled = f", compiled in {r['compile_seconds']:.1f} s" if r.get("compile_seconds") else ""
    click.echo(f"simulator ({r['engine']}): {r['sim_cycles_per_second']:,.0f} cycles/s, {r['seconds']:.1f} s{compiled}")
    if r["mismatches"]:
        click.echo(f"first mismatch: {r['first_mismatch']}")


@click.command()
@click.argument("run", type=click.Path())
@click.option("--windows", default="4", show_default=True, help="Test windows to run, or 'all'.")
@click.option("--lanes", type=click.IntRange(min=1), default=8, show_default=True, help="MAC lanes P.")
@click.option("--engine", type=click.Choice(["amaranth", "cxxrtl"]), default="amaranth", show_default=True,
              help="amaranth: Amaranth's simulator (the reference); cxxrtl: the design compiled with yosys "
                   "write_cxxrtl and g++, over a thousand times faster.")
@task_option
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def sim(run, windows, lanes, engine, task, as_json):
    """Simulate the accelerator on test windows and compare every output word (a classifier's scores and its
    class) with the integer reference."""
    result = simulate_run(run, windows, lanes, engine, task)
    emit(result, as_json, print_sim)
    if result["mismatches"]:
        sys.exit(1)
