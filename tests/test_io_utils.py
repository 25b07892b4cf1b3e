"""Tests for atomic writes and strict JSON reading (lipcert.io_utils)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch

from lipcert import io_utils
from lipcert.io_utils import (
    atomic_torch_save,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    read_json,
)


def _leftover_temp_files(directory: Path) -> list[str]:
    return sorted(name for name in os.listdir(directory) if name.endswith(".tmp"))


def test_bytes_and_text_round_trip_and_create_parents(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "blob.bin"
    assert atomic_write_bytes(target, b"\x00\x01payload") == target
    assert target.read_bytes() == b"\x00\x01payload"
    atomic_write_text(tmp_path / "note.txt", "héllo\nworld")
    assert (tmp_path / "note.txt").read_text(encoding="utf-8") == "héllo\nworld"
    atomic_write_text(tmp_path / "note.txt", "replaced")
    assert (tmp_path / "note.txt").read_text(encoding="utf-8") == "replaced"
    assert _leftover_temp_files(tmp_path) == [] and _leftover_temp_files(target.parent) == []


def test_new_file_gets_umask_permissions_and_existing_file_keeps_its_mode(tmp_path: Path) -> None:
    old_umask = os.umask(0o022)
    try:
        fresh = tmp_path / "fresh.txt"
        atomic_write_text(fresh, "x")
        assert stat.S_IMODE(fresh.stat().st_mode) == 0o644
        fresh.chmod(0o600)
        atomic_write_text(fresh, "y")
        assert stat.S_IMODE(fresh.stat().st_mode) == 0o600
    finally:
        os.umask(old_umask)


def test_json_is_sorted_indented_and_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    payload = {"b": 1, "a": {"z": [1.5, 2], "y": None}, "flag": True}
    atomic_write_json(path, payload)
    text = path.read_text()
    assert text == json.dumps(payload, sort_keys=True, indent=2) + "\n"
    assert text.index('"a"') < text.index('"b"') < text.index('"flag"')
    assert read_json(path) == payload


def test_json_converts_numpy_and_torch_values(tmp_path: Path) -> None:
    path = tmp_path / "values.json"
    atomic_write_json(path, {"np": np.float32(0.5), "arr": np.arange(3), "t": torch.tensor([1.0, 2.0])})
    assert read_json(path) == {"np": 0.5, "arr": [0, 1, 2], "t": [1.0, 2.0]}


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), np.float64("nan")])
def test_json_rejects_non_finite_naming_the_key_and_keeps_old_file(tmp_path: Path, bad: float) -> None:
    path = tmp_path / "metrics.json"
    atomic_write_json(path, {"ok": 1})
    with pytest.raises(ValueError, match=r"non-finite.*'metrics/curve/1'") as info:
        atomic_write_json(path, {"metrics": {"curve": [0.1, bad]}})
    assert str(path) in str(info.value)
    assert read_json(path) == {"ok": 1}
    assert _leftover_temp_files(tmp_path) == []


def test_unserialisable_object_raises_and_keeps_old_file(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    atomic_write_json(path, {"ok": 1})
    with pytest.raises(TypeError, match=r"metrics\.json.*not JSON serialisable.*object"):
        atomic_write_json(path, {"x": object()})
    assert read_json(path) == {"ok": 1}
    assert _leftover_temp_files(tmp_path) == []


def test_failure_in_os_replace_leaves_old_file_and_no_temp(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "metrics.json"
    atomic_write_json(path, {"version": 1})

    def failing_replace(src, dst):
        assert Path(src).parent == tmp_path  # the temp file lives next to the target
        assert Path(src).read_text() == json.dumps({"version": 2}, sort_keys=True, indent=2) + "\n"
        raise OSError("simulated crash during rename")

    monkeypatch.setattr(io_utils.os, "replace", failing_replace)
    with pytest.raises(OSError, match="simulated crash"):
        atomic_write_json(path, {"version": 2})
    assert read_json(path) == {"version": 1}
    assert _leftover_temp_files(tmp_path) == []


def test_failure_while_writing_a_checkpoint_leaves_old_file(tmp_path: Path) -> None:
    path = tmp_path / "model.ckpt"
    atomic_torch_save({"w": torch.arange(4.0)}, path)
    old_bytes = path.read_bytes()
    with pytest.raises(Exception):
        atomic_torch_save({"f": lambda: 0}, path)  # lambdas cannot be pickled: fails mid-write
    assert path.read_bytes() == old_bytes
    assert _leftover_temp_files(tmp_path) == []
    loaded = torch.load(path, weights_only=True)
    assert torch.equal(loaded["w"], torch.arange(4.0))


def test_bad_payload_types_raise(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="expects bytes"):
        atomic_write_bytes(tmp_path / "x", "text")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="expects str"):
        atomic_write_text(tmp_path / "x", b"bytes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="existing directory"):
        atomic_write_text(tmp_path, "x")


def test_read_json_errors_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.json"
    with pytest.raises(FileNotFoundError, match="missing.json"):
        read_json(missing)
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text('{"a": 1,\n "b": }')
    with pytest.raises(ValueError, match=r"corrupt\.json.*line 2"):
        read_json(corrupt)
    truncated = tmp_path / "truncated.json"
    truncated.write_text('{"a": [1, 2')
    with pytest.raises(ValueError, match="truncated.json"):
        read_json(truncated)
    with_nan = tmp_path / "nan.json"
    with_nan.write_text('{"a": NaN}')
    with pytest.raises(ValueError, match=r"nan\.json.*NaN"):
        read_json(with_nan)
