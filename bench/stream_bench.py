"""End-to-end windows per second over the serial link, whole windows (INFER) against streaming (STEP), at each
baud rate, in board-level simulation of the whole device (UART with the real divisor, link, accelerator).

    python bench/stream_bench.py [--run RUN] [--lanes 4] [--clock 12] [--bauds 115200 1000000 3000000]
                                 [--windows 5] [--json FILE] [--train "--d-model 8 --ffn 16"]

The model is RUN's, or else the default configuration (n = 24, d = 16, one layer, FFN 64, 8 bits) trained for
one quick epoch on the embedded data (`board_bench.default_run`; --train: a model with these `intformer train`
options instead, e.g. a smaller one, to see the link where the accelerator binds less); the windows are
consecutive windows of its test split. The device is `boards.top.SimTop` at P = --lanes with the divisor
`uart.divisor_for(clock, baud)` (the iCEBreaker's 12 MHz oscillator by default), in Amaranth's simulator,
driven bit by bit on its rx pin by `boards.line_sim`. The host keeps two requests in flight, as
`boards.host.Session` does: whole windows send an INFER per window; streaming sends the INFER of the first
window, then a STEP per sample. Every RESULT is compared word for word with `model.intref.run_program` (a
mismatch stops the bench). The rate is measured in the steady state: windows after the first over the cycles
between the first RESULT and the last.

Beside each rate, its bounds: the line's (`host.link_bound` / `host.stream_bound`: bytes per second over
the larger of a request's and a reply's bytes, the two directions overlapping) and the accelerator's (the
clock over `build.cycles_per_inference`, one window at a time). A benchmark, not a test: Amaranth's
simulator runs the default model's accelerator at about 2,000 cycles a second, so each configuration's
--windows take a minute or so.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from intformer.boards import protocol as P
from intformer.boards.build import cycles_per_inference
from intformer.boards.host import link_bound, stream_bound
from intformer.boards.line_sim import simulate_line
from intformer.boards.top import SimTop
from intformer.boards.uart import divisor_for
from intformer.model import runfolder
from intformer.model.data import make_windows
from intformer.model.intref import quantize_input, run_program


def test_windows(run_path: Path, count: int):
    """The run's program and `count` consecutive test windows' codes (count, rows, cols)."""
    run = runfolder.open_run(run_path)
    x = make_windows(run.series(), run.scaler, run.config.window, run.config.horizon, "test").x[:count]
    codes = quantize_input(run.program, x)
    assert np.array_equal(codes[1:, :-1], codes[:-1, 1:]), "test windows are not consecutive"
    return run.program, codes


def measure(program, codes, lanes: int, clock_hz: float, baud: int, mode: str) -> dict:
    """One configuration in board-level simulation: the RESULT cycles, every word checked."""
    divisor = divisor_for(clock_hz, baud)
    dut = SimTop(program, lanes, divisor)
    info, rows = dut.info, program.input.rows
    expected = run_program(program, codes)
    first = P.encode_frame(P.INFER, 1, P.infer_payload(codes[0], info))
    if mode == "window":
        requests = [first] + [P.encode_frame(P.INFER, k + 1, P.infer_payload(codes[k], info))
                              for k in range(1, len(codes))]
    else:
        requests = [first] + [P.encode_frame(P.STEP, k + 1, P.step_payload(codes[k][-1], info, rows))
                              for k in range(1, len(codes))]
    frame_cycles = 10 * divisor + 1
    limit = 4 * (cycles_per_window(program, lanes) + frame_cycles * max(map(len, requests)))

    async def script(h):
        await h.send(requests[0])
        await h.send(requests[1])
        for k in range(len(codes)):                 # two in flight: read the oldest reply, send the next
            (reply,) = await h.replies(1, limit=limit)
            assert (reply.cmd, reply.seq) == (P.RESULT, k + 1), reply
            got = P.result_words(reply.payload)
            assert np.array_equal(got, expected[k]), f"window {k}: {got} != {expected[k]}"
            if k + 2 < len(codes):
                await h.send(requests[k + 2])

    started = time.perf_counter()
    line = simulate_line(dut, script, clock_hz)
    at = line.at
    period = (at[-1] - at[0]) / (len(at) - 1)
    return {"baud": baud, "mode": mode, "divisor": divisor, "windows": len(codes), "starts": line.starts,
            "up_bytes": len(requests[-1]), "down_bytes": P.OVERHEAD + info.n_outputs * P.WORD_BYTES,
            "period_cycles": period, "windows_per_second": clock_hz / period,
            "link_bound": (stream_bound(info, rows, baud, 2) if mode == "stream" else link_bound(info, baud, 2)),
            "sim_seconds": round(time.perf_counter() - started, 1), "bit_exact": True}


def trained_run(folder: Path, options: list[str]) -> Path:
    """A model of `options` trained for one short epoch (the structure, not the accuracy, sets the rates)."""
    import torch
    from click.testing import CliRunner

    from intformer.cli import cli

    torch.set_num_threads(1)
    run = folder / "run"
    result = CliRunner().invoke(cli, ["train", *options, "--epochs", "1", "--patience", "1",
                                      "--max-train-windows", "500", "--out", str(run), "--force", "--json"])
    if result.exit_code:
        raise SystemExit(f"training failed: {result.output}{result.exception}")
    return run


_CYCLES: dict = {}


def cycles_per_window(program, lanes: int) -> int:
    key = (id(program), lanes)
    if key not in _CYCLES:
        _CYCLES[key] = cycles_per_inference(program, lanes)[0]
    return _CYCLES[key]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, default=None, help="a run folder (default: train the default model)")
    ap.add_argument("--lanes", type=int, default=4, help="MAC lanes P (4: the iCEBreaker's default build)")
    ap.add_argument("--clock", type=float, default=12.0, help="MHz (12: the iCEBreaker's oscillator)")
    ap.add_argument("--bauds", type=int, nargs="+", default=[115200, 1_000_000, 3_000_000])
    ap.add_argument("--modes", nargs="+", default=["window", "stream"], choices=["window", "stream"])
    ap.add_argument("--windows", type=int, default=5, help="windows per configuration (at least 3)")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    ap.add_argument("--train", default=None, help="train this configuration instead of the default model: "
                                                  "`intformer train` options, quoted")
    args = ap.parse_args()
    if args.windows < 3:
        raise SystemExit("--windows must be at least 3 (the steady state is measured after the first)")
    with tempfile.TemporaryDirectory() as tmp:
        if args.run is None and args.train:
            args.run = trained_run(Path(tmp), args.train.split())
        elif args.run is None:
            from board_bench import default_run
            args.run = default_run(Path(tmp))
        program, codes = test_windows(args.run, args.windows)
        clock_hz = args.clock * 1e6
        compute = cycles_per_window(program, args.lanes)
        x = program.input
        print(f"model: {x.rows} x {x.cols} input codes ({P.code_bytes(x.bits)} byte each), "
              f"{program.buffers[program.output].cols} output words; P = {args.lanes} at {args.clock:g} MHz: "
              f"{compute:,} cycles per inference, compute bound {clock_hz / compute:,.0f} windows/s")
        print(f"{'baud':>9} {'mode':<7}{'div':>5}{'up B':>6}{'down B':>7}{'cycles/win':>12}{'win/s':>9}"
              f"{'line bound':>12}{'bound':>8}{'of bound':>9}{'sim s':>7}")
        rows = []
        for baud in args.bauds:
            for mode in args.modes:
                r = measure(program, codes, args.lanes, clock_hz, baud, mode)
                r["compute_cycles"] = compute
                r["bound"] = min(r["link_bound"], clock_hz / compute)
                rows.append(r)
                print(f"{baud:>9,} {mode:<7}{r['divisor']:>5}{r['up_bytes']:>6}{r['down_bytes']:>7}"
                      f"{r['period_cycles']:>12,.0f}{r['windows_per_second']:>9,.1f}{r['link_bound']:>12,.0f}"
                      f"{r['bound']:>8,.0f}{r['windows_per_second'] / r['bound']:>9.1%}{r['sim_seconds']:>7}",
                      flush=True)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
