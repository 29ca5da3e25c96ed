"""Options shared by several subcommands: where the data comes from, and the model's shape."""
from __future__ import annotations

import click

from intformer.model.config import (ACTIVATIONS, DETECT_MODES, NORMS, POOLINGS, SOFTMAXES, TOKENS, ModelConfig,
                                    TrainConfig)
from intformer.model.data import FORMATS
from intformer.model.anomaly_data import ANOMALY_FORMATS, SKAB_PROTOCOLS
from intformer.model.tsdata import CLASS_FORMATS, LABEL_BY, UNEQUAL

TASK_CHOICES = ("forecast", "classify", "detect")


def data_options(f):
    opts = [
        click.option("--data", "data_path", type=click.Path(), default=None,
                     help="CSV file (default: the embedded TMY3 hourly weather series shipped in pvlib; --task "
                          "classify: aeon's BasicMotions; --task detect: aeon's UCR anomaly series 135), or with "
                          "--task detect a SKAB folder."),
        click.option("--format", "fmt", type=click.Choice(tuple(dict.fromkeys(FORMATS + CLASS_FORMATS
                                                                             + ANOMALY_FORMATS))), default=None,
                     help="File format, where the file name does not tell (ETT*.csv -> ett, *pems* -> pems; "
                          "ts: a UEA/UCR NAME_TRAIN.ts / NAME_TEST.ts pair, with --task classify; skab: a SKAB "
                          "folder, ucr: a UCR anomaly archive series, csv with --label: labelled anomalies, "
                          "with --task detect)."),
        click.option("--target", default=None, help="Target column (default: OT for ETT, else the last column)."),
        click.option("--features", default=None, help="Comma-separated input columns (default: the target only)."),
        click.option("--multivariate", is_flag=True, help="Use every numeric column as an input."),
        click.option("--fill", type=click.Choice(["interpolate"]), default=None,
                     help="Repair missing or non-numeric cells by linear interpolation (default: refuse them)."),
        click.option("--sensor", default=None, help="PeMS: the sensor column to forecast."),
        click.option("--split-time", default=None, help="AirU: the timestamp where the test split starts."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


CLASSIFY_DATA_KEYS = ("unequal", "length", "label", "stride", "label_by", "group")
DETECT_DATA_KEYS = ("protocol", "quantile")


def classify_data_options(f):
    """The classification and detection data options, on the commands that train (beside data_options):
    --unequal and --length for .ts series, --label/--stride/--label-by/--group for a labelled CSV (a
    detector's --label is its 0/1 anomaly column), --protocol and --quantile for anomaly data."""
    opts = [
        click.option("--unequal", type=click.Choice(UNEQUAL), default=None,
                     help="Classification (.ts): how series of unequal length are made equal: pad (repeat the "
                          "last value to the longest), truncate (to the shortest), resample (linear, to the "
                          "longest). Default: none, unequal lengths are refused, naming them."),
        click.option("--length", type=click.IntRange(min=0), default=None, metavar="N",
                     help="Classification (.ts): series length in steps, by the mean of blocks of steps (or linear "
                          "interpolation where N does not divide the length); 0: every step. Default: the data's "
                          "length up to 32 steps, longer series averaged over blocks to at most 32 (so the default "
                          "model fits the iCE40 UP5K)."),
        click.option("--label", default=None, metavar="COL",
                     help="Classification from a CSV: the column of integer class labels; the rows are cut into "
                          "windows of --window rows."),
        click.option("--stride", type=int, default=None, help="Labelled CSV: rows between window starts "
                                                              "(default: --window, no overlap)."),
        click.option("--label-by", type=click.Choice(LABEL_BY), default=None,
                     help="Labelled CSV: a window's label, its rows' most frequent (majority, the default; ties: "
                          "the smallest) or its last row's."),
        click.option("--group", default=None, metavar="COL",
                     help="Labelled CSV: split by whole groups of this column (e.g. a subject id; 70/10/20 of the "
                          "groups, seeded) so no group is in two splits (default: 70/10/20 of the rows in time "
                          "order)."),
        click.option("--protocol", type=click.Choice(SKAB_PROTOCOLS), default=None,
                     help="Anomaly detection on SKAB: skab (the default: each experiment's first 400 rows train, "
                          "one model on all of them, the rest test) or anomaly-free (train on the anomaly-free "
                          "file alone, test on every experiment's test rows)."),
        click.option("--quantile", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=None,
                     help="Anomaly detection: the threshold is this quantile of the scores on normal validation "
                          "windows (default 0.99, as SKAB's forecasting baselines)."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def classify_spec(kw: dict) -> dict:
    """Take the classification and detection data options out of a command's keywords, for data_spec."""
    return {k: kw.pop(k, None) for k in CLASSIFY_DATA_KEYS + DETECT_DATA_KEYS}


def data_spec(data_path, fmt, target, features, multivariate, fill, sensor, split_time, **more) -> dict:
    """The data spec (`model.data.load_series`' keywords, and `model.tsdata.load_classification`'s): `more`
    holds the classification data options (CLASSIFY_DATA_KEYS) where the command has them."""
    return {"path": data_path, "fmt": fmt, "target": target,
            "features": [c.strip() for c in features.split(",") if c.strip()] if features else None,
            "multivariate": multivariate, "fill": fill, "sensor": sensor, "split_time": split_time, **more}


# Training defaults by task. A classification data set is small (BasicMotions: 32 training series against
# thousands of forecasting windows): small batches, more epochs and more patience, less dropout; measured on
# BasicMotions (README "Classification"). The forecasting defaults are the dataclasses' own.
TASK_DEFAULTS = {
    "forecast": {"epochs": TrainConfig.epochs, "batch_size": TrainConfig.batch_size, "lr": TrainConfig.lr,
                 "patience": TrainConfig.patience, "dropout": ModelConfig.dropout},
    "classify": {"epochs": 80, "batch_size": 8, "lr": 3e-3, "patience": 20, "dropout": 0.1},
    # a detector forecasts one step of every channel from a few thousand normal windows (SKAB valve1: 5,120)
    "detect": {"epochs": 30, "batch_size": 64, "lr": 1e-3, "patience": 6, "dropout": 0.1},
}


def _task_default(name: str) -> str:
    f, c, d = (TASK_DEFAULTS[t][name] for t in ("forecast", "classify", "detect"))
    return f"[default: {f:g}; --task classify: {c:g}; --task detect: {d:g}]"


def model_options(f):
    d = ModelConfig()
    t = TrainConfig()
    opts = [
        click.option("--task", type=click.Choice(TASK_CHOICES), default=d.task, show_default=True,
                     help="forecast: the next --horizon steps; classify: one class per series (a .ts pair, or a "
                          "CSV with --label; the head's C scores, then the argmax class); detect: anomaly detection "
                          "(the next row of every series forecast, the errors against the actual row, their "
                          "score and the flag score > threshold, all on the chip)."),
        click.option("--detect-mode", type=click.Choice(DETECT_MODES), default=d.detect_mode, show_default=True,
                     help="--task detect: reconstruct the window's last row from the whole window (the input is "
                          "the window), or forecast the next row (the input is the window, then that row); the "
                          "error is the estimate minus the actual row."),
        click.option("--score-decay", type=int, default=d.score_decay, show_default=True,
                     help="--task detect: smooth the score over consecutive windows, the integer EWMA "
                          "s = s - floor(s / 2^K) + (this window's sum of |errors|), a time constant of about 2^K "
                          "windows (0: each window alone). The chip keeps s from window to window: it restarts "
                          "on reset and when the host sends INFO."),
        click.option("--window", type=int, default=d.window, show_default=True,
                     help="Input window n (classification: a .ts series is one window; a labelled CSV is cut "
                          "into windows of n rows)."),
        click.option("--horizon", type=int, default=d.horizon, show_default=True, help="Forecast steps H."),
        click.option("--d-model", type=int, default=d.d_model, show_default=True),
        click.option("--heads", type=int, default=d.heads, show_default=True),
        click.option("--layers", type=int, default=d.layers, show_default=True),
        click.option("--ffn", type=int, default=d.ffn, show_default=True, help="Feed-forward width."),
        click.option("--bits", type=int, default=d.bits, show_default=True, help="Bit width, 2..8."),
        click.option("--bits-override", multiple=True, metavar="PREFIX=B",
                     help="Per-tensor bit width, e.g. l0.ffn1=6 (repeatable)."),
        click.option("--norm", type=click.Choice(NORMS), default=d.norm, show_default=True),
        click.option("--activation", type=click.Choice(ACTIVATIONS), default=d.activation, show_default=True),
        click.option("--softmax", type=click.Choice(SOFTMAXES), default=d.softmax, show_default=True,
                     help="lut: exp table indexed by max - z; poly: base-2 shift plus a 2nd-order polynomial."),
        click.option("--pooling", type=click.Choice(POOLINGS), default=d.pooling, show_default=True),
        click.option("--tokens", type=click.Choice(TOKENS), default=d.tokens, show_default=True,
                     help="series: one token per input series (attention across series)."),
        click.option("--io-bits", type=int, default=d.io_bits, show_default=True,
                     help="Bit width of the input codes, 2..12 (the first layer stays at 8 bits in low-bit models; with "
                          "level removal only the level steps and the skip read codes over 8 bits). The serial "
                          "link sends one byte per code up to 8 bits, two bytes (16-bit little-endian) over 8."),
        click.option("--skip/--no-skip", default=d.skip, show_default=True,
                     help="Forecast the change from the last observed target (an integer skip connection)."),
        click.option("--level/--no-level", default=None,
                     help="Level removal: the Transformer sees the window minus each series' last observed value "
                          "(NLinear/RevIN-style; two integer copy steps, no extra hardware). Default: on with the "
                          "skip."),
        click.option("--dropout", type=float, default=None,
                     help="Dropout in training (before each encoder layer and the head); nothing is exported. "
                          + _task_default("dropout")),
        click.option("--epochs", type=int, default=None, help=_task_default("epochs")),
        click.option("--batch-size", type=int, default=None, help=_task_default("batch_size")),
        click.option("--lr", type=float, default=None, help=_task_default("lr")),
        click.option("--patience", type=int, default=None, help=_task_default("patience")),
        click.option("--weight-decay", type=float, default=t.weight_decay, show_default=True, help="AdamW weight decay."),
        click.option("--seed", type=int, default=t.seed, show_default=True),
        click.option("--class-weights", type=click.Choice(["balanced", "none"]), default=t.class_weights,
                     show_default=True, help="Classification: weigh each class's cross-entropy by n / (C * n_c) "
                                             "(balanced) so rare classes count, or not (none)."),
        click.option("--shrink/--no-shrink", default=t.shrink, show_default=True,
                     help="After training, scale the forecast's change from the last value by one factor in [0, 1] "
                          "fitted on validation (least squares; folded into the head, no extra hardware)."),
        click.option("--float/--no-float", "float_baseline", default=True, show_default=True,
                     help="Also train the floating-point baseline (QAT then starts from its weights)."),
        click.option("--max-train-windows", type=int, default=None,
                     help="Train on a random subset of this many windows (quick runs)."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def default_options() -> dict:
    """The model and training options at their defaults, keyed as the `train` command receives them (the
    Python API starts from these, so that it trains what the command trains)."""
    return {p.name: (() if p.multiple else p.default) for p in model_options(lambda **kw: None).__click_params__}


def configs(kw: dict) -> tuple[ModelConfig, TrainConfig]:
    from intformer.model.errors import IntformerError

    overrides = {}
    for item in kw.pop("bits_override"):
        name, _, value = item.partition("=")
        if not value.strip().isdigit():
            raise IntformerError(f"--bits-override {item!r}: expected PREFIX=BITS, e.g. l0.ffn1=6")
        overrides[name.strip()] = int(value)
    task = kw.pop("task", "forecast")
    check_task(task)
    if task == "classify":               # a classifier has no last value to add back, nor a level to remove
        kw["skip"], kw["level"] = False, False
    if task == "detect":                 # every series is forecast: its level removal is the per-series skip
        kw["skip"] = False
    for name, value in TASK_DEFAULTS[task].items():
        if kw.get(name) is None:
            kw[name] = value
    mcfg = ModelConfig(task=task, window=kw.pop("window"), horizon=kw.pop("horizon"), d_model=kw.pop("d_model"),
                       heads=kw.pop("heads"), layers=kw.pop("layers"), ffn=kw.pop("ffn"), bits=kw.pop("bits"),
                       bits_overrides=overrides, norm=kw.pop("norm"), activation=kw.pop("activation"),
                       softmax=kw.pop("softmax"), pooling=kw.pop("pooling"), tokens=kw.pop("tokens"),
                       io_bits=kw.pop("io_bits"), skip=kw.pop("skip"), level=kw.pop("level"), dropout=kw.pop("dropout"),
                       detect_mode=kw.pop("detect_mode", ModelConfig.detect_mode),
                       score_decay=kw.pop("score_decay", ModelConfig.score_decay))
    tcfg = TrainConfig(epochs=kw.pop("epochs"), batch_size=kw.pop("batch_size"), lr=kw.pop("lr"),
                       patience=kw.pop("patience"), weight_decay=kw.pop("weight_decay"), seed=kw.pop("seed"), shrink=kw.pop("shrink"), float_baseline=kw.pop("float_baseline"),
                       max_train_windows=kw.pop("max_train_windows"),
                       class_weights=kw.pop("class_weights", TrainConfig.class_weights))
    if tcfg.epochs < 1 or tcfg.batch_size < 2 or tcfg.patience < 1 or not tcfg.lr > 0:
        raise IntformerError("--epochs and --patience must be >= 1, --batch-size >= 2 and --lr > 0")
    return mcfg, tcfg


def check_task(task: str | None) -> str | None:
    """A task this intformer runs (None: the run's own)."""
    from intformer.model.errors import IntformerError

    if task is not None and task not in TASK_CHOICES:
        raise IntformerError(f"--task must be one of {', '.join(TASK_CHOICES)}, got {task!r}")
    return task


def task_option(f):
    """--task on a command that reads a run: default the run's own task; another one is refused."""
    return click.option("--task", type=click.Choice(TASK_CHOICES), default=None,
                        help="The task the run must be (default: the run's own); a run of another task is refused.")(f)


class ClockMHz(click.ParamType):
    """--clock: a frequency in MHz (at least 1), or "auto"."""
    name = "MHZ|auto"

    def convert(self, value, param, ctx):
        if value is None or value == "auto" or isinstance(value, float):
            return value
        try:
            mhz = float(value)
        except ValueError:
            mhz = 0.0
        if not mhz >= 1.0:
            self.fail(f"{value!r} is neither a clock in MHz (at least 1) nor 'auto'", param, ctx)
        return mhz


def clock_option():
    """--clock on the commands that build: "auto" (the default) builds at the fastest clock that meets
    timing (`boards.build.build_fastest`), a number in MHz at that clock."""
    return click.option("--clock", type=ClockMHz(), default="auto", show_default=True,
                        help="Clock in MHz, or auto: a first build at the board's oscillator measures Fmax, then "
                             "the PLL (iCE40, ECP5 boards with a clock pin) runs the design at the fastest "
                             "frequency it makes up to 90 % of that Fmax that also makes the baud rate, and the "
                             "oscillator's build stays where no PLL clock meets timing. A number puts a PLL in "
                             "front at that frequency (the board's oscillator frequency: no PLL).")


def clock_hz(clock, osc_hz: float) -> float:
    """The clock a --clock value starts from: auto and None start at the oscillator (its baud rate check)."""
    return osc_hz if clock in (None, "auto") else clock * 1e6


def baud_option(default: int | None = 115200, help: str = "Serial link baud rate"):
    """--baud on a command that builds or talks to a board: a standard serial rate up to 3,000,000
    (`boards.uart.check_baud`; anything else is refused with one line). `default` None: the command finds
    the rate itself (`infer`: the build's)."""
    def check(ctx, param, value):
        from intformer.boards.uart import check_baud
        return value if value is None else check_baud(value)

    return click.option("--baud", type=int, default=default, show_default=default is not None, callback=check,
                        help=f"{help}: a standard rate up to 3,000,000 (the iCEBreaker's FT2232H carries 1 to "
                             f"3 Mbaud); the board clock must make it within 2 %.")
