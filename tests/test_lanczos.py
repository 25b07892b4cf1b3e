"""The pure-torch thick-restart Lanczos (issue 12) against dense eigen-decompositions and SciPy's ARPACK."""

from __future__ import annotations

import math

import pytest
import torch

from lipcert.lanczos import EigenProblem, top_eigenpairs
from lipcert.models import ArchitectureSpec, build_from_spec
from lipcert.power_iteration import SpectralConv2d, SpectralLinear, converge_spectral_layers
from lipcert.reference_solvers import arpack_converge


def _psd(n: int, top: list[float], rest: float, seed: int) -> torch.Tensor:
    """Q diag(eigenvalues) Q^T with the given top eigenvalues and the others uniform in [0, rest]."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    values = torch.rand(n, generator=g, dtype=torch.float64) * rest
    values[: len(top)] = torch.tensor(top, dtype=torch.float64)
    return (q * values) @ q.T


def _matrix_problem(a: torch.Tensor, seed: int = 0) -> EigenProblem:
    g = torch.Generator().manual_seed(seed)
    return EigenProblem(lambda x: a @ x, torch.randn(a.shape[0], generator=g, dtype=torch.float64))


@pytest.mark.parametrize("top", [[10.0], [10.0, 9.999, 9.998, 9.99], [1.0, 1.0 - 1e-6]])
def test_top_eigenvalue_matches_dense_and_comes_from_below(top):
    a = _psd(400, top, 9.0 * top[0] / 10.0, seed=1)
    exact = float(torch.linalg.eigvalsh(a)[-1])
    (pair,) = top_eigenpairs([_matrix_problem(a)], tol=1e-12, max_matvecs=20_000)
    assert pair.converged and pair.relative_residual <= 1e-12
    assert pair.value <= exact * (1 + 1e-14)  # a Ritz value never exceeds lambda_max
    assert pair.value == pytest.approx(exact, rel=1e-11)
    assert float(torch.linalg.vector_norm(pair.vector)) == pytest.approx(1.0, rel=1e-12)
    residual = a @ pair.vector - pair.value * pair.vector
    assert float(torch.linalg.vector_norm(residual)) <= 2e-12 * exact


def test_problems_of_different_sizes_in_lock_step_match_one_by_one():
    mats = [_psd(300, [5.0], 4.0, seed=2), _psd(700, [3.0, 2.9999], 2.9, seed=3), _psd(50, [1.0], 0.5, seed=4)]
    together = top_eigenpairs([_matrix_problem(m, i) for i, m in enumerate(mats)], tol=1e-11, max_matvecs=50_000)
    for i, (m, pair) in enumerate(zip(mats, together)):
        (alone,) = top_eigenpairs([_matrix_problem(m, i)], tol=1e-11, max_matvecs=50_000)
        assert pair.value == alone.value and pair.matvecs == alone.matvecs  # lock step changes nothing
        assert pair.value == pytest.approx(float(torch.linalg.eigvalsh(m)[-1]), rel=1e-10)


def test_zero_operator_and_matvec_cap_and_bad_arguments():
    (zero,) = top_eigenpairs([_matrix_problem(torch.zeros(100, 100, dtype=torch.float64))], 1e-9, 1000)
    assert zero.converged and zero.value == 0.0
    a = _psd(500, [1.0, 1.0 - 1e-9], 0.999, seed=5)
    (capped,) = top_eigenpairs([_matrix_problem(a)], tol=1e-15, max_matvecs=40)
    assert not capped.converged and capped.matvecs == 40
    assert capped.value <= float(torch.linalg.eigvalsh(a)[-1]) * (1 + 1e-14)
    with pytest.raises(ValueError, match="tol must be > 0"):
        top_eigenpairs([_matrix_problem(a)], 0.0, 10)
    with pytest.raises(ValueError, match="max_matvecs"):
        top_eigenpairs([_matrix_problem(a)], 1e-9, 0)
    with pytest.raises(ValueError, match="operator size"):
        top_eigenpairs([EigenProblem(lambda x: x, torch.ones(1, dtype=torch.float64))], 1e-9, 10)


LAYERS = {
    "linear 300->40": lambda: SpectralLinear(300, 40),
    "conv k3 s1 p1": lambda: SpectralConv2d(3, 8, 3, 1, 1, input_hw=(12, 12)),
    "conv k4 s2 p1": lambda: SpectralConv2d(4, 8, 4, 2, 1, input_hw=(11, 11)),  # needs output_padding
    "conv k3 s2 p0": lambda: SpectralConv2d(4, 6, 3, 2, 0, input_hw=(13, 13)),
    "conv k1 s1 p0": lambda: SpectralConv2d(8, 4, 1, 1, 0, input_hw=(10, 10)),
    "conv k5 s1 p2 wide": lambda: SpectralConv2d(3, 16, 5, 1, 2, input_hw=(10, 10)),
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_every_layer_type_matches_dense_svd_and_arpack(name):
    torch.manual_seed(0)
    layer = LAYERS[name]()
    assert math.prod(layer.input_shape) > 256  # the Lanczos path, not the dense one
    exact = float(torch.linalg.matrix_norm(layer.dense_operator(), ord=2))
    oracle = arpack_converge(layer, tol=1e-12)
    result = layer.converge_sigma(tol=1e-12)
    assert result.converged and oracle.converged
    assert result.sigma == pytest.approx(exact, rel=1e-10)
    assert result.sigma == pytest.approx(oracle.sigma, rel=1e-10)
    assert result.sigma <= exact * (1 + 1e-12)
    # the contract: frozen value, top vector written back as the warm start; from it (stored in float32, so
    # ~1e-7 off) the default tolerance is met at the first early check
    assert float(layer.converged_sigma()) == result.sigma
    again = layer.converge_sigma(tol=1e-9)
    assert again.converged and again.iterations <= 8 and again.sigma == pytest.approx(result.sigma, rel=1e-10)


def test_model_converge_in_lock_step_equals_dense_product_and_layerwise_arpack():
    spec = ArchitectureSpec.from_dict("tiny", {"input_shape": [3, 16, 16],
                                                "layers": "c(8,3,1,1) c(8,4,2,1) c(16,3,1,1) d(32) d(10)"})
    model = build_from_spec(spec, seed=3)
    layers = model.spectral_layers()
    exact = [float(torch.linalg.matrix_norm(layer.dense_operator(), ord=2)) for layer in layers]
    oracle = [arpack_converge(layer, tol=1e-11).sigma for layer in layers]
    report = model.converge(tol=1e-10)
    assert report.converged
    for r, e, o in zip(report.layers, exact, oracle):
        assert r.sigma == pytest.approx(e, rel=1e-10) and r.sigma == pytest.approx(o, rel=1e-10)
    assert report.k_body == pytest.approx(math.prod(exact), rel=1e-10)
    # lock step gives bit-for-bit what converging each layer alone gives
    fresh = build_from_spec(spec, seed=3)
    alone = [layer.converge_sigma(tol=1e-10 / len(layers)).sigma for layer in fresh.spectral_layers()]
    assert [r.sigma for r in report.layers] == alone


def test_weights_changed_after_converge_are_refused():
    layer = SpectralConv2d(3, 8, 3, 1, 1, input_hw=(12, 12))
    converge_spectral_layers([layer], tol=1e-9)
    with torch.no_grad():
        layer.weight.mul_(2.0)
    with pytest.raises(RuntimeError, match="weights changed"):
        layer.converged_sigma()
