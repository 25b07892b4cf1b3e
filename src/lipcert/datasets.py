"""Dataset dispatch for runs: turns a :class:`~lipcert.run_config.DataConfig` into tensors.

Kept apart from :mod:`lipcert.data` (which knows nothing of runs or models).
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

from .data.augment import make_augment
from .data.cifar import detect_format as detect_cifar_format
from .data.cifar import load_cifar
from .data.mnist import detect_format as detect_mnist_format
from .data.mnist import load_mnist
from .data.tensor_data import TensorData, save_cache
from .data.tiny_imagenet import find_tiny_imagenet_root, load_tiny_imagenet
from .data.two_moons import make_two_moons_splits
from .run_config import DATA_ROOT_ENV, DataConfig, data_root

__all__ = ["DATA_ROOT_ENV", "AUGMENT_GEOMETRY", "UNAUGMENTED", "data_root", "detect_format", "load_data",
           "prepare_data_cache"]

AUGMENT_GEOMETRY = {"cifar10": (32, 4), "cifar100": (32, 4), "tiny_imagenet": (64, 8)}
"""(image size, crop padding) of the training augmentation (supplement B; reference code: Tiny 64, pad 8)."""

UNAUGMENTED = ("mnist",)
"""Image datasets trained without augmentation whatever ``data.augment`` says (MNIST: the Local-Lip code uses none)."""


def detect_format(root: str | Path, name: str = "cifar10") -> str:
    """The source format found in ``root`` for dataset ``name`` (see :func:`lipcert.data.cifar.detect_format`).

    'tiny_imagenet' for the official Tiny-ImageNet layout; for CIFAR 'pickle', 'binary',
    'image_folder' or 'torchvision' (nothing local: download); for MNIST 'idx' or 'torchvision'
    (:func:`lipcert.data.mnist.detect_format`).
    """
    if name == "tiny_imagenet":
        if find_tiny_imagenet_root(root) is None:
            raise FileNotFoundError(f"no Tiny-ImageNet layout (wnids.txt) in {root}")
        return "tiny_imagenet"
    if name == "mnist":
        return detect_mnist_format(root)
    if name not in ("cifar10", "cifar100"):
        raise ValueError(f"no file formats for dataset {name!r}; expected cifar10, cifar100, tiny_imagenet or mnist")
    return detect_cifar_format(root, 10 if name == "cifar10" else 100)


def load_data(cfg: DataConfig) -> TensorData:
    """Load the dataset a run needs (section 4 of the CLL paper; supplement B).

    two-moons: generated from ``cfg.seed``, unbounded domain.  CIFAR-10/100, Tiny-ImageNet and MNIST:
    uint8 images (N, C, H, W) (MNIST: C = 1) from :func:`data_root` in ``cfg.format``, optionally the
    first ``subset_train`` / ``subset_test`` images per class, domain (0, 1), and, when ``cfg.augment``,
    the supplement-B training augmentation (:func:`lipcert.data.augment.make_augment`); the datasets
    of :data:`UNAUGMENTED` (MNIST) never get one.
    """
    if cfg.name == "two_moons":
        s = make_two_moons_splits(cfg.seed, cfg.n_train, cfg.n_test, cfg.noise_radius)
        return TensorData(s.x_train, s.y_train, s.x_test, s.y_test, domain=None, label="two-moons")
    root = data_root(cfg)
    if cfg.name in ("cifar10", "cifar100"):
        data = load_cifar(root, 10 if cfg.name == "cifar10" else 100, cfg.format, cfg.subset_train, cfg.subset_test)
    elif cfg.name == "tiny_imagenet":
        data = load_tiny_imagenet(root, cfg.format, cfg.subset_train, cfg.subset_test)
    elif cfg.name == "mnist":
        data = load_mnist(root, cfg.format, cfg.subset_train, cfg.subset_test)
    else:
        raise ValueError(f"unknown dataset {cfg.name!r}")
    if cfg.augment and cfg.name not in UNAUGMENTED:
        data = replace(data, augment=make_augment(*AUGMENT_GEOMETRY[cfg.name]))
    return data


def prepare_data_cache(cfg: DataConfig, path: str | Path) -> TensorData:
    """Convert the dataset of ``cfg`` once into the verified ``.npz`` cache at ``path`` (atomic).

    The description stored is ``asdict(cfg)``; ``load_cache`` verifies every array's SHA-256 on use.
    If reading the sources fails, nothing is written (an existing cache at ``path`` stays as it was).
    """
    data = load_data(cfg)
    save_cache(data, path, asdict(cfg))
    return data
