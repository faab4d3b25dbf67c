"""Full-covariance Gaussian squashed by tanh, in the shape of SB3's distributions.

Stable-Baselines3 has only diagonal Gaussians. MV-SAC's actor needs correlated actions
(the 5-D motion ``[Δs_x, Δs_y, sinθ, Δx, Δy]`` is strongly correlated in real video), so this
module adds :class:`SquashedMultivariateGaussianDistribution`, which honours the whole
``stable_baselines3.common.distributions.Distribution`` contract and reuses SB3's
:class:`~stable_baselines3.common.distributions.TanhBijector`.

Parameterisation (pre-tanh space ``u``; the action is ``a = tanh(u)`` in the policy's [-1, 1]):

    u ~ N(mean, L Lᵀ),   L = diag(exp(log_diag)) + strictly_lower(tril_offdiag)

``tril_offdiag`` holds the ``d(d-1)/2`` strictly-lower entries in row-major order
(``torch.tril_indices(d, d, offset=-1)``), free real numbers. With ``tril_offdiag=None`` (or
zeros) the distribution is exactly SB3's ``SquashedDiagGaussianDistribution`` with
``log_std = log_diag``.

Log-probability by change of variables:

    log π(a) = log N(atanh(a); mean, L Lᵀ) − Σ_i log(1 − tanh(u_i)²)

The correction is SB3's ``log(1 − tanh(u)² + ε)`` with ``ε = 1e-6`` by default (so log-probs,
and hence entropy targets, are comparable with plain SAC); ``epsilon=0`` selects the exact,
numerically stable form ``2·(log 2 − u − softplus(−2u))``.

The module also holds the small helpers that map a Gaussian given in environment action units
into the policy's [-1, 1] space (the linear map SB3 uses for ``scale_action``).
"""

from __future__ import annotations

import math

import numpy as np
import torch as th
from stable_baselines3.common.distributions import Distribution, TanhBijector
from torch import nn
from torch.distributions import MultivariateNormal
from torch.nn import functional as F


def n_offdiag(action_dim: int) -> int:
    """Number of strictly-lower-triangular entries of a ``action_dim × action_dim`` matrix."""
    return action_dim * (action_dim - 1) // 2


def build_scale_tril(log_diag: th.Tensor, tril_offdiag: th.Tensor | None = None) -> th.Tensor:
    """Cholesky factor ``L`` (shape ``(..., d, d)``) from its log-diagonal and strictly-lower entries.

    :param log_diag: ``(..., d)`` log of the (positive) diagonal of ``L``.
    :param tril_offdiag: ``(..., d(d-1)/2)`` strictly-lower entries, row-major; ``None`` → diagonal.
    """
    scale_tril = th.diag_embed(log_diag.exp())
    if tril_offdiag is not None:
        d = log_diag.shape[-1]
        rows, cols = th.tril_indices(d, d, offset=-1, device=log_diag.device)
        lower = th.zeros_like(scale_tril)
        lower[..., rows, cols] = tril_offdiag
        scale_tril = scale_tril + lower
    return scale_tril


def tril_to_params(scale_tril: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
    """Inverse of :func:`build_scale_tril`: ``(log_diag, tril_offdiag)`` of a Cholesky factor."""
    d = scale_tril.shape[-1]
    rows, cols = th.tril_indices(d, d, offset=-1, device=scale_tril.device)
    return th.diagonal(scale_tril, dim1=-2, dim2=-1).log(), scale_tril[..., rows, cols]


def tril_from_vector(tril_entries: th.Tensor, action_dim: int) -> th.Tensor:
    """Cholesky factor from its ``d(d+1)/2`` lower-triangular entries in row-major order.

    Columns whose diagonal entry is negative are flipped (``L Lᵀ`` is unchanged), and the
    diagonal is floored at ``1e-6`` so the factor is always valid.
    """
    rows, cols = th.tril_indices(action_dim, action_dim, device=tril_entries.device)
    scale_tril = tril_entries.new_zeros((*tril_entries.shape[:-1], action_dim, action_dim))
    scale_tril[..., rows, cols] = tril_entries
    diag = th.diagonal(scale_tril, dim1=-2, dim2=-1)
    sign = th.where(diag < 0, -th.ones_like(diag), th.ones_like(diag))
    scale_tril = scale_tril * sign.unsqueeze(-2)
    floor = (1e-6 - th.diagonal(scale_tril, dim1=-2, dim2=-1)).clamp(min=0.0)
    return scale_tril + th.diag_embed(floor)


def box_scaling(low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(scale, offset)`` of SB3's linear map ``a_s = scale·a + offset`` from ``[low, high]`` to [-1, 1]."""
    low = np.asarray(low, dtype=np.float64)
    high = np.asarray(high, dtype=np.float64)
    scale = 2.0 / (high - low)
    return scale, -1.0 - scale * low


def gaussian_to_unit_box(
    mean: th.Tensor, scale_tril: th.Tensor, low: np.ndarray, high: np.ndarray
) -> tuple[th.Tensor, th.Tensor]:
    """Map ``N(mean, L Lᵀ)`` in environment units to the policy's [-1, 1] space (linear map).

    The density of the mapped Gaussian is the exact density of the scaled action
    (the Jacobian of a linear map is constant), so log-probs computed with it are log-probs
    in the policy's space.
    """
    scale, offset = box_scaling(low, high)
    scale_t = th.as_tensor(scale, dtype=mean.dtype, device=mean.device)
    offset_t = th.as_tensor(offset, dtype=mean.dtype, device=mean.device)
    return mean * scale_t + offset_t, scale_tril * scale_t.unsqueeze(-1)


class SquashedMultivariateGaussianDistribution(Distribution):
    """Full-covariance Gaussian (Cholesky parameterised) followed by tanh.

    :param action_dim: dimension of the action space.
    :param epsilon: ε of the tanh correction ``log(1 − tanh(u)² + ε)`` (SB3's default 1e-6);
        ``0`` gives the exact stable formula.
    """

    distribution: MultivariateNormal

    def __init__(self, action_dim: int, epsilon: float = 1e-6):
        super().__init__()
        self.action_dim = action_dim
        self.epsilon = epsilon
        self.bijector = TanhBijector(epsilon)
        self.gaussian_actions: th.Tensor | None = None

    def proba_distribution_net(
        self, latent_dim: int, full_covariance: bool = True
    ) -> tuple[nn.Module, nn.Module, nn.Module | None]:
        """Heads for the mean, the log-diagonal of ``L`` and (optionally) its strictly-lower part.

        :return: ``(mean_actions, log_diag, tril_offdiag)`` linear layers; the last is ``None``
            when ``full_covariance`` is False or ``action_dim == 1``.
        """
        mean_actions = nn.Linear(latent_dim, self.action_dim)
        log_diag = nn.Linear(latent_dim, self.action_dim)
        has_offdiag = full_covariance and n_offdiag(self.action_dim) > 0
        offdiag = nn.Linear(latent_dim, n_offdiag(self.action_dim)) if has_offdiag else None
        return mean_actions, log_diag, offdiag

    def proba_distribution(
        self,
        mean_actions: th.Tensor,
        log_diag: th.Tensor,
        tril_offdiag: th.Tensor | None = None,
    ) -> SquashedMultivariateGaussianDistribution:
        scale_tril = build_scale_tril(log_diag, tril_offdiag)
        self.distribution = MultivariateNormal(
            mean_actions, scale_tril=scale_tril, validate_args=False
        )
        return self

    def _log_det_jacobian(self, gaussian_actions: th.Tensor) -> th.Tensor:
        """``Σ_i log(1 − tanh(u_i)²)``, shape ``(batch,)``."""
        if self.epsilon > 0:
            correction = self.bijector.log_prob_correction(gaussian_actions)
        else:
            u = gaussian_actions
            correction = 2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))
        return correction.sum(dim=-1)

    def log_prob(self, actions: th.Tensor, gaussian_actions: th.Tensor | None = None) -> th.Tensor:
        """Log-density of squashed ``actions`` (in [-1, 1]), shape ``(batch,)``.

        :param gaussian_actions: the pre-tanh values if known (avoids an inexact ``atanh``).
        """
        if gaussian_actions is None:
            gaussian_actions = TanhBijector.inverse(actions)
        return self.distribution.log_prob(gaussian_actions) - self._log_det_jacobian(
            gaussian_actions
        )

    def entropy(self) -> th.Tensor | None:
        # No closed form once squashed; SAC estimates it with -log_prob.
        return None

    def sample(self) -> th.Tensor:
        # Reparameterised: u = mean + L·ε, gradients flow to mean and L.
        self.gaussian_actions = self.distribution.rsample()
        return th.tanh(self.gaussian_actions)

    def mode(self) -> th.Tensor:
        self.gaussian_actions = self.distribution.mean
        return th.tanh(self.gaussian_actions)

    def actions_from_params(
        self,
        mean_actions: th.Tensor,
        log_diag: th.Tensor,
        tril_offdiag: th.Tensor | None = None,
        deterministic: bool = False,
    ) -> th.Tensor:
        self.proba_distribution(mean_actions, log_diag, tril_offdiag)
        return self.get_actions(deterministic=deterministic)

    def log_prob_from_params(
        self, mean_actions: th.Tensor, log_diag: th.Tensor, tril_offdiag: th.Tensor | None = None
    ) -> tuple[th.Tensor, th.Tensor]:
        actions = self.actions_from_params(mean_actions, log_diag, tril_offdiag)
        return actions, self.log_prob(actions, self.gaussian_actions)
