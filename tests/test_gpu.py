"""CUDA against CPU (issue 12): converged norms, a training step, certification, the tightness attack and a
synchronisation-free training step.  Skipped without a CUDA device; ``python -m lipcert.gpu_check`` runs them.

Imports stay within torch, numpy, scipy, pyyaml and pytest (what a GPU machine without a registry has).
"""

from __future__ import annotations

import copy

import pytest
import torch

from lipcert.certification import certify_model
from lipcert.data.augment import make_augment
from lipcert.devices import full_precision
from lipcert.models import ArchitectureSpec, build_from_spec
from lipcert.one_lipschitz.sandwich import _SandwichBase, max_row_gram_eigenvalue
from lipcert.params import run_config_from_params
from lipcert.power_iteration import SpectralConv2d, SpectralLinear
from lipcert.tightness import tightness_attack
from lipcert.training import make_loss, train_step
from tiny_architectures import TINY_ONE_LIPSCHITZ

pytestmark = pytest.mark.gpu

# every bounded layer type: table-B2 convolutions and dense layers, and each 1-Lipschitz family (small sizes)
ARCHS = {
    "layers": {"input_shape": [3, 16, 16], "layers": "c(8,3,1,1) c(8,4,2,1) c(16,3,1,1) d(32) d(10)"},
    **TINY_ONE_LIPSCHITZ,
}


def _model(name: str, seed: int = 0):
    return build_from_spec(ArchitectureSpec.from_dict(name, ARCHS[name]), seed=seed)


@pytest.mark.parametrize("name", sorted(ARCHS))
def test_converged_norms_on_cuda_equal_cpu(name):
    """Every bounded layer's float64 constant to 1e-10.  A Sandwich layer's constant is max(1, kappa) of its float32
    Cayley blocks, which the device computes (rounding ~1e-7 apart between devices): there the float64 bound of the
    *same* blocks is compared to 1e-10 and the constants to float32 rounding."""
    cpu = _model(name)
    gpu = copy.deepcopy(cpu).cuda()
    a, b = cpu.converge(tol=1e-11), gpu.converge(tol=1e-11)
    assert a.converged and b.converged
    for layer, x, y in zip(gpu.spectral_layers(), a.layers, b.layers):
        if isinstance(layer, _SandwichBase):
            _, blocks_a, blocks_b = layer._eval_cache
            on_cpu = max_row_gram_eigenvalue(blocks_a.cpu(), blocks_b.cpu())
            assert max_row_gram_eigenvalue(blocks_a, blocks_b) == pytest.approx(on_cpu, rel=1e-10)
            assert y.sigma == pytest.approx(x.sigma, rel=1e-5)
        else:
            assert y.sigma == pytest.approx(x.sigma, rel=1e-10)
    if not any(isinstance(layer, _SandwichBase) for layer in gpu.spectral_layers()):
        assert b.k_global == pytest.approx(a.k_global, rel=1e-10)
    assert all(layer.pi_vector.is_cuda for layer in gpu.spectral_layers()
               if isinstance(layer, (SpectralConv2d, SpectralLinear)))


def test_spectral_layers_on_cuda_equal_cpu():
    for layer in (SpectralLinear(300, 40), SpectralConv2d(4, 8, 4, 2, 1, input_hw=(11, 11))):
        ref = layer.converge_sigma(tol=1e-12).sigma
        gpu = copy.deepcopy(layer).cuda()
        gpu.reset_power_iteration(torch.Generator().manual_seed(1))
        assert gpu.converge_sigma(tol=1e-12).sigma == pytest.approx(ref, rel=1e-10)


def _cll_step(model, device, x, y):
    cfg = run_config_from_params("params/cifar10.yaml", "cll", [], seed=0)
    model = model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    with full_precision():
        loss, _, _ = train_step(model, optimizer, make_loss(cfg, 100), x.to(device), y.to(device), 0, 5)
    return float(loss), {n: p.grad.detach().cpu() for n, p in model.named_parameters()}


def test_training_step_loss_and_gradients_equal_cpu():
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(32, 3, 16, 16, generator=g), torch.randint(0, 10, (32,), generator=g)
    base = _model("layers")
    loss_cpu, grads_cpu = _cll_step(copy.deepcopy(base), "cpu", x, y)
    loss_gpu, grads_gpu = _cll_step(copy.deepcopy(base), "cuda", x, y)
    assert loss_gpu == pytest.approx(loss_cpu, rel=1e-5)
    for name, g in grads_cpu.items():  # float32 tolerance, relative to the tensor's largest entry
        torch.testing.assert_close(grads_gpu[name], g, rtol=1e-4, atol=1e-5 * float(g.abs().max()), msg=name)


def test_training_step_does_not_synchronise():
    """``torch.cuda.set_sync_debug_mode("error")`` raises on any synchronising call inside the step."""
    cfg = run_config_from_params("params/cifar10.yaml", "cll", [], seed=0)
    model = _model("layers").cuda()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = make_loss(cfg, 100)
    x = torch.rand(32, 3, 16, 16, device="cuda")
    y = torch.randint(0, 10, (32,), device="cuda")
    train_step(model, optimizer, loss_fn, x, y, 0, 5)  # first step: lazy initialisations
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for t in range(1, 4):
            loss, _, _ = train_step(model, optimizer, loss_fn, x, y, t, 5)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(loss).item()


def test_certification_on_cuda_equals_cpu():
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(500, 3, 16, 16, generator=g), torch.randint(0, 10, (500,), generator=g)
    cpu = _model("layers")
    gpu = copy.deepcopy(cpu).cuda()
    cpu.converge(), gpu.converge()
    eps = (0.001, 0.002, 0.005)
    a, b = certify_model(cpu, x, y, eps), certify_model(gpu, x.cuda(), y.cuda(), eps)
    assert b.clean_accuracy == a.clean_accuracy and b.certified_accuracy == a.certified_accuracy
    torch.testing.assert_close(torch.from_numpy(b.radii), torch.from_numpy(a.radii), rtol=1e-5, atol=1e-9)


def test_tightness_attack_on_cuda():
    g = torch.Generator().manual_seed(2)
    x1, x2 = torch.rand(64, 3, 16, 16, generator=g), torch.rand(64, 3, 16, 16, generator=g)
    cpu = _model("layers")
    gpu = copy.deepcopy(cpu).cuda()
    cpu.converge(), gpu.converge()
    a = tightness_attack(cpu, x1, x2, steps=20)
    b = tightness_attack(gpu, x1.cuda(), x2.cuda(), steps=20)
    assert 0 < b.lower_bound <= b.global_lipschitz
    assert b.global_lipschitz == pytest.approx(a.global_lipschitz, rel=1e-10)
    assert b.lower_bound == pytest.approx(a.lower_bound, rel=1e-2)


def test_augmentation_runs_on_cuda_with_a_cuda_generator():
    aug = make_augment(32, 4)
    x = torch.rand(64, 3, 32, 32, generator=torch.Generator().manual_seed(0)).cuda()
    y = aug(x, torch.Generator(device="cuda").manual_seed(0))
    assert y.device.type == "cuda" and y.shape == x.shape
    assert float(y.min()) >= 0 and float(y.max()) <= 1
    assert torch.equal(y, aug(x, torch.Generator(device="cuda").manual_seed(0)))
