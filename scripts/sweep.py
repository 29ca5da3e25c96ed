"""Design-space exploration: Optuna's multi-objective search over the model's shape, bit width (and that of
attention and of the feed-forward block: mixed precision, `sweep_tasks.PART_PREFIXES`), lanes, norm, softmax
and board, minimising test error, latency, resource use and the energy estimate together, for a
forecaster, a classifier or an anomaly detector (`--task`; what depends on it: scripts/sweep_tasks.py).

One trial:
  1. the configuration is checked (a head count that does not divide d_model is pruned);
  2. an untrained model of that shape is calibrated on one batch and exported, and the pre-synthesis resource
     estimate (`accel.resources.check_fit`) decides whether it fits the board's device: if not, the trial is
     pruned before any training (the estimate depends on the shapes and bit widths, not on trained values);
  3. the model is trained (QAT, optionally from a float baseline) and written as a run folder under
     SWEEP/trials/NNNN, so that `intformer build SWEEP/trials/NNNN --board B` builds any design found;
  4. objectives: the integer model's test error (forecast: the MSE, scaled, "test_mse"; classify: 1 - accuracy,
     detect: 1 - F1 of its flags as SKAB's leaderboard computes it, both "test_error"), the latency in
     microseconds (cycles from a simulated inference at the sweep's clock), the resource fraction (the largest
     of LUT, DSP and block RAM used over available, by the estimate) and the energy per inference
     (`boards.power`: an ESTIMATE).

Workers share one Optuna storage: a journal file (the default, `SWEEP/optuna.journal`; fine for processes on
one machine or on a shared file system) or an RDB URL (`postgresql://...`, opened with psycopg 3 from the
`postgres` extra; `sqlite:///...`) for several machines. A worker takes a lock (PostgreSQL's advisory lock,
a file lock for a journal or SQLite file) while it counts the study's trials and asks for the next one, so
that the workers together start exactly the requested number; a sweep is resumed by running it again with
the same storage and a larger --trials. With an RDB storage each running trial records a heartbeat: the trial
of a worker that died is marked failed and run again (same parameters) by another worker, and a worker
whose budget is spent waits for the others' trials before it writes the report.
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import socket
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from intformer.model.errors import IntformerError

from .sweep_tasks import (ERROR_COLUMN, ERROR_LABEL, ERROR_NAME, check_task, precision_label, trial_data,
                          window_searched)

# the default search space: each dimension a list of choices (`--space NAME=A,B,...` replaces one)
SPACE: dict[str, list] = {
    "window": [12, 24, 48],
    "d_model": [8, 16, 32],
    "heads": [1, 2, 4],
    "layers": [1, 2],
    "ffn": [16, 32, 64],
    "bits": [4, 6, 8],
    "attn_bits": [0, 4, 8],            # attention's operands, 0: as bits (sweep_tasks.PART_PREFIXES)
    "ffn_bits": [0, 4, 8],             # the feed-forward block's
    "lanes": [1, 2, 4, 8, 16],
    "norm": ["batch", "layer"],
    "softmax": ["lut", "poly"],
    "board": ["icebreaker"],
}
MODEL_KEYS = ("window", "d_model", "heads", "layers", "ffn", "bits", "norm", "softmax")
OBJECTIVES = ("test_mse", "latency_us", "resource_fraction", "energy_uj")     # a forecasting sweep's


def objective_names(task: str = "forecast") -> tuple[str, ...]:
    """The four objectives' names (the study's metric names, the trial rows' keys): the first is the task's
    test error."""
    return (ERROR_NAME[check_task(task)],) + OBJECTIVES[1:]


def parse_space(items: tuple[str, ...] | list[str], task: str = "forecast",
                data: dict | None = None) -> dict[str, list]:
    """The default space with `NAME=A,B,...` overrides; values take the type of the default choices. Without
    a window to search (a classifier of .ts series: the series is the window) the space has no `window`, and
    an override of it is refused."""
    space = {k: list(v) for k, v in SPACE.items()}
    windowed = window_searched(task, data or {})
    if not windowed:
        del space["window"]
    for item in items:
        name, _, values = item.partition("=")
        name = name.strip().replace("-", "_")
        if name == "window" and not windowed:
            raise IntformerError(f"--space {item!r}: --task classify on .ts series has no window to search: each "
                                 f"series is one window, its length set by --length N; drop --space window")
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
    task: str = "forecast"                            # forecast, classify or detect (scripts/sweep_tasks.py)
    epochs: int = 10
    max_train_windows: int | None = None
    float_baseline: bool = False
    seed: int = 0
    clock_mhz: dict = field(default_factory=dict)     # board -> MHz (default: its oscillator)
    heartbeat: int = 60                               # seconds between a running trial's heartbeats (RDB)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


# an RDB URL's scheme as the user writes it -> SQLAlchemy's name for the psycopg 3 driver (SQLAlchemy's
# plain postgresql:// means psycopg2, which intformer does not install)
PG_SCHEMES = {"postgresql": "postgresql+psycopg", "postgres": "postgresql+psycopg"}
PG_EXTRA = "pip install 'intformer[postgres]'"
RETRIES = 2                   # a configuration whose worker died is run again at most this often


def is_rdb(url: str) -> bool:
    return "://" in url


def rdb_url(url: str) -> str:
    """The URL SQLAlchemy opens: postgresql:// and postgres:// become postgresql+psycopg://."""
    scheme, sep, rest = url.partition("://")
    return PG_SCHEMES.get(scheme, scheme) + sep + rest


def shown_url(url: str) -> str:
    """The storage as printed and reported: an RDB URL's password as ***."""
    if not is_rdb(url):
        return url
    from sqlalchemy.engine import make_url
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:                                 # not a URL SQLAlchemy parses: Optuna says why later
        return url.split("@")[-1]


def check_driver(url: str) -> None:
    """A postgresql URL without psycopg installed: one error naming the extra, before anything is written."""
    if rdb_url(url).startswith("postgresql+psycopg://"):
        try:
            import psycopg  # noqa: F401
        except ImportError:
            raise IntformerError(f"--storage {shown_url(url)}: the PostgreSQL driver psycopg is not installed; "
                                 f"{PG_EXTRA}") from None


def storage_for(settings: Settings):
    """The Optuna storage. An RDB one records each running trial's heartbeat (every settings.heartbeat
    seconds, in the database's clock): a trial silent for 3 heartbeats (its worker was killed, its machine
    lost) is marked failed by the next worker that starts a trial and queued again with the same parameters
    (Optuna's RetryHeartbeatStaleTrialCallback). A journal storage has no heartbeat in Optuna: a trial left
    running there is marked failed by `--resume` (`fail_stale`)."""
    url = settings.storage
    if not is_rdb(url):
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock
        return JournalStorage(JournalFileBackend(url, lock_obj=JournalFileOpenLock(url)))
    import warnings

    import optuna
    import sqlalchemy.exc
    check_driver(url)
    try:                                              # the name since Optuna 4.9
        from optuna.storages import RetryHeartbeatStaleTrialCallback as Retry
        hook = "heartbeat_stale_trial_callback"
    except ImportError:
        from optuna.storages import RetryFailedTrialCallback as Retry
        hook = "failed_trial_callback"
    try:
        with schema_lock(url), warnings.catch_warnings():  # heartbeat and retry are marked experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(rdb_url(url), heartbeat_interval=settings.heartbeat,
                                              grace_period=3 * settings.heartbeat, engine_kwargs=engine_kwargs(url),
                                              **{hook: Retry(max_retry=RETRIES)})
    except sqlalchemy.exc.OperationalError as exc:
        reason = (str(exc.orig or exc).strip().splitlines() or ["no answer"])[0]
        raise IntformerError(f"cannot reach the database {shown_url(url)}: {reason}; is the server running "
                             f"and the URL (host, port, user, password, database) right?") from None


def engine_kwargs(url: str) -> dict:
    """A server that drops packets (a firewall, a wrong host) fails in 10 s instead of the OS's minutes."""
    if rdb_url(url).startswith("postgresql+psycopg://") and "connect_timeout" not in url:
        return {"connect_args": {"connect_timeout": 10}}
    return {}


def lock_key(name: str) -> int:
    """A PostgreSQL advisory lock's 64-bit key for a name."""
    return int.from_bytes(hashlib.sha256(f"intformer {name}".encode()).digest()[:8], "big", signed=True)


@contextlib.contextmanager
def advisory_lock(engine, name: str):
    """A PostgreSQL session-level advisory lock on its own connection: other workers wait on it, and the
    server releases it if this process dies holding it."""
    from sqlalchemy import text
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": lock_key(name)})
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": lock_key(name)})


@contextlib.contextmanager
def schema_lock(url: str):
    """Optuna creates its tables when a storage is first opened; two workers that start at once on an empty
    PostgreSQL database would both create them (and one fail on a duplicate key): they take turns here."""
    import sqlalchemy
    from sqlalchemy.pool import NullPool
    engine = sqlalchemy.create_engine(rdb_url(url), poolclass=NullPool, **engine_kwargs(url))
    try:
        if engine.dialect.name != "postgresql":
            yield
            return
        with advisory_lock(engine, "schema"):
            yield
    finally:
        engine.dispose()


def study_settings(settings: Settings) -> dict:
    """What every worker of one study must share (so that the sampler sees one space and the trials compare).
    The task is recorded for a classifier or detector; a study without it is a forecasting one (as every
    study was before --task), so a forecasting study's settings are what they always were."""
    task = {} if settings.task == "forecast" else {"task": settings.task}
    return json.loads(json.dumps({**task, "space": settings.space, "epochs": settings.epochs,
                                  "max_train_windows": settings.max_train_windows,
                                  "float_baseline": settings.float_baseline, "clock_mhz": settings.clock_mhz}))


def settings_differ(theirs: dict, mine: dict) -> str:
    """'' when a study's recorded settings are these, else what differs, e.g. "task 'forecast' (yours: ...)"."""
    theirs, mine = {"task": "forecast", **theirs}, {"task": "forecast", **mine}
    return ", ".join(f"{k} {theirs.get(k)!r} (yours: {mine[k]!r})" for k in mine if theirs.get(k) != mine[k])


def open_study(settings: Settings, create: bool, worker: int = 0, storage=None):
    import warnings

    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # run_worker's loop asks and tells with a heartbeat thread of its own, which is what this warning wants
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
    # multivariate TPE: still marked experimental, and the one that models the joint choices well
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    # with a database, workers on several machines each start as worker 0: their host and process tell them
    # apart, so that they do not all propose the same designs
    offset = zlib.crc32(f"{socket.gethostname()}:{os.getpid()}".encode()) if is_rdb(settings.storage) else 0
    sampler = optuna.samplers.TPESampler(seed=(settings.seed + 1000 * worker + offset) % 2**32,
                                         n_startup_trials=8, multivariate=True, group=True)
    try:
        study = optuna.create_study(study_name=settings.study, storage=storage or storage_for(settings),
                                    sampler=sampler,
                                    directions=["minimize"] * len(OBJECTIVES), load_if_exists=create)
    except optuna.exceptions.DuplicatedStudyError:
        raise IntformerError(f"study {settings.study!r} already exists in {shown_url(settings.storage)}") from None
    except KeyError:
        raise IntformerError(f"no study {settings.study!r} in {shown_url(settings.storage)}") from None
    mine, theirs = study_settings(settings), study.user_attrs.get("intformer")
    if theirs is None:
        study.set_user_attr("intformer", mine)
        study.set_metric_names(list(objective_names(settings.task)))   # the names optuna-dashboard shows
    elif settings_differ(theirs, mine):
        raise IntformerError(f"study {settings.study!r} in {shown_url(settings.storage)} was started with other "
                             f"settings: {settings_differ(theirs, mine)}; give the same --task/--space/--epochs/"
                             f"--max-train-windows/--float/--clock, or another --study")
    return study


def finished_count(study) -> int:
    from optuna.trial import TrialState
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)))


def retried(trials) -> set[int]:
    """Numbers of the trials that failed without an answer and were queued again (the retry stands for them)."""
    return {n for t in trials for n in t.system_attrs.get("retry_history", [])}


def budget_count(trials) -> int:
    """Trials that count towards --trials: finished, running or queued ones, less those a retry replaced."""
    return len(trials) - len(retried(trials))


def fail_stale(study) -> int:
    """Trials left RUNNING by an interrupted sweep (no worker runs now) are marked failed, so a resumed
    sweep neither waits for them nor counts them as done. Only for the journal storage: an RDB storage
    finds its dead workers' trials by their heartbeat, while workers elsewhere may still run theirs."""
    from optuna.trial import TrialState
    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for t in stale:
        study.tell(t.number, state=TrialState.FAIL)
    return len(stale)


@contextlib.contextmanager
def budget_lock(settings: Settings, storage):
    """Held while a worker counts the study's trials and asks for a new one, so that workers together start
    exactly --trials trials: a PostgreSQL advisory lock (released by the server if the worker dies), a file
    lock beside a journal or SQLite file. Other databases: none (up to one extra trial per worker)."""
    import fcntl
    url = settings.storage
    if is_rdb(url) and storage.engine.dialect.name == "postgresql":
        with advisory_lock(storage.engine, f"sweep {settings.study}"):
            yield
        return
    path = url if not is_rdb(url) else (url.partition(":///")[2] if url.startswith("sqlite:///") else None)
    if not path or path == ":memory:":
        yield
        return
    with open(f"{path}.intformer-lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class Objective:
    """One trial (the module docstring's steps); the task's data, loaded once per worker, decides what the
    model is fitted to and how its integer program is scored (scripts/sweep_tasks.py)."""

    def __init__(self, settings: Settings, log=None):
        self.s = settings
        self.data = trial_data(settings.task, settings.data)
        self.log = log or (lambda msg: None)

    def __call__(self, trial):
        import optuna
        import torch

        from intformer.accel.resources import check_fit
        from intformer.boards.catalogue import board
        from intformer.model import runfolder
        from intformer.model.export import to_program
        from intformer.model.qat import QATForecaster

        from .sweep_tasks import train_config

        torch.set_num_threads(1)
        p = {k: trial.suggest_categorical(k, v) for k, v in self.s.space.items()}
        # who ran it: the process and its machine (workers on several machines share the study)
        trial.set_user_attr("worker", os.getpid())
        trial.set_user_attr("host", socket.gethostname())
        label = " ".join(f"{k}={v}" for k, v in p.items())

        def prune(reason: str):
            trial.set_user_attr("pruned", reason)
            self.log(f"trial {trial.number}: pruned ({reason})  [{label}]")
            raise optuna.TrialPruned(reason)

        if p["d_model"] % p["heads"]:
            prune(f"heads {p['heads']} do not divide d_model {p['d_model']}")
        try:
            mcfg = self.data.config(p, MODEL_KEYS)
        except IntformerError as exc:
            prune(str(exc))
        if "window" not in p:                         # the data set it (a classifier's series length)
            trial.set_user_attr("window", mcfg.window)
        device = board(p["board"]).estimate_device
        # the fit, before any training: an untrained model of this shape, calibrated on one batch
        torch.manual_seed(self.s.seed)
        probe = QATForecaster(mcfg).train()
        with torch.no_grad():
            probe(torch.as_tensor(self.data.calibration_inputs(mcfg)[:256]))
        try:
            check_fit(to_program(copy.deepcopy(probe).double()), p["lanes"], device)
        except IntformerError as exc:
            prune(str(exc))

        trial.set_user_attr("stage", "training")      # what a dashboard shows of a running trial
        start = time.perf_counter()
        tcfg = train_config(self.s.task, self.s.epochs, self.s.seed, self.s.float_baseline,
                            self.s.max_train_windows)
        trained = self.data.train(mcfg, tcfg)
        train_seconds = time.perf_counter() - start
        folder = runfolder.prepare(Path(self.s.out) / "trials" / f"{trial.number:04d}", force=True)
        self.data.save(folder, trained, mcfg, tcfg)
        error, figures = self.data.score(trained, mcfg)
        latency, fraction, energy, attrs = self.hardware(trained.program, p)
        attrs.update({"run": str(folder), "train_seconds": train_seconds, "stage": "done", **figures})
        for k, v in attrs.items():
            trial.set_user_attr(k, v)
        self.log(f"trial {trial.number}: {ERROR_COLUMN[self.s.task]} {error:.5f}, {latency:,.1f} us, "
                 f"{fraction * 100:.0f} % of the {attrs['device']}, {energy:.3g} uJ  [{label}]")
        return error, latency, fraction, energy

    def hardware(self, program, p: dict) -> tuple[float, float, float, dict]:
        """(latency in us, resource fraction, energy in uJ, attributes) of the trained program at p's lanes
        on p's board, at the sweep's clock."""
        from intformer.accel.resources import DEVICES, check_fit
        from intformer.boards.build import cycles_per_inference
        from intformer.boards.catalogue import board
        from intformer.boards.power import energy_uj
        b = board(p["board"])
        dev = DEVICES[b.estimate_device]
        est = check_fit(program, p["lanes"], b.estimate_device)
        needs = est.needs(dev)
        fraction = max(needs["LUT"] / dev.luts, needs["DSP"] / max(dev.dsps, 1), needs["RAM"] / dev.ram_blocks)
        cycles, _ = cycles_per_inference(program, p["lanes"])
        clock = float(self.s.clock_mhz.get(p["board"]) or b.osc_hz / 1e6)
        energy = energy_uj(b.device, power_resources(b.estimate_device, needs), clock, cycles)["energy_uj"]
        attrs = {"cycles": int(cycles), "macs": program.macs(), "clock_mhz": clock, "device": b.estimate_device,
                 "needs": {k: float(v) for k, v in needs.items()}}
        return cycles / clock, fraction, energy, attrs


@contextlib.contextmanager
def heartbeat(storage, trial, seconds: int):
    """A thread that records the trial's heartbeat in an RDB storage every `seconds` while it runs (what
    Optuna's own optimize loop does; this loop asks for trials itself, under the budget lock)."""
    if not hasattr(storage, "record_heartbeat"):
        yield
        return
    stop = threading.Event()

    def beat():
        while True:
            try:
                storage.record_heartbeat(trial._trial_id)     # Optuna's id of the trial in the storage
            except Exception:                                # a dropped connection: the next beat retries
                pass
            if stop.wait(seconds):
                return
    thread = threading.Thread(target=beat, name=f"heartbeat-{trial.number}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def next_trial(study, storage, settings: Settings):
    """Under the budget lock: fail the trials of dead workers (heartbeat; they are queued again), then a new
    or queued trial if the study has room, else None and the trials other workers still run."""
    import warnings

    import optuna
    from optuna.trial import TrialState
    with budget_lock(settings, storage):
        if hasattr(storage, "record_heartbeat"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)
        trials = study.get_trials(deepcopy=False)
        waiting = any(t.state == TrialState.WAITING for t in trials)
        if budget_count(trials) >= settings.trials and not waiting:
            return None, [t for t in trials if t.state == TrialState.RUNNING]
        trial = study.ask()                               # a queued retry first, else a new one
        if hasattr(storage, "record_heartbeat"):
            storage.record_heartbeat(trial._trial_id)     # from now on a dead worker's trial goes stale
        return trial, []


def run_trial(study, storage, trial, objective, settings: Settings, log) -> None:
    import optuna
    from optuna.trial import TrialState
    with heartbeat(storage, trial, settings.heartbeat):
        try:
            values = objective(trial)
        except optuna.TrialPruned:
            state, values = TrialState.PRUNED, None
        except RuntimeError as exc:                       # a trial's own failure: the sweep goes on
            log(f"trial {trial.number}: failed ({exc})")
            state, values = TrialState.FAIL, None
        except BaseException:
            study.tell(trial, state=TrialState.FAIL)
            raise
        else:
            state = TrialState.COMPLETE
    try:
        study.tell(trial, values, state=state)
    except optuna.exceptions.UpdateFinishedTrialError:
        # this worker was silent for 3 heartbeats (a stalled machine): another one failed the trial and
        # queued it again; its result here is dropped so that the configuration is counted once
        log(f"trial {trial.number}: already failed by another worker (no heartbeat); its retry counts")


def run_worker(settings: Settings, quiet: bool = False, worker: int = 0) -> None:
    """One worker: trials until the study holds `settings.trials` of them (finished, running or queued), then,
    with an RDB storage, waits for the other workers' trials, running any that a dead worker left (found by
    their heartbeat). Entry point of the worker processes (module level, so that it pickles)."""
    import sys

    def log(msg):
        if not quiet:
            print(f"[worker {socket.gethostname()}:{os.getpid()}] {msg}", file=sys.stderr, flush=True)

    storage = storage_for(settings)
    study = open_study(settings, create=True, worker=worker, storage=storage)
    objective = None
    waited = False
    while True:
        trial, running = next_trial(study, storage, settings)
        if trial is None:
            if not running or not hasattr(storage, "record_heartbeat"):
                return
            if not waited:
                log(f"the study is full; waiting for {len(running)} trial(s) other workers run")
                waited = True
            time.sleep(settings.heartbeat)
            continue
        objective = objective or Objective(settings, log)
        run_trial(study, storage, trial, objective, settings, log)


def trial_rows(study, task: str = "forecast") -> list[dict]:
    """Every trial as a flat row (parameters, state, objectives by `objective_names(task)`, attributes), and
    whether it is on the Pareto front of the completed ones."""
    from optuna.trial import TrialState
    front = {t.number for t in study.best_trials}
    trials = study.get_trials(deepcopy=False)
    again = retried(trials)
    rows = []
    for t in trials:
        row = {"number": t.number, "state": t.state.name.lower(), "params": dict(t.params),
               "pareto": t.number in front, **{k: v for k, v in t.user_attrs.items()}}
        if t.system_attrs.get("retry_history"):       # a retry of the trial (of a worker that died) it names
            row["retry_of"] = t.system_attrs["retry_history"][-1]
        row["retried"] = t.number in again
        if t.state == TrialState.COMPLETE:
            row.update(dict(zip(objective_names(task), t.values)))
        rows.append(row)
    return rows


def summary(rows: list[dict]) -> dict:
    states = {}
    for r in rows:
        states[r["state"]] = states.get(r["state"], 0) + 1
    workers = {(r.get("host"), r["worker"]) for r in rows if r.get("worker")}
    return {"trials": len(rows), "states": states, "workers": len(workers),
            "pareto": [r for r in rows if r["pareto"]]}


WINDOW_NOTE = ("The window is no dimension here: each series is one window, its length (column n) set by the data "
               "and --length.")
# a classifier's and a detector's trials also record the figure their test error is made of
TASK_FIGURE = {"classify": ("accuracy", "test accuracy"), "detect": ("f1", "test F1")}


def plot_pareto(path: Path, rows: list[dict], settings: Settings) -> None:
    """The task's test error against latency (log scale), colour = resources, the Pareto front circled."""
    from .report import _plt

    error = ERROR_NAME[settings.task]
    done = [r for r in rows if r["state"] == "complete"]
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    if done:
        sc = ax.scatter([r["latency_us"] for r in done], [r[error] for r in done],
                        c=[100 * r["resource_fraction"] for r in done], cmap="viridis", s=28,
                        vmin=0, vmax=100)
        front = sorted((r for r in done if r["pareto"]), key=lambda r: r["latency_us"])
        ax.scatter([r["latency_us"] for r in front], [r[error] for r in front], s=90, facecolors="none",
                   edgecolors="red", label="Pareto front (all four objectives)")
        fig.colorbar(sc, ax=ax, label="resources, % of the device (estimate)")
        ax.set_xscale("log")
        ax.legend(loc="best", fontsize=8)
    ax.set_xlabel("latency per inference (us)")
    ax.set_ylabel(ERROR_LABEL[settings.task])
    ax.set_title(f"sweep {settings.study} ({settings.task}): {len(done)} complete trials of {len(rows)}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def pareto_table(front: list[dict], task: str) -> str:
    """The Pareto front as a markdown table: the design, its four objectives (and for a classifier or
    detector the accuracy or F1 behind its test error), its run folder and host."""
    from .report import _table

    error, figure = ERROR_NAME[task], TASK_FIGURE.get(task)
    head = (["trial", "board", "P", "n", "d", "h", "L", "FFN", "bits", "norm", "softmax", ERROR_COLUMN[task]]
            + ([figure[1]] if figure else []) + ["latency us", "resources %", "energy uJ (est.)", "run folder", "host"])
    rows = []
    for r in front:
        q = r["params"]
        rows.append([r["number"], q["board"], q["lanes"], q.get("window", r.get("window", "")), q["d_model"],
                     q["heads"], q["layers"], q["ffn"], precision_label(q), q["norm"], q["softmax"], f"{r[error]:.5f}"]
                    + ([f"{r[figure[0]]:.4f}"] if figure else [])
                    + [f"{r['latency_us']:,.1f}", f"{100 * r['resource_fraction']:.0f}", f"{r['energy_uj']:.3g}",
                       f"`{r['run']}`", r.get("host", "")])
    return _table(head, rows)


def write_sweep_report(folder: Path, rows: list[dict], settings: Settings) -> dict:
    """SWEEP/report: report.md, report.html and pareto.png (the task's test error against latency, colour =
    resources)."""
    import markdown

    from .report import HTML_PAGE, _table

    folder.mkdir(parents=True, exist_ok=True)
    plot_pareto(folder / "pareto.png", rows, settings)
    s = summary(rows)
    front = sorted(s["pareto"], key=lambda r: r["latency_us"])
    table = pareto_table(front, settings.task)
    pruned = [r for r in rows if r["state"] == "pruned"]
    failed = [r for r in rows if r["state"] == "fail"]
    retry = {r["retry_of"]: r["number"] for r in rows if "retry_of" in r}
    text = "\n".join([
        f"# intformer sweep: {settings.study}", "",
        f"{len(rows)} trials ({', '.join(f'{v} {k}' for k, v in sorted(s['states'].items()))}) by "
        f"{s['workers']} worker process(es), storage `{shown_url(settings.storage)}`.", "",
        f"Task: {settings.task}. Objectives, all minimised: {ERROR_LABEL[settings.task]} "
        f"(`{ERROR_NAME[settings.task]}`), latency at the board's clock, the largest "
        "fraction of LUT, DSP or block RAM used (pre-synthesis estimate) and the energy per inference "
        "(an ESTIMATE from `boards/power.py`).", "",
        *([WINDOW_NOTE, ""] if "window" not in settings.space else []),
        "## Pareto front", "", table if front else "No complete trial yet.", "",
        "![Pareto front](pareto.png)", "",
        "## Pruned before training", "",
        _table(["trial", "why"], [[r["number"], r.get("pruned", "")] for r in pruned]) if pruned else "None.",
        "", "## Failed", "",
        _table(["trial", "worker", "run again as"],
               [[r["number"], f"{r.get('host', '?')}:{r.get('worker', '?')}", retry.get(r["number"], "no")]
                for r in failed]) if failed else "None.",
        "", "## Search space", "",
        _table(["dimension", "choices"], [[k, ", ".join(str(v) for v in vs)] for k, vs in settings.space.items()]),
        ""])
    (folder / "report.md").write_text(text)
    (folder / "report.html").write_text(HTML_PAGE.format(title=f"intformer sweep {settings.study}",
                                                          body=markdown.markdown(text, extensions=["tables"])))
    (folder / "trials.json").write_text(json.dumps(rows, indent=2, sort_keys=True, default=str))
    return {"folder": str(folder), "markdown": str(folder / "report.md"), "html": str(folder / "report.html"),
            "figures": {"pareto": str(folder / "pareto.png")}}
