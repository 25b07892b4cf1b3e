"""Loading a finished run: its config and trained model, without importing the training engine (issue 13, item 2).

Certification, tightness, the decision grid and the GPU check import this, not :mod:`lipcert.training`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .io_utils import read_json
from .models import LipschitzClassifier, build_model
from .run_config import RunConfig, load_run_config
from .run_record import RunFiles

__all__ = ["load_trained_model"]


def load_trained_model(run_dir: str | Path, device: str | torch.device = "cpu") -> tuple[RunConfig, LipschitzClassifier]:
    """The config and final model of a finished run (its frozen converged bound included), on ``device``."""
    files = RunFiles(Path(run_dir))
    for path in (files.config, files.model, files.metrics):
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: {run_dir} is not a finished run (train it first)")
    cfg = load_run_config(read_json(files.config), where=str(files.config))
    # moved first, loaded second: the loaded frozen bound then belongs to the weights on ``device``
    model = build_model(cfg.model, seed=cfg.seed, head=cfg.head).to(device)
    model.load_state_dict(torch.load(files.model, map_location=device, weights_only=True))
    return cfg, model
