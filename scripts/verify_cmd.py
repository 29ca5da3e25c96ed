"""`intformer verify RUN --formal`: the formal proofs (SymbiYosys) for a run folder's model configuration;
`intformer verify RUN --netlist`: the test windows through the accelerator's synthesized netlist
(`boards.netlist`, Verilator), every output word against the integer reference."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from intformer.model import runfolder
from intformer.model.errors import IntformerError

from .output import emit


def verify_run(run_path, lanes: int = 8, depth: int | None = None, full: bool = True, timeout: float = 600.0,
               only: str | None = None) -> list[dict]:
    """Run every proof for the model in `run_path`; the work folders go to RUN/formal/."""
    from intformer.accel import sby

    from .proofs import all_proofs

    sby.tools()                                     # a missing tool: one clear error before any work
    run = runfolder.open_run(run_path)
    proofs = all_proofs(run.program, lanes, full)
    if only:
        proofs = [p for p in proofs if only in p.name]
    if depth is not None:
        for p in proofs:
            p.depth = max(p.depth, depth)
    workdir = Path(run_path) / "formal"
    return [sby.run_proof(p, workdir, timeout).as_dict() for p in proofs]


def netlist_run(run_path, board_name: str = "icebreaker", lanes: int = 8, windows: str = "all",
                build_dir=None) -> dict:
    """The test windows of RUN through the accelerator's synthesized netlist for the board's family: the
    netlist that `intformer build` kept in `build_dir`/netlist/ if given, else one synthesized (with the
    build's script) into RUN/netlist/BOARD-pP/; every output word compared with the integer reference."""
    from intformer.boards import netlist
    from intformer.model.intref import quantize_input

    netlist.family_of(board_name)                   # an unsupported board or no Verilator: one clear error first
    netlist.verilator()
    if windows != "all" and (not windows.isdigit() or int(windows) < 1):
        raise IntformerError(f"--windows must be a positive number or 'all', got {windows!r}")
    run = runfolder.open_run(run_path)
    test_x = run.test_inputs("test")
    count = len(test_x) if windows == "all" else min(len(test_x), int(windows))
    codes = quantize_input(run.program, test_x[:count])
    if build_dir is not None:
        net = netlist.load(Path(build_dir) / "netlist")
        if net.lanes != lanes or net.family != netlist.family_of(board_name):
            raise IntformerError(f"the netlist in {build_dir} is for {net.family} at P = {net.lanes}, not "
                                 f"{netlist.family_of(board_name)} at P = {lanes}: pass its --board and --lanes")
    else:
        net = netlist.synthesize(run.program, lanes, board_name, Path(run_path) / "netlist" / f"{board_name}-p{lanes}")
    result = netlist.verify(net, run.program, codes)
    result["split_windows"] = len(test_x)
    return result


def print_results(results: list[dict]) -> None:
    click.echo(f"{'proof':32s} {'result':8s} {'mode':6s} {'depth':>5s} {'seconds':>8s}")
    for r in results:
        click.echo(f"{r['name']:32s} {r['status'].upper():8s} {r['mode']:6s} {r['depth']:5d} {r['seconds']:8.1f}")
    for r in results:
        if r["status"] != "pass":
            click.echo(f"{r['name']}: {r['status']}; trace: {r['trace'] or r['workdir']}"
                       + (f" ({r['message']})" if r["message"] else ""))


@click.command()
@click.argument("run", type=click.Path())
@click.option("--formal", "do_formal", is_flag=True, help="Run the formal proofs (SymbiYosys with Yices).")
@click.option("--lanes", type=click.IntRange(min=1), default=8, show_default=True, help="MAC lanes P.")
@click.option("--depth", type=click.IntRange(min=1), default=None,
              help="Raise every proof's depth (k-induction steps, or BMC cycles) to at least K.")
@click.option("--quick", is_flag=True, help="Leave out the bounded LayerNorm square-root proof (tens of seconds).")
@click.option("--only", default=None, help="Run only the proofs whose name contains this text.")
@click.option("--timeout", type=click.FloatRange(min=1), default=600, show_default=True,
              help="Seconds allowed for each proof.")
@click.option("--netlist", "do_netlist", is_flag=True,
              help="Simulate the synthesized netlist (Verilator, yosys' cell models) on test windows, every "
                   "output word against the integer reference (README, Netlist simulation).")
@click.option("--board", "board_name", default="icebreaker", show_default=True,
              help="With --netlist: the board whose FPGA family (iCE40, ECP5, Xilinx 7-series: yosys' "
                   "mapping, not Vivado's) the netlist is mapped for.")
@click.option("--windows", default="all", show_default=True, help="With --netlist: test windows, N or all.")
@click.option("--build-dir", type=click.Path(), default=None,
              help="With --netlist: the build folder whose kept netlist to simulate (else one is synthesized).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def verify(run, do_formal, lanes, depth, quick, only, timeout, do_netlist, board_name, windows, build_dir, as_json):
    """Prove the accelerator's datapath and host link for the model in RUN (see README, Formal proofs), or
    simulate its synthesized netlist (--netlist)."""
    if not do_formal and not do_netlist:
        raise IntformerError("nothing to verify: pass --formal to run the formal proofs or --netlist to "
                             "simulate the synthesized netlist")
    if do_netlist:
        from intformer.boards import netlist
        r = netlist_run(run, board_name, lanes, windows, build_dir)
        if as_json:
            emit(r, True, None)
        else:
            click.echo(netlist.describe(r) + f" ({r['windows']} of the split's {r['split_windows']} windows)")
        if not r["ok"]:
            sys.exit(1)
        if not do_formal:
            return
    results = verify_run(run, lanes, depth, not quick, timeout, only)
    if as_json:
        emit(results, True, None)
    else:
        print_results(results)
    failed = [r for r in results if r["status"] != "pass"]
    if failed:
        for r in failed:
            click.echo(f"proof {r['name']} {r['status']}: counterexample {r['trace'] or r['workdir']}", err=True)
        sys.exit(1)
