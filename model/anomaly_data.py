"""Anomaly-detection data: labelled sensor recordings -> an `AnomalySet` (experiments with train / val / test
rows, point labels, a `Scaler` fitted on training rows only) and `AnomalyWindows` for a forecast-next-step
detector.

Formats (`load_anomaly(path, fmt)`):

* ``skab`` -- a folder laid out as the SKAB repository lays it out (searched recursively): `;`-separated
  experiment files with a `datetime` column, the sensor columns, and the label columns `anomaly` and
  `changepoint`; files under a folder named `anomaly-free` hold normal operation only (no label columns).
  Protocols:
    - ``skab`` (default): SKAB's split. Each experiment's first 400 rows (normal operation) are its
      training part, the rest its test part, so F1 is measured on the leaderboard's test rows. The
      leaderboard's baselines fit one model per experiment; here ONE model is fitted on all training parts
      together, which is what one chip holds. The last `val_fraction` of each training part is held out
      from fitting as normal validation data (for the threshold). SKAB's training parts are kept as the
      benchmark defines them even where they are labelled anomalous (other/2.csv of the full benchmark is);
      `AnomalySet.train_anomalies` counts such rows.
    - ``anomaly-free``: the model is fitted on the anomaly-free file alone (its first 1 - val_fraction
      rows; the rest is validation); the test rows are still every experiment's rows from 400 on.
* ``ucr`` -- the UCR anomaly archive (KDD Cup 2021): a file named ``NNN_UCR_Anomaly_NAME_TRAINEND_BEGIN_END.txt``
  of whitespace-separated values; rows [0, TRAINEND) are normal training data, rows [BEGIN, END) the one
  anomaly (0-based, END excluded: the reading that reproduces the labels of the TimeEval copy aeon ships),
  the test part is rows [TRAINEND, end). Also the TimeEval CSV pair aeon ships (``*_TRAIN.csv`` /
  ``*_TEST.csv`` with `timestamp`, value columns and `is_anomaly`): the TEST file is the whole series, its
  first len(TRAIN) rows are the training part. path=None: aeon's KDD-TSAD 135 series (InternalBleeding16,
  7,501 rows) from aeon's wheel, offline.
* ``csv`` -- one labelled table: a `label` column (0 = normal, 1 = anomalous), an optional time column,
  numeric feature columns; split by time: rows [0, train_end) train (default the first `train_fraction`),
  the rest test.

Rows are taken as consecutive steps, as the benchmark takes them (SKAB's 1 s sampling has 2 s jitter and
one gap of about a minute in three of the valve1 files). Every problem a user can fix raises
`IntformerError` naming the file, and where it applies the column and the line.
"""
from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .data import Scaler
from .errors import IntformerError

ANOMALY_FORMATS = ("skab", "ucr", "csv")
SKAB_PROTOCOLS = ("skab", "anomaly-free")
SKAB_TRAIN_ROWS = 400          # SKAB: each experiment's first 400 rows are its training part
SKAB_LABELS = ("anomaly", "changepoint")
VAL_FRACTION = 0.2             # of each training part, held out from fitting for the threshold
CSV_TRAIN_FRACTION = 0.3       # labelled CSV: the first 30 % of rows train (SKAB's 400 of ~1,150 is 35 %)
TIME_NAMES = {"date", "time", "timestamp", "datetime"}
UCR_NAME = re.compile(r"^(\d+)_UCR_Anomaly_(.+)_(\d+)_(\d+)_(\d+)$")
EMBEDDED_UCR = "embedded:aeon/datasets/data/KDD-TSAD_135"
PARTS = ("train", "val", "test")


@dataclass
class Experiment:
    """One recording. `splits[part]` = [a, b): the rows whose point (the forecast target) belongs to the part;
    a window's input rows may reach back before `a` inside the same experiment, never into another one."""
    name: str                           # e.g. "valve1/3": the file under the folder (and its folder's name)
    source: str                         # the file
    values: np.ndarray                  # float64 (rows, channels), raw
    labels: np.ndarray                  # int8 (rows,), 1 = anomalous row (all 0 for normal-only files)
    splits: dict[str, tuple[int, int]]  # "train" / "val" / "test" -> [a, b), possibly empty


@dataclass
class AnomalySet:
    name: str                  # e.g. "valve1" (the folder), "135_UCR_Anomaly_InternalBleeding16" (the file)
    source: str                # the folder or file given, or EMBEDDED_UCR
    fmt: str                   # "skab" / "ucr" / "csv"
    protocol: str              # "skab" / "anomaly-free" / "ucr" / "csv"
    channels: list[str]        # the sensor columns, in order
    experiments: list[Experiment]
    scaler: Scaler             # per channel, fitted on train + val rows only (target mean 0, std 1: unused)

    def rows(self, part: str) -> list[np.ndarray]:
        """Raw rows of `part`, one array per experiment (empty arrays kept, so indices match experiments)."""
        _check_part(part)
        return [e.values[slice(*e.splits[part])] for e in self.experiments]

    def labels(self, part: str) -> list[np.ndarray]:
        _check_part(part)
        return [e.labels[slice(*e.splits[part])] for e in self.experiments]

    def count(self, part: str) -> int:
        return sum(b - a for a, b in (e.splits[part] for e in self.experiments))

    @property
    def train_anomalies(self) -> int:
        """Training and validation rows labelled anomalous (kept: the protocol defines them as training)."""
        return int(sum(np.concatenate(self.labels(p)).sum() for p in ("train", "val")))

    def summary(self) -> dict:
        """What a run folder or an export records about the data (JSON-ready)."""
        return {"name": self.name, "source": self.source, "format": self.fmt, "protocol": self.protocol,
                "channels": list(self.channels), "experiments": [e.name for e in self.experiments],
                "rows": {p: self.count(p) for p in PARTS},
                "anomalous_test_rows": int(np.concatenate(self.labels("test")).sum()),
                "anomalous_train_rows": self.train_anomalies, "scaler": self.scaler.to_dict()}

    def describe(self) -> str:
        """One line saying which protocol a figure uses."""
        text = {"skab": "SKAB protocol: each experiment's first 400 rows train (one model on all of them), "
                        "the rest test",
                "anomaly-free": "trained on the anomaly-free file alone; test = every experiment's rows from 400",
                "ucr": "UCR anomaly archive: rows before the file name's train end train, the rest test",
                "csv": "labelled CSV split by time"}[self.protocol]
        return (f"{self.name}: {text}; {len(self.experiments)} file(s), train {self.count('train')}, "
                f"val {self.count('val')}, test {self.count('test')} rows, "
                f"{int(np.concatenate(self.labels('test')).sum())} anomalous test rows")


def _check_part(part: str) -> None:
    if part not in PARTS:
        raise IntformerError(f"unknown part '{part}'; use one of: {', '.join(PARTS)}")


# --------------------------------------------------------------------------------------------- reading

def _read_cells(path: Path, sep: str) -> pd.DataFrame:
    """A delimited file as stripped text cells (a bad cell is then reported where it is)."""
    try:
        df = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, encoding="utf-8-sig",
                         encoding_errors="replace")
    except FileNotFoundError:
        raise IntformerError(f"{path}: file not found; check the path") from None
    except pd.errors.EmptyDataError:
        raise IntformerError(f"{path}: the file is empty; it needs a header line and data rows") from None
    except ValueError as e:
        raise IntformerError(f"{path}: cannot parse as '{sep}'-separated text ({e}); give every row as many "
                             "fields as the header") from None
    df.columns = [str(c).strip() for c in df.columns]
    df = df.apply(lambda c: c.str.strip())
    if len(df) == 0:
        raise IntformerError(f"{path}: the file has a header but no data rows")
    return df


def _numbers(df: pd.DataFrame, col: str, path: Path) -> np.ndarray:
    """A column as float64; a missing or non-numeric cell raises naming its line (header = line 1)."""
    x = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(x)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        cell = df[col].iloc[row]
        what = "missing value" if cell == "" else f"'{cell}' is not a number"
        raise IntformerError(f"{path}: column '{col}', line {row + 2}: {what}; fix the cell")
    return x


def _binary_labels(df: pd.DataFrame, col: str, path: Path) -> np.ndarray:
    """A 0/1 label column (SKAB writes 0.0 / 1.0) as int8."""
    x = _numbers(df, col, path)
    bad = (x != 0) & (x != 1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise IntformerError(f"{path}: column '{col}', line {row + 2}: label '{df[col].iloc[row]}' is not 0 "
                             "or 1; write 1 for an anomalous row and 0 for a normal one")
    return x.astype(np.int8)


def _feature_columns(df: pd.DataFrame, path: Path, exclude: set[str], features: list[str] | None) -> list[str]:
    if features is not None:
        if set(features) & exclude:
            raise IntformerError(f"{path}: '{sorted(set(features) & exclude)[0]}' is a label column, not a "
                                 "feature; drop it from the features")
        missing = [f for f in features if f not in df.columns]
        if missing:
            raise IntformerError(f"{path}: no column named '{missing[0]}'; available columns: "
                                 f"{', '.join(c for c in df.columns if c not in exclude)}")
        return list(features)
    cols = [c for c in df.columns if c not in exclude and c.lower() not in TIME_NAMES]
    if not cols:
        raise IntformerError(f"{path}: no sensor columns besides {', '.join(sorted(exclude))}; add the "
                             "measured columns")
    return cols


def _natural_key(path: Path) -> list:
    """valve1/2.csv before valve1/10.csv."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.as_posix())]


# --------------------------------------------------------------------------------------------- SKAB

def _skab_file(path: Path, normal_only: bool) -> tuple[list[str], np.ndarray, np.ndarray]:
    df = _read_cells(path, ";")
    if len(df.columns) == 1:
        raise IntformerError(f"{path}: one column only; SKAB files are ';'-separated (datetime;sensors...;"
                             "anomaly;changepoint); use --format csv for a comma-separated file")
    if not normal_only:
        for col in SKAB_LABELS:
            if col not in df.columns:
                raise IntformerError(f"{path}: no '{col}' column; a SKAB experiment file has the label columns "
                                     "'anomaly' and 'changepoint' (normal-operation files go in a folder named "
                                     "anomaly-free)")
    cols = _feature_columns(df, path, set(SKAB_LABELS), None)
    values = np.stack([_numbers(df, c, path) for c in cols], axis=1)
    labels = np.zeros(len(df), np.int8) if normal_only else _binary_labels(df, "anomaly", path)
    return cols, values, labels


def _skab_files(folder: Path) -> tuple[list[Path], list[Path]]:
    if folder.is_file():
        return [folder], []
    if not folder.is_dir():
        raise IntformerError(f"{folder}: not found; give the SKAB data folder (the one holding valve1/, "
                             "valve2/, other/, anomaly-free/)")
    files = sorted(folder.rglob("*.csv"), key=_natural_key)
    free = [f for f in files if "anomaly-free" in f.relative_to(folder).parts[:-1] or f.stem == "anomaly-free"]
    experiments = [f for f in files if f not in free]
    if not experiments:
        raise IntformerError(f"{folder}: no SKAB experiment files (*.csv with 'anomaly' and 'changepoint' "
                             "columns) in the folder or below it; give the SKAB data folder")
    return experiments, free


def load_skab(path, protocol: str = "skab", val_fraction: float = VAL_FRACTION) -> AnomalySet:
    """The SKAB folder (or one experiment file) with SKAB's split, or trained on the anomaly-free file."""
    if protocol not in SKAB_PROTOCOLS:
        raise IntformerError(f"unknown SKAB protocol '{protocol}'; use one of: {', '.join(SKAB_PROTOCOLS)}")
    folder = Path(path)
    files, free = _skab_files(folder)
    if protocol == "anomaly-free" and not free:
        raise IntformerError(f"{folder}: the anomaly-free protocol needs anomaly-free/anomaly-free.csv under "
                             "the folder; add it or use the default protocol (skab)")
    base = folder if folder.is_dir() else folder.parent
    experiments, channels = [], None
    sources = [(f, True) for f in (free if protocol == "anomaly-free" else [])] + [(f, False) for f in files]
    for f, normal in sources:
        cols, values, labels = _skab_file(f, normal)
        if channels is None:
            channels = cols
        elif cols != channels:
            raise IntformerError(f"{f}: columns {', '.join(cols)} differ from {', '.join(channels)} of the "
                                 "first file; every SKAB file must have the same sensor columns")
        n = len(values)
        if normal:
            splits = _fit_val(n, val_fraction, f)
            splits["test"] = (n, n)
        else:
            if n <= SKAB_TRAIN_ROWS:
                raise IntformerError(f"{f}: {n} rows; SKAB's split needs more than {SKAB_TRAIN_ROWS} (the first "
                                     f"{SKAB_TRAIN_ROWS} train, the rest test)")
            if protocol == "skab":
                splits = _fit_val(SKAB_TRAIN_ROWS, val_fraction, f)
            else:
                splits = {"train": (0, 0), "val": (0, 0)}
            splits["test"] = (SKAB_TRAIN_ROWS, n)
        rel = f.relative_to(base).with_suffix("")
        name = (rel if len(rel.parts) > 1 else Path(base.name) / rel).as_posix()   # "valve1/3", however given
        experiments.append(Experiment(name, str(f), values, labels, splits))
    name = folder.name if folder.is_dir() else f"{folder.parent.name}/{folder.stem}"
    return _finish(name, str(folder), "skab", protocol, channels, experiments)


def _fit_val(n: int, val_fraction: float, source) -> dict[str, tuple[int, int]]:
    """Rows [0, n) of a training part: the last val_fraction (at least one row) held out for validation."""
    if not 0 < val_fraction < 1:
        raise IntformerError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction!r}")
    val = max(1, int(round(n * val_fraction)))
    if n - val < 2:
        raise IntformerError(f"{source}: a training part of {n} rows is too short to hold out validation rows")
    return {"train": (0, n - val), "val": (n - val, n)}


def _finish(name: str, source: str, fmt: str, protocol: str, channels: list[str],
            experiments: list[Experiment]) -> AnomalySet:
    """Check the parts and fit the scaler on the training parts (train + val rows) only."""
    fit = np.concatenate([e.values[e.splits["train"][0]:e.splits["val"][1]] for e in experiments])
    if len(fit) < 2:
        raise IntformerError(f"{source}: no training rows; the detector needs normal rows to learn from")
    std = fit.std(axis=0)
    if np.any(std == 0):
        col = channels[int(np.flatnonzero(std == 0)[0])]
        raise IntformerError(f"{source}: column '{col}' is constant over the training rows, so it cannot be "
                             "scaled; drop it from the features")
    aset = AnomalySet(name, source, fmt, protocol, list(channels), experiments,
                      Scaler(fit.mean(axis=0), std, 0.0, 1.0))
    test = np.concatenate(aset.labels("test"))
    if test.size == 0:
        raise IntformerError(f"{source}: no test rows; the test part is empty")
    if test.sum() == 0:
        raise IntformerError(f"{source}: the {test.size} test rows hold no anomalous row, so F1 and the missed "
                             "alarm rate are undefined; test on data that contains an anomaly")
    return aset


# --------------------------------------------------------------------------------------------- UCR

def _embedded_ucr() -> Path:
    """aeon's copy, found through the package spec (importing aeon takes seconds)."""
    spec = importlib.util.find_spec("aeon")
    if spec is None:
        raise IntformerError(f"{EMBEDDED_UCR}: aeon is not installed; pip install 'aeon>=1.6' or give a file")
    path = (Path(next(iter(spec.submodule_search_locations or []), "")) / "datasets" / "data" / "KDD-TSAD_135"
            / "135_UCR_Anomaly_InternalBleeding16_TEST.csv")
    if not path.is_file():
        raise IntformerError(f"{EMBEDDED_UCR}: not found in the installed aeon; reinstall aeon>=1.6")
    return path


def _timeeval_pair(path: Path) -> tuple[str, list[str], np.ndarray, np.ndarray, int]:
    """A TimeEval *_TEST.csv (the whole series) and its *_TRAIN.csv (the normal prefix)."""
    stem = re.sub(r"_(TRAIN|TEST)$", "", path.stem)
    test_path, train_path = path.with_name(f"{stem}_TEST.csv"), path.with_name(f"{stem}_TRAIN.csv")
    for p in (test_path, train_path):
        if not p.is_file():
            raise IntformerError(f"{path}: its pair {p.name} is missing; a TimeEval series comes as "
                                 "NAME_TRAIN.csv (normal rows) and NAME_TEST.csv (the whole series)")
    df = _read_cells(test_path, ",")
    if "is_anomaly" not in df.columns:
        raise IntformerError(f"{test_path}: no 'is_anomaly' column; a TimeEval file has timestamp, the value "
                             "columns and is_anomaly")
    cols = _feature_columns(df, test_path, {"is_anomaly"}, None)
    values = np.stack([_numbers(df, c, test_path) for c in cols], axis=1)
    train = _read_cells(train_path, ",")
    n_train = len(train)
    if n_train >= len(df) or not np.array_equal(
            np.stack([_numbers(train, c, train_path) for c in cols], axis=1), values[:n_train]):
        raise IntformerError(f"{train_path}: is not the first rows of {test_path.name}; give the pair of one "
                             "series")
    return stem, cols, values, _binary_labels(df, "is_anomaly", test_path), n_train


def load_ucr(path=None, val_fraction: float = VAL_FRACTION) -> AnomalySet:
    """A UCR anomaly archive .txt (split and anomaly in the name) or a TimeEval CSV pair; None: aeon's 135."""
    p = _embedded_ucr() if path is None else Path(path)
    source = EMBEDDED_UCR if path is None else str(p)
    if p.suffix.lower() == ".csv":
        name, cols, values, labels, train_end = _timeeval_pair(p)
    else:
        m = UCR_NAME.match(p.stem)
        if m is None:
            raise IntformerError(f"{p}: the name does not follow the UCR archive's NNN_UCR_Anomaly_NAME_"
                                 "TRAINEND_BEGIN_END.txt, which says where training ends and the anomaly lies; "
                                 "rename it or use --format csv with a label column")
        try:
            values = np.array(p.read_text().split(), dtype=np.float64)[:, None]
        except FileNotFoundError:
            raise IntformerError(f"{p}: file not found; check the path") from None
        except ValueError as e:
            raise IntformerError(f"{p}: not a list of numbers ({e}); a UCR file holds one value per step") from None
        train_end, begin, end = (int(g) for g in m.groups()[2:])
        if not 0 < train_end <= begin < end <= len(values):
            raise IntformerError(f"{p}: the name's train end {train_end} and anomaly [{begin}, {end}) do not fit "
                                 f"a series of {len(values)} rows; check the file")
        name, cols = p.stem, ["value"]
        labels = np.zeros(len(values), np.int8)
        labels[begin:end] = 1
    splits = _fit_val(train_end, val_fraction, source)
    splits["test"] = (train_end, len(values))
    return _finish(name, source, "ucr", "ucr", cols, [Experiment(name, source, values, labels, splits)])


# --------------------------------------------------------------------------------------------- CSV

def load_labelled_csv(path, label: str, features: list[str] | None = None, train_end: int | None = None,
                      train_fraction: float = CSV_TRAIN_FRACTION, val_fraction: float = VAL_FRACTION) -> AnomalySet:
    """One table with a 0/1 `label` column, split by time at `train_end` (default the first train_fraction)."""
    p = Path(path)
    if not p.is_file():
        raise IntformerError(f"{p}: not a file; give the labelled CSV file")
    with open(p, encoding="utf-8-sig", errors="replace") as f:
        header = f.readline()
    df = _read_cells(p, ";" if header.count(";") > header.count(",") else ",")
    if label not in df.columns:
        raise IntformerError(f"{p}: no label column '{label}'; available columns: {', '.join(df.columns)}; "
                             "name the column that marks anomalous rows with 1")
    exclude = {label} | ({"changepoint"} if "changepoint" in df.columns else set())
    cols = _feature_columns(df, p, exclude, features)
    values = np.stack([_numbers(df, c, p) for c in cols], axis=1)
    labels = _binary_labels(df, label, p)
    n = len(df)
    if train_end is None:
        train_end = int(n * train_fraction)
    if not 2 < train_end < n:
        raise IntformerError(f"{p}: train end {train_end} leaves no training or no test rows of {n}; choose "
                             f"a train end between 3 and {n - 1}")
    splits = _fit_val(train_end, val_fraction, p)
    splits["test"] = (train_end, n)
    return _finish(p.stem, str(p), "csv", "csv", cols, [Experiment(p.stem, str(p), values, labels, splits)])


def load_anomaly(path=None, fmt: str | None = None, protocol: str | None = None, label: str | None = None,
                 features: list[str] | None = None, train_end: int | None = None,
                 val_fraction: float = VAL_FRACTION) -> AnomalySet:
    """Dispatch on `fmt` (None: a folder is skab, *_UCR_Anomaly_* or TimeEval pairs ucr, else csv)."""
    if path is not None and not Path(path).exists():
        raise IntformerError(f"{path}: no such file or folder; give a SKAB folder, a UCR anomaly series or a "
                             "labelled CSV")
    if fmt is None:
        p = Path(path) if path is not None else None
        fmt = ("ucr" if p is None or "_UCR_Anomaly_" in p.name or re.search(r"_(TRAIN|TEST)\.csv$", p.name)
               else "skab" if p.is_dir() else "csv")
    if fmt not in ANOMALY_FORMATS:
        raise IntformerError(f"unknown anomaly format '{fmt}'; use one of: {', '.join(ANOMALY_FORMATS)}")
    if protocol is not None and fmt != "skab" and protocol != fmt:
        raise IntformerError(f"protocol '{protocol}' applies to the skab format only; drop it")
    if fmt == "skab":
        if path is None:
            raise IntformerError("the skab format needs the SKAB data folder")
        return load_skab(path, protocol or "skab", val_fraction)
    if fmt == "ucr":
        return load_ucr(path, val_fraction)
    if path is None or label is None:
        raise IntformerError("the csv anomaly format needs a file and its label column (--label COL)")
    return load_labelled_csv(path, label, features, train_end, val_fraction=val_fraction)


# --------------------------------------------------------------------------------------------- windows

@dataclass
class AnomalyWindows:
    """Forecast-next-step windows: x = the `window` rows before row t, y = row t, label = row t's label."""
    x: np.ndarray            # float32 (N, window, channels), scaled
    y: np.ndarray            # float32 (N, channels), scaled actual row t
    labels: np.ndarray       # int8 (N,), point label of row t
    experiment: np.ndarray   # int64 (N,), index into AnomalySet.experiments
    row: np.ndarray          # int64 (N,), t within its experiment


def make_anomaly_windows(aset: AnomalySet, window: int, part: str) -> AnomalyWindows:
    """All windows whose target row t lies in `part`, experiment by experiment, in time order.

    Inputs are rows [t - window, t) of the same experiment: they may reach back before the part (a test
    window's inputs into its experiment's training rows, as a streaming detector sees them), never across an
    experiment. Every row of the part gets a window, so the test windows score exactly the protocol's test
    rows; a val or test part whose first rows have fewer than `window` rows before them is refused. Training
    windows start at row `window` of their training part, so their inputs are training rows too.
    """
    if not isinstance(window, (int, np.integer)) or window < 1:
        raise IntformerError(f"window must be a whole number >= 1, got {window!r}")
    _check_part(part)
    xs, ys, ls, es, rs = [], [], [], [], []
    for i, e in enumerate(aset.experiments):
        a, b = e.splits[part]
        if part == "train":     # the training part starts the experiment: its first `window` rows are inputs only
            a = max(a, window)
        if b <= a:
            continue
        if a < window:
            raise IntformerError(f"{e.source}: the {part} rows start at row {a}, so a window of {window} rows "
                                 f"before each of them does not fit; use --window {a} or less")
        scaled = aset.scaler.transform_inputs(e.values)
        t = np.arange(a, b, dtype=np.int64)
        view = np.lib.stride_tricks.sliding_window_view(scaled, window, axis=0)   # (rows-window+1, C, window)
        xs.append(view[t - window].transpose(0, 2, 1))
        ys.append(scaled[t])
        ls.append(e.labels[t])
        es.append(np.full(t.size, i, np.int64))
        rs.append(t)
    if not xs:
        raise IntformerError(f"{aset.source}: the {part} part is empty; no {part} windows")
    return AnomalyWindows(np.concatenate(xs).astype(np.float32), np.concatenate(ys).astype(np.float32),
                          np.concatenate(ls).astype(np.int8), np.concatenate(es), np.concatenate(rs))


def load_anomaly_spec(spec: dict) -> AnomalySet:
    """`load_anomaly` from a command's data spec (`scripts.options.data_spec`: the keys it shares with the
    forecasting and classification specs; the others must be unset)."""
    for key in ("target", "sensor", "split_time", "unequal", "length", "stride", "label_by", "group"):
        if spec.get(key):
            raise IntformerError(f"--{key.replace('_', '-')} is not an anomaly-detection option; drop it")
    if spec.get("fmt") not in (None,) + ANOMALY_FORMATS:
        raise IntformerError(f"--format {spec['fmt']} is not an anomaly format; use one of: "
                             f"{', '.join(ANOMALY_FORMATS)}")
    return load_anomaly(spec.get("path"), spec.get("fmt"), spec.get("protocol"), spec.get("label"),
                        spec.get("features"))
