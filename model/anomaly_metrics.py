"""Anomaly-detection scoring: point-wise F1 / FAR / MAR as the SKAB leaderboard computes them, the threshold
rule, its integer constant for the chip, and the classical baselines fitted on the same rows.

Metrics (SKAB `core/metrics.py`, `chp_score(metric="binary")`): one confusion matrix summed over all test
rows of all experiments (not a mean of per-experiment scores), then
    F1  = TP / (TP + (FP + FN) / 2)        FAR = FP / (FP + TN)        MAR = FN / (FN + TP)
the leaderboard printing F1 to 2 decimals and FAR, MAR in percent to 2 decimals (`DetectionMetrics.
leaderboard`). A detector that flags nothing scores F1 0, FAR 0 %, MAR 100 % (the leaderboard's "Null
detector" row). A test row that a detector cannot score (SKAB's Vanilla LSTM has no forecast for the first
5 test rows of an experiment) is left out of all four counts, as the leaderboard's pandas alignment leaves
it out (`scored`); the windows of anomaly_data score every test row, so here none is left out. Checked
against the prediction files SKAB publishes (results/*.pkl, 34 experiments): these formulas give the
leaderboard's F1, FAR and MAR exactly for Conv-AE, MSET, T-squared+Q, T-squared, LSTM-AE, Vanilla AE,
Vanilla LSTM and the isolation forest (MSCRED's file gives FAR 49.72 % against the table's 49.94 %, F1 the
same 0.36). Where the leaderboard's code would divide 0 by 0 (no anomalous test
row: F1 with no flags, and MAR; no normal test row: FAR) the figure is undefined and `detection_metrics`
says so instead.

Threshold (`quantile_threshold`): the 0.99 quantile of the detector's scores on the normal validation rows,
taking an observed score (numpy's "higher" method, so an integer score gives an integer threshold); a row is
flagged when its score is strictly greater (SKAB's `residuals > UCL`). Why 0.99: it is the quantile of SKAB's
forecasting and LSTM-AE baselines (Conv-AE uses 0.999); they take it over the TRAINING residuals and widen it
by a hand-set factor (x5 for Vanilla LSTM, x1.5 for LSTM-AE) because a model's error on the rows it was fitted
to is optimistic; here the rows are held out from fitting, so no factor is needed (`factor` remains for a
leaderboard-style run), and about 1 % of normal rows pass it.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from .anomaly_data import AnomalySet
from .errors import IntformerError

THRESHOLD_QUANTILE = 0.99
PCA_EXPLAINED_VARIANCE = 0.85      # SKAB's T-squared+Q baseline keeps the components explaining 85 %
BASELINE_SEED = 0


@dataclass
class DetectionMetrics:
    tp: int
    tn: int
    fp: int
    fn: int
    f1: float        # fractions 0..1, unrounded
    far: float
    mar: float
    threshold: float | None = None    # the threshold that produced the flags, where one did

    def leaderboard(self) -> dict:
        """As SKAB's leaderboard prints them: F1 to 2 decimals, FAR and MAR in percent to 2 decimals."""
        return {"f1": round(self.f1, 2), "far_pct": round(self.far * 100, 2), "mar_pct": round(self.mar * 100, 2)}

    def to_dict(self) -> dict:
        return asdict(self)


def _pool(x) -> np.ndarray:
    """An array, or a list of per-experiment arrays pooled into one (the leaderboard sums over experiments)."""
    if isinstance(x, (list, tuple)):
        x = np.concatenate([np.asarray(v).ravel() for v in x]) if len(x) else np.zeros(0)
    return np.asarray(x).ravel()


def detection_metrics(labels, flags, threshold: float | None = None, scored=None) -> DetectionMetrics:
    """Point-wise metrics of 0/1 `flags` against 0/1 `labels` (arrays, or lists of per-experiment arrays);
    `scored` (same shape, optional): False for rows the detector gave no score, which are left out."""
    y, p = _pool(labels), _pool(flags)
    if y.shape != p.shape:
        raise IntformerError(f"{y.size} labels but {p.size} flags; give one flag per labelled row")
    if scored is not None:
        keep = _pool(scored).astype(bool)
        if keep.shape != y.shape:
            raise IntformerError(f"{y.size} labels but {keep.size} scored marks; give one per labelled row")
        y, p = y[keep], p[keep]
    if y.size == 0:
        raise IntformerError("no rows to score; the test part is empty")
    for name, v in (("labels", y), ("flags", p)):
        if not np.isin(v, (0, 1)).all():
            raise IntformerError(f"{name} must be 0 or 1, found {v[~np.isin(v, (0, 1))][0]!r}")
    y, p = y.astype(bool), p.astype(bool)
    tp, tn = int((y & p).sum()), int((~y & ~p).sum())
    fp, fn = int((~y & p).sum()), int((y & ~p).sum())
    if tp + fn == 0:
        raise IntformerError(f"the {y.size} test rows hold no anomalous row, so F1 and the missed alarm rate are "
                             "undefined; test on data that contains an anomaly")
    if fp + tn == 0:
        raise IntformerError(f"all {y.size} test rows are anomalous, so the false alarm rate is undefined; test "
                             "on data that also holds normal rows")
    return DetectionMetrics(tp, tn, fp, fn, f1=tp / (tp + (fp + fn) / 2), far=fp / (fp + tn), mar=fn / (fn + tp),
                            threshold=threshold)


# --------------------------------------------------------------------------------------------- scores and thresholds

def forecast_scores(forecast, actual) -> np.ndarray:
    """float64 (N,): the sum over channels of |forecast - actual| (SKAB's Vanilla LSTM residual), scaled units."""
    f, a = np.asarray(forecast, np.float64), np.asarray(actual, np.float64)
    if f.shape != a.shape or f.ndim != 2:
        raise IntformerError(f"forecast {f.shape} and actual {a.shape} must both be (rows, channels)")
    return np.abs(f - a).sum(axis=1)


def integer_scores(forecast_codes, actual_codes) -> np.ndarray:
    """int64 (N,): the chip's score, the sum over channels of |forecast code - actual code| (the golden model)."""
    f, a = np.asarray(forecast_codes), np.asarray(actual_codes)
    if f.shape != a.shape or f.ndim != 2 or not (np.issubdtype(f.dtype, np.integer)
                                                 and np.issubdtype(a.dtype, np.integer)):
        raise IntformerError(f"forecast codes {f.shape} {f.dtype} and actual codes {a.shape} {a.dtype} must be "
                             "integer arrays of one shape (rows, channels)")
    return np.abs(f.astype(np.int64) - a.astype(np.int64)).sum(axis=1)


def quantile_threshold(normal_scores, q: float = THRESHOLD_QUANTILE, factor: float = 1.0) -> float:
    """factor x the q quantile of scores on normal validation rows, an observed score ("higher" method)."""
    s = _pool(normal_scores).astype(np.float64)
    if s.size == 0:
        raise IntformerError("no normal validation scores to set the threshold from; hold out validation rows")
    if not np.isfinite(s).all():
        raise IntformerError("a validation score is not finite; the detector diverged")
    if not 0 < q < 1 or not factor > 0:
        raise IntformerError(f"the quantile must be in (0, 1) and the factor positive, got {q!r} and {factor!r}")
    return float(np.quantile(s, q, method="higher")) * float(factor)


def flag(scores, threshold: float) -> np.ndarray:
    """int8 flags: 1 where the score is strictly greater than the threshold (SKAB: residuals > UCL)."""
    return (_pool(scores) > threshold).astype(np.int8)


def integer_threshold(threshold: float, scale: float) -> int:
    """The integer constant T for an integer score S whose value is S * scale: the chip flags S > T.

    Rounding: T = floor(threshold / scale), corrected by one step where the division rounds, so that
    T * scale <= threshold < (T + 1) * scale holds in floating point. Then, for every integer S >= 0,
    S > T exactly when S * scale > threshold: the chip's flags equal the float rule's flags on the same scores.
    """
    if not (isinstance(threshold, (int, float, np.number)) and math.isfinite(threshold) and threshold >= 0):
        raise IntformerError(f"the threshold must be a finite number >= 0 (scores are sums of absolute errors), "
                             f"got {threshold!r}")
    if not (isinstance(scale, (int, float, np.number)) and math.isfinite(scale) and scale > 0):
        raise IntformerError(f"the score scale must be a finite number > 0, got {scale!r}")
    t = math.floor(threshold / scale)
    while t * scale > threshold:
        t -= 1
    while (t + 1) * scale <= threshold:
        t += 1
    return int(t)


# --------------------------------------------------------------------------------------------- baselines

def _scaled(aset: AnomalySet, part: str) -> np.ndarray:
    rows = aset.rows(part)
    return aset.scaler.transform_inputs(np.concatenate(rows)) if rows else np.zeros((0, len(aset.channels)))


def null_detector(aset: AnomalySet) -> DetectionMetrics:
    """Flags nothing: the leaderboard's floor (F1 0, FAR 0 %, MAR 100 %)."""
    labels = aset.labels("test")
    return detection_metrics(labels, [np.zeros_like(v) for v in labels])


def isolation_forest_scores(aset: AnomalySet, seed: int = BASELINE_SEED) -> tuple[np.ndarray, np.ndarray]:
    """(val, test) anomaly scores of scikit-learn's IsolationForest (100 trees, seeded) fitted on the fit rows,
    row by row (SKAB's isolation-forest baseline is point-wise too); higher = more anomalous."""
    from sklearn.ensemble import IsolationForest     # imported here: sklearn costs a second to import

    model = IsolationForest(n_estimators=100, random_state=seed).fit(_scaled(aset, "train"))
    return -model.score_samples(_scaled(aset, "val")), -model.score_samples(_scaled(aset, "test"))


def pca_t2q_statistics(aset: AnomalySet) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Hotelling's T-squared in the principal subspace (85 % of the variance) and the Q statistic (squared
    residual off it), each as (val, test), of a PCA fitted on the fit rows (SKAB's T-squared+Q baseline)."""
    from sklearn.decomposition import PCA

    pca = PCA(n_components=PCA_EXPLAINED_VARIANCE, svd_solver="full").fit(_scaled(aset, "train"))
    out = {"t2": [], "q": []}
    for part in ("val", "test"):
        x = _scaled(aset, part)
        z = pca.transform(x)
        out["t2"].append((z ** 2 / pca.explained_variance_).sum(axis=1))
        out["q"].append(((x - pca.inverse_transform(z)) ** 2).sum(axis=1))
    return {k: (v[0], v[1]) for k, v in out.items()}


def ewma(scores, decay: int, starts=None) -> np.ndarray:
    """The floating-point twin of `intops.score_ewma`: s = s - s / 2^decay + r, restarting at 0 where `starts`
    is set (and at the first score); decay 0 returns the scores. For the float detector and the baselines."""
    r = np.asarray(scores, dtype=np.float64).reshape(-1)
    if decay == 0:
        return r.copy()
    starts = np.zeros(len(r), bool) if starts is None else np.asarray(starts, bool).reshape(-1)
    out, s, keep = np.empty_like(r), 0.0, 1.0 - 2.0 ** -decay
    for t, (value, start) in enumerate(zip(r.tolist(), starts.tolist())):
        s = value if (start or t == 0) else s * keep + value
        out[t] = s
    return out


def _part_starts(aset: AnomalySet, part: str) -> np.ndarray:
    """The first row of each experiment in a part's rows laid end to end (where a smoothed score restarts)."""
    lengths = [len(v) for v in aset.rows(part)]
    starts = np.zeros(sum(lengths), bool)
    starts[np.cumsum([0] + lengths[:-1])[np.array(lengths) > 0]] = True
    return starts


def baseline_metrics(aset: AnomalySet, q: float = THRESHOLD_QUANTILE, seed: int = BASELINE_SEED,
                     decay: int = 0) -> dict:
    """name -> DetectionMetrics on the test rows, for the null detector, the isolation forest and PCA T2+Q.

    Every baseline follows the detector's own protocol: fitted on the fit rows (the training parts less their
    validation tails), its threshold the q quantile of its scores on the validation rows, flags score > it.
    T2+Q flags a row when either statistic passes its own threshold (SKAB's rule). With `decay` > 0 (the
    detector's score smoothing), the same EWMA of each baseline's statistics is added as "..._ewma", so that
    the smoothing is not credited to the model.
    """
    labels = aset.labels("test")
    out = {"null": null_detector(aset)}
    val_starts, test_starts = _part_starts(aset, "val"), _part_starts(aset, "test")
    forest = isolation_forest_scores(aset, seed)
    stats = pca_t2q_statistics(aset)
    for suffix, k in [("", 0)] + ([("_ewma", decay)] if decay else []):
        val, test = (ewma(s, k, st) for s, st in zip(forest, (val_starts, test_starts)))
        thr = quantile_threshold(val, q)
        out["isolation_forest" + suffix] = detection_metrics(labels, _split_like(flag(test, thr), labels), thr)
        flags = np.zeros(sum(v.size for v in labels), np.int8)
        for val, test in stats.values():
            val, test = ewma(val, k, val_starts), ewma(test, k, test_starts)
            flags |= flag(test, quantile_threshold(val, q))
        out["pca_t2q" + suffix] = detection_metrics(labels, _split_like(flags, labels))
    return out


def _split_like(flat: np.ndarray, parts: list[np.ndarray]) -> list[np.ndarray]:
    return np.split(flat, np.cumsum([v.size for v in parts])[:-1])
