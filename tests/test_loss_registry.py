"""The loss registry (issue 13 item 1): every loss is registered once with its own config dataclass (its keys, their
defaults and validation live in the loss's module), run configs carry no per-loss branch, and the training engine
dispatches on no loss name."""

import re
from dataclasses import replace
from pathlib import Path

import pytest

from lipcert.losses import calibration_scale
from lipcert.losses.aol_loss import SLL_OFFSET, AOLLossConfig
from lipcert.losses.calibrated_loss import CalibratedLossConfig
from lipcert.losses.registry import LOSSES, build_loss, calibrated_model_constant, loss_keys, trains_with_bound
from lipcert.params import run_config_from_params
from lipcert.run_config import LossConfig, load_run_config
from lipcert.schedules import ScheduleConfig

BUILT_IN_KEYS = {
    "cll": ("eps", "p", "delta", "beta", "normalisation", "offset_mode", "detach_k", "lam"),
    "gloro": ("eps", "trades_weight", "output_scale"),
    "ce": ("lam",),
    "certificate_regularized": ("gamma",),
    "margin_hinge": ("margin",),
    "aol": ("offset", "temperature"),
}
ROOT = Path(__file__).resolve().parents[1]


def _loss(**section):
    return LossConfig.from_mapping(section, "test.yaml: loss")


def test_built_in_losses_declare_exactly_their_keys():
    assert set(BUILT_IN_KEYS) <= set(LOSSES)
    for name, keys in BUILT_IN_KEYS.items():
        assert loss_keys(name) == keys, name
    for name in ("ce", "aol", "certificate_regularized"):  # no required key: defaults only
        assert isinstance(LossConfig(name=name).settings, LOSSES[name].config)
    assert LossConfig(name="aol").settings == AOLLossConfig(offset=None, temperature=None)
    with pytest.raises(ValueError, match=r"unknown loss 'crossentropy'; registered: \["):
        LossConfig(name="crossentropy")
    with pytest.raises(TypeError, match="loss 'ce' takes its settings as CrossEntropyConfig, got AOLLossConfig"):
        LossConfig(name="ce", settings=AOLLossConfig())


def test_a_key_of_another_loss_names_the_key_the_loss_its_owners_and_the_accepted_keys():
    with pytest.raises(ValueError) as info:
        _loss(name="cll", eps=0.15, p=0.1, margin=0.5)
    assert str(info.value) == (
        "test.yaml: loss: loss.margin applies only to loss 'margin_hinge', not 'cll'; loss 'cll' accepts "
        "['beta', 'delta', 'detach_k', 'eps', 'lam', 'name', 'normalisation', 'offset_mode', 'p', 'power_iter']")
    with pytest.raises(ValueError, match=re.escape("loss.lam applies only to losses ['ce', 'cll'], not 'gloro'; "
                                                   "loss 'gloro' accepts ['eps', 'name', 'output_scale', 'power_iter'")):
        _loss(name="gloro", eps=0.15, lam=1e-4)
    with pytest.raises(ValueError, match=re.escape("unknown key 'ofset' (did you mean 'offset'?) for loss 'aol'; "
                                                   "allowed keys: ['name', 'offset', 'power_iter', 'temperature']")):
        _loss(name="aol", ofset=1.0)
    with pytest.raises(ValueError, match="loss.gamma applies only to loss 'certificate_regularized'"):
        run_config_from_params("params/cifar10.yaml", "cll", ["loss.gamma=0.3"])


@pytest.mark.parametrize("section,message", [
    ({"name": "cll", "p": 0.1}, "loss.eps is required for loss 'cll'"),
    ({"name": "cll", "eps": 0.15}, r"loss.p \(eq. \(5\) slack\) is required for loss 'cll'"),
    ({"name": "cll", "eps": 0.15, "p": {"kind": "linear", "start": 0.1, "end": 0.5}}, r"loss.p must be in \(0.0, 0.5\)"),
    ({"name": "cll", "eps": -0.1, "p": 0.1}, r"loss.eps must be in \[0.0, inf\)"),
    ({"name": "cll", "eps": 0.1, "p": 0.1, "beta": 0}, r"loss.beta must be in \(0.0, inf\)"),
    ({"name": "cll", "eps": 0.1, "p": 0.1, "delta": -1}, r"loss.delta must be in \[0.0, inf\)"),
    ({"name": "cll", "eps": 0.1, "p": 0.1, "lam": -1e-3}, r"loss.lam must be in \[0.0, inf\)"),
    ({"name": "cll", "eps": 0.1, "p": 0.1, "normalisation": "rowwise"}, "key 'normalisation' expects one of"),
    ({"name": "gloro"}, "loss.eps is required for loss 'gloro'"),
    ({"name": "gloro", "eps": 0.1, "output_scale": 0}, r"loss.output_scale must be in \(0.0, inf\)"),
    ({"name": "gloro", "eps": 0.1, "trades_weight": -1}, r"loss.trades_weight must be in \[0.0, inf\)"),
    ({"name": "ce", "lam": -1}, r"loss.lam must be in \[0.0, inf\)"),
    ({"name": "certificate_regularized", "gamma": -0.1}, r"loss.gamma must be in \[0.0, inf\)"),
    ({"name": "margin_hinge"}, r"loss.margin is required for loss 'margin_hinge' \(CPL uses 0.7\)"),
    ({"name": "margin_hinge", "margin": 0}, r"loss.margin must be in \(0.0, inf\)"),
    ({"name": "aol", "temperature": 0}, r"loss.temperature must be in \(0.0, inf\)"),
    ({"name": "aol", "offset": -1}, r"loss.offset must be in \[0.0, inf\)"),
    ({"name": "ce", "power_iter": 0}, r"loss.power_iter must be in \[1, inf\)"),
    ({"name": "ce", "power_iter": 2.5}, "key 'power_iter' expects int"),
    ({"eps": 0.1}, "key 'name' expects the name of a registered loss, got None"),
])
def test_each_loss_validates_its_own_keys(section, message):
    with pytest.raises(ValueError, match=message) as info:
        _loss(**section)
    assert str(info.value).startswith("test.yaml: loss")


def test_flat_section_round_trips_and_numbers_are_constant_schedules():
    cll = _loss(name="cll", eps=0.15, p={"kind": "polynomial", "start": 1e-3, "end": 1e-12, "power": 50}, lam=1e-6,
                power_iter=3)
    assert cll.settings == CalibratedLossConfig(
        eps=ScheduleConfig("constant", 0.15), p=ScheduleConfig("polynomial", 1e-3, 1e-12, 50.0), lam=1e-6)
    assert cll.power_iter == 3
    flat = cll.to_dict()
    assert flat == {"name": "cll", "eps": {"kind": "constant", "start": 0.15, "end": None, "power": 1.0, "until": None},
                    "p": {"kind": "polynomial", "start": 1e-3, "end": 1e-12, "power": 50.0, "until": None},
                    "delta": None, "beta": None, "normalisation": "pairwise", "offset_mode": "two_sided",
                    "detach_k": True, "lam": 1e-6, "power_iter": 3}
    assert LossConfig.from_mapping(flat) == cll
    for path, experiment in (("params/cifar10.yaml", "sll"), ("params/tiny_imagenet.yaml", "gloro")):
        cfg = run_config_from_params(path, experiment)
        again = load_run_config(cfg.to_dict())
        assert again == cfg and again.fingerprint() == cfg.fingerprint()
    assert run_config_from_params("params/cifar10.yaml", "sll").to_dict()["loss"] == {
        "name": "aol", "offset": None, "temperature": None, "power_iter": 5}
    assert cll.get("lam") == 1e-6 and cll.get("margin") is None and cll.get("margin", 0.7) == 0.7


def test_an_inconsistent_shared_layout_record_still_fails():
    """A config.json of the shared layout loads (tests/test_run_fingerprints.py) only where the keys its loss does
    not declare hold their defaults; a set one is an error, as in a params file."""
    from test_run_fingerprints import OLD_TWO_MOONS_CLL

    data = {**OLD_TWO_MOONS_CLL, "loss": {**OLD_TWO_MOONS_CLL["loss"], "margin": 0.5}}
    with pytest.raises(ValueError, match="old.json.loss: loss.margin applies only to loss 'margin_hinge', not 'cll'"):
        load_run_config(data, where="old.json")
    partial = {"name": "cll", "eps": 0.15, "p": 0.1, "output_scale": 1.0}  # not a full record: its key is checked
    with pytest.raises(ValueError, match="loss.output_scale applies only to loss 'gloro', not 'cll'"):
        _loss(**partial)


def test_bound_use_and_model_constant():
    cll = run_config_from_params("params/cifar10.yaml", "cll", [], seed=0).loss
    gloro = run_config_from_params("params/cifar10.yaml", "gloro_fixed", [], seed=0).loss
    ce = LossConfig(name="ce")
    assert trains_with_bound(cll) and trains_with_bound(gloro) and not trains_with_bound(ce)
    assert trains_with_bound(_loss(name="ce", lam=1e-6))  # a K^2 term needs the bound
    assert not trains_with_bound(LossConfig(name="aol")) and not trains_with_bound(_loss(name="margin_hinge", margin=1))
    # K(h∘f): 1/sigma_eps(p) for CLL (table B4 block 1: eps 0.15, p 0.15 gives the printed 11.6), s K(f) for GloRo
    assert calibrated_model_constant(cll, 123.0, 5, 10) == pytest.approx(1 / calibration_scale(0.15, 0.15))
    assert round(calibrated_model_constant(cll, 123.0, 5, 10), 1) == 11.6
    half = replace(gloro, settings=replace(gloro.settings, output_scale=0.5))
    assert calibrated_model_constant(half, 8.0, 0, 10) == 4.0
    assert calibrated_model_constant(ce, 8.0, 0, 10) == 8.0


def test_built_losses_use_the_settings():
    import torch

    logits = torch.tensor([[2.0, 0.0, -1.0]])
    targets, k, w = torch.tensor([0]), torch.ones(()), torch.eye(3)
    aol = build_loss(LossConfig(name="aol"), 10)(logits, targets, k, w, 0)
    shifted = logits - SLL_OFFSET * torch.tensor([[1.0, 0.0, 0.0]])
    assert aol.item() == pytest.approx(0.25 * torch.nn.functional.cross_entropy(shifted / 0.25, targets).item())
    hinge = build_loss(_loss(name="margin_hinge", margin=3.0), 10)(logits, targets, k, w, 0)
    assert hinge.item() == pytest.approx((1.0 + 0.0) / 3)  # (1/C) sum_i max(0, 3 - (f_t - f_i)) = (1 + 0) / 3


def test_unknown_loss_names_the_registry():
    with pytest.raises(ValueError, match=r"unknown loss 'nope'; registered: \["):
        build_loss(type("Cfg", (), {"name": "nope", "settings": None})(), 10)


def test_no_loss_name_branch_outside_the_registry():
    """Issue 13: no ``loss.name ==`` dispatch in the library (the registry is the one place), and run_config has no
    per-loss validation branch."""
    offenders = []
    for path in sorted((ROOT / "src" / "lipcert").rglob("*.py")):
        text = path.read_text()
        if re.search(r"loss\.name\s*(==|!=|in\b)|self\.name\s*==\s*\"(cll|gloro|ce|aol|margin_hinge)", text):
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []
    assert "loss.name" not in (ROOT / "src" / "lipcert" / "training.py").read_text()


def test_bound_provider_and_certificate_registries():
    """Issue 13 item 1: a run names its bound provider and certificate; unset means the global bound and the ℓ2
    margin, with the fingerprints of runs made before the keys existed."""
    import torch

    from lipcert.certification import certify_model
    from lipcert.methods import BOUND_PROVIDERS, CERTIFICATES, certify_with
    from lipcert.models import ArchitectureSpec, build_from_spec

    assert set(BOUND_PROVIDERS) == {"global"} and set(CERTIFICATES) == {"l2_margin", "local_bcp"}
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
