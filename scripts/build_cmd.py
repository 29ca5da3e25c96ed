"""`intformer build`: a run's integer model as a bitstream for a development board, with its resources,
Fmax, cycles, latency and an energy estimate."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from intformer.boards.catalogue import BOARDS
from intformer.model import runfolder
from intformer.model.errors import IntformerError

from .options import baud_option, check_task, clock_hz, clock_option, task_option
from .output import emit

AUTO_LANES = (16, 8, 4, 2, 1)


def auto_lanes(program, board_name: str) -> int:
    """The largest lane count of AUTO_LANES that the pre-synthesis estimate says fits the board's device
    (for a device the estimate does not cover, the nearest smaller one it does)."""
    from intformer.accel.resources import check_fit, largest_lanes
    from intformer.boards.catalogue import board

    device = board(board_name).estimate_device
    lanes = largest_lanes(program, device, AUTO_LANES)
    if not lanes:
        check_fit(program, 1, device)          # raises, naming what does not fit
    return lanes or 1


def build_run(run_path, board_name: str, lanes: int | None, clock: float | str | None, out: Path | None, force: bool,
              bare: bool = False, baud: int = 115200, progress=None, fit_check: bool = True,
              link: str | None = None, task: str | None = None) -> dict:
    """`link`: the host link, "uart" or "spi" (None: the UART where the board has one, SPI otherwise);
    `task`: the task the caller expects the run to be (None: whatever it is; another one is refused)."""
    import json

    from intformer.boards.build import BuildRequest, LinkTopFactory, build, default_out, prepare_out, with_bare_hint
    from intformer.boards.catalogue import board
    from intformer.boards.errors import NoSerialBridge
    from intformer.boards.top import check_board, default_link

    b = board(board_name)                        # an unknown board fails before anything else
    if bare and link is not None:
        raise IntformerError("--bare builds the accelerator without a host link: leave out --link")
    used_link = None if bare else (link or default_link(b.top_name))
    if used_link is not None:
        try:
            check_board(b.top_name, used_link)   # the board has the link's pins (before any work)
        except NoSerialBridge as exc:
            raise with_bare_hint(exc) from None
    if used_link == "uart":                      # the clock makes the baud rate (before any work)
        from intformer.boards.uart import check_baud, divisor_for
        divisor_for(clock_hz(clock, b.osc_hz), check_baud(baud))
    run = runfolder.open_run(run_path)
    run.require_task(check_task(task), "build")
    if lanes is None:
        lanes = auto_lanes(run.program, board_name)
        if progress:
            progress(f"lanes: P = {lanes} (the largest the resource estimate allows; --lanes to choose)")
    if used_link is not None:                    # the link's frame format fits the model (before any work)
        from intformer.boards.protocol import DeviceInfo
        DeviceInfo.from_program(run.program, lanes)
    out = Path(out) if out else default_out(run.path, board_name, lanes)
    prepare_out(out, force)
    factory = LinkTopFactory(baud, used_link) if used_link is not None else None
    result = build(BuildRequest(run.program, board_name, lanes, clock, out, progress=progress,
                                top="bare" if bare else "link", baud=baud, fit_check=fit_check,
                                top_factory=factory))
    if used_link is not None:
        result["link"] = used_link
        (out / "build.json").write_text(json.dumps(result, indent=2, sort_keys=True))
    return result


def print_build(r: dict) -> None:
    link = f" ({r['link']})" if r.get("link") else ""
    click.echo(f"board       {r['board']} ({r.get('board_description', '')}), device {r['device']}, "
               f"P = {r['lanes']}, top: {r.get('top', 'link')}{link}")
    source = ("PLL from %g MHz" % r["oscillator_mhz"]) if r.get("clock_source") == "PLL" else "oscillator"
    fmax = f"{r['fmax_mhz']:.1f} MHz" if r.get("fmax_mhz") is not None else "unknown"
    met = {True: "timing met", False: "TIMING NOT MET", None: ""}[r.get("timing_met")]
    click.echo(f"clock       {r['clock_mhz']:g} MHz ({source}); Fmax {fmax}  {met}")
    click.echo(f"{'resource':<10}{'used':>8}{'available':>11}{'':>7}")
    for name, v in r["resources"].items():
        pct = f"{100 * v['used'] / v['available']:.0f}%" if v["available"] else ""
        click.echo(f"{name:<10}{v['used']:>8,}{v['available']:>11,}{pct:>7}")
    click.echo(f"cycles      {r['cycles_per_inference']:,} per inference ({r['macs_per_inference']:,} MACs); "
               f"latency {r['latency_us']:,.1f} us; {r['inferences_per_second']:,.0f} inferences/s (compute only)")
    click.echo(f"power       {r['power_mw_estimate']:.1f} mW, {r['energy_uj_estimate']:.3g} uJ per inference "
               f"(ESTIMATE: boards.power model, core only)")
    click.echo(f"bitstream   {r['bitstream'] or 'none'}")
    if r.get("stage_seconds"):
        click.echo("seconds     " + ", ".join(f"{k} {v:g}" for k, v in r["stage_seconds"].items()))
    for note in r.get("notes", []):
        click.echo(f"note: {note}")
    if r.get("message"):
        click.echo(f"note: {r['message']}")


@click.command("build")
@click.argument("run", type=click.Path())
@click.option("--board", "board_name", required=True,
              help="One of the board catalogue's boards: " + ", ".join(BOARDS) + ".")
@click.option("--lanes", type=click.IntRange(min=1), default=None,
              help="MAC lanes P (default: the largest of 16, 8, 4, 2, 1 the resource estimate says fits).")
@clock_option()
@baud_option()
@click.option("--link", type=click.Choice(["uart", "spi"]), default=None,
              help="The host link: uart (the board's USB-serial bridge) or spi (SPI peripheral pins, see "
                   "boards/catalogue.py). Default: uart where the board has a USB-serial bridge, spi otherwise "
                   "(OrangeCrab).")
@click.option("--bare", is_flag=True,
              help="The accelerator alone, without the host link (resources and timing only, or to see what "
                   "the link costs).")
@click.option("--no-fit-check", "no_fit_check", is_flag=True,
              help="Skip the pre-synthesis resource estimate (it errs on the safe side) and let nextpnr decide.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Build folder (default: RUN/build-<board>-P<lanes>).")
@click.option("--force", is_flag=True, help="Rebuild into an existing build folder.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@task_option
def build_cmd(run, board_name, lanes, clock, baud, link, bare, no_fit_check, out, force, as_json, task):
    """Build the run's model as a bitstream for a board (yosys + nextpnr) and report resources, Fmax,
    cycles per inference, latency and an energy estimate."""
    def progress(message):
        click.echo(message, err=True)

    result = build_run(run, board_name, lanes, clock, out, force, bare=bare, baud=baud, progress=progress,
                       fit_check=not no_fit_check, link=link, task=task)
    emit(result, as_json, print_build)
    if as_json and result.get("message"):
        click.echo(f"note: {result['message']}", err=True)
    if result.get("timing_met") is False:
        sys.exit(1)
