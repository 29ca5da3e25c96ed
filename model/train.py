"""Training: the float baseline, then quantization-aware training started from it, then the export.

Adam, mini-batches, early stopping on the validation loss with the best weights restored, a fixed seed. The
loss is the task's (`Objective`): the mean squared error of a forecast, the (class-weighted) cross-entropy of a
classifier's scores.
QAT starts from the float model's weights (when a float baseline is trained), the usual recipe: the float
optimum is a good start, and the fake-quant observers settle in the first batches.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .config import ModelConfig, TrainConfig
from .data import Scaler, Series, Windows, make_windows
from .tsdata import ClassData, Labelled
from .anomaly_data import AnomalySet, make_anomaly_windows
from .errors import IntformerError
from .export import to_program
from .program import IntProgram
from .qat import QATForecaster


@dataclass
class TrainedModels:
    qat: QATForecaster
    float_model: QATForecaster | None
    program: IntProgram
    scaler: Scaler
    history: dict          # per model: list of {"epoch", "train_mse", "val_mse"}
    seconds: dict          # per model: training wall time
    shrink: dict = field(default_factory=dict)   # per model: the head's validation shrinkage factor (--shrink)


class Objective:
    """The training loss and the validation score of a forecaster: the mean squared error (history keys
    train_mse, val_mse)."""
    train_key, val_key = "train_mse", "val_mse"

    def loss(self, pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.mean((pred - y) ** 2)

    def score(self, pred: np.ndarray, y: np.ndarray) -> dict:
        """{val_key: the value early stopping minimizes, ...: more figures for the history}."""
        return {self.val_key: float(np.mean((pred - y) ** 2))}


class ClassifyObjective(Objective):
    """A classifier's: cross-entropy of the scores, each class weighted (`--class-weights balanced`:
    n / (C * n_c) over the training part, so that the loss does not favour the common classes), and the
    validation accuracy beside the validation loss."""
    train_key, val_key = "train_loss", "val_loss"

    def __init__(self, y_train: np.ndarray, classes: int, weights: str):
        if weights not in ("balanced", "none"):
            raise IntformerError(f"--class-weights must be balanced or none, got {weights!r}")
        counts = np.bincount(y_train, minlength=classes).astype(np.float64)
        if np.any(counts == 0):
            raise IntformerError(f"class {int(np.flatnonzero(counts == 0)[0])} has no example in the training "
                                 f"part; every class needs training examples")
        w = len(y_train) / (classes * counts) if weights == "balanced" else np.ones(classes)
        self.weight = torch.as_tensor(w, dtype=torch.float32)

    def loss(self, pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(pred, y, weight=self.weight.to(pred.dtype))

    def score(self, pred: np.ndarray, y: np.ndarray) -> dict:
        p = torch.as_tensor(pred, dtype=torch.float64)
        ce = torch.nn.functional.cross_entropy(p, torch.as_tensor(y), weight=self.weight.double())
        return {self.val_key: float(ce), "val_accuracy": float(np.mean(np.argmax(pred, axis=1) == y))}


def predict(model: QATForecaster, x: np.ndarray, batch: int = 1024) -> np.ndarray:
    """Eval-mode forecasts in float64, where the fake-quant model reproduces the integer arithmetic."""
    m = copy.deepcopy(model).double().eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            out.append(m(torch.as_tensor(x[i:i + batch], dtype=torch.float64)).numpy())
    return np.concatenate(out) if out else np.zeros((0, model.cfg.outputs))


def _train_mode(model: QATForecaster, freeze_bn: bool) -> None:
    model.train()
    if freeze_bn:              # fine-tuning: BatchNorm keeps the float model's statistics, as it will run
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.eval()


def after_epoch(label: str, epoch: int) -> None:
    """Called after each epoch's checkpoint is written (a hook for tests that interrupt training)."""


def _save_checkpoint(path: Path, state: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)               # a checkpoint is whole or absent, even if the run is killed mid-write


def _fit(model: QATForecaster, train: Windows | Labelled, val: Windows | Labelled, cfg: TrainConfig, label: str,
         lr: float, progress: bool, fine_tune: bool = False,
         checkpoint: Path | None = None, objective: Objective | None = None) -> tuple[QATForecaster, list]:
    """Adam with early stopping on the validation loss (MSE by default), the starting point (epoch 0) included.

    With `checkpoint`, everything the loop depends on (model, optimizer, the shuffling generator, torch's RNG
    for dropout, the best state, the patience count, the history) is written there after every epoch, and
    an existing checkpoint is continued from: an interrupted run resumes at its last finished epoch and ends
    with the same weights as an uninterrupted one. A checkpoint marked done returns its result at once."""
    obj = objective or Objective()
    gen = torch.Generator().manual_seed(cfg.seed)
    x, y = torch.as_tensor(train.x), torch.as_tensor(train.y)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=cfg.weight_decay)
    start_epoch = 0
    if checkpoint is not None and checkpoint.exists():
        ck = torch.load(checkpoint, weights_only=False)
        model.load_state_dict(ck["model"])
        if ck["done"]:
            return model.eval(), ck["history"]
        opt.load_state_dict(ck["opt"])
        gen.set_state(ck["gen"])
        torch.set_rng_state(ck["torch_rng"])
        best, best_state, stale, history = ck["best"], ck["best_state"], ck["stale"], ck["history"]
        start_epoch = ck["epoch"]
    else:
        stale, history = 0, []
        # score the starting point (epoch 0): with the last-value skip a fresh model is persistence, a
        # fine-tune the quantized float model; an epoch is kept only if it does better on validation
        _train_mode(model, fine_tune)
        with torch.no_grad():      # calibrate the quantizers' ranges on a first batch
            model(x[torch.randperm(len(x), generator=gen)[:cfg.batch_size * 4]])
        scored = obj.score(predict(model, val.x), val.y)
        best = scored[obj.val_key]
        best_state = copy.deepcopy(model.state_dict())
        history.append({"epoch": 0, obj.train_key: None, **scored})
    bar = tqdm(range(start_epoch, cfg.epochs), desc=label, disable=not progress, leave=False, unit="epoch",
               initial=start_epoch, total=cfg.epochs)
    for epoch in bar:
        if stale >= cfg.patience:           # a resumed run that had already stopped early
            break
        _train_mode(model, fine_tune)
        order = torch.randperm(len(x), generator=gen)
        total = 0.0
        for i in range(0, len(x), cfg.batch_size):
            idx = order[i:i + cfg.batch_size]
            if len(idx) < 2:            # BatchNorm needs two samples
                continue
            loss = obj.loss(model(x[idx]), y[idx])
            if not torch.isfinite(loss):
                raise IntformerError(f"{label}: the loss became {loss.item()} at epoch {epoch + 1}; "
                                     f"lower the learning rate (--lr) or check the data for extreme values")
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        scored = obj.score(predict(model, val.x), val.y)
        val_mse = scored[obj.val_key]
        history.append({"epoch": epoch + 1, obj.train_key: total / len(x), **scored})
        bar.set_postfix(train=f"{total / len(x):.4f}", val=f"{val_mse:.4f}")
        if val_mse < best - 1e-7:
            best, best_state, stale = val_mse, copy.deepcopy(model.state_dict()), 0
        else:
            stale += 1
        if checkpoint is not None:
            _save_checkpoint(checkpoint, {"done": False, "epoch": epoch + 1, "model": model.state_dict(),
                                          "opt": opt.state_dict(), "gen": gen.get_state(),
                                          "torch_rng": torch.get_rng_state(), "best": best,
                                          "best_state": best_state, "stale": stale, "history": history})
            after_epoch(label, epoch + 1)
        if stale >= cfg.patience:
            break
    model.load_state_dict(best_state)
    model.settle()
    if checkpoint is not None:
        _save_checkpoint(checkpoint, {"done": True, "model": model.state_dict(), "history": history})
    return model.eval(), history


@torch.no_grad()
def shrink_head(model: QATForecaster, val: Windows) -> float | None:
    """Scale the head by alpha in [0, 1], the least-squares factor on validation for the forecast's change from
    the last observed value (shrinkage toward persistence); returns alpha, or None without the skip.

    The head is linear, so alpha folds into its weights and bias: the integer program and the hardware are
    unchanged in shape. The model is left as it was when the scaled head scores no better on validation.
    """
    if not model.cfg.skip or len(val.x) == 0:
        return None
    last = val.x[:, -1, model.cfg.target_index].astype(np.float64)
    if model.quantize:            # the skip adds the last value's input code
        lo, hi = model.q_in.lo, model.q_in.hi
        last = np.clip(np.floor(last / model.q_in.scale + 0.5), lo, hi) * model.q_in.scale
    pred = predict(model, val.x)
    change, wanted = pred - last[:, None], val.y - last[:, None]
    denom = float(np.sum(change * change))
    if denom <= 0:
        return None
    alpha = min(1.0, max(0.0, float(np.sum(change * wanted)) / denom))
    before = float(np.mean((pred - val.y) ** 2))
    state = copy.deepcopy(model.state_dict())
    model.head.weight.mul_(alpha)
    model.head.bias.mul_(alpha)
    model.settle()
    if not float(np.mean((predict(model, val.x) - val.y) ** 2)) < before:
        model.load_state_dict(state)
        return 1.0
    return alpha


def _subsample(w: Windows | Labelled, limit: int | None, seed: int) -> Windows | Labelled:
    if limit is None or len(w.x) <= limit:
        return w
    idx = np.sort(np.random.default_rng(seed).choice(len(w.x), limit, replace=False))
    if isinstance(w, Labelled):
        return Labelled(w.x[idx], w.y[idx])
    return Windows(w.x[idx], w.y[idx], w.target_rows[idx], w.last_target[idx])


def bind_data(mcfg: ModelConfig, series: Series) -> ModelConfig:
    """Fill in what the data decides (number of inputs, where the target is) and validate."""
    mcfg.inputs = len(series.columns)
    mcfg.target_index = series.columns.index(series.target) if series.target in series.columns else None
    return mcfg.validate()


def bind_classes(mcfg: ModelConfig, data: ClassData) -> ModelConfig:
    """What labelled data decides: the window (one series), the channels, the classes; no skip, no level."""
    mcfg.task, mcfg.classes = "classify", len(data.classes)
    mcfg.window, mcfg.inputs, mcfg.target_index = data.length, len(data.channels), None
    mcfg.skip, mcfg.level = False, False
    return mcfg.validate()


def bind_detector(mcfg: ModelConfig, aset: AnomalySet) -> ModelConfig:
    """What anomaly data decides: the channels (every one forecast); no single-target skip, one-step head."""
    mcfg.task, mcfg.inputs, mcfg.target_index, mcfg.classes = "detect", len(aset.channels), None, 0
    mcfg.skip, mcfg.horizon = False, 1
    return mcfg.validate()


def detector_windows(aset: AnomalySet, window: int, part: str, mode: str = "reconstruct") -> Labelled:
    """A detector's inputs, one per row t of the part: the window of `window` rows that ends with row t
    (mode "reconstruct", (N, window, channels)), or the `window` rows before t followed by row t (mode
    "forecast", (N, window + 1, channels)); and the error the model should make, zero (N, channels): training
    minimizes the squared error of its estimate of row t."""
    w = make_anomaly_windows(aset, window, part)
    x = w.x[:, 1:] if mode == "reconstruct" else w.x
    return Labelled(np.concatenate([x, w.y[:, None, :]], axis=1), np.zeros_like(w.y))


def detector_segments(aset: AnomalySet, window: int, part: str) -> np.ndarray:
    """The experiment of each of `detector_windows`' windows (time order within each): where a detector's
    smoothed score restarts (`model.intref.run_program`'s `segments`)."""
    return make_anomaly_windows(aset, window, part).experiment


def detector_scores(model: QATForecaster, x: np.ndarray, program: IntProgram | None = None,
                    segments=None) -> np.ndarray:
    """Anomaly scores of windows x (N, window + 1, C), a stream in window order (restarting where `segments`
    changes): for the fake-quant model (with `program`: its error scale and score decay) the chip's integer
    score, sum |error code| smoothed by `intops.score_ewma`; for the float model the sum of |error| in scaled
    units, smoothed by the same EWMA in floating point (s = s - s / 2^k + r) with the model's decay."""
    from . import intops
    from .intref import stream_starts
    err = predict(model, x)
    starts = stream_starts(segments, len(x))
    if program is not None:
        rows = intops.anomaly_score(np.floor(err / program.output_scale + 0.5).astype(np.int64))
        return intops.score_ewma(rows, program.steps[-1].decay, starts)
    from .anomaly_metrics import ewma
    return ewma(np.abs(err).sum(axis=1), model.cfg.score_decay, starts)


def set_threshold(model: QATForecaster, val: Labelled, quantile: float, segments=None) -> int:
    """The integer threshold T of a fake-quant detector: the `quantile` of its integer scores on the normal
    validation windows (an observed score, `anomaly_metrics.quantile_threshold`; smoothed per experiment,
    `segments`), kept in the model."""
    from .anomaly_metrics import quantile_threshold
    program = to_program(copy.deepcopy(model).double())
    t = int(quantile_threshold(detector_scores(model, val.x, program, segments), quantile))
    model.score_threshold.fill_(t)
    return t


def train_models(series: Series, mcfg: ModelConfig, tcfg: TrainConfig, progress: bool = True,
                 float_model: QATForecaster | None = None, checkpoints: Path | None = None) -> TrainedModels:
    """Train the float baseline (unless one is given) and the QAT model from its weights; export.

    `checkpoints`: a folder for each phase's checkpoint (`ckpt-float.pt`, `ckpt-qat.pt`); a phase with one
    there continues from it (see `_fit`). The wall times then count this process's share only."""
    bind_data(mcfg, series)
    torch.manual_seed(tcfg.seed)
    np.random.seed(tcfg.seed)
    scaler = Scaler.fit(series)
    train = _subsample(make_windows(series, scaler, mcfg.window, mcfg.horizon, "train"), tcfg.max_train_windows,
                       tcfg.seed)
    val = make_windows(series, scaler, mcfg.window, mcfg.horizon, "val")
    return _train_phases(mcfg, tcfg, scaler, train, val, Objective(), progress, float_model, checkpoints)


def train_classifier(data: ClassData, mcfg: ModelConfig, tcfg: TrainConfig, progress: bool = True,
                     float_model: QATForecaster | None = None, checkpoints: Path | None = None) -> TrainedModels:
    """`train_models` for a classifier on labelled data: cross-entropy (`ClassifyObjective`), no shrinkage."""
    bind_classes(mcfg, data)
    torch.manual_seed(tcfg.seed)
    np.random.seed(tcfg.seed)
    scaler = data.scaler()
    train = _subsample(data.part("train", scaler), tcfg.max_train_windows, tcfg.seed)
    val = data.part("val", scaler)
    objective = ClassifyObjective(train.y, mcfg.classes, tcfg.class_weights)
    return _train_phases(mcfg, tcfg, scaler, train, val, objective, progress, float_model, checkpoints)


def train_detector(aset: AnomalySet, mcfg: ModelConfig, tcfg: TrainConfig, progress: bool = True,
                   float_model: QATForecaster | None = None, checkpoints: Path | None = None,
                   quantile: float | None = None) -> TrainedModels:
    """`train_models` for an anomaly detector: the squared error of its estimate of the actual row on the
    training windows (normal operation), then the threshold from the validation windows' scores (`set_threshold`),
    exported with the program."""
    from .anomaly_metrics import THRESHOLD_QUANTILE
    bind_detector(mcfg, aset)
    torch.manual_seed(tcfg.seed)
    np.random.seed(tcfg.seed)
    train = _subsample(detector_windows(aset, mcfg.window, "train", mcfg.detect_mode), tcfg.max_train_windows,
                       tcfg.seed)
    val = detector_windows(aset, mcfg.window, "val", mcfg.detect_mode)
    trained = _train_phases(mcfg, tcfg, aset.scaler, train, val, Objective(), progress, float_model, checkpoints)
    set_threshold(trained.qat, val, quantile or THRESHOLD_QUANTILE, detector_segments(aset, mcfg.window, "val"))
    trained.program = to_program(copy.deepcopy(trained.qat).double())
    return trained


def _train_phases(mcfg: ModelConfig, tcfg: TrainConfig, scaler: Scaler, train, val, objective: Objective,
                  progress: bool, float_model: QATForecaster | None, checkpoints: Path | None) -> TrainedModels:
    history, seconds, shrink = {}, {}, {}

    qat = QATForecaster(mcfg, quantize=True)
    if tcfg.float_baseline and float_model is None:
        start = time.perf_counter()
        float_model, history["float"] = _fit(QATForecaster(mcfg, quantize=False), train, val, tcfg, "float",
                                             tcfg.lr, progress,
                                             checkpoint=checkpoints / "ckpt-float.pt" if checkpoints else None,
                                             objective=objective)
        seconds["float"] = time.perf_counter() - start
        if tcfg.shrink:
            shrink["float"] = shrink_head(float_model, val)
    if float_model is not None:
        qat.load_state_dict(float_model.state_dict(), strict=False)
        # the ranges start afresh from the first QAT batch: the float model has none
        with torch.no_grad():
            for name, t in list(qat.named_buffers()) + list(qat.named_parameters()):
                if name.endswith("range_max") or name.endswith("initialized"):
                    t.copy_(QATForecaster(mcfg).state_dict()[name])
    start = time.perf_counter()
    # fine-tuning from the float optimum wants smaller steps than training from scratch
    scale = tcfg.qat_lr_scale
    if scale is None:
        scale = 0.1 if mcfg.bits >= 7 else 0.3 if mcfg.bits >= 5 else 1.0
    lr = tcfg.lr * (scale if float_model is not None else 1.0)
    qat, history["qat"] = _fit(qat, train, val, tcfg, f"QAT {mcfg.bits}-bit", lr, progress,
                               fine_tune=float_model is not None,
                               checkpoint=checkpoints / "ckpt-qat.pt" if checkpoints else None,
                               objective=objective)
    if tcfg.shrink:
        shrink["qat"] = shrink_head(qat, val)
    seconds["qat"] = time.perf_counter() - start
    program = to_program(copy.deepcopy(qat).double())
    return TrainedModels(qat, float_model, program, scaler, history, seconds, shrink)
