"""Tiny-ImageNet from its official layout (CLL paper section 4.2, supplement B; model 8C2F).

Layout of the official zip (``tiny-imagenet-200/``)::

    wnids.txt                          one WordNet id per line: the classes, in label order
    train/<wnid>/images/*.JPEG         500 training images per class (64x64; a few are greyscale)
    val/images/*.JPEG                  10,000 validation images (50 per class) ...
    val/val_annotations.txt            ... labelled here: "<file>\\t<wnid>\\t<box x0 y0 x1 y1>"

The classes are exactly those of ``wnids.txt`` in that order; the official validation set is the test
set (the official test images have no labels), read in the order of ``val_annotations.txt``; training
images are read in name order.  A ``val/`` folder that is not arranged by class is the layout this
loader expects (reading it as an image folder would give near-chance accuracy; reference
implementation notes, Tiny-ImageNet issues).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .tensor_data import SourceFiles, TensorData, decode_rgb_image, first_k_per_class

__all__ = ["IMAGE_SIZE", "TINY_IMAGENET_FORMATS", "find_tiny_imagenet_root", "load_tiny_imagenet"]

IMAGE_SIZE = 64
TINY_IMAGENET_FORMATS: tuple[str, ...] = ("auto", "tiny_imagenet")
_IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")


def find_tiny_imagenet_root(root: str | Path) -> Path | None:
    """The folder holding ``wnids.txt``: ``root`` or ``root/tiny-imagenet-200``; None when neither has it."""
    root = Path(root)
    for candidate in (root, root / "tiny-imagenet-200"):
        if (candidate / "wnids.txt").is_file():
            return candidate
    return None


def _read_wnids(sources: SourceFiles, path: Path) -> list[str]:
    text = sources.read(path, "Tiny-ImageNet class list, one wnid per line").decode("utf-8", errors="strict")
    wnids = [line.strip() for line in text.splitlines() if line.strip()]
    if not wnids:
        raise ValueError(f"{path}: no class ids found")
    duplicates = sorted({w for w in wnids if wnids.count(w) > 1})
    if duplicates:
        raise ValueError(f"{path}: duplicate class ids {duplicates}")
    return wnids


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES)


def _train_listing(root: Path, wnids: list[str]) -> list[tuple[Path, int]]:
    train = root / "train"
    if not train.is_dir():
        raise FileNotFoundError(f"Tiny-ImageNet training folder not found: {train} (expected train/<wnid>/images/*.JPEG)")
    unexpected = sorted(p.name for p in train.iterdir() if p.is_dir() and p.name not in wnids)
    if unexpected:
        raise ValueError(f"{train}: class folders {unexpected} are not listed in {root / 'wnids.txt'}")
    listing: list[tuple[Path, int]] = []
    for label, wnid in enumerate(wnids):
        folder = train / wnid / "images"
        if not folder.is_dir():
            raise FileNotFoundError(f"Tiny-ImageNet class folder not found: {folder} (class {wnid!r} of wnids.txt)")
        files = _image_files(folder)
        if not files:
            raise ValueError(f"{folder}: no images for class {wnid!r}")
        listing.extend((p, label) for p in files)
    return listing


def _val_listing(sources: SourceFiles, root: Path, wnids: list[str]) -> list[tuple[Path, int]]:
    ann = root / "val" / "val_annotations.txt"
    images = root / "val" / "images"
    text = sources.read(ann, "Tiny-ImageNet validation labels '<file>\\t<wnid>\\t...'").decode("utf-8")
    index = {w: i for i, w in enumerate(wnids)}
    listing: list[tuple[Path, int]] = []
    seen: set[str] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2:
            raise ValueError(f"{ann}, line {number}: expected '<file>\\t<wnid>\\t...', got {line!r}")
        name, wnid = fields[0].strip(), fields[1].strip()
        if wnid not in index:
            raise ValueError(f"{ann}, line {number}: class {wnid!r} is not listed in {root / 'wnids.txt'}")
        if name in seen:
            raise ValueError(f"{ann}, line {number}: {name!r} is labelled twice")
        seen.add(name)
        listing.append((images / name, index[wnid]))
    if not listing:
        raise ValueError(f"{ann}: no labelled validation images")
    if not images.is_dir():
        raise FileNotFoundError(f"Tiny-ImageNet validation images not found: {images}")
    present = {p.name for p in _image_files(images)}
    absent = [path.name for path, _ in listing if path.name not in present]
    if absent:
        raise FileNotFoundError(f"{images}: {len(absent)} image(s) listed in {ann} are missing, e.g. {absent[:3]}")
    unlabelled = sorted(present - seen)
    if unlabelled:
        raise ValueError(f"{images}: {len(unlabelled)} image(s) without a line in {ann}, e.g. {unlabelled[:3]}")
    return listing


def _decode(sources: SourceFiles, listing: list[tuple[Path, int]], subset: int | None, split: str,
            wnids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    labels = np.array([label for _, label in listing], dtype=np.int64)
    keep = first_k_per_class(labels, subset, split, wnids) if subset is not None else np.arange(len(listing))
    x = np.empty((len(keep), 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    for out, i in enumerate(keep):
        path = listing[i][0]
        x[out] = decode_rgb_image(sources.read(path, f"a Tiny-ImageNet {split} image"), path, (IMAGE_SIZE, IMAGE_SIZE))
    return x, labels[keep]


def load_tiny_imagenet(root: str | Path, format: str = "auto", subset_train: int | None = None,
                       subset_test: int | None = None) -> TensorData:
    """Tiny-ImageNet (classes of ``wnids.txt`` in its order; official val as test) as uint8 TensorData.

    ``root`` is the extracted ``tiny-imagenet-200`` folder or its parent.  ``subset_train`` /
    ``subset_test`` keep the first k images of every class (deterministic, class-balanced) and only
    those are decoded.  Returns uint8 x (N, 3, 64, 64), int64 y, domain (0, 1), label "Tiny-ImageNet"
    and the SHA-256 manifest of the files read.  A missing file raises FileNotFoundError naming it; an
    image that is not 64x64 or not readable raises ValueError naming it.
    """
    if format not in TINY_IMAGENET_FORMATS:
        raise ValueError(f"unknown Tiny-ImageNet format {format!r}; expected one of {list(TINY_IMAGENET_FORMATS)}")
    base = find_tiny_imagenet_root(root)
    if base is None:
        raise FileNotFoundError(
            f"Tiny-ImageNet not found in {root}: expected wnids.txt, train/<wnid>/images/*.JPEG, val/images/*.JPEG and "
            "val/val_annotations.txt (the extracted official tiny-imagenet-200.zip) there or in "
            f"{Path(root) / 'tiny-imagenet-200'}")
    sources = SourceFiles(base)
    wnids = _read_wnids(sources, base / "wnids.txt")
    x_train, y_train = _decode(sources, _train_listing(base, wnids), subset_train, "train", wnids)
    x_test, y_test = _decode(sources, _val_listing(sources, base, wnids), subset_test, "test (official val)", wnids)
    return TensorData(torch.from_numpy(x_train), torch.from_numpy(y_train), torch.from_numpy(x_test),
                      torch.from_numpy(y_test), domain=(0.0, 1.0), label="Tiny-ImageNet",
                      source_files=sources.manifest())
