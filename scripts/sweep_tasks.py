"""What a sweep trial does that depends on the task (`intformer sweep --task forecast|classify|detect`): load the
data once, make a trial's model configuration fit it, give the windows that calibrate the untrained probe of
the fit check, train, write the run folder, and score the integer program on the test part.

The first objective, minimised with latency, resources and energy (scripts/sweep.py):
  forecast  test_mse:   the integer program's mean squared error on the test windows (scaled units);
  classify  test_error: 1 - accuracy of the class word the integer program computes, on the test series;
  detect    test_error: 1 - F1 of the flag word the integer program computes for every test row, point-wise
                        and pooled over the experiments as SKAB's leaderboard computes it
                        (`model.anomaly_metrics.detection_metrics`).

Where the window comes from: a forecaster's and a detector's window is a search dimension; a classifier of
.ts series reads one whole series (its length, set by --length, is the window), so `window` is no dimension
there; a classifier of a labelled CSV cuts the rows into windows of `window` rows, so it is one.
"""
from __future__ import annotations

import numpy as np

from intformer.model.errors import IntformerError

TASKS = ("forecast", "classify", "detect")
ERROR_NAME = {"forecast": "test_mse", "classify": "test_error", "detect": "test_error"}
# what the first objective is, for the report's axis and text
ERROR_LABEL = {"forecast": "integer test MSE (scaled)",
               "classify": "integer test error (1 - accuracy)",
               "detect": "integer test error (1 - F1, SKAB's point-wise F1)"}
ERROR_COLUMN = {"forecast": "test MSE", "classify": "test error", "detect": "test error"}


def check_task(task: str) -> str:
    if task not in TASKS:
        raise IntformerError(f"--task must be one of {', '.join(TASKS)}, got {task!r}")
    return task


def labelled_csv(spec: dict) -> bool:
    """A classification spec that names a labelled CSV (cut into windows of `window` rows), not a .ts pair."""
    return spec.get("label") is not None or spec.get("fmt") == "csv"


def window_searched(task: str, spec: dict) -> bool:
    """Whether `window` is a dimension of the search: not for a classifier of .ts series (the series is the
    window)."""
    return task != "classify" or labelled_csv(spec)


def trial_data(task: str, spec: dict):
    """The task's data for the trials, loaded (and checked) once per worker."""
    return {"forecast": ForecastData, "classify": ClassifyData, "detect": DetectData}[check_task(task)](spec)


# mixed precision: the bit width of a part of every layer (the search's attn_bits and ffn_bits; 0: the model's
# bits) and the tensor-name prefixes it sets (`ModelConfig.bits_overrides`). Attention's two products read Q,
# K^T, the probabilities and V; the feed-forward block reads the first norm's output and its own weights and
# hidden codes. A part whose operands are 4 bits or narrower issues two k per cycle (`accel.plan.pairing`),
# so the bit width of a part changes the cycles as well as the error.
PART_PREFIXES = {"attn_bits": ("q", "kt", "a", "v"), "ffn_bits": ("n1", "ffn1", "ffn2")}


def part_bits_overrides(p: dict) -> dict[str, int]:
    """The trial parameters' attn_bits and ffn_bits as bit-width overrides of each layer's tensors."""
    out = {}
    for key, names in PART_PREFIXES.items():
        bits = int(p.get(key) or 0)
        if bits and bits != p["bits"]:
            out.update({f"l{i}.{name}": bits for i in range(p["layers"]) for name in names})
    return out


def precision_label(p: dict) -> str:
    """A trial's bit widths for its tables: `8`, or `8, attn 4, ffn 4` where a part differs."""
    parts = [f"{key.split('_')[0]} {p[key]}" for key in PART_PREFIXES if p.get(key) and p[key] != p["bits"]]
    return ", ".join([str(p["bits"])] + parts)


def _model_config(task: str, p: dict, model_keys: tuple):
    """The trial's ModelConfig: the searched keys (attn_bits and ffn_bits as bit-width overrides), and for a
    classifier or detector the settings `intformer train --task` uses (no last-value skip, the task's
    dropout)."""
    from intformer.model.config import ModelConfig

    from .options import TASK_DEFAULTS
    keys = {k: p[k] for k in model_keys if k in p}
    overrides = part_bits_overrides(p)
    if overrides:
        keys["bits_overrides"] = overrides
    if task == "forecast":
        return ModelConfig(**keys)
    level = {"level": False} if task == "classify" else {}
    return ModelConfig(task=task, skip=False, dropout=TASK_DEFAULTS[task]["dropout"], **level, **keys)


def train_config(task: str, epochs: int, seed: int, float_baseline: bool, max_train_windows: int | None):
    """The trial's TrainConfig: for a forecaster the dataclass defaults (as the sweep always had), for a
    classifier or detector the batch size, learning rate and patience that `intformer train --task` uses."""
    from intformer.model.config import TrainConfig

    from .options import TASK_DEFAULTS
    common = {"epochs": epochs, "seed": seed, "float_baseline": float_baseline,
              "max_train_windows": max_train_windows}
    if task == "forecast":
        return TrainConfig(**common)
    d = TASK_DEFAULTS[task]
    return TrainConfig(batch_size=d["batch_size"], lr=d["lr"], patience=d["patience"], **common)


def _check_tokens(mcfg, what: str) -> None:
    from .train_cmd import MAX_TOKENS
    if mcfg.n_tokens > MAX_TOKENS:
        raise IntformerError(f"{what}: {mcfg.n_tokens} tokens, more than the {MAX_TOKENS} this intformer trains")


class ForecastData:
    """A forecasting series (`model.data.load_series`); objective: the integer test MSE."""
    task = "forecast"

    def __init__(self, spec: dict):
        from intformer.model.data import load_series
        self.spec = spec
        self.series = load_series(**spec)

    def config(self, p: dict, model_keys: tuple):
        """The bound configuration; IntformerError if it cannot run on this data (the trial is pruned)."""
        from intformer.model.train import bind_data
        mcfg = bind_data(_model_config(self.task, p, model_keys), self.series)
        if mcfg.window + mcfg.horizon > len(self.series.target_values) // 4:
            raise IntformerError(f"window {mcfg.window} too long for the data")
        return mcfg

    def calibration_inputs(self, mcfg) -> np.ndarray:
        from intformer.model.data import Scaler, make_windows
        return make_windows(self.series, Scaler.fit(self.series), mcfg.window, mcfg.horizon, "train").x

    def train(self, mcfg, tcfg):
        from intformer.model.train import train_models
        return train_models(self.series, mcfg, tcfg, progress=False)

    def save(self, folder, trained, mcfg, tcfg) -> None:
        from intformer.model import runfolder
        runfolder.save(folder, trained, self.spec, mcfg, tcfg.to_dict())

    def score(self, trained, mcfg) -> tuple[float, dict]:
        """(the objective, more figures for the trial's attributes)."""
        from intformer.model.data import make_windows
        from intformer.model.evaluate import integer_forecast
        test = make_windows(self.series, trained.scaler, mcfg.window, mcfg.horizon, "test")
        _, pred = integer_forecast(trained.program, test.x)
        return float(np.mean((pred - test.y) ** 2)), {}


class ClassifyData:
    """Labelled series (`model.tsdata.load_classification`): a .ts pair (the embedded BasicMotions without a
    path), read once, or a labelled CSV, cut into windows of each trial's `window` rows (read once per
    window); objective: 1 - the integer program's test accuracy."""
    task = "classify"

    def __init__(self, spec: dict):
        self.spec = dict(spec)
        self._by_window: dict = {}
        if not labelled_csv(spec):
            self._by_window[None] = self._load(self.spec)     # a bad .ts pair fails here, before any trial

    @staticmethod
    def _load(spec: dict):
        from intformer.model.tsdata import load_classification
        return load_classification(**spec)

    def data(self, window: int | None):
        """The labelled data of a trial's window (None: the .ts series, whatever the window)."""
        key = window if labelled_csv(self.spec) else None
        if key not in self._by_window:
            self._by_window[key] = self._load({**self.spec, "window": key})
        return self._by_window[key]

    def config(self, p: dict, model_keys: tuple):
        from intformer.model.train import bind_classes
        window = p.get("window") if labelled_csv(self.spec) else None
        data = self.data(window)
        mcfg = bind_classes(_model_config(self.task, p, model_keys), data)
        _check_tokens(mcfg, f"{data.source}: series of {mcfg.window} steps")
        return mcfg

    def _of(self, mcfg):
        return self.data(mcfg.window if labelled_csv(self.spec) else None)

    def calibration_inputs(self, mcfg) -> np.ndarray:
        data = self._of(mcfg)
        return data.part("train", data.scaler()).x

    def train(self, mcfg, tcfg):
        from intformer.model.train import train_classifier
        return train_classifier(self._of(mcfg), mcfg, tcfg, progress=False)

    def save(self, folder, trained, mcfg, tcfg) -> None:
        from intformer.model import runfolder
        spec = {**self.spec, "window": mcfg.window} if labelled_csv(self.spec) else self.spec
        runfolder.save(folder, trained, spec, mcfg, tcfg.to_dict(), classes=self._of(mcfg).classes)

    def score(self, trained, mcfg) -> tuple[float, dict]:
        from intformer.model.evaluate import integer_classes
        test = self._of(mcfg).part("test", trained.scaler)
        _, classes = integer_classes(trained.program, test.x)
        accuracy = float(np.mean(classes == test.y))
        return 1.0 - accuracy, {"accuracy": accuracy}


class DetectData:
    """Anomaly data (`model.anomaly_data.load_anomaly_spec`: a SKAB folder, a UCR series, the embedded UCR
    series 135 without a path), read once; objective: 1 - F1 of the integer program's flag words on every
    test row, against the rows' labels."""
    task = "detect"

    def __init__(self, spec: dict):
        from intformer.model import anomaly_metrics as am
        from intformer.model.anomaly_data import load_anomaly_spec
        self.spec = spec
        self.aset = load_anomaly_spec(spec)
        # F1 needs anomalous and normal test rows: refused here, naming why, before any trial trains
        labels = self.aset.labels("test")
        am.detection_metrics(labels, [np.zeros_like(v) for v in labels])

    def config(self, p: dict, model_keys: tuple):
        from intformer.model.train import bind_detector, detector_windows
        mcfg = bind_detector(_model_config(self.task, p, model_keys), self.aset)
        _check_tokens(mcfg, f"--window {mcfg.window}")
        for part in ("train", "val", "test"):     # a window too long for a part: IntformerError, naming it
            detector_windows(self.aset, mcfg.window, part, mcfg.detect_mode)
        return mcfg

    def calibration_inputs(self, mcfg) -> np.ndarray:
        from intformer.model.train import detector_windows
        return detector_windows(self.aset, mcfg.window, "train", mcfg.detect_mode).x

    def train(self, mcfg, tcfg):
        from intformer.model.train import train_detector
        return train_detector(self.aset, mcfg, tcfg, progress=False, quantile=self.spec.get("quantile"))

    def save(self, folder, trained, mcfg, tcfg) -> None:
        from intformer.model import runfolder
        runfolder.save(folder, trained, self.spec, mcfg, tcfg.to_dict())

    def score(self, trained, mcfg) -> tuple[float, dict]:
        from intformer.model import anomaly_metrics as am
        from intformer.model.anomaly_data import make_anomaly_windows
        from intformer.model.intref import quantize_input, run_program
        from intformer.model.train import detector_windows
        program = trained.program
        test = detector_windows(self.aset, mcfg.window, "test", mcfg.detect_mode)
        meta = make_anomaly_windows(self.aset, mcfg.window, "test")
        words = run_program(program, quantize_input(program, test.x), segments=meta.experiment)
        labels = meta.labels
        # the flag is the program's last output word, the one the chip sends (after the C errors and the score)
        m = am.detection_metrics(labels, words[:, mcfg.inputs + 1], int(program.steps[-1].threshold))
        return 1.0 - m.f1, {"f1": m.f1, "far": m.far, "mar": m.mar, "threshold": int(m.threshold)}
