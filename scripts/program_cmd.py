"""`intformer program`: load a run's built bitstream onto a board (iceprog, openFPGALoader, dfu-util, or a copy
onto the board's USB drive: the iCESugar's iCELink)."""
from __future__ import annotations

from pathlib import Path

import click

from intformer.boards.catalogue import BOARDS

from .output import emit


def print_program(r: dict) -> None:
    click.echo(f"programmed the {r['board']} ({r['target']}) with {r['bitstream']} (P = {r['lanes']})")
    click.echo(f"command: {' '.join(r['command'])}")
    for note in r["notes"]:
        click.echo(f"note: {note}")


@click.command("program")
@click.argument("run", type=click.Path())
@click.option("--board", "board_name", required=True,
              help="One of the board catalogue's boards: " + ", ".join(BOARDS) + ".")
@click.option("--flash", is_flag=True, help="Write the configuration flash (kept over power cycles) instead of "
                                            "the FPGA's SRAM.")
@click.option("--lanes", type=click.IntRange(min=1), default=None,
              help="Which build, where the run has several for the board (default: the newest).")
@click.option("--build", "build_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="A build folder made with `intformer build --out`.")
@click.option("--force", is_flag=True, help="Load a build that did not meet timing.")
@click.option("--drive", type=click.Path(path_type=Path), default=None,
              help="The mount point of the board's USB drive, for a board programmed by a copy onto it (icesugar: "
                   "the iCELink drive, e.g. /media/$USER/iCELink; default: $ICESUGAR_DRIVE).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def program_cmd(run, board_name, flash, lanes, build_dir, force, drive, as_json):
    """Load the run's bitstream for a board onto the board (SRAM, or flash with --flash)."""
    from intformer.boards.program import program_run

    emit(program_run(run, board_name, flash, lanes, build_dir, force, drive), as_json, print_program)
