"""Device mistakes caught on the CPU (issue 12).

* Under ``FakeTensorMode`` a fake ``cuda`` model and batch run a training step, the converge iteration body, the
  device part of certification and a tightness-attack step; any operation mixing a CUDA and a CPU tensor (or
  reading a value back to the host) raises there, with no GPU present.
* A tiny real run executes one epoch while ``Tensor.item``, ``__float__``, ``__int__``, ``__bool__``, ``cpu``,
  ``numpy`` and ``tolist`` raise when called from lipcert code inside the iteration loop.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import yaml
from torch._subclasses.fake_tensor import DataDependentOutputException, FakeTensorDeviceMismatchError, FakeTensorMode

from lipcert.bounds import pairwise_constants
from lipcert.certification import certification_logits, certification_tensors
from lipcert.data.augment import AugmentParams, make_augment
from lipcert.data.tensor_data import TensorData
from lipcert.datasets import load_data
from lipcert.lanczos import expand_basis, _ritz
from lipcert.models import ArchitectureSpec, build_from_spec
from lipcert.params import run_config_from_params
from lipcert.tightness import attack_step
from lipcert.training import make_loss, train_step, train_run
from tiny_architectures import TINY_ONE_LIPSCHITZ

TINY_CONV = {"input_shape": [3, 12, 12], "layers": "c(4,3,1,1) c(4,4,2,1) d(8) d(4)"}
CUDA = torch.device("cuda")


def _fake_cuda_model(mode: FakeTensorMode):
    model = build_from_spec(ArchitectureSpec.from_dict("tiny_conv", TINY_CONV), seed=0)
    with mode:
        return model.to(CUDA)


def _cll_loss(total: int = 10):
    cfg = run_config_from_params("params/two_moons.yaml", "cll", [], seed=0)
    return make_loss(cfg, total)


def test_fake_mode_rejects_a_mixed_device_operation():
    """The guard itself: a CPU tensor meeting a fake CUDA tensor raises, and so does a host read."""
    with FakeTensorMode():
        x = torch.ones(3, device=CUDA)
        with pytest.raises(FakeTensorDeviceMismatchError):
            x + torch.ones(3)
        with pytest.raises(DataDependentOutputException):
            float(x.sum())


def test_training_step_on_a_fake_cuda_model(monkeypatch):
    """Forward, bound, loss and optimiser step on fake CUDA tensors.  The autograd engine itself needs a real CUDA
    context for CUDA tensors, so ``backward`` is replaced by fake gradients of the parameters' shapes and devices
    (the backward ops mirror the forward ones, which run here)."""
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    model = _fake_cuda_model(mode)

    def fake_backward(self, *args, **kwargs):
        assert self.device.type == "cuda"
        for p in model.parameters():
            p.grad = torch.ones_like(p)

    monkeypatch.setattr(torch.Tensor, "backward", fake_backward)
    with mode:
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        xb = torch.rand(5, 3, 12, 12, device=CUDA)
        yb = torch.randint(0, 4, (5,), device=CUDA)
        loss, logits, k_body = train_step(model, optimizer, _cll_loss(), xb, yb, 0, 5)
        assert loss.device.type == logits.device.type == k_body.device.type == "cuda"
        assert loss.dtype == torch.float64 and logits.shape == (5, 4)
        # the weights received a step and the power-iteration vectors stayed on the device
        assert all(p.device.type == "cuda" for p in model.parameters())
        assert all(layer.pi_vector.device.type == "cuda" for layer in model.spectral_layers())


def test_image_augmentation_on_a_fake_cuda_batch():
    augment = make_augment(12, 2)
    with FakeTensorMode():
        x = torch.rand(4, 3, 12, 12, device=CUDA)
        params = AugmentParams(torch.randint(0, 5, (4,), device=CUDA), torch.randint(0, 5, (4,), device=CUDA),
                               torch.rand(4, device=CUDA) < 0.5, torch.rand(4, 3, device=CUDA) + 0.5,
                               torch.rand(4, 3, device=CUDA).argsort(dim=1), torch.rand(4, device=CUDA))
        out = augment.apply(x, params)
        assert out.device.type == "cuda" and out.shape == x.shape


def test_converge_iteration_body_on_fake_cuda_layers():
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    model = _fake_cuda_model(mode)
    with mode:
        for layer in model.spectral_layers():
            start = layer._start_vector()  # chosen on the device (no host read of its norm)
            n = start.numel()
            basis = torch.zeros((6, n), dtype=torch.float64, device=CUDA)
            images = torch.zeros((5, n), dtype=torch.float64, device=CUDA)
            basis[0] = start.reshape(-1)
            expand_basis(layer.gram_operator(), basis, images, 0, 5)
            values, vectors = _ritz(basis, images, 5)
            assert values.device.type == vectors.device.type == "cuda" and values.shape == (5,)
            # the training-time estimate as well
            assert layer.power_sigma(3).device.type == "cuda"


def test_certification_device_part_on_a_fake_cuda_model():
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    model = _fake_cuda_model(mode)
    with mode:
        x = torch.rand(7, 3, 12, 12, device=CUDA)
        y = torch.randint(0, 4, (7,), device=CUDA)
        k_pairwise = pairwise_constants(torch.ones((), dtype=torch.float64, device=CUDA),
                                        model.head_weight().detach().to(torch.float64))
        logits = certification_logits(model, x, batch_size=3)
        pred, correct, certified, radii = certification_tensors(logits, y, k_pairwise, (0.1, 0.2))
        assert certified.shape == (2, 7) and radii.dtype == torch.float64
        assert {t.device.type for t in (pred, correct, certified, radii)} == {"cuda"}


def test_tightness_attack_step_on_a_fake_cuda_model(monkeypatch):
    """Quotients, maxima, Adam step and clamp on fake CUDA inputs (``backward`` replaced as in the training step)."""
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    model = _fake_cuda_model(mode)
    inputs = []

    def fake_backward(self, *args, **kwargs):
        assert self.device.type == "cuda"
        for x in inputs:
            x.grad = torch.ones_like(x)

    monkeypatch.setattr(torch.Tensor, "backward", fake_backward)
    with mode:
        for p in model.parameters():
            p.requires_grad_(False)
        x1 = torch.rand(4, 3, 12, 12, device=CUDA).requires_grad_(True)
        x2 = torch.rand(4, 3, 12, 12, device=CUDA).requires_grad_(True)
        inputs += [x1, x2]
        optimizer = torch.optim.Adam([x1, x2], lr=1e-3)
        step_max = torch.empty(3, dtype=torch.float64, device=CUDA)
        pair_max = torch.zeros(4, dtype=torch.float64, device=CUDA)
        for t in range(3):
            pair_max = attack_step(model, optimizer, x1, x2, step_max, pair_max, t, t < 2, (0.0, 1.0))
        assert pair_max.device.type == "cuda" and x1.grad.device.type == "cuda"


# --- no host read inside the iteration loop -------------------------------------------------------------------

_HOST_READS = ("item", "__float__", "__int__", "__bool__", "cpu", "numpy", "tolist")
_LIPCERT = str(Path(__file__).resolve().parents[1] / "src" / "lipcert")


class _HostReadInLoop(AssertionError):
    pass


def _guard(name, original, armed):
    def guarded(self, *args, **kwargs):
        caller = sys._getframe(1).f_code.co_filename
        if armed[0] and caller.startswith(_LIPCERT):
            raise _HostReadInLoop(f"Tensor.{name} called from {caller}:{sys._getframe(1).f_lineno} inside the loop")
        return original(self, *args, **kwargs)
    return guarded


def _run_one_guarded_epoch(cfg, data, run_dir, monkeypatch) -> dict:
    """Host reads raise while the loop of one epoch runs (armed from the first training step until the epoch's sums
    are read); they are allowed before and after it (the once-per-epoch read, converge, certification)."""
    armed = [False]
    for name in _HOST_READS:
        monkeypatch.setattr(torch.Tensor, name, _guard(name, getattr(torch.Tensor, name), armed))
    import lipcert.training as training

    real_step, real_stack, calls = training.train_step, torch.stack, []

    def step(*args, **kwargs):
        armed[0] = True
        calls.append(1)
        return real_step(*args, **kwargs)

    def stack(*args, **kwargs):  # the epoch's one read is torch.stack(...).tolist() right after the loop
        armed[0] = False
        return real_stack(*args, **kwargs)

    monkeypatch.setattr(training, "train_step", step)
    monkeypatch.setattr(training.torch, "stack", stack)
    metrics = train_run(cfg, data, run_dir, progress=False)
    assert len(calls) >= 2 and metrics["epoch"] == 1
    return metrics


@pytest.mark.parametrize("experiment", ["cll", "gloro", "ce"])
def test_iteration_loop_reads_nothing_back_to_the_host(tmp_path, monkeypatch, experiment):
    cfg = run_config_from_params("params/two_moons.yaml", experiment,
                                 ["epochs=1", "data.n_train=120", "data.n_test=40", "batch_size=30"], seed=0)
    _run_one_guarded_epoch(cfg, load_data(cfg.data), tmp_path / "run", monkeypatch)


ONE_LIPSCHITZ_METHODS = {"soc": "LipConv-10", "cll_lipconv": "LipConv-10", "cpl": "CPL-S", "cll_cpl": "CPL-S",
                         "sll": "SLL-S", "cll_sll": "SLL-S", "lbdn": "Sandwich-S", "cll_lbdn": "Sandwich-S"}


@pytest.mark.parametrize("method", sorted(ONE_LIPSCHITZ_METHODS))
def test_one_lipschitz_loops_with_augmentation_read_nothing_back(tmp_path, monkeypatch, method):
    """Every 1-Lipschitz family with its own loss and with CLL, on augmented CIFAR-shaped images (tiny sizes)."""
    (tmp_path / "archs").mkdir()
    (tmp_path / "archs" / "architectures.yaml").write_text(yaml.safe_dump(TINY_ONE_LIPSCHITZ))
    monkeypatch.setenv("LIPCERT_PARAMS_DIR", str(tmp_path / "archs"))
    cfg = run_config_from_params("params/cifar10.yaml", method,
                                 ["epochs=1", "batch_size=8", f"model={ONE_LIPSCHITZ_METHODS[method]}"], seed=0)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (30, 3, 8, 8), generator=g, dtype=torch.uint8)
    y = torch.arange(30) % 10
    data = TensorData(x[:20], y[:20], x[20:], y[20:], domain=(0.0, 1.0), augment=make_augment(8, 1))
    _run_one_guarded_epoch(cfg, data, tmp_path / "run", monkeypatch)


def test_host_read_guard_catches_a_read_in_the_loop(tmp_path, monkeypatch):
    """The guard is live: a loss that reads its value on the host is caught inside the loop."""
    cfg = run_config_from_params("params/two_moons.yaml", "ce",
                                 ["epochs=1", "data.n_train=60", "data.n_test=20", "batch_size=30"], seed=0)
    import lipcert.training as training

    real_make_loss = training.make_loss

    def reading_loss(cfg, total):
        inner = real_make_loss(cfg, total)

        def loss(*args):
            value = inner(*args)
            _ = float(value.detach())  # what the loop did before issue 12
            return value
        return loss

    armed = [True]
    monkeypatch.setattr(training, "make_loss", reading_loss)
    monkeypatch.setattr(torch.Tensor, "__float__", _guard("__float__", torch.Tensor.__float__, armed))
    # the reading loss lives in this test file, so mark this file as "lipcert code" for the guard
    monkeypatch.setattr(sys.modules[__name__], "_LIPCERT", str(Path(__file__).resolve()))
    with pytest.raises(_HostReadInLoop):
        train_run(cfg, load_data(cfg.data), tmp_path / "run", progress=False)


@pytest.mark.parametrize("method", ["cll", *sorted(ONE_LIPSCHITZ_METHODS)])
def test_tightness_attack_steps_read_nothing_back(tmp_path, monkeypatch, method):
    """The attack's steps (eval-mode forwards of every architecture, CPL's converged step size included) read
    nothing back to the host; the per-step maxima stay on the device until the attack ends."""
    (tmp_path / "archs").mkdir()
    archs = {**TINY_ONE_LIPSCHITZ, "tiny_conv": {**TINY_CONV, "layers": "c(4,3,1,1) c(4,4,2,1) d(8) d(10)"}}
    (tmp_path / "archs" / "architectures.yaml").write_text(yaml.safe_dump(archs))
    monkeypatch.setenv("LIPCERT_PARAMS_DIR", str(tmp_path / "archs"))
    from lipcert.models import build_model

    model = build_model(ONE_LIPSCHITZ_METHODS.get(method, "tiny_conv"), seed=0)
    model.converge()
    size = model.input_shape[-1]
    g = torch.Generator().manual_seed(0)
    x1, x2 = torch.rand(6, 3, size, size, generator=g), torch.rand(6, 3, size, size, generator=g)
    armed = [False]
    for name in _HOST_READS:
        monkeypatch.setattr(torch.Tensor, name, _guard(name, getattr(torch.Tensor, name), armed))
    import lipcert.tightness as tightness

    real_step, calls = tightness.attack_step, []

    def step(*args, **kwargs):
        armed[0] = True
        calls.append(1)
        try:
            return real_step(*args, **kwargs)
        finally:
            armed[0] = False

    monkeypatch.setattr(tightness, "attack_step", step)
    result = tightness.tightness_attack(model, x1, x2, steps=3)
    assert len(calls) == 4 and 0 < result.lower_bound <= result.global_lipschitz * (1 + 1e-6)


@pytest.mark.parametrize("vectors", ["random", "saved"])
def test_local_lip_step_and_local_certificate_on_a_fake_cuda_model(monkeypatch, tmp_path, vectors):
    """A Local-Lip-B step (BCP bounds, masked per-sample norms, stored vectors read on the host and moved to the
    device, worst logits, sparsity loss, ReLUθ projection) and the local certificate's float64 path on fake CUDA."""
    from lipcert.local_certification import local_certified
    from lipcert.losses.local_lip_loss import LocalLipLossConfig, TrainingBatch, local_lip_loss, local_lip_state

    mode = FakeTensorMode(allow_non_fake_inputs=True)
    spec = {**TINY_CONV, "activation": "relu_theta"}
    model = build_from_spec(ArchitectureSpec.from_dict("tiny_relu_theta", spec), seed=0)
    config = LocalLipLossConfig(eps=0.1, warmup=0.0, ramp=0.5, vectors=vectors, sparsity=0.01, sparsity_theta=0.1)
    state = local_lip_state(config, model, 5, tmp_path, 0)
    with mode:
        model = model.to(CUDA)

    def fake_backward(self, *args, **kwargs):
        assert self.device.type == "cuda"
        for p in model.parameters():
            p.grad = torch.ones_like(p)

    monkeypatch.setattr(torch.Tensor, "backward", fake_backward)
    with mode:
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        xb = torch.rand(5, 3, 12, 12, device=CUDA)
        yb = torch.randint(0, 4, (5,), device=CUDA)
        projected = [m for m in model.modules() if hasattr(m, "project_")]
        batch = TrainingBatch(model, xb, torch.arange(5), 7, 10, 2, state)
        if vectors == "saved":
            # the store is host memory: whether the batch's rows were written is read from a CPU tensor (no device
            # read in a real run); fake mode cannot tell the two apart, so the step stops exactly there
            with pytest.raises(DataDependentOutputException) as stop:
                train_step(model, optimizer, local_lip_loss(config, 20), xb, yb, 7, None, None, batch, projected)
            assert stop.traceback[-1].path.name == "fake_impls.py"
            assert any(entry.path.name == "vector_store.py" for entry in stop.traceback)
            state.vectors.written[state.vectors.current][:] = True
            state.vectors.read = lambda index, device: ([torch.zeros((5, *s), device=device)
                                                         for s in state.vectors.shapes], True)
        loss, logits, _ = train_step(model, optimizer, local_lip_loss(config, 20), xb, yb, 7, None, None, batch,
                                     projected)
        assert loss.device.type == logits.device.type == "cuda" and projected
        assert all(p.device.type == "cuda" for p in model.parameters())
        for layer in model.spectral_layers():  # what converge() leaves behind, without its host reads
            layer.sigma_converged.fill_(2.0)
            layer._converged_at_version = layer.weight._version
        with pytest.raises(DataDependentOutputException):  # Lanczos's one host read per cycle is the only one
            local_certified(model, xb, yb, 0.1)
