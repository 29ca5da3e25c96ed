"""The parts of the `intformer run` report that an anomaly detector has instead of a forecaster's: what a
person looks at for a detector (point-wise F1, FAR and MAR of each path beside the null detector and the
classical baselines, the threshold and where it comes from, the anomaly timeline: signal, integer score,
threshold, true and flagged rows). The hardware sections are the forecaster's (`report.py`)."""
from __future__ import annotations

import time


def summary_head(ev: dict) -> list[str]:
    integer, base = ev["test"]["integer"], ev["baselines"]
    best = max(base, key=lambda k: base[k]["f1"])
    lines = [f"integer detector (flags computed on the chip) test F1 {integer['f1']:.2f}, FAR "
             f"{integer['far'] * 100:.2f} %, MAR {integer['mar'] * 100:.2f} %; best classical baseline {best} F1 "
             f"{base[best]['f1']:.2f}, null detector {base['null']['f1']:.2f}"]
    if "float" in ev["test"]:
        lines.append(f"float baseline F1 {ev['test']['float']['f1']:.2f}; integer - float = "
                     f"{integer['f1'] - ev['test']['float']['f1']:+.2f}")
    return lines


def markdown_head(r: dict, figures: dict[str, str], summary: list[str], table) -> list[str]:
    """Title, summary, model, the detection table and the timeline, as Markdown lines; `table` is
    report._table (header, rows) -> Markdown."""
    train, ev, cfg = r["train"], r["eval"], r["config"]
    out = [f"# intformer run: {train['data']} (anomaly detection)", "",
           f"Run folder `{train['run']}`, {time.strftime('%Y-%m-%d %H:%M', time.localtime(r['finished']))}. "
           f"{len(train['inputs'])} channels ({', '.join(train['inputs'])}), each forecast one step ahead; the "
           "chip scores the estimate against the actual row and flags the row.", "", "## Summary", ""]
    out += [f"- {line}" for line in summary]
    out += ["", "## Model", "",
            table(["window", "channels", "d_model", "heads", "layers", "FFN", "bits", "norm", "level removal",
                   "MACs / inference"],
                  [[cfg["window"], cfg["inputs"], cfg["d_model"], cfg["heads"], cfg["layers"], cfg["ffn"],
                    cfg["bits"], cfg["norm"], "on" if cfg.get("level") else "off",
                    f"{train['macs_per_inference']:,}"]]), ""]
    out += ["## Detection", "",
            f"{ev['windows']:,} test rows; {ev['protocol']}. Point-wise metrics over all test rows (SKAB's "
            f"leaderboard rule). Threshold: integer score > {ev['threshold']:,}, the {ev['quantile']:g} "
            "quantile of the scores on normal validation windows. The integer path's flags are the program's "
            "own flag words, the ones the chip sends; the baselines are fitted on the same rows in the same run."
            + (f" The score is smoothed over consecutive rows (integer EWMA, decay {ev['score_decay']}: a time "
               f"constant of about {1 << ev['score_decay']} rows, one stream per experiment); the \"ewma\" "
               "baselines get the same smoothing." if ev.get("score_decay") else ""),
            ""]
    rows = [[name.replace("_", " "), f"{e['f1']:.2f}", f"{e['far'] * 100:.2f}", f"{e['mar'] * 100:.2f}"]
            for name, e in list(ev["test"].items()) + list(ev["baselines"].items())]
    out += [table(["detector", "F1", "FAR %", "MAR %"], rows), ""]
    if "agreement" in ev:
        a = ev["agreement"]
        out += [f"Fake-quant against integer: {a['exact_fraction'] * 100:.2f} % of errors equal, "
                f"{a['flag_fraction'] * 100:.2f} % of flags equal.", ""]
    for key, caption in (("forecast", "Anomaly timeline: signal, integer score and threshold, true (orange) "
                                      "and flagged (red) rows"),
                         ("training", "Validation MSE per epoch")):
        if key in figures:
            out += [f"![{caption}]({figures[key]})", ""]
    return out
