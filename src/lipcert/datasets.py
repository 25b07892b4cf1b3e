"""Dataset dispatch for runs: turns a :class:`~lipcert.run_config.DataConfig` into tensors.

Kept apart from :mod:`lipcert.data` (which knows nothing of runs or models).
"""

from __future__ import annotations

from .data.two_moons import make_two_moons_splits
from .run_config import DataConfig
from .data.tensor_data import TensorData

__all__ = ["load_data"]


def load_data(cfg: DataConfig) -> TensorData:
    """Load the dataset a run needs (two-moons: generated from ``cfg.seed``, unbounded domain)."""
    if cfg.name == "two_moons":
        s = make_two_moons_splits(cfg.seed, cfg.n_train, cfg.n_test, cfg.noise_radius)
        return TensorData(s.x_train, s.y_train, s.x_test, s.y_test, domain=None, label="two-moons")
    raise ValueError(f"unknown dataset {cfg.name!r}")
