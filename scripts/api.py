"""The Python API: the flow of the `intformer` command, for scripts and notebooks.

    run = intformer.train(data=None, model={"window": 8}, training={"epochs": 1}, out="runs/a")
    run = intformer.load_run("runs/a")           # or a run folder made by `intformer train`
    run.evaluate()                               # = `intformer eval runs/a --json`
    run.simulate(windows=8, lanes=8)             # = `intformer sim runs/a --json`: every word compared
    run.build(board="icebreaker")                # = `intformer build runs/a --board icebreaker --json`
    run.accelerator(lanes=8)                     # the Amaranth component, to elaborate or simulate yourself

There is one implementation of each step: the function that the command calls (`train_cmd.train_run`,
`eval_cmd.evaluate_run`, `sim_cmd.simulate_run`, `build_cmd.build_run`, ...). A `Run` method calls that
function on the run's folder, so what it returns is what the command prints with `--json`, and options
keep the command's names and defaults (`--d-model` is `d_model`). The command modules are imported when a
method runs, so `import intformer` stays cheap.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

from intformer.model import runfolder
from intformer.model.config import ModelConfig, TrainConfig
from intformer.model.data import Scaler, Series, Windows, make_windows
from intformer.model.errors import IntformerError
from intformer.model.program import IntProgram
from intformer.model.tsdata import Labelled

# the keys of a data spec, as the command's data options fill them (`options.data_spec`)
DATA_KEYS = ("path", "fmt", "target", "features", "multivariate", "fill", "sensor", "split_time", "unequal", "length", "label",
             "stride", "label_by", "group", "protocol", "quantile")
# ModelConfig fields that the data decides (`train.bind_data`, `train.bind_classes`), not the caller
BOUND_BY_DATA = ("inputs", "target_index", "classes")
# options whose default depends on --task (`options.TASK_DEFAULTS`)
TASK_DEFAULTED = ("epochs", "batch_size", "lr", "patience", "dropout")


def data_spec(data: str | os.PathLike | dict | None) -> dict:
    """A data spec as the command builds it: None for the embedded default data, a CSV path, or a dict
    with some of DATA_KEYS (`features` a list of column names or a comma-separated string)."""
    if data is None:
        data = {}
    elif isinstance(data, (str, os.PathLike)):
        data = {"path": data}
    unknown = sorted(set(data) - set(DATA_KEYS))
    if unknown:
        raise IntformerError(f"unknown data option(s) {', '.join(unknown)}: expected some of {', '.join(DATA_KEYS)}")
    spec = {key: None for key in DATA_KEYS}
    spec["multivariate"] = False
    spec.update(data)
    if spec["path"] is not None:
        spec["path"] = str(spec["path"])
    if isinstance(spec["features"], str):
        spec["features"] = [c.strip() for c in spec["features"].split(",") if c.strip()] or None
    return spec


def _as_options(config: dict | ModelConfig | TrainConfig | None, kind: str) -> dict:
    """The command's option names for a config given as a dict of options or as a config object."""
    if config is None:
        return {}
    if isinstance(config, dict):
        return dict(config)
    default = type(config)()
    options = {}
    for f in fields(config):
        value = getattr(config, f.name)
        if f.name in BOUND_BY_DATA:
            continue
        if f.name in TASK_DEFAULTED and value == getattr(default, f.name):
            continue                 # left at its default: the command's default for the task (options.TASK_DEFAULTS)
        if f.name == "bits_overrides":
            options["bits_override"] = value
        elif f.name == "qat_lr_scale":
            if value != default.qat_lr_scale:
                raise IntformerError(f"{kind}: qat_lr_scale is no option of `intformer train`; leave it at "
                                     f"its default")
        else:
            options[f.name] = value
    return options


def train_options(model: dict | ModelConfig | None = None, training: dict | TrainConfig | None = None) -> dict:
    """The options of `intformer train` (its keyword names, e.g. d_model, epochs, float_baseline) for the
    given model and training settings, the rest at the command's defaults. A name the command does not
    know is an error, so a misspelt option cannot be ignored."""
    from .options import default_options

    kw = default_options()
    for kind, given in (("model", _as_options(model, "model")), ("training", _as_options(training, "training"))):
        unknown = sorted(set(given) - set(kw))
        if unknown:
            raise IntformerError(f"unknown {kind} option(s) {', '.join(unknown)}; the options are "
                                 f"{', '.join(sorted(kw))}")
        kw.update(given)
    overrides = kw["bits_override"]
    if isinstance(overrides, dict):                 # {"l0.ffn1": 6}, as ModelConfig.bits_overrides holds it
        overrides = [f"{prefix}={bits}" for prefix, bits in overrides.items()]
    kw["bits_override"] = tuple(overrides)
    return kw


def train(data: str | os.PathLike | dict | None = None, model: dict | ModelConfig | None = None,
          training: dict | TrainConfig | None = None, out: str | os.PathLike | None = None, force: bool = False,
          resume: bool = False, progress: bool = False) -> "Run":
    """Train the float baseline and the QAT model on `data` and export the integer program into the run
    folder `out` (default runs/run-<time>), as `intformer train` does; returns the finished `Run`.

    `data`: see `data_spec`. `model`, `training`: dicts of the command's options (`{"window": 8,
    "d_model": 8}`, `{"epochs": 1, "max_train_windows": 200}`) or a ModelConfig / TrainConfig. `resume`
    continues the interrupted run in `out` with the options recorded in it (the ones given are ignored)."""
    from .train_cmd import resumed_options, train_run

    spec, kw = data_spec(data), train_options(model, training)
    if resume:
        spec, kw = resumed_options(out, force, kw)
    result = train_run(spec, kw, Path(out) if out is not None else None, force, progress=progress, resume=resume)
    run = load_run(result["run"])
    run.trained = result
    return run


def load_run(path: str | os.PathLike) -> "Run":
    """Open a finished run folder (or an export file, model.intf, on its own). The path is made absolute,
    so the Run stays valid when the working directory changes."""
    source = Path(path).resolve()
    return Run(source, runfolder.open_run(source))


@dataclass
class Run:
    """A trained model in its run folder: the integer program, its configurations, the data's scaler, and
    the steps that follow training. Each step reads the folder as its command does (so a result is the
    command's `--json` output); `program`, `config` and `scaler` are the ones read when the run was opened."""
    source: Path                                       # what was opened: a run folder, or an export file
    folder: runfolder.Run = field(repr=False)          # the folder as read (`model.runfolder`)
    trained: dict | None = field(default=None, repr=False)   # `intformer train --json`'s result, when
                                                       # `train` made this run

    @property
    def path(self) -> Path:
        """The run folder (for an export file: the folder that holds it)."""
        return self.folder.path

    @property
    def program(self) -> IntProgram:
        return self.folder.program

    @property
    def config(self) -> ModelConfig:
        return self.folder.config

    @property
    def train_config(self) -> TrainConfig | None:
        """How the model was trained (None for an export file written without it)."""
        recorded = self.folder.info.get("train") or self.folder.header.get("meta", {}).get("train")
        if not recorded:
            return None
        known = {f.name for f in fields(TrainConfig)}
        return TrainConfig(**{k: v for k, v in recorded.items() if k in known})

    @property
    def scaler(self) -> Scaler:
        return self.folder.scaler

    @property
    def data(self) -> dict:
        """The data spec the run was trained on (`data_spec`)."""
        return dict(self.folder.info.get("data", {}))

    def series(self, data: str | os.PathLike | None = None) -> Series:
        """The run's data (or another file of the same layout)."""
        return self.folder.series(path=str(data) if data is not None else None)

    @property
    def task(self) -> str:
        """"forecast", "classify" or "detect"."""
        return self.folder.task

    def windows(self, split: str = "test", data: str | os.PathLike | None = None) -> Windows | Labelled:
        """The scaled windows (x, y) of a split ("train", "val" or "test"), as the model sees them; for a
        classifier its labelled series (x, y = class indices); for a detector its windows followed by their
        actual next row (x: window + 1 rows; y: the error it should make, zero)."""
        if self.task == "classify":
            return self.folder.labelled(path=str(data) if data is not None else None).part(split, self.scaler)
        if self.task == "detect":
            from intformer.model.train import detector_windows
            aset = self.folder.anomaly(path=str(data) if data is not None else None)
            return detector_windows(aset, self.config.window, split, self.config.detect_mode)
        cfg = self.config
        return make_windows(self.series(data), self.scaler, cfg.window, cfg.horizon, split)

    def evaluate(self, season: int | None = None, plot: str | os.PathLike | None = None,
                 data: str | os.PathLike | None = None) -> dict:
        """Test errors (accuracy, or F1/FAR/MAR) of the float, fake-quant and integer paths and the baselines
        (`intformer eval`); writes the forecast plot (default RUN/forecast.png; a detector's timeline,
        RUN/timeline.png)."""
        from .eval_cmd import evaluate_run

        return evaluate_run(self.source, season, Path(plot) if plot is not None else None,
                            {"path": str(data) if data is not None else None})

    def simulate(self, windows: int | str = 4, lanes: int = 8, engine: str = "amaranth") -> dict:
        """Test windows ("all" or a count) through the accelerator with `lanes` MAC lanes, in Amaranth's
        simulator or compiled (engine "cxxrtl"); every output word is compared with the integer reference
        (`mismatches`, and `first_mismatch` naming the first differing step), as `intformer sim` does."""
        from .sim_cmd import simulate_run

        return simulate_run(self.source, str(windows), lanes, engine)

    def accelerator(self, lanes: int = 8, logic_lanes: int = 0):
        """The accelerator for this run's program: an Amaranth `wiring.Component` (`accel.Accelerator`)."""
        from intformer.accel.accelerator import Accelerator

        return Accelerator(self.program, lanes, logic_lanes)

    def build(self, board: str, lanes: int | None = None, clock: float | str | None = None,
              out: str | os.PathLike | None = None, force: bool = False, **options) -> dict:
        """The bitstream for `board` (yosys, nextpnr) with its resources, Fmax, cycles, latency and energy
        estimate, as `intformer build` does; `options` are the rest of `build_cmd.build_run`'s (bare, baud,
        link, fit_check, progress). `clock`: MHz, "auto" (the command's default: the fastest clock that meets
        timing, two builds or three) or None (one build at the board's oscillator)."""
        from .build_cmd import build_run

        return build_run(self.source, board, lanes, clock, Path(out) if out is not None else None, force,
                         **options)

    def verify(self, lanes: int = 8, depth: int | None = None, full: bool = True, timeout: float = 600.0,
               only: str | None = None) -> list[dict]:
        """The formal proofs for this model's configuration (`intformer verify --formal`)."""
        from .verify_cmd import verify_run

        return verify_run(self.source, lanes, depth, full, timeout, only)

    def infer(self, port: str | None = None, windows: int | str = 16, **options) -> dict:
        """Test windows through a programmed board over its serial `port` (or `spi=` its SPI device), every
        forecast checked against the integer reference (`intformer infer`); `options` as `infer_cmd.infer_run`."""
        from .infer_cmd import infer_run

        return infer_run(self.source, port, windows=str(windows), **options)
