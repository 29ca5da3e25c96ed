"""The export file: one versioned, self-describing file per model (`model.intf`).

Layout (all integers little-endian):

    8 bytes   magic  b"INTFRMR\\0"
    4 bytes   format version (uint32)
    8 bytes   header length N (uint64)
    N bytes   header: UTF-8 JSON -- model configuration, scaler, the integer program's structure (buffers,
              steps, requantization constants), and for each tensor its name, dtype, shape, byte offset
              and length in the payload
    ...       payload: the tensors' bytes (int64 little-endian), in header order
    32 bytes  SHA-256 of everything before it

Loading checks the magic, the version, the length and the checksum before it trusts a byte, so a foreign,
newer, truncated, corrupt or tampered file is refused with a message that says which.
"""
from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import numpy as np

from .errors import IntformerError
from .program import IntProgram

MAGIC = b"INTFRMR\0"
FORMAT_VERSION = 1
_PREFIX = struct.Struct("<8sIQ")


def save(path: str | Path, program: IntProgram, config: dict, scaler: dict, meta: dict | None = None) -> None:
    tensors, payload, offset = [], [], 0
    for name, arr in program.tensors.items():
        data = np.ascontiguousarray(arr, dtype="<i8").tobytes()
        tensors.append({"name": name, "dtype": "int64", "shape": list(arr.shape), "offset": offset,
                        "nbytes": len(data)})
        payload.append(data)
        offset += len(data)
    header = {"format": "intformer-integer-model", "version": FORMAT_VERSION, "config": config,
              "scaler": scaler, "meta": meta or {}, "program": program.structure(), "tensors": tensors}
    head = json.dumps(header, sort_keys=True).encode()
    body = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(head)) + head + b"".join(payload)
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(body + hashlib.sha256(body).digest())
    tmp.replace(path)                      # never leave a half-written export under the real name


def load(path: str | Path) -> tuple[IntProgram, dict]:
    """Read an export file; returns the program and the header (config, scaler, meta)."""
    path = Path(path)
    if not path.is_file():
        raise IntformerError(f"{path}: no such export file (a run folder holds it as model.intf)")
    raw = path.read_bytes()
    if not raw:
        raise IntformerError(f"{path}: the file is empty (0 bytes); export it again with `intformer train`")
    if raw[:len(MAGIC)] != MAGIC[:len(raw)]:
        raise IntformerError(f"{path}: not an intformer export file (wrong magic bytes); "
                             f"export one with `intformer train`")
    if len(raw) < _PREFIX.size + 32:
        raise IntformerError(f"{path}: file is truncated ({len(raw)} bytes, shorter than the "
                             f"{_PREFIX.size + 32}-byte frame of an export file); export it again")
    _, version, head_len = _PREFIX.unpack_from(raw)
    if version > FORMAT_VERSION:
        raise IntformerError(f"{path}: export format version {version} is newer than this intformer "
                             f"understands ({FORMAT_VERSION}); upgrade intformer")
    body, digest = raw[:-32], raw[-32:]
    if _PREFIX.size + head_len > len(body):
        raise IntformerError(f"{path}: file is truncated (header says {head_len} bytes, file is shorter); "
                             f"export it again")
    if hashlib.sha256(body).digest() != digest:
        raise IntformerError(f"{path}: checksum mismatch: the file is corrupt, truncated or was modified; "
                             f"export it again with `intformer train`")
    try:
        header = json.loads(body[_PREFIX.size:_PREFIX.size + head_len])
        payload = body[_PREFIX.size + head_len:]
        tensors = {}
        for t in header["tensors"]:
            chunk = payload[t["offset"]:t["offset"] + t["nbytes"]]
            if len(chunk) != t["nbytes"]:
                raise ValueError(f"tensor {t['name']} runs past the payload")
            tensors[t["name"]] = np.frombuffer(chunk, dtype="<i8").astype(np.int64).reshape(t["shape"])
        program = IntProgram.from_structure(header["program"], tensors).check()
        _check_header(header, program)
    except (ValueError, KeyError, TypeError, AttributeError, IndexError, OverflowError, MemoryError) as exc:
        raise IntformerError(f"{path}: malformed export file ({exc}); export it again") from None
    return program, header


def _check_header(header: dict, program: IntProgram) -> None:
    """The configuration and scaler records must be valid and describe the program's input."""
    from .config import ModelConfig
    from .data import Scaler

    if "config" in header:
        try:
            cfg = ModelConfig.from_dict(header["config"]).validate()
        except IntformerError as exc:
            raise ValueError(f"configuration record: {exc}") from None
        if (program.input.rows, program.input.cols) != (cfg.input_rows, cfg.token_dim):
            raise ValueError(f"the configuration's window ({cfg.input_rows} x {cfg.token_dim}) is not the program's "
                             f"input buffer ({program.input.rows} x {program.input.cols})")
    if "scaler" in header:
        try:
            scaler = Scaler.from_dict(header["scaler"])
        except IntformerError as exc:
            raise ValueError(str(exc)) from None
        if "config" in header and scaler.mean.shape[0] != header["config"].get("inputs", scaler.mean.shape[0]):
            raise ValueError("the scaler's inputs are not the configuration's")
