"""MV-SAC policy: SB3's SAC actor/policy with a full-covariance squashed Gaussian.

Only what changes is overridden:

- :class:`MVActor` replaces the actor's distribution and heads (mean, log-diagonal of the
  Cholesky factor, strictly-lower Cholesky entries) and ``get_action_dist_params``, whose third
  return value (the kwargs SB3 passes untouched to the distribution) carries the strictly-lower
  entries. ``forward``, ``action_log_prob`` and ``_predict`` are SB3's.
- :class:`MVSACPolicy` overrides ``make_actor`` and saves its two new options.

Flat ``Box`` observations only (``MlpPolicy``); gSDE is not supported.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.preprocessing import get_action_dim
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from stable_baselines3.sac.policies import LOG_STD_MAX, LOG_STD_MIN, Actor, SACPolicy
from torch.nn import functional as F

from bmvtrack.agents.mvsac.distributions import SquashedMultivariateGaussianDistribution, tril_to_params

# The Cholesky factor's strictly-lower entries are soft-bounded to ±e^LOG_STD_MAX, like its
# diagonal: unbounded, the entropy bonus (and a KL(π ‖ prior) term) can grow them without limit
# until the squashed log-probability overflows (measured: NaN after ~550 updates).
OFFDIAG_BOUND = float(np.exp(LOG_STD_MAX))

CHOLESKY_DIAG_TRANSFORMS = ("exp", "softplus")
# An anchor action is clipped to ±ANCHOR_CLIP (policy space) before atanh: the bounds are infinite.
ANCHOR_CLIP = 0.99


class MVActor(Actor):
    """SAC actor whose action distribution is a tanh-squashed full-covariance Gaussian.

    Takes SB3's ``Actor`` arguments plus:

    :param full_covariance: learn the strictly-lower Cholesky entries (False: diagonal
        covariance, i.e. plain SAC's distribution — an ablation switch).
    :param cholesky_diag: how the network output becomes the Cholesky diagonal: ``"exp"``
        (exp of the output clamped to SAC's ``[LOG_STD_MIN, LOG_STD_MAX]``) or ``"softplus"``
        (softplus, clamped to the same range).
    :param anchor: ``{"start", "stop", "scale", "offset"}`` or None. When given, the pre-tanh mean
        is ``atanh(clip(obs[start:stop]·scale + offset)) + mu(s)``: the network learns a residual
        around an action the observation already proposes (MV-SAC's ``prior_source="cue"``).
    """

    action_dist: SquashedMultivariateGaussianDistribution  # type: ignore[assignment]

    def __init__(
        self,
        *args: Any,
        full_covariance: bool = True,
        cholesky_diag: str = "exp",
        anchor: dict[str, Any] | None = None,
        **kwargs: Any,
    ):
        if kwargs.get("use_sde", False):
            raise ValueError("MVActor does not support gSDE (use_sde=True)")
        if cholesky_diag not in CHOLESKY_DIAG_TRANSFORMS:
            raise ValueError(
                f"cholesky_diag must be one of {CHOLESKY_DIAG_TRANSFORMS}, got {cholesky_diag!r}"
            )
        super().__init__(*args, **kwargs)
        self.full_covariance = full_covariance
        self.cholesky_diag = cholesky_diag
        self.anchor = anchor
        self._anchor_range: tuple[int, int] | None = None
        if anchor is not None:
            self._anchor_range = (int(anchor["start"]), int(anchor["stop"]))
            self.register_buffer("anchor_scale", th.as_tensor(anchor["scale"], dtype=th.float32))
            self.register_buffer("anchor_offset", th.as_tensor(anchor["offset"], dtype=th.float32))

        action_dim = get_action_dim(self.action_space)
        last_layer_dim = self.net_arch[-1] if len(self.net_arch) > 0 else self.features_dim
        self.action_dist = SquashedMultivariateGaussianDistribution(action_dim)
        # Replace SAC's diagonal heads: `log_std` now outputs the (raw) Cholesky diagonal.
        self.mu, self.log_std, self.cholesky_offdiag = self.action_dist.proba_distribution_net(
            last_layer_dim, full_covariance=full_covariance
        )

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(full_covariance=self.full_covariance, cholesky_diag=self.cholesky_diag,
                    anchor=self.anchor)
        return data

    def anchor_mean(self, obs: th.Tensor) -> th.Tensor | None:
        """Pre-tanh action proposed by the observation (None without an anchor)."""
        if self._anchor_range is None:
            return None
        a, b = self._anchor_range
        scaled = obs[:, a:b].float() * self.anchor_scale + self.anchor_offset
        return th.atanh(scaled.clamp(-ANCHOR_CLIP, ANCHOR_CLIP))

    def _log_diag(self, raw: th.Tensor) -> th.Tensor:
        """Network output → log of the Cholesky diagonal (clamped like SAC's log-std)."""
        if self.cholesky_diag == "softplus":
            raw = th.log(F.softplus(raw).clamp(min=float(np.exp(LOG_STD_MIN))))
        return th.clamp(raw, LOG_STD_MIN, LOG_STD_MAX)

    def _raw_from_log_diag(self, log_diag: th.Tensor) -> th.Tensor:
        """Inverse of :meth:`_log_diag` inside the clamp range (used to set biases)."""
        log_diag = log_diag.clamp(LOG_STD_MIN, LOG_STD_MAX)
        if self.cholesky_diag == "softplus":
            return th.log(th.expm1(log_diag.exp()))
        return log_diag

    def get_action_dist_params(
        self, obs: PyTorchObs
    ) -> tuple[th.Tensor, th.Tensor, dict[str, th.Tensor]]:
        """Mean, log of the Cholesky diagonal, and ``{"tril_offdiag": ...}`` for the distribution."""
        features = self.extract_features(obs, self.features_extractor)
        latent_pi = self.latent_pi(features)
        mean_actions = self.mu(latent_pi)
        anchor = self.anchor_mean(obs)  # type: ignore[arg-type]
        if anchor is not None:
            mean_actions = mean_actions + anchor
        log_diag = self._log_diag(self.log_std(latent_pi))  # type: ignore[operator]
        if self.cholesky_offdiag is None:
            return mean_actions, log_diag, {}
        raw = self.cholesky_offdiag(latent_pi)
        return mean_actions, log_diag, {"tril_offdiag": OFFDIAG_BOUND * th.tanh(raw / OFFDIAG_BOUND)}

    @th.no_grad()
    def init_to_gaussian(self, mean: th.Tensor, scale_tril: th.Tensor) -> None:
        """Make the actor output ``N(mean, L Lᵀ)`` (pre-tanh) for every observation.

        The last layers' weights are zeroed and their biases set; the hidden layers keep their
        random initialisation, so gradients flow as soon as the last weights move. With a
        diagonal actor, the Cholesky diagonal is set to the marginal standard deviations.
        """
        mean = th.as_tensor(mean, dtype=th.float32, device=self.device)
        scale_tril = th.as_tensor(scale_tril, dtype=th.float32, device=self.device)
        if self.cholesky_offdiag is None:
            log_diag = 0.5 * th.log(th.diagonal(scale_tril @ scale_tril.T))
            offdiag = None
        else:
            log_diag, offdiag = tril_to_params(scale_tril)
        heads = [(self.mu, mean), (self.log_std, self._raw_from_log_diag(log_diag))]
        if offdiag is not None:
            inner = (offdiag / OFFDIAG_BOUND).clamp(-0.999, 0.999)
            heads.append((self.cholesky_offdiag, OFFDIAG_BOUND * th.atanh(inner)))
        for layer, bias in heads:
            layer.weight.zero_()  # type: ignore[union-attr]
            layer.bias.copy_(bias)  # type: ignore[union-attr]


class MVSACPolicy(SACPolicy):
    """SAC policy (actor + twin critics) whose actor is an :class:`MVActor`.

    Takes SB3's ``SACPolicy`` arguments (``use_sde`` must stay False) plus:

    :param full_covariance: see :class:`MVActor`.
    :param cholesky_diag: see :class:`MVActor`.
    :param anchor: see :class:`MVActor`.
    """

    actor: MVActor  # type: ignore[assignment]

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Box,
        lr_schedule: Schedule,
        *args: Any,
        full_covariance: bool = True,
        cholesky_diag: str = "exp",
        anchor: dict[str, Any] | None = None,
        **kwargs: Any,
    ):
        if not isinstance(observation_space, spaces.Box) or len(observation_space.shape) != 1:
            raise ValueError(
                f"MVSACPolicy expects a flat Box observation space, got {observation_space}"
            )
        # Must exist before SACPolicy.__init__ -> _build() -> make_actor().
        self._mv_actor_kwargs = {"full_covariance": full_covariance, "cholesky_diag": cholesky_diag,
                                 "anchor": anchor}
        super().__init__(observation_space, action_space, lr_schedule, *args, **kwargs)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(self._mv_actor_kwargs)
        return data

    def make_actor(self, features_extractor: BaseFeaturesExtractor | None = None) -> MVActor:
        actor_kwargs = self._update_features_extractor(self.actor_kwargs, features_extractor)
        return MVActor(**actor_kwargs, **self._mv_actor_kwargs).to(self.device)


MlpPolicy = MVSACPolicy
