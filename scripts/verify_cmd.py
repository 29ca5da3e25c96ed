"""`intformer verify RUN --formal`: the formal proofs (SymbiYosys) for a run folder's model configuration."""
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
@click.option("--json", "as_json", is_flag=True, help="Print the results as a JSON list.")
def verify(run, do_formal, lanes, depth, quick, only, timeout, as_json):
    """Prove the accelerator's datapath and host link for the model in RUN (see README, Formal proofs)."""
    if not do_formal:
        raise IntformerError("nothing to verify: pass --formal to run the formal proofs")
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
