"""Classification data: labelled series -> a `ClassData` with train / val / test parts, class names and a `Scaler`.

Format ``ts`` (`load_classification(path, "ts")`): a UEA/UCR archive pair, NAME_TRAIN.ts and the NAME_TEST.ts
beside it, univariate or multivariate, read with aeon's loader (`aeon.datasets.load_from_ts_file`, the
archive's own reader). path=None: the embedded default, BasicMotions (6 IMU channels, 4 activities, 40 + 40
series of 100 steps), which aeon ships in its wheel, so it loads offline.

* Classes: the label strings of the training file, in sorted order (numerically when every label is a
  number: "2" before "10"), mapped to 0..C-1; the names are kept. A test label that the training file does
  not have is refused (the model could never predict it).
* Lengths: the model's window is one series. Series of unequal length (or a test file whose length is not
  the training file's) need a policy, `unequal`: "pad" (repeat each series' last value up to the longest
  training length), "truncate" (cut to the shortest training length), "resample" (linear interpolation to
  the longest training length). Test series follow the training length by the same rule (a test series
  shorter than a truncation length is padded, one longer than a padded length is cut). None refuses them,
  naming the lengths.
* Length: series longer than MAX_AUTO_LENGTH steps are averaged over blocks of k steps (the smallest k that
  gives at most 32), so that the default model fits the iCE40 UP5K; `length` sets it (0: every step).
* Split: the validation part is taken from the training file, stratified (VAL_FRACTION of each class, at
  least one series of every class with two or more), seeded (SPLIT_SEED), so every command that reads the
  run again sees the same parts; the test file is the test part, untouched.
* Scaling: per-channel standardization fitted on the training part only (all its steps), as `Scaler` with
  the target mean 0 and std 1 (a classifier has no target to scale).

A labelled CSV (`label` set: `load_labelled_csv`): a table with an integer class label per row, cut into
windows (a raw accelerometer stream such as WISDM's), split by time or by a group column.
"""
from __future__ import annotations

import importlib.util
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data import Scaler
from .errors import IntformerError

UNEQUAL = ("pad", "truncate", "resample")
EMBEDDED_NAME = "BasicMotions"
VAL_FRACTION = 0.25
SPLIT_SEED = 0
CLASS_FORMATS = ("ts",)


@dataclass
class Labelled:
    """One part of a classification data set: scaled windows and their class indices."""
    x: np.ndarray            # float32 (N, length, channels), scaled
    y: np.ndarray            # int64 (N,), 0..C-1


@dataclass
class ClassData:
    name: str                       # e.g. "BasicMotions"
    source: str                     # the training file, or "embedded:aeon/datasets/data/BasicMotions"
    channels: list[str]             # channel names ("dim_0", ... for .ts files, which name none)
    classes: list[str]              # class names, index = class
    raw: dict[str, tuple[np.ndarray, np.ndarray]]   # part -> (float64 (N, length, channels), int64 (N,))

    @property
    def length(self) -> int:
        return int(self.raw["train"][0].shape[1])

    def scaler(self) -> Scaler:
        """Per-channel mean and std over every step of the training part (never val or test)."""
        x = self.raw["train"][0].reshape(-1, len(self.channels))
        std = x.std(axis=0)
        flat = [self.channels[i] for i in np.flatnonzero(std == 0)]
        if flat:
            raise IntformerError(f"{self.source}: channel {flat[0]} is constant over the training part, so it "
                                 "cannot be standardized; drop it from the file")
        return Scaler(x.mean(axis=0), std, 0.0, 1.0)

    def part(self, name: str, scaler: Scaler) -> Labelled:
        if name not in self.raw:
            raise IntformerError(f"unknown split '{name}'; use one of: {', '.join(self.raw)}")
        x, y = self.raw[name]
        return Labelled(scaler.transform_inputs(x).astype(np.float32), y.astype(np.int64))

    def counts(self, name: str) -> list[int]:
        return np.bincount(self.raw[name][1], minlength=len(self.classes)).tolist()


# ------------------------------------------------------------------------------------------ reading .ts

def embedded_folder() -> Path:
    spec = importlib.util.find_spec("aeon")
    if spec is None:
        raise IntformerError("the embedded classification data (BasicMotions) comes with aeon: "
                             "pip install 'aeon>=1.6,<1.7', or give a NAME_TRAIN.ts file with --data")
    return Path(next(iter(spec.submodule_search_locations or []))) / "datasets" / "data"


def _pair(path: str | None) -> tuple[Path, Path, str, str]:
    """(train file, test file, name, source) of a NAME_TRAIN.ts path, or of the embedded default."""
    if path is None:
        folder = embedded_folder() / EMBEDDED_NAME
        train = folder / f"{EMBEDDED_NAME}_TRAIN.ts"
        return train, folder / f"{EMBEDDED_NAME}_TEST.ts", EMBEDDED_NAME, f"embedded:aeon/datasets/data/{EMBEDDED_NAME}"
    train = Path(path)
    if not train.is_file():
        raise IntformerError(f"{path}: file not found; give the NAME_TRAIN.ts file of a UEA/UCR pair")
    stem = train.name[:-len(".ts")] if train.name.lower().endswith(".ts") else None
    if stem is None or not stem.upper().endswith("_TRAIN"):
        raise IntformerError(f"{path}: the ts format reads a NAME_TRAIN.ts / NAME_TEST.ts pair; give the "
                             "NAME_TRAIN.ts file (its NAME_TEST.ts beside it)")
    name = stem[:-len("_TRAIN")]
    test = train.with_name(f"{name}{stem[-6:].replace('TRAIN', 'TEST').replace('train', 'test')}.ts")
    if not test.is_file():
        raise IntformerError(f"{path}: no {test.name} beside it; a .ts training file needs its test file: "
                             "put the test file of the pair next to it (the UEA/UCR archive ships them in pairs)")
    return train, test, name, str(train)


def _read_ts(path: Path, source: str) -> tuple[list[np.ndarray], np.ndarray]:
    """Series as float64 (length, channels) arrays, and the label strings."""
    from aeon.datasets import load_from_ts_file

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            x, y = load_from_ts_file(str(path))
    except (IOError, ValueError, TypeError, IndexError, KeyError) as exc:
        raise IntformerError(f"{source if path.name.endswith('TRAIN.ts') else path}: cannot read as a .ts file "
                             f"({str(exc).strip() or type(exc).__name__}); check its @ header lines") from None
    if y is None or len(y) != len(x):
        raise IntformerError(f"{path}: the file has no class labels (@classLabel false); classification needs them")
    series = [np.asarray(s, dtype=np.float64).T for s in x]
    for i, s in enumerate(series):
        if not np.all(np.isfinite(s)):
            raise IntformerError(f"{path}: series {i + 1} has a missing or non-finite value; fill it in the file")
        if s.shape[0] < 1:
            raise IntformerError(f"{path}: series {i + 1} is empty")
    return series, np.asarray([str(v).strip() for v in y])


def _class_order(labels: np.ndarray) -> list[str]:
    names = sorted(set(labels.tolist()))
    try:
        return sorted(names, key=float)
    except ValueError:
        return names


def _fit_length(s: np.ndarray, n: int, policy: str) -> np.ndarray:
    if policy == "resample" and s.shape[0] != n:
        if s.shape[0] == 1:
            return np.repeat(s, n, axis=0)
        t_old, t_new = np.linspace(0.0, 1.0, s.shape[0]), np.linspace(0.0, 1.0, n)
        return np.stack([np.interp(t_new, t_old, s[:, c]) for c in range(s.shape[1])], axis=1)
    if s.shape[0] >= n:
        return s[:n]
    return np.concatenate([s, np.repeat(s[-1:], n - s.shape[0], axis=0)])


def _equalize(train: list[np.ndarray], test: list[np.ndarray], policy: str | None,
              source: str) -> tuple[np.ndarray, np.ndarray]:
    lengths = sorted({s.shape[0] for s in train})
    test_lengths = sorted({s.shape[0] for s in test})
    if policy is None:
        if len(lengths) > 1 or test_lengths != lengths:
            what = (f"lengths {lengths[0]}..{lengths[-1]} in the training file" if len(lengths) > 1 else
                    f"length {lengths[0]} in the training file, {test_lengths[0]}..{test_lengths[-1]} in the test file")
            raise IntformerError(f"{source}: the series have unequal lengths ({what}); choose how to make them "
                                 f"equal: --unequal pad, truncate or resample")
        return np.stack(train), np.stack(test)
    if policy not in UNEQUAL:
        raise IntformerError(f"unknown --unequal '{policy}'; use one of: {', '.join(UNEQUAL)}")
    n = lengths[0] if policy == "truncate" else lengths[-1]
    return (np.stack([_fit_length(s, n, policy) for s in train]),
            np.stack([_fit_length(s, n, policy) for s in test]))


def stratified_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, val indices): from each class with two or more examples, round(fraction * n_c) (at
    least 1) to val, chosen by a seeded permutation; sorted, so the parts keep the file's order."""
    rng = np.random.default_rng(seed)
    val = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        if len(idx) >= 2:
            k = min(len(idx) - 1, max(1, int(round(fraction * len(idx)))))
            val.extend(rng.permutation(idx)[:k].tolist())
    val = np.sort(np.asarray(val, dtype=np.int64))
    return np.setdiff1d(np.arange(len(y)), val), val


MAX_AUTO_LENGTH = 32    # the default series length: the iCE40 UP5K holds a 32-token model (its attention buffers
                        # grow with tokens^2; 100 tokens need 94 of its 30 block RAMs)


def shorten(x: np.ndarray, length: int | None) -> np.ndarray:
    """(N, L, M) series to `length` steps: the mean of each block of k = L / length steps where it divides L
    (an anti-aliasing average, not a pick of every k-th step), else linear interpolation; None: the smallest
    block k with L // k <= MAX_AUTO_LENGTH (the tail of L % k steps dropped); 0 or L: unchanged."""
    n = x.shape[1]
    if length is None:
        k = -(-n // MAX_AUTO_LENGTH)
        length = n // k
        x = x[:, :length * k]
    if not length or length == x.shape[1]:
        return x
    if length < 1:
        raise IntformerError(f"--length must be a positive number of steps (0: every step), got {length}")
    if x.shape[1] % length == 0:
        return x.reshape(x.shape[0], length, x.shape[1] // length, x.shape[2]).mean(axis=2)
    return np.stack([_fit_length(s, length, "resample") for s in x])


def load_classification(path: str | None = None, fmt: str | None = None, unequal: str | None = None,
                        length: int | None = None,
                        label: str | None = None, window: int | None = None, stride: int | None = None,
                        label_by: str | None = None, group: str | None = None, features: list[str] | None = None,
                        fill: str | None = None, **unused) -> ClassData:
    """Read a labelled data set (module docstring): a .ts pair, or with `label` a labelled CSV
    (`load_labelled_csv`); `unused` takes the other forecasting keys of a data spec, which must be unset."""
    given = sorted(k for k, v in unused.items() if v not in (None, False))
    if given:
        kind = "an anomaly-detection" if given[0] in ("protocol", "quantile") else "a forecasting"
        raise IntformerError(f"--{given[0].replace('_', '-')} is {kind} data option; classification reads "
                             "its channels and labels from the .ts file or the --label column")
    if label is not None or fmt == "csv":
        if unequal is not None or length is not None:
            raise IntformerError("--unequal and --length apply to .ts series; a labelled CSV is cut into windows "
                                 "of --window rows")
        return load_labelled_csv(path, label, window, stride, label_by, group, features, fill)
    for name, v in (("stride", stride), ("label-by", label_by), ("group", group), ("features", features),
                    ("fill", fill)):
        if v is not None:
            raise IntformerError(f"--{name} applies to a labelled CSV (--label COL), not to .ts series")
    if fmt not in (None, "ts"):
        raise IntformerError(f"--task classify reads --format ts, or a CSV with --label COL, not --format {fmt}")
    train_file, test_file, name, source = _pair(path)
    train_x, train_labels = _read_ts(train_file, source)
    test_x, test_labels = _read_ts(test_file, source)
    channels = {s.shape[1] for s in train_x + test_x}
    if len(channels) > 1:
        raise IntformerError(f"{source}: the series have different numbers of channels ({sorted(channels)}); "
                             "every series of a pair needs the same channels")
    classes = _class_order(train_labels)
    if len(classes) < 2:
        raise IntformerError(f"{source}: the training file has one class ({classes[0]!r}); classification "
                             "needs two or more")
    unknown = sorted(set(test_labels.tolist()) - set(classes))
    if unknown:
        raise IntformerError(f"{test_file}: class {unknown[0]!r} has no training example in {train_file.name}; "
                             "every test class needs training examples")
    index = {c: i for i, c in enumerate(classes)}
    x_all, x_test = (shorten(x, length) for x in _equalize(train_x, test_x, unequal, source))
    y_all = np.asarray([index[v] for v in train_labels], dtype=np.int64)
    y_test = np.asarray([index[v] for v in test_labels], dtype=np.int64)
    tr, va = stratified_split(y_all, VAL_FRACTION, SPLIT_SEED)
    if len(va) == 0:
        raise IntformerError(f"{source}: too few training series ({len(y_all)}) to set a validation part aside")
    m = x_all.shape[2]
    return ClassData(name, source, [f"dim_{i}" for i in range(m)], classes,
                     {"train": (x_all[tr], y_all[tr]), "val": (x_all[va], y_all[va]), "test": (x_test, y_test)})


# ----------------------------------------------------------------------------------------- labelled CSV

LABEL_BY = ("majority", "last")
CSV_SPLIT = (0.7, 0.1)          # train, val fractions (of rows in time order, or of the groups); test the rest


def load_labelled_csv(path: str | None, label: str | None, window: int | None, stride: int | None,
                      label_by: str | None, group: str | None, features: list[str] | None,
                      fill: str | None) -> ClassData:
    """A CSV with an integer label per row (`label`), cut into windows of `window` rows every `stride` rows
    (default: window, no overlap); a window's label is its rows' most frequent label (`label_by` "majority",
    the default; ties: the smallest) or its last row's ("last"). Split 70/10/20: by rows in time order (windows
    cut inside each part, so none straddles two), or with `group` (e.g. a subject id) by whole groups, seeded,
    so that no group is in two parts. Inputs: `features`, else every numeric column but the label and group."""
    from .data import MISSING, _column_values, _find_time_column, _is_numeric_column, _read_table

    if path is None:
        raise IntformerError("--label needs a labelled CSV file: give it with --data")
    if label is None:
        raise IntformerError(f"{path}: a CSV for classification needs --label COL, the column of class labels")
    window = int(window or 0)
    stride = int(stride if stride is not None else window)
    if window < 1 or stride < 1:
        raise IntformerError(f"--window and --stride must be positive, got {window} and {stride}")
    label_by = label_by or "majority"
    if label_by not in LABEL_BY:
        raise IntformerError(f"--label-by must be one of {', '.join(LABEL_BY)}, got {label_by!r}")
    table = _read_table(path, str(path))
    cols = list(table.df.columns)
    for role, name in (("label", label), ("group", group)):
        if name is not None and name not in cols:
            raise IntformerError(f"{table.source}: no column named '{name}' (the {role}); available columns: "
                                 f"{', '.join(cols)}")
    labels = _labels(table, label, MISSING)
    time_col = _find_time_column(table)
    skip = {label, group, time_col}
    inputs = list(features) if features else [c for c in cols if c not in skip and _is_numeric_column(table.df[c])]
    if not inputs:
        raise IntformerError(f"{table.source}: no numeric input columns besides the label; name them with --features")
    for c in inputs:
        if c not in cols or c in (label, group):
            raise IntformerError(f"{table.source}: '{c}' cannot be an input (no such column, or the label or group)")
    values = np.stack([_column_values(table, c, fill) for c in inputs], axis=1)
    if group is not None:
        parts = _group_parts(table, group)
    else:
        n = len(values)
        a, b = int(n * CSV_SPLIT[0]), int(n * sum(CSV_SPLIT))
        parts = {"train": [np.arange(0, a)], "val": [np.arange(a, b)], "test": [np.arange(b, n)]}
    names = [str(v) for v in sorted(set(labels.tolist()))]
    index = {int(v): i for i, v in enumerate(sorted(set(labels.tolist())))}
    raw = {}
    for part, runs in parts.items():
        xs, ys = [], []
        for rows in runs:
            for start in range(0, len(rows) - window + 1, stride):
                r = rows[start:start + window]
                lab = labels[r]
                ys.append(index[int(lab[-1] if label_by == "last" else np.bincount(lab - lab.min()).argmax() + lab.min())])
                xs.append(values[r])
        if not xs:
            raise IntformerError(f"{table.source}: the {part} part has no window of {window} rows; shorten --window "
                                 "or use more data")
        raw[part] = (np.stack(xs), np.asarray(ys, dtype=np.int64))
    missing = [names[i] for i in range(len(names)) if i not in set(raw["train"][1].tolist())]
    if missing:
        raise IntformerError(f"{table.source}: class {missing[0]} has no training window; every class needs "
                             "training examples (use more data, a shorter --window or another split)")
    return ClassData(Path(path).stem, table.source, inputs, names, raw)


def _labels(table, label: str, missing_words) -> np.ndarray:
    cells = table.df[label]
    for row, cell in enumerate(cells):
        text = cell.strip()
        bad = text.lower() in missing_words or not (text.lstrip("-").isdigit())
        if bad:
            what = "missing label" if text.lower() in missing_words else f"label '{text}' is not an integer"
            raise IntformerError(f"{table.source}: column '{label}', line {table.line(row)}: {what}; every row "
                                 "needs an integer class label")
    return cells.astype(np.int64).to_numpy()


def _group_parts(table, group: str) -> dict[str, list[np.ndarray]]:
    """Whole groups to train / val / test (70/10/20 of the groups, at least one each, seeded); each group's
    rows stay in file order and are windowed on their own."""
    cells = table.df[group]
    ids = sorted(set(cells.tolist()))
    if len(ids) < 3:
        raise IntformerError(f"{table.source}: --group {group} has {len(ids)} group(s); a split by group needs at "
                             "least 3 (train, val, test)")
    order = [ids[i] for i in np.random.default_rng(SPLIT_SEED).permutation(len(ids))]
    n_val = max(1, int(round(len(ids) * CSV_SPLIT[1])))
    n_train = min(len(ids) - n_val - 1, max(1, int(round(len(ids) * CSV_SPLIT[0]))))
    chosen = {"train": order[:n_train], "val": order[n_train:n_train + n_val], "test": order[n_train + n_val:]}
    col = cells.to_numpy()
    return {part: [np.flatnonzero(col == g) for g in gs] for part, gs in chosen.items()}
