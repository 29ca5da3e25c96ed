"""model.data: formats, splits, scaling, windows, and a clear IntformerError for each kind of bad data."""
import json
import socket
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from intformer.model.data import Scaler, Series, load_series, make_windows, target_history
from intformer.model.errors import IntformerError

ETTH1 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ETTh1.csv"
needs_etth1 = pytest.mark.skipif(not ETTH1.is_file(),
                                 reason=f"ETTh1.csv not found at {ETTH1} (the shared data is absent)")


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def hourly_csv(tmp_path, n=50, name="data.csv", extra=None):
    """time, a, b, y with y the last numeric column; `extra` maps (row, column) -> cell text."""
    t = pd.date_range("2021-01-01", periods=n, freq="h")
    df = pd.DataFrame({"time": t.strftime("%Y-%m-%d %H:%M:%S"), "a": np.sin(np.arange(n)),
                       "b": np.arange(n) % 7, "y": np.cos(np.arange(n) / 3)}).astype(str)
    for (row, col), cell in (extra or {}).items():
        df.loc[row, col] = cell
    return write(tmp_path, name, df.to_csv(index=False))


def identity_scaler(n_inputs):
    return Scaler(np.zeros(n_inputs), np.ones(n_inputs), 0.0, 1.0)


# ------------------------------------------------------------------------------------------ ETTh1

@needs_etth1
def test_etth1_standard_split_and_window_counts():
    s = load_series(str(ETTH1))
    assert (s.name, s.target, s.columns, s.period) == ("ETTh1", "OT", ["OT"], 24)
    assert s.splits == {"train": (0, 8640), "val": (8640, 11520), "test": (11520, 14400)}
    assert s.values.shape == (17420, 1) and s.values.dtype == np.float64
    sc = Scaler.fit(s)
    test = make_windows(s, sc, 24, 1, "test")
    assert test.x.shape == (2880, 24, 1) and test.y.shape == (2880, 1)
    assert test.x.dtype == np.float32 and test.target_rows.dtype == np.int64
    assert test.target_rows[0] == 11520 and test.target_rows[-1] == 14399
    # inputs of the first test window reach back into the val split
    np.testing.assert_allclose(test.x[0, :, 0], sc.transform_inputs(s.values[11496:11520])[:, 0], rtol=1e-6)
    assert len(make_windows(s, sc, 24, 1, "train").y) == 8616
    assert len(make_windows(s, sc, 96, 24, "val").y) == 2880 - 23
    m = load_series(str(ETTH1), multivariate=True)
    assert m.columns == ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]
    assert make_windows(m, Scaler.fit(m), 24, 1, "test").x.shape == (2880, 24, 7)


@needs_etth1
def test_etth1_scaler_uses_train_rows_only():
    s = load_series(str(ETTH1), multivariate=True)
    sc = Scaler.fit(s)
    np.testing.assert_allclose(sc.mean, s.values[:8640].mean(axis=0))
    np.testing.assert_allclose(sc.std, s.values[:8640].std(axis=0))
    assert sc.target_mean == pytest.approx(s.target_values[:8640].mean())
    assert not np.allclose(sc.mean, s.values.mean(axis=0))


# ------------------------------------------------------------------------------------------ scaler

def test_scaler_fits_train_only_and_round_trips(tmp_path):
    s = load_series(hourly_csv(tmp_path, n=100), multivariate=True)
    assert s.splits == {"train": (0, 70), "val": (70, 80), "test": (80, 100)}
    sc = Scaler.fit(s)
    np.testing.assert_allclose(sc.mean, s.values[:70].mean(axis=0))
    assert sc.target_mean == pytest.approx(s.target_values[:70].mean())
    assert sc.target_std == pytest.approx(s.target_values[:70].std())
    back = Scaler.from_dict(json.loads(json.dumps(sc.to_dict())))
    np.testing.assert_array_equal(back.std, sc.std)
    y = s.target_values[:5]
    np.testing.assert_allclose(back.inverse_target(back.transform_target(y)), y)
    with pytest.raises(IntformerError, match="corrupt scaler"):
        Scaler.from_dict({"mean": [0.0]})


# ------------------------------------------------------------------------------------------ embedded

def test_embedded_default_loads_offline(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the embedded data set must not touch the network")
    monkeypatch.setattr(socket.socket, "connect", no_network)
    s = load_series()
    assert (s.name, s.source, s.target, s.columns, s.period) == (
        "tmy3-greensboro", "embedded:pvlib/data/723170TYA.CSV", "DryBulb", ["DryBulb"], 24)
    assert s.values.shape == (8760, 1) and np.isfinite(s.values).all()
    assert s.splits == {"train": (0, 6132), "val": (6132, 7008), "test": (7008, 8760)}
    assert -30 < s.target_values.min() < s.target_values.max() < 45          # deg C
    m = load_series(multivariate=True)
    assert m.columns == ["DryBulb", "DewPoint", "RHum", "Pressure", "Wspd", "GHI"]
    assert m.values.shape == (8760, 6)
    np.testing.assert_array_equal(m.values[:, 0], s.target_values)
    assert make_windows(m, Scaler.fit(m), 24, 1, "test").x.shape == (1752, 24, 6)


# ------------------------------------------------------------------------------------------ generic csv

def test_generic_csv_columns_period_and_features(tmp_path):
    path = hourly_csv(tmp_path, n=100)
    s = load_series(path)
    assert (s.target, s.columns, s.period) == ("y", ["y"], 24)
    f = load_series(path, target="y", features=["a", "b"])
    assert f.columns == ["a", "b"] and f.values.shape == (100, 2)
    h = target_history(f, identity_scaler(2), 10, "val")
    assert h.shape == (10, 10)
    np.testing.assert_allclose(h[0], f.target_values[60:70], rtol=1e-6)


# ------------------------------------------------------------------------------------------ bad data

def test_missing_value_raises_then_interpolates(tmp_path):
    path = hourly_csv(tmp_path, extra={(2, "y"): "", (0, "y"): "NaN"})
    with pytest.raises(IntformerError) as e:
        load_series(path)
    msg = str(e.value)
    assert "data.csv" in msg and "'y'" in msg and "line 2" in msg and "--fill interpolate" in msg
    s = load_series(path, fill="interpolate")
    y = np.cos(np.arange(50) / 3)
    assert s.target_values[2] == pytest.approx((y[1] + y[3]) / 2)
    assert s.target_values[0] == pytest.approx(y[1])       # edge gap: the nearest value


def test_non_numeric_cell(tmp_path):
    path = hourly_csv(tmp_path, extra={(5, "a"): "12,5x"})
    with pytest.raises(IntformerError, match=r"column 'a', line 7: '12,5x' is not a number.*fix the cell"):
        load_series(path, multivariate=True)
    assert load_series(path).columns == ["y"]                 # an unused column may hold anything


def test_unknown_columns_list_the_available_ones(tmp_path):
    path = hourly_csv(tmp_path)
    with pytest.raises(IntformerError, match=r"no column named 'nope'.*available columns: a, b, y"):
        load_series(path, target="nope")
    with pytest.raises(IntformerError, match=r"no column named 'c' \(the feature\)"):
        load_series(path, features=["a", "c"])
    with pytest.raises(IntformerError, match="time column"):
        load_series(path, target="time")


def test_too_few_rows_for_a_window(tmp_path):
    s = load_series(hourly_csv(tmp_path, n=50))                 # val split: rows 35..39
    sc = Scaler.fit(s)
    assert len(make_windows(s, sc, 4, 2, "val").y) == 4         # inputs reach back into train
    with pytest.raises(IntformerError, match=r"val split has 5 rows.*window \+ horizon = 4 \+ 6 = 10"):
        make_windows(s, sc, 4, 6, "val")
    with pytest.raises(IntformerError, match=r"train split has 35 rows.*40"):
        make_windows(s, sc, 36, 4, "train")
    with pytest.raises(IntformerError, match="window must be"):
        make_windows(s, sc, 0, 1, "test")


def test_constant_series(tmp_path):
    path = hourly_csv(tmp_path, extra={(i, "y"): "3" for i in range(40)})
    with pytest.raises(IntformerError, match=r"column 'y' is constant \(3\) over the train split"):
        load_series(path)


def test_empty_test_split(tmp_path):
    path = hourly_csv(tmp_path, n=100)
    with pytest.raises(IntformerError, match=r"test split is empty.*--split-time"):
        load_series(path, fmt="airu", split_time="2030-01-01")
    ett = write(tmp_path, "ETTh9.csv", "date,OT\n2020-01-01 00:00:00,1\n2020-01-01 01:00:00,2\n")
    with pytest.raises(IntformerError, match="standard ETT split needs 14400 rows"):
        load_series(ett)


@pytest.mark.parametrize("text, words", [
    ("", "file is empty"),
    ("a,b\n", "no data rows"),
    ("1,2\n3,4\n", "add a header line"),
    ("a,b\n1,2\n3,4,5\n", "as many"),
])
def test_unreadable_files(tmp_path, text, words):
    with pytest.raises(IntformerError, match=words):
        load_series(write(tmp_path, "bad.csv", text))


def test_bad_arguments(tmp_path):
    with pytest.raises(IntformerError, match="file not found"):
        load_series(str(tmp_path / "absent.csv"))
    path = hourly_csv(tmp_path)
    with pytest.raises(IntformerError, match="unknown format 'xls'"):
        load_series(path, fmt="xls")
    with pytest.raises(IntformerError, match="unknown fill 'drop'"):
        load_series(path, fill="drop")
    with pytest.raises(IntformerError, match="pems format only"):
        load_series(path, sensor="a")


# ------------------------------------------------------------------------------------------ pems, airu

def pems_csv(tmp_path, weeks=4, freq="5min"):
    t = pd.date_range("2022-02-07", periods=weeks * 7 * (pd.Timedelta("1D") // pd.Timedelta(freq)), freq=freq)
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"timestamp": t, "400001": rng.normal(60, 5, len(t)), "400017": rng.normal(50, 5, len(t))})
    return write(tmp_path, "pems-4w.csv", df.to_csv(index=False)), df


def test_pems_weekly_split(tmp_path):
    path, df = pems_csv(tmp_path)
    s = load_series(path)                                        # format guessed from the name
    week = 7 * 288
    assert (s.target, s.columns, s.period) == ("400001", ["400001"], 288)
    assert s.splits == {"train": (0, 2 * week), "val": (2 * week, 3 * week), "test": (3 * week, 4 * week)}
    other = load_series(path, sensor="400017")
    np.testing.assert_allclose(other.target_values, df["400017"])
    with pytest.raises(IntformerError, match="univariate"):
        load_series(path, multivariate=True)


def test_pems_needs_regular_timestamps_and_three_weeks(tmp_path):
    path, df = pems_csv(tmp_path, freq="1h")
    df.drop(index=100).to_csv(path, index=False)
    with pytest.raises(IntformerError, match="line 102: timestamps must be evenly spaced"):
        load_series(path)
    short, _ = pems_csv(tmp_path, weeks=2, freq="1h")
    with pytest.raises(IntformerError, match="at least 3 whole weeks"):
        load_series(short)


def test_airu_split_at_time(tmp_path):
    t = pd.date_range("2019-01-01", periods=100, freq="h", tz="UTC")
    df = pd.DataFrame({"Timestamp": t.strftime("%Y-%m-%dT%H:%M:%SZ"), "temp": np.sin(np.arange(100)),
                       "humidity": np.cos(np.arange(100)), "pm25": np.arange(100) % 11})
    path = write(tmp_path, "airu.csv", df.to_csv(index=False))
    s = load_series(path, fmt="airu")
    assert (s.target, s.columns, s.period) == ("pm25", ["pm25"], 24)
    assert s.splits == {"train": (0, 64), "val": (64, 80), "test": (80, 100)}
    m = load_series(path, fmt="airu", split_time="2019-01-03 02:00", multivariate=True)
    assert m.columns == ["temp", "humidity", "pm25"]
    assert m.splits == {"train": (0, 40), "val": (40, 50), "test": (50, 100)}
    with pytest.raises(IntformerError, match="not a timestamp"):
        load_series(path, fmt="airu", split_time="soon")


# ------------------------------------------------------------------------------------------ property

@settings(max_examples=150, deadline=None)
@given(n=st.integers(4, 80), data=st.data())
def test_windows_stay_inside_their_split(n, data):
    a = data.draw(st.integers(1, n - 3))
    b = data.draw(st.integers(a + 1, n - 1))
    window = data.draw(st.integers(1, 12))
    horizon = data.draw(st.integers(1, 6))
    rows = np.arange(n, dtype=np.float64)
    s = Series("synthetic", "synthetic", np.stack([rows, -rows], axis=1), ["r", "m"], "t", rows + 0.5,
               {"train": (0, a), "val": (a, b), "test": (b, n)}, None)
    for split, (lo, hi) in s.splits.items():
        expected = max(0, hi - horizon - max(lo, window) + 1)
        if expected == 0:
            with pytest.raises(IntformerError, match=f"{split} split has {hi - lo} rows"):
                make_windows(s, identity_scaler(2), window, horizon, split)
            continue
        w = make_windows(s, identity_scaler(2), window, horizon, split)
        h = target_history(s, identity_scaler(2), window, split, horizon)
        assert len(w.target_rows) == expected == len(h)
        for i, t in enumerate(w.target_rows):
            assert lo <= t and t + horizon <= hi and t - window >= 0
            np.testing.assert_array_equal(w.x[i, :, 0], np.arange(t - window, t))
            np.testing.assert_array_equal(w.x[i, :, 1], -np.arange(t - window, t))
            np.testing.assert_array_equal(w.y[i], np.arange(t, t + horizon) + 0.5)
            np.testing.assert_array_equal(h[i], np.arange(t - window, t) + 0.5)
            assert w.last_target[i] == t - 1 + 0.5
