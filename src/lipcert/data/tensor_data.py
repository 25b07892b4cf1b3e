"""In-memory datasets, the helpers image loaders share, and the on-disk cache (``.npz`` + JSON description).

Image datasets are held as uint8 arrays (N, 3, H, W) and scaled to [0, 1] only on the training device
(:func:`as_model_input`; CLL supplement B, "Data preprocessing": "We scale the features to the range
[0, 1]"), so a CIFAR-10 training set stays 150 MB instead of 600 MB.

The cache stores a SHA-256 of every array and, for converted image data, a manifest of the source
files' SHA-256; loading verifies shapes, dtypes and checksums and fails with an error naming the file,
the array and the expected value, so a corrupted or hand-edited cache is never used.  The cache is
written atomically: a failed preparation leaves no partial cache behind.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .augment import RandomImageAugment

__all__ = [
    "SourceFiles",
    "TensorData",
    "as_model_input",
    "decode_rgb_image",
    "first_k_per_class",
    "load_cache",
    "save_cache",
]

_ARRAYS = ("x_train", "y_train", "x_test", "y_test")
CACHE_VERSION = 2


@dataclass(frozen=True)
class TensorData:
    """Inputs and int64 labels for training and test; ``domain`` bounds the inputs (None: unbounded).

    Image data holds uint8 inputs (N, 3, H, W) with ``domain == (0.0, 1.0)``: the model sees
    ``x / 255`` (:func:`as_model_input`).  ``augment`` (optional) maps a float training batch in [0, 1]
    and a torch.Generator to an augmented batch.  ``source_files`` lists ``(relative path, sha256)`` of
    every source file the data was converted from (empty for generated data).
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    domain: tuple[float, float] | None = None
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None
    label: str = ""
    source_files: tuple[tuple[str, str], ...] = ()


def as_model_input(x: torch.Tensor) -> torch.Tensor:
    """Model input from stored data: uint8 images become float32 ``x / 255`` in [0, 1], floats pass unchanged.

    CLL supplement B ("Data preprocessing"): features are scaled to [0, 1], no mean/std normalisation.
    Call it on the device, after indexing a batch, so the stored data stays uint8.
    """
    if x.dtype == torch.uint8:
        return x.to(torch.float32) / 255.0
    if x.is_floating_point():
        return x
    raise ValueError(f"model inputs must be uint8 images or floating point, got dtype {x.dtype}")


def first_k_per_class(labels: Sequence[int] | np.ndarray | torch.Tensor, k: int, split: str = "data",
                      class_names: Sequence[str] | None = None) -> np.ndarray:
    """Indices of the first ``k`` samples of every class, in the data's order (deterministic subset).

    Used for the quick-scale runs (``data.subset_train`` / ``data.subset_test``): the subset is
    class-balanced and does not depend on any random seed.  Every class in ``range(num_classes)``
    (``len(class_names)``, else ``max(labels) + 1``) must have at least ``k`` samples; otherwise a
    ValueError names the class and its count.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"subset size must be a positive int, got {k!r}")
    y = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels, dtype=np.int64)
    num_classes = len(class_names) if class_names is not None else (int(y.max()) + 1 if y.size else 0)
    keep = np.zeros(y.shape[0], dtype=bool)
    for c in range(num_classes):
        where = np.flatnonzero(y == c)
        if where.size < k:
            name = f" ({class_names[c]!r})" if class_names is not None else ""
            raise ValueError(f"{split}: subset of {k} per class requested, but class {c}{name} "
                             f"has only {where.size} samples")
        keep[where[:k]] = True
    return np.flatnonzero(keep)


class SourceFiles:
    """Reads source files as bytes and records ``(path relative to root, sha256)`` of each (the manifest)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._manifest: list[tuple[str, str]] = []

    def read(self, path: str | Path, what: str = "") -> bytes:
        """The bytes of ``path``; a missing file raises FileNotFoundError naming it and ``what`` it should be."""
        p = Path(path)
        if not p.is_file():
            expected = f" (expected {what})" if what else ""
            raise FileNotFoundError(f"data source file not found: {p}{expected}")
        try:
            data = p.read_bytes()
        except OSError as err:
            raise ValueError(f"cannot read data source file {p}: {err}") from err
        try:
            rel = p.resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:
            rel = str(p)
        self._manifest.append((rel, hashlib.sha256(data).hexdigest()))
        return data

    def manifest(self) -> tuple[tuple[str, str], ...]:
        """``(relative path, sha256)`` of every file read so far, in reading order."""
        return tuple(self._manifest)


def decode_rgb_image(data: bytes, source: str | Path, size: tuple[int, int]) -> np.ndarray:
    """Decode PNG/JPEG bytes to a uint8 (3, H, W) RGB array; greyscale/palette images are converted to RGB.

    A file that is not a readable image, or whose size is not ``size`` = (H, W), raises a ValueError
    naming ``source`` and the expected size.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            rgb = img.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ValueError(f"{source}: not a readable image ({err})") from err
    array = np.asarray(rgb, dtype=np.uint8)
    if array.shape != (size[0], size[1], 3):
        raise ValueError(f"{source}: image is {array.shape[1]}x{array.shape[0]} (width x height), "
                         f"expected {size[1]}x{size[0]}")
    return np.ascontiguousarray(array.transpose(2, 0, 1))


def _sha256(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def _augment_spec(augment) -> dict | None:
    if augment is None:
        return None
    if isinstance(augment, RandomImageAugment):
        return asdict(augment)
    raise ValueError(f"cannot store augment {augment!r} in a data cache: only "
                     "lipcert.data.augment.RandomImageAugment (make_augment) can be rebuilt on load")


def save_cache(data: TensorData, path: str | Path, description: dict) -> Path:
    """Write ``data`` and a JSON ``description`` (e.g. the data config) atomically to ``path``.

    Arrays keep their dtype (uint8 images stay uint8).  The augmentation (a
    :class:`~lipcert.data.augment.RandomImageAugment`) and the source-file manifest are stored too.
    The file appears only when complete; on any error nothing (no temporary file) is left behind.
    """
    from ..io_utils import _atomic_write

    arrays = {name: getattr(data, name).cpu().numpy() for name in _ARRAYS}
    arrays["source_files"] = np.frombuffer(json.dumps([list(e) for e in data.source_files]).encode(), dtype=np.uint8)
    meta = {"version": CACHE_VERSION, "description": description, "label": data.label, "domain": data.domain,
            "augment": _augment_spec(data.augment),
            "sha256": {name: _sha256(a) for name, a in arrays.items()},
            "shapes": {name: list(a.shape) for name, a in arrays.items()},
            "dtypes": {name: str(a.dtype) for name, a in arrays.items()}}
    return _atomic_write(path, lambda handle: np.savez_compressed(
        handle, meta=np.array(json.dumps(meta, sort_keys=True)), **arrays))


def _verified_array(z, name: str, meta: dict, p: Path) -> np.ndarray:
    if name not in z.files:
        raise ValueError(f"{p}: array {name!r} missing")
    a = z[name]
    if list(a.shape) != meta["shapes"][name]:
        raise ValueError(f"{p}: array {name!r} has shape {list(a.shape)}, expected {meta['shapes'][name]}")
    expected_dtype = meta.get("dtypes", {}).get(name)
    if expected_dtype is not None and str(a.dtype) != expected_dtype:
        raise ValueError(f"{p}: array {name!r} has dtype {a.dtype}, expected {expected_dtype}")
    digest = _sha256(a)
    if digest != meta["sha256"][name]:
        raise ValueError(f"{p}: checksum mismatch for {name!r}: sha256 {digest}, expected {meta['sha256'][name]}")
    return a


def load_cache(path: str | Path) -> tuple[TensorData, dict]:
    """Read and verify a cache written by :func:`save_cache`; returns the data and its description.

    Raises FileNotFoundError for a missing file and ValueError naming the file, the array and the
    expected value for a missing array, a wrong shape or dtype, or a SHA-256 mismatch.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"data cache not found: {p}")
    try:
        z = np.load(p, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ValueError(f"{p}: not a readable .npz data cache ({err})") from err
    with z:
        if "meta" not in z.files:
            raise ValueError(f"{p}: not a lipcert data cache (no 'meta' entry)")
        meta = json.loads(str(z["meta"]))
        arrays = {name: torch.from_numpy(_verified_array(z, name, meta, p).copy()) for name in _ARRAYS}
        sources: tuple[tuple[str, str], ...] = ()
        if "source_files" in meta["sha256"]:
            raw = _verified_array(z, "source_files", meta, p)
            sources = tuple((str(a), str(b)) for a, b in json.loads(raw.tobytes().decode()))
    domain = tuple(meta["domain"]) if meta["domain"] is not None else None
    spec = meta.get("augment")
    augment = RandomImageAugment(**spec) if spec is not None else None
    data = TensorData(domain=domain, label=meta["label"], augment=augment, source_files=sources, **arrays)
    return data, meta["description"]
