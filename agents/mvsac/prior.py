"""MV-SAC's Gaussian action prior ``N(μ, Σ)``: global, per state, or around the observation's cue.

One class, :class:`ActionPrior`, because the same prior serves three uses — warm-up actions
(``prior_warmup``), the ``KL(π ‖ prior)`` term of the actor loss (``prior_kl_coef``) and the actor's
initialisation (``prior_init``) — and all three need the same validation and the same map between
the environment's action units and the policy's [-1, 1] space.

Sources (``source``):

- ``"global"``: ``N(μ, Σ)`` from ``mean``/``cov`` (the MGD of real object motion), env units;
- ``"state"``: the encoder's posterior ``N(μ′(s), Σ′(s))`` read from the raw observation (``d``
  mean values and the ``d(d+1)/2`` row-major lower-triangular entries of the Cholesky factor);
- ``"cue"``: ``N(g(s), cue_scale²·Σ)`` with ``g(s) = obs[cue] · cue_std + cue_mean`` the motion the
  decoder's mask proposes (standardised in the observation).

Spaces. SB3 maps the policy's [-1, 1] linearly onto the action Box; the prior is mapped by the
inverse linear map (``μ_s = S μ + c``, ``L_s = S L``, ``S = diag(2/(high − low))``), whose density is
the exact density of the scaled action, so :meth:`ActionPrior.log_prob` is directly comparable
with ``log π``.

The prior is derived data: :class:`~bmvtrack.agents.mvsac.MVSAC` keeps (and saves) its constructor
options and rebuilds the prior from them in ``_setup_model``, also after ``load``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch as th
from gymnasium import spaces
from torch.distributions import MultivariateNormal

from bmvtrack.agents.mvsac.distributions import gaussian_to_unit_box, tril_from_vector

if TYPE_CHECKING:
    from stable_baselines3.common.vec_env import VecNormalize

    from bmvtrack.agents.mvsac.policies import MVActor

PRIOR_SOURCES = ("global", "state", "cue")
# prior_init: the scaled prior mean is clipped into [-PRIOR_INIT_CLIP, PRIOR_INIT_CLIP] before atanh.
PRIOR_INIT_CLIP = 0.99

Range = tuple[int, int]


def as_range(index: slice | tuple[int, int] | list[int] | None) -> Range | None:
    """Normalise an observation index range (``slice(a, b)``, ``(a, b)`` or ``[a, b]``) to ``(a, b)``.

    Lists come back from SB3's ``load`` (it stores tuples as JSON).
    """
    if index is None:
        return None
    if isinstance(index, slice):
        if index.step not in (None, 1) or index.start is None or index.stop is None:
            raise ValueError(
                f"observation ranges must be contiguous with explicit bounds, got {index}"
            )
        return int(index.start), int(index.stop)
    start, stop = index
    return int(start), int(stop)


def check_cue(
    cue_slice: slice | tuple[int, int] | list[int] | None,
    cue_mean: np.ndarray | None,
    cue_std: np.ndarray | None,
    action_dim: int,
    obs_dim: int,
) -> Range:
    """Validate the cue options of ``prior_source="cue"``; returns the normalised cue range."""
    cue_range = as_range(cue_slice)
    if cue_range is None or cue_mean is None or cue_std is None:
        raise ValueError("prior_source='cue' needs cue_slice, cue_mean and cue_std")
    start, stop = cue_range
    if stop - start != action_dim or start < 0 or stop > obs_dim:
        raise ValueError(f"cue_slice={(start, stop)} must cover {action_dim} entries inside the {obs_dim}-D observation")
    if cue_mean.shape != (action_dim,) or cue_std.shape != (action_dim,) or not np.all(cue_std > 0):
        raise ValueError(f"cue_mean and cue_std must be {action_dim} numbers, the stds positive")
    return cue_range


def cue_anchor(
    action_space: spaces.Box,
    observation_space: spaces.Space,
    cue_slice: slice | tuple[int, int] | list[int] | None,
    cue_mean: np.ndarray | None,
    cue_std: np.ndarray | None,
) -> dict[str, Any]:
    """The actor's ``anchor`` (see :class:`MVActor`): the cue's motion g(s) mapped into [-1, 1].

    A function, not an :class:`ActionPrior` method: the policy (which takes the anchor) is built
    before the prior, whose validation needs the built model.
    """
    d = int(np.prod(action_space.shape))
    start, stop = check_cue(cue_slice, cue_mean, cue_std, d, int(np.prod(observation_space.shape)))
    assert cue_mean is not None and cue_std is not None
    low, high = action_space.low.astype(np.float64), action_space.high.astype(np.float64)
    mid, half = (high + low) / 2.0, (high - low) / 2.0
    return {"start": start, "stop": stop,
            "scale": (cue_std / half).tolist(), "offset": ((cue_mean - mid) / half).tolist()}


def raw_observations(obs: th.Tensor, vec_normalize: VecNormalize | None) -> th.Tensor:
    """Observations as the environment produced them (undo VecNormalize if present)."""
    if vec_normalize is None:
        return obs
    raw = vec_normalize.unnormalize_obs(obs.detach().cpu().numpy())
    return th.as_tensor(raw, dtype=obs.dtype, device=obs.device)


class ActionPrior:
    """The Gaussian action prior, validated and cached in env units and in the policy's space.

    :param action_space: the agent's action Box (its bounds define the map to [-1, 1]).
    :param observation_space: the agent's flat observation space (range checks).
    :param source: ``"global"``, ``"state"`` or ``"cue"`` (see the module docstring).
    :param mean: global mean ``μ`` ``(d,)``, env units (``None``: no global prior).
    :param cov: global covariance ``Σ`` ``(d, d)``, symmetric positive definite, env units.
    :param state_mean_range: observation range of ``μ′(s)`` (``source="state"``).
    :param state_tril_range: observation range of the Cholesky entries of ``Σ′(s)``.
    :param cue_range: observation range of the standardised cue (``source="cue"``).
    :param cue_mean: ``(d,)`` mean that standardises the cue, env units.
    :param cue_std: ``(d,)`` std that standardises the cue, env units.
    :param cue_scale: the cue prior's Cholesky factor is the global one times this; with ``source="state"`` and
        ``init``, the spread of the initial residual around μ′(s), as a fraction of the global prior's.
    :param used: the agent samples from or scores under the prior (warm-up, KL term); the
        global source then needs ``mean``/``cov``. Checked here to keep one order of errors.
    :param init: the actor is initialised at the prior, which then needs ``mean``/``cov``.
    :param device: device of the cached policy-space tensors.
    """

    def __init__(
        self,
        action_space: spaces.Box,
        observation_space: spaces.Space,
        *,
        source: str = "global",
        mean: np.ndarray | None = None,
        cov: np.ndarray | None = None,
        state_mean_range: slice | tuple[int, int] | list[int] | None = None,
        state_tril_range: slice | tuple[int, int] | list[int] | None = None,
        cue_range: slice | tuple[int, int] | list[int] | None = None,
        cue_mean: np.ndarray | None = None,
        cue_std: np.ndarray | None = None,
        cue_scale: float = 1.0,
        used: bool = False,
        init: bool = False,
        device: th.device | str = "cpu",
    ) -> None:
        self.action_space = action_space
        self.dim = d = int(np.prod(action_space.shape))
        obs_dim = int(np.prod(observation_space.shape))
        if source not in PRIOR_SOURCES:
            raise ValueError(f"prior_source must be one of {PRIOR_SOURCES}, got {source!r}")
        if (mean is None) != (cov is None):
            raise ValueError("prior_mean and prior_cov must be given together")
        self.source = source
        self.init_scale = float(cue_scale)  # prior_init with a per-state source: the residual's spread, × the global prior's
        self.mean = None if mean is None else np.asarray(mean, dtype=np.float64)
        self.cue_mean = None if cue_mean is None else np.asarray(cue_mean, dtype=np.float64)
        self.cue_std = None if cue_std is None else np.asarray(cue_std, dtype=np.float64)

        self.mean_scaled: th.Tensor | None = None  # policy space
        self.tril_scaled: th.Tensor | None = None
        self.tril_env: np.ndarray | None = None  # env units (times cue_scale for the cue source)
        if self.mean is not None:
            cov = np.asarray(cov, dtype=np.float64)
            if self.mean.shape != (d,) or cov.shape != (d, d):
                raise ValueError(f"prior shapes {self.mean.shape}, {cov.shape} do not match action dim {d}")
            if not np.allclose(cov, cov.T, atol=1e-8):
                raise ValueError("prior_cov is not symmetric")
            try:
                self.tril_env = np.linalg.cholesky(cov)
            except np.linalg.LinAlgError as err:
                raise ValueError("prior_cov is not positive definite (Cholesky failed)") from err
            if source == "cue":
                if cue_scale <= 0:
                    raise ValueError(f"cue_scale must be > 0, got {cue_scale}")
                self.tril_env = self.tril_env * cue_scale
            mean_s, tril_s = gaussian_to_unit_box(
                th.as_tensor(self.mean, dtype=th.float32),
                th.as_tensor(self.tril_env, dtype=th.float32),
                action_space.low,
                action_space.high,
            )
            self.mean_scaled, self.tril_scaled = mean_s.to(device), tril_s.to(device)

        if source == "global" and used and self.mean is None:
            raise ValueError(
                "prior_warmup / prior_kl_coef with prior_source='global' need prior_mean and prior_cov"
            )
        if init and self.mean is None:
            raise ValueError("prior_init needs the global prior (prior_mean and prior_cov)")
        self.state_mean_range: Range | None = None
        self.state_tril_range: Range | None = None
        self.cue_range: Range | None = None
        if source == "state":
            self.state_mean_range, self.state_tril_range = as_range(state_mean_range), as_range(state_tril_range)
            self._check_state_ranges(d, obs_dim)
        if source == "cue":
            self.cue_range = check_cue(cue_range, self.cue_mean, self.cue_std, d, obs_dim)
            if self.mean is None:
                raise ValueError("prior_source='cue' needs the global prior's covariance (prior_mean and prior_cov)")

    def _check_state_ranges(self, d: int, obs_dim: int) -> None:
        if self.state_mean_range is None or self.state_tril_range is None:
            raise ValueError(
                "prior_source='state' needs state_prior_mean_slice and state_prior_tril_slice"
            )
        for name, (start, stop), length in (
            ("state_prior_mean_slice", self.state_mean_range, d),
            ("state_prior_tril_slice", self.state_tril_range, d * (d + 1) // 2),
        ):
            if stop - start != length or start < 0 or stop > obs_dim:
                raise ValueError(
                    f"{name}={(start, stop)} must cover {length} entries inside the {obs_dim}-D observation"
                )

    def state_params_env(self, raw_obs: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """Per-state prior ``(μ′(s), L′(s))`` in env units from raw observations ``(B, obs_dim)``."""
        if self.source == "cue":
            assert self.cue_range is not None and self.tril_env is not None
            std = th.as_tensor(self.cue_std, dtype=raw_obs.dtype, device=raw_obs.device)
            mean = raw_obs[:, slice(*self.cue_range)] * std + th.as_tensor(self.cue_mean, dtype=raw_obs.dtype,
                                                                            device=raw_obs.device)
            tril = th.as_tensor(self.tril_env, dtype=raw_obs.dtype, device=raw_obs.device)
            return mean, tril.expand(raw_obs.shape[0], -1, -1)
        assert self.state_mean_range is not None and self.state_tril_range is not None
        mean = raw_obs[:, slice(*self.state_mean_range)]
        tril = tril_from_vector(raw_obs[:, slice(*self.state_tril_range)], self.dim)
        return mean, tril

    def params(
        self, observations: th.Tensor, vec_normalize: VecNormalize | None = None
    ) -> tuple[th.Tensor, th.Tensor]:
        """Prior ``(mean, scale_tril)`` in the policy's [-1, 1] space for a batch of observations.

        :param observations: ``(B, obs_dim)`` as the policy sees them (normalised by
            ``vec_normalize`` if given).
        :return: ``(B, d)`` means and ``(B, d, d)`` Cholesky factors.
        """
        batch = observations.shape[0]
        if self.source == "global":
            assert self.mean_scaled is not None and self.tril_scaled is not None
            d = self.dim
            return self.mean_scaled.expand(batch, d), self.tril_scaled.expand(batch, d, d)
        mean, tril = self.state_params_env(raw_observations(observations.float(), vec_normalize))
        return gaussian_to_unit_box(mean, tril, self.action_space.low, self.action_space.high)

    def log_prob(
        self, scaled_actions: th.Tensor, observations: th.Tensor, vec_normalize: VecNormalize | None = None
    ) -> th.Tensor:
        """Log-density of the prior at actions in the policy's [-1, 1] space, shape ``(B,)``."""
        mean, tril = self.params(observations, vec_normalize)
        return MultivariateNormal(mean, scale_tril=tril, validate_args=False).log_prob(scaled_actions)

    def kl(
        self,
        scaled_actions: th.Tensor,
        log_prob: th.Tensor,
        observations: th.Tensor,
        vec_normalize: VecNormalize | None = None,
    ) -> th.Tensor:
        """One-sample Monte-Carlo estimates of ``KL(π(·|s) ‖ prior(·|s))``, shape ``(B,)``.

        ``KL(π ‖ prior)`` has no closed form for a squashed Gaussian; with ``a ∼ π`` the actor's
        reparameterised sample and ``log_prob = log π(a|s)`` (shape ``(B,)``), ``log π − log prior``
        is unbiased, differentiable through both, and finite (the prior has full support).
        """
        return log_prob - self.log_prob(scaled_actions, observations, vec_normalize)

    def sample(self, rng: np.random.Generator, n: int, raw_obs: np.ndarray | None = None,
               mean_range: Range | None = None) -> np.ndarray:
        """``n`` warm-up actions in env units, clipped into the action Box, ``(n, d)``.

        :param rng: the generator to draw from (MV-SAC passes the action space's, like SB3's
            uniform warm-up).
        :param raw_obs: ``(n, obs_dim)`` raw observations (per-state sources only).
        :param mean_range: draw around this observation range (``d`` values, env units) instead of
            the prior's mean, with the prior's spread (per-state sources only): MV-SAC's cue exploration.
        """
        noise = rng.standard_normal((n, self.dim))
        if self.source == "global":
            if mean_range is not None:
                raise ValueError("mean_range needs a per-state prior (source 'state' or 'cue')")
            assert self.mean is not None and self.tril_env is not None
            actions = self.mean + noise @ self.tril_env.T
        else:
            assert raw_obs is not None, "no observation to read the state prior from"
            obs = np.asarray(raw_obs, dtype=np.float64).reshape(n, -1)
            mean, tril = self.state_params_env(th.as_tensor(obs))
            mean = mean.numpy() if mean_range is None else obs[:, slice(*mean_range)]
            actions = mean + np.einsum("bij,bj->bi", tril.numpy(), noise)
        low, high = self.action_space.low, self.action_space.high
        return np.clip(actions, low, high).astype(self.action_space.dtype)

    def init_actor(self, actor: MVActor) -> None:
        """Set the actor's output to the prior, expressed in pre-tanh space.

        Global prior — mean: ``atanh`` of the scaled prior mean (clipped to ±PRIOR_INIT_CLIP);
        covariance: the scaled covariance pulled back through tanh to first order (delta method),
        ``L_pre = D L_s`` with ``D = diag(1 / (1 − m²))``, ``m`` the clipped scaled mean, so the
        squashed policy's covariance matches the prior's to first order. Cue prior: a residual
        around the actor's anchor, i.e. zero offset and the prior's spread.
        """
        assert self.mean_scaled is not None and self.tril_scaled is not None
        if self.source == "cue":
            actor.init_to_gaussian(th.zeros_like(self.mean_scaled), self.tril_scaled)
            return
        if self.source == "state":  # a residual around μ′(s) (the actor's anchor), the global spread × init_scale
            actor.init_to_gaussian(th.zeros_like(self.mean_scaled), self.tril_scaled * self.init_scale)
            return
        m = self.mean_scaled.clamp(-PRIOR_INIT_CLIP, PRIOR_INIT_CLIP)
        tril_pre = self.tril_scaled / (1.0 - m**2).unsqueeze(-1)
        actor.init_to_gaussian(th.atanh(m), tril_pre)
