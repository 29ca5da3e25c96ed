"""The Python API (`intformer.train`, `load_run`, `Run`): the README's example runs as written, on a tiny
model on the embedded default data (window 8, d_model 8, ffn 16, one epoch, 200 training windows), through
training, evaluation, a simulation that compares every output word, the Amaranth component and a real
iCEBreaker build (so those two tests are marked slow); the API's options are the command's, by the same
names and defaults; `import intformer` stays cheap.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import intformer
from intformer.api import data_spec, train_options
from intformer.model.config import ModelConfig, TrainConfig
from intformer.model.errors import IntformerError
from cli_helpers import invoke, ok

pytestmark = pytest.mark.usefixtures("torch_one_thread")

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_example() -> str:
    """The Python code block of the README's "Python API" section."""
    text = README.read_text()
    section = text.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "the Python API section holds one python code block"
    return blocks[0]


@pytest.fixture(scope="module")
def example(tmp_path_factory, torch_one_thread):
    """The README example, run in a folder of its own (its run folder is relative: runs/api-demo)."""
    import os

    where = tmp_path_factory.mktemp("api")
    before = os.getcwd()
    os.chdir(where)
    try:
        namespace: dict = {"__name__": "readme_example"}
        exec(compile(readme_example(), str(README) + ":Python API", "exec"), namespace)
    finally:
        os.chdir(before)
    return where, namespace


@pytest.mark.slow            # the example's iCEBreaker build: one to three minutes on two shared cores
def test_readme_example_trains_simulates_and_builds(example):
    from amaranth.lib import wiring

    where, ns = example
    run = ns["run"]
    assert run.path == (where / "runs" / "api-demo").resolve() and run.path.is_absolute()
    assert isinstance(run, intformer.Run) and isinstance(run.program, intformer.IntProgram)
    assert (run.config.window, run.config.d_model, run.config.ffn) == (8, 8, 16)
    assert run.train_config.epochs == 1 and run.train_config.max_train_windows == 200
    assert ns["errors"].keys() >= {"float", "fakequant", "integer"}
    # the simulation compared every output word of the 4 test windows with the integer reference
    sim = ns["sim"]
    assert sim["windows"] == 4 and sim["words"] == 4 * run.config.horizon and sim["mismatches"] == 0
    from intformer.accel.plan import make_plan
    pairs = make_plan(run.program, 2).pairs                          # pair steps take two k per cycle
    assert sim["lanes"] == 2 and sim["cycles_per_inference"] >= run.program.macs() / (4 if pairs else 2)
    assert isinstance(ns["top"], wiring.Component) and isinstance(ns["top"], intformer.Accelerator)
    assert "module" in ns["design"] and ns["top"].plan.lanes == 2
    built = ns["built"]
    assert built["board"] == "icebreaker" and built["lanes"] == 1 and built["timing_met"] is True
    assert (where / built["bitstream"]).stat().st_size > 0


@pytest.mark.slow
def test_the_api_is_the_commands_implementation(example):
    """A Run method returns what its command prints with --json (apart from the seconds it took)."""
    where, ns = example
    run = ns["run"]
    folder = where / "runs" / "api-demo"
    cli_sim = json.loads(ok(invoke("sim", folder, "--windows", "4", "--lanes", "2", "--json")).stdout)
    timing = {"seconds", "sim_cycles_per_second", "compile_seconds"}
    assert {k: v for k, v in cli_sim.items() if k not in timing} == \
        {k: v for k, v in ns["sim"].items() if k not in timing}
    # the bare pieces: the simulator's words for the run's test windows are the reference's
    from intformer.model.intref import quantize_input, run_program
    codes = quantize_input(run.program, run.windows("test").x[:2])
    result = intformer.simulate(run.program, codes, 2, engine="amaranth")
    words, cycles = result
    assert (words == run_program(run.program, codes)).all() and cycles == ns["sim"]["cycles_per_inference"]
    assert intformer.first_mismatch(run.program, codes, result, words) == "no mismatch"
    # an export file opens on its own, as the commands accept it
    alone = intformer.load_run(folder / "model.intf")
    assert alone.program.structure() == run.program.structure() and alone.config == run.config


def test_options_are_the_train_commands(monkeypatch):
    """The options the API passes on are those `intformer train` passes for the same flags."""
    import intformer.train_cmd as tc

    seen = []
    monkeypatch.setattr(tc, "train_run", lambda spec, kw, *a, **k: seen.append((spec, kw)) or {})
    monkeypatch.setattr(tc, "emit", lambda *a, **k: None)
    ok(invoke("train", "--window", "8", "--d-model", "8", "--ffn", "16", "--epochs", "1", "--no-float",
              "--bits-override", "l0.ffn1=6", "--features", "a, b", "--target", "b", "--out", "x"))
    spec, kw = seen[0]
    assert data_spec({"features": "a, b", "target": "b"}) == spec
    given = dict(window=8, d_model=8, ffn=16, bits_override=["l0.ffn1=6"])
    assert train_options(given, {"epochs": 1, "float_baseline": False}) == kw
    # config objects say the same
    mcfg = ModelConfig(window=8, d_model=8, ffn=16, bits_overrides={"l0.ffn1": 6})
    assert train_options(mcfg, TrainConfig(epochs=1, float_baseline=False)) == kw
    assert data_spec(None) == data_spec({}) and data_spec("f.csv")["path"] == "f.csv"


def test_a_misspelt_option_is_an_error():
    with pytest.raises(IntformerError, match="d_modle"):
        train_options({"d_modle": 8})
    with pytest.raises(IntformerError, match="epoch"):
        train_options(None, {"epoch": 1})
    with pytest.raises(IntformerError, match="colour"):
        data_spec({"colour": "red"})
    with pytest.raises(AttributeError):
        intformer.no_such_name


def test_import_intformer_is_cheap():
    """`import intformer` (run by every `import intformer.model...`) loads neither torch nor Amaranth."""
    code = ("import sys, intformer; heavy = [m for m in ('torch', 'amaranth', 'numpy') if m in sys.modules]; "
            "assert not heavy, heavy; assert 'train' in dir(intformer)")
    subprocess.run([sys.executable, "-c", code], check=True)
