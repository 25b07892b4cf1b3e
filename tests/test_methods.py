"""lipcert.methods: bound providers and certificates are registry entries, and a run's names reach certification."""

import pytest
import torch

from lipcert import methods
from lipcert.certification import certify
from lipcert.methods import Certificate, certify_with, register_bound_provider, register_certificate


class _Linear(torch.nn.Module):
    """A linear classifier with the classifier interface certification needs (K_ij = ||W_i - W_j||)."""

    def __init__(self, weight):
        super().__init__()
        self.weight = torch.nn.Parameter(weight)

    def forward(self, x):
        return x @ self.weight.T

    def pairwise_lipschitz(self):
        w = self.weight.detach().double()
        return torch.cdist(w, w)


@pytest.fixture
def clean_registries(monkeypatch):
    monkeypatch.setattr(methods, "BOUND_PROVIDERS", dict(methods.BOUND_PROVIDERS))
    monkeypatch.setattr(methods, "CERTIFICATES", dict(methods.CERTIFICATES))


def test_a_registered_certificate_is_used_by_name(clean_registries):
    model = _Linear(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    x = torch.tensor([[2.0, 0.0], [0.0, 3.0], [1.0, 0.9]])
    y = torch.tensor([0, 1, 0])
    default = certify_with(model, x, y, (0.5,))
    # margins f_y - f_other: 2, 3, 0.1; K = sqrt(2): certified at 0.5 iff margin > 0.5 sqrt(2) = 0.707
    assert default.clean_accuracy == 1.0 and default.certified_accuracy == pytest.approx((2 / 3,))

    def halved(logits, labels, constants, eps_list):  # a stricter toy certificate: twice the constant
        return certify(logits, labels, 2 * constants, eps_list)

    register_certificate("strict_toy", Certificate(halved))
    strict = certify_with(model, x, y, (0.5,), certificate_name="strict_toy")
    assert strict.certified_accuracy == pytest.approx((2 / 3,))  # margins 2 and 3 > 1.414; 0.1 not
    assert certify_with(model, x, y, (0.8,), certificate_name="strict_toy").certified_accuracy == pytest.approx((1 / 3,))
    assert certify_with(model, x, y, (0.8,)).certified_accuracy == pytest.approx((2 / 3,))
    with pytest.raises(ValueError, match="certificate 'strict_toy' is already registered"):
        register_certificate("strict_toy", Certificate(halved))
    with pytest.raises(TypeError, match="needs a Certificate"):
        register_certificate("other", halved)
    with pytest.raises(ValueError, match=r"unknown certificate 'nope'; registered: \['l2_margin', 'local_bcp', 'strict_toy'\]"):
        certify_with(model, x, y, (0.5,), certificate_name="nope")


def test_per_input_constants_need_a_certificate_that_takes_them(clean_registries):
    model = _Linear(torch.eye(2))
    per_input = methods.BoundProvider(lambda m, n: torch.ones(()),
                                      lambda m, inputs: m.pairwise_lipschitz().expand(len(inputs), 2, 2),
                                      per_input=True)
    register_bound_provider("local_toy", per_input)
    with pytest.raises(ValueError, match="takes global constants, but bound provider 'local_toy' gives per-input"):
        certify_with(model, torch.ones(1, 2), torch.tensor([0]), (0.1,), bound="local_toy")
    with pytest.raises(ValueError, match="bound provider 'local_toy' is already registered"):
        register_bound_provider("local_toy", per_input)
