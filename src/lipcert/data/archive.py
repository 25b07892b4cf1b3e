"""Verified, atomic extraction of a dataset archive (e.g. the CIFAR-10 JPEG export, or a Tiny-ImageNet zip).

A user with an offline cluster has the archive but no network: :func:`extract_archive` checks its checksum
(md5 or sha256, as published next to the file), extracts into a temporary sibling folder and renames it into
place only when everything succeeded, so an interrupted or failed extraction never leaves a partial data folder.
A single top-level folder in the archive (``CIFAR-10-images/``, ``tiny-imagenet-200/``) is stripped, so the
destination directly holds ``train/`` and ``test/`` (or ``wnids.txt`` ...) as the loaders expect.
"""

from __future__ import annotations

import hashlib
import shutil
import tarfile
import tempfile
import zipfile
from pathlib import Path

__all__ = ["extract_archive", "file_checksum"]

_ALGORITHMS = ("md5", "sha256")


def file_checksum(path: str | Path, algorithm: str = "sha256", chunk: int = 1 << 20) -> str:
    """Hex digest of a file (``algorithm``: md5 or sha256)."""
    if algorithm not in _ALGORITHMS:
        raise ValueError(f"unknown checksum algorithm {algorithm!r}; expected one of {_ALGORITHMS}")
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _safe_members(names: list[str], archive: Path) -> None:
    for name in names:
        p = Path(name)
        if p.is_absolute() or ".." in p.parts:
            raise ValueError(f"{archive}: unsafe member path {name!r} (absolute or outside the archive root)")


def _unpack(archive: Path, into: Path) -> None:
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            _safe_members(z.namelist(), archive)
            z.extractall(into)
        return
    try:
        with tarfile.open(archive) as t:
            members = t.getmembers()
            _safe_members([m.name for m in members], archive)
            bad = [m.name for m in members if not (m.isfile() or m.isdir())]
            if bad:
                raise ValueError(f"{archive}: links or special files are not accepted in a data archive: {bad[:3]}")
            t.extractall(into, filter="data")
    except tarfile.ReadError as e:
        raise ValueError(f"{archive}: not a readable tar or zip archive ({e})") from e


def extract_archive(archive: str | Path, dest: str | Path, *, md5: str | None = None, sha256: str | None = None,
                    strip_single_root: bool = True) -> Path:
    """Verify ``archive`` against ``md5`` or ``sha256`` and extract it into ``dest`` atomically.

    ``dest`` must not exist yet (an existing folder is returned unchanged if it holds a ``.extracted`` marker
    with the same checksum, so repeated calls are cheap; otherwise it is an error).  Raises FileNotFoundError
    for a missing archive and ValueError for a checksum mismatch (naming the file, the expected and the actual
    value), an unsafe member path, or an unreadable archive; nothing is left at ``dest`` then.
    """
    archive, dest = Path(archive), Path(dest)
    if (md5 is None) == (sha256 is None):
        raise ValueError("give exactly one of md5= or sha256= (the published checksum of the archive)")
    algorithm, expected = ("md5", md5) if md5 is not None else ("sha256", sha256)
    expected = expected.strip().lower()
    marker_text = f"{algorithm} {expected}\n"
    marker = dest / ".extracted"
    if dest.exists():
        if marker.is_file() and marker.read_text() == marker_text:
            return dest
        raise ValueError(f"{dest} exists but was not extracted from an archive with {algorithm} {expected}; "
                         "remove it or choose another destination")
    if not archive.is_file():
        raise FileNotFoundError(f"archive not found: {archive}")
    actual = file_checksum(archive, algorithm)
    if actual != expected:
        raise ValueError(f"{archive}: {algorithm} checksum mismatch: expected {expected}, got {actual}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        _unpack(archive, tmp)
        entries = [p for p in tmp.iterdir() if not p.name.startswith(".")]
        root = entries[0] if strip_single_root and len(entries) == 1 and entries[0].is_dir() else tmp
        (root / ".extracted").write_text(marker_text)
        root.rename(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest
