"""Models from the declarative spec (CLL tables B1/B2) and the soundness of their Lipschitz bounds."""

import math

import pytest
import torch

from lipcert.activations import MinMax, minmax
from lipcert.bounds import pairwise_row_distances
from lipcert.models import ArchitectureSpec, build_from_spec, build_model, load_architectures, parse_layer
from lipcert.power_iteration import SpectralConv2d, SpectralLinear


def _params(model):
    return sum(p.numel() for p in model.parameters())


# --- MinMax -------------------------------------------------------------------------------------
def test_minmax_pairs_adjacent_channels_maxima_first():
    x = torch.tensor([[1.0, 5.0, 4.0, 2.0, -1.0, -3.0]])
    # pairs (1,5) (4,2) (-1,-3): maxima 5,4,-1 then minima 1,2,-3
    assert minmax(x).tolist() == [[5.0, 4.0, -1.0, 1.0, 2.0, -3.0]]


def test_minmax_on_feature_maps_and_odd_channels():
    x = torch.arange(2 * 4 * 3 * 3, dtype=torch.float32).reshape(2, 4, 3, 3) * torch.tensor([1, -1, 1, -1.0]).view(1, 4, 1, 1)
    y = MinMax()(x)
    torch.testing.assert_close(y[:, 0], torch.maximum(x[:, 0], x[:, 1]))
    torch.testing.assert_close(y[:, 3], torch.minimum(x[:, 2], x[:, 3]))
    with pytest.raises(ValueError, match="even number of channels"):
        minmax(torch.zeros(1, 3))


def test_minmax_is_1_lipschitz():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(500, 16, generator=g), torch.randn(500, 16, generator=g)
    assert ((minmax(a) - minmax(b)).norm(dim=1) <= (a - b).norm(dim=1) + 1e-6).all()


# --- specs -----------------------------------------------------------------------------------------
def test_parse_layer_syntax_and_errors():
    conv = parse_layer("c(32,4,2,1)")
    assert (conv.channels, conv.kernel, conv.stride, conv.padding) == (32, 4, 2, 1)
    assert parse_layer(" d( 512 ) ").features == 512
    for bad in ["c(32,4,2)", "x(3)", "d(0)", "c(0,3,1,1)"]:
        with pytest.raises(ValueError, match="layer"):
            parse_layer(bad)


def test_spec_validation_errors():
    ok = {"input_shape": [3, 8, 8], "layers": "c(4,3,1,1) d(2)"}
    ArchitectureSpec.from_dict("ok", ok)
    with pytest.raises(ValueError, match="unknown key.*'layrs'"):
        ArchitectureSpec.from_dict("x", {**ok, "layrs": 1})
    with pytest.raises(ValueError, match="missing key 'layers'"):
        ArchitectureSpec.from_dict("x", {"input_shape": [2]})
    with pytest.raises(ValueError, match="convolution .* after a dense"):
        ArchitectureSpec.from_dict("x", {"input_shape": [3, 8, 8], "layers": "d(4) c(4,3,1,1) d(2)"})
    with pytest.raises(ValueError, match="last layer must be dense"):
        ArchitectureSpec.from_dict("x", {"input_shape": [3, 8, 8], "layers": "c(4,3,1,1)"})
    with pytest.raises(ValueError, match="need a \\[C, H, W\\]"):
        ArchitectureSpec.from_dict("x", {"input_shape": [2], "layers": "c(4,3,1,1) d(2)"})
    with pytest.raises(ValueError, match="MinMax needs an even width"):
        build_from_spec(ArchitectureSpec.from_dict("x", {"input_shape": [2], "layers": "d(3) d(2)"}))
    with pytest.raises(ValueError, match="unknown architecture 'nope'"):
        build_model("nope")


def test_missing_architecture_file_names_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.yaml"):
        load_architectures(tmp_path / "nothere.yaml")


# Table B2 by hand: (flattened features, parameter count).
# 4C3F: 896 + 16416 + 18496 + 65600 + 4096*512+512 + 512*512+512 + 5130
EXPECTED = {
    "two_moons": (None, (2 * 10 + 10) + (10 * 20 + 20) + (20 * 40 + 40) + (40 * 40 + 40) + (40 * 20 + 20)
                  + (20 * 10 + 10) + (10 * 2 + 2)),
    "4C3F": (4096, 896 + 16416 + 18496 + 65600 + 2097664 + 262656 + 5130),
    "4C3F_authors_code": (4096, 896 + 9248 + 18496 + 36928 + 2097664 + 262656 + 5130),
    "6C2F": (4096, 896 + 9248 + 16416 + 18496 + 36928 + 65600 + 2097664 + 5130),
    "8C2F": (9216, 1792 + 36928 + 65600 + 73856 + 147584 + 262272 + 295168 + 1048832 + 9216 * 256 + 256
             + 256 * 200 + 200),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_architectures_match_table_b2(name):
    model = build_model(name)
    flat, n_params = EXPECTED[name]
    assert _params(model) == n_params
    linears = [m for m in model.spectral_layers() if isinstance(m, SpectralLinear)]
    if flat is not None:
        assert linears[0].in_features == flat
    # MinMax after every layer but the last; no normalisation layers
    kinds = [type(m).__name__ for m in model.body]
    assert kinds.count("MinMax") == len(model.spectral_layers())
    assert not any("Norm" in k for k in kinds)
    x = torch.rand(2, *model.input_shape)
    assert model(x).shape == (2, EXPECTED[name][0] and model.head.out_features or 2)


def test_conv_iterates_have_true_input_shapes():
    model = build_model("4C3F")
    shapes = [tuple(m.pi_vector.shape[1:]) for m in model.spectral_layers()]
    assert shapes == [(3, 32, 32), (32, 32, 32), (32, 16, 16), (64, 16, 16), (4096,), (512,)]
    model8 = build_model("8C2F")
    convs = [m for m in model8.spectral_layers() if isinstance(m, SpectralConv2d)]
    assert [m.input_shape[1:] for m in convs] == [(64, 64), (64, 64), (64, 64), (31, 31), (31, 31), (31, 31),
                                                  (14, 14), (14, 14)]


def test_init_is_kaiming_with_zero_bias_and_seeded():
    a, b, c = build_model("two_moons", seed=1), build_model("two_moons", seed=1), build_model("two_moons", seed=2)
    for pa, pb in zip(a.state_dict().values(), b.state_dict().values()):
        assert torch.allclose(pa, pb, rtol=0, atol=0, equal_nan=True)
    assert not torch.equal(a.head.weight, c.head.weight)
    big = build_model("6C2F", seed=0)
    lin = [m for m in big.spectral_layers() if isinstance(m, SpectralLinear)][0]
    assert abs(float(lin.weight.detach().std()) - math.sqrt(2 / 4096)) < 0.05 * math.sqrt(2 / 4096)
    assert all(float(m.bias.detach().abs().max()) == 0 for m in big.spectral_layers())


def test_build_does_not_touch_global_rng():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_model("two_moons", seed=5)
    assert torch.equal(torch.rand(3), expected)


# --- bounds ------------------------------------------------------------------------------------------
def _small_conv_model(seed):
    spec = ArchitectureSpec.from_dict(
        "small", {"input_shape": [3, 8, 8], "layers": "c(4,3,1,1) c(6,4,2,1) c(6,3,2,1) d(8) d(4)"})
    return build_from_spec(spec, seed=seed).double()


def _small_mlp(seed):
    spec = ArchitectureSpec.from_dict("mlp", {"input_shape": [5], "layers": "d(8) d(6) d(3)"})
    return build_from_spec(spec, seed=seed).double()


def test_pairwise_constants_and_global_bound():
    model = _small_mlp(0)
    rep = model.converge()
    k = model.pairwise_lipschitz()
    assert torch.equal(k, k.T) and float(k.diagonal().abs().max()) == 0
    w = model.head.weight.detach()
    exact_body = math.prod(float(torch.linalg.matrix_norm(m.weight.detach(), 2)) for m in model.spectral_layers())
    assert abs(rep.k_body - exact_body) / exact_body < 1e-8
    for i in range(3):
        for j in range(3):
            assert abs(float(k[i, j]) - exact_body * float((w[i] - w[j]).norm())) < 1e-9 * exact_body
    assert model.global_lipschitz() == pytest.approx(float(k.max()))
    assert rep.k_global == pytest.approx(float(k.max()), rel=1e-12)
    torch.testing.assert_close(model.logit_lipschitz(), exact_body * w.norm(dim=1), rtol=1e-8, atol=0)


def test_pairwise_row_distances_gradient_is_finite():
    w = torch.randn(4, 3, requires_grad=True)
    pairwise_row_distances(w).sum().backward()
    assert torch.isfinite(w.grad).all()


def _jacobian_pair_norms(model, x):
    jac = torch.func.vmap(torch.func.jacrev(lambda z: model(z.unsqueeze(0)).squeeze(0)))(x)  # (B, C, *in)
    jac = jac.reshape(jac.shape[0], jac.shape[1], -1)
    diff = jac[:, :, None, :] - jac[:, None, :, :]
    return diff.norm(dim=-1).amax(dim=0)  # (C, C) largest gradient norm of f_i - f_j found


@pytest.mark.parametrize("builder,seed", [(_small_mlp, 0), (_small_mlp, 1), (_small_conv_model, 0),
                                          (_small_conv_model, 1)])
def test_bound_is_never_violated(builder, seed):
    """Sampled gradients and gradient ascent on difference quotients never exceed K_ij."""
    model = builder(seed)
    model.converge()
    k = model.pairwise_lipschitz()
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(256, *model.input_shape, generator=g, dtype=torch.float64)
    sampled = _jacobian_pair_norms(model, x)
    assert (sampled <= k * (1 + 1e-9) + 1e-12).all()
    # gradient ascent on |(f_i - f_j)(x1) - (f_i - f_j)(x2)| / ||x1 - x2|| for every pair
    x1 = x[:64].clone().requires_grad_(True)
    x2 = (x[:64] + 0.1 * torch.randn(x[:64].shape, generator=g, dtype=torch.float64)).requires_grad_(True)
    for p in model.parameters():
        p.requires_grad_(False)
    opt = torch.optim.Adam([x1, x2], lr=1e-2)
    best = torch.zeros_like(k)
    for _ in range(60):
        d_out = model(x1) - model(x2)
        dist = (x1 - x2).flatten(1).norm(dim=1).clamp_min(1e-12)
        q = (d_out[:, :, None] - d_out[:, None, :]).abs() / dist[:, None, None]
        best = torch.maximum(best, q.detach().amax(0))
        opt.zero_grad()
        (-q.sum()).backward()
        opt.step()
    assert (best <= k * (1 + 1e-9) + 1e-12).all()
    assert float(best.max()) > 0  # the search found something


def test_body_lipschitz_is_differentiable_and_below_converged():
    model = _small_conv_model(2)
    k = model.body_lipschitz(n_iter=5)
    k.backward()
    for layer in model.spectral_layers():
        assert layer.weight.grad is not None and torch.isfinite(layer.weight.grad).all()
    rep = model.converge()
    assert float(model.body_lipschitz(n_iter=2, update=False).detach()) <= rep.k_body * (1 + 1e-9)


def test_state_dict_round_trip_keeps_power_iteration_state():
    a = _small_conv_model(3)
    a.body_lipschitz(n_iter=5)
    a.converge()
    b = _small_conv_model(4)
    b.load_state_dict(a.state_dict())
    for la, lb in zip(a.spectral_layers(), b.spectral_layers()):
        assert torch.equal(la.pi_vector, lb.pi_vector)
        assert torch.equal(la.sigma_converged, lb.sigma_converged)
    torch.testing.assert_close(b.pairwise_lipschitz(), a.pairwise_lipschitz(), rtol=0, atol=0)


def test_state_dict_into_fresh_conv_without_shape():
    a = _small_conv_model(3)
    conv = a.spectral_layers()[1]
    fresh = SpectralConv2d(4, 6, 4, stride=2, padding=1).double()
    assert fresh.input_shape is None
    fresh.load_state_dict(conv.state_dict())
    assert fresh.input_shape == conv.input_shape
    assert fresh.converge_sigma().sigma == pytest.approx(conv.converge_sigma().sigma, rel=1e-9)


def test_model_warm_start_converges_faster():
    model = _small_conv_model(5)
    model.converge(method="block_power", block_size=1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1e-4 * torch.randn_like(p))
    warm = model.converge(method="block_power", block_size=1)
    for i, layer in enumerate(model.spectral_layers()):
        layer.reset_power_iteration(torch.Generator().manual_seed(i))
    cold = model.converge(method="block_power", block_size=1)
    assert warm.iterations < cold.iterations
    assert warm.k_body == pytest.approx(cold.k_body, rel=1e-7)


def test_certification_values_need_converged_bound():
    model = _small_mlp(0)
    with pytest.raises(RuntimeError, match="not converged"):
        model.pairwise_lipschitz()
