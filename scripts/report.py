"""The report of an `intformer run`: a folder with report.md, report.html (the same text, rendered by the
`markdown` package) and PNG figures drawn with matplotlib.

    forecast.png   forecast against truth on the test split (float, fake-quant and integer paths)
    errors.png     test MSE of the float, fake-quant and integer models beside the naive baselines
    training.png   validation MSE per epoch of the float and QAT models
    resources.png  resources used against the device's, from the build (or the pre-synthesis estimate)

The Markdown file is the source; the HTML page is rendered from it, so the two cannot differ (the page
only wraps each figure in a <figure> whose visible caption is the image's alt text).
tests/test_report_browser.py loads the page in headless Chromium and checks that every figure loads and that
nothing sticks out of a narrow screen.
"""
from __future__ import annotations

import html
import json
import re
import time
from pathlib import Path

HTML_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #222; }}
/* a wide table (the model's 11 columns) scrolls in its own box on a narrow screen, not the whole page */
table {{ border-collapse: collapse; margin: 0.5rem 0 1rem; display: block; max-width: 100%; overflow-x: auto; }}
th, td {{ border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: right; }}
td {{ white-space: nowrap; }}
th:first-child, td:first-child {{ text-align: left; }}
img {{ max-width: 100%; height: auto; }}
figure {{ margin: 1rem 0 1.5rem; }}
figcaption {{ font-size: 0.9rem; color: #555; margin-top: 0.25rem; }}
/* a run folder's path has no break opportunity at its slashes: it would push a phone's page sideways */
code {{ background: #f4f4f4; padding: 0 0.2rem; overflow-wrap: anywhere; }}
</style></head><body>
{body}
</body></html>
"""


# a figure as python-markdown renders `![caption](file)` alone in its paragraph
_FIGURE_HTML = re.compile(r'<p><img alt="([^"]*)" src="([^"]*)" /></p>')


def html_figures(body: str) -> str:
    """Each lone image of the rendered Markdown as a <figure> with its alt text as the visible caption: the
    alt text alone is read by screen readers but shown by no browser."""
    return _FIGURE_HTML.sub(lambda m: f'<figure><img alt="{m[1]}" src="{m[2]}">'
                                      f'<figcaption>{m[1]}</figcaption></figure>', body)


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_errors(path: Path, test: dict, baselines: dict) -> None:
    """Bars of test MSE (scaled): the models, then the naive baselines in grey."""
    plt = _plt()
    names = list(test) + list(baselines)
    values = [test[k]["mse"] for k in test] + [baselines[k]["mse"] for k in baselines]
    colors = ["tab:blue"] * len(test) + ["0.6"] * len(baselines)
    fig, ax = plt.subplots(figsize=(7, 3.2))
    bars = ax.bar(range(len(names)), values, color=colors)
    ax.bar_label(bars, labels=[f"{v:.4g}" for v in values], fontsize=8)
    ax.set_xticks(range(len(names)), [n.replace("_", " ") for n in names], fontsize=8, rotation=15)
    ax.set_ylabel("test MSE (scaled)")
    ax.margins(y=0.12)                # room for the tallest bar's label under the frame
    ax.set_title("test error: models (blue) and naive baselines (grey)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_training(path: Path, history: dict) -> None:
    """Validation MSE per epoch of each model (epoch 0: before its first epoch)."""
    from matplotlib.ticker import MaxNLocator
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.2))
    # a classifier's history holds its validation cross-entropy (val_loss) where a forecaster's holds val_mse
    key = "val_loss" if any("val_loss" in e for epochs in history.values() for e in epochs) else "val_mse"
    what = "validation cross-entropy" if key == "val_loss" else "validation MSE"
    values = [e[key] for epochs in history.values() for e in epochs]
    for kind, epochs in history.items():
        ax.plot([e["epoch"] for e in epochs], [e[key] for e in epochs], marker=".", label=kind)
    ax.set_xlabel("epoch (0: before training)")
    ax.set_ylabel(what if key == "val_loss" else "validation MSE (scaled)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))     # no epoch 0.2
    # log only over a decade or more: over a narrow range its labels are one value repeated in x 10^-2
    if values and min(values) > 0 and max(values) / min(values) >= 10:
        ax.set_yscale("log")
    elif values:
        # a nearly flat curve drawn flat, with plain labels: matplotlib would stretch a change of 1e-7 over
        # the whole axis and label it as an offset ("1e-7+1.637e-2")
        lo, hi = min(values), max(values)
        pad = max(0.05 * abs(hi), (hi - lo) * 0.1) or 1.0
        ax.set_ylim(lo - pad, hi + pad)
        ax.ticklabel_format(axis="y", useOffset=False)
    ax.set_title(f"{what} per epoch")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_resources(path: Path, resources: dict, device: str, source: str) -> None:
    """Used / available per resource, in percent of the device."""
    plt = _plt()
    names = [k for k, v in resources.items() if v.get("available")]
    pct = [100.0 * resources[k]["used"] / resources[k]["available"] for k in names]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(names) + 1.2))
    colors = ["tab:red" if p > 100 else "tab:green" for p in pct]
    bars = ax.barh(names, pct, color=colors)
    ax.bar_label(bars, labels=[f"{resources[k]['used']:,} / {resources[k]['available']:,}" for k in names],
                 fontsize=8, padding=3)
    ax.axvline(100, color="black", lw=0.8)
    ax.set_xlim(0, max([110.0] + [p * 1.25 for p in pct]))
    ax.set_xlabel(f"% of the {device} ({source})")
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _fmt(x, spec: str = ",.1f") -> str:
    return "n/a" if x is None else format(x, spec)


def render_markdown(r: dict, figures: dict[str, str]) -> str:
    """The report text. `r` is the `intformer run` result (train, eval, sim, build); figures maps a figure
    name to its file name in the report folder."""
    train, ev = r["train"], r["eval"]
    cfg = r["config"]
    if ev.get("task") == "classify":        # its own accuracy sections, then the same hardware sections
        from .report_classify import markdown_head
        return "\n".join(markdown_head(r, figures, summary_lines(r), _table) + hardware_sections(r, figures)) + "\n"
    if ev.get("task") == "detect":
        from .report_detect import markdown_head as detect_head
        return "\n".join(detect_head(r, figures, summary_lines(r), _table) + hardware_sections(r, figures)) + "\n"
    out = [f"# intformer run: {train['data']}", "",
           f"Run folder `{train['run']}`, {time.strftime('%Y-%m-%d %H:%M', time.localtime(r['finished']))}. "
           f"Inputs {', '.join(train['inputs'])}; target {train['target']}.", "",
           "## Summary", ""]
    out += [f"- {line}" for line in summary_lines(r)]
    out += ["", "## Model", "",
            _table(["window", "horizon", "d_model", "heads", "layers", "FFN", "bits", "norm", "activation",
                    "softmax", "MACs / inference"],
                   [[cfg["window"], cfg["horizon"], cfg["d_model"], cfg["heads"], cfg["layers"], cfg["ffn"],
                     cfg["bits"], cfg["norm"], cfg["activation"], cfg["softmax"],
                     f"{train['macs_per_inference']:,}"]]), ""]
    out += ["## Test error", "",
            f"{ev['windows']} test windows. MSE and MAE in the scaled space; original units in brackets.", ""]
    rows = [[name.replace("_", " "), f"{e['mse']:.5f} ({e['mse_original']:.4g})",
             f"{e['mae']:.5f} ({e['mae_original']:.4g})"]
            for name, e in list(ev["test"].items()) + list(ev["baselines"].items())]
    out += [_table(["model", "MSE", "MAE"], rows), ""]
    if "agreement" in ev:
        a = ev["agreement"]
        out += [f"Fake-quant against integer: {a['exact_fraction'] * 100:.2f} % of words equal, largest "
                f"difference {a['max_abs_lsb']:g} LSB.", ""]
    for key, caption in (("errors", "Test MSE of the models beside the naive baselines"),
                         ("forecast", "Forecast against truth on the test split (first forecast step)"),
                         ("training", "Validation MSE per epoch")):
        if key in figures:
            out += [f"![{caption}]({figures[key]})", ""]
    return "\n".join(out + hardware_sections(r, figures)) + "\n"


def hardware_sections(r: dict, figures: dict[str, str]) -> list[str]:
    """The simulation and board sections, the same for every task."""
    sim, build = r["sim"], r.get("build")
    out = ["## Bit-exact hardware simulation", "", sim_verdict(sim), "",
            _table(["engine", "lanes P", "cycles / inference", "x MAC bound", "simulated cycles/s"],
                   [[sim["engine"], sim["lanes"], f"{sim['cycles_per_inference']:,}",
                     f"{sim['mac_bound_ratio']:.3f}", f"{sim['sim_cycles_per_second']:,.0f}"]]), ""]
    if r.get("netlist"):
        out += ["## Synthesized netlist", "", netlist_verdict(r["netlist"]), ""]
    out += ["## Board", ""]
    if build is None:
        out += [r.get("build_skipped", "No build (`--no-build`)."), ""]
    elif "error" in build:
        out += [f"The build for {build['board']} failed: {build['error']}", ""]
    else:
        timing = {True: "met", False: "NOT met", None: "unknown"}[build.get("timing_met")]
        out += [_table(["board", "device", "lanes P", "clock MHz", "Fmax MHz", "timing", "cycles",
                        "latency us", "power mW (estimate)", "energy uJ (estimate)"],
                       [[build["board"], build["device"], build["lanes"], f"{build['clock_mhz']:g}",
                         _fmt(build.get("fmax_mhz")), timing, f"{build['cycles_per_inference']:,}",
                         _fmt(build["latency_us"]), _fmt(build.get("power_mw_estimate"), ".2f"),
                         _fmt(build["energy_uj_estimate"], ".3g")]]), "",
                _table(["resource", "used", "available", "%"],
                       [[k, f"{v['used']:,}", f"{v['available']:,}",
                         f"{100 * v['used'] / v['available']:.0f}" if v["available"] else ""]
                        for k, v in build["resources"].items()]), "",
                f"Bitstream `{build['bitstream']}`. The energy figure is an ESTIMATE from `boards/power.py` "
                f"(its coefficients and their sources are written there), not a measurement.", ""]
        if "resources" in figures:
            out += [f"![Resources used, in % of the device]({figures['resources']})", ""]
    return out


def netlist_verdict(result: dict) -> str:
    """`intformer run --netlist`'s verdict: the synthesized netlist's words against the reference, with the
    windows compared out of the split's."""
    from intformer.boards.netlist import describe
    return describe(result) + f" ({result['windows']:,} of the test split's {result['split_windows']:,} windows)"


def sim_windows(sim: dict) -> str:
    """'N test windows', and where they are fewer than the test split's, 'of the test split's M' and why."""
    total = sim.get("split_windows", sim["windows"])
    if sim["windows"] >= total:
        return f"{sim['windows']} test windows"
    return f"{sim['windows']} test windows of the test split's {total:,} (a subset, {sim['engine']} engine)"


def sim_verdict(sim: dict) -> str:
    # a result from before the split's size was recorded says neither
    whole = "; the whole test split" if sim["windows"] >= sim.get("split_windows", sim["windows"] + 1) else ""
    if sim["mismatches"] == 0:
        return (f"**Bit-exact**: {sim_windows(sim)}, {sim['words']:,} output words compared with "
                f"the integer reference, 0 mismatches{whole}.")
    return (f"**{sim['mismatches']} MISMATCHES** in {sim['words']:,} words over {sim_windows(sim)}{whole}; "
            f"first: {sim.get('first_mismatch')}")


def summary_lines(r: dict) -> list[str]:
    ev, sim, build = r["eval"], r["sim"], r.get("build")
    if ev.get("task") == "classify":
        from .report_classify import summary_head
        lines = summary_head(ev)
    elif ev.get("task") == "detect":
        from .report_detect import summary_head as detect_summary
        lines = detect_summary(ev)
    else:
        integer = ev["test"]["integer"]["mse"]
        persistence = ev["baselines"]["persistence"]["mse"]
        lines = [f"integer model test MSE {integer:.5f} against persistence {persistence:.5f} "
                 f"({'better' if integer < persistence else 'NOT better'} than repeating the last value)"]
    if "float" in ev["test"] and ev.get("task") not in ("classify", "detect"):
        fl = ev["test"]["float"]["mse"]
        lines.append(f"float baseline {fl:.5f}; integer / float = {integer / fl:.3f}")
    lines.append(sim_verdict(sim).replace("**", ""))
    if r.get("netlist"):
        lines.append(netlist_verdict(r["netlist"]))
    if build and "error" not in build:
        lines.append(f"{build['board']} ({build['device']}), P = {build['lanes']}: "
                     f"{build['cycles_per_inference']:,} cycles, {build['latency_us']:,.1f} us at "
                     f"{build['clock_mhz']:g} MHz (Fmax {_fmt(build.get('fmax_mhz'))} MHz), "
                     f"{build['energy_uj_estimate']:.3g} uJ per inference (estimate)")
    elif build:
        lines.append(f"build for {build['board']} FAILED: {build['error']}")
    return lines


def write_report(folder: Path, r: dict, history: dict, forecast_png: str | None) -> dict:
    """Write report.md, report.html and the figures into `folder` (created; files in it are replaced: it
    belongs to the run). Returns the paths."""
    import markdown

    folder.mkdir(parents=True, exist_ok=True)
    figures: dict[str, str] = {}
    if forecast_png:
        figures["forecast"] = Path(forecast_png).name
    if r["eval"].get("task") == "classify":
        from .report_classify import plot_confusion
        plot_confusion(folder / "confusion.png", r["eval"])
        figures["confusion"] = "confusion.png"
    elif r["eval"].get("task") == "detect":
        pass                                  # the timeline (eval's figure) is its picture
    else:
        plot_errors(folder / "errors.png", r["eval"]["test"], r["eval"]["baselines"])
        figures["errors"] = "errors.png"
    if history:
        plot_training(folder / "training.png", history)
        figures["training"] = "training.png"
    build = r.get("build")
    if build and "error" not in build:
        plot_resources(folder / "resources.png", build["resources"], build["device"], "nextpnr / yosys")
        figures["resources"] = "resources.png"
    text = render_markdown(r, figures)
    (folder / "report.md").write_text(text)
    body = html_figures(markdown.markdown(text, extensions=["tables"]))
    title = html.escape(f"intformer run: {r['train']['data']}")
    (folder / "report.html").write_text(HTML_PAGE.format(title=title, body=body))
    (folder / "result.json").write_text(json.dumps(r, indent=2, sort_keys=True))
    return {"folder": str(folder), "markdown": str(folder / "report.md"), "html": str(folder / "report.html"),
            "figures": {k: str(folder / v) for k, v in figures.items()}}
