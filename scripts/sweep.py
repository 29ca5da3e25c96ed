"""Design-space exploration: Optuna's multi-objective search over the model's shape, bit width, lanes, norm,
softmax and board, minimising test error, latency, resource use and the energy estimate together.

One trial:
  1. the configuration is checked (a head count that does not divide d_model is pruned);
  2. an untrained model of that shape is calibrated on one batch and exported, and the pre-synthesis resource
     estimate (`accel.resources.check_fit`) decides whether it fits the board's device: if not, the trial is
     pruned before any training (the estimate depends on the shapes and bit widths, not on trained values);
  3. the model is trained (QAT, optionally from a float baseline) and written as a run folder under
     SWEEP/trials/NNNN, so that `intformer build SWEEP/trials/NNNN --board B` builds any design found;
  4. objectives: the integer model's test MSE (scaled), the latency in microseconds (cycles from a simulated
     inference at the sweep's clock), the resource fraction (the largest of LUT, DSP and block RAM used over
     available, by the estimate) and the energy per inference (`boards.power`: an ESTIMATE).

Workers share one Optuna storage: a journal file (the default, `SWEEP/optuna.journal`; fine for processes on
one machine or on a shared file system) or an RDB URL (`postgresql://...`, `sqlite:///...`) for several
machines. Each worker runs trials until the study holds the requested number of finished (complete, pruned
or failed) trials, so a sweep is resumed by running it again with the same storage and a larger --trials.
"""
from __future__ import annotations

import copy
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from intformer.model.errors import IntformerError

# the default search space: each dimension a list of choices (`--space NAME=A,B,...` replaces one)
SPACE: dict[str, list] = {
    "window": [12, 24, 48],
    "d_model": [8, 16, 32],
    "heads": [1, 2, 4],
    "layers": [1, 2],
    "ffn": [16, 32, 64],
    "bits": [4, 6, 8],
    "lanes": [1, 2, 4, 8, 16],
    "norm": ["batch", "layer"],
    "softmax": ["lut", "poly"],
    "board": ["icebreaker"],
}
MODEL_KEYS = ("window", "d_model", "heads", "layers", "ffn", "bits", "norm", "softmax")
OBJECTIVES = ("test_mse", "latency_us", "resource_fraction", "energy_uj")


def parse_space(items: tuple[str, ...] | list[str]) -> dict[str, list]:
    """The default space with `NAME=A,B,...` overrides; values take the type of the default choices."""
    space = {k: list(v) for k, v in SPACE.items()}
    for item in items:
        name, _, values = item.partition("=")
        name = name.strip().replace("-", "_")
        if name not in space:
            raise IntformerError(f"--space {item!r}: unknown dimension {name!r}; choose from {', '.join(space)}")
        kind = type(SPACE[name][0])
        try:
            choices = [kind(v.strip()) for v in values.split(",") if v.strip()]
        except ValueError:
            raise IntformerError(f"--space {item!r}: {name} takes {kind.__name__} values, e.g. "
                                 f"{name}={','.join(str(v) for v in SPACE[name][:2])}") from None
        if not choices:
            raise IntformerError(f"--space {item!r}: give at least one value, e.g. {name}={SPACE[name][0]}")
        space[name] = list(dict.fromkeys(choices))
    from intformer.boards.catalogue import board
    for b in space["board"]:
        board(b)                                     # an unknown board fails here, naming the known ones
    return space


def power_resources(device: str, needs: dict) -> dict:
    """The resource names of `boards.power` from the estimate's LUT / DSP / RAM (flip-flops: about 0.6 per
    LUT, as the builds of this design show)."""
    if device.startswith("ice40"):
        return {"LC": needs["LUT"], "DSP": needs["DSP"], "BRAM": needs["RAM"]}
    return {"LUT": needs["LUT"], "FF": int(0.6 * needs["LUT"]), "DSP": needs["DSP"], "BRAM": needs["RAM"]}


@dataclass
class Settings:
    """What every worker needs to run trials: picklable, written to SWEEP/sweep.json."""
    out: str
    storage: str
    study: str
    trials: int
    space: dict
    data: dict
    epochs: int = 10
    max_train_windows: int | None = None
    float_baseline: bool = False
    seed: int = 0
    clock_mhz: dict = field(default_factory=dict)     # board -> MHz (default: its oscillator)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def storage_for(settings: Settings):
    url = settings.storage
    if "://" in url:
        return url                                   # an RDB URL: Optuna opens it
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock
    return JournalStorage(JournalFileBackend(url, lock_obj=JournalFileOpenLock(url)))


def open_study(settings: Settings, create: bool, worker: int = 0):
    import warnings

    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # multivariate TPE: still marked experimental, and the one that models the joint choices well
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    sampler = optuna.samplers.TPESampler(seed=settings.seed + 1000 * worker, n_startup_trials=8,
                                         multivariate=True, group=True)
    try:
        return optuna.create_study(study_name=settings.study, storage=storage_for(settings), sampler=sampler,
                                   directions=["minimize"] * len(OBJECTIVES), load_if_exists=create)
    except optuna.exceptions.DuplicatedStudyError:
        raise IntformerError(f"study {settings.study!r} already exists in {settings.storage}") from None
    except KeyError:
        raise IntformerError(f"no study {settings.study!r} in {settings.storage}") from None


def finished_count(study) -> int:
    from optuna.trial import TrialState
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)))


def fail_stale(study) -> int:
    """Trials left RUNNING by an interrupted sweep (no worker runs now) are marked failed, so a resumed
    sweep neither waits for them nor counts them as done."""
    from optuna.trial import TrialState
    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for t in stale:
        study.tell(t.number, state=TrialState.FAIL)
    return len(stale)


class Objective:
    def __init__(self, settings: Settings, log=None):
        from intformer.model.data import load_series
        self.s = settings
        self.series = load_series(**settings.data)
        self.log = log or (lambda msg: None)

    def __call__(self, trial):
        import optuna
        import torch

        from intformer.accel.resources import DEVICES, check_fit
        from intformer.boards.build import cycles_per_inference
        from intformer.boards.catalogue import board
        from intformer.boards.power import energy_uj
        from intformer.model import runfolder
        from intformer.model.config import ModelConfig, TrainConfig
        from intformer.model.data import Scaler, make_windows
        from intformer.model.evaluate import integer_forecast
        from intformer.model.export import to_program
        from intformer.model.qat import QATForecaster
        from intformer.model.train import bind_data, train_models

        torch.set_num_threads(1)
        p = {k: trial.suggest_categorical(k, v) for k, v in self.s.space.items()}
        trial.set_user_attr("worker", os.getpid())
        label = " ".join(f"{k}={v}" for k, v in p.items())

        def prune(reason: str):
            trial.set_user_attr("pruned", reason)
            self.log(f"trial {trial.number}: pruned ({reason})  [{label}]")
            raise optuna.TrialPruned(reason)

        if p["d_model"] % p["heads"]:
            prune(f"heads {p['heads']} do not divide d_model {p['d_model']}")
        mcfg = ModelConfig(**{k: p[k] for k in MODEL_KEYS})
        try:
            bind_data(mcfg, self.series)
        except IntformerError as exc:
            prune(str(exc))
        if mcfg.window + mcfg.horizon > len(self.series.target_values) // 4:
            prune(f"window {mcfg.window} too long for the data")
        device = board(p["board"]).estimate_device
        dev = DEVICES[device]
        # the fit, before any training: an untrained model of this shape, calibrated on one batch
        torch.manual_seed(self.s.seed)
        scaler = Scaler.fit(self.series)
        train_w = make_windows(self.series, scaler, mcfg.window, mcfg.horizon, "train")
        probe = QATForecaster(mcfg).train()
        with torch.no_grad():
            probe(torch.as_tensor(train_w.x[:256]))
        try:
            check_fit(to_program(copy.deepcopy(probe).double()), p["lanes"], device)
        except IntformerError as exc:
            prune(str(exc))

        start = time.perf_counter()
        tcfg = TrainConfig(epochs=self.s.epochs, seed=self.s.seed, float_baseline=self.s.float_baseline,
                           max_train_windows=self.s.max_train_windows)
        trained = train_models(self.series, mcfg, tcfg, progress=False)
        train_seconds = time.perf_counter() - start
        folder = runfolder.prepare(Path(self.s.out) / "trials" / f"{trial.number:04d}", force=True)
        runfolder.save(folder, trained, self.s.data, mcfg, tcfg.to_dict())

        program = trained.program
        test = make_windows(self.series, trained.scaler, mcfg.window, mcfg.horizon, "test")
        _, pred = integer_forecast(program, test.x)
        mse = float(np.mean((pred - test.y) ** 2))
        est = check_fit(program, p["lanes"], device)
        needs = est.needs(dev)
        fraction = max(needs["LUT"] / dev.luts, needs["DSP"] / max(dev.dsps, 1), needs["RAM"] / dev.ram_blocks)
        cycles, _ = cycles_per_inference(program, p["lanes"])
        clock = float(self.s.clock_mhz.get(p["board"]) or board(p["board"]).osc_hz / 1e6)
        latency = cycles / clock
        energy = energy_uj(board(p["board"]).device, power_resources(device, needs), clock, cycles)["energy_uj"]
        attrs = {"run": str(folder), "cycles": int(cycles), "macs": program.macs(), "clock_mhz": clock,
                 "device": device, "needs": {k: float(v) for k, v in needs.items()},
                 "train_seconds": train_seconds}
        for k, v in attrs.items():
            trial.set_user_attr(k, v)
        self.log(f"trial {trial.number}: MSE {mse:.5f}, {latency:,.1f} us, {fraction * 100:.0f} % of the "
                 f"{device}, {energy:.3g} uJ  [{label}]")
        return mse, latency, fraction, energy


def run_worker(settings: Settings, quiet: bool = False, worker: int = 0) -> None:
    """One worker: trials until the study holds `settings.trials` finished ones. Entry point of the worker
    processes (module level, so that it pickles)."""
    import sys

    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    def log(msg):
        if not quiet:
            print(f"[worker {os.getpid()}] {msg}", file=sys.stderr, flush=True)

    study = open_study(settings, create=True, worker=worker)
    left = settings.trials - finished_count(study)
    if left <= 0:
        return
    objective = Objective(settings, log)
    study.optimize(objective, n_trials=left, catch=(RuntimeError,),
                   callbacks=[MaxTrialsCallback(settings.trials,
                                                states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL))])


def trial_rows(study) -> list[dict]:
    """Every trial as a flat row (parameters, state, objectives, attributes), and whether it is on the Pareto
    front of the completed ones."""
    from optuna.trial import TrialState
    front = {t.number for t in study.best_trials}
    rows = []
    for t in study.get_trials(deepcopy=False):
        row = {"number": t.number, "state": t.state.name.lower(), "params": dict(t.params),
               "pareto": t.number in front, **{k: v for k, v in t.user_attrs.items()}}
        if t.state == TrialState.COMPLETE:
            row.update(dict(zip(OBJECTIVES, t.values)))
        rows.append(row)
    return rows


def summary(rows: list[dict]) -> dict:
    states = {}
    for r in rows:
        states[r["state"]] = states.get(r["state"], 0) + 1
    return {"trials": len(rows), "states": states, "workers": len({r.get("worker") for r in rows if r.get("worker")}),
            "pareto": [r for r in rows if r["pareto"]]}


def write_sweep_report(folder: Path, rows: list[dict], settings: Settings) -> dict:
    """SWEEP/report: report.md, report.html and pareto.png (test MSE against latency, colour = resources)."""
    import markdown

    from .report import HTML_PAGE, _plt, _table

    folder.mkdir(parents=True, exist_ok=True)
    done = [r for r in rows if r["state"] == "complete"]
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    if done:
        sc = ax.scatter([r["latency_us"] for r in done], [r["test_mse"] for r in done],
                        c=[100 * r["resource_fraction"] for r in done], cmap="viridis", s=28,
                        vmin=0, vmax=100)
        front = sorted((r for r in done if r["pareto"]), key=lambda r: r["latency_us"])
        ax.scatter([r["latency_us"] for r in front], [r["test_mse"] for r in front], s=90, facecolors="none",
                   edgecolors="red", label="Pareto front (all four objectives)")
        fig.colorbar(sc, ax=ax, label="resources, % of the device (estimate)")
        ax.set_xscale("log")
        ax.legend(loc="best", fontsize=8)
    ax.set_xlabel("latency per inference (us)")
    ax.set_ylabel("integer test MSE (scaled)")
    ax.set_title(f"sweep {settings.study}: {len(done)} complete trials of {len(rows)}")
    fig.tight_layout()
    fig.savefig(folder / "pareto.png", dpi=110)
    plt.close(fig)

    s = summary(rows)
    front = sorted(s["pareto"], key=lambda r: r["latency_us"])
    table = _table(["trial", "board", "P", "n", "d", "h", "L", "FFN", "bits", "norm", "softmax", "test MSE",
                    "latency us", "resources %", "energy uJ (est.)", "run folder"],
                   [[r["number"], r["params"]["board"], r["params"]["lanes"], r["params"]["window"],
                     r["params"]["d_model"], r["params"]["heads"], r["params"]["layers"], r["params"]["ffn"],
                     r["params"]["bits"], r["params"]["norm"], r["params"]["softmax"], f"{r['test_mse']:.5f}",
                     f"{r['latency_us']:,.1f}", f"{100 * r['resource_fraction']:.0f}", f"{r['energy_uj']:.3g}",
                     f"`{r['run']}`"] for r in front])
    pruned = [r for r in rows if r["state"] == "pruned"]
    text = "\n".join([
        f"# intformer sweep: {settings.study}", "",
        f"{len(rows)} trials ({', '.join(f'{v} {k}' for k, v in sorted(s['states'].items()))}) by "
        f"{s['workers']} worker process(es), storage `{settings.storage}`.", "",
        "Objectives, all minimised: integer test MSE (scaled), latency at the board's clock, the largest "
        "fraction of LUT, DSP or block RAM used (pre-synthesis estimate) and the energy per inference "
        "(an ESTIMATE from `boards/power.py`).", "",
        "## Pareto front", "", table if front else "No complete trial yet.", "",
        "![Pareto front](pareto.png)", "",
        "## Pruned before training", "",
        _table(["trial", "why"], [[r["number"], r.get("pruned", "")] for r in pruned]) if pruned else "None.",
        "", "## Search space", "",
        _table(["dimension", "choices"], [[k, ", ".join(str(v) for v in vs)] for k, vs in settings.space.items()]),
        ""])
    (folder / "report.md").write_text(text)
    (folder / "report.html").write_text(HTML_PAGE.format(title=f"intformer sweep {settings.study}",
                                                          body=markdown.markdown(text, extensions=["tables"])))
    (folder / "trials.json").write_text(json.dumps(rows, indent=2, sort_keys=True, default=str))
    return {"folder": str(folder), "markdown": str(folder / "report.md"), "html": str(folder / "report.html"),
            "figures": {"pareto": str(folder / "pareto.png")}}
