"""Fuzzing the chain: random model configurations, trained for a few steps, exported, and run on the integer
reference and the accelerator's simulation, every output word compared; random corruptions of export files
and of link frames, every one refused.

It lives at the top (`intformer.fuzz`), above the layers it spans: the model (training, export), the
accelerator (its simulation and its proofs), and the board's host link (`boards.protocol`'s frames, the
link's proofs through the registry `intformer.proofs`). Split by layer, its halves would share the
`ChainResult` of one fuzzed configuration, which `prove_config` and the export corruptions both take.

Used by `tests/test_fuzz.py` (a small fixed-seed share) and `bench/fuzz_bench.py` (minutes of it, counted).

* `random_config(rng)`: a `ModelConfig` within `LIMITS` (window, d_model, heads dividing d_model, layers,
  ffn, bits 2..8, norm, activation, softmax, pooling, horizon, univariate or multivariate, time or series
  tokens, the last-value skip on or off, an occasional per-tensor bit-width override; a fifth of them
  classifiers (2..5 classes, drawn at random) and a fifth detectors, reconstructing or forecasting).
* `random_series(rng, cfg)`: a small synthetic series (seasonal signal, trend, noise, sometimes spikes and
  flat stretches) with the configuration's number of inputs, split 70/10/20.
* `check_config(cfg, rng, ...)`: `model.train.train_models` for a few optimizer steps -> `model.export`
  program -> `model.modelfile` round trip -> input codes (the data's test windows, and the extreme codes
  of the input width: all qmin, all qmax, qmin/qmax alternating both ways, zeros, uniform random) ->
  `model.intref.run_program` against `accel.simulate.simulate` (the CXXRTL engine where g++ is present,
  else Amaranth's), every word; and the fake-quant model against the integer words on the data's windows
  (the export contract: they agree word for word). Returns a `ChainResult`; a mismatch raises
  `FuzzMismatch` naming the configuration, seed, window and first differing step.
* `prove_config(result, workdir)`: the quick formal proofs for the fuzzed program at its lanes (the
  datapath with its overflow audit, the streams, the link): the proofs meet the odd configurations too.
* `corrupt_export(raw, rng)`: one random corruption of an export file's bytes (bit flips, truncation,
  extension, a header edit with or without a fixed checksum, a newer version, a foreign magic...), and
  `check_export_corruption` which asserts that loading it raises `IntformerError` (never another
  exception, never a silently different model).
* `corrupt_frame(frame, rng)` and `check_link_corruption`: a corrupted frame followed by a good one
  through the host's `boards.protocol.FrameDecoder`: the corrupted one is never delivered, the good one is.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import struct
import time
from dataclasses import dataclass, field

import numpy as np

from intformer.model.config import ModelConfig, TrainConfig
from intformer.model.errors import IntformerError

# size limits of the random configurations (inclusive)
LIMITS = {"window": (2, 10), "d_model": (2, 12), "layers": (1, 2), "ffn": (1, 16), "horizon": (1, 3),
          "inputs": (1, 3), "bits": (2, 8)}


class FuzzMismatch(AssertionError):
    """The hardware simulation (or the fake-quant model) parted from the integer reference."""


class CrcAccident(Exception):
    """Corrupted bytes that happen to hold a frame with a matching CRC-16: about one candidate in 2^16 (the
    code's limit, not a decoder fault: the delivered frame's encoding is in the byte stream). The bench
    counts them; the frame it delivered may have swallowed the bytes of the good one after it."""


@dataclass
class ChainResult:
    config: dict
    seed: int
    windows: int            # windows compared word for word against the hardware simulation
    words: int
    engine: str
    fakequant_windows: int  # windows where the fake-quant model was compared with the integer words
    seconds: dict = field(default_factory=dict)
    program: object = None  # the loaded IntProgram
    export: bytes = b""     # its export file
    lanes: int = 1          # the accelerator's P in the simulation


# ------------------------------------------------------------------------------------- configurations

def random_config(rng: np.random.Generator, limits: dict | None = None) -> ModelConfig:
    """A valid random configuration within `limits` (default `LIMITS`)."""
    lim = dict(LIMITS, **(limits or {}))

    def pick(name):
        lo, hi = lim[name]
        return int(rng.integers(lo, hi + 1))

    inputs = pick("inputs")
    tokens = "series" if inputs >= 2 and rng.random() < 0.3 else "time"
    d_model = pick("d_model")
    divisors = [h for h in range(1, d_model + 1) if d_model % h == 0 and h <= 4]
    bits = pick("bits")
    skip = bool(rng.random() < 0.7)
    overrides = {}
    if rng.random() < 0.2:
        overrides[str(rng.choice(["l0.ffn1", "l0.q", "embed", "head"]))] = int(rng.integers(lim["bits"][0],
                                                                                               lim["bits"][1] + 1))
    cfg = ModelConfig(window=pick("window"), inputs=inputs, horizon=pick("horizon"), d_model=d_model,
                      heads=int(rng.choice(divisors)), layers=pick("layers"), ffn=pick("ffn"), bits=bits,
                      bits_overrides=overrides,
                      norm=str(rng.choice(["batch", "layer"])), activation=str(rng.choice(["relu", "gelu"])),
                      softmax=str(rng.choice(["lut", "poly"])), pooling=str(rng.choice(["mean", "flatten"])),
                      tokens=tokens, io_bits=int(rng.choice([8, 8, bits])), skip=skip,
                      target_index=int(rng.integers(0, inputs)) if skip or rng.random() < 0.5 else None)
    if cfg.target_index is None:
        cfg.skip = False
    task = rng.choice(["forecast", "classify", "detect"], p=[0.6, 0.2, 0.2])
    if task == "classify":               # the same encoder, C scores and the argmax class
        cfg.task, cfg.classes, cfg.skip, cfg.level, cfg.target_index = "classify", int(rng.integers(2, 6)), \
            False, False, None
    elif task == "detect":               # errors of every series against the actual row, score and flag
        mode = str(rng.choice(["reconstruct", "forecast"]))
        cfg.task, cfg.detect_mode, cfg.tokens, cfg.skip, cfg.target_index = "detect", mode, "time", False, None
        cfg.level = bool(mode == "forecast" and rng.random() < 0.5)
        cfg.score_decay = int(rng.choice([0, 2, 4]))     # a smoothed score carries state from window to window
    return cfg.validate()


def random_series(rng: np.random.Generator, cfg: ModelConfig, rows: int | None = None):
    """A small synthetic `Series` with cfg.inputs columns (the target is column target_index, or an extra
    series when the target is no input)."""
    from intformer.model.data import Series

    rows = rows or int(rng.integers(160, 320))
    t = np.arange(rows, dtype=np.float64)
    period = int(rng.choice([6, 12, 24]))
    cols = []
    for _ in range(cfg.inputs + 1):
        x = (rng.uniform(0.5, 3.0) * np.sin(2 * np.pi * t / period + rng.uniform(0, 6.3))
             + rng.uniform(-0.01, 0.01) * t + rng.normal(0, rng.uniform(0.05, 0.5), rows) + rng.uniform(-5, 5))
        if rng.random() < 0.3:                      # spikes: extreme scaled values, saturated codes
            idx = rng.integers(0, rows, 3)
            x[idx] += rng.choice([-1, 1], 3) * rng.uniform(10, 40, 3)
        if rng.random() < 0.2:                      # a flat stretch (zero differences) outside the train rows
            a = int(rows * 0.75)
            x[a:a + 8] = x[a]
        cols.append(x)
    values = np.stack(cols[:cfg.inputs], axis=1)
    target = values[:, cfg.target_index] if cfg.target_index is not None else cols[-1]
    names = [f"c{i}" for i in range(cfg.inputs)]
    a, b = int(rows * 0.7), int(rows * 0.8)
    return Series(name="fuzz", source="fuzz", values=values, columns=names,
                  target=names[cfg.target_index] if cfg.target_index is not None else "y",
                  target_values=np.array(target), splits={"train": (0, a), "val": (a, b), "test": (b, rows)},
                  period=period)


def extreme_codes(program, rng: np.random.Generator, random_windows: int = 2) -> np.ndarray:
    """Input-code windows at the edges of the input width: all qmin, all qmax, alternating both ways,
    all zeros (or qmin when unsigned), and `random_windows` uniform random ones."""
    x = program.input
    lo, hi = x.range
    shape = (x.rows, x.cols)
    alt = (np.indices(shape).sum(axis=0) % 2).astype(bool)
    out = [np.full(shape, lo), np.full(shape, hi), np.where(alt, lo, hi), np.where(alt, hi, lo),
           np.full(shape, max(lo, 0))]
    out += [rng.integers(lo, hi + 1, shape) for _ in range(random_windows)]
    return np.stack(out).astype(np.int64)


def describe(cfg: ModelConfig) -> str:
    d = cfg.to_dict()
    keys = ("task", "window", "inputs", "horizon", "d_model", "heads", "layers", "ffn", "bits", "norm", "activation",
            "softmax", "pooling", "tokens", "io_bits", "skip", "target_index")
    over = f" bits_overrides={d['bits_overrides']}" if d["bits_overrides"] else ""
    return " ".join(f"{k}={d[k]}" for k in keys) + over


# ---------------------------------------------------------------------------------------------- chain

def train_program(cfg: ModelConfig, rng: np.random.Generator, seed: int, steps: int = 4):
    """A few optimizer steps on a random series; returns (trained models, series, the test inputs)."""
    from intformer.model.data import make_windows
    from intformer.model.train import train_models

    series = random_series(rng, cfg)
    batch = 16
    tcfg = TrainConfig(epochs=1, batch_size=batch, lr=float(rng.choice([1e-3, 1e-2, 5e-2])), patience=1,
                       seed=seed, float_baseline=bool(rng.random() < 0.5), max_train_windows=steps * batch)
    if cfg.task != "forecast":
        return _train_labelled(cfg, tcfg, series, rng)
    trained = train_models(series, dataclasses.replace(cfg), tcfg, progress=False)
    return trained, series, make_windows(series, trained.scaler, cfg.window, cfg.horizon, "test").x


def _train_labelled(cfg: ModelConfig, tcfg: TrainConfig, series, rng: np.random.Generator):
    """A classifier or a detector on the random series' windows (classes drawn at random; a detector's
    inputs as `model.train.detector_windows` lays them out, its threshold from the validation windows)."""
    from intformer.model.data import Scaler
    from intformer.model.train import ClassifyObjective, Objective, _train_phases, set_threshold
    from intformer.model.tsdata import Labelled
    from intformer.model.export import to_program

    scaler = Scaler.fit(series)
    x = scaler.transform_inputs(series.values)
    rows = cfg.input_rows if cfg.task == "detect" else cfg.window
    view = np.lib.stride_tricks.sliding_window_view(x, rows, axis=0).transpose(0, 2, 1).astype(np.float32)
    a, b = int(len(view) * 0.7), int(len(view) * 0.8)
    if cfg.task == "classify":
        y = rng.integers(0, cfg.classes, len(view))
        y[:cfg.classes] = np.arange(cfg.classes)                 # every class in the training part
        parts = [Labelled(view[i:j], y[i:j]) for i, j in ((0, a), (a, b), (b, len(view)))]
        objective = ClassifyObjective(parts[0].y[:tcfg.max_train_windows], cfg.classes, "balanced")
    else:
        parts = [Labelled(view[i:j], np.zeros((j - i, cfg.inputs), np.float32))
                 for i, j in ((0, a), (a, b), (b, len(view)))]
        objective = Objective()
    train = Labelled(parts[0].x[:tcfg.max_train_windows], parts[0].y[:tcfg.max_train_windows])
    trained = _train_phases(dataclasses.replace(cfg), tcfg, scaler, train, parts[1], objective, False, None, None)
    if cfg.task == "detect":
        set_threshold(trained.qat, parts[1], 0.9)
        trained.program = to_program(copy.deepcopy(trained.qat).double())
    return trained, series, parts[2].x


def check_config(cfg: ModelConfig, seed: int, engine: str = "auto", lanes: int | None = None,
                 data_windows: int = 4, random_windows: int = 2, tmp_dir=None) -> ChainResult:
    """Train, export, reload and compare (see the module doc). Raises FuzzMismatch on any difference."""
    import tempfile
    from pathlib import Path

    from intformer.accel import cxxsim
    from intformer.accel.simulate import first_mismatch, simulate
    from intformer.model import modelfile
    from intformer.model.intref import quantize_input, run_program
    from intformer.model.train import predict

    rng = np.random.default_rng(seed)
    if engine == "auto":
        engine = "cxxrtl" if cxxsim.available() else "amaranth"
    lanes = lanes or int(rng.choice([1, 2, 3, 4, 8]))
    where = f"fuzz config seed {seed}: {describe(cfg)}, lanes {lanes}, engine {engine}"
    seconds = {}
    t = time.perf_counter()
    trained, series, test_x = train_program(cfg, rng, seed)
    seconds["train"] = time.perf_counter() - t

    # the export file round trip: the loaded program must be the same program
    t = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=tmp_dir) as tmp:
        path = Path(tmp) / "model.intf"
        modelfile.save(path, trained.program, trained.qat.cfg.to_dict(), trained.scaler.to_dict(), {})
        program, header = modelfile.load(path)
        export = path.read_bytes()
    if (program.structure() != trained.program.structure()
            or set(program.tensors) != set(trained.program.tensors)
            or any(not np.array_equal(program.tensors[k], v) for k, v in trained.program.tensors.items())):
        raise FuzzMismatch(f"{where}: the export file does not load back as the same program")

    data_x = test_x[:data_windows]
    codes = np.concatenate([quantize_input(program, data_x), extreme_codes(program, rng, random_windows)])
    expected = run_program(program, codes)
    seconds["reference"] = time.perf_counter() - t

    # fake-quant (float64, eval) against the integer words: the contract of the export
    words_data = expected[:len(data_x)]
    fq = predict(trained.qat, data_x)
    fq_words = np.floor(fq / program.output_scale + 0.5).astype(np.int64)
    words_data = words_data[:, :fq_words.shape[1]]     # a classifier's class, a detector's score and flag follow
    if not np.array_equal(fq_words, words_data):
        i, j = (int(v[0]) for v in np.nonzero(fq_words != words_data))
        raise FuzzMismatch(f"{where}: fake-quant forecast differs from the integer reference at data window "
                           f"{i}, word {j}: {fq_words[i, j]} vs {words_data[i, j]}")

    t = time.perf_counter()
    if engine == "cxxrtl":
        cxxsim.build(program, lanes)
        seconds["compile"] = time.perf_counter() - t
        t = time.perf_counter()
    simulated = simulate(program, codes, lanes, read_buffers=False, engine=engine)
    seconds["simulate"] = time.perf_counter() - t
    if not np.array_equal(simulated.words, expected):
        detail = first_mismatch(program, codes, simulated, expected)
        raise FuzzMismatch(f"{where}: hardware differs from the integer reference: {detail}")
    return ChainResult(cfg.to_dict(), seed, len(codes), int(expected.size), engine, len(data_x), seconds,
                       program, export, lanes)


def prove_config(result: ChainResult, workdir, timeout: float = 300.0) -> tuple[int, list[str]]:
    """The quick formal proofs (`intformer.proofs.all_proofs`, full=False: the datapath with its overflow
    audit, the streams and the host link) for a fuzzed configuration's program at its lanes. Returns the
    number proven and a line per proof that did not pass (its name, status, message and the configuration)."""
    from intformer.accel.sby import run_proof

    from .proofs import all_proofs
    proven, failed = 0, []
    for proof in all_proofs(result.program, result.lanes, full=False):
        r = run_proof(proof, workdir, timeout)
        if r.status == "pass":
            proven += 1
        else:
            failed.append(f"proof {r.name} {r.status} (fuzz config seed {result.seed}, lanes {result.lanes}: "
                          f"{result.config}): {r.message}")
    return proven, failed


# ------------------------------------------------------------------------------------ export files

EXPORT_CORRUPTIONS = ("bitflip", "bitflips", "truncate", "extend", "zero_run", "header_edit",
                      "header_edit_rehashed", "tensor_edit_rehashed", "newer_version", "magic", "head_len",
                      "empty")


def _rehash(body: bytes) -> bytes:
    return body + hashlib.sha256(body).digest()


def corrupt_export(raw: bytes, rng: np.random.Generator, kind: str | None = None) -> tuple[str, bytes]:
    """One random corruption of an export file's bytes; returns (kind, corrupted bytes), never `raw`."""
    from intformer.model import modelfile

    kind = kind or str(rng.choice(EXPORT_CORRUPTIONS))
    data = bytearray(raw)
    prefix = modelfile._PREFIX
    _, version, head_len = prefix.unpack_from(raw)
    head_end = prefix.size + head_len
    if kind == "bitflip":
        i = int(rng.integers(0, len(data)))
        data[i] ^= 1 << int(rng.integers(0, 8))
    elif kind == "bitflips":
        for i in rng.choice(len(data), size=int(rng.integers(2, 9)), replace=False):
            data[int(i)] ^= int(rng.integers(1, 256))
    elif kind == "truncate":
        data = data[:int(rng.integers(0, len(data)))]
    elif kind == "extend":
        data += bytes(rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8))
    elif kind == "zero_run":
        a = int(rng.integers(0, len(data) - 1))
        b = min(len(data), a + int(rng.integers(1, 64)))
        if not any(data[a:b]):
            data[a] = 0xFF
        else:
            data[a:b] = bytes(b - a)
    elif kind in ("header_edit", "header_edit_rehashed"):
        # change one value of the header (a shape, an offset, a shift, a range, a config field) and write
        # the JSON back; "_rehashed" also fixes the length and the checksum, as a careless editor would
        header = json.loads(raw[prefix.size:head_end])
        _edit_json(header, rng)
        head = json.dumps(header, sort_keys=True).encode()
        body = prefix.pack(modelfile.MAGIC, version, len(head)) + head + raw[head_end:-32]
        data = bytearray(_rehash(body) if kind.endswith("rehashed") else body + raw[-32:])
    elif kind == "tensor_edit_rehashed":
        # a payload word changed and the checksum fixed: the model really is a different one; loading must
        # refuse it only when the header's structure no longer fits it -- see check_export_corruption
        payload = bytearray(raw[head_end:-32])
        if len(payload) >= 8:
            i = int(rng.integers(0, len(payload) // 8)) * 8
            payload[i:i + 8] = struct.pack("<q", int(rng.integers(-2 ** 62, 2 ** 62)))
        data = bytearray(_rehash(raw[:head_end] + bytes(payload)))
    elif kind == "newer_version":
        data[8:12] = struct.pack("<I", version + int(rng.integers(1, 1000)))
        if rng.random() < 0.5:
            data = bytearray(_rehash(bytes(data[:-32])))
    elif kind == "magic":
        i = int(rng.integers(0, 8))
        data[i] ^= int(rng.integers(1, 256))
    elif kind == "head_len":
        options = [0, 1, head_len - 1, head_len + 1, len(raw), 2 ** 63, 2 ** 64 - 1]
        new = options[int(rng.integers(0, len(options)))]
        data[12:20] = struct.pack("<Q", new)
        if rng.random() < 0.5:
            data = bytearray(_rehash(bytes(data[:-32])))
    elif kind == "empty":
        data = bytearray()
    else:
        raise ValueError(f"unknown corruption {kind!r}")
    if bytes(data) == raw:                               # e.g. an edit that happened to change nothing
        data = bytearray(raw[:-1])
    return kind, bytes(data)


def _edit_json(node, rng: np.random.Generator) -> None:
    """Change one leaf of a JSON tree (a number, string, bool or null) in place, or drop a key."""
    paths = []

    def walk(n, path):
        if isinstance(n, dict):
            for k, v in n.items():
                walk(v, path + [k])
        elif isinstance(n, list):
            for i, v in enumerate(n):
                walk(v, path + [i])
        else:
            paths.append(path)
    walk(node, [])
    path = paths[int(rng.integers(0, len(paths)))]
    parent = node
    for p in path[:-1]:
        parent = parent[p]
    key, old = path[-1], parent[path[-1]]
    if isinstance(parent, dict) and rng.random() < 0.1:
        del parent[key]
        return
    choices = [None, True, -1, 0, 1, 2 ** 70, -(2 ** 40), 0.5, "x", [], {}]
    if isinstance(old, bool):
        new = not old
    elif isinstance(old, int):
        new = old + int(rng.choice([-1, 1, 2, -(2 ** 31), 2 ** 31, 2 ** 62])) if rng.random() < 0.7 else \
            choices[int(rng.integers(0, len(choices)))]
    elif isinstance(old, float):
        new = old * -1.0 if old and rng.random() < 0.5 else float("nan") if rng.random() < 0.5 else 1e308
    elif isinstance(old, str):
        new = old + "x" if rng.random() < 0.5 else choices[int(rng.integers(0, len(choices)))]
    else:
        new = choices[int(rng.integers(1, len(choices)))]
    if new == old and type(new) is type(old):
        new = "changed"
    parent[key] = new


def programs_equal(a, b) -> bool:
    return (a.structure() == b.structure() and set(a.tensors) == set(b.tensors)
            and all(np.array_equal(a.tensors[k], b.tensors[k]) and a.tensors[k].shape == b.tensors[k].shape
                    for k in a.tensors))


REHASHED = ("header_edit_rehashed", "tensor_edit_rehashed")


def check_export_corruption(raw: bytes, original, kind: str, corrupted: bytes, tmp_path) -> str:
    """Load `corrupted`. Returns "refused" when it raised IntformerError naming the file. Any other exception,
    or a corrupted file that loads, raises AssertionError -- except for the two kinds that rewrite the checksum
    (a deliberate edit that no checksum can tell from a genuine file): those may load, as "edited", but only as
    a consistent program that the integer reference runs on every extreme input without an exception."""
    from intformer.model import modelfile
    from intformer.model.intref import run_program

    path = tmp_path / "corrupt.intf"
    path.write_bytes(corrupted)
    try:
        program, header = modelfile.load(path)
    except IntformerError as exc:
        text = str(exc)
        assert "Traceback" not in text and str(path) in text, text
        return "refused"
    except Exception as exc:        # noqa: BLE001 -- the point: nothing but IntformerError may escape
        raise AssertionError(f"{kind}: loading a corrupted export raised {type(exc).__name__}: {exc}") from exc
    if kind in REHASHED:
        try:
            run_program(program, extreme_codes(program, np.random.default_rng(0), 1))
        except Exception as exc:    # noqa: BLE001
            raise AssertionError(f"{kind}: an edited export loaded, then the reference failed on it: "
                                 f"{type(exc).__name__}: {exc}") from exc
        return "edited"
    raise AssertionError(f"{kind}: a corrupted export file ({len(corrupted)} of {len(raw)} bytes) loaded "
                         f"without an error" + (" as the same program" if programs_equal(program, original)
                                                else " as a DIFFERENT program"))


# --------------------------------------------------------------------------------------- link frames

FRAME_CORRUPTIONS = ("bitflip", "bitflips2", "bitflips3", "burst", "truncate", "drop_byte", "insert_byte",
                     "garbage_before", "len_edit", "crc_edit", "sof")
# corruptions CRC-16/CCITT always detects in a frame of unchanged length (Hamming distance 4 up to 32751 bits,
# every burst up to 16 bits, any change of the CRC field alone)
CRC_GUARANTEED = ("bitflip", "bitflips2", "bitflips3", "burst", "crc_edit")


def corrupt_frame(frame: bytes, rng: np.random.Generator, kind: str | None = None) -> tuple[str, bytes]:
    """One random corruption of an encoded frame. The flips and the burst (up to 16 bits) are the errors
    CRC-16/CCITT always detects; the others change the frame's length, so the decoder must resynchronize."""
    from intformer.boards import protocol as P

    kind = kind or str(rng.choice(FRAME_CORRUPTIONS))
    data = bytearray(frame)
    nbits = len(data) * 8
    # flips are kept off the SOF byte (bit positions 8..): a frame without its SOF is garbage ("sof" below)
    if kind in ("bitflip", "bitflips2", "bitflips3"):
        count = {"bitflip": 1, "bitflips2": 2, "bitflips3": 3}[kind]
        for bit in rng.choice(np.arange(8, nbits), size=min(count, nbits - 8), replace=False):
            data[int(bit) // 8] ^= 1 << (int(bit) % 8)
    elif kind == "burst":
        length = int(rng.integers(2, 17))
        start = int(rng.integers(8, max(9, nbits - length + 1)))
        pattern = int(rng.integers(0, 1 << length)) | 1 | (1 << (length - 1))
        for k in range(length):
            if pattern >> k & 1 and start + k < nbits:
                data[(start + k) // 8] ^= 1 << ((start + k) % 8)
    elif kind == "truncate":
        data = data[:int(rng.integers(1, len(data)))]
    elif kind == "drop_byte":
        del data[int(rng.integers(1, len(data)))]
    elif kind == "insert_byte":
        data.insert(int(rng.integers(1, len(data))), int(rng.integers(0, 256)))
    elif kind == "garbage_before":
        junk = bytes(rng.integers(0, 256, int(rng.integers(1, 12)), dtype=np.uint8))
        data = bytearray(junk) + data[:int(rng.integers(1, len(data)))]
    elif kind == "len_edit":
        old = data[3] | data[4] << 8
        new = int(rng.integers(0, P.MAX_LEN + 1))
        data[3:5] = struct.pack("<H", new if new != old else old ^ 1)
    elif kind == "crc_edit":
        data[-2:] = struct.pack("<H", (data[-2] | data[-1] << 8) ^ int(rng.integers(1, 1 << 16)))
    elif kind == "sof":
        data[0] = int(rng.choice([b for b in range(256) if b != P.SOF]))
    else:
        raise ValueError(f"unknown frame corruption {kind!r}")
    if bytes(data) == frame:
        data = data[:-1]
    return kind, bytes(data)


def random_frame(rng: np.random.Generator) -> bytes:
    from intformer.boards import protocol as P

    cmd = int(rng.choice([P.INFER, P.INFO, P.RESULT, P.INFO_REPLY, P.ERROR, int(rng.integers(0, 256))]))
    payload = bytes(rng.integers(0, 256, int(rng.integers(0, 40)), dtype=np.uint8))
    return P.encode_frame(cmd, int(rng.integers(0, 256)), payload)


def check_link_corruption(bad: bytes, good: bytes, kind: str, split: int | None = None,
                          original: bytes | None = None) -> int:
    """Feed `bad` then `good` (in two chunks at `split`) to a fresh host `FrameDecoder`, then flush (the line
    went quiet). The good frame, and nothing else, must come out -- except the `original` frame when its bytes
    survived whole inside `bad` (a byte inserted before it is garbage ahead of an intact frame). Returns the number of decode errors recorded
    (at least one: the corruption was noticed)."""
    from intformer.boards import protocol as P

    dec = P.FrameDecoder()
    stream = bad + good
    split = len(stream) // 2 if split is None else split
    frames = dec.feed(stream[:split]) + dec.feed(stream[split:]) + dec.flush()
    want = P.FrameDecoder().feed(good)
    assert len(want) == 1
    # nothing else: a corrupted frame is never delivered (for a corruption that keeps the frame's length and
    # leaves LEN alone, CRC-16/CCITT guarantees it; a frame of changed length, or a stray SOF inside it, can
    # pass only by a 2^-16 CRC accident: its encoding is then in the byte stream, and CrcAccident says so)
    intact = P.FrameDecoder().feed(original)[0] if original is not None and original in bad else None
    ghosts = [f for f in frames if f != intact and f != want[0]]
    for g in ghosts:
        # the whole corrupted frame, same length, after flips or a burst the CRC always detects: a CRC fault
        guaranteed = kind in CRC_GUARANTEED and g.encode() == bad and (original is None or len(bad) == len(original))
        if g.encode() in stream and not guaranteed:
            raise CrcAccident(f"{kind}: {g} (bad {bad.hex()})")
    assert not ghosts, f"{kind}: a frame was delivered from corrupted bytes: {ghosts} (bad {bad.hex()})"
    assert frames and frames[-1] == want[0], f"{kind}: the good frame after a corrupted one was lost: {frames}"
    assert dec.pending == 0
    errors = dec.take_errors()
    assert errors, f"{kind}: the decoder recorded no skip for a corrupted frame"
    return len(errors)
