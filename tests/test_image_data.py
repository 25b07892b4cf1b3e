"""Image datasets (CIFAR-10/100, Tiny-ImageNet) from generated miniatures in the real file formats.

Every loader is checked against the arrays the miniature was written from; failure paths (missing
files, corrupt files, wrong shapes, checksum mismatches) must name the file and the expected value, and
a failed preparation must leave no cache behind.  No network and no shared data are used.
"""

import hashlib
import json
import pickle
import urllib.error
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lipcert.data.augment import RandomImageAugment
from lipcert.data.cifar import CIFAR10_CLASSES, CIFAR100_CLASSES, detect_format, load_cifar
from lipcert.data.tensor_data import first_k_per_class, load_cache, save_cache
from lipcert.data.tiny_imagenet import load_tiny_imagenet
from lipcert.datasets import load_data, prepare_data_cache
from lipcert.run_config import DataConfig, load_run_config
from lipcert.training import train_run

from fakes import fake_torchvision


# ---------------------------------------------------------------- miniature writers (official formats)

def _split(num_classes, per_class, seed, size=32):
    """Random uint8 images, labels in a shuffled (not class-sorted) order."""
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.repeat(np.arange(num_classes), per_class)).astype(np.int64)
    x = rng.integers(0, 256, (y.size, 3, size, size), dtype=np.uint8)
    return x, y


def _cifar(num_classes=10, train_per_class=3, test_per_class=2, seed=0):
    return (*_split(num_classes, train_per_class, seed), *_split(num_classes, test_per_class, seed + 1))


def write_cifar_pickle(root: Path, x_tr, y_tr, x_te, y_te, num_classes=10) -> Path:
    """python batches as the official archives hold them: pickled dicts with bytes keys."""
    if num_classes == 10:
        folder = root / "cifar-10-batches-py"
        folder.mkdir(parents=True)
        parts = np.array_split(np.arange(len(y_tr)), 5)
        files = [(f"data_batch_{i + 1}", x_tr[p], y_tr[p]) for i, p in enumerate(parts)] + [("test_batch", x_te, y_te)]
        for name, x, y in files:
            with open(folder / name, "wb") as fh:
                pickle.dump({b"batch_label": name.encode(), b"labels": [int(v) for v in y],
                             b"data": x.reshape(len(y), -1), b"filenames": [b"f.png"] * len(y)}, fh, protocol=2)
    else:
        folder = root / "cifar-100-python"
        folder.mkdir(parents=True)
        for name, x, y in (("train", x_tr, y_tr), ("test", x_te, y_te)):
            with open(folder / name, "wb") as fh:
                pickle.dump({b"fine_labels": [int(v) for v in y], b"coarse_labels": [int(v) // 5 for v in y],
                             b"data": x.reshape(len(y), -1), b"batch_label": name.encode()}, fh, protocol=2)
    return folder


def write_cifar_binary(root: Path, x_tr, y_tr, x_te, y_te, num_classes=10) -> Path:
    """binary batches: [label] + 3072 pixel bytes (CIFAR-100: [coarse, fine] + 3072)."""
    def records(x, y):
        labels = y[:, None].astype(np.uint8) if num_classes == 10 else np.stack([(y // 5), y], 1).astype(np.uint8)
        return np.concatenate([labels, x.reshape(len(y), -1)], axis=1).tobytes()

    folder = root / ("cifar-10-batches-bin" if num_classes == 10 else "cifar-100-binary")
    folder.mkdir(parents=True)
    if num_classes == 10:
        parts = np.array_split(np.arange(len(y_tr)), 5)
        for i, p in enumerate(parts):
            (folder / f"data_batch_{i + 1}.bin").write_bytes(records(x_tr[p], y_tr[p]))
        (folder / "test_batch.bin").write_bytes(records(x_te, y_te))
    else:
        (folder / "train.bin").write_bytes(records(x_tr, y_tr))
        (folder / "test.bin").write_bytes(records(x_te, y_te))
    return folder


def write_image_folder(root: Path, split: str, x, y, classes, ext="png"):
    """``split/<class>/NNNN.ext``, NNNN counting within the class in data order (as the JPEG export)."""
    counts = {}
    for img, label in zip(x, y):
        folder = root / split / classes[label]
        folder.mkdir(parents=True, exist_ok=True)
        n = counts.get(label, 0)
        counts[label] = n + 1
        kwargs = {"quality": 100, "subsampling": 0} if ext == "jpg" else {}
        Image.fromarray(img.transpose(1, 2, 0)).save(folder / f"{n:04d}.{ext}", **kwargs)


def _smooth_images(n, size, seed):
    """JPEG-friendly images (a constant colour per image) so decoded values are close to the originals."""
    colours = np.random.default_rng(seed).integers(20, 236, (n, 3, 1, 1), dtype=np.uint8)
    return np.broadcast_to(colours, (n, 3, size, size)).copy()


def write_tiny(root: Path, wnids, train_per_class=3, val_per_class=2, seed=0):
    """Official Tiny-ImageNet layout; returns the images and labels it wrote (labels = wnids order)."""
    base = root / "tiny-imagenet-200"
    (base / "val" / "images").mkdir(parents=True)
    (base / "wnids.txt").write_text("\n".join(wnids) + "\n")
    x_tr = _smooth_images(len(wnids) * train_per_class, 64, seed)
    y_tr = np.repeat(np.arange(len(wnids)), train_per_class)
    for i, (img, label) in enumerate(zip(x_tr, y_tr)):
        folder = base / "train" / wnids[label] / "images"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img.transpose(1, 2, 0)).save(folder / f"{wnids[label]}_{i % train_per_class}.JPEG",
                                                     quality=100, subsampling=0)
        (base / "train" / wnids[label] / f"{wnids[label]}_boxes.txt").write_text("")
    y_te = np.tile(np.arange(len(wnids)), val_per_class)  # interleaved classes, like the official file
    x_te = _smooth_images(len(y_te), 64, seed + 1)
    lines = []
    for i, (img, label) in enumerate(zip(x_te, y_te)):
        Image.fromarray(img.transpose(1, 2, 0)).save(base / "val" / "images" / f"val_{i}.JPEG", quality=100, subsampling=0)
        lines.append(f"val_{i}.JPEG\t{wnids[label]}\t0\t0\t63\t63")
    (base / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return base, x_tr, y_tr, x_te, y_te


def _assert_same(data, x_tr, y_tr, x_te, y_te):
    assert data.x_train.dtype == torch.uint8 and data.y_train.dtype == torch.int64
    assert np.array_equal(data.x_train.numpy(), x_tr) and np.array_equal(data.y_train.numpy(), y_tr)
    assert np.array_equal(data.x_test.numpy(), x_te) and np.array_equal(data.y_test.numpy(), y_te)
    assert data.domain == (0.0, 1.0)


def _by_class(x, y, num_classes):
    """Reorder to class-major order (what an image folder listing gives), keeping order within a class."""
    order = np.concatenate([np.flatnonzero(y == c) for c in range(num_classes)])
    return x[order], y[order]


# ---------------------------------------------------------------- CIFAR loaders

def test_cifar10_pickle_batches(tmp_path):
    arrays = _cifar()
    folder = write_cifar_pickle(tmp_path, *arrays)
    assert detect_format(tmp_path) == "pickle"
    data = load_cifar(tmp_path, 10)
    _assert_same(data, *arrays)
    assert data.label == "CIFAR-10" and data.augment is None
    manifest = dict(data.source_files)
    assert set(manifest) == {f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)} | {"cifar-10-batches-py/test_batch"}
    assert manifest["cifar-10-batches-py/test_batch"] == hashlib.sha256((folder / "test_batch").read_bytes()).hexdigest()
    _assert_same(load_cifar(folder, 10), *arrays)  # root may also be the batch folder itself


def test_cifar100_pickle_uses_fine_labels(tmp_path):
    arrays = _cifar(100, 2, 1)
    write_cifar_pickle(tmp_path, *arrays, num_classes=100)
    data = load_cifar(tmp_path, 100)
    _assert_same(data, *arrays)
    assert data.label == "CIFAR-100" and int(data.y_train.max()) == 99


@pytest.mark.parametrize("num_classes", [10, 100])
def test_cifar_binary_batches(tmp_path, num_classes):
    arrays = _cifar(num_classes, 2, 1)
    write_cifar_binary(tmp_path, *arrays, num_classes=num_classes)
    assert detect_format(tmp_path, num_classes) == "binary"
    _assert_same(load_cifar(tmp_path, num_classes), *arrays)


def test_explicit_format_overrides_detection(tmp_path):
    pickled, binary = _cifar(seed=0), _cifar(seed=10)
    write_cifar_pickle(tmp_path, *pickled)
    write_cifar_binary(tmp_path, *binary)
    assert detect_format(tmp_path) == "pickle"
    _assert_same(load_cifar(tmp_path, 10, "auto"), *pickled)
    _assert_same(load_cifar(tmp_path, 10, "binary"), *binary)
    with pytest.raises(ValueError, match="unknown CIFAR format 'zip'"):
        load_cifar(tmp_path, 10, "zip")


def test_png_image_folder_is_exact_and_uses_official_class_order(tmp_path):
    x_tr, y_tr, x_te, y_te = _cifar()
    write_image_folder(tmp_path, "train", x_tr, y_tr, CIFAR10_CLASSES)
    write_image_folder(tmp_path, "test", x_te, y_te, CIFAR10_CLASSES)
    assert detect_format(tmp_path) == "image_folder"
    data = load_cifar(tmp_path, 10)
    _assert_same(data, *_by_class(x_tr, y_tr, 10), *_by_class(x_te, y_te, 10))
    assert data.label == "CIFAR-10 (PNG export)"
    assert dict(data.source_files)["train/truck/0002.png"] == \
        hashlib.sha256((tmp_path / "train/truck/0002.png").read_bytes()).hexdigest()


def test_jpeg_export_is_labelled_and_close_to_the_originals(tmp_path):
    x_tr, y_tr = _smooth_images(20, 32, 0), np.repeat(np.arange(10), 2)
    write_image_folder(tmp_path, "train", x_tr, y_tr, CIFAR10_CLASSES, ext="jpg")
    write_image_folder(tmp_path, "test", x_tr, y_tr, CIFAR10_CLASSES, ext="jpg")
    data = load_cifar(tmp_path, 10)
    assert data.label == "CIFAR-10 (JPEG export)"
    assert np.array_equal(data.y_train.numpy(), y_tr)
    assert np.abs(data.x_train.numpy().astype(int) - x_tr.astype(int)).max() <= 3  # lossy, but close


def test_image_folder_with_wrong_class_names_is_rejected(tmp_path):
    x, y = _split(10, 1, 0)
    names = list(CIFAR10_CLASSES[:9]) + ["lorry"]
    write_image_folder(tmp_path, "train", x, y, names)
    write_image_folder(tmp_path, "test", x, y, names)
    with pytest.raises(ValueError, match=r"missing \['truck'\], unexpected \['lorry'\]"):
        load_cifar(tmp_path, 10)


def test_cifar100_image_folder_class_names_are_the_sorted_official_names(tmp_path):
    assert list(CIFAR100_CLASSES) == sorted(CIFAR100_CLASSES) and len(set(CIFAR100_CLASSES)) == 100
    assert list(CIFAR10_CLASSES) == sorted(CIFAR10_CLASSES)
    x, y = _split(100, 1, 0)
    write_image_folder(tmp_path, "train", x, y, CIFAR100_CLASSES)
    write_image_folder(tmp_path, "test", x, y, CIFAR100_CLASSES)
    data = load_cifar(tmp_path, 100)
    assert np.array_equal(data.y_train.numpy(), np.arange(100))
    assert np.array_equal(data.x_train.numpy(), _by_class(x, y, 100)[0])


def _fake_torchvision(monkeypatch, calls, download):
    fake_torchvision(monkeypatch, calls, download, ("CIFAR10", "CIFAR100"))


def test_torchvision_download_failure_says_how_to_provide_local_files(tmp_path, monkeypatch):
    calls = []

    def offline(root):
        raise urllib.error.URLError("[Errno -2] Name or service not known")
    _fake_torchvision(monkeypatch, calls, offline)
    assert detect_format(tmp_path) == "torchvision"  # nothing local: auto means download
    with pytest.raises(RuntimeError, match="download .* with torchvision failed.*URLError") as err:
        load_cifar(tmp_path, 10)
    for hint in ("cifar-10-batches-py", "cifar-10-batches-bin", "train/<class>", "LIPCERT_DATA_ROOT", str(tmp_path)):
        assert hint in str(err.value)
    assert calls == [(str(tmp_path), True, True)]


def test_torchvision_download_path_reads_the_downloaded_batches(tmp_path, monkeypatch):
    arrays = _cifar(seed=4)
    calls = []

    def download(root):
        if not (root / "cifar-10-batches-py").exists():
            write_cifar_pickle(root, *arrays)
    _fake_torchvision(monkeypatch, calls, download)
    _assert_same(load_cifar(tmp_path, 10, "torchvision"), *arrays)
    assert [c[1:] for c in calls] == [(True, True), (False, True)]


# ---------------------------------------------------------------- source errors

def test_missing_batch_names_the_file(tmp_path):
    folder = write_cifar_pickle(tmp_path, *_cifar())
    (folder / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match=r"data_batch_3 \(expected an official CIFAR python batch\)"):
        load_cifar(tmp_path, 10)


def test_malformed_batches_name_the_file_and_the_expected_shape(tmp_path):
    x_tr, y_tr, x_te, y_te = _cifar()
    folder = write_cifar_pickle(tmp_path / "p", x_tr, y_tr, x_te, y_te)
    with open(folder / "data_batch_2", "wb") as fh:
        pickle.dump({b"data": np.zeros((6, 3000), np.uint8), b"labels": [0] * 6}, fh)
    with pytest.raises(ValueError, match=r"data_batch_2: b'data' has shape \(6, 3000\).*expected \(N, 3072\) uint8"):
        load_cifar(tmp_path / "p", 10)
    folder = write_cifar_binary(tmp_path / "b", x_tr, y_tr, x_te, y_te)
    (folder / "test_batch.bin").write_bytes((folder / "test_batch.bin").read_bytes()[:-5])
    with pytest.raises(ValueError, match=r"test_batch.bin: size .* record size 3073"):
        load_cifar(tmp_path / "b", 10)


def test_pickle_batches_cannot_run_code(tmp_path):
    folder = write_cifar_pickle(tmp_path, *_cifar())

    class Evil:
        def __reduce__(self):
            return (print, ("owned",))
    with open(folder / "data_batch_1", "wb") as fh:
        pickle.dump({b"data": Evil(), b"labels": []}, fh)
    with pytest.raises(ValueError, match=r"data_batch_1: not a CIFAR python batch.*refusing to load builtins.print"):
        load_cifar(tmp_path, 10)


def test_image_of_wrong_size_or_corrupt_image_names_the_file(tmp_path):
    x, y = _split(10, 2, 0)
    write_image_folder(tmp_path, "train", x, y, CIFAR10_CLASSES)
    write_image_folder(tmp_path, "test", x, y, CIFAR10_CLASSES)
    bad = tmp_path / "train" / "cat" / "0001.png"
    Image.new("RGB", (31, 32)).save(bad)
    with pytest.raises(ValueError, match=r"0001.png: image is 31x32 .*expected 32x32"):
        load_cifar(tmp_path, 10)
    bad.write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"cat/0001.png: not a readable image"):
        load_cifar(tmp_path, 10)


# ---------------------------------------------------------------- Tiny-ImageNet

WNIDS = ["n09193705", "n01443537", "n04067472"]  # deliberately not sorted: labels follow wnids.txt


def test_tiny_imagenet_official_layout(tmp_path):
    base, x_tr, y_tr, x_te, y_te = write_tiny(tmp_path, WNIDS)
    data = load_tiny_imagenet(tmp_path)  # parent of tiny-imagenet-200
    assert data.label == "Tiny-ImageNet" and data.x_train.shape == (9, 3, 64, 64)
    assert np.array_equal(data.y_train.numpy(), y_tr) and np.array_equal(data.y_test.numpy(), y_te)
    assert np.abs(data.x_train.numpy().astype(int) - x_tr.astype(int)).max() <= 3
    assert np.abs(data.x_test.numpy().astype(int) - x_te.astype(int)).max() <= 3
    assert "val/val_annotations.txt" in dict(data.source_files)
    sub = load_tiny_imagenet(base, subset_train=1, subset_test=1)
    assert sub.y_train.tolist() == [0, 1, 2] and sub.y_test.tolist() == [0, 1, 2]
    assert torch.equal(sub.x_test, data.x_test[:3])  # first val image of every class, in annotation order


def test_tiny_imagenet_greyscale_jpeg_becomes_rgb(tmp_path):
    base, *_ = write_tiny(tmp_path, WNIDS[:2], 1, 1)
    grey = np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) % 7 * 30
    Image.fromarray(grey.astype(np.uint8), mode="L").save(base / "train" / WNIDS[0] / "images" / f"{WNIDS[0]}_0.JPEG",
                                                           quality=100)
    x = load_tiny_imagenet(base).x_train[0]
    assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])


@pytest.mark.parametrize("damage,error,pattern", [
    ("unknown_wnid", ValueError, r"val_annotations.txt, line 1: class 'n99999999' is not listed"),
    ("unlabelled", ValueError, r"1 image\(s\) without a line in .*extra.JPEG"),
    ("missing_val", FileNotFoundError, r"listed in .* are missing, e.g. \['val_2.JPEG'\]"),
    ("wrong_size", ValueError, r"n01443537_0.JPEG: image is 63x64 .*expected 64x64"),
    ("extra_class", ValueError, r"class folders \['n00000001'\] are not listed in .*wnids.txt"),
    ("missing_class", FileNotFoundError, r"n04067472/images .*class 'n04067472' of wnids.txt"),
])
def test_tiny_imagenet_errors(tmp_path, damage, error, pattern):
    import shutil

    base, *_ = write_tiny(tmp_path, WNIDS)
    ann = base / "val" / "val_annotations.txt"
    if damage == "unknown_wnid":
        ann.write_text(ann.read_text().replace(WNIDS[0], "n99999999", 1))
    elif damage == "unlabelled":
        Image.new("RGB", (64, 64)).save(base / "val" / "images" / "extra.JPEG")
    elif damage == "missing_val":
        (base / "val" / "images" / "val_2.JPEG").unlink()
    elif damage == "wrong_size":
        Image.new("RGB", (63, 64)).save(base / "train" / WNIDS[1] / "images" / f"{WNIDS[1]}_0.JPEG")
    elif damage == "extra_class":
        (base / "train" / "n00000001" / "images").mkdir(parents=True)
    else:
        shutil.rmtree(base / "train" / WNIDS[2])
    with pytest.raises(error, match=pattern):
        load_tiny_imagenet(base)


def test_tiny_imagenet_not_found_explains_the_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match="wnids.txt, train/<wnid>/images"):
        load_tiny_imagenet(tmp_path)


# ---------------------------------------------------------------- subsets

def test_first_k_per_class_matches_a_brute_force_loop():
    y = np.random.default_rng(0).integers(0, 5, 200)
    for k in (1, 3, 7):
        expected, taken = [], {c: 0 for c in range(5)}
        for i, label in enumerate(y):
            if taken[label] < k:
                taken[label] += 1
                expected.append(i)
        assert first_k_per_class(y, k).tolist() == expected
    with pytest.raises(ValueError, match=r"class 2 \('bird'\) has only 1 samples"):
        first_k_per_class([0, 1, 2, 0, 1], 2, "train", ["a", "b", "bird"])


@pytest.mark.parametrize("fmt", ["pickle", "image_folder"])
def test_subsets_are_deterministic_class_balanced_first_k(tmp_path, fmt):
    x_tr, y_tr, x_te, y_te = _cifar(10, 4, 3)
    if fmt == "pickle":
        write_cifar_pickle(tmp_path, x_tr, y_tr, x_te, y_te)
    else:
        write_image_folder(tmp_path, "train", x_tr, y_tr, CIFAR10_CLASSES)
        write_image_folder(tmp_path, "test", x_te, y_te, CIFAR10_CLASSES)
        x_tr, y_tr = _by_class(x_tr, y_tr, 10)
        x_te, y_te = _by_class(x_te, y_te, 10)
    a = load_cifar(tmp_path, 10, subset_train=2, subset_test=1)
    b = load_cifar(tmp_path, 10, subset_train=2, subset_test=1)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert np.bincount(a.y_train.numpy(), minlength=10).tolist() == [2] * 10
    assert np.bincount(a.y_test.numpy(), minlength=10).tolist() == [1] * 10
    keep = first_k_per_class(y_tr, 2)
    assert np.array_equal(a.x_train.numpy(), x_tr[keep]) and np.array_equal(a.y_train.numpy(), y_tr[keep])
    with pytest.raises(ValueError, match=r"train: subset of 5 per class requested, but class 0 \('airplane'\) has only 4"):
        load_cifar(tmp_path, 10, subset_train=5)


def test_image_folder_subset_decodes_only_the_selected_files(tmp_path):
    x, y = _split(10, 3, 0)
    write_image_folder(tmp_path, "train", x, y, CIFAR10_CLASSES)
    write_image_folder(tmp_path, "test", x, y, CIFAR10_CLASSES)
    (tmp_path / "train" / "dog" / "0002.png").write_bytes(b"broken")  # third dog: outside a 2-per-class subset
    assert load_cifar(tmp_path, 10, subset_train=2).x_train.shape[0] == 20
    assert len(load_cifar(tmp_path, 10, subset_train=2).source_files) == 20 + 30
    with pytest.raises(ValueError, match="dog/0002.png"):
        load_cifar(tmp_path, 10)


# ---------------------------------------------------------------- DataConfig and load_data

def _data_cfg(**kw):
    return load_run_config({"model": "4C3F", "epochs": 1, "batch_size": 16, "loss": {"name": "ce"},
                            "data": kw}).data


def test_data_config_validation():
    assert _data_cfg(name="two_moons") == DataConfig(name="two_moons")
    with pytest.raises(ValueError, match=r"data.root applies only to image datasets"):
        _data_cfg(name="two_moons", root="/data")
    with pytest.raises(ValueError, match=r"data.subset_train applies only to image datasets"):
        _data_cfg(name="two_moons", subset_train=3)
    with pytest.raises(ValueError, match=r"data.n_train applies only to 'two_moons'.*use data.subset_train"):
        _data_cfg(name="cifar10", n_train=100)
    with pytest.raises(ValueError, match=r"data.noise_radius applies only to 'two_moons'"):
        _data_cfg(name="cifar10", noise_radius=0.2)
    with pytest.raises(ValueError, match=r"data.format 'pickle' is not a source of 'tiny_imagenet'"):
        _data_cfg(name="tiny_imagenet", format="pickle")
    with pytest.raises(ValueError, match=r"data.format 'tiny_imagenet' is not a source of 'cifar10'"):
        _data_cfg(name="cifar10", format="tiny_imagenet")
    with pytest.raises(ValueError, match=r"key 'format' expects one of"):
        _data_cfg(name="cifar10", format="zip")
    with pytest.raises(ValueError, match=r"data.subset_test must be in \[1"):
        _data_cfg(name="cifar10", subset_test=0)
    with pytest.raises(ValueError, match=r"key 'name' expects one of \['two_moons', 'cifar10', 'cifar100', 'tiny_imagenet', 'mnist'\]"):
        _data_cfg(name="svhn")


def test_load_data_uses_the_env_root_and_sets_augmentation(tmp_path, monkeypatch):
    arrays = _cifar()
    write_cifar_pickle(tmp_path / "cifar10", *arrays)
    monkeypatch.setenv("LIPCERT_DATA_ROOT", str(tmp_path))
    data = load_data(DataConfig(name="cifar10"))
    _assert_same(data, *arrays)
    assert data.augment == RandomImageAugment(32, 4)
    assert load_data(DataConfig(name="cifar10", augment=False)).augment is None
    base, *_ = write_tiny(tmp_path / "tiny", WNIDS, 1, 1)
    assert load_data(DataConfig(name="tiny_imagenet", root=str(base))).augment == RandomImageAugment(64, 8)
    monkeypatch.delenv("LIPCERT_DATA_ROOT")
    with pytest.raises(ValueError, match="data.root is not set for dataset 'cifar10' and \\$LIPCERT_DATA_ROOT is unset"):
        load_data(DataConfig(name="cifar10"))


# ---------------------------------------------------------------- cache

def test_cache_round_trip_keeps_uint8_augment_and_manifest(tmp_path):
    write_cifar_pickle(tmp_path / "src", *_cifar())
    cfg = DataConfig(name="cifar10", root=str(tmp_path / "src"), subset_train=2)
    data = prepare_data_cache(cfg, tmp_path / "cache" / "c10.npz")
    back, description = load_cache(tmp_path / "cache" / "c10.npz")
    assert description == asdict(cfg)
    assert back.x_train.dtype == torch.uint8 and torch.equal(back.x_train, data.x_train)
    assert torch.equal(back.y_test, data.y_test)
    assert back.augment == data.augment == RandomImageAugment(32, 4)
    assert back.source_files == data.source_files and len(back.source_files) == 6
    assert back.label == "CIFAR-10" and back.domain == (0.0, 1.0)


def _rewrite_npz(path, **changes):
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays.update(changes)
    np.savez_compressed(path, **arrays)


def test_cache_verification_names_file_array_and_expected_value(tmp_path):
    write_cifar_pickle(tmp_path / "src", *_cifar())
    path = tmp_path / "c.npz"
    prepare_data_cache(DataConfig(name="cifar10", root=str(tmp_path / "src")), path)
    meta = json.loads(str(np.load(path)["meta"]))
    x = np.load(path)["x_train"]

    tampered = x.copy()
    tampered[0, 0, 0, 0] ^= 1
    _rewrite_npz(path, x_train=tampered)
    with pytest.raises(ValueError, match=rf"c.npz: checksum mismatch for 'x_train': sha256 \w+, expected {meta['sha256']['x_train']}"):
        load_cache(path)
    _rewrite_npz(path, x_train=x[:-1])
    with pytest.raises(ValueError, match=r"array 'x_train' has shape \[29, 3, 32, 32\], expected \[30, 3, 32, 32\]"):
        load_cache(path)
    _rewrite_npz(path, x_train=x.astype(np.float32))
    with pytest.raises(ValueError, match=r"array 'x_train' has dtype float32, expected uint8"):
        load_cache(path)
    with pytest.raises(FileNotFoundError, match=r"data cache not found: .*missing.npz"):
        load_cache(tmp_path / "missing.npz")


def test_failed_preparation_leaves_no_partial_cache(tmp_path, monkeypatch):
    x, y = _split(10, 3, 0)
    write_image_folder(tmp_path / "src", "train", x, y, CIFAR10_CLASSES)
    write_image_folder(tmp_path / "src", "test", x, y, CIFAR10_CLASSES)
    cfg = DataConfig(name="cifar10", root=str(tmp_path / "src"))
    out_dir = tmp_path / "cache"
    out_dir.mkdir()
    (tmp_path / "src" / "train" / "frog" / "0001.png").write_bytes(b"\x89PNG truncated")  # midway through train
    with pytest.raises(ValueError, match="frog/0001.png: not a readable image"):
        prepare_data_cache(cfg, out_dir / "c.npz")
    assert list(out_dir.iterdir()) == []

    write_image_folder(tmp_path / "src", "train", x, y, CIFAR10_CLASSES)  # repaired
    prepare_data_cache(cfg, out_dir / "c.npz")
    good = (out_dir / "c.npz").read_bytes()

    def fail_midway(handle, **arrays):  # the writer dies after part of the archive is on disk
        handle.write(b"PK\x03\x04 partial")
        raise OSError("disk full")
    monkeypatch.setattr(np, "savez_compressed", fail_midway)
    with pytest.raises(OSError, match="disk full"):
        prepare_data_cache(replace(cfg, augment=False), out_dir / "c.npz")
    assert [p.name for p in out_dir.iterdir()] == ["c.npz"]
    assert (out_dir / "c.npz").read_bytes() == good  # the previous cache is untouched


def test_cache_refuses_an_augment_it_cannot_rebuild(tmp_path):
    x = torch.zeros(2, 3, 4, 4, dtype=torch.uint8)
    y = torch.zeros(2, dtype=torch.int64)
    from lipcert.data.tensor_data import TensorData

    with pytest.raises(ValueError, match="cannot store augment"):
        save_cache(TensorData(x, y, x, y, augment=lambda b, g: b), tmp_path / "c.npz", {})
    assert not (tmp_path / "c.npz").exists()


# ---------------------------------------------------------------- end to end: one epoch of 4C3F

def test_one_epoch_4c3f_on_a_generated_cifar_set(tmp_path):
    write_cifar_pickle(tmp_path / "src", *_cifar(10, 2, 1))
    cfg = load_run_config({
        "model": "4C3F", "epochs": 1, "batch_size": 16, "eval_eps": [36 / 255],
        "data": {"name": "cifar10", "root": str(tmp_path / "src"), "subset_train": 2, "subset_test": 1},
        "loss": {"name": "cll", "eps": 0.15, "p": 0.15}})
    data = load_data(cfg.data)
    seen = []

    def spy(xb, generator):
        seen.append((xb.dtype, float(xb.min()), float(xb.max()), tuple(xb.shape)))
        return data.augment(xb, generator)
    metrics = train_run(cfg, replace(data, augment=spy), tmp_path / "run", progress=False)
    assert seen == [(torch.float32, seen[0][1], seen[0][2], (16, 3, 32, 32))]  # 20 images, batch 16, drop_last
    assert 0.0 <= seen[0][1] and seen[0][2] <= 1.0 and seen[0][2] > 0.5  # scaled to [0, 1], not 0..255
    assert 0.0 <= metrics["clean"] <= 100.0 and np.isfinite(metrics["loss"]) and metrics["K_f"] > 0
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert record["extra"]["data"] == "CIFAR-10"
