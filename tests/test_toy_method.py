"""Issue 13 acceptance (first part): a new method is its loss, one registration and one params experiment.

The toy method below is a squared multi-class hinge on the certified margin with its own config dataclass (its
keys, default and validation).  It is registered in one place (``register_loss``) and trained and certified
through the command line, with no other module of the library touched: this file and the params file it writes
(its keys flat in the ``loss`` section, as those of the built-in losses) are all it takes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import torch
import yaml

from lipcert.__main__ import main
from lipcert.bounds import pairwise_row_distances
from lipcert.losses.registry import LOSSES, LossEntry, register_loss

NAME = "toy_squared_hinge"


@dataclass(frozen=True)
class ToyConfig:
    """The toy loss's keys in a run's ``loss`` section."""

    margin: float = 0.5

    def __post_init__(self) -> None:
        if not self.margin > 0:
            raise ValueError(f"loss.margin must be > 0, got {self.margin}")


def toy_loss(logits, targets, k_body, head_weight, margin):
    """mean_j relu(margin - (f_t - f_j) / K_tj)^2 over j != t (pairwise constants K_tj = K_body ||W_t - W_j||)."""
    k = k_body.detach() * pairwise_row_distances(head_weight.detach())[targets]
    gap = (logits.gather(1, targets[:, None]) - logits) / torch.where(k > 0, k, torch.ones_like(k))
    others = torch.ones_like(gap, dtype=torch.bool).scatter_(1, targets[:, None], False)
    return (torch.relu(margin - gap) ** 2 * others).sum(1).mean()


def _build(settings: ToyConfig, total):
    margin = settings.margin

    def loss_fn(logits, targets, k_body, head_weight, t):
        return toy_loss(logits, targets, k_body, head_weight, margin)
    return loss_fn


@pytest.fixture()
def toy_registered():
    register_loss(NAME, LossEntry(_build, uses_bound=True, model_constant=lambda settings, k_f, t, T: k_f,
                                  config=ToyConfig))
    yield
    del LOSSES[NAME]


def _params(tmp_path, keys):
    params = {
        "defaults": {"model": "two_moons", "data": {"name": "two_moons", "n_train": 200, "n_test": 100},
                     "epochs": 3, "batch_size": 50, "eval_eps": [0.15], "eval_every": 1, "threads": 1},
        "experiments": {"toy": {"loss": {"name": NAME, **keys}}},
    }
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def test_toy_method_trains_and_certifies_through_the_cli(tmp_path, toy_registered, capsys):
    params = _params(tmp_path, {"margin": 0.3})
    run = tmp_path / "run"
    assert main(["train", "--params", str(params), "--experiment", "toy", "--out", str(run), "--no-mlflow",
                 "--no-progress"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["params"]["loss"] == {"name": NAME, "margin": 0.3, "power_iter": 5}
    assert 0 <= metrics["metrics"]["cra_0.15"] <= metrics["metrics"]["clean"] <= 100
    assert main(["certify", "--run", str(run), "--out", str(tmp_path / "certify.json")]) == 0
    certified = json.loads((tmp_path / "certify.json").read_text())
    assert certified["certified_accuracy"]["0.15"] * 100 == pytest.approx(metrics["metrics"]["cra_0.15"])


def test_toy_keys_are_validated_naming_the_key(tmp_path, toy_registered, capsys):
    for keys, message in (({"margn": 0.3}, f"unknown key 'margn' (did you mean 'margin'?) for loss {NAME!r}; "
                                           "allowed keys: ['margin', 'name', 'power_iter']"),
                          ({"margin": -1.0}, "experiments.toy.loss: loss.margin must be > 0, got -1.0"),
                          ({"lam": 1e-3}, f"loss.lam applies only to losses ['ce', 'cll'], not {NAME!r}")):
        params = _params(tmp_path, keys)
        assert main(["train", "--params", str(params), "--experiment", "toy", "--out", str(tmp_path / "r"),
                     "--no-mlflow"]) == 2
        assert message in capsys.readouterr().err
    # the margin key of the built-in margin_hinge is its own: both losses now declare one
    with pytest.raises(ValueError, match=rf"loss.margin applies only to losses \['margin_hinge', '{NAME}'\], not 'ce'"):
        from lipcert.run_config import LossConfig

        LossConfig.from_mapping({"name": "ce", "margin": 1.0})


def test_unregistered_loss_fails_naming_it(tmp_path, capsys):
    params = _params(tmp_path, {"margin": 0.3})
    assert main(["train", "--params", str(params), "--experiment", "toy", "--out", str(tmp_path / "r"),
                 "--no-mlflow"]) == 2
    assert f"unknown loss {NAME!r}; registered: [" in capsys.readouterr().err
    with pytest.raises(TypeError, match="LossEntry.config must be a dataclass type, got None"):
        register_loss(NAME, LossEntry(_build, True, lambda settings, k_f, t, T: k_f, config=None))
    assert NAME not in LOSSES
