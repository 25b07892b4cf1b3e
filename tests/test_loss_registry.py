"""The loss registry (issue 13 item 1, first step): every loss name of the config is registered once, and the
training engine dispatches on none."""

from dataclasses import replace
from pathlib import Path

import pytest

from lipcert.losses import calibration_scale
from lipcert.losses.registry import LOSSES, build_loss, calibrated_model_constant, trains_with_bound
from lipcert.params import run_config_from_params
from lipcert.run_config import LossConfig


BUILT_IN = {"cll", "gloro", "ce", "certificate_regularized", "margin_hinge", "aol"}


def test_built_in_losses_are_registered_and_configurable():
    assert BUILT_IN <= set(LOSSES)
    for name in ("ce", "aol", "certificate_regularized"):
        assert LossConfig(name=name).name == name
    with pytest.raises(ValueError, match=r"unknown loss 'crossentropy'; registered: \["):
        LossConfig(name="crossentropy")


def test_bound_use_and_model_constant():
    cll = run_config_from_params("params/cifar10.yaml", "cll", [], seed=0).loss
    gloro = run_config_from_params("params/cifar10.yaml", "gloro_fixed", [], seed=0).loss
    ce = LossConfig(name="ce")
    assert trains_with_bound(cll) and trains_with_bound(gloro) and not trains_with_bound(ce)
    assert trains_with_bound(replace(ce, lam=1e-6))  # a K^2 term needs the bound
    # K(h∘f): 1/sigma_eps(p) for CLL (table B4 block 1: eps 0.15, p 0.15 gives the printed 11.6), s K(f) for GloRo
    assert calibrated_model_constant(cll, 123.0, 5, 10) == pytest.approx(1 / calibration_scale(0.15, 0.15))
    assert round(calibrated_model_constant(cll, 123.0, 5, 10), 1) == 11.6
    assert calibrated_model_constant(replace(gloro, output_scale=0.5), 8.0, 0, 10) == 4.0
    assert calibrated_model_constant(ce, 8.0, 0, 10) == 8.0


def test_unknown_loss_names_the_registry():
    with pytest.raises(ValueError, match=r"unknown loss 'nope'; registered: \["):
        build_loss(type("Cfg", (), {"name": "nope", "lam": 0.0})(), 10)


def test_training_engine_has_no_loss_name_branch():
    source = (Path(__file__).resolve().parents[1] / "src" / "lipcert" / "training.py").read_text()
    assert "loss.name" not in source


def test_bound_provider_and_certificate_registries():
    """Issue 13 item 1: a run names its bound provider and certificate; unset means the global bound and the ℓ2
    margin, with the fingerprints of runs made before the keys existed."""
    import torch

    from lipcert.certification import certify_model
    from lipcert.methods import BOUND_PROVIDERS, CERTIFICATES, certify_with
    from lipcert.models import ArchitectureSpec, build_from_spec

    assert set(BOUND_PROVIDERS) == {"global"} and set(CERTIFICATES) == {"l2_margin"}
    base = run_config_from_params("params/two_moons.yaml", "cll", [], seed=0)
    named = run_config_from_params("params/two_moons.yaml", "cll", ["bound=global", "certificate=l2_margin"], seed=0)
    assert named.bound == "global" and base.bound is None and base.fingerprint() != named.fingerprint()
    assert base.fingerprint() == replace(named, bound=None, certificate=None).fingerprint()
    for key, what in (("bound", "bound provider"), ("certificate", "certificate")):
        with pytest.raises(ValueError, match=rf"unknown {what} 'local'; registered: \["):
            run_config_from_params("params/two_moons.yaml", "cll", [f"{key}=local"], seed=0)
    model = build_from_spec(ArchitectureSpec.from_dict("m", {"input_shape": [2], "layers": "d(8) d(4) d(2)"}), seed=0)
    model.converge()
    x, y = torch.randn(50, 2, generator=torch.Generator().manual_seed(0)), torch.arange(50) % 2
    a, b = certify_model(model, x, y, (0.01, 0.1)), certify_with(model, x, y, (0.01, 0.1))
    assert a.certified_accuracy == b.certified_accuracy and (a.radii == b.radii).all()
