"""CIFAR-10 and CIFAR-100 from the formats users have (CLL paper section 4.2, supplement B).

Sources, picked by :func:`detect_format` from what is in the data folder (``format`` overrides it):

* ``pickle``: the official python batches, ``cifar-10-batches-py/data_batch_1..5`` + ``test_batch``
  (dicts with ``b'data'`` (N, 3072) uint8 and ``b'labels'``) or ``cifar-100-python/train`` + ``test``
  (``b'fine_labels'``; the 100 fine classes are used).  Read with a restricted unpickler that only
  rebuilds numpy arrays.
* ``binary``: the official binary batches, ``cifar-10-batches-bin/data_batch_1..5.bin`` +
  ``test_batch.bin`` (records of 1 label byte + 3072 pixel bytes) or ``cifar-100-binary/train.bin`` +
  ``test.bin`` (coarse byte + fine byte + 3072).
* ``image_folder``: an export ``train/<class>/*.png|jpg`` and ``test/<class>/...``.  The class folders
  must carry the official class names; labels follow the official order (for both data sets the
  alphabetical order of the names); files are read in name order.  A JPEG export is labelled
  "CIFAR-10 (JPEG export)" (lossy: accuracies are close to, not equal to, those on the originals).
* ``torchvision``: ``torchvision.datasets.CIFAR10/100(root, download=True)`` downloads (and
  md5-checks) the official python batches into ``root``, which are then read as ``pickle``.  Without
  network access this fails with an error that says how to provide local files.

Pixels are kept as uint8 (N, 3, 32, 32) (channel planes R, G, B as in the official 3072-byte rows);
:func:`lipcert.data.tensor_data.as_model_input` scales them to [0, 1] on the training device.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from .tensor_data import SourceFiles, TensorData, decode_rgb_image, first_k_per_class

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR100_CLASSES",
    "CIFAR_FORMATS",
    "CifarFormat",
    "detect_format",
    "load_cifar",
]

CifarFormat = Literal["auto", "torchvision", "pickle", "binary", "image_folder"]
CIFAR_FORMATS: tuple[str, ...] = ("auto", "torchvision", "pickle", "binary", "image_folder")

CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
"""Official CIFAR-10 label order (``batches.meta`` ``label_names``)."""

CIFAR100_CLASSES: tuple[str, ...] = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle",
    "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle",
    "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur",
    "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard",
    "lamp", "lawn_mower", "leopard", "lion", "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain",
    "mouse", "mushroom", "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road", "rocket",
    "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake", "spider",
    "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone", "television", "tiger", "tractor",
    "train", "trout", "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm")
"""Official CIFAR-100 fine label order (``meta`` ``fine_label_names``)."""

IMAGE_SIZE = 32
_PIXELS = 3 * IMAGE_SIZE * IMAGE_SIZE
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def _layout(num_classes: int) -> dict:
    if num_classes == 10:
        return {"name": "CIFAR-10", "classes": CIFAR10_CLASSES,
                "pickle_dir": "cifar-10-batches-py", "pickle_train": [f"data_batch_{i}" for i in range(1, 6)],
                "pickle_test": ["test_batch"], "pickle_labels": "labels",
                "binary_dir": "cifar-10-batches-bin", "binary_train": [f"data_batch_{i}.bin" for i in range(1, 6)],
                "binary_test": ["test_batch.bin"], "label_bytes": 1}
    if num_classes == 100:
        return {"name": "CIFAR-100", "classes": CIFAR100_CLASSES,
                "pickle_dir": "cifar-100-python", "pickle_train": ["train"], "pickle_test": ["test"],
                "pickle_labels": "fine_labels",
                "binary_dir": "cifar-100-binary", "binary_train": ["train.bin"], "binary_test": ["test.bin"],
                "label_bytes": 2}
    raise ValueError(f"num_classes must be 10 (CIFAR-10) or 100 (CIFAR-100), got {num_classes!r}")


def _batch_dir(root: Path, subdir: str, first_file: str) -> Path | None:
    """The folder holding the batches: ``root/subdir`` or ``root`` itself; None if neither has them."""
    for candidate in (root / subdir, root):
        if (candidate / first_file).is_file():
            return candidate
    return None


def detect_format(root: str | Path, num_classes: int = 10) -> str:
    """Which CIFAR source ``root`` holds: 'pickle', 'binary', 'image_folder', else 'torchvision' (download).

    Looks for the official python batches (``cifar-10-batches-py/`` or ``cifar-100-python/``, or the
    batch files directly in ``root``), then the binary batches, then ``train/`` and ``test/`` class
    folders.  An empty or missing folder means 'torchvision', i.e. download into ``root``.
    """
    lay = _layout(num_classes)
    root = Path(root)
    if _batch_dir(root, lay["pickle_dir"], lay["pickle_train"][0]) is not None:
        return "pickle"
    if _batch_dir(root, lay["binary_dir"], lay["binary_train"][0]) is not None:
        return "binary"
    if (root / "train").is_dir() and (root / "test").is_dir():
        return "image_folder"
    return "torchvision"


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that rebuilds numpy arrays and nothing else (the official batches need no more)."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 store the raw bytes
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} (only numpy arrays are expected)")


def _get(d: dict, key: str):
    for k in (key.encode(), key):
        if k in d:
            return d[k]
    raise KeyError(key)


def _read_pickle_batch(sources: SourceFiles, path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    raw = sources.read(path, "an official CIFAR python batch")
    try:
        batch = _NumpyOnlyUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as err:  # any unpickling failure is a corrupt/foreign file
        raise ValueError(f"{path}: not a CIFAR python batch ({type(err).__name__}: {err})") from err
    if not isinstance(batch, dict):
        raise ValueError(f"{path}: expected a pickled dict with b'data' and b'{label_key}', got {type(batch).__name__}")
    try:
        data, labels = _get(batch, "data"), _get(batch, label_key)
    except KeyError as err:
        raise ValueError(f"{path}: missing key b'{err.args[0]}' (expected b'data' and b'{label_key}')") from None
    data = np.asarray(data)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _PIXELS:
        raise ValueError(f"{path}: b'data' has shape {data.shape} and dtype {data.dtype}, expected (N, {_PIXELS}) uint8")
    return _checked(path, data.reshape(-1, 3, IMAGE_SIZE, IMAGE_SIZE), labels, num_classes)


def _read_binary_batch(sources: SourceFiles, path: Path, label_bytes: int, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    raw = sources.read(path, "an official CIFAR binary batch")
    record = label_bytes + _PIXELS
    if len(raw) == 0 or len(raw) % record:
        raise ValueError(f"{path}: size {len(raw)} bytes is not a positive multiple of the record size {record} "
                         f"({label_bytes} label byte(s) + {_PIXELS} pixels)")
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(-1, record)
    labels = rows[:, label_bytes - 1].astype(np.int64)  # CIFAR-100: [coarse, fine]; the fine label is last
    return _checked(path, rows[:, label_bytes:].reshape(-1, 3, IMAGE_SIZE, IMAGE_SIZE).copy(), labels, num_classes)


def _checked(path: Path, x: np.ndarray, y: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{path}: {x.shape[0]} images but {y.shape[0]} labels")
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"{path}: labels must lie in [0, {num_classes - 1}], found {int(y.min())}..{int(y.max())}")
    return x, y


def _read_batches(folder: Path, names: list[str], read) -> tuple[np.ndarray, np.ndarray]:
    parts = [read(folder / name) for name in names]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _subset(x: np.ndarray, y: np.ndarray, k: int | None, split: str, classes) -> tuple[np.ndarray, np.ndarray]:
    if k is None:
        return x, y
    keep = first_k_per_class(y, k, split, classes)
    return x[keep], y[keep]


def _image_folder_listing(root: Path, split: str, classes: tuple[str, ...], name: str) -> list[tuple[Path, int]]:
    split_dir = root / split
    if not split_dir.is_dir():
        raise FileNotFoundError(f"image folder export: {split_dir} not found (expected {split}/<class>/*.png|jpg)")
    found = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
    missing = [c for c in classes if c not in found]
    unexpected = [c for c in found if c not in classes]
    if missing or unexpected:
        raise ValueError(f"{split_dir}: class folders must be the {len(classes)} {name} class names "
                         f"{list(classes)}; missing {missing}, unexpected {unexpected}")
    listing = []
    for label, cls in enumerate(classes):
        files = sorted(p for p in (split_dir / cls).iterdir() if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f"{split_dir / cls}: no .png/.jpg images")
        listing.extend((p, label) for p in files)
    return listing


def _read_image_folder(sources: SourceFiles, root: Path, split: str, classes, name: str,
                       subset: int | None) -> tuple[np.ndarray, np.ndarray, bool]:
    listing = _image_folder_listing(root, split, classes, name)
    labels = np.array([label for _, label in listing], dtype=np.int64)
    keep = first_k_per_class(labels, subset, split, classes) if subset is not None else np.arange(len(listing))
    images = np.empty((len(keep), 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    for out, i in enumerate(keep):
        path = listing[i][0]
        images[out] = decode_rgb_image(sources.read(path, "an image file"), path, (IMAGE_SIZE, IMAGE_SIZE))
    jpeg = any(listing[i][0].suffix.lower() in (".jpg", ".jpeg") for i in keep)
    return images, labels[keep], jpeg


def _download_with_torchvision(root: Path, num_classes: int) -> None:
    lay = _layout(num_classes)
    how = (f"provide the data locally instead: put the official python batches ({lay['pickle_dir']}/), the "
           f"binary batches ({lay['binary_dir']}/) or an image-folder export (train/<class>/*.png|jpg and "
           f"test/<class>/...) into {root} (data.root, or $LIPCERT_DATA_ROOT/<name>), or set data.format")
    try:
        import torchvision
    except ImportError as err:
        raise RuntimeError(f"{lay['name']}: torchvision is not installed, so it cannot be downloaded; {how}") from err
    dataset = torchvision.datasets.CIFAR10 if num_classes == 10 else torchvision.datasets.CIFAR100
    try:
        for train in (True, False):
            dataset(str(root), train=train, download=True)
    except Exception as err:  # URLError, OSError, RuntimeError (integrity check) ...
        raise RuntimeError(f"{lay['name']}: download into {root} with torchvision failed "
                           f"({type(err).__name__}: {err}); {how}") from err


def load_cifar(root: str | Path, num_classes: int = 10, format: CifarFormat = "auto",
               subset_train: int | None = None, subset_test: int | None = None) -> TensorData:
    """CIFAR-10 (``num_classes=10``) or CIFAR-100 (100 fine classes) as uint8 TensorData (section 4.2).

    ``format`` 'auto' uses :func:`detect_format`.  ``subset_train`` / ``subset_test`` keep the first k
    images of every class (deterministic, class-balanced; for the quick scale); an image folder then
    decodes only those files.  The result has uint8 x (N, 3, 32, 32), int64 y, domain (0, 1), no
    augmentation, the label "CIFAR-10", "CIFAR-100" or "... (JPEG export)"/"... (PNG export)", and
    the SHA-256 manifest of the source files read.  Missing files raise FileNotFoundError naming the
    file; malformed files raise ValueError naming the file and the expected shape/content.
    """
    lay = _layout(num_classes)
    root = Path(root)
    if format not in CIFAR_FORMATS:
        raise ValueError(f"unknown CIFAR format {format!r}; expected one of {list(CIFAR_FORMATS)}")
    chosen = detect_format(root, num_classes) if format == "auto" else format
    if chosen == "torchvision":  # downloads, or md5-checks files already there
        _download_with_torchvision(root, num_classes)
        chosen = "pickle"
    sources = SourceFiles(root)
    classes = lay["classes"]
    label = lay["name"]
    if chosen == "pickle":
        folder = _batch_dir(root, lay["pickle_dir"], lay["pickle_train"][0]) or root / lay["pickle_dir"]

        def read(p):
            return _read_pickle_batch(sources, p, lay["pickle_labels"], num_classes)
        x_train, y_train = _subset(*_read_batches(folder, lay["pickle_train"], read), subset_train, "train", classes)
        x_test, y_test = _subset(*_read_batches(folder, lay["pickle_test"], read), subset_test, "test", classes)
    elif chosen == "binary":
        folder = _batch_dir(root, lay["binary_dir"], lay["binary_train"][0]) or root / lay["binary_dir"]

        def read(p):
            return _read_binary_batch(sources, p, lay["label_bytes"], num_classes)
        x_train, y_train = _subset(*_read_batches(folder, lay["binary_train"], read), subset_train, "train", classes)
        x_test, y_test = _subset(*_read_batches(folder, lay["binary_test"], read), subset_test, "test", classes)
    else:
        x_train, y_train, jpeg_train = _read_image_folder(sources, root, "train", classes, lay["name"], subset_train)
        x_test, y_test, jpeg_test = _read_image_folder(sources, root, "test", classes, lay["name"], subset_test)
        label = f"{lay['name']} (JPEG export)" if (jpeg_train or jpeg_test) else f"{lay['name']} (PNG export)"
    return TensorData(torch.from_numpy(np.ascontiguousarray(x_train)), torch.from_numpy(y_train.astype(np.int64)),
                      torch.from_numpy(np.ascontiguousarray(x_test)), torch.from_numpy(y_test.astype(np.int64)),
                      domain=(0.0, 1.0), label=label, source_files=sources.manifest())
