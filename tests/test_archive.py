"""Verified atomic extraction of dataset archives (lipcert.data.archive)."""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile

import pytest

from lipcert.data.archive import extract_archive, file_checksum


def _tar(path, files: dict[str, bytes]):
    with tarfile.open(path, "w:gz") as t:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return hashlib.md5(path.read_bytes()).hexdigest()


FILES = {"CIFAR-10-images/train/cat/0000.jpg": b"abc", "CIFAR-10-images/test/cat/0000.jpg": b"defg"}


def test_checksum_matches_hashlib(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"x" * 3_000_001)
    assert file_checksum(p, "sha256") == hashlib.sha256(p.read_bytes()).hexdigest()
    assert file_checksum(p, "md5") == hashlib.md5(p.read_bytes()).hexdigest()


def test_extracts_and_strips_single_root(tmp_path):
    md5 = _tar(tmp_path / "a.tar.gz", FILES)
    dest = extract_archive(tmp_path / "a.tar.gz", tmp_path / "cifar10", md5=md5)
    assert (dest / "train/cat/0000.jpg").read_bytes() == b"abc"
    assert (dest / "test/cat/0000.jpg").read_bytes() == b"defg"
    # a second call with the same checksum is a no-op; leftovers of the temporary folder are gone
    assert extract_archive(tmp_path / "a.tar.gz", tmp_path / "cifar10", md5=md5.upper()) == dest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar.gz", "cifar10"]


def test_zip_without_single_root_is_kept_as_is(tmp_path):
    z = tmp_path / "t.zip"
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("wnids.txt", "n01\n")
        f.writestr("train/n01/images/a.JPEG", b"1")
    dest = extract_archive(z, tmp_path / "tin", sha256=file_checksum(z))
    assert (dest / "wnids.txt").read_text() == "n01\n" and (dest / "train/n01/images/a.JPEG").exists()


def test_checksum_mismatch_names_file_and_values_and_leaves_nothing(tmp_path):
    _tar(tmp_path / "a.tar.gz", FILES)
    with pytest.raises(ValueError, match=r"a\.tar\.gz: md5 checksum mismatch: expected 0{32}, got [0-9a-f]{32}"):
        extract_archive(tmp_path / "a.tar.gz", tmp_path / "cifar10", md5="0" * 32)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar.gz"]


def test_missing_archive_and_unsafe_members(tmp_path):
    with pytest.raises(FileNotFoundError, match="archive not found: .*nope.tar.gz"):
        extract_archive(tmp_path / "nope.tar.gz", tmp_path / "d", md5="0" * 32)
    md5 = _tar(tmp_path / "evil.tar.gz", {"../escape.txt": b"x"})
    with pytest.raises(ValueError, match="unsafe member path '../escape.txt'"):
        extract_archive(tmp_path / "evil.tar.gz", tmp_path / "d", md5=md5)
    assert not (tmp_path / "d").exists() and not (tmp_path.parent / "escape.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.tar.gz"]


def test_corrupt_archive_and_foreign_destination(tmp_path):
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"not an archive")
    with pytest.raises(ValueError, match="not a readable tar or zip archive"):
        extract_archive(bad, tmp_path / "d", md5=hashlib.md5(b"not an archive").hexdigest())
    assert not (tmp_path / "d").exists()
    md5 = _tar(tmp_path / "a.tar.gz", FILES)
    (tmp_path / "other").mkdir()
    with pytest.raises(ValueError, match="other exists but was not extracted"):
        extract_archive(tmp_path / "a.tar.gz", tmp_path / "other", md5=md5)
    with pytest.raises(ValueError, match="exactly one of md5= or sha256="):
        extract_archive(tmp_path / "a.tar.gz", tmp_path / "x")
