"""Atomic file writes, strict JSON reading and cached YAML reading for pipeline inputs and outputs.

Every result file (metrics.json, checkpoints, tables) is written to a temporary file in the target's
directory, flushed and fsynced, then moved over the target with ``os.replace``. A reader therefore sees
either the complete old file or the complete new one, never a partial write, and a crash or exception
mid-write leaves the previous file untouched and no temporary file behind. This is what lets the
pipeline treat the files, not MLflow, as the source of truth for every reported number.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import math
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any


def _fsync_directory(directory: Path) -> None:
    """fsync a directory so a completed rename survives a power loss (no-op where unsupported)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    with contextlib.suppress(OSError):
        os.fsync(fd)
    os.close(fd)


def _new_file_mode() -> int:
    """Permission bits an ordinary ``open(path, "w")`` would give a new file (0o666 minus the umask)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], None]) -> Path:
    """Run ``write`` on a temporary file next to ``path`` and move it over ``path`` when it succeeds."""
    target = Path(path)
    if target.is_dir():
        raise ValueError(f"cannot write file {str(target)!r}: it is an existing directory")
    target.parent.mkdir(parents=True, exist_ok=True)
    mode = target.stat().st_mode & 0o777 if target.exists() else _new_file_mode()
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    _fsync_directory(target.parent)
    return target


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file in the same directory, fsync, ``os.replace``).

    Parent directories are created. On any exception the temporary file is removed and a previous file
    at ``path`` is left unchanged. Returns the path written.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ValueError(f"atomic_write_bytes expects bytes for {str(path)!r}, got {type(data).__name__}")
    return _atomic_write(path, lambda handle: handle.write(bytes(data)))


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; see :func:`atomic_write_bytes`."""
    if not isinstance(text, str):
        raise ValueError(f"atomic_write_text expects str for {str(path)!r}, got {type(text).__name__}")
    return atomic_write_bytes(path, text.encode("utf-8"))


def _json_default(value: Any) -> Any:
    """Convert numpy scalars/arrays and torch tensors (anything with ``tolist``) to plain JSON values."""
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return tolist()
    raise TypeError(f"object of type {type(value).__name__} is not JSON serialisable: {value!r}")


def _find_non_finite(value: Any, where: str) -> str | None:
    """Return the key path (``a/b/0``) of the first NaN or infinite float inside ``value``, else None."""
    if isinstance(value, float):
        return None if math.isfinite(value) else where
    if isinstance(value, Mapping):
        for key, item in value.items():
            found = _find_non_finite(item, f"{where}/{key}" if where else str(key))
            if found is not None:
                return found
        return None
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found = _find_non_finite(item, f"{where}/{index}" if where else str(index))
            if found is not None:
                return found
        return None
    if callable(getattr(value, "tolist", None)):
        return _find_non_finite(value.tolist(), where)
    return None


def dumps_json(obj: Any, *, source: str = "<object>") -> str:
    """Serialise ``obj`` as strict JSON: sorted keys, indent 2, trailing newline, no NaN/Infinity.

    numpy scalars/arrays and torch tensors are converted with ``tolist()``. A non-finite float raises a
    ValueError naming the key path (e.g. ``metrics/loss``); other unserialisable objects raise TypeError.
    ``source`` names the file being written in the error messages.
    """
    try:
        return json.dumps(obj, sort_keys=True, indent=2, allow_nan=False, default=_json_default) + "\n"
    except ValueError as error:
        bad_key = _find_non_finite(obj, "")
        if bad_key is None:
            raise ValueError(f"{source}: cannot serialise to JSON: {error}") from error
        raise ValueError(
            f"{source}: non-finite float (NaN or infinity) at key {bad_key!r}; strict JSON has no NaN/Infinity, "
            "so fix or drop the value before writing"
        ) from error
    except TypeError as error:
        raise TypeError(f"{source}: cannot serialise to JSON: {error}") from error


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as strict JSON (sorted keys, indent 2, NaN/inf rejected) to ``path`` atomically.

    The object is serialised completely before the file system is touched, so a serialisation error
    leaves any previous file untouched.
    """
    text = dumps_json(obj, source=str(path))
    return atomic_write_text(path, text)


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save(obj)`` to ``path`` atomically (temp file, fsync, ``os.replace``); for checkpoints."""
    import torch

    return _atomic_write(path, lambda handle: torch.save(obj, handle))


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a strict JSON file written by :func:`atomic_write_json`.

    A missing file raises FileNotFoundError naming it; invalid JSON (including NaN/Infinity constants)
    raises ValueError naming the file, line and column.
    """
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError as error:
        raise FileNotFoundError(f"JSON file not found: {str(source)!r}") from error
    except UnicodeDecodeError as error:
        raise ValueError(f"{str(source)!r} is not valid UTF-8 text: {error}") from error
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{str(source)!r} is not valid JSON (line {error.lineno}, column {error.colno}): {error.msg}"
        ) from error
    except ValueError as error:
        raise ValueError(f"{str(source)!r} is not strict JSON: {error}") from error


@functools.lru_cache(maxsize=64)
def _parsed_yaml(path: str, mtime_ns: int, size: int) -> Any:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when built with it: ~10x faster
    with open(path, encoding="utf-8") as handle:
        return yaml.load(handle, Loader=loader)


def read_yaml(path: str | os.PathLike[str]) -> Any:
    """A YAML file's content (safe loader; an empty file is None), parsed once per version of the file.

    The workflow plans hundreds of runs from the same few params files; the parse is cached under the file's
    path, modification time and size, and every call gets its own deep copy, so callers may change it.
    """
    resolved = os.path.realpath(path)
    stat = os.stat(resolved)
    return copy.deepcopy(_parsed_yaml(resolved, stat.st_mtime_ns, stat.st_size))
