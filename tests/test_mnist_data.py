"""MNIST (lipcert.data.mnist) from generated miniatures in the official IDX format.

The loader is checked against the arrays the miniature was written from (plain and gzipped files, in
the data folder and in torchvision's MNIST/raw); failure paths (missing file, bad magic, truncated
file, count mismatch, label out of range, no torchvision / offline) must name the file and the
expected value.  No network and no shared data are used.
"""

import gzip
import hashlib
import re
import struct
import sys
import urllib.error
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

from lipcert.data.mnist import IDX_FILES, detect_format, load_mnist
from lipcert.data.tensor_data import as_model_input, load_cache
from lipcert.datasets import detect_format as detect_dataset_format
from lipcert.datasets import load_data, prepare_data_cache
from lipcert.run_config import DATASET_NAMES, DataConfig, load_run_config

from fakes import fake_torchvision

TRAIN_IMAGES, TRAIN_LABELS = IDX_FILES["train"]
TEST_IMAGES, TEST_LABELS = IDX_FILES["test"]
ALL_FILES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)


# ---------------------------------------------------------------- miniature writer (official IDX format)

def _idx_bytes(array: np.ndarray) -> bytes:
    """IDX as the official files hold it: magic 0x0000 0x08 <ndim>, big-endian uint32 dims, uint8 data."""
    assert array.dtype == np.uint8
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def _split(per_class, seed):
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.repeat(np.arange(10), per_class)).astype(np.int64)  # shuffled, not class-sorted
    x = rng.integers(0, 256, (y.size, 28, 28), dtype=np.uint8)
    return x, y


def _mnist(train_per_class=3, test_per_class=2, seed=0):
    return (*_split(train_per_class, seed), *_split(test_per_class, seed + 1))


def write_mnist(folder: Path, x_tr, y_tr, x_te, y_te, gz=False) -> Path:
    """The four IDX files in ``folder`` (``gz``: gzipped, named ``*.gz`` as distributed)."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {TRAIN_IMAGES: x_tr, TRAIN_LABELS: y_tr.astype(np.uint8),
              TEST_IMAGES: x_te, TEST_LABELS: y_te.astype(np.uint8)}
    for name, a in arrays.items():
        raw = _idx_bytes(a)
        (folder / (f"{name}.gz" if gz else name)).write_bytes(gzip.compress(raw) if gz else raw)
    return folder


def _assert_same(data, x_tr, y_tr, x_te, y_te):
    assert data.x_train.dtype == data.x_test.dtype == torch.uint8
    assert data.y_train.dtype == data.y_test.dtype == torch.int64
    assert data.x_train.shape == (len(y_tr), 1, 28, 28) and data.x_test.shape == (len(y_te), 1, 28, 28)
    assert np.array_equal(data.x_train.numpy()[:, 0], x_tr) and np.array_equal(data.y_train.numpy(), y_tr)
    assert np.array_equal(data.x_test.numpy()[:, 0], x_te) and np.array_equal(data.y_test.numpy(), y_te)
    assert data.domain == (0.0, 1.0) and data.label == "MNIST" and data.augment is None


# ---------------------------------------------------------------- reading

@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
@pytest.mark.parametrize("where", [".", "MNIST/raw"])
def test_idx_files_are_read_exactly(tmp_path, gz, where):
    arrays = _mnist(seed=3)
    write_mnist(tmp_path / where, *arrays, gz=gz)
    assert detect_format(tmp_path) == "idx"
    for fmt in ("auto", "idx"):
        data = load_mnist(tmp_path, fmt)
        _assert_same(data, *arrays)
    prefix = "" if where == "." else "MNIST/raw/"
    suffix = ".gz" if gz else ""
    assert [name for name, _ in data.source_files] == [f"{prefix}{n}{suffix}" for n in ALL_FILES]
    raw = (tmp_path / where / f"{TRAIN_IMAGES}{suffix}").read_bytes()
    assert data.source_files[0][1] == hashlib.sha256(raw).hexdigest()  # the manifest hashes the file as stored
    x = as_model_input(data.x_train)
    assert x.dtype == torch.float32 and torch.equal(x, data.x_train.float() / 255)


def test_mixed_plain_and_gz_files_and_plain_preferred(tmp_path):
    arrays = _mnist(seed=5)
    write_mnist(tmp_path, *arrays, gz=True)
    (tmp_path / f"{TEST_LABELS}.gz").unlink()
    (tmp_path / TEST_LABELS).write_bytes(_idx_bytes(arrays[3].astype(np.uint8)))
    _assert_same(load_mnist(tmp_path), *arrays)
    # torchvision keeps both the .gz and the extracted file: the plain one is read
    other = _mnist(seed=6)
    write_mnist(tmp_path, *other, gz=False)
    _assert_same(load_mnist(tmp_path), *other)


def test_subsets_are_the_first_k_per_class(tmp_path):
    x_tr, y_tr, x_te, y_te = _mnist(train_per_class=4, test_per_class=3, seed=7)
    write_mnist(tmp_path, x_tr, y_tr, x_te, y_te)
    data = load_mnist(tmp_path, subset_train=2, subset_test=1)
    keep_tr = np.sort(np.concatenate([np.flatnonzero(y_tr == c)[:2] for c in range(10)]))
    keep_te = np.sort(np.concatenate([np.flatnonzero(y_te == c)[:1] for c in range(10)]))
    _assert_same(data, x_tr[keep_tr], y_tr[keep_tr], x_te[keep_te], y_te[keep_te])
    assert np.bincount(data.y_train.numpy(), minlength=10).tolist() == [2] * 10
    with pytest.raises(ValueError, match=r"test: subset of 4 per class requested, but class 0 \('0'\) has only 3"):
        load_mnist(tmp_path, subset_test=4)


# ---------------------------------------------------------------- source errors

@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
def test_missing_file_is_named(tmp_path, gz):
    write_mnist(tmp_path, *_mnist(), gz=gz)
    (tmp_path / (f"{TEST_LABELS}.gz" if gz else TEST_LABELS)).unlink()
    assert detect_format(tmp_path) == "idx"  # a partial set is not silently downloaded again
    with pytest.raises(FileNotFoundError, match=f"MNIST IDX file not found: .*{TEST_LABELS} .*missing in") as err:
        load_mnist(tmp_path)
    assert str(tmp_path / TEST_LABELS) in str(err.value) and "MNIST/raw" in str(err.value)
    assert "format=torchvision" in str(err.value)


def test_missing_files_in_torchvision_layout_name_that_folder(tmp_path):
    write_mnist(tmp_path / "MNIST" / "raw", *_mnist())
    (tmp_path / "MNIST" / "raw" / TRAIN_IMAGES).unlink()
    with pytest.raises(FileNotFoundError, match="not found: .*MNIST/raw/train-images-idx3-ubyte"):
        load_mnist(tmp_path, "idx")
    with pytest.raises(FileNotFoundError, match=f"not found: {re.escape(str(tmp_path / 'empty' / TRAIN_IMAGES))} "):
        load_mnist(tmp_path / "empty", "idx")


def _damage(tmp_path, name, data: bytes):
    write_mnist(tmp_path, *_mnist())
    (tmp_path / name).write_bytes(data)


def test_bad_magic_names_the_file_and_the_expected_magic(tmp_path):
    x = _mnist()[0]
    _damage(tmp_path, TRAIN_IMAGES, b"\x00\x00\x08\x01" + _idx_bytes(x)[4:])
    with pytest.raises(ValueError, match=rf"{TRAIN_IMAGES}: IDX magic number 0x00000801, expected 0x00000803"):
        load_mnist(tmp_path)
    _damage(tmp_path, TEST_LABELS, _idx_bytes(x))  # an image file where the labels belong
    with pytest.raises(ValueError, match=rf"{TEST_LABELS}: IDX magic number 0x00000803, expected 0x00000801"):
        load_mnist(tmp_path)
    _damage(tmp_path, TRAIN_LABELS, b"\x00\x00")
    with pytest.raises(ValueError, match=rf"{TRAIN_LABELS}: 2 bytes, too short for an IDX header"):
        load_mnist(tmp_path)


def test_truncated_or_padded_file_names_the_expected_length(tmp_path):
    x = _mnist()[0]  # 30 images: 16 + 30 * 784 = 23536 bytes
    _damage(tmp_path, TRAIN_IMAGES, _idx_bytes(x)[:-5])
    with pytest.raises(ValueError, match=rf"{TRAIN_IMAGES}: file length 23531 bytes, but its header "
                                         r"\(dimensions \[30, 28, 28\]\) calls for 23536 bytes.*truncated"):
        load_mnist(tmp_path)
    _damage(tmp_path, TRAIN_IMAGES, _idx_bytes(x) + b"\x00")
    with pytest.raises(ValueError, match=r"file length 23537 bytes.*calls for 23536 bytes.*trailing bytes"):
        load_mnist(tmp_path)
    _damage(tmp_path, TRAIN_IMAGES, _idx_bytes(x)[:10])  # not even the whole header
    with pytest.raises(ValueError, match=rf"{TRAIN_IMAGES}: 10 bytes, too short for the 16-byte IDX header"):
        load_mnist(tmp_path)


def test_truncated_gzip_and_wrong_image_size_are_named(tmp_path):
    write_mnist(tmp_path, *_mnist(), gz=True)
    path = tmp_path / f"{TEST_IMAGES}.gz"
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(ValueError, match=rf"{TEST_IMAGES}.gz: not a readable gzip file"):
        load_mnist(tmp_path)
    write_mnist(tmp_path, *_mnist(), gz=True)
    path.write_bytes(gzip.compress(_idx_bytes(np.zeros((20, 32, 32), np.uint8))))
    with pytest.raises(ValueError, match=rf"{TEST_IMAGES}.gz: images of 32x32 pixels, expected 28x28"):
        load_mnist(tmp_path)


def test_label_count_mismatch_names_both_files(tmp_path):
    x_tr, y_tr, x_te, y_te = _mnist()
    _damage(tmp_path, TEST_LABELS, _idx_bytes(y_te[:-1].astype(np.uint8)))
    with pytest.raises(ValueError, match=rf"{TEST_IMAGES} holds 20 images but .*{TEST_LABELS} holds 19 labels"):
        load_mnist(tmp_path)


def test_label_out_of_range_is_named(tmp_path):
    y = _mnist()[1].astype(np.uint8)
    y[4] = 10
    _damage(tmp_path, TRAIN_LABELS, _idx_bytes(y))
    with pytest.raises(ValueError, match=rf"{TRAIN_LABELS}: labels must lie in \[0, 9\], found 10 at index 4"):
        load_mnist(tmp_path)


def test_unknown_format_is_rejected(tmp_path):
    with pytest.raises(ValueError, match=r"unknown MNIST format 'pickle'; "
                                         r"expected one of \['auto', 'torchvision', 'idx'\]"):
        load_mnist(tmp_path, "pickle")


# ---------------------------------------------------------------- torchvision

def _fake_torchvision(monkeypatch, calls, download):
    fake_torchvision(monkeypatch, calls, download, ("MNIST",))


def _assert_says_how_to_provide_files(err, root):
    for hint in (*ALL_FILES, ".gz", str(root), str(root / "MNIST" / "raw"), "LIPCERT_DATA_ROOT"):
        assert hint in str(err.value)


def test_torchvision_offline_says_how_to_provide_local_files(tmp_path, monkeypatch):
    calls = []

    def offline(root):
        raise urllib.error.URLError("[Errno -2] Name or service not known")
    _fake_torchvision(monkeypatch, calls, offline)
    assert detect_format(tmp_path) == "torchvision"  # nothing local: auto means download
    with pytest.raises(RuntimeError, match="MNIST: download into .* with torchvision failed.*URLError") as err:
        load_mnist(tmp_path)
    _assert_says_how_to_provide_files(err, tmp_path)
    assert calls == [(str(tmp_path), True, True)]


def test_torchvision_missing_says_how_to_provide_local_files(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # import torchvision raises ImportError
    with pytest.raises(RuntimeError, match="MNIST: torchvision is not installed, so it cannot be downloaded") as err:
        load_mnist(tmp_path, "torchvision")
    _assert_says_how_to_provide_files(err, tmp_path)


def test_torchvision_download_path_reads_mnist_raw(tmp_path, monkeypatch):
    arrays = _mnist(seed=9)
    calls = []

    def download(root):  # torchvision leaves the .gz and the extracted files in MNIST/raw
        write_mnist(root / "MNIST" / "raw", *arrays, gz=True)
        write_mnist(root / "MNIST" / "raw", *arrays, gz=False)
    _fake_torchvision(monkeypatch, calls, download)
    data = load_mnist(tmp_path, "torchvision")
    _assert_same(data, *arrays)
    assert [c[1:] for c in calls] == [(True, True), (False, True)]
    assert data.source_files[0][0] == f"MNIST/raw/{TRAIN_IMAGES}"


# ---------------------------------------------------------------- run config and dispatch

def test_data_config_accepts_mnist_and_rejects_other_formats(tmp_path):
    assert "mnist" in DATASET_NAMES
    for fmt in ("auto", "torchvision", "idx"):
        assert DataConfig(name="mnist", format=fmt).format == fmt
    cfg = load_run_config({"model": "4C3F", "epochs": 1, "batch_size": 8,
                           "data": {"name": "mnist", "root": str(tmp_path), "format": "idx", "subset_train": 2},
                           "loss": {"name": "cll", "eps": 1.58, "p": 0.15}}).data
    assert (cfg.name, cfg.format, cfg.subset_train) == ("mnist", "idx", 2)
    with pytest.raises(ValueError, match=r"data.format 'pickle' is not a source of 'mnist'; "
                                         r"expected one of \['auto', 'torchvision', 'idx'\]"):
        DataConfig(name="mnist", format="pickle")
    with pytest.raises(ValueError, match=r"data.format 'idx' is not a source of 'cifar10'"):
        DataConfig(name="cifar10", format="idx")
    with pytest.raises(ValueError, match=r"data.format 'idx' is not a source of 'tiny_imagenet'"):
        DataConfig(name="tiny_imagenet", format="idx")
    with pytest.raises(ValueError, match=r"data.n_train applies only to 'two_moons', not to 'mnist'"):
        DataConfig(name="mnist", n_train=100)
    with pytest.raises(ValueError, match=r"data.subset_test must be in \[1"):
        DataConfig(name="mnist", subset_test=0)


def test_load_data_end_to_end_without_augmentation(tmp_path, monkeypatch):
    arrays = _mnist(seed=11)
    write_mnist(tmp_path / "mnist" / "MNIST" / "raw", *arrays, gz=True)
    _assert_same(load_data(DataConfig(name="mnist", root=str(tmp_path / "mnist"), format="idx")), *arrays)
    monkeypatch.setenv("LIPCERT_DATA_ROOT", str(tmp_path))
    assert detect_dataset_format(tmp_path / "mnist", "mnist") == "idx"
    assert detect_dataset_format(tmp_path / "nothing", "mnist") == "torchvision"
    data = load_data(DataConfig(name="mnist", augment=True))  # $LIPCERT_DATA_ROOT/mnist, format auto
    _assert_same(data, *arrays)  # MNIST is never augmented (the Local-Lip code uses none)


def test_cache_round_trip(tmp_path):
    write_mnist(tmp_path / "src", *_mnist(seed=13), gz=True)
    cfg = DataConfig(name="mnist", root=str(tmp_path / "src"), format="idx", subset_train=2)
    data = prepare_data_cache(cfg, tmp_path / "cache" / "mnist.npz")
    back, description = load_cache(tmp_path / "cache" / "mnist.npz")
    assert description == asdict(cfg)
    assert back.x_train.dtype == torch.uint8 and back.x_train.shape == (20, 1, 28, 28)
    for name in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(back, name), getattr(data, name))
    assert back.augment is data.augment is None
    assert back.source_files == data.source_files and len(back.source_files) == 4
    assert back.label == "MNIST" and back.domain == (0.0, 1.0)
