"""The parts of the `intformer run` report that a classifier has instead of a forecaster's: what a person
looks at for a classifier (accuracy and macro F1 of each path beside the majority class and MiniRocket, the
integer path's confusion matrix, per-class F1). The hardware sections are the forecaster's (`report.py`)."""
from __future__ import annotations

import time
from pathlib import Path


def summary_head(ev: dict) -> list[str]:
    integer = ev["test"]["integer"]
    base = ev["baselines"]
    lines = [f"integer model test accuracy {integer['accuracy']:.4f}, macro F1 {integer['f1_macro']:.4f}; "
             f"majority class {base['majority']['accuracy']:.4f}, MiniRocket {base['minirocket']['accuracy']:.4f}"]
    if "float" in ev["test"]:
        lines.append(f"float baseline accuracy {ev['test']['float']['accuracy']:.4f}; integer - float = "
                     f"{integer['accuracy'] - ev['test']['float']['accuracy']:+.4f}")
    return lines


def markdown_head(r: dict, figures: dict[str, str], summary: list[str], table) -> list[str]:
    """Title, summary, model, accuracy table, confusion matrix and per-class F1, as Markdown lines; `table`
    is report._table (header, rows) -> Markdown."""
    train, ev, cfg = r["train"], r["eval"], r["config"]
    names = ev["classes"]
    out = [f"# intformer run: {train['data']} (classification)", "",
           f"Run folder `{train['run']}`, {time.strftime('%Y-%m-%d %H:%M', time.localtime(r['finished']))}. "
           f"{len(train['inputs'])} channels x {train['length']} steps -> {len(names)} classes "
           f"({', '.join(names)}).", "", "## Summary", ""]
    out += [f"- {line}" for line in summary]
    out += ["", "## Model", "",
            table(["series length", "classes", "tokens", "d_model", "heads", "layers", "FFN", "bits", "norm",
                   "pooling", "MACs / inference"],
                  [[cfg["window"], cfg["classes"], cfg["tokens"], cfg["d_model"], cfg["heads"], cfg["layers"],
                    cfg["ffn"], cfg["bits"], cfg["norm"], cfg["pooling"], f"{train['macs_per_inference']:,}"]]), ""]
    out += ["## Test accuracy", "",
            f"{ev['windows']} test series. The integer path's class is the program's own argmax word; the "
            "baselines are trained on the same training part in the same run.", ""]
    rows = [[name, f"{e['accuracy']:.4f}", f"{e['f1_macro']:.4f}"]
            for name, e in list(ev["test"].items()) + list(ev["baselines"].items())]
    out += [table(["model", "accuracy", "macro F1"], rows), ""]
    if "agreement" in ev:
        a = ev["agreement"]
        out += [f"Fake-quant against integer: {a['exact_fraction'] * 100:.2f} % of scores equal, "
                f"{a['class_fraction'] * 100:.2f} % of classes equal.", ""]
    out += ["### Confusion matrix (integer path)", "", "Rows: the true class; columns: the predicted class.", ""]
    out += [table(["true \\ predicted"] + names, [[n] + row for n, row in zip(names, ev["confusion"])]), ""]
    out += ["### Per-class F1", ""]
    paths = list(ev["test"]) + list(ev["baselines"])
    every = {**ev["test"], **ev["baselines"]}
    out += [table(["class"] + paths, [[n] + [f"{every[p]['f1_per_class'][i]:.3f}" for p in paths]
                                       for i, n in enumerate(names)]), ""]
    for key, caption in (("confusion", "Confusion matrix of the integer path on the test part"),
                         ("training", "Validation cross-entropy per epoch")):
        if key in figures:
            out += [f"![{caption}]({figures[key]})", ""]
    return out


def plot_confusion(path: Path, ev: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    cm, names = np.asarray(ev["confusion"]), ev["classes"]
    fig, ax = plt.subplots(figsize=(1.2 + 0.6 * len(names), 1.0 + 0.6 * len(names)))
    ax.imshow(cm, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center", color="white" if v > cm.max() / 2 else "black", fontsize=8)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"integer path: accuracy {ev['test']['integer']['accuracy']:.3f}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
