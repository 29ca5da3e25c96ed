"""Board builds of the default model at several lane counts: resources, Fmax, cycles, latency, energy estimate.

    python bench/board_bench.py [--run RUN] [--boards icebreaker orangecrab] [--lanes 1 2 4 8]
    python bench/board_bench.py --boards tang_nano_9k tang_primer_20k --lanes 8      # the Gowin boards
                                [--clock MHZ] [--bare] [--seeds 1 2 3] [--out DIR]

The model is RUN's, or else the default configuration (n = 24, d = 16, one layer, one head, FFN 64, 8 bits)
trained for one quick epoch on the embedded data (the structure, not the accuracy, decides the build).
Each (board, P) goes through `boards.build.build` with the YoWASP tools: the serial-link top where the
board has a USB-serial bridge (iCEBreaker, ULX3S, ...), the accelerator alone (--bare) where it has none
(OrangeCrab) or with --bare. Configurations that do not fit (the pre-synthesis estimate, or nextpnr) or
that miss timing are listed with the reason, not built further. The clock is the board oscillator unless
--clock asks for a PLL. Where the device's multiplier blocks run out, some MAC lanes multiply in logic
(`accel.resources.lanes_in_logic`; column LL). nextpnr's Fmax depends on its placement seed: --seeds builds
each configuration once per seed, and the summary gives Fmax per lane count (the lowest and the highest over
the seeds). Energy is `boards.power`'s estimate, not a measurement. A benchmark, not a test: an iCE40 build
takes two to four minutes on two cores, an ECP5 build a few, a Gowin build (nextpnr-himbaechel-gowin) seven
(GW1NR-9) to eleven (GW2A-18). On the Gowin boards logic is LUT4s (the ALU carry cells are listed apart in
build.json), DSP is 18x18 multipliers (two MULT9X9 count one) and BRAM is 18-kbit BSRAM.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from intformer.boards import build as B  # noqa: E402
from intformer.boards.catalogue import board  # noqa: E402
from intformer.model.errors import IntformerError  # noqa: E402


def default_run(folder: Path) -> Path:
    """The default configuration, trained for one short epoch (about ten seconds)."""
    import torch
    from click.testing import CliRunner

    from intformer.cli import cli

    torch.set_num_threads(1)
    run = folder / "default-run"
    result = CliRunner().invoke(cli, ["train", "--epochs", "1", "--patience", "1", "--max-train-windows", "500",
                                      "--out", str(run), "--force", "--json"])
    if result.exit_code:
        raise SystemExit(f"training the default model failed: {result.output}{result.exception}")
    return run


def row(r: dict) -> str:
    res = r["resources"]
    logic = res.get("LC") or res.get("LUT")
    lat_fmax = r["cycles_per_inference"] / r["fmax_mhz"] if r.get("fmax_mhz") else float("nan")
    s = r["stage_seconds"]
    tool_seconds = sum(s.get(k, 0) for k in ("yosys", "nextpnr-ice40", "nextpnr-ecp5", B.GOWIN_PNR, "gowin_pack"))
    return (f"{r['board']:<11}{r['lanes']:>3}{r.get('logic_lanes', 0):>3} {r['top']:<5}"
            f"{'-' if r.get('nextpnr_seed') is None else r['nextpnr_seed']:>5} "
            f"{logic['used']:>7,}/{logic['available']:<7,}"
            f"{res.get('FF', {}).get('used', 0):>7,}{res['DSP']['used']:>5}/{res['DSP']['available']:<4}"
            f"{res['BRAM']['used']:>4}/{res['BRAM']['available']:<4}{r['clock_mhz']:>7.1f}{r['fmax_mhz']:>7.1f}"
            f"{r['cycles_per_inference']:>8,}{r['latency_us']:>9.1f}{lat_fmax:>9.1f}{r['power_mw_estimate']:>8.1f}"
            f"{r['energy_uj_estimate']:>9.3f}{tool_seconds:>7.0f}")


HEADER = (f"{'board':<11}{'P':>3}{'LL':>3} {'top':<5}{'seed':>5}{'logic used/avail':>17}{'FF':>7}{'DSP':>9}{'BRAM':>9}{'clock':>7}"
          f"{'Fmax':>7}{'cycles':>8}{'lat us':>9}{'@Fmax':>9}{'mW est':>8}{'uJ est':>9}{'tool s':>7}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, default=None, help="a run folder (default: train the default model)")
    ap.add_argument("--boards", nargs="+", default=["icebreaker", "orangecrab"])
    ap.add_argument("--lanes", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--clock", type=float, default=None, help="MHz (default: the board oscillator)")
    ap.add_argument("--bare", action="store_true", help="the accelerator alone on every board")
    ap.add_argument("--seeds", type=int, nargs="+", default=[None],
                    help="nextpnr placement seeds: each configuration is built once per seed (default: its own)")
    ap.add_argument("--no-fit-check", action="store_true",
                    help="skip the pre-synthesis estimate: let nextpnr say what fits")
    ap.add_argument("--out", type=Path, default=None, help="keep the build folders here (default: a temp dir)")
    ap.add_argument("--json", type=Path, default=None, help="write every result to this JSON file")
    a = ap.parse_args()

    from intformer.model import runfolder
    with tempfile.TemporaryDirectory() as tmp:
        root = a.out or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        run_path = a.run or default_run(root)
        program = runfolder.open_run(run_path).program
        print(f"model: {run_path} ({program.macs():,} MACs per inference)", flush=True)
        print(HEADER, flush=True)
        results, skipped = [], []
        for board_name in a.boards:
            for lanes in a.lanes:
                # a board whose USB port is wired to the FPGA itself (no USB-serial bridge) gets the bare top
                top = "bare" if a.bare or not board(board_name).uart else "link"
                for seed in a.seeds:
                    tag = "" if seed is None else f"-s{seed}"
                    out = B.prepare_out(root / f"build-{board_name}-P{lanes}-{top}{tag}", True)
                    start = time.perf_counter()
                    try:
                        r = B.build(B.BuildRequest(program, board_name, lanes, a.clock, out, top=top,
                                                   check_timing=False, fit_check=not a.no_fit_check, seed=seed))
                    except IntformerError as exc:
                        reason = str(exc).splitlines()[0]
                        skipped.append((board_name, lanes, reason))
                        print(f"{board_name:<11}{lanes:>3}    {top:<5}skipped ({time.perf_counter() - start:.0f} s): "
                              f"{reason}", flush=True)
                        break                       # another seed does not make it fit
                    results.append(r)
                    print(row(r) + ("" if r["timing_met"] else "  TIMING NOT MET"), flush=True)
        if a.json:
            a.json.write_text(json.dumps({"results": results, "skipped": skipped}, indent=2))
        print("\nFmax per lane count (MHz, lowest and highest over the seeds):")
        for board_name in a.boards:
            for lanes in a.lanes:
                f = [r["fmax_mhz"] for r in results if r["board"] == board_name and r["lanes"] == lanes]
                if f:
                    print(f"  {board_name:<11} P = {lanes:<3} {min(f):6.2f} .. {max(f):6.2f}  ({len(f)} build"
                          f"{'s' if len(f) > 1 else ''}, clock {f'{a.clock:g} MHz' if a.clock else 'the oscillator'})")
                else:
                    print(f"  {board_name:<11} P = {lanes:<3} not built (see above)")
        print(f"\n{len(results)} built, {len(skipped)} skipped; logic is iCE40 logic cells (LC), ECP5 or Gowin LUT4s; "
              f"'lat us' at the build clock, '@Fmax' at nextpnr's Fmax; energy per inference from the "
              f"boards.power model (an estimate, core power only)")


if __name__ == "__main__":
    main()
