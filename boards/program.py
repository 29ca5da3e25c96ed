"""Load a built bitstream onto a board with the board's usual programmer.

The programmer and its arguments are the board's entry in `boards.catalogue` (whose docstring tables
them). A programmer is one of two kinds:

* a program (kind "command"): iceprog (iCEBreaker, UPduino v3), openFPGALoader (ULX3S, Arty S7, Cmod S7),
  dfu-util (the OrangeCrab, whose bootloader always writes the flash). It can be replaced by an
  environment variable, as amaranth-boards does: ICEPROG, OPENFPGALOADER, DFU_UTIL.
* a drive (kind "drive"): the iCESugar's iCELink shows up as a USB mass-storage drive named iCELink, and
  a bitstream copied onto it is written to the board's flash ("drag and drop"). The drive is the folder
  `--drive PATH` names, else the one in the catalogue's variable (ICESUGAR_DRIVE), e.g.
  /media/$USER/iCELink; without one, or with one that is not there or not writable, `NoDrive`.
  `copy_to_drive` writes the bitstream, flushes it and fsyncs the file and the folder, so that the whole
  file has reached the device when the command returns (the iCELink programs what it receives; a copy
  left in the page cache would be lost if the board were unplugged), then checks that the file is there
  at its full size. It does not read the bitstream back from the device: a DAPLink-style
  drive such as the iCELink is virtual, streaming what it receives to the flash rather than storing it.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from .catalogue import BOARDS, board
from .errors import NoBuild, NoDrive, ProgramError


def command(board_name: str, bitstream: str | Path, flash: bool, drive: str | Path | None = None
            ) -> tuple[list[str], list[str]]:
    """The programmer's command line for `board_name` (for a drive: ["copy", bitstream, its place on the
    drive], `find_drive`), and notes about it."""
    b = board(board_name)
    notes = []
    if not flash and b.sram_args is None and b.flash_only_note:      # asked for SRAM, gets the flash
        notes.append(b.flash_only_note)
    if b.programmer.kind == "drive":
        return ["copy", str(bitstream), str(find_drive(board_name, drive) / Path(bitstream).name)], notes
    if drive is not None:
        notes.append(f"--drive is for boards programmed by a copy onto a USB drive "
                     f"({', '.join(n for n, o in BOARDS.items() if o.programmer.kind == 'drive')}); the "
                     f"{board_name} uses {b.programmer.tool}, so it was ignored")
    tool = os.environ.get(b.programmer.env) or b.programmer.tool
    args = b.flash_args if flash or b.sram_args is None else b.sram_args
    return [tool, *args, str(bitstream)], notes


def find_drive(board_name: str, drive: str | Path | None = None) -> Path:
    """The mounted USB drive that programs `board_name` (a board whose programmer is of kind "drive"):
    `drive`, else the folder in the programmer's environment variable. Raises `NoDrive` when neither names
    one, or the folder is not there or not writable."""
    prog = board(board_name).programmer
    given = drive if drive is not None else os.environ.get(prog.env)
    how = (f"plug in the {board_name} (its {prog.tool} USB drive appears, e.g. at /media/$USER/{prog.tool}) and "
           f"give the drive's mount point with --drive PATH (or set {prog.env})")
    if not given:
        raise NoDrive(f"the {board_name} is programmed by copying the bitstream onto its {prog.tool} USB drive, "
                      f"and no drive was named: {how}")
    path = Path(given)
    if not path.is_dir():
        raise NoDrive(f"{path}: no such drive mounted (not a folder); {how}")
    if not os.access(path, os.W_OK):
        raise NoDrive(f"{path}: the drive is not writable by this user (mounted read-only?); remount it, or "
                      f"{how}")
    return path


def copy_to_drive(bitstream: str | Path, drive: Path) -> dict:
    """Copy `bitstream` onto the mounted `drive` as a file of the same name, flushed to the device (fsync of
    the file and of the folder), and check that the file is there, whole; {"command", "output", "notes"}.
    Raises `ProgramError` when the copy fails (a full drive, an I/O error: the board was unplugged)."""
    data = Path(bitstream).read_bytes()
    dest = drive / Path(bitstream).name
    notes = []
    try:
        with open(dest, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())           # on the device, not in the page cache, before we say so
            written = os.fstat(f.fileno()).st_size
        _fsync_folder(drive)
        landed = dest.stat().st_size if dest.exists() else None
    except OSError as exc:
        raise ProgramError(f"copying {bitstream} onto the drive at {drive} failed: {exc.strerror or exc}; is the "
                           f"board still plugged in, and is there room on the drive?") from None
    if written != len(data) or landed not in (len(data), None):
        raise ProgramError(f"{dest}: {landed if landed is not None else written} bytes on the drive, not the "
                           f"bitstream's {len(data)}; copy it again (is the drive full?)")
    if landed is None:                     # a virtual drive may take the file in at once: it was written whole
        notes.append(f"{dest.name} left the drive once written (the programmer took it in)")
    if not os.path.ismount(drive):
        notes.append(f"{drive} is not a mount point: if the board's drive is not mounted there, the bitstream "
                     f"went into a plain folder")
    return {"command": ["copy", str(bitstream), str(dest)],
            "output": f"{len(data)} bytes written to {dest} and flushed to the drive", "notes": notes}


def _fsync_folder(folder: Path) -> None:
    """fsync a folder, so that the new file's directory entry reaches the device too (not every file system
    lets a folder be fsync'ed: then the file's own fsync has to do)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


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


def program(bitstream: str | Path, board_name: str, flash: bool = False, timeout: float = 300,
            drive: str | Path | None = None) -> dict:
    """Run the board's programmer on `bitstream` (or copy it onto the board's `drive`, `find_drive`);
    returns {"command", "output", "notes"}."""
    bitstream = Path(bitstream)
    if not bitstream.is_file():
        raise NoBuild(f"{bitstream}: no such bitstream; build it with `intformer build`")
    cmd, notes = command(board_name, bitstream, flash, drive)
    prog = board(board_name).programmer
    if prog.kind == "drive":
        copied = copy_to_drive(bitstream, Path(cmd[2]).parent)
        return {**copied, "notes": notes + copied["notes"]}
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
                build_dir=None, force: bool = False, drive=None) -> dict:
    """Program `board_name` with the run's build (`find_build`), refusing one that missed timing unless
    `force`; `drive`: the mount point of the board's USB drive, for a board programmed by a copy."""
    path, info = find_build(run_path, board_name, lanes, build_dir)
    if not info.get("bitstream"):
        raise NoBuild(f"{path}: no bitstream in this build ({info.get('message') or info.get('status')})")
    if info.get("timing_met") is False and not force:
        raise ProgramError(f"{path}: this build did not meet timing (Fmax {info.get('fmax_mhz')} MHz at "
                           f"{info.get('clock_mhz')} MHz); rebuild at a lower --clock, or add --force to load it "
                           f"anyway")
    result = program(info["bitstream"], board_name, flash, drive=drive)
    notes = list(result["notes"])
    if info.get("top") == "bare":
        notes.append("this is a --bare build (no serial link): `intformer infer` cannot talk to it")
    return {"board": board_name, "build": str(path), "bitstream": info["bitstream"], "lanes": info.get("lanes"),
            "target": "flash" if flash or board(board_name).sram_args is None else "SRAM", "command": result["command"],
            "output": result["output"], "notes": notes}


__all__ = ["BOARDS", "command", "copy_to_drive", "find_build", "find_drive", "program", "program_run"]
