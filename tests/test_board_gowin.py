"""The Gowin boards (Sipeed Tang Nano 9K, Tang Primer 20K) through the open flow: yosys synth_gowin,
nextpnr-himbaechel-gowin (YoWASP) and apicula's gowin_pack.

Quick: the catalogue entries (platform, part, chip database, programmer command), and the link top of each
board elaborated into amaranth's Apicula build files (the .cst pins of the USB-UART and the LEDs, the yosys
script, the nextpnr-himbaechel command that replaces amaranth's nextpnr-gowin). Real (slow: two and a
half minutes of CPU, most of it nextpnr's placement): the bare accelerator of a small random program at P = 1
on the Tang Nano 9K (INTFORMER_FULL=1: the default model's size at P = 8), to a bitstream, its report's
resources, Fmax and cycles (those of the simulator).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from intformer.boards import build as B
from intformer.boards import power
from intformer.boards.catalogue import board
from intformer.boards.program import command
from program_factory import random_program

GOWIN_SYNC = "1010010111000011"           # the 0xA5C3 sync word that starts a Gowin bitstream after its preamble


@pytest.mark.parametrize("name, part, chipdb, tool_board", [
    ("tang_nano_9k", "GW1NR-LV9QN88PC6/I5", "GW1N-9C", "tangnano9k"),
    ("tang_primer_20k", "GW2A-LV18PG256C8/I7", "GW2A-18C", "tangprimer20k")])
def test_catalogue_entry(name, part, chipdb, tool_board, monkeypatch):
    b = board(name)
    platform = b.platform_class()()
    assert (b.family, b.bitstream, b.osc_hz, b.fit_device) == ("gowin", "fs", 27e6, None)
    assert (platform.part, platform._chipdb_device, platform.default_clk_frequency) == (part, chipdb, 27e6)
    assert b.uart and b.default_link == "uart" and ("uart", 0) in platform.resources
    assert set(b.leds) == {"alive", "busy", "error", "activity"}
    assert all(("led", n) in platform.resources for n in b.leds.values())
    from intformer.accel.resources import DEVICES
    assert b.device in power.MODELS and b.estimate_device in DEVICES
    monkeypatch.delenv("OPENFPGALOADER", raising=False)
    assert command(name, "top.fs", flash=False)[0] == ["openFPGALoader", "-b", tool_board, "-m", "top.fs"]
    assert command(name, "top.fs", flash=True)[0] == ["openFPGALoader", "-b", tool_board, "-f", "top.fs"]


def _program():
    return random_program(np.random.default_rng(15), n=8, d=8, ffn=16)


def _prepared(tmp_path, name, top="link", seed=None):
    """The Gowin build files and commands of `name`'s top (phase 3 of `B.build`), without running a tool."""
    request = B.BuildRequest(_program(), name, 1, out_dir=tmp_path, top=top, seed=seed)
    job = B._Build(request, board(name), Path(tmp_path))
    B._choose_clock(job)
    return job, B._elaborate_gowin(job, B._top_factory(request))


@pytest.mark.parametrize("name, family, rx, tx, leds", [
    ("tang_nano_9k", "gw1n", "18", "17", ("10", "11", "13", "14")),
    ("tang_primer_20k", "gw2a", "T13", "M11", ("C13", "A13", "N16", "N14"))])
def test_link_top_build_files(tmp_path, name, family, rx, tx, leds):
    job, commands = _prepared(tmp_path, name, seed=3)
    b = board(name)
    platform = b.platform_class()()
    assert [c[0] for c in commands] == ["yosys", B.GOWIN_PNR, "gowin_pack"]
    pnr = commands[1]
    for a, v in (("--device", platform.part), ("--freq", "27"), ("--json", "top.syn.json"), ("--seed", "3"),
                 ("--report", "report.json"), ("--write", "top.pnr.json")):
        assert pnr[pnr.index(a) + 1] == v, (a, pnr)
    assert f"family={platform._chipdb_device}" in pnr and "cst=top.cst" in pnr
    assert commands[2][commands[2].index("-d") + 1] == platform._chipdb_device and "top.pnr.json" in commands[2]
    ys = (tmp_path / "top.ys").read_text()
    assert f"synth_gowin -family {family}" in ys and "stat -json" in ys and B.RENAME_HIDE in ys
    cst = (tmp_path / "top.cst").read_text()
    assert f'IO_LOC "uart_0__rx__io" {rx};' in cst and f'IO_LOC "uart_0__tx__io" {tx};' in cst
    for pin in leds:                       # led 0 to 3: alive, busy, error, activity
        assert f" {pin};" in cst, (pin, cst)
    assert any("multipliers" in n and "MULT9X9" in n for n in job.notes)


def test_other_clock_is_the_oscillator(tmp_path):
    request = B.BuildRequest(_program(), "tang_nano_9k", 1, clock_mhz=50, out_dir=tmp_path)
    job = B._Build(request, board("tang_nano_9k"), Path(tmp_path))
    B._choose_clock(job)
    assert job.clock_hz == 27e6 and job.pll is None and "27 MHz oscillator" in job.notes[0]


def test_gowin_utilisation():
    util = {"LUT4": {"used": 3396, "available": 8640}, "DFF": {"used": 1695, "available": 6480},
            "ALU": {"used": 1110, "available": 6480}, "BSRAM": {"used": 4, "available": 26},
            "MULT9X9": {"used": 3, "available": 40}, "MULT18X18": {"used": 5, "available": 20},
            "RAM16SDP4": {"used": 46, "available": 270}, "IOB": {"used": 2, "available": 276}}
    clocks, res = B.parse_report({"fmax": {"cd_sync.clk": {"achieved": 71.1, "constraint": 27}}, "utilization": util},
                                 "gowin")
    assert clocks == {"cd_sync.clk": (71.1, 27.0)}
    assert res["DSP"] == (7, 20)                  # five 18x18 and three 9x9 (two per 18x18, rounded up)
    assert res["LUT"] == (3396, 8640) and res["FF"] == (1695, 6480) and res["BRAM"] == (4, 26)
    assert res["MULT9X9"] == (3, 40) and res["SSRAM"] == (46, 270) and "IO" not in res


FULL = os.environ.get("INTFORMER_FULL") == "1"      # the default model's size at P = 8 (about 7 minutes)
LANES = 8 if FULL else 1


@pytest.fixture(scope="module")
def nano_bare(tmp_path_factory):
    out = tmp_path_factory.mktemp("nano9k")
    program = random_program(np.random.default_rng(15)) if FULL else _program()
    return program, B.build(B.BuildRequest(program, "tang_nano_9k", LANES, out_dir=out, top="bare"))


@pytest.mark.slow
def test_nano_9k_bare_bitstream(nano_bare):
    """The real build: bitstream, report, and the cycles of the simulator."""
    from intformer.accel.simulate import simulate
    program, r = nano_bare
    bitstream = Path(r["bitstream"])
    assert bitstream.name == "top.fs" and bitstream.stat().st_size > 1_000_000
    lines = bitstream.read_text().splitlines()
    assert GOWIN_SYNC in lines[:8] and set("".join(lines[:200])) <= {"0", "1"}
    assert json.loads((bitstream.parent / "build.json").read_text()) == r
    assert (r["board"], r["device"], r["lanes"], r["top"], r["logic_lanes"]) == ("tang_nano_9k", "gw1nr-9", LANES, "bare", 0)
    assert r["timing_met"] and r["fmax_mhz"] > 27 and r["clock_mhz"] == 27 and r["clock_source"] == "oscillator"
    res = r["resources"]
    assert res["LUT"]["available"] == 8640 and res["DSP"]["available"] == 20 and res["BRAM"]["available"] == 26
    assert 300 < res["LUT"]["used"] < 8640 and 100 < res["FF"]["used"] and res["DSP"]["used"] >= 1
    assert any(k.startswith("MULT") for k in res)             # the MAC lane multiplies in a block
    x = np.zeros((1, program.input.rows, program.input.cols), dtype=np.int64)
    _, cycles = simulate(program, x, LANES, read_buffers=False, engine="amaranth")
    assert r["cycles_per_inference"] == cycles >= program.macs()
    assert r["latency_us"] == pytest.approx(cycles / 27.0)
    mw = power.estimate_power_mw("gw1nr-9", {k: v["used"] for k, v in res.items()}, 27.0)["total_mw"]
    assert r["power_mw_estimate"] == pytest.approx(mw, rel=1e-3) and 12 < mw < 200
    assert r["energy_uj_estimate"] == pytest.approx(mw * r["latency_us"] / 1000)
    assert any("multipliers" in n for n in r["notes"]) and any("no pre-synthesis fit check" in n for n in r["notes"])
