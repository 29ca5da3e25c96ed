"""Load a built bitstream onto a board with the board's usual programmer.

The programmer and its arguments are the board's entry in `boards.catalogue` (whose docstring tables
them): iceprog (iCEBreaker), openFPGALoader (ULX3S, Arty S7, Cmod S7), dfu-util (the OrangeCrab, whose
bootloader always writes the flash).

The programmer can be replaced by an environment variable, as amaranth-boards does: ICEPROG,
OPENFPGALOADER, DFU_UTIL.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from .catalogue import BOARDS, board
from .errors import NoBuild, ProgramError


def command(board_name: str, bitstream: str | Path, flash: bool) -> tuple[list[str], list[str]]:
    """The programmer's command line for `board_name`, and notes about it."""
    b = board(board_name)
    tool = os.environ.get(b.programmer.env) or b.programmer.tool
    notes = []
    if flash or b.sram_args is None:
        args = b.flash_args
        if not flash and b.flash_only_note:
            notes.append(b.flash_only_note)
    else:
        args = b.sram_args
    return [tool, *args, str(bitstream)], notes


def find_build(run_path: str | Path, board_name: str, lanes: int | None = None,
               build_dir: str | Path | None = None) -> tuple[Path, dict]:
    """The build folder of `board_name` in the run (the newest finished one, or the one with `lanes`), or
    `build_dir`; with its build.json. Raises `NoBuild` naming the `intformer build` to run."""
    board(board_name)
    hint = f"build it with `intformer build {run_path} --board {board_name}" + (f" --lanes {lanes}`" if lanes else "`")
    if build_dir is not None:
        candidates = [Path(build_dir)]
    else:
        pattern = f"build-{board_name}-P{lanes}" if lanes else f"build-{board_name}-P*"
        candidates = [p for p in Path(run_path).glob(pattern) if p.is_dir()]
        if not Path(run_path).exists():
            raise NoBuild(f"{run_path}: no such run folder")
    finished = [p for p in candidates if (p / "build.json").exists()]
    if not finished:
        if candidates and any(p.exists() for p in candidates):
            raise NoBuild(f"{candidates[0]}: the build did not finish (no build.json); {hint} --force")
        raise NoBuild(f"no bitstream built for the {board_name} in {run_path}; {hint}")
    path = max(finished, key=lambda p: (p / "build.json").stat().st_mtime)
    info = json.loads((path / "build.json").read_text())
    if info.get("board") != board_name:
        raise NoBuild(f"{path} was built for the {info.get('board')}, not the {board_name}")
    return path, info


def program(bitstream: str | Path, board_name: str, flash: bool = False, timeout: float = 300) -> dict:
    """Run the board's programmer on `bitstream`; returns {"command", "output", "notes"}."""
    bitstream = Path(bitstream)
    if not bitstream.is_file():
        raise NoBuild(f"{bitstream}: no such bitstream; build it with `intformer build`")
    cmd, notes = command(board_name, bitstream, flash)
    prog = board(board_name).programmer
    if shutil.which(cmd[0]) is None:
        raise ProgramError(f"{cmd[0]} not found: install it (Debian/Ubuntu: apt-get install {prog.package}) or "
                           f"point {prog.env} at it")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ProgramError(f"{' '.join(cmd)} did not finish within {timeout:g} s; is the board connected?") \
            from None
    output = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0:
        tail = " | ".join(output.splitlines()[-4:]) or "no output"
        raise ProgramError(f"{cmd[0]} failed (exit {proc.returncode}): {tail}; is the {board_name} connected, "
                           f"and may this user open its USB device (udev rules, plugdev group)?")
    return {"command": cmd, "output": output, "notes": notes}


def program_run(run_path, board_name: str, flash: bool = False, lanes: int | None = None,
                build_dir=None, force: bool = False) -> dict:
    path, info = find_build(run_path, board_name, lanes, build_dir)
    if not info.get("bitstream"):
        raise NoBuild(f"{path}: no bitstream in this build ({info.get('message') or info.get('status')})")
    if info.get("timing_met") is False and not force:
        raise ProgramError(f"{path}: this build did not meet timing (Fmax {info.get('fmax_mhz')} MHz at "
                           f"{info.get('clock_mhz')} MHz); rebuild at a lower --clock, or add --force to load it "
                           f"anyway")
    result = program(info["bitstream"], board_name, flash)
    notes = list(result["notes"])
    if info.get("top") == "bare":
        notes.append("this is a --bare build (no serial link): `intformer infer` cannot talk to it")
    return {"board": board_name, "build": str(path), "bitstream": info["bitstream"], "lanes": info.get("lanes"),
            "target": "flash" if flash or board(board_name).sram_args is None else "SRAM", "command": result["command"],
            "output": result["output"], "notes": notes}


__all__ = ["BOARDS", "command", "find_build", "program", "program_run"]
