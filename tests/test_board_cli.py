"""`intformer program` with a stand-in programmer that records its arguments (and a missing one, a failing one,
a missing bitstream), and `intformer infer` against a fake device on a pseudo-terminal: a thread that speaks
`boards.protocol` and answers with `model.intref`, in variants that corrupt, drop, garble or refuse replies.
"""
from __future__ import annotations

import json
import os
import select
import stat
import threading
import tty
from pathlib import Path

import numpy as np
import pytest

from intformer.boards import protocol as P
from intformer.model import runfolder
from intformer.model.intref import run_program
from cli_helpers import SMALL as TINY, invoke, ok, user_error

pytestmark = pytest.mark.usefixtures("torch_one_thread")



@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, torch_one_thread):
    out = tmp_path_factory.mktemp("board_cli") / "run"
    ok(invoke("train", *TINY, "--out", out, "--json"))
    return out


def fake_build(run_dir: Path, board: str, lanes: int = 1, **extra) -> Path:
    """A finished build folder as `intformer build` leaves it (build.json + bitstream), without the build."""
    folder = run_dir / f"build-{board}-P{lanes}"
    folder.mkdir(exist_ok=True)
    suffix = "bin" if board == "icebreaker" else "bit"
    bitstream = folder / f"top.{suffix}"
    bitstream.write_bytes(b"\xff\x00bitstream")
    info = {"board": board, "lanes": lanes, "bitstream": str(bitstream), "timing_met": True, "top": "link",
            "status": "complete", **extra}
    (folder / "build.json").write_text(json.dumps(info))
    return folder


@pytest.fixture
def programmer_bin(tmp_path, monkeypatch):
    """A folder on PATH (and nothing else) for stand-in programmers; returns (folder, make(name, rc, text))."""
    folder = tmp_path / "bin"
    folder.mkdir()
    log = tmp_path / "calls.jsonl"
    for var in ("ICEPROG", "OPENFPGALOADER", "DFU_UTIL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PATH", str(folder))

    def make(name, rc=0, text="done"):
        path = folder / name
        path.write_text(f"#!{os.sys.executable}\nimport json, sys\n"
                        f"name = sys.argv[0].rsplit('/', 1)[-1]\n"
                        f"open({str(log)!r}, 'a').write(json.dumps([name] + sys.argv[1:]) + '\\n')\n"
                        f"print({text!r})\nsys.exit({rc})\n")
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
        return path

    def calls():
        return [json.loads(l) for l in log.read_text().splitlines()] if log.exists() else []

    return make, calls


# ------------------------------------------------------------------------------------------- program

def test_program_icebreaker_sram_and_flash(run_dir, programmer_bin):
    make, calls = programmer_bin
    make("iceprog")
    folder = fake_build(run_dir, "icebreaker")
    result = json.loads(ok(invoke("program", run_dir, "--board", "icebreaker", "--json")).stdout)
    assert result["target"] == "SRAM" and result["bitstream"] == str(folder / "top.bin")
    ok(invoke("program", run_dir, "--board", "icebreaker", "--flash"))
    assert calls() == [["iceprog", "-S", str(folder / "top.bin")], ["iceprog", str(folder / "top.bin")]]


def test_program_openfpgaloader_and_dfu_util(run_dir, programmer_bin):
    make, calls = programmer_bin
    make("openFPGALoader")
    make("dfu-util")
    ulx = fake_build(run_dir, "ulx3s", lanes=2)
    arty = fake_build(run_dir, "arty_s7")
    crab = fake_build(run_dir, "orangecrab", top="bare")
    ok(invoke("program", run_dir, "--board", "ulx3s"))
    ok(invoke("program", run_dir, "--board", "ulx3s", "--flash", "--lanes", "2"))
    ok(invoke("program", run_dir, "--board", "arty_s7", "--flash"))
    out = ok(invoke("program", run_dir, "--board", "orangecrab")).stdout
    assert "always writes the flash" in out and "--bare" in out
    assert calls() == [
        ["openFPGALoader", "-b", "ulx3s", "-m", str(ulx / "top.bit")],
        ["openFPGALoader", "-b", "ulx3s", "-f", str(ulx / "top.bit")],
        ["openFPGALoader", "-b", "arty_s7_50", "-f", str(arty / "top.bit")],
        ["dfu-util", "-d", "1209:5af0", "-a", "0", "-D", str(crab / "top.bit")],
    ]


def test_program_missing_tool_names_the_package(run_dir, programmer_bin):
    fake_build(run_dir, "icebreaker")
    user_error(invoke("program", run_dir, "--board", "icebreaker"), "iceprog not found", "fpga-icestorm")
    fake_build(run_dir, "cmod_s7")
    user_error(invoke("program", run_dir, "--board", "cmod_s7"), "openFPGALoader not found", "openfpgaloader")


def test_program_failing_tool_says_so(run_dir, programmer_bin):
    make, calls = programmer_bin
    make("iceprog", rc=2, text="Can't find iCE FTDI USB device")
    fake_build(run_dir, "icebreaker")
    line = user_error(invoke("program", run_dir, "--board", "icebreaker"), "iceprog failed", "connected")
    assert "Can't find iCE FTDI USB device" in line
    assert len(calls()) == 1


def test_program_without_a_build(run_dir, programmer_bin, tmp_path):
    make, calls = programmer_bin
    make("openFPGALoader")
    user_error(invoke("program", run_dir, "--board", "cmod_s7", "--lanes", "7"), "no bitstream",
               "intformer build")
    unfinished = run_dir / "build-ulx3s-P5"
    unfinished.mkdir()
    user_error(invoke("program", run_dir, "--board", "ulx3s", "--lanes", "5"), "did not finish")
    user_error(invoke("program", tmp_path / "nowhere", "--board", "ulx3s"), "no such run folder")
    user_error(invoke("program", run_dir, "--board", "nosuchboard"), "unknown board")
    fake_build(run_dir, "ulx3s", lanes=3, timing_met=False, fmax_mhz=20.0, clock_mhz=25.0)
    user_error(invoke("program", run_dir, "--board", "ulx3s", "--lanes", "3"), "did not meet timing", "--force")
    ok(invoke("program", run_dir, "--board", "ulx3s", "--lanes", "3", "--force"))
    assert calls() == [["openFPGALoader", "-b", "ulx3s", "-m", str(run_dir / "build-ulx3s-P3" / "top.bit")]]


# ---------------------------------------------------------------------------------------- fake device

class FakeDevice:
    """The board, as seen from its serial port: a pseudo-terminal whose far end a thread answers.

    mode: "ok"; "corrupt" (the first RESULT has a flipped payload bit and so a bad CRC: the host must
    resend); "drop" (the first INFER gets no reply); "error" (the first INFER gets ERROR 1, bad CRC);
    "wrong" (window 1's RESULT is well-formed but one word is off: a mismatch); "mute" (INFER is never
    answered); "garbage" (noise before every reply). A stateful program (a detector's smoothed score) is
    answered as the chip does: each window computed after those since the last INFO, one stream."""

    def __init__(self, program, lanes: int = 1, mode: str = "ok"):
        self.program, self.mode = program, mode
        self.info = P.DeviceInfo.from_program(program, lanes)
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self.decoder = P.FrameDecoder()
        self.infers = 0
        self.stream = []                                      # windows computed since the last INFO
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _codes(self, payload: bytes) -> np.ndarray:
        x = self.program.input                                # 1 byte per code, 2 (LE) over 8 bits
        return P.infer_codes(payload, self.info).reshape(1, x.rows, x.cols)

    def _reply(self, frame: P.Frame) -> bytes:
        if frame.cmd == P.INFO:
            self.stream = []
            return P.encode_frame(P.INFO_REPLY, frame.seq, self.info.payload())
        if frame.cmd != P.INFER:
            return P.encode_frame(P.ERROR, frame.seq, bytes([P.ERR_COMMAND]))
        self.infers += 1
        first = self.infers == 1
        if self.mode == "mute" or (self.mode == "drop" and first):
            return b""
        if self.mode == "error" and first:
            return P.encode_frame(P.ERROR, frame.seq, bytes([P.ERR_CRC]))
        self.stream.append(self._codes(frame.payload)[0])
        if not self.program.stateful:
            self.stream = self.stream[-1:]
        words = run_program(self.program, np.stack(self.stream))[-1]
        if self.mode == "wrong" and self.infers == 2:
            words = words.copy()
            words[0] += 1
        data = bytearray(P.encode_frame(P.RESULT, frame.seq, P.result_payload(words)))
        if self.mode == "corrupt" and first:
            data[P.HEADER_LEN] ^= 0x10
        if self.mode == "garbage":
            data = bytearray(b"\x00\xa5\x13noise") + data
        return bytes(data)

    def _serve(self):
        while not self.stop.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.02)
            if not ready:
                continue
            try:
                data = os.read(self.master, 4096)
            except OSError:
                return
            for frame in self.decoder.feed(data):
                reply = self._reply(frame)
                if reply:
                    os.write(self.master, reply)

    def close(self):
        self.stop.set()
        self.thread.join(timeout=2)
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture
def device(run_dir):
    made = []

    def make(mode="ok"):
        dev = FakeDevice(runfolder.open_run(run_dir).program, mode=mode)
        made.append(dev)
        return dev

    yield make
    for dev in made:
        dev.close()


def infer(run_dir, dev, *extra):
    return invoke("infer", run_dir, "--port", dev.path, "--timeout", "0.3", "--json", *extra)


def test_infer_all_windows_bit_exact(run_dir, device):
    dev = device("ok")
    r = json.loads(ok(infer(run_dir, dev, "--windows", "12")).stdout)
    counts = (r["windows"], r["sent"], r["answered"], r["matched"], r["mismatched"], r["failed"])
    assert counts == (12, 12, 12, 12, 0, 0)
    assert r["frames_sent"] == 12 and r["retries"] == 0 and r["windows_per_second"] > 0
    assert r["device"]["checksum"] == f"{P.program_checksum(runfolder.open_run(run_dir).program):08x}"
    text = ok(invoke("infer", run_dir, "--port", dev.path, "--windows", "3", "--in-flight", "1")).stdout
    assert "all bit-exact" in text and "windows/s" in text


@pytest.mark.parametrize("mode", ["corrupt", "drop", "error"])
def test_infer_retries_a_lost_or_refused_reply(run_dir, device, mode):
    dev = device(mode)
    r = json.loads(ok(infer(run_dir, dev, "--windows", "6")).stdout)
    assert (r["matched"], r["mismatched"], r["failed"]) == (6, 0, 0)
    assert r["retries"] == 1 and r["frames_sent"] == 7
    if mode == "corrupt":
        assert r["decode_errors"] >= 1 and r["timeouts"] == 1
    if mode == "drop":
        assert r["timeouts"] == 1
    if mode == "error":
        assert r["device_errors"] == {"bad CRC": 1} and r["timeouts"] == 0


def test_infer_garbage_on_the_line_is_skipped(run_dir, device):
    r = json.loads(ok(infer(run_dir, device("garbage"), "--windows", "5")).stdout)
    assert r["matched"] == 5 and r["retries"] == 0 and r["decode_errors"] >= 5


def test_infer_counts_a_mismatch_and_exits_1(run_dir, device):
    result = infer(run_dir, device("wrong"), "--windows", "4", "--in-flight", "1")
    assert result.exit_code == 1, result.output
    r = json.loads(result.stdout)
    assert (r["answered"], r["matched"], r["mismatched"], r["failed"]) == (4, 3, 1, 0)
    assert r["first_mismatch"]["window"] == 1 and r["first_mismatch"]["word"] == 0


def test_infer_a_mute_device_fails_every_window_after_retries(run_dir, device):
    result = infer(run_dir, device("mute"), "--windows", "3", "--retries", "1", "--timeout", "0.15")
    assert result.exit_code == 1, result.output
    r = json.loads(result.stdout)
    assert (r["sent"], r["answered"], r["failed"]) == (3, 0, 3)
    assert r["frames_sent"] == 6 and r["retries"] == 3 and r["timeouts"] == 6
    assert all("no reply" in why for why in r["failures"].values())


def test_infer_port_missing_busy_or_another_model(run_dir, device, tmp_path):
    user_error(invoke("infer", run_dir, "--port", tmp_path / "ttyNONE"), "no such serial port")
    dev = device("ok")
    import serial
    holder = serial.Serial(dev.path, exclusive=True)
    try:
        user_error(invoke("infer", run_dir, "--port", dev.path), "busy")
    finally:
        holder.close()
    other = tmp_path / "other"
    ok(invoke("train", *TINY, "--seed", "7", "--window", "6", "--out", other))
    user_error(infer(other, dev), "another model", "intformer program")
    silent = device("mute")

    def no_reply(frame):
        return b""
    silent._reply = no_reply
    user_error(infer(run_dir, silent, "--retries", "0", "--timeout", "0.1"), "does not answer INFO", "--bare")
