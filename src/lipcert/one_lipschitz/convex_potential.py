"""Convex Potential Layers (CPL; Meunier, Delattre, Araujo, Allauzen, "A Dynamical System Perspective for
Lipschitz Neural Networks", ICML 2022, eq. (9) / Proposition 3): the residual layer

    z(x) = x - h * W^T relu(W x + b),    h = 2 / (||W||_2^2 + epsilon),

an explicit Euler step of the gradient flow of the convex potential x -> 1^T psi(W x + b) (psi' = relu).

Lipschitz constant (the quantity :meth:`certified_constant` bounds).  For two inputs x, y the difference is
z(x) - z(y) = (I - h W^T D W)(x - y) with D diagonal, D_ii = (relu(a_i) - relu(c_i)) / (a_i - c_i) in [0, 1]
(a = W x + b, c = W y + b).  W^T D W is positive semi-definite with norm <= ||W||^2 =: sigma^2, so the
eigenvalues of I - h W^T D W lie in [1 - h sigma^2, 1] and

    Lip(z) <= sup_{D in [0,1]} ||I - h W^T D W||_2 = max(1, h sigma^2 - 1)

(D = 0 gives 1, D = I gives the eigenvalue 1 - h sigma^2; equality holds for every W != 0).  With the norm
s the layer actually divides by and r = sigma / s: for epsilon = 0 this is max(1, 2 r^2 - 1), so the layer
is 1-Lipschitz exactly when s >= ||W|| and only *mildly* expansive when s under-estimates the norm (a
power-iteration estimate is always a lower bound).  :func:`potential_step_bound` is this formula.

Norm used in the forward pass, following the authors' code (MILES-PSL/Convex-Potential-Layer ``layers.py``,
``ConvexPotentialLayerConv`` / ``ConvexPotentialLayerLinear``, and ``util.py`` ``SpectralNormPowerMethod``):

* training: one warm-started power-iteration step per forward pass (``MAX_ITER = 1``) on a persistent
  iterate; the returned norm is **not detached** (``sigma = <W u, v>`` is built from the weight, only the
  iterate ``u`` is stored through ``.data``), so gradients flow through h into W.  Here this is
  ``inner.power_sigma(1, update=True, grad_through_iterates=False)``: the iterate is detached, the final
  ||W u|| is differentiable.
* evaluation: the authors cache a 100-step power-iteration norm (``EVAL_MAX_ITER``, buffer ``eval_sv_max``);
  here the inner layer's converged float64 norm from :meth:`prepare_evaluation` (Lanczos, relative error
  below ``tol``, see :meth:`lipcert.power_iteration.SpectralLinear.converge_sigma`).
* ``epsilon = 1e-4`` is added to sigma^2 as in the authors' code (it makes the step slightly shorter,
  i.e. the layer slightly more contractive; it never hurts the bound).

The convolutional layer's W is a 3x3 (odd k x k), stride-1, "same"-padded convolution from ``channels`` to
``inner_channels`` (the authors' ``conv_size``) on a fixed input size; W^T is its exact adjoint.
"""

from __future__ import annotations

import abc
import math

import torch
import torch.nn.functional as F
from torch import nn

from ..power_iteration import SpectralConv2d, SpectralLinear
from .base import OneLipschitzLayer

__all__ = ["CPL_EPSILON", "ConvexPotentialConv2d", "ConvexPotentialLinear", "potential_step_bound"]

#: The constant the authors add to ||W||^2 in the step h = 2 / (||W||^2 + epsilon) (``layers.py``).
CPL_EPSILON: float = 1e-4

# Relative float64 slack for the rounding of the few multiplications in the certified constant.
_ROUNDING = 8 * 2.0 ** -52


def potential_step_bound(step: float, sigma: float) -> float:
    """max(1, step * sigma^2 - 1): the supremum over diagonal D in [0, 1] of ||I - step W^T D W||_2 for
    ||W||_2 = sigma > 0 (equal to it; an upper bound of the layer's Lipschitz constant, see the module doc).

    With step = 2 / s^2 and r = sigma / s this is max(1, 2 r^2 - 1).
    """
    step, sigma = float(step), float(sigma)
    if not (math.isfinite(step) and step >= 0.0):
        raise ValueError(f"step must be a finite number >= 0, got {step!r}")
    if not (math.isfinite(sigma) and sigma >= 0.0):
        raise ValueError(f"sigma must be a finite number >= 0, got {sigma!r}")
    return max(1.0, step * sigma * sigma - 1.0)


def _check_positive_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_epsilon(epsilon) -> float:
    epsilon = float(epsilon)
    if not (math.isfinite(epsilon) and epsilon >= 0.0):
        raise ValueError(f"epsilon (added to ||W||^2) must be a finite number >= 0, got {epsilon!r}")
    return epsilon


def _refresh_after_load(module: "_ConvexPotential", incompatible_keys) -> None:
    """Load post-hook: the loaded constant carries no convergence error estimate of this session."""
    module._last_rel_error = 0.0


class _ConvexPotential(OneLipschitzLayer, abc.ABC):
    """Shared logic of the convolutional and dense CPL layers; ``inner`` holds W, b and the power iteration."""

    inner: SpectralConv2d | SpectralLinear

    def __init__(self, inner: SpectralConv2d | SpectralLinear, epsilon: float, train_iterations: int) -> None:
        super().__init__()
        self._eval_step_cache = None  # ((h, dtype, device), step tensor) of the last evaluation forward
        self.inner = inner
        self.epsilon = _check_epsilon(epsilon)
        self.train_iterations = _check_positive_int("train_iterations", train_iterations)
        self._last_rel_error = 0.0
        self.register_load_state_dict_post_hook(_refresh_after_load)

    @property
    def weight(self) -> torch.Tensor:
        return self.inner.weight

    @property
    def bias(self) -> torch.Tensor:
        return self.inner.bias

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """The authors' initialisation (= torch's default for conv/linear), drawn from ``generator``:
        W ~ kaiming_uniform(a = sqrt(5)), b ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)); plus a random unit
        power-iteration vector."""
        nn.init.kaiming_uniform_(self.inner.weight, a=math.sqrt(5), generator=generator)
        fan_in, _ = nn.init._calculate_fan_in_and_fan_out(self.inner.weight)
        bound = 1.0 / math.sqrt(fan_in)
        nn.init.uniform_(self.inner.bias, -bound, bound, generator=generator)
        self.inner.reset_power_iteration(generator)

    # --- the step h --------------------------------------------------------------------------------
    def _eval_step(self) -> float:
        """h = 2 / (s^2 + epsilon) in float64 from the converged norm s (0 when W = 0: then z = x)."""
        s = self.inner.converged_sigma_value()  # a host float: no device read per evaluation forward
        if s == 0.0:
            return 0.0
        return 2.0 / (s * s + self.epsilon)

    def _step(self, like: torch.Tensor) -> torch.Tensor:
        if self.training:
            s = self.inner.power_sigma(self.train_iterations, update=True, grad_through_iterates=False)
            denom = (s * s + self.epsilon).clamp_min(torch.finfo(s.dtype).tiny)
            return (2.0 / denom).to(like.dtype)
        h = self._eval_step()
        key = (h, like.dtype, like.device)
        cached = self._eval_step_cache
        if cached is None or cached[0] != key:  # one host-to-device copy per converged value, not per forward
            exact = torch.tensor(h, dtype=torch.float64, device=like.device)
            h_t = exact.to(like.dtype)
            # round the step down, never up, when casting to the input's precision (on the device: no host read)
            h_t = torch.where(h_t.to(torch.float64) > exact, torch.nextafter(h_t, torch.zeros_like(h_t)), h_t)
            cached = self._eval_step_cache = (key, h_t)
        return cached[1]

    @abc.abstractmethod
    def _check_input(self, x: torch.Tensor) -> None:
        """Raise ValueError naming the expected shape if ``x`` does not fit the layer."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        w = self.inner.weight
        pre = self.inner(x)  # W x + b
        back = self.inner.apply_adjoint(F.relu(pre), w)  # W^T relu(W x + b)
        return x - self._step(x) * back

    # --- bounded-layer interface -----------------------------------------------------------------------
    def prepare_evaluation(self, tol: float, max_iter: int, method: str, block_size: int) -> tuple[int, bool, float]:
        """Converge the inner norm ||W||_2 in float64 (the norm the evaluation forward pass divides by)."""
        result = self.inner.converge_sigma(tol=tol, max_iter=max_iter, method=method, block_size=block_size)
        self._last_rel_error = float(result.estimated_rel_error)
        return result.iterations, result.converged, result.estimated_rel_error

    def certified_constant(self, tol: float) -> float:
        """Upper bound of the evaluation-mode Lipschitz constant given ||W|| <= s (1 + tol).

        With the converged norm s, h = 2 / (s^2 + epsilon) and sigma = ||W|| <= s (1 + tol') where
        tol' = max(tol, the convergence's own error estimate), the bound is
        max(1, h s^2 (1 + tol')^2 - 1) = max(1, 2 (1 + tol')^2 s^2 / (s^2 + epsilon) - 1)
        (:func:`potential_step_bound`).  For epsilon = 0 this is 2 (1 + tol')^2 - 1 ~ 1 + 4 tol'; for the
        authors' epsilon = 1e-4 it is exactly 1 once s^2 (2 tol' + tol'^2) <= epsilon.  A tiny relative
        slack covers float64 rounding.  Requires :meth:`prepare_evaluation` (via ``converge_sigma``).
        """
        if not (tol > 0):
            raise ValueError(f"tol must be > 0, got {tol}")
        s = self.inner.converged_sigma_value()
        if s == 0.0:
            return 1.0  # h = 0: the layer is the identity
        rel = max(float(tol), self._last_rel_error)
        if not math.isfinite(rel):
            return math.inf
        h = self._eval_step()
        excess = h * (s * (1.0 + rel)) ** 2 * (1.0 + _ROUNDING) - 1.0
        return max(1.0, excess)


class ConvexPotentialConv2d(_ConvexPotential):
    """Convolutional CPL layer z(x) = x - h conv^T(relu(conv(x) + b)) on inputs of shape (channels, *input_hw).

    ``inner_channels`` is the authors' ``conv_size`` (the width of the inner convolution, 5 in all their
    models).  ``kernel_size`` must be odd (padding k // 2 keeps the spatial size; the authors use 3).
    """

    inner: SpectralConv2d

    def __init__(self, channels: int, inner_channels: int, input_hw: tuple[int, int], kernel_size: int = 3, *,
                 epsilon: float = CPL_EPSILON, train_iterations: int = 1,
                 generator: torch.Generator | None = None) -> None:
        channels = _check_positive_int("channels", channels)
        inner_channels = _check_positive_int("inner_channels", inner_channels)
        kernel_size = _check_positive_int("kernel_size", kernel_size)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (same padding), got {kernel_size}")
        hw = tuple(input_hw)
        if len(hw) != 2 or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in hw):
            raise ValueError(f"input_hw must be two positive integers (H, W), got {input_hw!r}")
        inner = SpectralConv2d(channels, inner_channels, kernel_size, stride=1, padding=kernel_size // 2, bias=True)
        inner.set_input_shape((channels, *hw), generator=generator)
        super().__init__(inner, epsilon, train_iterations)
        self.reset_parameters(generator)

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or tuple(x.shape[1:]) != self.inner.input_shape:
            dims = ", ".join(map(str, self.inner.input_shape))
            raise ValueError(f"{type(self).__name__} expects inputs of shape (N, {dims}), got {tuple(x.shape)}")

    def extra_repr(self) -> str:
        c, h, w = self.inner.input_shape
        return (f"channels={c}, inner_channels={self.inner.out_channels}, input_hw=({h}, {w}), "
                f"kernel_size={self.inner.kernel_size[0]}, epsilon={self.epsilon}, "
                f"train_iterations={self.train_iterations}")


class ConvexPotentialLinear(_ConvexPotential):
    """Dense CPL layer z(x) = x - h W^T relu(W x + b), W of shape (inner_features, features)."""

    inner: SpectralLinear

    def __init__(self, features: int, inner_features: int, *, epsilon: float = CPL_EPSILON,
                 train_iterations: int = 1, generator: torch.Generator | None = None) -> None:
        features = _check_positive_int("features", features)
        inner_features = _check_positive_int("inner_features", inner_features)
        inner = SpectralLinear(features, inner_features, bias=True)
        super().__init__(inner, epsilon, train_iterations)
        self.reset_parameters(generator)

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 2 or x.shape[1] != self.inner.in_features:
            raise ValueError(f"{type(self).__name__} expects inputs of shape (N, {self.inner.in_features}), "
                             f"got {tuple(x.shape)}")

    def extra_repr(self) -> str:
        return (f"features={self.inner.in_features}, inner_features={self.inner.out_features}, "
                f"epsilon={self.epsilon}, train_iterations={self.train_iterations}")
