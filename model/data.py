"""Data loading: a time-series table -> a `Series` with its train/val/test split, a `Scaler`, and `Windows`.

Formats (`load_series(fmt=...)`; None guesses from the file name):

* ``csv``  -- generic table: an optional time column, numeric columns; split 70/10/20 by rows in time order.
* ``ett``  -- the ETDataset files (ETTh1.csv, ETTm2.csv, ...) with the standard protocol used in the
  literature: 12/4/4 months of 30 days (train [0, 8640), val [8640, 11520), test [11520, 14400) hourly rows;
  x4 for the 15-minute ETTm files); rows after the test split are unused.
* ``pems`` -- a time column plus one column per traffic sensor; one sensor, split by whole weeks (the last
  week is test, the week before it val, the earlier weeks train: 2/1/1 for a four-week file).
* ``airu`` -- a timestamped sensor table split at a time: rows before `split_time` are train+val (the last
  20 % of them val), rows at or after it are test.
* ``path=None`` -- the embedded default: the TMY3 hourly weather file pvlib ships in its wheel
  (pvlib/data/723170TYA.CSV, Greensboro NC, 8760 rows), target dry-bulb temperature. It works offline.

Every problem a user can fix raises `IntformerError` naming the file, the column and the file line.
All cells are read as text first so that a missing or malformed cell can be reported where it is.
"""
from __future__ import annotations

import importlib.resources
import importlib.util
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from intformer.model.errors import IntformerError

FORMATS = ("csv", "ett", "pems", "airu")
TIME_NAMES = {"date", "time", "timestamp", "datetime"}
MISSING = {"", "na", "n/a", "nan", "null", "none", "?"}
EMBEDDED_SOURCE = "embedded:pvlib/data/723170TYA.CSV"
# TMY3 header -> short name (the names pvlib's own reader uses)
TMY3_COLUMNS = {"Dry-bulb (C)": "DryBulb", "Dew-point (C)": "DewPoint", "RHum (%)": "RHum",
                "Pressure (mbar)": "Pressure", "Wspd (m/s)": "Wspd", "GHI (W/m^2)": "GHI"}
ETT_HOURLY_SPLIT = (8640, 11520, 14400)     # 12, 16, 20 months of 30 days at 24 rows a day


@dataclass
class Series:
    name: str                 # short name, e.g. "ETTh1" or "tmy3-greensboro"
    source: str               # file path, or "embedded:pvlib/data/723170TYA.CSV"
    values: np.ndarray        # float64 (rows, len(columns)): the input columns, in order
    columns: list[str]        # input column names (the target is among them when it is an input)
    target: str               # target column name
    target_values: np.ndarray  # float64 (rows,)
    splits: dict[str, tuple[int, int]]  # "train"/"val"/"test" -> [start, end): rows whose TARGETS belong to it
    period: int | None        # seasonal period in rows when known (24 for hourly data), else None


# --------------------------------------------------------------------------------------------- reading

@dataclass
class _Table:
    """Raw text cells of a file, with what is needed to point at a line of it."""
    df: pd.DataFrame   # every cell a stripped string
    source: str        # path or embedded:..., for messages
    first_line: int    # 1-based file line of data row 0

    def line(self, row: int) -> int:
        return self.first_line + int(row)


def _read_table(path, source: str, skip_lines: int = 0, usecols: list[str] | None = None) -> _Table:
    """Read a CSV as text; blank lines stay rows (so line numbers stay exact) except trailing ones."""
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, skip_blank_lines=False,
                         skiprows=skip_lines, usecols=usecols, encoding="utf-8-sig", encoding_errors="replace")
    except FileNotFoundError:
        raise IntformerError(f"{source}: file not found; check the path") from None
    except IsADirectoryError:
        raise IntformerError(f"{source}: is a directory, not a CSV file; give the path of a file") from None
    except pd.errors.EmptyDataError:
        raise IntformerError(f"{source}: the file is empty; it needs a header line of column names "
                             "followed by data rows") from None
    except ValueError as e:   # pandas' ParserError, or usecols not in the header
        raise IntformerError(f"{source}: cannot parse as CSV ({e}); make every row have as many "
                             "comma-separated fields as the header") from None
    df = df.fillna("").apply(lambda c: c.str.strip())
    df.columns = [str(c).strip() for c in df.columns]
    if all(_is_number(c) for c in df.columns):
        raise IntformerError(f"{source}: line {skip_lines + 1} looks like data, not column names; "
                             "add a header line naming the columns")
    nonblank = np.flatnonzero((df != "").any(axis=1).to_numpy())
    df = df.iloc[: nonblank[-1] + 1 if nonblank.size else 0].reset_index(drop=True)
    if len(df) == 0:
        raise IntformerError(f"{source}: the file has a header but no data rows")
    return _Table(df, source, first_line=skip_lines + 2)


def _read_embedded() -> _Table:
    """pvlib's TMY3 file: line 1 is site metadata, line 2 the headers; only six weather columns are kept.

    The file is found through the package spec, which does not run pvlib's __init__ (0.6 s of scipy
    imports); importlib.resources, which does, is the fallback for unusual (e.g. zipped) installs.
    """
    spec = importlib.util.find_spec("pvlib")
    if spec is None:
        raise IntformerError(f"{EMBEDDED_SOURCE}: pvlib is not installed; pip install 'pvlib>=0.11' "
                             "or give a data file path")
    path = Path(next(iter(spec.submodule_search_locations or []), "")) / "data" / "723170TYA.CSV"
    if not path.is_file():
        path = importlib.resources.files("pvlib") / "data" / "723170TYA.CSV"
    if not path.is_file():
        raise IntformerError(f"{EMBEDDED_SOURCE}: not found in the installed pvlib; reinstall pvlib>=0.11 "
                             "or give a data file path")
    table = _read_table(str(path), EMBEDDED_SOURCE, skip_lines=1, usecols=list(TMY3_COLUMNS))
    table.df = table.df[list(TMY3_COLUMNS)].rename(columns=TMY3_COLUMNS)
    return table


def _is_number(text: str) -> bool:
    try:
        return bool(np.isfinite(float(text)))
    except ValueError:
        return False


def _numeric(cells: pd.Series) -> np.ndarray:
    """float64 values, NaN where the cell is missing or not a finite number."""
    x = pd.to_numeric(cells, errors="coerce").to_numpy(dtype=np.float64, copy=True)
    x[~np.isfinite(x)] = np.nan
    return x


def _is_numeric_column(cells: pd.Series) -> bool:
    """Most present cells are numbers (a few bad cells must be reported, not make the column vanish)."""
    present = cells[~cells.str.lower().isin(MISSING)]
    return len(present) > 0 and np.isfinite(_numeric(present)).mean() >= 0.5


def _column_values(table: _Table, col: str, fill: str | None) -> np.ndarray:
    """A column as float64; missing/non-numeric cells raise, or are interpolated with fill='interpolate'."""
    cells = table.df[col]
    x = _numeric(cells)
    bad = np.isnan(x)
    if not bad.any():
        return x
    if fill is None:
        row = int(np.flatnonzero(bad)[0])
        more = f" (and {bad.sum() - 1} more)" if bad.sum() > 1 else ""
        cell = cells.iloc[row]
        where = f"{table.source}: column '{col}', line {table.line(row)}"
        if cell.lower() in MISSING:
            raise IntformerError(f"{where}: missing value{more}; fill the gap in the file or pass "
                                 "--fill interpolate (fill='interpolate') to interpolate it")
        raise IntformerError(f"{where}: '{cell}' is not a number{more}; fix the cell (or pass "
                             "--fill interpolate to treat it as missing)")
    if bad.all():
        raise IntformerError(f"{table.source}: column '{col}' has no numeric values; choose another column")
    rows = np.arange(len(x))
    # np.interp holds the first/last known value past the ends: edge gaps take the nearest value
    return np.interp(rows, rows[~bad], x[~bad])


def _parse_times(table: _Table, col: str) -> pd.Series:
    """The time column as datetimes; an unreadable cell raises naming its line."""
    raw = table.df[col]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ts = pd.to_datetime(raw, errors="coerce")
            if ts.isna().any():
                ts = pd.to_datetime(raw, errors="coerce", format="mixed")
        except (ValueError, TypeError, OverflowError) as e:
            raise IntformerError(f"{table.source}: column '{col}': cannot read the timestamps ({e}); "
                                 "write them in one format and one time zone, e.g. 2020-01-31 13:00:00") from None
    if not pd.api.types.is_datetime64_any_dtype(ts):
        raise IntformerError(f"{table.source}: column '{col}': timestamps mix time zones; "
                             "write them all in one time zone")
    if ts.isna().any():
        row = int(np.flatnonzero(ts.isna().to_numpy())[0])
        raise IntformerError(f"{table.source}: column '{col}', line {table.line(row)}: cannot read "
                             f"'{raw.iloc[row]}' as a timestamp; fix the cell")
    return ts.reset_index(drop=True)


def _find_time_column(table: _Table) -> str | None:
    """A column named date/time/timestamp/datetime, else the first column if it holds datetimes."""
    for c in table.df.columns:
        if c.lower() in TIME_NAMES:
            return c
    first = table.df.columns[0]
    sample = table.df[first].iloc[:20]
    sample = sample[sample != ""]
    if len(sample) == 0 or _is_numeric_column(sample):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            pd.to_datetime(sample, format="mixed")
        except (ValueError, TypeError, OverflowError):
            return None
    return first


def _require_time_column(table: _Table, fmt: str) -> str:
    col = _find_time_column(table)
    if col is None:
        raise IntformerError(f"{table.source}: the {fmt} format needs a time column (named date, time, "
                             "timestamp or datetime, or a first column of dates); add one")
    return col


def _spacing(ts: pd.Series) -> pd.Timedelta | None:
    d = ts.diff().dropna()
    return d.median() if len(d) else None


def _rows_per_day(step: pd.Timedelta | None) -> int | None:
    """Seasonal period for sub-daily data whose step divides a day, else None."""
    if step is None or step <= pd.Timedelta(0) or step >= pd.Timedelta(days=1):
        return None
    n = pd.Timedelta(days=1) / step
    return int(round(n)) if abs(n - round(n)) < 1e-9 else None


# --------------------------------------------------------------------------------------------- columns

def _check_known(table: _Table, names: list[str], role: str, time_col: str | None) -> None:
    cols = list(table.df.columns)
    for n in names:
        if n == time_col:
            raise IntformerError(f"{table.source}: '{n}' is the time column and cannot be a {role}; "
                                 f"choose from: {', '.join(c for c in cols if c != time_col)}")
        if n not in cols:
            raise IntformerError(f"{table.source}: no column named '{n}' (the {role}); available columns: "
                                 f"{', '.join(c for c in cols if c != time_col)}")


def _choose_columns(table: _Table, time_col: str | None, target: str | None, default_target: str | None,
                    features: list[str] | None, multivariate: bool) -> tuple[list[str], str]:
    """(inputs, target): explicit features win; else every numeric column if multivariate; else [target]."""
    data_cols = [c for c in table.df.columns if c != time_col]
    numeric = [c for c in data_cols if _is_numeric_column(table.df[c])]
    if target is None:
        target = default_target if default_target is not None else (numeric[-1] if numeric else None)
        if target is None:
            raise IntformerError(f"{table.source}: no numeric column to forecast; columns: {', '.join(data_cols)}")
    _check_known(table, [target], "target", time_col)
    if features is not None:
        features = [str(f) for f in features]
        if not features:
            raise IntformerError(f"{table.source}: the feature list is empty; name at least one column")
        dup = sorted({f for f in features if features.count(f) > 1})
        if dup:
            raise IntformerError(f"{table.source}: feature(s) listed twice: {', '.join(dup)}; list each once")
        _check_known(table, features, "feature", time_col)
        return features, target
    if multivariate:
        return (numeric if target in numeric else numeric + [target]), target
    return [target], target


# --------------------------------------------------------------------------------------------- splits

def _split_70_10_20(n: int) -> dict[str, tuple[int, int]]:
    a, b = n * 7 // 10, n * 8 // 10
    return {"train": (0, a), "val": (a, b), "test": (b, n)}


def _ett_splits(table: _Table, name: str) -> tuple[dict[str, tuple[int, int]], int]:
    scale = 4 if name[3:4].lower() == "m" else 1          # ETTm*: 15-minute rows
    a, b, c = (k * scale for k in ETT_HOURLY_SPLIT)
    n = len(table.df)
    if n < c:
        raise IntformerError(f"{table.source}: the standard ETT split needs {c} rows (train {a}, val {b - a}, "
                             f"test {c - b}), the file has {n}; use --format csv for a 70/10/20 split")
    return {"train": (0, a), "val": (a, b), "test": (b, c)}, 24 * scale


def _pems_splits(table: _Table, ts: pd.Series, time_col: str) -> tuple[dict[str, tuple[int, int]], int]:
    """Whole weeks: the last is test, the one before val, the rest train; rows per week from the spacing."""
    step = _spacing(ts)
    if step is None:
        raise IntformerError(f"{table.source}: the pems format needs weeks of rows, the file has one row")
    d = ts.diff().to_numpy()[1:]
    off = np.flatnonzero(d != step.to_timedelta64())
    if off.size:
        row = int(off[0]) + 1
        raise IntformerError(f"{table.source}: column '{time_col}', line {table.line(row)}: timestamps must be "
                             f"evenly spaced ({step} apart) and in order, but this row is "
                             f"{pd.Timedelta(d[off[0]])} after the previous one; add the missing rows "
                             "(empty cells can be filled with --fill interpolate) or sort the file")
    per_day = _rows_per_day(step)
    if per_day is None:
        raise IntformerError(f"{table.source}: the pems format needs sub-daily rows whose spacing divides a "
                             f"day; the spacing is {step}")
    week = 7 * per_day
    weeks = len(ts) // week
    if weeks < 3:
        raise IntformerError(f"{table.source}: the pems split needs at least 3 whole weeks ({3 * week} rows at "
                             f"{step} spacing), the file has {len(ts)} rows; use a longer file or --format csv")
    a, b = (weeks - 2) * week, (weeks - 1) * week
    return {"train": (0, a), "val": (a, b), "test": (b, weeks * week)}, per_day


def _airu_splits(table: _Table, ts: pd.Series, time_col: str,
                 split_time: str | None) -> dict[str, tuple[int, int]]:
    """Before `split_time`: train then val (its last 20 %); at or after it: test."""
    back = np.flatnonzero((ts.diff() < pd.Timedelta(0)).to_numpy())
    if back.size:
        row = int(back[0])
        raise IntformerError(f"{table.source}: column '{time_col}', line {table.line(row)}: timestamp "
                             f"{ts.iloc[row]} is earlier than the previous row's; sort the file by time")
    n = len(ts)
    if split_time is None:
        cut = ts.iloc[n * 8 // 10]
    else:
        try:
            cut = pd.Timestamp(split_time)
        except (ValueError, TypeError):
            raise IntformerError(f"split time '{split_time}' is not a timestamp; write e.g. "
                                 "2020-01-31 or 2020-01-31T13:00") from None
        tz = ts.dt.tz
        if tz is not None:
            cut = cut.tz_localize(tz) if cut.tz is None else cut.tz_convert(tz)
        elif cut.tz is not None:
            raise IntformerError(f"split time '{split_time}' has a time zone but the timestamps in "
                                 f"{table.source} have none; drop the zone from the split time")
    before = int((ts < cut).sum())
    val = before // 5
    return {"train": (0, before - val), "val": (before - val, before), "test": (before, n)}


# --------------------------------------------------------------------------------------------- loading

def load_series(path: str | None = None, fmt: str | None = None, target: str | None = None,
                features: list[str] | None = None, fill: str | None = None,
                sensor: str | None = None, split_time: str | None = None,
                multivariate: bool = False, unequal: str | None = None, label: str | None = None,
                stride: int | None = None, label_by: str | None = None, group: str | None = None,
                length: int | None = None, protocol: str | None = None, quantile: float | None = None) -> Series:
    """Load a table as a Series; `splits` say which rows' targets belong to train/val/test.

    Splits (details in the module docstring): csv and the embedded default 70/10/20 by rows in time order;
    ett the standard 12/4/4-month rows; pems whole weeks; airu at `split_time`. path=None: the embedded
    pvlib TMY3 file (target DryBulb). fmt=None guesses: ETT* -> ett, *pems* -> pems, else csv.
    features=None: univariate (inputs = [target]) unless `multivariate`, then every numeric non-time column.
    fill=None: a missing or non-numeric cell raises; fill="interpolate": linear interpolation inside the
    series, the nearest value at the edges.
    """
    if fill not in (None, "interpolate"):
        raise IntformerError(f"unknown fill '{fill}'; use 'interpolate' or leave it unset")
    given = [name for name, v in (("--format ts", fmt == "ts" or None), ("--unequal", unequal), ("--length", length), ("--label", label),
                                  ("--stride", stride), ("--label-by", label_by), ("--group", group)) if v is not None]
    if given:                    # labelled series or a labelled CSV (model.tsdata): a classifier's data
        raise IntformerError(f"{given[0]} is for classification data (labelled series); add --task classify")
    given = [name for name, v in (("--format skab", fmt == "skab" or None), ("--format ucr", fmt == "ucr" or None),
                                  ("--protocol", protocol), ("--quantile", quantile)) if v is not None]
    if given:                    # model.anomaly_data: a detector's data
        raise IntformerError(f"{given[0]} is for anomaly detection data; add --task detect")
    if path is None:
        if fmt not in (None, "csv"):
            raise IntformerError(f"--format {fmt} needs a data file path; without one the embedded "
                                 "TMY3 weather file is used")
        fmt, name, table = "tmy3", "tmy3-greensboro", _read_embedded()
    else:
        if Path(path).is_dir():
            raise IntformerError(f"{path}: is a folder; a forecaster reads one CSV file (a SKAB folder is anomaly "
                                 "data: add --task detect)")
        name = Path(path).stem
        fmt = fmt or ("ett" if Path(path).name.startswith("ETT")
                      else "pems" if "pems" in Path(path).name.lower() else "csv")
        if fmt not in FORMATS:
            raise IntformerError(f"unknown format '{fmt}'; use one of: {', '.join(FORMATS)}")
        table = _read_table(path, str(path))
    if sensor is not None and fmt != "pems":
        raise IntformerError(f"--sensor applies to the pems format only, not {fmt}; drop it or use --format pems")
    if split_time is not None and fmt != "airu":
        raise IntformerError(f"--split-time applies to the airu format only, not {fmt}; "
                             "drop it or use --format airu")

    if fmt == "tmy3":
        inputs, target = _choose_columns(table, None, target, "DryBulb", features, multivariate)
        splits, period = _split_70_10_20(len(table.df)), 24
    elif fmt == "ett":
        time_col = _find_time_column(table)
        inputs, target = _choose_columns(table, time_col, target, "OT", features, multivariate)
        splits, period = _ett_splits(table, name)
    elif fmt == "pems":
        time_col = _require_time_column(table, "pems")
        if features is not None or multivariate:
            raise IntformerError(f"{table.source}: the pems format is univariate (one sensor); "
                                 "choose it with --sensor instead of --features/--multivariate")
        if sensor is not None and target is not None and str(sensor) != str(target):
            raise IntformerError(f"sensor '{sensor}' and target '{target}' differ; give only --sensor")
        sensors = [c for c in table.df.columns if c != time_col]
        if not sensors:
            raise IntformerError(f"{table.source}: no sensor columns besides the time column '{time_col}'")
        chosen = str(sensor if sensor is not None else target if target is not None else sensors[0])
        _check_known(table, [chosen], "sensor", time_col)
        inputs, target = [chosen], chosen
        splits, period = _pems_splits(table, _parse_times(table, time_col), time_col)
    elif fmt == "airu":
        time_col = _require_time_column(table, "airu")
        data_cols = [c for c in table.df.columns if c != time_col]
        if not data_cols:
            raise IntformerError(f"{table.source}: no data columns besides the time column '{time_col}'")
        inputs, target = _choose_columns(table, time_col, target, data_cols[-1], features, multivariate)
        ts = _parse_times(table, time_col)
        splits, period = _airu_splits(table, ts, time_col, split_time), _rows_per_day(_spacing(ts))
    else:  # csv
        time_col = _find_time_column(table)
        inputs, target = _choose_columns(table, time_col, target, None, features, multivariate)
        splits, period = _split_70_10_20(len(table.df)), None
        if time_col is not None:
            try:   # here the time column only gives the period: an unreadable one is not an error
                period = _rows_per_day(_spacing(_parse_times(table, time_col)))
            except IntformerError:
                pass

    converted = {c: _column_values(table, c, fill) for c in dict.fromkeys(inputs + [target])}
    series = Series(name=name, source=table.source,
                    values=np.stack([converted[c] for c in inputs], axis=1),
                    columns=list(inputs), target=target, target_values=converted[target],
                    splits=splits, period=period)
    for split, (a, b) in splits.items():
        if b <= a:
            raise IntformerError(f"{table.source}: the {split} split is empty (rows [{a}, {b}) of "
                                 f"{len(table.df)}); use more data"
                                 + (" or another --split-time" if fmt == "airu" else ""))
    _check_not_constant(series)
    return series


def _check_not_constant(series: Series) -> None:
    """A column constant over the train rows has zero std: the scaler would divide by zero."""
    end = series.splits["train"][1]
    named = list(zip(series.columns, series.values[:end].T)) + [(series.target, series.target_values[:end])]
    for col, x in named:
        if x.size and np.ptp(x) == 0:
            what = "choose another --target" if col == series.target else "drop it from --features"
            raise IntformerError(f"{series.source}: column '{col}' is constant ({x[0]:g}) over the train split "
                                 f"(rows 0..{end - 1}), so it cannot be scaled; {what}")


# --------------------------------------------------------------------------------------------- scaling

@dataclass
class Scaler:
    """Standard scaler fitted on the train split only (no information from val/test leaks into training)."""
    mean: np.ndarray
    std: np.ndarray
    target_mean: float
    target_std: float

    @classmethod
    def fit(cls, series: Series) -> "Scaler":
        """Mean and (population) std over rows [0, splits['train'][1])."""
        end = series.splits["train"][1]
        if end < 1:
            raise IntformerError(f"{series.source}: the train split is empty; the scaler needs train rows")
        _check_not_constant(series)
        x, y = series.values[:end], series.target_values[:end]
        return cls(x.mean(axis=0), x.std(axis=0), float(y.mean()), float(y.std()))

    def transform_inputs(self, values) -> np.ndarray:
        values = np.asarray(values, dtype=np.float64)
        if values.shape[-1] != self.mean.shape[0]:
            raise IntformerError(f"the scaler was fitted on {self.mean.shape[0]} input columns but the data has "
                                 f"{values.shape[-1]}; use the same --features as in training")
        return (values - self.mean) / self.std

    def transform_target(self, y) -> np.ndarray:
        return (np.asarray(y, dtype=np.float64) - self.target_mean) / self.target_std

    def inverse_target(self, y_scaled) -> np.ndarray:
        return np.asarray(y_scaled, dtype=np.float64) * self.target_std + self.target_mean

    def to_dict(self) -> dict:
        return {"mean": [float(v) for v in self.mean], "std": [float(v) for v in self.std],
                "target_mean": float(self.target_mean), "target_std": float(self.target_std)}

    @classmethod
    def from_dict(cls, d: dict) -> "Scaler":
        try:
            mean = np.asarray(d["mean"], dtype=np.float64)
            std = np.asarray(d["std"], dtype=np.float64)
            scaler = cls(mean, std, float(d["target_mean"]), float(d["target_std"]))
        except (KeyError, TypeError, ValueError) as e:
            raise IntformerError(f"corrupt scaler record ({e!r}); re-export the model") from None
        if mean.ndim != 1 or mean.shape != std.shape or not (np.all(std > 0) and scaler.target_std > 0):
            raise IntformerError("corrupt scaler record (shapes differ or a std is not positive); "
                                 "re-export the model")
        return scaler


# --------------------------------------------------------------------------------------------- windows

@dataclass
class Windows:
    x: np.ndarray            # float32 (N, window, n_inputs), scaled
    y: np.ndarray            # float32 (N, horizon), scaled target
    target_rows: np.ndarray  # int64 (N,), row of each window's first target
    last_target: np.ndarray  # float32 (N,), scaled target at the last input row (persistence baseline)


def _window_targets(series: Series, window: int, horizon: int, split: str) -> np.ndarray:
    """First-target rows t of the split's windows: inputs [t-window, t) may cross into an earlier split,
    targets [t, t+horizon) stay inside it."""
    for what, v in (("window", window), ("horizon", horizon)):
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise IntformerError(f"{what} must be a whole number >= 1, got {v!r}")
    if split not in series.splits:
        raise IntformerError(f"unknown split '{split}'; use one of: {', '.join(series.splits)}")
    a, b = series.splits[split]
    t = np.arange(max(a, window), b - horizon + 1, dtype=np.int64)
    if t.size == 0:
        raise IntformerError(f"{series.source}: no {split} windows: the {split} split has {b - a} rows "
                             f"(rows {a}..{b - 1}); each window needs window + horizon = {window} + {horizon} = "
                             f"{window + horizon} rows, its {horizon} target rows inside the split and the "
                             f"{window} input rows before them (which may reach back before the split, not "
                             "before row 0); shorten --window/--horizon or use more data")
    return t


def make_windows(series: Series, scaler: Scaler, window: int, horizon: int, split: str) -> Windows:
    """All windows of a split, in time order, scaled with `scaler`."""
    t = _window_targets(series, window, horizon, split)
    x = np.lib.stride_tricks.sliding_window_view(scaler.transform_inputs(series.values), window, axis=0)
    y = scaler.transform_target(series.target_values)
    ys = np.lib.stride_tricks.sliding_window_view(y, horizon)
    return Windows(x=x[t - window].transpose(0, 2, 1).astype(np.float32),
                   y=ys[t].astype(np.float32), target_rows=t, last_target=y[t - 1].astype(np.float32))


def target_history(series: Series, scaler: Scaler, window: int, split: str, horizon: int = 1) -> np.ndarray:
    """float32 (N, window): the scaled target over each window's input rows, row for row with
    make_windows(..., horizon, split), for persistence and seasonal baselines when the target is not an input."""
    t = _window_targets(series, window, horizon, split)
    y = scaler.transform_target(series.target_values)
    return np.lib.stride_tricks.sliding_window_view(y, window)[t - window].astype(np.float32)
