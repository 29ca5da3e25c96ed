"""`intformer build` for real: a small trained model to an iCEBreaker bitstream with the YoWASP tools (yosys,
nextpnr-ice40, icepack; about a minute on two cores), through the PLL, with every report field checked; and
the refusals: a lane count that does not fit, a board without a serial link, a rebuild without --force, a
design that misses timing (a small stand-in design, to keep it quick).

The model is window 8, d_model 8, ffn 16 rather than smaller: below 256 bits a buffer memory is built from
flip-flops (`accel.plan`), which on the UP5K costs more logic cells than the block RAM of a slightly larger
model.
"""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from intformer.boards import build as B
from intformer.boards import power
from intformer.model import runfolder
from intformer.model.errors import IntformerError
from cli_helpers import SMALL, invoke, ok, user_error

pytestmark = pytest.mark.usefixtures("torch_one_thread")

UP5K_BIN_BYTES = 104090            # an iCE40UP5K bitstream is always this long


def user_error_build(result, *words):
    """A build's progress lines may stand beside its one error line on stderr."""
    return user_error(result, *words, only_line=False)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, torch_one_thread):
    out = tmp_path_factory.mktemp("board_build") / "run"
    ok(invoke("train", *SMALL, "--out", out, "--json"))
    return out


@pytest.fixture(scope="module")
def built(run_dir):
    """The real build at the default clock (--clock auto): P = 1, a first build at the 12 MHz oscillator for
    its Fmax, then the build behind the iCE40 PLL at the fastest clock it makes up to 90 % of that Fmax."""
    result = ok(invoke("build", run_dir, "--board", "icebreaker", "--lanes", "1", "--json"))
    return json.loads(result.stdout), result.stderr


def test_build_report(run_dir, built):
    r, progress = built
    for key in ("board", "device", "clock_mhz", "fmax_mhz", "timing_met", "resources", "cycles_per_inference",
                "latency_us", "energy_uj_estimate", "bitstream", "power_mw_estimate", "lanes", "top"):
        assert key in r, key
    assert (r["board"], r["device"], r["lanes"], r["top"]) == ("icebreaker", "ice40-up5k", 1, "link")
    clock = r["clock_mhz"]
    probe, final = r["clock_search"][0], r["clock_search"][-1]
    assert (probe["clock_mhz"], probe["clock_source"], probe["timing_met"]) == (12.0, "oscillator", True)
    assert final == {k: r[k] for k in final} and clock == pytest.approx(final["clock_mhz"])
    assert B.MIN_CLOCK_GAIN * 12 <= clock <= B.CLOCK_MARGIN * max(t["fmax_mhz"] for t in r["clock_search"])
    assert r["clock_source"] == "PLL" and r["pll"]["DIVQ"] >= 1 and clock * 1e6 in B.ice40_pll_outputs(12e6)
    assert r["timing_met"] is True and r["fmax_mhz"] >= clock and r["status"] == "complete"
    assert any("--clock auto" in n for n in r["notes"])
    assert not (run_dir / "build-icebreaker-P1" / "clock-probe").exists()   # the probe build is not left behind
    res = r["resources"]
    assert {"LC", "LUT", "FF", "DSP", "BRAM", "PLL"} <= set(res)
    assert res["LC"]["available"] == 5280 and res["DSP"]["available"] == 8 and res["BRAM"]["available"] == 30
    for name, v in res.items():
        assert 0 <= v["used"] <= v["available"], name
    assert res["PLL"]["used"] == 1 and res["DSP"]["used"] >= 1 and 500 < res["LC"]["used"]
    assert res["LUT"]["used"] <= res["LC"]["used"] and res["FF"]["used"] <= res["LC"]["used"]

    # cycles: what the Amaranth simulator says too, and at least the MAC-bound
    import numpy as np
    from intformer.accel.simulate import simulate
    program = runfolder.open_run(run_dir).program
    x = np.zeros((1, program.input.rows, program.input.cols), dtype=np.int64)
    _, cycles = simulate(program, x, 1, read_buffers=False, engine="amaranth")
    assert r["cycles_per_inference"] == cycles >= program.macs()
    assert r["latency_us"] == pytest.approx(cycles / clock)
    used = {k: v["used"] for k, v in res.items()}
    mw = power.estimate_power_mw("ice40-up5k", used, clock)["total_mw"]
    assert r["power_mw_estimate"] == pytest.approx(mw, rel=1e-3)
    assert r["energy_uj_estimate"] == pytest.approx(mw * r["latency_us"] / 1000)
    assert 0.5 < r["power_mw_estimate"] < 100            # an UP5K core at 20 to 50 MHz: milliwatts

    bitstream = Path(r["bitstream"])
    assert bitstream == run_dir / "build-icebreaker-P1" / "top.bin" and bitstream.stat().st_size == UP5K_BIN_BYTES
    assert json.loads((bitstream.parent / "build.json").read_text()) == r
    for stage in ("[1/5] resource check", "[3/5] synthesis (yosys)", "[4/5] place and route", "[5/5] cycles"):
        assert stage in progress, progress


def test_build_table_and_rebuild_refused(run_dir, built, capsys):
    from intformer.build_cmd import print_build
    print_build(built[0])
    text = capsys.readouterr().out
    for words in ("icebreaker", f"{built[0]['clock_mhz']:g} MHz (PLL from 12 MHz)", "timing met", "LC", "BRAM", "cycles", "uJ per inference",
                  "ESTIMATE", "top.bin"):
        assert words in text, (words, text)
    user_error_build(invoke("build", run_dir, "--board", "icebreaker", "--lanes", "1"), "already exists", "--force")


def test_program_the_real_build(run_dir, built, tmp_path, monkeypatch):
    folder = tmp_path / "bin"
    folder.mkdir()
    log = tmp_path / "args"
    tool = folder / "iceprog"
    tool.write_text(f"#!{os.sys.executable}\nimport sys\nopen({str(log)!r}, 'w').write(' '.join(sys.argv[1:]))\n")
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("ICEPROG", raising=False)
    ok(invoke("program", run_dir, "--board", "icebreaker"))
    assert log.read_text() == f"-S {built[0]['bitstream']}"


def test_too_many_lanes_refused_before_synthesis(run_dir):
    line = user_error_build(invoke("build", run_dir, "--board", "icebreaker", "--lanes", "64"),
                      "does not fit the ice40-up5k", "--lanes")
    assert "multipliers" in line or "logic" in line or "block RAM" in line
    assert not (run_dir / "build-icebreaker-P64" / "build.json").exists()


def test_board_without_serial_link_and_unknown_board(run_dir, tmp_path):
    user_error_build(invoke("build", run_dir, "--board", "orangecrab", "--link", "uart", "--lanes", "1", "--out",
                            tmp_path / "oc"), "UART", "--link spi", "--bare")
    user_error_build(invoke("build", run_dir, "--board", "de0nano"), "unknown board", "icebreaker")
    user_error_build(invoke("build", run_dir, "--board", "icebreaker", "--clock", "300", "--out", tmp_path / "x"),
               "16 to 275 MHz")


def test_missed_timing_names_a_clock_that_would_work(run_dir, tmp_path):
    """A stand-in design (a 48-bit adder chain) asked for about 250 MHz from the PLL: nextpnr's Fmax is far
    lower, and the error names a --clock that would meet it; the report stays in the build folder."""
    from amaranth.hdl import Elaboratable, Module, Signal
    from amaranth.lib import io

    class Chain(Elaboratable):
        def elaborate(self, platform):
            m = Module()
            a, b, c, d = (Signal(48, name=n) for n in "abcd")
            m.d.sync += [a.eq(a + 1), b.eq(b ^ a), c.eq(c + 3), d.eq(a + b + c + d)]
            m.submodules.led = led = io.Buffer("o", platform.request("led", 0, dir="-"))
            m.d.comb += led.o.eq(d[-1])
            return m

    program = runfolder.open_run(run_dir).program
    out = B.prepare_out(tmp_path / "slow", False)
    with pytest.raises(IntformerError) as exc:
        B.build(B.BuildRequest(program, "icebreaker", 1, 250, out, top_factory=lambda *a: Chain()))
    message = str(exc.value)
    assert "timing not met" in message and "--clock" in message and "fewer lanes" in message
    report = json.loads((out / "build.json").read_text())
    assert report["timing_met"] is False and report["fmax_mhz"] < report["clock_mhz"]
    assert report["status"] == "timing not met"
    suggested = float(message.split("--clock ")[1].split()[0])
    assert suggested < report["fmax_mhz"]


def test_pll_settings():
    p = B.ice40_pll(12e6, 18e6)
    assert p["f_out"] == 18e6 and 12e6 * (p["DIVF"] + 1) / (p["DIVR"] + 1) / 2 ** p["DIVQ"] == 18e6
    assert B.ice40_pll(12e6, 16e6)["f_out"] == pytest.approx(15.9375e6)      # the nearest the PLL makes
    e = B.ecp5_pll(48e6, 60e6)
    assert e["f_out"] == 60e6 and 400e6 <= 60e6 * e["CLKOP_DIV"] <= 800e6
    assert B.ecp5_pll(25e6, 33.3e6)["f_out"] == pytest.approx(33.3e6, rel=0.01)
    with pytest.raises(IntformerError):
        B.ice40_pll(12e6, 5e6)


def test_report_parsing():
    report = {"fmax": {"$PACKER_GND_NET_$glb_clk": {"achieved": 300.0, "constraint": 12.0},
                       "clk": {"achieved": 27.5, "constraint": 24.0}},
              "utilization": {"ICESTORM_LC": {"used": 3000, "available": 5280},
                              "ICESTORM_DSP": {"used": 7, "available": 8},
                              "ICESTORM_RAM": {"used": 13, "available": 30}}}
    clocks, util = B.parse_report(report, "ice40")
    assert clocks == {"clk": (27.5, 24.0)} and util["LC"] == (3000, 5280) and util["BRAM"] == (13, 30)
    log = ("Info: Max frequency for clock '$PACKER_GND_NET_$glb_clk': 386.25 MHz (PASS at 12.00 MHz)\n"
           "Info: Max frequency for clock                  'acc.clk': 29.13 MHz (FAIL at 48.00 MHz)\n")
    assert B.parse_log_fmax(log) == {"acc.clk": (29.13, 48.0)}
    log = ("Info: \t         ICESTORM_LC:    6807/   5280   128%\n"
           "Info: \t        ICESTORM_RAM:      13/     30    43%\n")
    assert B._short_of(log) == ["ICESTORM_LC 6807 used, 5280 available"]
    ecp5 = {"fmax": {"clk": {"achieved": 61.0, "constraint": 48.0}},
            "utilization": {"TRELLIS_COMB": {"used": 5000, "available": 24288},
                            "TRELLIS_FF": {"used": 3000, "available": 24288},
                            "MULT18X18D": {"used": 4, "available": 28}, "DP16KD": {"used": 9, "available": 56}}}
    _, util = B.parse_report(ecp5, "ecp5")
    assert util == {"LUT": (5000, 24288), "FF": (3000, 24288), "DSP": (4, 28), "BRAM": (9, 56)}


def test_power_model_is_monotonic_and_documented():
    base = power.estimate_power_mw("ice40-up5k", {"LC": 1000, "DSP": 2, "BRAM": 4}, 12.0)
    more = power.estimate_power_mw("ice40-up5k", {"LC": 2000, "DSP": 2, "BRAM": 4}, 12.0)
    faster = power.estimate_power_mw("ice40-up5k", {"LC": 1000, "DSP": 2, "BRAM": 4}, 24.0)
    assert base["total_mw"] < more["total_mw"] and base["total_mw"] < faster["total_mw"]
    assert power.estimate_power_mw("ecp5-25f", {}, 48.0)["static_mw"] > base["total_mw"]
    e = power.energy_uj("ice40-up5k", {"LC": 1000}, 12.0, 1200)
    assert e["energy_uj"] == pytest.approx(e["total_mw"] * 100 / 1000)
    with pytest.raises(IntformerError):
        power.model("nosuchfpga")
    assert "datasheet" in power.__doc__ and "ESTIMATES" in power.__doc__


@pytest.mark.skipif(__import__("shutil").which("vivado") is not None, reason="Vivado present: it would build")
def test_spartan7_without_vivado_gives_the_yosys_estimate(run_dir, tmp_path):
    result = ok(invoke("build", run_dir, "--board", "cmod_s7", "--lanes", "1", "--out", tmp_path / "cmod", "--json"))
    r = json.loads(result.stdout)
    assert r["bitstream"] is None and r["fmax_mhz"] is None and r["timing_met"] is None
    assert "needs Vivado" in r["message"] and "needs Vivado" in result.stderr
    assert r["device"] == "xc7s25" and r["resources"]["LUT"]["available"] == 14600
    assert 0 < r["resources"]["LUT"]["used"] < 14600 and r["resources"]["DSP"]["used"] >= 1
    assert r["cycles_per_inference"] >= runfolder.open_run(run_dir).program.macs()
    assert r["energy_uj_estimate"] > 0 and r["status"] == "estimate only"
    assert "UnusedElaboratable" not in result.stderr


def test_fastest_clock_rules():
    """`fastest_clock`: the fastest PLL output up to 90 % of Fmax that makes the baud rate within 2 %; none
    when that is less than 10 % over the oscillator, or on a board without a PLL here."""
    from intformer.boards.catalogue import board
    from intformer.boards.uart import divisor_for
    ice = board("icebreaker")
    f = B.fastest_clock(ice, 28.4e6, 115200)
    assert f in B.ice40_pll_outputs(12e6) and 13.2e6 <= f <= 0.9 * 28.4e6
    assert not [g for g in B.ice40_pll_outputs(12e6) if f < g <= 0.9 * 28.4e6]    # none faster fits
    fast = B.fastest_clock(ice, 28.4e6, 3_000_000)
    assert fast <= f and divisor_for(fast, 3_000_000)                 # 3 Mbaud rules out some outputs
    assert B.fastest_clock(ice, 14e6, 115200) is None                 # 90 % of 14 MHz: under 10 % more
    assert B.fastest_clock(board("upduino_v3"), 100e6, 115200) is None    # the internal oscillator: no PLL
    ecp = B.fastest_clock(board("orangecrab"), 70e6, None)
    assert 48e6 * 1.1 <= ecp <= 63e6 and ecp in B.ecp5_pll_outputs(48e6)


def test_clock_option_refuses_a_word():
    """A usage error (click's, exit 2) naming both forms, before any work."""
    result = invoke("build", "nowhere", "--board", "icebreaker", "--clock", "fast")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "'fast' is neither a clock in MHz (at least 1) nor 'auto'" in result.stderr
