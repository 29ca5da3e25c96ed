"""Anomaly-detection data, protocol, metrics and baselines (model/anomaly_data.py, model/anomaly_metrics.py).

The SKAB tests read the subset in ../shared/data/skab (valve1 and the anomaly-free file) and skip when it is
absent; the UCR tests read the series aeon ships in its wheel.
"""
from __future__ import annotations

import importlib.util
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from intformer.model.anomaly_data import (SKAB_TRAIN_ROWS, load_anomaly, load_labelled_csv, load_skab, load_ucr,
                                          make_anomaly_windows)
from intformer.model.anomaly_metrics import (baseline_metrics, detection_metrics, flag, forecast_scores,
                                             integer_scores, integer_threshold, quantile_threshold)
from intformer.model.errors import IntformerError

SKAB = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "skab"
needs_skab = pytest.mark.skipif(not (SKAB / "valve1").is_dir(),
                                reason=f"the SKAB subset is not at {SKAB} (the shared data is absent)")
WINDOW = 24      # the reference system's SKAB window


def _aeon_kdd135() -> Path:
    spec = importlib.util.find_spec("aeon")
    if spec is None:
        pytest.skip("aeon is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "KDD-TSAD_135"


@pytest.fixture(scope="module")
def valve1():
    return load_skab(SKAB / "valve1") if (SKAB / "valve1").is_dir() else None


def _raw(path: Path) -> pd.DataFrame:
    """A SKAB file read independently of the loader."""
    return pd.read_csv(path, sep=";").drop(columns=["datetime"])


# --------------------------------------------------------------------------------------------- SKAB protocol

@needs_skab
def test_skab_split_sizes_match_the_protocol(valve1):
    files = sorted((SKAB / "valve1").glob("*.csv"), key=lambda p: int(p.stem))
    assert [e.name for e in valve1.experiments] == [f"valve1/{p.stem}" for p in files]
    assert valve1.channels == ["Accelerometer1RMS", "Accelerometer2RMS", "Current", "Pressure", "Temperature",
                               "Thermocouple", "Voltage", "Volume Flow RateRMS"]
    for e, p in zip(valve1.experiments, files):
        df = _raw(p)
        assert e.splits == {"train": (0, 320), "val": (320, 400), "test": (400, len(df))}
        np.testing.assert_array_equal(e.labels, df["anomaly"].to_numpy())
        np.testing.assert_array_equal(e.values, df[valve1.channels].to_numpy())
    assert valve1.count("test") == sum(len(_raw(p)) for p in files) - 16 * SKAB_TRAIN_ROWS == 11760
    assert valve1.count("train") + valve1.count("val") == 16 * SKAB_TRAIN_ROWS
    assert valve1.train_anomalies == 0
    record = json.loads(json.dumps(valve1.summary()))        # what a run folder records: JSON-ready
    assert record["protocol"] == "skab" and record["rows"] == {"train": 5120, "val": 1280, "test": 11760}
    assert record["anomalous_test_rows"] == 6309
    # the whole folder: the anomaly-free file is not an experiment, so the same rows
    whole = load_skab(SKAB)
    assert [e.name for e in whole.experiments] == [e.name for e in valve1.experiments]


@needs_skab
def test_windows_never_cross_an_experiment(valve1):
    scaled = [valve1.scaler.transform_inputs(e.values) for e in valve1.experiments]
    for part, last_input in (("train", 320), ("val", 400), ("test", None)):
        w = make_anomaly_windows(valve1, WINDOW, part)
        for i, e in enumerate(valve1.experiments):      # each window = rows [t - WINDOW, t) of ITS experiment
            t = w.row[w.experiment == i]
            expected = np.stack([scaled[i][t - WINDOW + j] for j in range(WINDOW)], axis=1)
            np.testing.assert_allclose(w.x[w.experiment == i], expected, rtol=1e-6)
            np.testing.assert_allclose(w.y[w.experiment == i], scaled[i][t], rtol=1e-6)
            np.testing.assert_array_equal(w.labels[w.experiment == i], e.labels[t])
        if last_input is not None:       # training and validation windows read training rows only
            assert (w.row <= last_input - 1).all()
        for i, e in enumerate(valve1.experiments):      # every row of the part, once, in time order
            a, b = e.splits[part]
            np.testing.assert_array_equal(w.row[w.experiment == i], np.arange(max(a, WINDOW) if part == "train"
                                                                              else a, b))
    test = make_anomaly_windows(valve1, WINDOW, "test")
    np.testing.assert_array_equal(test.labels, np.concatenate(valve1.labels("test")))
    with pytest.raises(IntformerError, match="use --window 320 or less"):
        make_anomaly_windows(valve1, 321, "val")


@needs_skab
def test_scaler_sees_training_rows_only(valve1, tmp_path):
    files = sorted((SKAB / "valve1").glob("*.csv"))
    train = np.concatenate([_raw(p)[valve1.channels].to_numpy()[:SKAB_TRAIN_ROWS] for p in files])
    np.testing.assert_allclose(valve1.scaler.mean, train.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(valve1.scaler.std, train.std(axis=0), rtol=1e-12)
    # the same files with every test row changed: a scaler that saw test rows would change with them
    for p in files:
        df = pd.read_csv(p, sep=";")
        df.loc[SKAB_TRAIN_ROWS:, valve1.channels] = df.loc[SKAB_TRAIN_ROWS:, valve1.channels] * 1000 + 7
        (tmp_path / "valve1").mkdir(exist_ok=True)
        df.to_csv(tmp_path / "valve1" / p.name, sep=";", index=False)
    tampered = load_skab(tmp_path)
    assert not np.allclose(tampered.experiments[0].values[SKAB_TRAIN_ROWS:],
                           valve1.experiments[0].values[SKAB_TRAIN_ROWS:])
    np.testing.assert_allclose(tampered.scaler.mean, valve1.scaler.mean, rtol=1e-12)
    np.testing.assert_allclose(tampered.scaler.std, valve1.scaler.std, rtol=1e-12)


@needs_skab
def test_anomaly_free_protocol_trains_on_that_file_alone(valve1):
    aset = load_skab(SKAB, protocol="anomaly-free")
    free = pd.read_csv(SKAB / "anomaly-free" / "anomaly-free.csv", sep=";").drop(columns=["datetime"])
    assert aset.experiments[0].name == "anomaly-free/anomaly-free"
    assert aset.count("train") + aset.count("val") == len(free) == 9405
    assert all(e.splits["train"] == e.splits["val"] == (0, 0) for e in aset.experiments[1:])
    np.testing.assert_allclose(aset.scaler.mean, free[aset.channels].to_numpy().mean(axis=0), rtol=1e-12)
    np.testing.assert_array_equal(np.concatenate(aset.labels("test")), np.concatenate(valve1.labels("test")))
    assert set(make_anomaly_windows(aset, WINDOW, "train").experiment) == {0}


@needs_skab
def test_baselines_on_valve1(valve1):
    """Printed figures: SKAB's protocol, one model on all 16 training parts, threshold on the validation rows."""
    results = baseline_metrics(valve1)
    print(f"\n{valve1.describe()}")
    for name, m in results.items():
        print(f"{name:17s} {m.leaderboard()}  TP {m.tp} TN {m.tn} FP {m.fp} FN {m.fn}")
    assert results["null"].leaderboard() == {"f1": 0.0, "far_pct": 0.0, "mar_pct": 100.0}
    for name in ("isolation_forest", "pca_t2q"):
        m = results[name]
        assert m.tp + m.tn + m.fp + m.fn == valve1.count("test")
        assert m.far < 0.05, f"{name}: a 0.99 quantile of normal scores should give few false alarms, {m.far}"
    assert results["pca_t2q"].f1 > 0.5     # measured 0.70: T2+Q separates valve1's closed-valve rows
    assert baseline_metrics(valve1)["isolation_forest"] == results["isolation_forest"]    # seeded


# --------------------------------------------------------------------------------------------- SKAB errors

def _skab_like(folder: Path, rows: int = 450, sep: str = ";", labels: bool = True) -> Path:
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"datetime": pd.date_range("2020-03-09", periods=rows, freq="s").astype(str),
                       "Current": rng.normal(1, 0.1, rows), "Pressure": rng.normal(0, 0.1, rows)})
    if labels:
        df["anomaly"] = (np.arange(rows) >= rows - 20).astype(float)
        df["changepoint"] = 0.0
    folder.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(folder, sep=sep, index=False)
    return folder


def test_skab_folder_errors(tmp_path):
    _skab_like(tmp_path / "only" / "anomaly-free" / "anomaly-free.csv", labels=False)
    with pytest.raises(IntformerError, match="no SKAB experiment files"):
        load_skab(tmp_path / "only")
    _skab_like(tmp_path / "nolabel" / "valve1" / "0.csv", labels=False)
    with pytest.raises(IntformerError, match="0.csv: no 'anomaly' column"):
        load_skab(tmp_path / "nolabel")
    _skab_like(tmp_path / "comma" / "0.csv", sep=",")
    with pytest.raises(IntformerError, match="';'-separated"):
        load_skab(tmp_path / "comma")
    _skab_like(tmp_path / "short" / "0.csv", rows=400)
    with pytest.raises(IntformerError, match="400 rows; SKAB's split needs more than 400"):
        load_skab(tmp_path / "short")
    _skab_like(tmp_path / "ok" / "0.csv")
    assert load_skab(tmp_path / "ok").count("test") == 50
    with pytest.raises(IntformerError, match="needs anomaly-free/anomaly-free.csv"):
        load_skab(tmp_path / "ok", protocol="anomaly-free")
    with pytest.raises(IntformerError, match="not found"):
        load_skab(tmp_path / "missing")


# --------------------------------------------------------------------------------------------- UCR and CSV

def test_ucr_archive_name_convention_matches_aeons_copy(tmp_path):
    folder = _aeon_kdd135()
    ref = pd.read_csv(folder / "135_UCR_Anomaly_InternalBleeding16_TEST.csv")
    embedded = load_ucr()
    e = embedded.experiments[0]
    assert e.splits == {"train": (0, 960), "val": (960, 1200), "test": (1200, 7501)}
    np.testing.assert_array_equal(e.labels, ref["is_anomaly"].to_numpy())
    # the archive's own file: the split and the anomaly are in the name, [4187, 4199) 0-based, end excluded
    txt = tmp_path / "135_UCR_Anomaly_InternalBleeding16_1200_4187_4199.txt"
    txt.write_text("\n".join(f"{v:.5f}" for v in ref["value"]) + "\n")
    archive = load_anomaly(txt)
    assert archive.fmt == "ucr" and archive.experiments[0].splits == e.splits
    np.testing.assert_array_equal(archive.experiments[0].labels, e.labels)
    bad = tmp_path / "135_UCR_Anomaly_InternalBleeding16_1200_4187_9999.txt"
    shutil.copy(txt, bad)
    with pytest.raises(IntformerError, match="do not fit a series of 7501 rows"):
        load_ucr(bad)
    with pytest.raises(IntformerError, match="NNN_UCR_Anomaly_NAME_TRAINEND_BEGIN_END"):
        load_ucr(shutil.copy(txt, tmp_path / "series.txt"))
    lone = tmp_path / "X_TEST.csv"
    shutil.copy(folder / "135_UCR_Anomaly_InternalBleeding16_TEST.csv", lone)
    with pytest.raises(IntformerError, match="its pair X_TRAIN.csv is missing"):
        load_ucr(lone)


@needs_skab
def test_labelled_csv_split_by_time(tmp_path):
    df = pd.read_csv(SKAB / "valve1" / "3.csv", sep=";")
    path = tmp_path / "pump.csv"
    df.rename(columns={"anomaly": "fault"}).to_csv(path, index=False)
    aset = load_labelled_csv(path, "fault", train_end=SKAB_TRAIN_ROWS)
    skab = load_skab(SKAB / "valve1" / "3.csv")
    assert aset.channels == skab.channels          # datetime and changepoint are not features
    assert aset.experiments[0].splits == skab.experiments[0].splits
    np.testing.assert_allclose(aset.scaler.mean, skab.scaler.mean, rtol=1e-12)
    assert load_labelled_csv(path, "fault").experiments[0].splits["test"] == (len(df) * 3 // 10, len(df))
    with pytest.raises(IntformerError, match="no label column 'label'"):
        load_labelled_csv(path, "label")
    for cell, message in (("2", "label '2' is not 0 or 1"), ("", "missing value")):
        broken = df.rename(columns={"anomaly": "fault"}).astype({"fault": str})
        broken.loc[10, "fault"] = cell
        broken.to_csv(path, index=False)
        with pytest.raises(IntformerError, match=f"column 'fault', line 12: {message}"):
            load_labelled_csv(path, "fault")
    calm = df.assign(anomaly=0.0)
    calm.to_csv(path, index=False)
    with pytest.raises(IntformerError, match="hold no anomalous row, so F1 and the missed alarm rate are undefined"):
        load_labelled_csv(path, "anomaly")


# --------------------------------------------------------------------------------------------- metrics

def test_metrics_match_hand_computed_values():
    m = detection_metrics(np.array([0, 0, 1, 1, 1, 0, 0, 1]), np.array([0, 1, 1, 1, 0, 0, 0, 0]))
    assert (m.tp, m.tn, m.fp, m.fn) == (2, 3, 1, 2)
    assert m.f1 == pytest.approx(2 / 3.5) and m.far == 0.25 and m.mar == 0.5
    assert m.leaderboard() == {"f1": 0.57, "far_pct": 25.0, "mar_pct": 50.0}
    # pooled over experiments as the leaderboard does (the mean of per-experiment F1 would be (1 + 0) / 2)
    pooled = detection_metrics([np.array([1, 1, 0, 0]), np.array([1, 0, 0, 0, 0, 0])],
                               [np.array([1, 1, 0, 0]), np.array([0, 1, 1, 0, 0, 0])])
    assert (pooled.tp, pooled.tn, pooled.fp, pooled.fn) == (2, 5, 2, 1)
    assert pooled.f1 == pytest.approx(2 / 3.5) and pooled.far == pytest.approx(2 / 7) and pooled.mar == 1 / 3
    null = detection_metrics(np.array([0, 1, 1, 0]), np.zeros(4, int))
    assert null.leaderboard() == {"f1": 0.0, "far_pct": 0.0, "mar_pct": 100.0}
    # a row without a score (a detector's warm-up) is in no count, as in SKAB's pandas-aligned confusion matrix
    warm = detection_metrics(np.array([1, 0, 0, 1, 1, 0, 0, 1]), np.array([0, 0, 1, 1, 0, 0, 0, 0]),
                             scored=np.array([0, 0, 1, 1, 1, 1, 1, 1]))
    assert (warm.tp, warm.tn, warm.fp, warm.fn) == (1, 2, 1, 2)
    perfect = detection_metrics(np.array([0, 1, 1, 0]), np.array([0, 1, 1, 0]))
    assert perfect.leaderboard() == {"f1": 1.0, "far_pct": 0.0, "mar_pct": 0.0}


def test_metrics_edge_cases_are_refused():
    with pytest.raises(IntformerError, match="no anomalous row, so F1 and the missed alarm rate are undefined"):
        detection_metrics(np.zeros(5, int), np.zeros(5, int))
    with pytest.raises(IntformerError, match="false alarm rate is undefined"):
        detection_metrics(np.ones(3, int), np.ones(3, int))
    with pytest.raises(IntformerError, match="4 labels but 3 flags"):
        detection_metrics(np.array([0, 1, 0, 1]), np.array([0, 1, 0]))
    with pytest.raises(IntformerError, match="flags must be 0 or 1"):
        detection_metrics(np.array([0, 1]), np.array([0, 2]))


def test_quantile_threshold_and_scores():
    scores = np.arange(1, 1001)
    thr = quantile_threshold(scores)
    assert thr == 991.0 and flag(scores, thr).sum() == 9           # an observed score; strictly greater flags
    assert quantile_threshold(scores, factor=5) == 5 * 991.0
    with pytest.raises(IntformerError, match="no normal validation scores"):
        quantile_threshold(np.zeros(0))
    f = np.array([[1.0, -2.0], [0.5, 0.5]])
    np.testing.assert_allclose(forecast_scores(f, np.zeros_like(f)), [3.0, 1.0])
    np.testing.assert_array_equal(integer_scores(np.array([[3, -4], [127, -128]], np.int8),
                                                 np.array([[-1, 4], [-128, 127]], np.int8)), [12, 510])
    with pytest.raises(IntformerError, match="must be integer arrays"):
        integer_scores(f, f)


def test_integer_threshold_rounding():
    assert integer_threshold(10.0, 0.5) == 20 and integer_threshold(10.2, 0.5) == 20
    assert integer_threshold(0.3, 0.1) == 2              # 3 * 0.1 = 0.30000000000000004 > 0.3: S = 3 flags
    assert integer_threshold(3 * 0.1, 0.1) == 3          # 0.30000000000000004 / 0.1 rounds up past 3
    assert integer_threshold(0.0, 0.25) == 0
    for bad, scale in ((-1.0, 0.5), (math.nan, 0.5), (1.0, 0.0), (1.0, -2.0), (math.inf, 1.0)):
        with pytest.raises(IntformerError):
            integer_threshold(bad, scale)


@settings(max_examples=300, deadline=None)
@given(st.floats(0, 1e4, allow_nan=False), st.floats(1e-4, 10, allow_nan=False))
def test_integer_threshold_flags_equal_the_float_rule(threshold, scale):
    t = integer_threshold(threshold, scale)
    s = np.arange(max(0, t - 3), t + 4)
    np.testing.assert_array_equal(s > t, flag(s * scale, threshold).astype(bool))
