"""`intformer infer`: test windows through a programmed board over its serial port (or its SPI link, `--spi`),
every forecast checked against the integer reference; whole windows (INFER), or with `--stream` the test
split's samples one by one (STEP: the board keeps the window in a ring). The baud rate is the build's
(build.json) unless `--baud` says."""
from __future__ import annotations

import sys

import click
import numpy as np

from intformer.model import runfolder
from intformer.model.data import make_windows
from intformer.model.errors import IntformerError
from intformer.model.intref import quantize_input, run_program

from .options import baud_option, check_task, task_option
from .output import emit

DEFAULT_BAUD = 115200


def build_baud(run_path) -> tuple[int, str | None]:
    """The baud rate of the run's newest serial-link build (its build.json), and that file; 115200 and None
    when it has none."""
    import json
    from pathlib import Path

    found = []
    for path in Path(run_path).glob("*/build.json"):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if record.get("top", "link") == "link" and record.get("link", "uart") == "uart" and record.get("baud"):
            found.append((path.stat().st_mtime, str(path), int(record["baud"])))
    if not found:
        return DEFAULT_BAUD, None
    _, path, baud = max(found)
    return baud, path


def stream_samples(program, codes):
    """Consecutive windows' codes (B, rows, cols) -> the samples they are made of (B + rows - 1, cols), for
    `Session.stream`; windows that are not consecutive (each the one before moved by one sample) are
    refused."""
    if len(codes) > 1 and not np.array_equal(codes[1:, :-1], codes[:-1, 1:]):
        raise IntformerError("--stream needs consecutive windows (each one sample after the one before), as "
                             "a forecaster's test split has; these windows are not: send whole windows instead")
    return np.concatenate([codes[0], codes[1:, -1]])


def infer_run(run_path, port: str | None, data_path=None, windows: str = "16", baud: int | None = None,
              timeout: float = 1.0, retries: int = 3, in_flight: int = 2, split: str = "test", progress: bool = False,
              port_obj=None, spi: str | None = None, spi_hz: int | None = None, task: str | None = None,
              stream: bool = False) -> dict:
    """Windows over the serial `port` at `baud` (None: the build's, `build_baud`), or (with `spi`, a
    /dev/spidevX.Y) over the SPI link at `spi_hz`; `stream`: sample by sample (STEP) instead of whole
    windows; `port_obj` replaces the opened port or SPI device (tests)."""
    from intformer.boards import protocol as P
    from intformer.boards.host import Session, link_bound, open_port, stream_bound
    from intformer.boards.spi_host import DEFAULT_HZ, open_spi, spi_link_bound

    if (port is None) == (spi is None):
        raise IntformerError("give the board's serial port (--port /dev/ttyUSB1) or its SPI device "
                             "(--spi /dev/spidev0.0), one of the two")
    spi_hz = spi_hz or DEFAULT_HZ
    baud_from = "--baud"
    if baud is None:
        baud, baud_from = build_baud(run_path)
        baud_from = baud_from or "default"

    run = runfolder.open_run(run_path)
    rows = P.stream_rows(run.program) if stream else None     # series tokens cannot stream
    cfg = run.config
    wanted = run.require_task(check_task(task), "infer")
    if wanted == "classify":                                           # a classifier's labelled series
        test_x = run.labelled(path=data_path).part(split, run.scaler).x
    elif wanted == "detect":                                           # a detector's windows (and next rows)
        from intformer.model.train import detector_windows
        test_x = detector_windows(run.anomaly(path=data_path), cfg.window, split, cfg.detect_mode).x
    else:
        series = run.series(path=data_path) if data_path else run.series()
        test_x = make_windows(series, run.scaler, cfg.window, cfg.horizon, split).x
    count = len(test_x) if windows == "all" else int(windows) if str(windows).isdigit() else -1
    if count < 1:
        raise IntformerError(f"--windows must be a positive number or 'all', got {windows}")
    if len(test_x) == 0:
        raise IntformerError(f"the {split} split has no windows")
    codes = quantize_input(run.program, test_x[:count])
    expected = run_program(run.program, codes)
    samples = stream_samples(run.program, codes) if stream else None

    if port_obj is not None:
        port_h = port_obj
    else:
        port_h = open_spi(spi, spi_hz) if spi is not None else open_port(port, baud)
    try:
        session = Session(port_h, reply_timeout=timeout, retries=retries, in_flight=in_flight)
        try:
            info = session.info()
        except IntformerError as exc:
            if spi is None:
                raise
            raise IntformerError(f"{exc} Over SPI: check the wiring (SCK, COPI, CIPO, CS, ground; see "
                                 f"boards/top.py) and --spi-hz (at most the board's clock / 8)") from None
        mine = P.DeviceInfo.from_program(run.program, info.lanes)
        if (info.n_inputs, info.n_outputs, info.checksum) != (mine.n_inputs, mine.n_outputs, mine.checksum):
            raise IntformerError(
                f"the board runs another model (checksum {info.checksum:08x}, {info.n_inputs} inputs, "
                f"{info.n_outputs} outputs; this run's: {mine.checksum:08x}, {mine.n_inputs}, {mine.n_outputs}); "
                f"program it with `intformer program {run_path} --board ...`")
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=len(codes), unit="window", file=sys.stderr, leave=False)

        def tick(done, total):
            if bar is not None:
                bar.update(done - bar.n)

        classes = P.program_classes(run.program)         # 0 for a forecaster
        if stream:
            result = session.stream(samples, expected, info, rows, progress=tick, classes=classes)
        else:
            result = session.run(codes, expected, info, progress=tick, classes=classes)
        if bar is not None:
            bar.close()
    finally:
        if port_obj is None:
            port_h.close()
    t = result["tally"]
    if stream:
        bound = stream_bound(info, rows, spi_hz if spi is not None else baud, in_flight, spi is not None)
    else:
        bound = spi_link_bound(info, spi_hz, in_flight) if spi is not None else link_bound(info, baud, in_flight)
    link = {"link": "spi", "port": spi, "spi_hz": spi_hz} if spi is not None else {"link": "uart", "port": port}
    return {**link, "baud": baud, "baud_from": baud_from, "mode": "stream" if stream else "window",
            "windows": len(codes), "split": split, "resyncs": t["resyncs"],
            "device": {"lanes": info.lanes, "n_inputs": info.n_inputs, "n_outputs": info.n_outputs,
                       "checksum": f"{info.checksum:08x}"},
            **{k: t[k] for k in ("sent", "answered", "matched", "mismatched", "failed", "frames_sent", "retries",
                                 "timeouts", "stale_replies", "device_errors", "decode_errors")},
            "seconds": result["seconds"], "windows_per_second": result["windows_per_second"],
            "mean_round_trip_ms": result["mean_round_trip_ms"],
            "link_bound_windows_per_second": bound, "in_flight": in_flight,
            "failures": {str(k): v for k, v in result["failures"].items()},
            **({"first_mismatch": result["first_mismatch"]} if "first_mismatch" in result else {}),
            **({"classes": result["classes"]} if "classes" in result else {})}


def print_infer(r: dict) -> None:
    d = r["device"]
    click.echo(f"device on {r['port']}: P = {d['lanes']}, {d['n_inputs']} inputs -> {d['n_outputs']} outputs, "
               f"model {d['checksum']} (this run's)")
    verdict = "all bit-exact" if r["matched"] == r["windows"] else \
        f"{r['mismatched']} MISMATCHED, {r['failed']} FAILED"
    click.echo(f"{r['windows']} windows: sent {r['sent']}, answered {r['answered']}, matched {r['matched']}, "
               f"mismatched {r['mismatched']}, failed {r['failed']}: {verdict}")
    click.echo(f"frames sent {r['frames_sent']} ({r['retries']} retries, {r['timeouts']} timeouts), "
               f"device errors {r['device_errors'] or 'none'}, stale replies {r['stale_replies']}, "
               f"decoder skips {r['decode_errors']}")
    rt = f"{r['mean_round_trip_ms']:.2f} ms" if r["mean_round_trip_ms"] is not None else "-"
    rate = f"{r['spi_hz']:,} Hz SPI clock" if r.get("link") == "spi" else f"{r['baud']} baud"
    if r.get("mode") == "stream":
        click.echo(f"streamed sample by sample (STEP): one sample in, one forecast out; {r['resyncs']} resyncs")
    click.echo(f"throughput {r['windows_per_second']:,.1f} windows/s ({r['seconds']:.2f} s; mean round trip {rt}; "
               f"the line allows {r['link_bound_windows_per_second']:,.0f}/s at {rate})")
    if "first_mismatch" in r:
        click.echo(f"first mismatch: {r['first_mismatch']}")
    if r.get("classes"):
        shown = ", ".join("-" if c is None else str(c) for c in r["classes"][:16])
        click.echo(f"classes computed on the chip: {shown}{' ...' if len(r['classes']) > 16 else ''}")
    for w, reason in list(r["failures"].items())[:5]:
        click.echo(f"window {w} failed: {reason}")


@click.command("infer")
@click.argument("run", type=click.Path())
@click.option("--port", default=None, help="The board's serial port, e.g. /dev/ttyUSB1 (iCEBreaker).")
@click.option("--spi", "spi", default=None, metavar="DEV",
              help="Talk over the SPI link instead (boards without a USB-serial bridge, e.g. the OrangeCrab): the "
                   "host's spidev device, e.g. /dev/spidev0.0 (needs pip install spidev).")
@click.option("--spi-hz", type=click.IntRange(min=1000), default=1_000_000, show_default=True,
              help="SPI clock in Hz (at most the board's clock / 8: 6 MHz on the OrangeCrab).")
@click.option("--data", "data_path", type=click.Path(dir_okay=False), default=None,
              help="CSV file with the run's columns (default: the run's own data).")
@click.option("--windows", default="16", show_default=True, help="Test windows to send, or 'all'.")
@baud_option(default=None, help="Serial baud rate (default: the run's newest UART build's, build.json; else "
                                 "115200)")
@click.option("--stream", is_flag=True,
              help="Send the test split sample by sample (STEP: the board keeps the window in a ring and answers "
                   "each sample with the forecast of the window ending at it) instead of whole windows; "
                   "models with --tokens series cannot stream.")
@click.option("--timeout", type=click.FloatRange(min=0.001), default=1.0, show_default=True,
              help="Seconds to wait for a reply before resending.")
@click.option("--retries", type=click.IntRange(min=0), default=3, show_default=True,
              help="Resends of a window before it counts as failed.")
@click.option("--in-flight", type=click.IntRange(1, 2), default=2, show_default=True,
              help="Windows outstanding at once (the device holds two).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@task_option
def infer_cmd(run, port, spi, spi_hz, data_path, windows, baud, stream, timeout, retries, in_flight, task, as_json):
    """Run test windows on a programmed board over its serial port (--port) or SPI link (--spi); check every
    forecast against the integer reference and report throughput. Exit status 1 if any window mismatched or
    failed."""
    result = infer_run(run, port, data_path, windows, baud, timeout, retries, in_flight,
                       progress=not as_json and sys.stderr.isatty(), spi=spi, spi_hz=spi_hz, task=task,
                       stream=stream)
    emit(result, as_json, print_infer)
    if result["mismatched"] or result["failed"]:
        sys.exit(1)
