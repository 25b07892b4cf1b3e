"""Local-Lip training and certification end to end (seed 004; issue 15): runs train and resume bit for bit with the
stored per-sample vectors, no locally certified point is broken by a strong ℓ2 PGD, the local certificate certifies
at least what the global one does, and the schedules follow eqs. (27)-(29)."""

import math

import pytest
import torch

from lipcert.activations import ReLUTheta
from lipcert.attacks import l2_pgd
from lipcert.data.tensor_data import TensorData, as_model_input
from lipcert.datasets import load_data
from lipcert.local_certification import certify_local, local_certified
from lipcert.losses.local_lip_loss import LocalLipLossConfig, local_lip_schedule
from lipcert.params import run_config_from_params
from lipcert.run_config import OptimConfig
from lipcert.schedules import exponential_decay_lr
from lipcert.trained_run import load_trained_model
from lipcert.training import train_run
from fakes import install_architectures

TINY = {
    "tiny_relu_theta": {"input_shape": [3, 8, 8], "layers": "c(4,3,1,1) c(8,4,2,1) d(16) d(10)",
                        "activation": "relu_theta", "activation_init": 1.0},
    "tiny_clipped_maxmin": {"input_shape": [3, 8, 8], "layers": "c(4,3,1,1) c(8,4,2,1) d(16) d(10)",
                            "activation": "clipped_maxmin", "activation_init": [0.3, 0.6, 1.0]},
}


@pytest.fixture()
def tiny_archs(tmp_path, monkeypatch):
    return install_architectures(tmp_path, monkeypatch, TINY)


def _images(n_train=60, n_test=30, seed=0):
    """Two easy classes among 10 labels: bright vs dark images plus noise (a net learns them in a few steps)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n_train + n_test) % 2
    base = torch.where(y.view(-1, 1, 1, 1) == 1, 180.0, 70.0)
    x = (base + 30 * torch.randn((n_train + n_test, 3, 8, 8), generator=g)).clamp(0, 255).to(torch.uint8)
    return TensorData(x[:n_train], y[:n_train], x[n_train:], y[n_train:], domain=(0.0, 1.0), label="generated")


def _image_cfg(model, epochs=3, **extra):
    sets = [f"model={model}", f"epochs={epochs}", f"eval_every={epochs}", "batch_size=20", "data.subset_train=6",
            "data.subset_test=3", "eval_eps=[0.05]", "loss.warmup=0.0", "loss.ramp=0.5", "optim.lr=0.01",
            *[f"{k}={v}" for k, v in extra.items()]]
    return run_config_from_params("params/cifar10.yaml", "local_lip_b", sets, seed=1)


@pytest.mark.parametrize("model", ["tiny_relu_theta", "tiny_clipped_maxmin"])
def test_interrupted_run_resumes_bitwise_with_its_stored_vectors(tiny_archs, model):
    cfg = _image_cfg(model)
    data = _images()
    straight = train_run(cfg, data, tiny_archs / "straight", progress=False)
    assert train_run(cfg, data, tiny_archs / "split", progress=False, max_epochs_this_call=1) is None
    assert train_run(cfg, data, tiny_archs / "split", progress=False, max_epochs_this_call=1) is None
    resumed = train_run(cfg, data, tiny_archs / "split", progress=False)
    timing = ("elapsed_s", "train_s", "converge_s")
    same = {k: v for k, v in resumed.items() if k not in timing and "seconds" not in k}
    assert same == {k: v for k, v in straight.items() if k not in timing and "seconds" not in k}
    for f in sorted((tiny_archs / "straight" / "local_vectors").iterdir()):
        assert f.read_bytes() == (tiny_archs / "split" / "local_vectors" / f.name).read_bytes()
    _, trained = load_trained_model(tiny_archs / "straight")
    for m in trained.modules():
        if isinstance(m, ReLUTheta):
            assert float(m.theta.detach().min()) >= 0.0  # projected after every step


def _never_broken(model, x, y, eps, certified):
    idx = torch.nonzero(certified).flatten()
    assert idx.numel() > 0, "nothing certified: the check would be empty"
    _, broken = l2_pgd(model, x[idx], y[idx], eps, steps=200, restarts=8, targets=9,
                       generator=torch.Generator().manual_seed(3))
    assert not bool(broken.any()), f"{int(broken.sum())} of {idx.numel()} locally certified points broken"


def test_no_locally_certified_image_is_broken_by_pgd(tiny_archs):
    cfg = _image_cfg("tiny_relu_theta", epochs=4)
    data = _images(n_train=80, n_test=40)
    train_run(cfg, data, tiny_archs / "run", progress=False)
    _, model = load_trained_model(tiny_archs / "run")
    model.converge()
    x, y = as_model_input(data.x_test), data.y_test
    eps = 0.05
    certified = local_certified(model, x, y, eps)
    _never_broken(model, x, y, eps, certified)
    result = certify_local(model, data.x_test, y, [eps], transform=as_model_input, domain=(0.0, 1.0))
    details = result.details
    assert result.certified_accuracy[0] == pytest.approx(float(certified.sum()) / y.numel())
    assert details["global_certified"]["0.05"] + details["local_certified"]["0.05"] == int(certified.sum())
    assert details["local_checked"]["0.05"] <= y.numel() - details["global_certified"]["0.05"]
    assert details["local_matvecs"]["0.05"] > 0 and details["global_norm_fallbacks"]["0.05"] >= 0


def test_two_moons_local_lip_certifies_more_than_the_global_bound_and_holds_against_pgd(tmp_path):
    sets = ["epochs=30", "eval_every=30", "data.n_train=400", "data.n_test=300"]
    cfg = run_config_from_params("params/two_moons.yaml", "local_lip_b", sets, seed=0)
    data = load_data(cfg.data)
    metrics = train_run(cfg, data, tmp_path / "run", progress=False)
    _, model = load_trained_model(tmp_path / "run")
    model.converge()
    eps = 0.15
    certified = local_certified(model, data.x_test, data.y_test, eps)
    global_certified = torch.tensor(
        __import__("lipcert.certification", fromlist=["certify"]).certify(
            model(data.x_test).detach(), data.y_test, model.pairwise_lipschitz(), [eps]).certified_accuracy)
    assert float(certified.float().mean()) > float(global_certified[0])       # the local bound pays
    assert metrics["cra_0.15"] == pytest.approx(100 * float(certified.float().mean()))
    assert metrics["pgd_0.15"] >= metrics["cra_0.15"]
    _never_broken(model, data.x_test, data.y_test, eps, certified)


def test_schedules_of_eqs_27_to_29():
    c = LocalLipLossConfig(eps=0.2, warmup=0.1, ramp=0.4)
    assert local_lip_schedule(c, 5, 100, 10) == (0.0, 0.0)                       # warm-up: clean CE
    eps, lam = local_lip_schedule(c, 30, 100, 10)
    assert eps == pytest.approx(0.2 * 0.5) and lam == pytest.approx(0.5)          # half-way up the ramp
    assert local_lip_schedule(c, 90, 100, 10) == (pytest.approx(0.2), pytest.approx(1.0))
    # the code's overshoot: per-epoch value + i/I of one epoch's slope at the test eps, also after the ramp
    o = LocalLipLossConfig(eps=0.1551, warmup=0.025, ramp=0.5, ramp_overshoot_eps=0.141)
    eps, lam = local_lip_schedule(o, 799 * 10 + 9, 8000, 10)                     # last batch of 800 epochs
    assert eps == pytest.approx(0.1551 + 0.9 * 0.141 / 400) and 1 - lam == pytest.approx(-0.9 / 400)
    assert exponential_decay_lr(399, 800, 1e-3, 1e-6, 400) == 1e-3                # t = m: still the initial rate
    assert exponential_decay_lr(799, 800, 1e-3, 1e-6, 400) == pytest.approx(1e-6)
    assert exponential_decay_lr(599, 800, 1e-3, 1e-6, 400) == pytest.approx(math.sqrt(1e-3 * 1e-6))
    with pytest.raises(ValueError, match="needs optim.lr_end and optim.lr_hold"):
        OptimConfig(lr_schedule="exponential")
    with pytest.raises(ValueError, match="lr_end applies to lr_schedule 'exponential' only"):
        OptimConfig(lr_end=1e-6)
    with pytest.raises(ValueError, match="loss.eps is required"):
        LocalLipLossConfig()


def test_random_starts_keep_no_vectors_and_gloro_mode_trains(tiny_archs):
    cfg = _image_cfg("tiny_relu_theta", epochs=2, **{"loss.vectors": "random", "loss.mode": "gloro",
                                                     "loss.power_iter": 5})
    metrics = train_run(cfg, _images(), tiny_archs / "run", progress=False)
    assert not (tiny_archs / "run" / "local_vectors").exists()
    assert math.isfinite(metrics["loss"]) and 0 <= metrics["cra_0.05"] <= metrics["pgd_0.05"] <= metrics["clean"]


def test_select_on_test_reports_the_best_evaluated_epoch_after_the_ramps(tiny_archs):
    cfg = _image_cfg("tiny_relu_theta", epochs=4, eval_every=1, select_on_test="true")
    metrics = train_run(cfg, _images(), tiny_archs / "run", progress=False)
    import json
    record = json.loads((tiny_archs / "run" / "metrics.json").read_text())
    history = json.loads((tiny_archs / "run" / "history.json").read_text())
    after = [h for h in history if h["epoch"] >= 2]  # ramps end at half of the 4 epochs
    best = max(after, key=lambda h: h["cra_0.05"])
    assert metrics["cra_0.05"] == best["cra_0.05"] and metrics["clean"] == best["clean"]
    if best["epoch"] != 4:
        assert record["extra"]["selected_on_test_epoch"] == best["epoch"]
    plain = train_run(_image_cfg("tiny_relu_theta", epochs=4, eval_every=1), _images(), tiny_archs / "plain",
                      progress=False)
    assert plain["cra_0.05"] == history[-1]["cra_0.05"]  # default off: the last epoch
