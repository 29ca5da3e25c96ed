"""The other iCE40 UP5K boards, UPduino v3 and iCESugar: their catalogue entries against their amaranth-boards
platforms, their tops' pins and clocks (elaborated, no tools), `intformer program` (iceprog for the UPduino,
the copy onto the iCELink's USB drive for the iCESugar, with a temporary folder standing for the drive, and
the error without a drive), and one real UPduino bitstream build at a small configuration (window 8,
d_model 8, ffn 16, P = 1: about a minute on two cores; INTFORMER_FULL=1: the default model at the lane
count the estimate allows, about three minutes), programmed with a stand-in iceprog.
"""
from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import numpy as np
import pytest

from intformer.boards.catalogue import BOARDS
from intformer.model.errors import IntformerError
from cli_helpers import SMALL, invoke, ok, user_error
from program_factory import random_program

pytestmark = pytest.mark.usefixtures("torch_one_thread")

UP5K_BIN_BYTES = 104090            # an iCE40UP5K bitstream is always this long
FULL = os.environ.get("INTFORMER_FULL") == "1"
# the default model (n = 24, d = 16, FFN 64), one short epoch: the structure, not the accuracy, decides the build
DEFAULT_MODEL = ["--epochs", "1", "--patience", "1", "--max-train-windows", "500", "--no-float"]
NEW = ("upduino_v3", "icesugar")


@pytest.fixture(scope="module")
def tiny_program():
    return random_program(np.random.default_rng(1), n=4, m=1, d=4, ffn=8, horizon=2, bits=8)


# ----------------------------------------------------------------------------------------- catalogue

@pytest.mark.parametrize("name", NEW)
def test_entry_agrees_with_its_platform(name):
    """Each entry loads its platform and says what it has (oscillator, UART, LEDs, SPI connector), and
    shares the iCEBreaker's device, fit check, power model and bitstream format."""
    from intformer.boards.top import check_board
    b, ice = BOARDS[name], BOARDS["icebreaker"]
    platform = b.platform_class()()
    assert (platform.device, platform.package) == ("iCE40UP5K", "SG48")
    assert platform.default_clk_frequency == b.osc_hz == 12e6
    assert b.uart == (("uart", 0) in platform.resources)
    assert all(("led", n) in platform.resources for n in b.leds.values())
    assert not b.rgb_leds or ("rgb_led", 0) in platform.resources
    assert (b.spi.connector, b.spi.number) in platform.connectors
    for field in ("family", "device", "fit_device", "estimate_device", "bitstream"):
        assert getattr(b, field) == getattr(ice, field), field
    assert b.top_name == name and b.sram_args is None and b.flash_only_note
    check_board(name, b.default_link)
    check_board(name, "spi")


def test_upduino_runs_from_the_internal_oscillator_and_links_over_spi(tiny_program):
    """UPduino v3: no UART resource (its FT232H is wired to the flash), so SPI by default and the UART
    refused; its clock the SB_HFOSC divided to 12 MHz (the same class every time it is asked for)."""
    from intformer.boards.errors import NoSerialBridge
    from intformer.boards.top import make_top
    b = BOARDS["upduino_v3"]
    cls = b.platform_class()
    assert cls is b.platform_class() and cls.hfosc_div == 2 and cls.default_clk == "SB_HFOSC"
    assert b.default_link == "spi" and not b.clock_pin and b.programmer.tool == "iceprog"
    with pytest.raises(NoSerialBridge, match="no UART resource"):
        make_top(tiny_program, 1, "upduino_v3", link="uart")
    plan = cls().prepare(make_top(tiny_program, 1, "upduino_v3"), name="top")
    pcf = plan.files["top.pcf"]
    for line in ["spi_link_0__cs_n__io 27", "spi_link_0__copi__io 26", "spi_link_0__cipo__io 25",
                 "spi_link_0__sck__io 23", "rgb_led_0__g__io 39", "rgb_led_0__r__io 41", "rgb_led_0__b__io 40"]:
        assert f"set_io {line}\n" in pcf, (line, pcf)
    assert "clk12" not in pcf                                   # the oscillator pin is not used
    rtlil = plan.files["top.il"]
    assert "cell \\SB_HFOSC " in rtlil and 'parameter \\CLKHF_DIV "0b10"' in rtlil


def test_icesugar_top_on_its_pins(tiny_program):
    """iCESugar: the UART on the iCELink's pins (rx 4, tx 6) at 115200 from the 12 MHz on pin 35, LEDs
    green alive, red error, blue activity; with --link spi, PMOD2 (46, 44, 42, 37)."""
    from intformer.boards.top import make_top, platform_class
    top = make_top(tiny_program, 1, "icesugar")
    assert top.link == "uart" and top.divisor == 104
    pcf = platform_class("icesugar")().prepare(top, name="top").files["top.pcf"]
    for line in ["uart_0__rx__io 4", "uart_0__tx__io 6", "clk12_0__io 35", "led_0__io 40", "led_1__io 41",
                 "led_2__io 39"]:
        assert f"set_io {line}\n" in pcf, (line, pcf)
    pcf = platform_class("icesugar")().prepare(make_top(tiny_program, 1, "icesugar", link="spi"),
                                               name="top").files["top.pcf"]
    for line in ["spi_link_0__cs_n__io 46", "spi_link_0__copi__io 44", "spi_link_0__cipo__io 42",
                 "spi_link_0__sck__io 37"]:
        assert f"set_io {line}\n" in pcf, (line, pcf)


# ------------------------------------------------------------------------------------------- program

def fake_build(run: Path, board: str, lanes: int = 1) -> Path:
    """A finished build folder as `intformer build` leaves it, with a stand-in bitstream."""
    folder = run / f"build-{board}-P{lanes}"
    folder.mkdir(parents=True, exist_ok=True)
    bitstream = folder / f"top.{BOARDS[board].bitstream}"
    bitstream.write_bytes(bytes(range(256)) * 40 + b"end")
    (folder / "build.json").write_text(json.dumps({"board": board, "lanes": lanes, "bitstream": str(bitstream),
                                                   "timing_met": True, "top": "link", "status": "complete"}))
    return folder


def make_stub_iceprog(tmp_path: Path, monkeypatch):
    """A stand-in iceprog, alone on PATH, that records its arguments; returns the calls' reader."""
    folder = tmp_path / "bin"
    folder.mkdir()
    log = tmp_path / "iceprog.args"
    tool = folder / "iceprog"
    tool.write_text(f"#!{sys.executable}\nimport json, sys\nopen({str(log)!r}, 'a').write(json.dumps(sys.argv[1:]) + "
                    f"'\\n')\n")
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", str(folder))
    monkeypatch.delenv("ICEPROG", raising=False)
    return lambda: [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.fixture
def stub_iceprog(tmp_path, monkeypatch):
    return make_stub_iceprog(tmp_path, monkeypatch)


@pytest.fixture
def no_drive_env(monkeypatch):
    monkeypatch.delenv("ICESUGAR_DRIVE", raising=False)


def test_program_upduino_writes_the_flash_with_iceprog(tmp_path, stub_iceprog):
    folder = fake_build(tmp_path / "run", "upduino_v3")
    r = json.loads(ok(invoke("program", tmp_path / "run", "--board", "upduino_v3", "--json")).stdout)
    assert r["target"] == "flash" and r["command"] == ["iceprog", str(folder / "top.bin")]
    assert any("CRAM jumpers" in note for note in r["notes"])           # why not SRAM, and what it would take
    out = ok(invoke("program", tmp_path / "run", "--board", "upduino_v3", "--flash", "--drive", tmp_path)).stdout
    assert "--drive is for boards programmed by a copy" in out and "CRAM" not in out
    assert stub_iceprog() == [[str(folder / "top.bin")], [str(folder / "top.bin")]]


def test_program_icesugar_copies_onto_its_drive(tmp_path, no_drive_env, monkeypatch):
    """The copy onto the iCELink drive (a folder here): the bytes land under the bitstream's name, flushed
    with fsync (file and folder) before the command returns; ICESUGAR_DRIVE names the drive as --drive does,
    and a copy already there is replaced."""
    folder = fake_build(tmp_path / "run", "icesugar")
    drive = tmp_path / "iCELink"
    drive.mkdir()
    (drive / "top.bin").write_bytes(b"an older bitstream, longer than nothing")
    synced = []
    real_fsync = os.fsync

    def fsync(fd):
        synced.append(os.fstat(fd).st_size if os.path.isfile(f"/proc/self/fd/{fd}") else "folder")
        return real_fsync(fd)
    monkeypatch.setattr(os, "fsync", fsync)
    r = json.loads(ok(invoke("program", tmp_path / "run", "--board", "icesugar", "--drive", drive, "--json")).stdout)
    data = (folder / "top.bin").read_bytes()
    assert (drive / "top.bin").read_bytes() == data
    assert synced == [len(data), "folder"]
    assert r["command"] == ["copy", str(folder / "top.bin"), str(drive / "top.bin")] and r["target"] == "flash"
    assert f"{len(data)} bytes written" in r["output"]
    assert any("iCELink writes the SPI flash" in n for n in r["notes"])
    assert any("not a mount point" in n for n in r["notes"])            # a plain folder: said, not refused

    (drive / "top.bin").unlink()
    monkeypatch.setenv("ICESUGAR_DRIVE", str(drive))
    out = ok(invoke("program", tmp_path / "run", "--board", "icesugar")).stdout
    assert f"command: copy {folder / 'top.bin'} {drive / 'top.bin'}" in out
    assert (drive / "top.bin").read_bytes() == data


def test_program_icesugar_without_a_drive(tmp_path, no_drive_env, monkeypatch):
    """No drive named, a drive that is not there, and a copy that fails (the board unplugged mid-copy):
    one error line each, exit 2."""
    fake_build(tmp_path / "run", "icesugar")
    line = user_error(invoke("program", tmp_path / "run", "--board", "icesugar"), "no drive was named",
                      "--drive PATH", "ICESUGAR_DRIVE")
    assert "iCELink" in line
    user_error(invoke("program", tmp_path / "run", "--board", "icesugar", "--drive", tmp_path / "gone"),
               "no such drive mounted", "--drive PATH")
    user_error(invoke("program", tmp_path / "run", "--board", "icesugar", env={"ICESUGAR_DRIVE": str(tmp_path / "x")}),
               "no such drive mounted")

    def unplugged(fd):
        raise OSError(5, "Input/output error")
    monkeypatch.setattr(os, "fsync", unplugged)
    (tmp_path / "drive").mkdir()
    user_error(invoke("program", tmp_path / "run", "--board", "icesugar", "--drive", tmp_path / "drive"),
               "failed: Input/output error", "still plugged in")


def test_copy_refuses_a_short_file(tmp_path, monkeypatch):
    """What landed is checked: a drive that kept fewer bytes than were written is an error, not a success."""
    from intformer.boards import program as prog
    src = tmp_path / "top.bin"
    src.write_bytes(b"x" * 1000)
    (tmp_path / "d").mkdir()
    real_stat = Path.stat

    def short_stat(self, *a, **k):
        st = real_stat(self, *a, **k)
        if self.name == "top.bin" and self.parent.name == "d":
            return os.stat_result((st.st_mode, st.st_ino, st.st_dev, st.st_nlink, st.st_uid, st.st_gid, 512,
                                   int(st.st_atime), int(st.st_mtime), int(st.st_ctime)))
        return st
    monkeypatch.setattr(Path, "stat", short_stat)
    with pytest.raises(IntformerError, match="512 bytes on the drive, not the bitstream's 1000"):
        prog.copy_to_drive(src, tmp_path / "d")


# ------------------------------------------------------------------------------------- a real build

@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, torch_one_thread):
    out = tmp_path_factory.mktemp("up5k_boards") / "run"
    ok(invoke("train", *(DEFAULT_MODEL if FULL else SMALL), "--out", out, "--json"))
    return out


@pytest.mark.slow
def test_upduino_bitstream(run_dir, tmp_path, monkeypatch):
    """The real flow for the UPduino v3 (yosys, nextpnr-ice40, icepack): P = 1 (FULL: the estimate's
    choice) with the SPI link at the 12 MHz of its internal oscillator; the report's fields, and the
    bitstream programmed with iceprog."""
    lanes = [] if FULL else ["--lanes", "1"]
    r = json.loads(ok(invoke("build", run_dir, "--board", "upduino_v3", *lanes, "--json")).stdout)
    assert (r["board"], r["device"], r["top"], r["status"]) == ("upduino_v3", "ice40-up5k", "link", "complete")
    assert r["lanes"] == 1 or FULL
    assert r["clock_mhz"] == 12.0 and r["clock_source"] == "oscillator" and "pll" not in r
    assert r["timing_met"] is True and r["fmax_mhz"] >= 12.0
    res = r["resources"]
    assert res["LC"]["available"] == 5280 and res["PLL"]["used"] == 0 and res["DSP"]["used"] >= 1
    assert 500 < res["LC"]["used"] <= 5280 and res["BRAM"]["used"] >= 1
    assert r["cycles_per_inference"] >= runfolder_macs(run_dir) and r["latency_us"] == pytest.approx(
        r["cycles_per_inference"] / 12.0)
    assert 0 < r["energy_uj_estimate"] and 0.5 < r["power_mw_estimate"] < 100
    bitstream = Path(r["bitstream"])
    assert bitstream == run_dir / f"build-upduino_v3-P{r['lanes']}" / "top.bin"
    assert bitstream.stat().st_size == UP5K_BIN_BYTES
    pcf = (bitstream.parent / "top.pcf").read_text()
    assert "set_io spi_link_0__cs_n__io 27\n" in pcf and "set_io rgb_led_0__g__io 39\n" in pcf
    calls = make_stub_iceprog(tmp_path, monkeypatch)            # (after the build: PATH has only iceprog)
    ok(invoke("program", run_dir, "--board", "upduino_v3"))
    assert calls() == [[str(bitstream)]]


def test_upduino_refuses_a_pll_clock(run_dir, tmp_path):
    """The UPduino's clock is the internal oscillator, which no PLL is generated for: --clock is refused
    with one line (before any synthesis), naming what to do instead."""
    out = tmp_path / "clocked"
    user_error(invoke("build", run_dir, "--board", "upduino_v3", "--lanes", "1", "--clock", "18", "--out", out),
               "internal oscillator", "without --clock", only_line=False)
    assert not (out / "build.json").exists()


def runfolder_macs(run: Path) -> int:
    from intformer.model import runfolder
    return runfolder.open_run(run).program.macs()
