"""The README's troubleshooting catalogue, entry by entry, through the command line.

The table under "## Troubleshooting" in README.md is parsed: every row's id must have a case here (and every
case a row), and each case checks that the command exits 2 with one `error: ...` line that holds the
row's message (column 3's text) and its remedy (the first `code` of column 4), that nothing printed a
traceback, and that no earlier result changed: a finished run folder kept for the module, the copy of it a
case works on, or (for commands that would create one) the output folder that must not appear.
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import stat
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cli_helpers import SMALL, invoke, ok

pytestmark = pytest.mark.usefixtures("torch_one_thread")

README = Path(__file__).resolve().parents[1] / "README.md"


def catalogue() -> dict[str, tuple[str, str]]:
    """id -> (message fragment, remedy fragment) from the README table."""
    text = README.read_text()
    section = text.split("## Troubleshooting", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or not cells[0].startswith("`"):
            continue
        spans = [re.findall(r"`([^`]+)`", c) for c in cells]
        assert spans[0] and spans[2] and spans[3], f"README row without id, message or remedy: {line}"
        rows[spans[0][0]] = (spans[2][0], spans[3][0])
    return rows


ROWS = catalogue()


def snapshot(folder: Path) -> dict:
    """Every file under `folder`: its bytes (hashed) and modification time."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished(tmp_path_factory, torch_one_thread):
    """One finished tiny run (1 epoch, 200 windows, no float baseline), trained once for the module."""
    out = tmp_path_factory.mktemp("trouble") / "run"
    ok(invoke("train", *SMALL, "--out", out, "--json"))
    return out


@pytest.fixture(scope="module")
def data_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    n = 300
    times = pd.date_range("2021-01-01", periods=n, freq="h").strftime("%Y-%m-%d %H:%M:%S")
    wave = np.round(np.sin(np.arange(n) / 5), 4).astype(str)
    files = {}

    def write(name, df):
        df.to_csv(root / name, index=False)
        files[name] = root / name

    df = pd.DataFrame({"time": times, "y": wave})
    df.loc[40, "y"] = ""
    write("missing.csv", df)
    df = pd.DataFrame({"time": times, "y": wave})
    df.loc[57, "y"] = "abc"
    write("abc.csv", df)
    write("const.csv", pd.DataFrame({"time": times, "y": np.ones(n)}))
    write("short.csv", pd.DataFrame({"time": times[:10], "y": wave[:10]}))
    write("good.csv", pd.DataFrame({"time": times, "y": wave}))
    (root / "empty.csv").write_text("")
    files["empty.csv"] = root / "empty.csv"
    return files


class Case:
    """What a case hands back: the result and the folders whose contents must not have changed (or, for
    `absent`, must not exist)."""

    def __init__(self, result, kept=(), absent=()):
        self.result, self.kept, self.absent = result, kept, absent


CASES = {}


def case(name):
    def register(fn):
        CASES[name] = fn
        return fn
    return register


def train_into_new(tmp_path, *args):
    out = tmp_path / "new-run"
    return Case(invoke("train", *SMALL, *args, "--out", out), absent=[out])


# ----------------------------------------------------------------------------------------------- data

@case("data-missing-file")
def _(ctx):
    return train_into_new(ctx.tmp, "--data", ctx.tmp / "nope.csv")


@case("data-empty-file")
def _(ctx):
    return train_into_new(ctx.tmp, "--data", ctx.data["empty.csv"])


@case("data-missing-value")
def _(ctx):
    return train_into_new(ctx.tmp, "--data", ctx.data["missing.csv"])


@case("data-non-numeric")
def _(ctx):
    return train_into_new(ctx.tmp, "--data", ctx.data["abc.csv"])


@case("data-unknown-column")
def _(ctx):
    return train_into_new(ctx.tmp, "--target", "Nope")


@case("data-too-few-rows")
def _(ctx):
    return train_into_new(ctx.tmp, "--data", ctx.data["short.csv"], "--window", "12")


@case("data-constant")
def _(ctx):
    return train_into_new(ctx.tmp, "--data", ctx.data["const.csv"])


@case("data-empty-test")
def _(ctx):
    return train_into_new(ctx.tmp, "--data", ctx.data["good.csv"], "--format", "airu", "--split-time",
                          "2030-01-01")


# ------------------------------------------------------------------------------------------ configurations

@case("config-heads")
def _(ctx):
    return train_into_new(ctx.tmp, "--heads", "3")


@case("config-bits")
def _(ctx):
    return train_into_new(ctx.tmp, "--bits", "9")


@case("config-window-data")
def _(ctx):
    return train_into_new(ctx.tmp, "--window", "400", "--horizon", "900")


@case("config-window-size")
def _(ctx):
    return train_into_new(ctx.tmp, "--window", "5000")


@case("config-horizon")
def _(ctx):
    return train_into_new(ctx.tmp, "--horizon", "0")


@case("config-series-tokens")
def _(ctx):
    return train_into_new(ctx.tmp, "--tokens", "series")


@case("config-override")
def _(ctx):
    return train_into_new(ctx.tmp, "--bits-override", "l0.ffn1")


# ------------------------------------------------------------------------------- tasks (classification)

def ts_pair(ctx, name: str, train_labels: list[str], test_labels: list[str] | None, length=5, test_length=None):
    """A small .ts pair (2 channels; test_labels None: no test file) under ctx.tmp; returns the train file."""
    from test_classify import write_ts
    rng = np.random.default_rng(0)
    write_ts(ctx.tmp / f"{name}_TRAIN.ts", [rng.normal(size=(2, length)) for _ in train_labels], train_labels)
    if test_labels is not None:
        write_ts(ctx.tmp / f"{name}_TEST.ts", [rng.normal(size=(2, test_length or length)) for _ in test_labels],
                 test_labels)
    return ctx.tmp / f"{name}_TRAIN.ts"


@case("task-mismatch")
def _(ctx):
    return Case(invoke("eval", ctx.run, "--task", "classify"), kept=[ctx.run])


@case("build-baud")
def _(ctx):
    out = ctx.tmp / "build"
    return Case(invoke("build", ctx.run, "--board", "icebreaker", "--baud", "2500000", "--out", out),
                kept=[ctx.run], absent=[out])


@case("detect-series-tokens")
def _(ctx):
    return train_into_new(ctx.tmp, "--task", "detect", "--tokens", "series")


def anomaly_csv(path: Path, anomalous_test: bool) -> Path:
    """A labelled anomaly CSV of 400 rows, 2 channels; its test part (the last 20 %) anomalous or not."""
    rng = np.random.default_rng(0)
    label = np.zeros(400, np.int64)
    if anomalous_test:
        label[350:360] = 1
    pd.DataFrame({"a": rng.normal(size=400), "b": rng.normal(size=400), "anomaly": label}).to_csv(path, index=False)
    return path


@case("detect-no-anomaly")
def _(ctx):
    path = anomaly_csv(ctx.tmp / "normal.csv", anomalous_test=False)
    return train_into_new(ctx.tmp, "--task", "detect", "--data", path, "--label", "anomaly", "--window", "8")


@case("detect-data-forecast")
def _(ctx):
    return train_into_new(ctx.tmp, "--format", "skab", "--data", ctx.tmp)


@case("detect-no-label")
def _(ctx):
    path = anomaly_csv(ctx.tmp / "labels.csv", anomalous_test=True)
    return train_into_new(ctx.tmp, "--task", "detect", "--data", path, "--window", "8")


@case("ts-no-pair")
def _(ctx):
    return train_into_new(ctx.tmp, "--task", "classify", "--data", ts_pair(ctx, "P", ["a", "b"] * 3, None))


@case("ts-unequal")
def _(ctx):
    return train_into_new(ctx.tmp, "--task", "classify", "--data",
                          ts_pair(ctx, "U", ["a", "b"] * 3, ["a", "b"], test_length=7))


@case("ts-unknown-class")
def _(ctx):
    return train_into_new(ctx.tmp, "--task", "classify", "--data", ts_pair(ctx, "K", ["a", "b"] * 3, ["a", "c"]))


@case("csv-label-not-integer")
def _(ctx):
    from test_classify import labelled_csv
    path = labelled_csv(ctx.tmp / "labels.csv", bad="walking")
    return train_into_new(ctx.tmp, "--task", "classify", "--data", path, "--label", "activity")


@case("ts-too-many-classes")
def _(ctx):
    labels = [f"c{i}" for i in range(256)] * 2
    return train_into_new(ctx.tmp, "--task", "classify", "--data", ts_pair(ctx, "M", labels, labels[:4], length=3))


# ---------------------------------------------------------------------------------------------- runs

@case("run-exists")
def _(ctx):
    return Case(invoke("train", *SMALL, "--out", ctx.run), kept=[ctx.run])


def interrupted(ctx) -> Path:
    """The copy of the run as an interrupted `train` leaves it: run.json says "training"."""
    info = json.loads((ctx.run / "run.json").read_text())
    (ctx.run / "run.json").write_text(json.dumps({"status": "training", "started": 0,
                                                  "options": {"spec": info["data"], "kw": {}}}))
    return ctx.run


@case("run-interrupted")
def _(ctx):
    run = interrupted(ctx)
    return Case(invoke("train", *SMALL, "--out", run), kept=[run])


@case("run-unfinished-eval")
def _(ctx):
    run = interrupted(ctx)
    return Case(invoke("eval", run), kept=[run])


@case("run-not-a-run")
def _(ctx):
    (ctx.tmp / "folder").mkdir()
    return Case(invoke("eval", ctx.tmp / "folder"), kept=[ctx.tmp / "folder"])


# ------------------------------------------------------------------------------------------- exports

def edit_export(ctx, fn) -> Path:
    path = ctx.run / "model.intf"
    path.write_bytes(fn(path.read_bytes()))
    return path


def rehash(body: bytes) -> bytes:
    return body + hashlib.sha256(body).digest()


@case("export-corrupt")
def _(ctx):
    edit_export(ctx, lambda raw: raw[:len(raw) // 2] + bytes([raw[len(raw) // 2] ^ 0x10]) + raw[len(raw) // 2 + 1:])
    return Case(invoke("eval", ctx.run), kept=[ctx.run])


@case("export-truncated")
def _(ctx):
    edit_export(ctx, lambda raw: raw[:100])
    return Case(invoke("eval", ctx.run), kept=[ctx.run])


@case("export-empty")
def _(ctx):
    edit_export(ctx, lambda raw: b"")
    return Case(invoke("sim", ctx.run, "--windows", "1"), kept=[ctx.run])


@case("export-foreign")
def _(ctx):
    path = edit_export(ctx, lambda raw: b"PK\x03\x04 a zip file, not an export" + bytes(60))
    return Case(invoke("eval", path), kept=[ctx.run])


@case("export-newer")
def _(ctx):
    from intformer.model.modelfile import FORMAT_VERSION

    edit_export(ctx, lambda raw: rehash(raw[:8] + (FORMAT_VERSION + 1).to_bytes(4, "little") + raw[12:-32]))
    return Case(invoke("eval", ctx.run), kept=[ctx.run])


@case("export-edited")
def _(ctx):
    from intformer.model import modelfile

    def edit(raw):
        pre = modelfile._PREFIX
        _, version, n = pre.unpack_from(raw)
        header = json.loads(raw[pre.size:pre.size + n])
        header["program"]["steps"][0]["cols"] += 5            # the first step now writes past its buffer
        head = json.dumps(header).encode()
        return rehash(pre.pack(modelfile.MAGIC, version, len(head)) + head + raw[pre.size + n:-32])
    edit_export(ctx, edit)
    return Case(invoke("eval", ctx.run), kept=[ctx.run])


# ------------------------------------------------------------------------------------------ builds

def fake_build(run: Path, board: str = "icebreaker", lanes: int = 1) -> Path:
    from test_board_cli import fake_build as make
    return make(run, board, lanes)


def stub_tools(folder: Path, fmax: float) -> dict:
    """Stand-ins for yosys, nextpnr-ice40 and icepack: nextpnr writes a report with the given Fmax."""
    folder.mkdir(exist_ok=True)
    report = {"fmax": {"clk": {"achieved": fmax, "constraint": 12.0}},
              "utilization": {"ICESTORM_LC": {"used": 1000, "available": 5280}}}
    scripts = {"yosys": "pass",
               "nextpnr": f"open('report.json', 'w').write({json.dumps(report)!r})",
               "icepack": "open(sys.argv[-1], 'wb').write(b'bitstream')"}
    env = {}
    for name, body in scripts.items():
        path = folder / name
        path.write_text(f"#!{sys.executable}\nimport sys\n{body}\n")
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    env.update(YOSYS=str(folder / "yosys"), NEXTPNR_ICE40=str(folder / "nextpnr"), ICEPACK=str(folder / "icepack"),
               PATH=str(folder))              # and no g++: the cycle count runs on Amaranth's simulator
    return env


@case("build-too-large")
def _(ctx):
    return Case(invoke("build", ctx.run, "--board", "icebreaker", "--lanes", "64"), kept=[ctx.run])


@case("build-exists")
def _(ctx):
    fake_build(ctx.run)
    return Case(invoke("build", ctx.run, "--board", "icebreaker", "--lanes", "1"), kept=[ctx.run])


@case("build-timing")
def _(ctx):
    env = stub_tools(ctx.tmp / "bin", fmax=5.0)
    out = ctx.tmp / "slow"
    result = invoke("build", ctx.run, "--board", "icebreaker", "--lanes", "1", "--out", out, env=env)
    report = json.loads((out / "build.json").read_text())
    assert report["timing_met"] is False and report["status"] == "timing not met"   # kept for a look
    return Case(result, kept=[ctx.run])


@case("build-unknown-board")
def _(ctx):
    return Case(invoke("build", ctx.run, "--board", "de0nano"), kept=[ctx.run])


# ------------------------------------------------------------------------------------------- tools

@case("tool-yosys")
def _(ctx):
    out = ctx.tmp / "b"
    env = {"YOSYS": str(ctx.tmp / "nowhere" / "yosys")}
    return Case(invoke("build", ctx.run, "--board", "icebreaker", "--lanes", "1", "--out", out, env=env),
                kept=[ctx.run])


@case("tool-gpp")
def _(ctx):
    (ctx.tmp / "empty-bin").mkdir()
    return Case(invoke("sim", ctx.run, "--windows", "1", "--engine", "cxxrtl", env={"PATH": str(ctx.tmp / "empty-bin")}),
                kept=[ctx.run])


@case("tool-verilator")
def _(ctx):
    return Case(invoke("verify", ctx.run, "--netlist", "--windows", "1", env={"VERILATOR": "/nonexistent/verilator"}),
                kept=[ctx.run])


@case("tool-programmer")
def _(ctx):
    fake_build(ctx.run)
    (ctx.tmp / "empty-bin").mkdir()
    env = {"PATH": str(ctx.tmp / "empty-bin"), "ICEPROG": None}
    return Case(invoke("program", ctx.run, "--board", "icebreaker", env=env), kept=[ctx.run])


@case("program-no-build")
def _(ctx):
    return Case(invoke("program", ctx.run, "--board", "icebreaker"), kept=[ctx.run])


@case("program-no-drive")
def _(ctx):
    fake_build(ctx.run, "icesugar")
    return Case(invoke("program", ctx.run, "--board", "icesugar", env={"ICESUGAR_DRIVE": None}), kept=[ctx.run])


# ------------------------------------------------------------------------------------ ports and boards

@case("port-missing")
def _(ctx):
    return Case(invoke("infer", ctx.run, "--port", ctx.tmp / "ttyNONE"), kept=[ctx.run])


def device(ctx, mode="ok"):
    from test_board_cli import FakeDevice
    from intformer.model import runfolder

    dev = FakeDevice(runfolder.open_run(ctx.run).program, mode=mode)
    ctx.cleanup.append(dev.close)
    return dev


@case("port-busy")
def _(ctx):
    import serial

    dev = device(ctx)
    holder = serial.Serial(dev.path, exclusive=True)
    ctx.cleanup.append(holder.close)
    return Case(invoke("infer", ctx.run, "--port", dev.path), kept=[ctx.run])


@case("board-silent")
def _(ctx):
    dev = device(ctx)
    dev._reply = lambda frame: b""
    return Case(invoke("infer", ctx.run, "--port", dev.path, "--retries", "0", "--timeout", "0.1"), kept=[ctx.run])


@case("board-other-model")
def _(ctx):
    from intformer.model import runfolder
    from program_factory import random_program
    from test_board_cli import FakeDevice

    other = random_program(np.random.default_rng(0), n=8, m=1, d=8, ffn=16, horizon=1, bits=8, skip=True)
    dev = FakeDevice(other)
    ctx.cleanup.append(dev.close)
    assert runfolder.open_run(ctx.run).program.input.rows == 8
    return Case(invoke("infer", ctx.run, "--port", dev.path, "--timeout", "0.3"), kept=[ctx.run])


# ------------------------------------------------------------------------------------------- sweeps

PG_URL = "postgresql://intformer:pw-not-shown@127.0.0.1:{port}/intformer"


def sweep_into_new(ctx, storage):
    out = ctx.tmp / "sweep"
    result = invoke("sweep", "--storage", storage, "--out", out)
    assert "pw-not-shown" not in result.output, result.output          # the password is printed as ***
    return Case(result, absent=[out])


@case("sweep-no-driver")
def _(ctx):
    # an install without the postgres extra: psycopg cannot be imported (None in sys.modules blocks it)
    saved = sys.modules.get("psycopg")
    sys.modules["psycopg"] = None
    ctx.cleanup.append(lambda: sys.modules.__setitem__("psycopg", saved) if saved
                       else sys.modules.pop("psycopg", None))
    return sweep_into_new(ctx, PG_URL.format(port=9))


@case("sweep-db-unreachable")
def _(ctx):
    pytest.importorskip("psycopg", reason="the postgres extra: pip install -e '.[test,postgres]'")
    from pg_server import free_port
    return sweep_into_new(ctx, PG_URL.format(port=free_port()))              # nothing listens there


# ------------------------------------------------------------------------------------------- the tests

class Ctx:
    def __init__(self, run, tmp, data):
        self.run, self.tmp, self.data, self.cleanup = run, tmp, data, []


def test_every_catalogue_row_has_a_case_and_every_case_a_row():
    assert len(ROWS) >= 30
    assert set(ROWS) == set(CASES), (sorted(set(ROWS) - set(CASES)), sorted(set(CASES) - set(ROWS)))


@pytest.mark.parametrize("entry", sorted(ROWS))
def test_catalogue_entry(entry, finished, data_files, tmp_path):
    message, remedy = ROWS[entry]
    pristine = snapshot(finished)
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    ctx = Ctx(run, tmp_path, data_files)
    try:
        outcome = _run_case(entry, ctx)
    finally:
        for fn in reversed(ctx.cleanup):
            fn()
    result, before = outcome
    assert result.exit_code == 2, (entry, result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    errors = [l for l in result.stderr.splitlines() if l.startswith("error: ")]
    assert len(errors) == 1, (entry, result.stderr)
    line = errors[0]
    assert message in line, (entry, message, line)
    assert remedy in line, (entry, remedy, line)
    case_obj = before["case"]
    for folder, snap in before["kept"].items():
        assert snapshot(folder) == snap, (entry, f"{folder} changed")
    for folder in case_obj.absent:
        assert not Path(folder).exists(), (entry, f"{folder} was created")
    assert snapshot(finished) == pristine


def _run_case(entry, ctx):
    """Run the case with invoke() wrapped so that the kept folders are snapshotted just before the command
    (after the case's own preparation of its inputs)."""
    import cli_helpers

    seen = {}
    real = cli_helpers.invoke
    module = sys.modules[__name__]

    def wrapped(*args, env=None):
        seen["pre"] = {p: snapshot(p) for p in (ctx.run, ctx.tmp / "folder")}
        return real(*args, env=env)
    module.invoke = wrapped
    try:
        case_obj = CASES[entry](ctx)
    finally:
        module.invoke = real
    kept = {}
    for folder in case_obj.kept:
        folder = Path(folder)
        kept[folder] = seen["pre"].get(folder, snapshot(folder))
    return case_obj.result, {"case": case_obj, "kept": kept}


def test_interrupted_run_can_be_resumed(finished, tmp_path):
    """--resume continues an interrupted run with the options recorded in it (not the command's), and
    --resume on a finished run or a non-run is refused."""
    out = tmp_path / "run"
    spec_kw = json.loads((finished / "run.json").read_text())
    ok(invoke("train", *SMALL, "--window", "6", "--out", out, "--json"))
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "complete"
    line = [l for l in invoke("train", "--out", out, "--resume").stderr.splitlines() if l.startswith("error: ")]
    assert line and "nothing to resume" in line[0]
    # make it look interrupted, with the options a real start records
    from intformer.model import runfolder
    shutil.rmtree(out)
    opts = {"spec": spec_kw["data"], "kw": {"window": 6, "d_model": 8, "ffn": 16, "epochs": 1, "patience": 1,
                                             "max_train_windows": 200, "float_baseline": False}}
    runfolder.prepare(out, False, opts)
    (out / "qat.pt").write_bytes(b"half")
    r = json.loads(ok(invoke("train", "--out", out, "--resume", "--window", "12", "--json")).stdout)
    assert r["run"] == str(out)
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "complete" and info["model"]["window"] == 6       # the recorded options
    assert "options" not in info and (out / "qat.pt").stat().st_size > 4
    assert invoke("train", "--out", tmp_path / "nothing", "--resume").exit_code == 2


def test_a_failed_training_leaves_no_folder(tmp_path, monkeypatch):
    """An error during training (here: the loss diverges) removes the run folder it had just made."""
    import intformer.model.train as T
    from intformer.model.errors import IntformerError

    def boom(*a, **k):
        raise IntformerError("QAT 8-bit: the loss became nan at epoch 1; lower the learning rate (--lr)")
    import intformer.train_cmd as tc
    monkeypatch.setattr(tc, "train_models", boom)
    out = tmp_path / "run"
    result = invoke("train", *SMALL, "--out", out)
    assert result.exit_code == 2 and "--lr" in result.stderr and not out.exists()
    assert T is not None
