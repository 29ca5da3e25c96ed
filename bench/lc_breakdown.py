"""Where the logic cells go: the iCE40 UP5K cells of each block of the serial-link device, from yosys, beside
the pre-synthesis estimate of the same parts.

    python bench/lc_breakdown.py [--run RUN] [--lanes 4] [--logic-lanes 0] [--baud 115200] [--json FILE]

The device is `boards.top.SimTop` (UART receiver and transmitter, `boards.link.Link`, the accelerator) for
RUN's program (default: the default configuration trained for one quick epoch, `board_bench.default_run`)
at P = --lanes, with the accelerator's blocks kept as modules of their own (`Accelerator(keep_blocks=True)`).
Yosys runs `synth_ice40 -dsp -noflatten`, which optimizes each module alone, and `stat` counts each
module's cells: LUT4, flip-flops, carry cells, SB_MAC16, SB_RAM40_4K; a block's figure includes the
modules beneath it. The last line is the same device synthesized flat (`synth_ice40 -dsp`, as a build
does): optimization across the boundaries takes back what the sum of the blocks exceeds it by.

Beside each block of the accelerator, the estimate's part that models it (`accel.resources.estimate`,
`Estimate.parts`, in LUT4): how far each part of the model is off, which the estimate's calibration
(within 3 % of the real build is the aim) has to correct. nextpnr's logic cells (ICESTORM_LC) pack one LUT4
with one flip-flop and a carry: a block's LC is at least max(LUT4 + unpaired carries, flip-flops); the
column LC>= gives that floor, the real count comes from a board build (`bench/board_bench.py`).
A benchmark, not a test: one synthesis takes about a minute on one core.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "bench")]

from amaranth.back import rtlil  # noqa: E402

from intformer.accel.resources import DEVICES, estimate  # noqa: E402
from intformer.boards.synth import yosys_command  # noqa: E402
from intformer.boards.top import SimTop  # noqa: E402
from intformer.boards.uart import divisor_for  # noqa: E402
from intformer.model import runfolder  # noqa: E402

CELLS = {"LUT4": ("SB_LUT4",), "FF": ("SB_DFF",), "CARRY": ("SB_CARRY",), "DSP": ("SB_MAC16",),
         "EBR": ("SB_RAM40_4K",)}
# the estimate's parts (`Estimate.parts`) that model each block of the accelerator
ESTIMATE_PARTS = {"mac": ("lanes", "logic lanes"), "drain": ("drain",), "control": ("control",),
                  "softmax": ("softmax",), "layernorm": ("layernorm",), "out_port": ("argmax", "scorer")}


def synthesize(top, flat: bool) -> dict:
    """yosys `stat -json` of `top` for the UP5K (`-noflatten` unless `flat`)."""
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "design.il").write_text(rtlil.convert(top, name="top"))
        script = (f"read_rtlil design.il; rename -hide w:*[[]*] x:* %d; "
                  f"synth_ice40 -dsp {'' if flat else '-noflatten '}-top top; tee -q -o stat.json stat -json")
        subprocess.run(yosys_command() + ["-q", "-l", "yosys.log", "-p", script], check=True, cwd=tmp)
        return json.loads(Path(tmp, "stat.json").read_text())


def _own(cells: dict) -> dict:
    return {k: sum(n for c, n in cells.items() if any(c.startswith(p) for p in prefixes))
            for k, prefixes in CELLS.items()}


def module_totals(stat: dict) -> dict[str, dict]:
    """Each module's cells, with those of the modules beneath it (a module instance is a cell of its type)."""
    mods = {name.lstrip("\\"): m["num_cells_by_type"] for name, m in stat["modules"].items()}
    totals: dict[str, dict] = {}

    def total(name):
        if name not in totals:
            cells = mods[name]
            t = _own(cells)
            for c, n in cells.items():
                if c.lstrip("\\") in mods:
                    for k, v in total(c.lstrip("\\")).items():
                        t[k] += n * v
            totals[name] = t
        return totals[name]
    for name in mods:
        total(name)
    return totals


def lc_floor(t: dict) -> int:
    """Logic cells a block needs at least: a LUT4 and a carry share a cell, a flip-flop packs with either."""
    return max(t["LUT4"], t["CARRY"], t["FF"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, default=None, help="a run folder (default: train the default model)")
    ap.add_argument("--lanes", type=int, default=4)
    ap.add_argument("--logic-lanes", type=int, default=0)
    ap.add_argument("--baud", type=int, default=115200)
    ap.add_argument("--clock", type=float, default=12.0, help="MHz (sets the UART divisor)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.run is None:
            from board_bench import default_run
            args.run = default_run(Path(tmp))
        program = runfolder.open_run(args.run).program
        divisor = divisor_for(args.clock * 1e6, args.baud)
        top = SimTop(program, args.lanes, divisor, logic_lanes=args.logic_lanes, keep_blocks=True)
        blocks = module_totals(synthesize(top, flat=False))
        flat = module_totals(synthesize(SimTop(program, args.lanes, divisor, logic_lanes=args.logic_lanes),
                                        flat=True))["top"]
    est = estimate(program, args.lanes, logic_lanes=args.logic_lanes)
    dev = DEVICES["ice40-up5k"]
    print(f"P = {args.lanes} ({args.logic_lanes} in logic), {args.baud} baud, iCE40 UP5K "
          f"(synth_ice40 -dsp -noflatten; estimate in LUT4)")
    print(f"{'block':<28}{'LUT4':>7}{'FF':>7}{'CARRY':>7}{'DSP':>5}{'EBR':>5}{'LC>=':>7}{'estimate':>10}{'est/LUT4':>10}")
    rows = []
    for name in sorted(blocks, key=lambda n: (n.count("."), n)):
        t = blocks[name]
        short = name.split(".")[-1]
        parts = ESTIMATE_PARTS.get(short, ()) if name.startswith("top.acc.") and name.count(".") == 2 else ()
        est_luts = sum(est.parts.get(p, 0) for p in parts) if parts else None
        ratio = f"{est_luts / t['LUT4']:>10.2f}" if est_luts and t["LUT4"] else f"{'':>10}"
        print(f"{'  ' * name.count('.') + short:<28}{t['LUT4']:>7,}{t['FF']:>7,}{t['CARRY']:>7,}{t['DSP']:>5}"
              f"{t['EBR']:>5}{lc_floor(t):>7,}{'' if est_luts is None else f'{est_luts:,.0f}':>10}{ratio}")
        rows.append({"block": name, **t, "lc_floor": lc_floor(t), "estimate_lut4": est_luts})
    print(f"{'flat (as a build)':<28}{flat['LUT4']:>7,}{flat['FF']:>7,}{flat['CARRY']:>7,}{flat['DSP']:>5}"
          f"{flat['EBR']:>5}{lc_floor(flat):>7,}")
    need = est.needs(dev)
    print(f"estimate, accelerator alone: LUT {need['LUT']:,}, DSP {need['DSP']}, EBR {need['RAM']:g}")
    if args.json:
        args.json.write_text(json.dumps({"lanes": args.lanes, "blocks": rows, "flat": flat,
                                         "estimate": {"needs": need, "parts": est.parts}}, indent=1))


if __name__ == "__main__":
    main()
