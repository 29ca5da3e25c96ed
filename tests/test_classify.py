"""Time-series classification, the Python side: the .ts loader (model.tsdata), the classifier's export
(the integer program's scores equal the fake-quant model's, its class word is the reference's argmax), and
`intformer train/eval --task classify` on the embedded BasicMotions, a small but real configuration."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from cli_helpers import invoke, ok, user_error
from intformer.model import intops, modelfile
from intformer.model.config import ModelConfig
from intformer.model.errors import IntformerError
from intformer.model.evaluate import (agreement, classification_metrics, confusion_matrix, integer_classes,
                                     score_classes)
from intformer.model.export import to_program
from intformer.model.intref import quantize_input, run_program
from intformer.model.program import ArgmaxStep
from intformer.model.qat import QATForecaster
from intformer.model.train import predict
from intformer.model.tsdata import embedded_folder, load_classification, stratified_split

pytestmark = pytest.mark.usefixtures("torch_one_thread")

# trains in about half a minute on BasicMotions: one token per channel (6 tokens), d_model 8
SMALL_CLASSIFY = ["--task", "classify", "--tokens", "series", "--d-model", "8", "--ffn", "16", "--epochs", "4",
                  "--patience", "4", "--batch-size", "8", "--lr", "3e-3", "--no-float"]


def write_ts(path, series: list[np.ndarray], labels: list[str]) -> None:
    """A .ts file (UEA/UCR format) of (channels, length) series; lengths may differ."""
    m = series[0].shape[0]
    equal = len({s.shape[1] for s in series}) == 1
    head = [f"@problemName {path.stem}", "@timeStamps false", "@missing false",
            f"@univariate {'true' if m == 1 else 'false'}", f"@dimensions {m}",
            f"@equalLength {'true' if equal else 'false'}"]
    if equal:
        head.append(f"@seriesLength {series[0].shape[1]}")
    head += [f"@classLabel true {' '.join(sorted(set(labels)))}", "@data"]
    rows = [":".join(",".join(f"{v:.4f}" for v in ch) for ch in s) + f":{lab}" for s, lab in zip(series, labels)]
    path.write_text("\n".join(head + rows) + "\n")


write_ts.__test__ = False


# ------------------------------------------------------------------------------------------------ data

def test_basicmotions_parts_classes_and_scaler():
    d = load_classification(None)
    assert d.name == "BasicMotions" and d.source.startswith("embedded:")
    assert d.classes == sorted(d.classes) and len(d.classes) == 4 and len(d.channels) == 6
    # 100 steps, averaged over blocks of 4 to 25 (at most 32 by default); --length 0 keeps every step
    assert d.length == 25 and load_classification(None, length=0).length == 100
    full = load_classification(None, length=0).raw["train"][0]
    np.testing.assert_allclose(d.raw["train"][0][:, 1], full[:, 4:8].mean(axis=1))
    assert load_classification(None, length=30).length == 30           # 30 does not divide 100: interpolated
    assert d.counts("train") == [8] * 4 and d.counts("val") == [2] * 4 and d.counts("test") == [10] * 4
    sc = d.scaler()
    x = d.raw["train"][0].reshape(-1, 6)
    np.testing.assert_allclose(sc.mean, x.mean(axis=0))          # the training part only, not val or test
    assert not np.allclose(sc.mean, np.concatenate([x, d.raw["val"][0].reshape(-1, 6)]).mean(axis=0))
    part = d.part("test", sc)
    assert part.x.shape == (40, 25, 6) and part.x.dtype == np.float32 and part.y.dtype == np.int64
    # the same parts every time (the split is seeded)
    again = load_classification(None)
    assert all(np.array_equal(again.raw[k][1], d.raw[k][1]) for k in d.raw)


def test_stratified_split_takes_each_class_and_keeps_singletons_in_train():
    y = np.array([0] * 8 + [1] * 4 + [2])
    tr, va = stratified_split(y, 0.25, 0)
    assert sorted(np.bincount(y[va], minlength=3).tolist()) == [0, 1, 2]
    assert set(tr) | set(va) == set(range(len(y))) and not set(tr) & set(va) and 12 in tr


def test_unequal_lengths_need_a_policy_and_each_policy_gives_one_length():
    train = embedded_folder() / "JapaneseVowels" / "JapaneseVowels_TRAIN.ts"
    with pytest.raises(IntformerError, match="--unequal pad, truncate or resample"):
        load_classification(str(train))
    lengths = {}
    for policy in ("pad", "truncate", "resample"):
        d = load_classification(str(train), unequal=policy)
        assert {d.raw[k][0].shape[1] for k in d.raw} == {d.length} and len(d.channels) == 12
        assert np.all(np.isfinite(d.raw["test"][0]))
        lengths[policy] = d.length
    assert lengths["pad"] == lengths["resample"] > lengths["truncate"]
    assert load_classification(str(train), unequal="pad").classes == [str(i) for i in range(1, 10)]


def test_numeric_labels_sort_as_numbers(tmp_path):
    rng = np.random.default_rng(0)
    labels = ["10", "2", "1"] * 3
    write_ts(tmp_path / "N_TRAIN.ts", [rng.normal(size=(1, 6)) for _ in labels], labels)
    write_ts(tmp_path / "N_TEST.ts", [rng.normal(size=(1, 6)) for _ in labels], labels)
    assert load_classification(str(tmp_path / "N_TRAIN.ts")).classes == ["1", "2", "10"]


def test_bad_ts_input_is_named(tmp_path):
    rng = np.random.default_rng(0)
    write_ts(tmp_path / "A_TRAIN.ts", [rng.normal(size=(2, 5)) for _ in range(6)], ["a", "b"] * 3)
    with pytest.raises(IntformerError, match="A_TEST.ts beside it"):
        load_classification(str(tmp_path / "A_TRAIN.ts"))
    write_ts(tmp_path / "A_TEST.ts", [rng.normal(size=(2, 5)) for _ in range(3)], ["a", "b", "c"])
    with pytest.raises(IntformerError, match="class 'c' has no training example"):
        load_classification(str(tmp_path / "A_TRAIN.ts"))
    with pytest.raises(IntformerError, match="NAME_TRAIN.ts"):
        load_classification(str(tmp_path / "A_TEST.ts"))
    write_ts(tmp_path / "A_TEST.ts", [rng.normal(size=(2, 7)) for _ in range(3)], ["a", "b", "a"])
    with pytest.raises(IntformerError, match="length 5 in the training file, 7..7 in the test file"):
        load_classification(str(tmp_path / "A_TRAIN.ts"))
    assert load_classification(str(tmp_path / "A_TRAIN.ts"), unequal="truncate").raw["test"][0].shape == (3, 5, 2)


# ---------------------------------------------------------------------------------------------- export

CLASSIFY_CONFIGS = [
    ("batch-relu-lut-mean-time-b8", dict(norm="batch", pooling="mean", tokens="time", bits=8)),
    ("layer-gelu-poly-flatten-series-h2-b4", dict(norm="layer", activation="gelu", softmax="poly",
                                                  pooling="flatten", tokens="series", heads=2, bits=4)),
    ("batch-relu-lut-flatten-series-b2", dict(norm="batch", pooling="flatten", tokens="series", bits=2)),
    ("layer-relu-lut-mean-time-L2-b3", dict(norm="layer", pooling="mean", tokens="time", layers=2, bits=3)),
]


@pytest.mark.parametrize("kw", [c[1] for c in CLASSIFY_CONFIGS], ids=[c[0] for c in CLASSIFY_CONFIGS])
def test_classifier_export_equals_fakequant_and_its_class_is_the_reference_argmax(kw):
    classes = 5
    cfg = ModelConfig(window=10, inputs=3, d_model=8, ffn=16, task="classify", classes=classes, skip=False,
                      level=False, **kw).validate()
    torch.manual_seed(0)
    model = QATForecaster(cfg)
    gen = torch.Generator().manual_seed(1)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(32, cfg.window, cfg.inputs, generator=gen))
    model.eval()
    program = to_program(copy.deepcopy(model).double())
    last = program.steps[-1]
    assert isinstance(last, ArgmaxStep) and (last.cols, last.out_col) == (classes, classes)
    assert program.buffers["out"].cols == classes + 1
    x = np.random.default_rng(2).normal(size=(96, cfg.window, cfg.inputs)).astype(np.float32)
    x[:8] *= 6.0                                        # saturating inputs
    fq = predict(model, x)
    words, cls = integer_classes(program, x)
    assert agreement(fq, words[:, :classes], program) == {"exact_fraction": 1.0, "max_abs_lsb": 0.0}
    # the class word is the reference's argmax of the integer scores (first of equal largest)...
    np.testing.assert_array_equal(cls, intops.argmax_first(words[:, :classes]))
    np.testing.assert_array_equal(words[:, classes], run_program(program, quantize_input(program, x))[:, classes])
    # ...and the fake-quant model's class (its scores are the words times one scale: ties fall alike)
    np.testing.assert_array_equal(score_classes(fq, program), cls)
    assert (score_classes(fq) != cls).sum() <= 4        # a float argmax differs on some ties only
    assert np.unique(cls).size > 1                      # not a degenerate, constant classifier


def test_metrics_on_a_known_case():
    pred, truth = np.array([0, 0, 1, 2, 2, 2]), np.array([0, 1, 1, 2, 2, 0])
    m = classification_metrics(pred, truth, 4)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["f1_per_class"] == pytest.approx([0.5, 2 / 3, 0.8, 0.0])      # class 3: absent, 0 (as sklearn)
    assert m["f1_macro"] == pytest.approx(np.mean([0.5, 2 / 3, 0.8, 0.0]))
    assert confusion_matrix(pred, truth, 4)[0].tolist() == [1, 0, 1, 0]


def test_forecast_records_without_a_task_are_forecasts():
    d = ModelConfig().to_dict()
    d.pop("task"), d.pop("classes")
    cfg = ModelConfig.from_dict(d)
    assert cfg.task == "forecast" and cfg.outputs == cfg.horizon
    with pytest.raises(IntformerError, match="2 to 255 classes"):
        ModelConfig(task="classify", classes=256, skip=False).validate()
    with pytest.raises(IntformerError, match="forecasting steps"):
        ModelConfig(task="classify", classes=3, skip=True, target_index=0).validate()


# ------------------------------------------------------------------------------------------------ CLI

@pytest.fixture(scope="module")
def classifier(tmp_path_factory, torch_one_thread):
    out = tmp_path_factory.mktemp("classify") / "run"
    r = json.loads(ok(invoke("train", *SMALL_CLASSIFY, "--out", out, "--json")).stdout)
    return out, r


def test_train_classify_records_the_task(classifier):
    out, r = classifier
    assert r["task"] == "classify" and r["data"] == "BasicMotions" and len(r["classes"]) == 4
    assert r["series"] == {"train": 32, "val": 8, "test": 40}
    info = json.loads((out / "run.json").read_text())
    assert info["task"] == "classify" and info["classes"] == r["classes"] and info["model"]["classes"] == 4
    program, header = modelfile.load(out / "model.intf")
    assert header["config"]["task"] == "classify" and header["meta"]["classes"] == r["classes"]
    assert isinstance(program.steps[-1], ArgmaxStep) and program.input.rows == 6     # series tokens


def test_eval_classify_json(classifier):
    out, _ = classifier
    r = json.loads(ok(invoke("eval", out, "--json")).stdout)
    assert r["task"] == "classify" and r["windows"] == 40
    assert set(r["test"]) == {"fakequant", "integer"} and set(r["baselines"]) == {"majority", "minirocket"}
    for e in list(r["test"].values()) + list(r["baselines"].values()):
        assert 0.0 <= e["f1_macro"] <= e["accuracy"] + 1.0 and 0.0 <= e["accuracy"] <= 1.0
    assert r["agreement"]["exact_fraction"] == 1.0 and r["agreement"]["class_fraction"] == 1.0
    assert r["test"]["fakequant"] == r["test"]["integer"]
    cm = np.array(r["confusion"])
    assert cm.shape == (4, 4) and cm.sum() == 40 and cm.sum(axis=1).tolist() == [10] * 4
    assert np.trace(cm) / 40 == pytest.approx(r["test"]["integer"]["accuracy"])
    assert r["baselines"]["majority"]["accuracy"] == 0.25
    assert r["baselines"]["minirocket"]["accuracy"] >= 0.9          # BasicMotions is easy for MiniRocket
    text = ok(invoke("eval", out)).stdout
    assert "confusion matrix" in text and "minirocket" in text


def test_commands_refuse_a_run_of_another_task(classifier):
    out, _ = classifier
    user_error(invoke("eval", out, "--task", "forecast"), "this is a classify run, not forecast", "--task classify")
    user_error(invoke("eval", out, "--task", "detect"), "this is a classify run, not detect", "--task classify")
    for command in ("sim", "infer", "build"):          # each refuses before any work (no port, no toolchain)
        extra = {"infer": ["--port", "/dev/null"], "build": ["--board", "icebreaker"]}.get(command, [])
        user_error(invoke(command, out, "--task", "forecast", *extra), "this is a classify run, not forecast")


# ---------------------------------------------------------------------------------------- labelled CSV

def labelled_csv(path, subjects: int = 6, rows: int = 120, bad: str | None = None):
    """Per subject, `rows` rows of 2 channels whose label (0, 1, 2) sets the frequency of a sine, in blocks of
    40 rows; bad: a cell to spoil in the label column ("abc" or "")."""
    import pandas as pd
    rng = np.random.default_rng(0)
    frames = []
    for s in range(subjects):
        lab = np.repeat(rng.permutation(3), rows // 3)
        t = np.arange(rows)
        x = np.sin(t * (0.2 + 0.4 * lab)) + 0.1 * rng.normal(size=rows)
        frames.append(pd.DataFrame({"subject": f"s{s}", "ax": x, "ay": np.cos(t * (0.2 + 0.4 * lab)),
                                    "activity": lab.astype(str)}))
    df = pd.concat(frames, ignore_index=True)
    if bad is not None:
        df.loc[57, "activity"] = bad
    df.to_csv(path, index=False)
    return path


labelled_csv.__test__ = False


def test_labelled_csv_windows_labels_and_group_split(tmp_path):
    from intformer.model.tsdata import load_labelled_csv
    path = labelled_csv(tmp_path / "acc.csv")
    d = load_labelled_csv(str(path), "activity", 20, 10, None, "subject", None, None)
    assert d.channels == ["ax", "ay"] and d.classes == ["0", "1", "2"] and d.length == 20
    # whole subjects per part: 6 subjects -> 4 / 1 / 1; 120 rows -> 11 windows of 20 every 10 rows each
    assert [len(d.raw[k][1]) for k in ("train", "val", "test")] == [44, 11, 11]
    import pandas as pd
    df = pd.read_csv(path)
    seen = {}
    for part, (x, _) in d.raw.items():          # each window's first row names its subject
        for w in x:
            hit = df.index[(df["ax"] == w[0, 0]) & (df["ay"] == w[0, 1])][0]
            seen.setdefault(df.loc[hit, "subject"], set()).add(part)
    assert len(seen) == 6 and all(len(parts) == 1 for parts in seen.values())
    last = load_labelled_csv(str(path), "activity", 20, 10, "last", None, None, None)
    major = load_labelled_csv(str(path), "activity", 20, 10, "majority", None, None, None)
    assert len(last.raw["train"][1]) == len(major.raw["train"][1])
    assert not np.array_equal(last.raw["train"][1], major.raw["train"][1])   # windows across a label change
    for bad, words in (("abc", "label 'abc' is not an integer"), ("", "missing label")):
        with pytest.raises(IntformerError, match=words):
            load_labelled_csv(str(labelled_csv(tmp_path / "bad.csv", bad=bad)), "activity", 20, 10, None, None,
                              None, None)


def test_train_classify_on_a_labelled_csv(tmp_path):
    path = labelled_csv(tmp_path / "acc.csv")
    out = tmp_path / "run"
    r = json.loads(ok(invoke("train", "--task", "classify", "--data", path, "--label", "activity", "--group",
                             "subject", "--window", "20", "--stride", "10", "--d-model", "8", "--ffn", "16",
                             "--epochs", "2", "--no-float", "--out", out, "--json")).stdout)
    assert r["inputs"] == ["ax", "ay"] and r["length"] == 20 and r["series"] == {"train": 44, "val": 11, "test": 11}
    e = json.loads(ok(invoke("eval", out, "--json")).stdout)
    assert e["agreement"]["class_fraction"] == 1.0 and np.array(e["confusion"]).sum() == 11
    user_error(invoke("train", "--data", path, "--label", "activity", "--out", tmp_path / "f"),
               "--label is for classification data", "add --task classify")


def test_run_classify_end_to_end_report(tmp_path, monkeypatch):
    """`intformer run --task classify` on BasicMotions: train, eval, the accelerator simulated against the
    integer reference on test series (scores and class word), and the report's confusion matrix and per-class
    F1 (Amaranth's simulator on 2 series, no build: the bitstream flow is the forecaster's, tested elsewhere)."""
    from intformer.accel import cxxsim
    monkeypatch.setattr(cxxsim, "available", lambda: False)
    out = tmp_path / "run"
    r = json.loads(ok(invoke("run", *SMALL_CLASSIFY, "--no-build", "--sim-windows", "2", "--lanes", "4",
                             "--out", out, "--json")).stdout)
    assert r["sim"]["mismatches"] == 0 and r["sim"]["words"] == 2 * 5 and r["sim"]["task"] == "classify"
    text = (out / "report" / "report.md").read_text()
    assert "Confusion matrix (integer path)" in text and "Per-class F1" in text and "minirocket" in text
    for name in r["eval"]["classes"]:
        assert f"| {name} |" in text
    assert (out / "report" / "confusion.png").read_bytes()[:4] == b"\x89PNG"


def test_infer_reports_the_class_the_chip_computed(classifier):
    """`intformer infer` on a classifier run: every RESULT (4 scores, then the class) is checked, the classes
    are reported as their own field and equal the reference's argmax word; a reply whose class alone is wrong
    is a mismatch named as the class."""
    from intformer.boards import protocol as P
    from intformer.model import runfolder
    from test_board_cli import FakeDevice

    out, _ = classifier
    run = runfolder.open_run(out)

    class WrongClass(FakeDevice):
        def _reply(self, frame):
            if frame.cmd != P.INFER:
                return super()._reply(frame)
            self.infers += 1
            words = run_program(self.program, self._codes(frame.payload))[0].copy()
            if self.infers == 2:
                words[-1] = (words[-1] + 1) % 4                    # the class word alone
            return P.encode_frame(P.RESULT, frame.seq, P.result_payload(words))

    dev = FakeDevice(run.program)
    try:
        r = json.loads(ok(invoke("infer", out, "--port", dev.path, "--timeout", "0.3", "--windows", "6",
                                 "--json")).stdout)
    finally:
        dev.close()
    x = run.labelled().part("test", run.scaler).x[:6]
    want = run_program(run.program, quantize_input(run.program, x))[:, -1]
    assert r["matched"] == 6 and r["classes"] == [int(c) for c in want]
    dev = WrongClass(run.program)
    try:
        res = invoke("infer", out, "--port", dev.path, "--timeout", "0.3", "--windows", "3", "--json")
    finally:
        dev.close()
    assert res.exit_code == 1
    r = json.loads(res.stdout)
    assert r["mismatched"] == 1 and r["first_mismatch"]["window"] == 1 and r["first_mismatch"]["field"] == "class"
