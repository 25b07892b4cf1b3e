"""MNIST from the official IDX files (seed paper 004 "Local-Lip": MNIST 4C3F, eps 1.58).

Sources, picked by :func:`detect_format` from what is in the data folder (``format`` overrides it):

* ``idx``: the four official files of LeCun, Cortes and Burges' MNIST page, each plain or gzipped
  (``.gz``, as distributed), directly in ``root`` or in ``root/MNIST/raw`` (torchvision's layout)::

      train-images-idx3-ubyte   60,000 training images     t10k-images-idx3-ubyte   10,000 test images
      train-labels-idx1-ubyte   60,000 training labels     t10k-labels-idx1-ubyte   10,000 test labels

  The IDX format: a big-endian header, magic number ``0x00 0x00 <type> <ndim>`` (type 0x08 = unsigned
  byte) followed by ``ndim`` big-endian uint32 dimension sizes, then the data in row-major (C) order.
  Image files have magic 0x00000803 and dimensions (N, 28, 28), pixel 0 = background (white),
  255 = foreground (black ink); label files have magic 0x00000801, dimension (N) and labels 0..9.  The
  file length must equal the header's exactly, and each image file must hold as many images as its
  label file holds labels.  Where both the plain and the ``.gz`` file are present (torchvision keeps
  both), the plain file is read.
* ``torchvision``: ``torchvision.datasets.MNIST(root, train=..., download=True)`` downloads (and
  md5-checks) the IDX files into ``root/MNIST/raw``, which are then read as ``idx``.  Without
  torchvision or network access this fails with an error that says how to provide local files.

Pixels are kept as uint8 (N, 1, 28, 28); :func:`lipcert.data.tensor_data.as_model_input` scales them
to [0, 1] on the training device.  MNIST has no training augmentation (the Local-Lip code uses none).
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from .tensor_data import SourceFiles, TensorData, first_k_per_class

__all__ = [
    "IDX_FILES",
    "IMAGE_SIZE",
    "MNIST_CLASSES",
    "MNIST_FORMATS",
    "MnistFormat",
    "detect_format",
    "find_idx_folder",
    "load_mnist",
    "read_idx",
]

MnistFormat = Literal["auto", "torchvision", "idx"]
MNIST_FORMATS: tuple[str, ...] = ("auto", "torchvision", "idx")

MNIST_CLASSES: tuple[str, ...] = tuple(str(d) for d in range(10))
"""The ten digit classes; label ``d`` is the digit ``d``."""

IMAGE_SIZE = 28
IMAGES_MAGIC = 0x00000803
"""IDX magic of the image files: unsigned byte (0x08), 3 dimensions (N, 28, 28)."""
LABELS_MAGIC = 0x00000801
"""IDX magic of the label files: unsigned byte (0x08), 1 dimension (N)."""

IDX_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
"""(images file, labels file) of each split, without the optional ``.gz``."""

_ALL_FILES = tuple(name for pair in IDX_FILES.values() for name in pair)
_RAW_SUBDIR = Path("MNIST") / "raw"  # where torchvision.datasets.MNIST keeps the downloaded files


def _candidates(root: Path) -> tuple[Path, Path]:
    return root, root / _RAW_SUBDIR


def _idx_path(folder: Path, name: str) -> Path | None:
    """``folder/name`` or else ``folder/name.gz``; None if neither is a file."""
    for path in (folder / name, folder / f"{name}.gz"):
        if path.is_file():
            return path
    return None


def find_idx_folder(root: str | Path) -> Path | None:
    """The folder holding all four IDX files (plain or ``.gz``): ``root`` or ``root/MNIST/raw``; else None."""
    for folder in _candidates(Path(root)):
        if all(_idx_path(folder, name) is not None for name in _ALL_FILES):
            return folder
    return None


def detect_format(root: str | Path) -> str:
    """Which MNIST source ``root`` holds: 'idx' when any official IDX file is there, else 'torchvision'.

    Looks in ``root`` and ``root/MNIST/raw``.  A folder with only some of the four files counts as
    'idx', so that loading names the missing file instead of downloading; an empty or missing folder
    means 'torchvision', i.e. download into ``root``.
    """
    for folder in _candidates(Path(root)):
        if any(_idx_path(folder, name) is not None for name in _ALL_FILES):
            return "idx"
    return "torchvision"


def _how_to_provide(root: Path) -> str:
    return (f"put the four official IDX files ({', '.join(_ALL_FILES)}; plain or .gz) into {root} or "
            f"{root / _RAW_SUBDIR} (data.root, or $LIPCERT_DATA_ROOT/<name>)")


def _resolve_files(root: Path) -> dict[str, Path]:
    """Path of every IDX file, all from one folder; FileNotFoundError naming the missing file(s) otherwise."""
    folder = find_idx_folder(root)
    if folder is not None:
        return {name: _idx_path(folder, name) for name in _ALL_FILES}
    # name the missing files of the folder that holds most of them (root on a tie)
    folder = max(_candidates(root), key=lambda f: sum(_idx_path(f, n) is not None for n in _ALL_FILES))
    missing = [name for name in _ALL_FILES if _idx_path(folder, name) is None]
    raise FileNotFoundError(
        f"MNIST IDX file not found: {folder / missing[0]} (or {missing[0]}.gz; expected the official MNIST "
        f"file); missing in {folder}: {missing}.  To load MNIST, {_how_to_provide(root)}, "
        "or set data.format=torchvision to download them")


def read_idx(sources: SourceFiles, path: Path, magic: int, what: str) -> np.ndarray:
    """The uint8 array of the IDX file ``path`` (gunzipped when it ends in ``.gz``), read through ``sources``.

    The header must carry ``magic`` (unsigned-byte data, ``magic & 0xff`` dimensions) and the file must
    hold exactly the bytes its dimension sizes call for; otherwise a ValueError names the file and
    the expected value.
    """
    raw = sources.read(path, what)
    label = f"{path}"
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:  # gzip.BadGzipFile is an OSError
            raise ValueError(f"{path}: not a readable gzip file ({type(err).__name__}: {err}); "
                             f"expected {what}, gzipped") from err
        label = f"{path} (decompressed)"
    if len(raw) < 4:
        raise ValueError(f"{label}: {len(raw)} bytes, too short for an IDX header (expected {what})")
    found = int.from_bytes(raw[:4], "big")
    ndim = magic & 0xFF
    if found != magic:
        raise ValueError(f"{label}: IDX magic number 0x{found:08x}, expected 0x{magic:08x} "
                         f"(unsigned bytes, {ndim} dimension(s); {what})")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{label}: {len(raw)} bytes, too short for the {header}-byte IDX header of {what}")
    dims = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(raw) != expected:
        raise ValueError(f"{label}: file length {len(raw)} bytes, but its header (dimensions {list(dims)}) "
                         f"calls for {expected} bytes ({header}-byte header + data)"
                         + ("; the file is truncated" if len(raw) < expected else "; trailing bytes"))
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()  # writable, owns its memory


def _read_split(sources: SourceFiles, files: dict[str, Path], split: str,
                subset: int | None) -> tuple[np.ndarray, np.ndarray]:
    images_name, labels_name = IDX_FILES[split]
    images_path, labels_path = files[images_name], files[labels_name]
    x = read_idx(sources, images_path, IMAGES_MAGIC, f"MNIST {split} images, IDX (N, 28, 28) unsigned bytes")
    if x.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(f"{images_path}: images of {x.shape[1]}x{x.shape[2]} pixels, "
                         f"expected {IMAGE_SIZE}x{IMAGE_SIZE} (IDX dimensions (N, 28, 28))")
    y = read_idx(sources, labels_path, LABELS_MAGIC, f"MNIST {split} labels, IDX (N) unsigned bytes").astype(np.int64)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{images_path} holds {x.shape[0]} images but {labels_path} holds {y.shape[0]} labels; "
                         "expected the same number")
    if y.size and y.max() >= len(MNIST_CLASSES):
        bad = int(np.flatnonzero(y >= len(MNIST_CLASSES))[0])
        raise ValueError(f"{labels_path}: labels must lie in [0, 9], found {int(y[bad])} at index {bad}")
    if subset is not None:
        keep = first_k_per_class(y, subset, split, MNIST_CLASSES)
        x, y = x[keep], y[keep]
    return np.ascontiguousarray(x.reshape(-1, 1, IMAGE_SIZE, IMAGE_SIZE)), y


def _download_with_torchvision(root: Path) -> None:
    how = f"provide the data locally instead: {_how_to_provide(root)}, or set data.format"
    try:
        import torchvision
    except ImportError as err:
        raise RuntimeError(f"MNIST: torchvision is not installed, so it cannot be downloaded; {how}") from err
    try:
        for train in (True, False):
            torchvision.datasets.MNIST(str(root), train=train, download=True)
    except Exception as err:  # URLError, OSError, RuntimeError (integrity check) ...
        raise RuntimeError(f"MNIST: download into {root} with torchvision failed "
                           f"({type(err).__name__}: {err}); {how}") from err


def load_mnist(root: str | Path, format: MnistFormat = "auto", subset_train: int | None = None,
               subset_test: int | None = None) -> TensorData:
    """MNIST (60,000 training and 10,000 test digits, official order) as uint8 TensorData.

    ``format`` 'auto' uses :func:`detect_format`.  ``subset_train`` / ``subset_test`` keep the first k
    images of every class (deterministic, class-balanced; for the quick scale).  The result has uint8
    x (N, 1, 28, 28), int64 y, domain (0, 1), no augmentation, the label "MNIST" and the SHA-256
    manifest of the source files read (the ``.gz`` bytes for gzipped files).  Missing files raise
    FileNotFoundError naming the file; malformed files raise ValueError naming the file and the
    expected magic number, length or label range.
    """
    root = Path(root)
    if format not in MNIST_FORMATS:
        raise ValueError(f"unknown MNIST format {format!r}; expected one of {list(MNIST_FORMATS)}")
    chosen = detect_format(root) if format == "auto" else format
    if chosen == "torchvision":  # downloads, or md5-checks files already there
        _download_with_torchvision(root)
    files = _resolve_files(root)
    sources = SourceFiles(root)
    x_train, y_train = _read_split(sources, files, "train", subset_train)
    x_test, y_test = _read_split(sources, files, "test", subset_test)
    return TensorData(torch.from_numpy(x_train), torch.from_numpy(y_train), torch.from_numpy(x_test),
                      torch.from_numpy(y_test), domain=(0.0, 1.0), label="MNIST",
                      source_files=sources.manifest())
