"""In-memory datasets and their on-disk cache (an ``.npz`` of arrays plus a JSON description).

The cache stores a SHA-256 of every array; loading verifies them and fails with an error naming the
file, the array and the expected checksum, so a corrupted or hand-edited cache is never used.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = ["TensorData", "load_cache", "save_cache"]

_ARRAYS = ("x_train", "y_train", "x_test", "y_test")


@dataclass(frozen=True)
class TensorData:
    """Inputs and int64 labels for training and test; ``domain`` bounds the inputs (None: unbounded).

    ``augment`` (optional) maps a training batch and a torch.Generator to an augmented batch.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    domain: tuple[float, float] | None = None
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None
    label: str = ""


def _sha256(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def save_cache(data: TensorData, path: str | Path, description: dict) -> Path:
    """Write ``data`` and a JSON ``description`` (e.g. the data config) atomically to ``path``."""
    from ..io_utils import atomic_write_bytes

    arrays = {name: getattr(data, name).numpy() for name in _ARRAYS}
    meta = {"description": description, "label": data.label, "domain": data.domain,
            "sha256": {name: _sha256(a) for name, a in arrays.items()},
            "shapes": {name: list(a.shape) for name, a in arrays.items()}}
    buf = io.BytesIO()
    np.savez_compressed(buf, meta=np.array(json.dumps(meta, sort_keys=True)), **arrays)
    return atomic_write_bytes(path, buf.getvalue())


def load_cache(path: str | Path) -> tuple[TensorData, dict]:
    """Read and verify a cache written by :func:`save_cache`; returns the data and its description."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"data cache not found: {p}")
    with np.load(p, allow_pickle=False) as z:
        if "meta" not in z.files:
            raise ValueError(f"{p}: not a lipcert data cache (no 'meta' entry)")
        meta = json.loads(str(z["meta"]))
        arrays = {}
        for name in _ARRAYS:
            if name not in z.files:
                raise ValueError(f"{p}: array {name!r} missing")
            a = z[name]
            if list(a.shape) != meta["shapes"][name]:
                raise ValueError(f"{p}: array {name!r} has shape {list(a.shape)}, expected {meta['shapes'][name]}")
            digest = _sha256(a)
            if digest != meta["sha256"][name]:
                raise ValueError(f"{p}: checksum mismatch for {name!r}: sha256 {digest}, expected {meta['sha256'][name]}")
            arrays[name] = torch.from_numpy(a.copy())
    domain = tuple(meta["domain"]) if meta["domain"] is not None else None
    return TensorData(domain=domain, label=meta["label"], **arrays), meta["description"]
