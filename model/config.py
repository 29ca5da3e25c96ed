"""Model and training configuration: one dataclass each, validated once, stored in every run folder."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from .errors import IntformerError

NORMS = ("batch", "layer")
ACTIVATIONS = ("relu", "gelu")
SOFTMAXES = ("lut", "poly")
POOLINGS = ("mean", "flatten")
TOKENS = ("time", "series")
TASKS = ("forecast", "classify", "detect")
DETECT_MODES = ("reconstruct", "forecast")   # a detector's error: of the window's last row, or of the next row
MAX_CLASSES = 255     # a classifier's class word is an output word beside its scores: one byte holds the index
MAX_IO_BITS = 12      # input codes (the level steps and the skip read them; the first matrix product stays at 8 bits)


@dataclass
class ModelConfig:
    window: int = 24             # n: input steps
    inputs: int = 1              # m: input series
    horizon: int = 1             # H: forecast steps (direct multi-step)
    d_model: int = 16
    heads: int = 1
    layers: int = 1
    ffn: int = 64
    bits: int = 8
    bits_overrides: dict[str, int] = field(default_factory=dict)   # tensor-name prefix -> bits
    norm: str = "batch"
    activation: str = "relu"
    softmax: str = "lut"
    pooling: str = "mean"
    tokens: str = "time"         # "series": one token per input series (attention across series)
    io_bits: int = 10            # input codes and the forecast's skip path, 2..12 (first layers stay at 8 bits;
                                 # over 8 bits, the serial link sends each input code in 2 bytes). 10, not 8:
                                 # on ETTh1 an 8-bit input grid alone costs +3.6 % MSE against exact inputs
                                 # (multivariate, one scale for all series), 10 bits +0.4 % (bench/train_bench.py)
    skip: bool = True            # forecast = last observed target + the model's output (in integers)
    target_index: int | None = None   # which input column is the target (None: the target is no input)
    level: bool | None = None    # the Transformer sees the window minus each series' last value (level removal;
                                 # None: on with the last-value skip, which adds the level back)
    dropout: float = 0.3         # training only (before each encoder layer and before the head); not exported
    task: str = "forecast"       # "classify": the head maps the pooled tokens to `classes` scores, then argmax;
                                 # "detect": the head estimates one row of every input series, and the chip
                                 # scores the estimate's error against the actual row and flags
                                 # score > threshold (`detect_mode`)
    detect_mode: str = "reconstruct"   # detect: "reconstruct" the window's last row from the whole window (an
                                 # autoencoder through the pooled tokens; the input is the window), or
                                 # "forecast" the next row (the input is the window, then the actual row)
    classes: int = 0             # classify: C, the number of classes (the data decides it); 0 for forecasting
    score_decay: int = 4         # detect: the score is the integer EWMA of the windows' row scores,
                                 # s = s - floor(s / 2^k) + r (time constant about 2^k windows; 0: each
                                 # window alone). SKAB valve1, int8: F1 0.66 at 0, 0.79 at 4 (README)

    def validate(self) -> "ModelConfig":
        def need(ok: bool, msg: str):
            if not ok:
                raise IntformerError(msg)
        for name in ("window", "inputs", "horizon", "d_model", "heads", "layers", "ffn"):
            need(isinstance(getattr(self, name), int) and getattr(self, name) >= 1,
                 f"--{name.replace('_', '-')} must be a positive integer, got {getattr(self, name)!r}")
        need(2 <= self.bits <= 8, f"--bits must be between 2 and 8, got {self.bits}")
        need(0.0 <= self.dropout < 1.0, f"--dropout must be in [0, 1), got {self.dropout}")
        need(isinstance(self.io_bits, int) and 2 <= self.io_bits <= MAX_IO_BITS,
             f"--io-bits must be between 2 and {MAX_IO_BITS}, got {self.io_bits}")
        need(not (self.skip and self.target_index is None),
             "the last-value skip needs the target among the inputs: add it to --features or use --no-skip")
        for prefix, b in self.bits_overrides.items():
            need(2 <= int(b) <= 8, f"bit-width override {prefix}={b}: bits must be between 2 and 8")
        need(self.d_model % self.heads == 0,
             f"--heads {self.heads} does not divide --d-model {self.d_model}: choose a head count that divides it "
             f"(e.g. {', '.join(str(h) for h in range(1, self.d_model + 1) if self.d_model % h == 0)})")
        for name, allowed in (("norm", NORMS), ("activation", ACTIVATIONS), ("softmax", SOFTMAXES),
                              ("pooling", POOLINGS), ("tokens", TOKENS)):
            need(getattr(self, name) in allowed,
                 f"--{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        need(self.task in TASKS, f"--task must be one of {', '.join(TASKS)}, got {self.task!r}")
        if self.task == "classify":
            need(isinstance(self.classes, int) and 2 <= self.classes <= MAX_CLASSES,
                 f"classification needs 2 to {MAX_CLASSES} classes (the class word is one byte), the data has "
                 f"{self.classes}; merge classes or drop rare ones")
            need(not self.skip and not self.use_level,
                 "the last-value skip and level removal are forecasting steps: a classifier runs without them")
        if self.task == "detect":
            need(not self.skip, "the last-value skip forecasts one target; a detector estimates every series: "
                 "use --no-skip")
            need(isinstance(self.score_decay, int) and 0 <= self.score_decay <= 12, "--score-decay must be "
                 f"between 0 and 12 (a time constant of 2^k windows), got {self.score_decay!r}")
            need(self.detect_mode in DETECT_MODES, f"--detect-mode must be one of {', '.join(DETECT_MODES)}, "
                 f"got {self.detect_mode!r}")
            need(not (self.detect_mode == "reconstruct" and self.use_level), "level removal makes the window's "
                 "last row zero, so there is nothing to reconstruct: use --no-level or --detect-mode forecast")
            need(self.tokens == "time", "anomaly detection takes time tokens (--tokens time): the actual next row "
                 "follows the window as one more row of the input")
        need(not (self.tokens == "series" and self.inputs < 2),
             "--tokens series needs multivariate data (two or more input series): add --features or --multivariate")
        return self

    @property
    def use_level(self) -> bool:
        """Level removal: by default on with the last-value skip. Off for a detector by default (and refused in
        its reconstruct mode, where it would zero the row to reconstruct): on SKAB valve1 a forecasting
        detector that sees the window's level flags the sustained faults that one seeing only its shape
        forecasts well (int8, 0.99 quantile: F1 0.17 against 0.02; README "Anomaly detection")."""
        return self.skip if self.level is None else bool(self.level)

    @property
    def outputs(self) -> int:
        """The head's outputs: the forecast's H steps, a classifier's C scores, a detector's next row."""
        if self.task == "detect":
            return self.inputs
        return self.classes if self.task == "classify" else self.horizon

    @property
    def input_rows(self) -> int:
        """Rows of the input buffer: the tokens, and for a forecasting detector one more, the actual next row."""
        return self.n_tokens + (self.task == "detect" and self.detect_mode == "forecast")

    @property
    def actual_row(self) -> int:
        """A detector's row of the input that its errors are taken against: the window's last (reconstruct)
        or the one after the window (forecast)."""
        return self.window - 1 if self.detect_mode == "reconstruct" else self.window

    @property
    def n_tokens(self) -> int:
        return self.inputs if self.tokens == "series" else self.window

    @property
    def token_dim(self) -> int:
        return self.window if self.tokens == "series" else self.inputs

    def bits_for(self, name: str) -> int:
        """Bit width of a tensor: the longest matching override prefix, else the model's bits."""
        best = ""
        for prefix in self.bits_overrides:
            if name.startswith(prefix) and len(prefix) > len(best):
                best = prefix
        return int(self.bits_overrides[best]) if best else self.bits

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        d = {"level": False, **d}      # records written before --level existed had no level removal
        if d.get("task") == "detect":
            d = {"detect_mode": "forecast", "score_decay": 0, **d}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass
class TrainConfig:
    epochs: int = 30
    batch_size: int = 256
    lr: float = 1e-3
    patience: int = 6
    weight_decay: float = 0.0
    seed: int = 0
    float_baseline: bool = True
    qat_lr_scale: float | None = None      # QAT fine-tunes the float model at this fraction of --lr
                                           # (None: 0.1 at 7-8 bits, 0.3 at 5-6, 1.0 below: the fewer the
                                           # bits, the further the quantized optimum lies from the float one)
    max_train_windows: int | None = None   # subsample for quick runs (tests)
    class_weights: str = "balanced"        # classify: "balanced" weighs each class's cross-entropy by
                                           # n / (C * n_c) so that a rare class counts as much as a common one;
                                           # "none": plain cross-entropy (ignored by forecasting)
    shrink: bool = True                    # after each fit, scale the head (the forecast's change from the last
                                           # value) by alpha in [0, 1] fitted on validation by least squares

    def to_dict(self) -> dict:
        return asdict(self)
