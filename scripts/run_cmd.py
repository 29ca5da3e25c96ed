"""`intformer run`: the main job. Data -> QAT training (and the float baseline) -> export -> integer
evaluation -> bit-exact simulation of test windows on the accelerator -> build for the board -> a report
folder (Markdown, HTML, PNG figures) and a short summary."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from intformer.model.errors import IntformerError

from .output import emit
from .options import baud_option, clock_hz, clock_option, classify_data_options, classify_spec, data_options, data_spec, model_options
from .report import summary_lines, write_report

STAGES = 5


def _stage(quiet: bool, k: int, text: str) -> None:
    if not quiet:
        click.echo(f"[{k}/{STAGES}] {text}", err=True)


def print_run(r: dict) -> None:
    click.echo("")
    click.echo("summary")
    for line in summary_lines(r):
        click.echo(f"  {line}")
    click.echo(f"  report: {r['report']['markdown']} and {Path(r['report']['html']).name}")
    click.echo(f"  total {r['seconds']:.0f} s")


@click.command()
@data_options
@classify_data_options
@model_options
@click.option("--board", "board_name", default="icebreaker", show_default=True,
              help="Board to build for (see `intformer build --help`).")
@click.option("--lanes", type=click.IntRange(min=1), default=None,
              help="MAC lanes P (default: the largest of 16, 8, 4, 2, 1 that the resource estimate says fits "
                   "the board).")
@clock_option()
@baud_option(help="The build's serial link baud rate")
@click.option("--build/--no-build", "do_build", default=True, show_default=True,
              help="Build the bitstream (yosys, nextpnr: a few minutes).")
@click.option("--sim-windows", default=None,
              help="Test windows to run through the simulated accelerator, or 'all' (default: all with the "
                   "compiled engine, 8 with Amaranth's simulator).")
@click.option("--netlist", "do_netlist", is_flag=True,
              help="Also simulate the build's synthesized netlist (Verilator) on the whole test split, every "
                   "word against the reference (opt-in: its compile takes minutes; `intformer verify --netlist`).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run folder (default: runs/run-<time>).")
@click.option("--force", is_flag=True, help="Overwrite an existing run folder.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def run(data_path, fmt, target, features, multivariate, fill, sensor, split_time, board_name, lanes, clock,
        baud, do_build, sim_windows, do_netlist, out, force, as_json, **kw):
    """Train, export, evaluate, simulate bit-exactly and build a model end to end, and write a report
    (on the embedded default data unless --data)."""
    from intformer.accel import cxxsim
    from intformer.boards.catalogue import board
    from intformer.model import runfolder

    from .build_cmd import auto_lanes, build_run
    from .eval_cmd import evaluate_run
    from .sim_cmd import simulate_run
    from .train_cmd import train_run

    started = time.perf_counter()
    quiet = as_json
    board(board_name)                        # an unknown board fails before training
    if do_build:                             # so does a baud rate its clock cannot make
        from intformer.boards.top import default_link
        from intformer.boards.uart import divisor_for
        if default_link(board(board_name).top_name) == "uart":
            divisor_for(clock_hz(clock, board(board_name).osc_hz), baud)
    if do_netlist:                           # so do an unsupported family and a missing Verilator
        from intformer.boards import netlist
        netlist.family_of(board_name)
        netlist.verilator()
    spec = data_spec(data_path, fmt, target, features, multivariate, fill, sensor, split_time, **classify_spec(kw))

    _stage(quiet, 1, "training the float baseline and the QAT model")
    trained = train_run(spec, kw, out, force, progress=not quiet)
    run_dir = Path(trained["run"])
    program = runfolder.open_run(run_dir).program
    if lanes is None:
        lanes = auto_lanes(program, board_name)

    _stage(quiet, 2, "evaluating the float, fake-quant and integer models on the test split")
    report_dir = run_dir / "report"
    report_dir.mkdir(exist_ok=True)
    figure = {"detect": "timeline.png", "classify": "forecast.png"}.get(trained.get("task"), "forecast.png")
    evaluated = evaluate_run(run_dir, None, report_dir / figure)

    engine = "cxxrtl" if cxxsim.available() else "amaranth"
    windows = sim_windows or ("all" if engine == "cxxrtl" else "8")
    # without g++ the Amaranth engine runs a few windows only; the report then says how many of the split's
    subset = "" if windows == "all" else " (a subset of the test split" + (
        ": g++ not found, the amaranth engine)" if engine == "amaranth" and not sim_windows else ")")
    _stage(quiet, 3, f"simulating the accelerator (P = {lanes}, {engine} engine, {windows} test windows{subset}), "
                     f"every word against the integer reference")
    simulated = simulate_run(run_dir, windows, lanes, engine)

    built = None
    if do_build:
        _stage(quiet, 4, f"building for {board_name} (P = {lanes})")
        try:
            built = build_run(run_dir, board_name, lanes, clock, None, True, baud=baud,
                              progress=None if quiet else (lambda m: click.echo(f"      {m}", err=True)))
        except IntformerError as exc:            # the report still gets written, and says why
            built = {"board": board_name, "lanes": lanes, "error": str(exc)}
    else:
        _stage(quiet, 4, "build skipped (--no-build)")
    netlist_result = None
    if do_netlist:
        from .verify_cmd import netlist_run
        kept = built and "error" not in built and built.get("netlist")
        _stage(quiet, 4, f"simulating the synthesized netlist for {board_name} (Verilator), the whole test split")
        netlist_result = netlist_run(run_dir, board_name, lanes, "all", built["out_dir"] if kept else None)

    _stage(quiet, 5, "writing the report")
    history_path = run_dir / "history.json"
    history = json.loads(history_path.read_text()) if history_path.exists() else {}
    result = {"train": trained, "eval": evaluated, "sim": simulated, "build": built, "netlist": netlist_result,
              "config": json.loads((run_dir / "run.json").read_text())["model"], "finished": time.time()}
    result["report"] = write_report(report_dir, result, history, evaluated.get("plot"))
    result["seconds"] = time.perf_counter() - started
    emit(result, as_json, print_run)
    if simulated["mismatches"] or (netlist_result is not None and not netlist_result["ok"]):
        sys.exit(1)
    if built is not None and "error" in built:
        click.echo(f"error: {built['error']}", err=True)
        sys.exit(2)
    if built is not None and built.get("timing_met") is False:
        sys.exit(1)
