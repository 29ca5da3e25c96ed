"""intformer: integer-only Transformer forecasters, trained with QAT in PyTorch and built as bit-exact FPGA
accelerators in Amaranth HDL.

The flow, in the steps hls4ml users know (convert -> compile -> predict -> build):

    import intformer

    run = intformer.train(model={"window": 24, "d_model": 16}, out="runs/a")   # data -> QAT -> integer program
    run = intformer.load_run("runs/a")            # a run folder made by `train` or `intformer train`
    run.evaluate()["test"]["integer"]["mse"]      # test error of the integer model (and float, fake-quant)
    run.simulate(windows=8, lanes=8)              # the accelerator against the integer reference, every word
    run.build(board="icebreaker")                 # yosys + nextpnr: the bitstream, resources, Fmax, latency
    top = run.accelerator(lanes=8)                # the Amaranth component itself

`train`, `load_run` and `Run` are in `intformer.api`, which the command's functions carry out (one
implementation: a method's result is the matching command's `--json` output). The bare pieces:
`IntProgram` (the integer program, `intformer.model.program`), `ModelConfig` / `TrainConfig`,
`Accelerator` (`intformer.accel.accelerator`), `simulate` / `first_mismatch` / `Simulation`
(`intformer.accel.simulate`) and `IntformerError`. The subpackages: `intformer.model` (data, training,
export, the integer reference), `intformer.accel` (the accelerator), `intformer.boards` (boards, link, host).

Every name is imported on first use (module `__getattr__`), so `import intformer` (which any
`import intformer.model...` runs first) loads neither torch nor Amaranth.
"""
from __future__ import annotations

import importlib

# public name -> the module that defines it (imported when the name is first read)
_LAZY = {
    "train": "intformer.api",
    "load_run": "intformer.api",
    "Run": "intformer.api",
    "IntProgram": "intformer.model.program",
    "ModelConfig": "intformer.model.config",
    "TrainConfig": "intformer.model.config",
    "IntformerError": "intformer.model.errors",
    "Accelerator": "intformer.accel.accelerator",
    "simulate": "intformer.accel.simulate",
    "first_mismatch": "intformer.accel.simulate",
    "Simulation": "intformer.accel.simulate",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'intformer' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value              # later reads are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
