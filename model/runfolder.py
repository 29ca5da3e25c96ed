"""A run folder: everything one training run produced, written so that a half-written one is never mistaken
for a finished one.

    run.json     status ("training" while being written, "complete" at the end), configs, data spec, times
    model.intf   the integer export (model.modelfile)
    qat.pt       QAT model state; float.pt the float baseline (when trained)
    history.json training curves
    ckpt-*.pt    while training: each phase's checkpoint after its last finished epoch (`--resume` continues
                 from them); removed when the run completes
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from . import modelfile
from .config import ModelConfig
from .data import Scaler, Series, load_series, make_windows
from .tsdata import ClassData, load_classification
from .errors import IntformerError
from .program import IntProgram
from .qat import QATForecaster
from .train import TrainedModels


def prepare(out: Path, force: bool, options: dict | None = None, resume: bool = False) -> Path:
    """Create an empty run folder; an existing one is kept unless --force. A folder that an interrupted run
    left half-written (run.json says "training", or there is no run.json) is named as such, with the two
    ways out: --force cleans it, --resume continues it with the options recorded in it (`resume`: the folder
    and its training checkpoints are kept). `options` (the data spec and the command's options) are
    recorded in run.json for --resume."""
    out = Path(out)
    if resume and out.is_dir() and run_status(out) == "status 'training'":
        return out
    if out.exists() and not out.is_dir():
        raise IntformerError(f"{out}: exists and is not a folder; choose another --out")
    if out.exists() and any(out.iterdir()):
        if not force:
            status = run_status(out)
            if status == "complete":
                raise IntformerError(f"{out}: run folder already exists; choose another --out or add --force "
                                     f"to overwrite it")
            if status == "no run.json" and not (out / "model.intf").exists():
                raise IntformerError(f"{out}: the folder already exists and holds files that are no run (no "
                                     f"run.json); choose another --out, or add --force to replace its contents")
            raise IntformerError(f"{out}: a run folder left half-written by an interrupted run ({status}); add "
                                 f"--resume to continue it from its last finished epoch with its recorded options, or --force to clean it "
                                 f"and start over")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    info = {"status": "training", "started": time.time()}
    if options is not None:
        info["options"] = options
    _write_json(out / "run.json", info)
    return out


def run_status(path: Path) -> str:
    """ "complete", or what is wrong with the folder: "status 'training'", "no run.json", "unreadable run.json"."""
    status_file = Path(path) / "run.json"
    if not status_file.is_file():
        return "no run.json"
    try:
        status = json.loads(status_file.read_text()).get("status")
    except (ValueError, AttributeError, OSError):
        return "unreadable run.json"
    return "complete" if status == "complete" else f"status {status!r}"


def interrupted_options(out: Path) -> dict:
    """The options an interrupted run recorded (for --resume); raises when the folder is not such a run."""
    out = Path(out)
    status = run_status(out) if out.is_dir() else "no such folder"
    if status == "complete":
        raise IntformerError(f"{out}: this run finished; nothing to resume (add --force to train it again)")
    if status in ("no such folder", "no run.json", "unreadable run.json"):
        raise IntformerError(f"{out}: not an interrupted run folder ({status}); nothing to resume: train with "
                             f"`intformer train --out {out}`" + (" --force" if out.exists() else ""))
    info = json.loads((out / "run.json").read_text())
    if not isinstance(info.get("options"), dict):
        raise IntformerError(f"{out}: this interrupted run recorded no options to resume with; add --force to "
                             f"clean it and train again")
    return info["options"]


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    tmp.replace(path)


def save(out: Path, trained: TrainedModels, data_spec: dict, mcfg: ModelConfig, tcfg: dict,
         classes: list[str] | None = None) -> None:
    """Write the finished run; `classes`: a classifier's class names (index = class word), kept in the export
    file and run.json so that a class word can be named without the data."""
    torch.save(trained.qat.state_dict(), out / "qat.pt")
    if trained.float_model is not None:
        torch.save(trained.float_model.state_dict(), out / "float.pt")
    meta = {"data": data_spec, "train": tcfg, "seconds": trained.seconds, "task": mcfg.task}
    if classes is not None:
        meta["classes"] = list(classes)
    modelfile.save(out / "model.intf", trained.program, mcfg.to_dict(), trained.scaler.to_dict(), meta)
    _write_json(out / "history.json", trained.history)
    _write_json(out / "run.json", {"status": "complete", "finished": time.time(), "model": mcfg.to_dict(),
                                   "train": tcfg, "data": data_spec, "seconds": trained.seconds,
                                   "has_float": trained.float_model is not None, "task": mcfg.task,
                                   **({"classes": list(classes)} if classes is not None else {})})
    for ckpt in out.glob("ckpt-*.pt"):          # the run is complete: the checkpoints have served
        ckpt.unlink()


@dataclass
class Run:
    path: Path
    info: dict
    program: IntProgram
    header: dict

    @property
    def config(self) -> ModelConfig:
        return ModelConfig.from_dict(self.header["config"])

    @property
    def scaler(self) -> Scaler:
        return Scaler.from_dict(self.header["scaler"])

    def load_model(self, kind: str) -> QATForecaster | None:
        """The "qat" or "float" model, or None when the run has none of that kind."""
        path = self.path / f"{kind}.pt"
        if not path.exists():
            return None
        model = QATForecaster(self.config, quantize=(kind == "qat"))
        model.load_state_dict(torch.load(path, weights_only=True))
        return model.eval()

    @property
    def task(self) -> str:
        """"forecast", "classify" or "detect" (a run written before --task existed is a forecaster)."""
        return self.config.task

    @property
    def classes(self) -> list[str]:
        """A classifier's class names, index = class word (empty for a forecaster)."""
        names = self.header.get("meta", {}).get("classes")
        return list(names) if names else [str(i) for i in range(self.config.classes)]

    def require_task(self, wanted: str | None, command: str) -> str:
        """The run's task; a --task that is not it is refused naming both (None: whatever the run is)."""
        if wanted is not None and wanted != self.task:
            raise IntformerError(f"{self.path}: this is a {self.task} run, not {wanted}; `intformer {command}` "
                                 f"takes it with --task {self.task} (or without --task), or train a {wanted} run "
                                 f"with `intformer train --task {wanted}`")
        return self.task

    def series(self, **override) -> Series:
        if self.task != "forecast":
            raise IntformerError(f"{self.path}: this is a {self.task} run; it has labelled series, not a "
                                 "forecasting table")
        spec = dict(self.info.get("data", {}))
        spec.update({k: v for k, v in override.items() if v is not None})
        return load_series(**spec)

    def labelled(self, **override) -> ClassData:
        """A classifier's data, as it was split and labelled in training (the split is seeded)."""
        spec = dict(self.info.get("data", {}))
        spec.update({k: v for k, v in override.items() if v is not None})
        return load_classification(**spec)

    def anomaly(self, **override):
        """A detector's data (`model.anomaly_data.AnomalySet`), loaded and split as in training."""
        from .anomaly_data import load_anomaly_spec
        spec = dict(self.info.get("data", {}))
        spec.update({k: v for k, v in override.items() if v is not None})
        return load_anomaly_spec(spec)

    def test_inputs(self, split: str = "test"):
        """Scaled windows of a split, whatever the task: float32 (N, window, inputs); a detector's hold
        window + 1 rows (the window, then the actual next row)."""
        if self.task == "classify":
            return self.labelled().part(split, self.scaler).x
        if self.task == "detect":
            from .train import detector_windows
            return detector_windows(self.anomaly(), self.config.window, split, self.config.detect_mode).x
        cfg = self.config
        return make_windows(self.series(), self.scaler, cfg.window, cfg.horizon, split).x


def open_run(path: str | Path) -> Run:
    """Open a finished run folder, or an export file on its own."""
    path = Path(path)
    if path.is_file():
        program, header = modelfile.load(path)
        return Run(path.parent, {"status": "complete", "data": header["meta"].get("data", {})}, program, header)
    status_file = path / "run.json"
    if not status_file.exists():
        raise IntformerError(f"{path}: not a run folder (no run.json); train one with `intformer train --out {path}`")
    status = run_status(path)
    if status != "complete":
        raise IntformerError(f"{path}: this run did not finish ({status}); continue it with "
                             f"`intformer train --out {path} --resume` (its recorded options) or `--force`")
    info = json.loads(status_file.read_text())
    program, header = modelfile.load(path / "model.intf")
    return Run(path, info, program, header)
