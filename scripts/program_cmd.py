"""`intformer program`: load a run's built bitstream onto a board (iceprog, openFPGALoader or dfu-util)."""
from __future__ import annotations

from pathlib import Path

import click

from .output import emit


def print_program(r: dict) -> None:
    click.echo(f"programmed the {r['board']} ({r['target']}) with {r['bitstream']} (P = {r['lanes']})")
    click.echo(f"command: {' '.join(r['command'])}")
    for note in r["notes"]:
        click.echo(f"note: {note}")


@click.command("program")
@click.argument("run", type=click.Path())
@click.option("--board", "board_name", required=True,
              help="icebreaker, orangecrab, ulx3s, ulx3s-85f, arty_s7, arty_s7_25, cmod_s7.")
@click.option("--flash", is_flag=True, help="Write the configuration flash (kept over power cycles) instead of "
                                            "the FPGA's SRAM.")
@click.option("--lanes", type=click.IntRange(min=1), default=None,
              help="Which build, where the run has several for the board (default: the newest).")
@click.option("--build", "build_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="A build folder made with `intformer build --out`.")
@click.option("--force", is_flag=True, help="Load a build that did not meet timing.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def program_cmd(run, board_name, flash, lanes, build_dir, force, as_json):
    """Load the run's bitstream for a board onto the board (SRAM, or flash with --flash)."""
    from intformer.boards.program import program_run

    emit(program_run(run, board_name, flash, lanes, build_dir, force), as_json, print_program)
