"""Stand-ins shared by the tests: a fake ``torchvision`` whose dataset classes call a given download function, and
a temporary architectures file (``LIPCERT_PARAMS_DIR``) for small specs."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import yaml


def fake_torchvision(monkeypatch, calls: list, download, dataset_names: tuple[str, ...]) -> None:
    """Install a ``torchvision`` module whose ``datasets.<name>(root, train, download)`` records the call in ``calls``
    and runs ``download(Path(root))``, for every name in ``dataset_names``."""
    class FakeDataset:
        def __init__(self, root, train=True, download=False):
            calls.append((root, train, download))
            download_fn(Path(root))

    download_fn = download
    module = types.ModuleType("torchvision")
    module.datasets = types.SimpleNamespace(**{name: FakeDataset for name in dataset_names})
    monkeypatch.setitem(sys.modules, "torchvision", module)


def install_architectures(tmp_path: Path, monkeypatch, specs: dict) -> Path:
    """Write ``specs`` as ``<tmp_path>/archs/architectures.yaml`` and point ``LIPCERT_PARAMS_DIR`` at it."""
    (tmp_path / "archs").mkdir()
    (tmp_path / "archs" / "architectures.yaml").write_text(yaml.safe_dump(specs))
    monkeypatch.setenv("LIPCERT_PARAMS_DIR", str(tmp_path / "archs"))
    return tmp_path
