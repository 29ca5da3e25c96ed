"""`intformer train --resume`: a run interrupted after some epochs continues from its last checkpoint and
ends with exactly the weights, curves and export of the same run left uninterrupted."""
from __future__ import annotations

import json

import pytest
import torch

from cli_helpers import invoke, ok
from intformer.boards.protocol import program_checksum
from intformer.model import modelfile
from intformer.model import train as train_module

pytestmark = pytest.mark.usefixtures("torch_one_thread")

# float baseline and QAT, with dropout (the global RNG) and early stopping out of reach
OPTIONS = ["--window", "8", "--d-model", "8", "--ffn", "16", "--epochs", "4", "--patience", "10",
           "--max-train-windows", "200"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, torch_one_thread):
    out = tmp_path_factory.mktemp("resume") / "whole"
    ok(invoke("train", *OPTIONS, "--out", out, "--json"))
    return out


def _same_run(a, b):
    for kind in ("qat.pt", "float.pt"):
        sa, sb = torch.load(a / kind, weights_only=True), torch.load(b / kind, weights_only=True)
        assert sa.keys() == sb.keys()
        for k in sa:
            assert torch.equal(sa[k], sb[k]), (kind, k)
    assert json.loads((a / "history.json").read_text()) == json.loads((b / "history.json").read_text())
    (pa, ha), (pb, hb) = modelfile.load(a / "model.intf"), modelfile.load(b / "model.intf")
    assert program_checksum(pa) == program_checksum(pb) and ha["config"] == hb["config"]   # (wall times differ)


@pytest.mark.parametrize("phase", ["float", "QAT"])
def test_resumed_run_equals_uninterrupted(phase, uninterrupted, tmp_path, monkeypatch):
    out = tmp_path / "cut"

    def interrupt(label, epoch):
        if label.startswith(phase) and epoch == 2:
            raise KeyboardInterrupt
    monkeypatch.setattr(train_module, "after_epoch", interrupt)
    cut = invoke("train", *OPTIONS, "--out", out, "--json")
    assert cut.exit_code != 0                           # click reports the interrupt as "Aborted!"
    assert json.loads((out / "run.json").read_text())["status"] == "training"
    ckpt = out / ("ckpt-float.pt" if phase == "float" else "ckpt-qat.pt")
    assert torch.load(ckpt, weights_only=False)["epoch"] == 2
    # a plain train into the folder is refused and names --resume
    again = invoke("train", *OPTIONS, "--out", out)
    assert again.exit_code == 2 and "--resume" in again.stderr
    monkeypatch.undo()
    continued = []
    monkeypatch.setattr(train_module, "after_epoch", lambda label, epoch: continued.append((label[:5], epoch)))
    r = json.loads(ok(invoke("train", "--out", out, "--resume", "--json")).stdout)
    assert r["run"] == str(out)
    # only the epochs after the checkpoint ran again
    if phase == "float":
        assert continued[:2] == [("float", 3), ("float", 4)] and ("QAT 8", 1) in continued
    else:
        assert continued == [("QAT 8", 3), ("QAT 8", 4)]
    assert json.loads((out / "run.json").read_text())["status"] == "complete"
    assert not list(out.glob("ckpt-*"))                 # removed once the run is complete
    _same_run(out, uninterrupted)
