"""MV-SAC: SB3's SAC with a full-covariance squashed Gaussian actor and a Gaussian action prior.

What is added to :class:`stable_baselines3.SAC` (each option is off by default and switchable):

- the actor's distribution is a tanh-squashed full-covariance Gaussian (:mod:`.policies`);
- an action prior ``N(μ, Σ)``: the global MGD of real object motion (``prior_source="global"``,
  ``prior_mean``/``prior_cov`` in the environment's action units), the encoder's per-state
  posterior ``N(μ′(s), Σ′(s))`` read from the observation (``prior_source="state"``), or the
  motion the decoder's mask proposes for this state with the global covariance,
  ``N(g(s), Σ)`` (``prior_source="cue"``, the ``features_motion`` observation);
- ``prior_warmup``: warm-up actions (before ``learning_starts``) drawn from the prior and clipped
  into the action Box, instead of SB3's uniform noise (``_sample_action`` override);
- ``prior_kl_coef``: ``coef · KL(π(·|s) ‖ prior)`` added to the actor loss (``train`` override);
- ``prior_init``: the actor starts out equal to the (global) prior (:meth:`MVActor.init_to_gaussian`);
  with ``prior_source="cue"`` it starts out equal to the cue's prior and stays a residual around
  ``g(s)`` (the actor's ``anchor``), so the policy begins as the segmentation tracker;
- learning from the expert: :meth:`MVSAC.bc_pretrain` (behaviour-cloning warm start) and
  :meth:`MVSAC.add_demonstrations` (expert transitions pushed into the replay buffer).

All of these are instance attributes saved by SB3's ``save`` and restored by ``MVSAC.load``.

Spaces. The policy acts in [-1, 1]^d; SB3 maps it linearly onto the action Box
``[low, high]`` (``a_env = low + (a + 1)(high − low)/2``). The prior, given in environment
units, is mapped by the inverse linear map: ``μ_s = S μ + c``, ``L_s = S L`` with
``S = diag(2/(high − low))``. A linear map keeps a Gaussian Gaussian and its density is the exact
density of the scaled action, so every prior log-probability below is a log-density on the
policy's [-1, 1] space, directly comparable with ``log π``.

KL estimator. ``KL(π ‖ prior) = E_{a∼π}[log π(a|s) − log prior(a|s)]`` has no closed form for a
squashed Gaussian, so it is estimated by Monte Carlo with the actor's own reparameterised samples
``a = tanh(μ(s) + L(s) ε)`` — the same samples (and the same ``log π``) SAC already draws for its
actor loss, one per state of the batch. The estimate is unbiased and differentiable through ``a``
and ``log π``. It is finite for any policy because the Gaussian prior has full support.

Target entropy. The default stays SAC's ``-dim(A)``. The differential entropy of a Gaussian depends
on its covariance only through ``log det Σ = 2 Σ_i log L_ii``; correlations are free at a fixed
entropy, so the same volume target applies to a full-covariance Gaussian as to a diagonal one
(and the tanh correction is the same term in both). A float can be passed as usual.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch as th
from stable_baselines3 import SAC
from stable_baselines3.common.noise import ActionNoise
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv
from stable_baselines3.common.utils import polyak_update
from torch.distributions import MultivariateNormal
from torch.nn import functional as F

from bmvtrack.agents.mvsac.distributions import gaussian_to_unit_box, tril_from_vector
from bmvtrack.agents.mvsac.policies import MVActor, MVSACPolicy

PRIOR_SOURCES = ("global", "state", "cue")
# Expert actions are clipped into [-BC_ACTION_CLIP, BC_ACTION_CLIP] (policy space) before their
# log-likelihood is taken: atanh(±1) is infinite, and a bound action would drag the mean away.
BC_ACTION_CLIP = 0.999
# With the KL term on, the actor's gradient norm is clipped to this: the one-sample Monte-Carlo
# KL is noisy (measured: batch means from 1 to 29 between consecutive updates) and a rare spike
# drove the actor to NaN after ~550 updates.
KL_GRAD_CLIP = 10.0
# prior_init: the scaled prior mean is clipped into [-PRIOR_INIT_CLIP, PRIOR_INIT_CLIP] before atanh.
PRIOR_INIT_CLIP = 0.99


def _as_range(index: slice | tuple[int, int] | list[int] | None) -> tuple[int, int] | None:
    """Normalise an observation index range (``slice(a, b)`` or ``(a, b)``) to a ``(a, b)`` tuple."""
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


class MVSAC(SAC):
    """Soft Actor-Critic with a full-covariance Gaussian policy and a multivariate Gaussian action prior.

    Takes every :class:`~stable_baselines3.SAC` argument by keyword (``policy`` and ``env``
    may be positional), plus:

    :param prior_mean: global prior mean ``μ`` (shape ``(d,)``), environment action units.
    :param prior_cov: global prior covariance ``Σ`` (``(d, d)``, symmetric positive definite),
        environment action units.
    :param prior_source: ``"global"`` (``prior_mean``/``prior_cov``), ``"state"`` (the
        per-state posterior read from the observation) or ``"cue"`` (the observation's proposed
        motion with the global covariance).
    :param state_prior_mean_slice: ``(start, stop)`` or ``slice`` of the flat observation holding
        ``μ′(s)`` (``d`` values, env action units); required for ``prior_source="state"``.
    :param state_prior_tril_slice: range holding the ``d(d+1)/2`` lower-triangular entries of the
        Cholesky factor of ``Σ′(s)`` in row-major order (env action units).
    :param prior_warmup: draw warm-up actions (before ``learning_starts``) from the prior,
        clipped into the action Box, instead of uniformly.
    :param prior_kl_coef: weight of the Monte-Carlo ``KL(π ‖ prior)`` added to the actor loss
        (0 disables it and leaves SAC's update untouched).
    :param prior_init: initialise the actor so that it outputs the global prior (needs
        ``prior_mean``/``prior_cov`` also when ``prior_source="state"``); with
        ``prior_source="cue"``, a residual actor around the cue's motion.
    :param cue_slice: range of the flat observation holding the cue's ``d`` standardised motion
        values ``(g − cue_mean)/cue_std``; required for ``prior_source="cue"``.
    :param cue_mean: ``(d,)`` mean used to standardise the cue (env action units).
    :param cue_std: ``(d,)`` std used to standardise the cue (env action units).
    :param cue_scale: the cue prior's covariance is the global one times ``cue_scale²``: how far
        from the proposed motion the warm-up, the KL term and the initial policy spread. The
        global prior is the spread of object motion; a useful cue is wrong by much less.
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {"MlpPolicy": MVSACPolicy}
    policy: MVSACPolicy
    actor: MVActor

    def __init__(
        self,
        policy: str | type[MVSACPolicy],
        env: GymEnv | str,
        *,
        prior_mean: np.ndarray | None = None,
        prior_cov: np.ndarray | None = None,
        prior_source: str = "global",
        state_prior_mean_slice: slice | tuple[int, int] | None = None,
        state_prior_tril_slice: slice | tuple[int, int] | None = None,
        prior_warmup: bool = False,
        prior_kl_coef: float = 0.0,
        prior_init: bool = False,
        cue_slice: slice | tuple[int, int] | None = None,
        cue_mean: np.ndarray | None = None,
        cue_std: np.ndarray | None = None,
        cue_scale: float = 1.0,
        **sac_kwargs: Any,
    ):
        # Set before SAC.__init__, which calls _setup_model().
        self.prior_mean = None if prior_mean is None else np.asarray(prior_mean, dtype=np.float64)
        self.prior_cov = None if prior_cov is None else np.asarray(prior_cov, dtype=np.float64)
        self.prior_source = prior_source
        self.state_prior_mean_slice = _as_range(state_prior_mean_slice)
        self.state_prior_tril_slice = _as_range(state_prior_tril_slice)
        self.prior_warmup = bool(prior_warmup)
        self.prior_kl_coef = float(prior_kl_coef)
        self.prior_init = bool(prior_init)
        self.cue_slice = _as_range(cue_slice)
        self.cue_mean = None if cue_mean is None else np.asarray(cue_mean, dtype=np.float64)
        self.cue_std = None if cue_std is None else np.asarray(cue_std, dtype=np.float64)
        self.cue_scale = float(cue_scale)
        super().__init__(policy, env, **sac_kwargs)

    # ------------------------------------------------------------------ set-up and saving

    def _setup_model(self) -> None:
        if self.prior_source == "cue" and self.prior_init:
            self.policy_kwargs = {**self.policy_kwargs, "anchor": self._cue_anchor()}
        super()._setup_model()
        self._setup_prior()
        if self.prior_init:
            self._init_actor_to_prior()

    def _excluded_save_params(self) -> list[str]:
        # Derived tensors, rebuilt from prior_mean/prior_cov by _setup_model() on load.
        return [
            *super()._excluded_save_params(),
            "_prior_mean_scaled",
            "_prior_tril_scaled",
            "_prior_tril_env",
        ]

    @property
    def action_dim(self) -> int:
        return int(np.prod(self.action_space.shape))

    def _setup_prior(self) -> None:
        """Validate the prior options and cache the global prior in both spaces."""
        d = self.action_dim
        if self.prior_source not in PRIOR_SOURCES:
            raise ValueError(
                f"prior_source must be one of {PRIOR_SOURCES}, got {self.prior_source!r}"
            )
        if (self.prior_mean is None) != (self.prior_cov is None):
            raise ValueError("prior_mean and prior_cov must be given together")

        self._prior_mean_scaled: th.Tensor | None = None
        self._prior_tril_scaled: th.Tensor | None = None
        self._prior_tril_env: np.ndarray | None = None
        if self.prior_mean is not None:
            assert self.prior_cov is not None
            if self.prior_mean.shape != (d,) or self.prior_cov.shape != (d, d):
                raise ValueError(
                    f"prior shapes {self.prior_mean.shape}, {self.prior_cov.shape} do not match action dim {d}"
                )
            if not np.allclose(self.prior_cov, self.prior_cov.T, atol=1e-8):
                raise ValueError("prior_cov is not symmetric")
            try:
                self._prior_tril_env = np.linalg.cholesky(self.prior_cov)
            except np.linalg.LinAlgError as err:
                raise ValueError("prior_cov is not positive definite (Cholesky failed)") from err
            if self.prior_source == "cue":
                if self.cue_scale <= 0:
                    raise ValueError(f"cue_scale must be > 0, got {self.cue_scale}")
                self._prior_tril_env = self._prior_tril_env * self.cue_scale
            mean_s, tril_s = gaussian_to_unit_box(
                th.as_tensor(self.prior_mean, dtype=th.float32),
                th.as_tensor(self._prior_tril_env, dtype=th.float32),
                self.action_space.low,
                self.action_space.high,
            )
            self._prior_mean_scaled, self._prior_tril_scaled = (
                mean_s.to(self.device),
                tril_s.to(self.device),
            )

        uses_prior = self.prior_warmup or self.prior_kl_coef > 0
        if self.prior_source == "global" and uses_prior and self.prior_mean is None:
            raise ValueError(
                "prior_warmup / prior_kl_coef with prior_source='global' need prior_mean and prior_cov"
            )
        if self.prior_init and self.prior_mean is None:
            raise ValueError("prior_init needs the global prior (prior_mean and prior_cov)")
        if self.prior_source == "state":
            # SB3 saves JSON-able attributes as JSON: tuples come back from `load` as lists.
            self.state_prior_mean_slice = _as_range(self.state_prior_mean_slice)
            self.state_prior_tril_slice = _as_range(self.state_prior_tril_slice)
            self._check_state_slices(d)
        if self.prior_source == "cue":
            self._check_cue(d)
            if self.prior_mean is None:
                raise ValueError("prior_source='cue' needs the global prior's covariance (prior_mean and prior_cov)")

    def _check_cue(self, d: int) -> None:
        self.cue_slice = _as_range(self.cue_slice)
        if self.cue_slice is None or self.cue_mean is None or self.cue_std is None:
            raise ValueError("prior_source='cue' needs cue_slice, cue_mean and cue_std")
        obs_dim = int(np.prod(self.observation_space.shape))
        start, stop = self.cue_slice
        if stop - start != d or start < 0 or stop > obs_dim:
            raise ValueError(f"cue_slice={(start, stop)} must cover {d} entries inside the {obs_dim}-D observation")
        if self.cue_mean.shape != (d,) or self.cue_std.shape != (d,) or not np.all(self.cue_std > 0):
            raise ValueError(f"cue_mean and cue_std must be {d} numbers, the stds positive")

    def _cue_anchor(self) -> dict[str, Any]:
        """The actor's anchor: the cue's motion g(s) mapped into the policy's [-1, 1] space."""
        self._check_cue(self.action_dim)
        assert self.cue_slice is not None and self.cue_mean is not None and self.cue_std is not None
        low, high = self.action_space.low.astype(np.float64), self.action_space.high.astype(np.float64)
        mid, half = (high + low) / 2.0, (high - low) / 2.0
        return {"start": self.cue_slice[0], "stop": self.cue_slice[1],
                "scale": (self.cue_std / half).tolist(), "offset": ((self.cue_mean - mid) / half).tolist()}

    def _check_state_slices(self, d: int) -> None:
        if self.state_prior_mean_slice is None or self.state_prior_tril_slice is None:
            raise ValueError(
                "prior_source='state' needs state_prior_mean_slice and state_prior_tril_slice"
            )
        obs_dim = int(np.prod(self.observation_space.shape))
        for name, (start, stop), length in (
            ("state_prior_mean_slice", self.state_prior_mean_slice, d),
            ("state_prior_tril_slice", self.state_prior_tril_slice, d * (d + 1) // 2),
        ):
            if stop - start != length or start < 0 or stop > obs_dim:
                raise ValueError(
                    f"{name}={(start, stop)} must cover {length} entries inside the {obs_dim}-D observation"
                )

    def _init_actor_to_prior(self) -> None:
        """Set the actor's output to the global prior, expressed in pre-tanh space.

        Mean: ``atanh`` of the scaled prior mean (clipped to ±PRIOR_INIT_CLIP). Covariance: the
        scaled covariance pulled back through tanh to first order (delta method):
        ``L_pre = D L_s`` with ``D = diag(1 / (1 − m²))``, ``m`` the clipped scaled mean, so the
        squashed policy's covariance matches the prior's to first order (at ``m = 0``, ``L_pre = L_s``).
        """
        assert self._prior_mean_scaled is not None and self._prior_tril_scaled is not None
        if self.prior_source == "cue":  # a residual around the anchor: zero offset, the prior's spread
            self.actor.init_to_gaussian(th.zeros_like(self._prior_mean_scaled), self._prior_tril_scaled)
            return
        m = self._prior_mean_scaled.clamp(-PRIOR_INIT_CLIP, PRIOR_INIT_CLIP)
        tril_pre = self._prior_tril_scaled / (1.0 - m**2).unsqueeze(-1)
        self.actor.init_to_gaussian(th.atanh(m), tril_pre)

    # ------------------------------------------------------------------ the prior

    def _raw_observations(self, obs: th.Tensor) -> th.Tensor:
        """Observations as the environment produced them (undo VecNormalize if present)."""
        if self._vec_normalize_env is None:
            return obs
        raw = self._vec_normalize_env.unnormalize_obs(obs.detach().cpu().numpy())
        return th.as_tensor(raw, dtype=obs.dtype, device=obs.device)

    def _state_prior_env(self, raw_obs: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """Per-state prior ``(μ′(s), L′(s))`` in env units from raw observations ``(B, obs_dim)``."""
        if self.prior_source == "cue":
            assert self.cue_slice is not None and self._prior_tril_env is not None
            std = th.as_tensor(self.cue_std, dtype=raw_obs.dtype, device=raw_obs.device)
            mean = raw_obs[:, slice(*self.cue_slice)] * std + th.as_tensor(self.cue_mean, dtype=raw_obs.dtype,
                                                                            device=raw_obs.device)
            tril = th.as_tensor(self._prior_tril_env, dtype=raw_obs.dtype, device=raw_obs.device)
            return mean, tril.expand(raw_obs.shape[0], -1, -1)
        assert self.state_prior_mean_slice is not None and self.state_prior_tril_slice is not None
        mean = raw_obs[:, slice(*self.state_prior_mean_slice)]
        tril = tril_from_vector(raw_obs[:, slice(*self.state_prior_tril_slice)], self.action_dim)
        return mean, tril

    def prior_params(self, observations: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """Prior ``(mean, scale_tril)`` in the policy's [-1, 1] space for a batch of observations.

        :param observations: ``(B, obs_dim)`` as the policy sees them (normalised if VecNormalize).
        :return: ``(B, d)`` means and ``(B, d, d)`` Cholesky factors.
        """
        batch = observations.shape[0]
        if self.prior_source == "global":
            assert self._prior_mean_scaled is not None and self._prior_tril_scaled is not None
            d = self.action_dim
            return self._prior_mean_scaled.expand(batch, d), self._prior_tril_scaled.expand(
                batch, d, d
            )
        mean, tril = self._state_prior_env(self._raw_observations(observations.float()))
        return gaussian_to_unit_box(mean, tril, self.action_space.low, self.action_space.high)

    def prior_log_prob(self, scaled_actions: th.Tensor, observations: th.Tensor) -> th.Tensor:
        """Log-density of the prior at actions in the policy's [-1, 1] space, shape ``(B,)``."""
        mean, tril = self.prior_params(observations)
        return MultivariateNormal(mean, scale_tril=tril, validate_args=False).log_prob(
            scaled_actions
        )

    def prior_kl(self, observations: th.Tensor) -> th.Tensor:
        """One-sample Monte-Carlo estimates of ``KL(π(·|s) ‖ prior(·|s))``, shape ``(B,)``.

        ``log π(a|s) − log prior(a|s)`` with ``a`` the actor's reparameterised sample
        (differentiable). Average over many samples (repeat observations) for a precise value.
        """
        actions, log_prob = self.actor.action_log_prob(observations)
        return log_prob - self.prior_log_prob(actions, observations)

    def _sample_prior_actions(self, n_envs: int) -> np.ndarray:
        """Actions drawn from the prior in env units, clipped into the action Box, ``(n_envs, d)``."""
        rng = self.action_space.np_random
        noise = rng.standard_normal((n_envs, self.action_dim))
        if self.prior_source == "global":
            assert self.prior_mean is not None and self._prior_tril_env is not None
            actions = self.prior_mean + noise @ self._prior_tril_env.T
        else:
            last_obs = (
                self._last_original_obs if self._vec_normalize_env is not None else self._last_obs
            )
            assert last_obs is not None, "no observation to read the state prior from"
            mean, tril = self._state_prior_env(th.as_tensor(np.asarray(last_obs), dtype=th.float64))
            actions = mean.numpy() + np.einsum("bij,bj->bi", tril.numpy(), noise)
        low, high = self.action_space.low, self.action_space.high
        return np.clip(actions, low, high).astype(self.action_space.dtype)

    def _sample_action(
        self,
        learning_starts: int,
        action_noise: ActionNoise | None = None,
        n_envs: int = 1,
    ) -> tuple[np.ndarray, np.ndarray]:
        """SB3's action selection, except that warm-up actions come from the prior if asked."""
        if not (self.prior_warmup and self.num_timesteps < learning_starts):
            return super()._sample_action(learning_starts, action_noise, n_envs)
        scaled_action = self.policy.scale_action(self._sample_prior_actions(n_envs))
        if action_noise is not None:
            scaled_action = np.clip(scaled_action + action_noise(), -1, 1)
        return self.policy.unscale_action(scaled_action), scaled_action

    # ------------------------------------------------------------------ training

    def train(self, gradient_steps: int, batch_size: int = 64) -> None:
        """SAC's update, with ``prior_kl_coef · KL(π ‖ prior)`` added to the actor loss.

        ``SAC.train`` builds the actor loss inline and offers no hook for an extra term, so
        when the KL term is on, this override repeats its steps (entropy coefficient, critic,
        actor, target update — same order, same SB3 pieces) and adds the one term. With
        ``prior_kl_coef == 0`` it is SB3's own ``SAC.train``, unchanged.
        """
        if self.prior_kl_coef <= 0.0:
            super().train(gradient_steps, batch_size)
            return

        self.policy.set_training_mode(True)
        optimizers = [self.actor.optimizer, self.critic.optimizer]
        if self.ent_coef_optimizer is not None:
            optimizers.append(self.ent_coef_optimizer)
        self._update_learning_rate(optimizers)

        ent_coef_losses, ent_coefs, actor_losses, critic_losses, prior_kls = [], [], [], [], []
        skipped = 0
        for gradient_step in range(gradient_steps):
            replay_data = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)  # type: ignore[union-attr]
            discounts = replay_data.discounts if replay_data.discounts is not None else self.gamma

            actions_pi, log_prob = self.actor.action_log_prob(replay_data.observations)
            log_prob = log_prob.reshape(-1, 1)

            # Entropy coefficient (as SAC).
            if self.ent_coef_optimizer is not None and self.log_ent_coef is not None:
                ent_coef = th.exp(self.log_ent_coef.detach())
                assert isinstance(self.target_entropy, float)
                ent_coef_loss = -(
                    self.log_ent_coef * (log_prob + self.target_entropy).detach()
                ).mean()
                ent_coef_losses.append(ent_coef_loss.item())
                self.ent_coef_optimizer.zero_grad()
                ent_coef_loss.backward()
                self.ent_coef_optimizer.step()
            else:
                ent_coef = self.ent_coef_tensor
            ent_coefs.append(ent_coef.item())

            # Critic (as SAC).
            with th.no_grad():
                next_actions, next_log_prob = self.actor.action_log_prob(
                    replay_data.next_observations
                )
                next_q_values = th.cat(
                    self.critic_target(replay_data.next_observations, next_actions), dim=1
                )
                next_q_values, _ = th.min(next_q_values, dim=1, keepdim=True)
                next_q_values = next_q_values - ent_coef * next_log_prob.reshape(-1, 1)
                target_q_values = (
                    replay_data.rewards + (1 - replay_data.dones) * discounts * next_q_values
                )
            current_q_values = self.critic(replay_data.observations, replay_data.actions)
            critic_loss = 0.5 * sum(
                F.mse_loss(current_q, target_q_values) for current_q in current_q_values
            )
            assert isinstance(critic_loss, th.Tensor)
            critic_losses.append(critic_loss.item())
            self.critic.optimizer.zero_grad()
            critic_loss.backward()
            self.critic.optimizer.step()

            # Actor: SAC's loss + coef * KL(pi || prior), Monte Carlo with the same samples.
            q_values_pi = th.cat(self.critic(replay_data.observations, actions_pi), dim=1)
            min_qf_pi, _ = th.min(q_values_pi, dim=1, keepdim=True)
            kl = log_prob.squeeze(1) - self.prior_log_prob(actions_pi, replay_data.observations)
            actor_loss = (ent_coef * log_prob - min_qf_pi).mean() + self.prior_kl_coef * kl.mean()
            actor_losses.append(actor_loss.item())
            prior_kls.append(kl.mean().item())
            self.actor.optimizer.zero_grad()
            if th.isfinite(actor_loss):  # a one-sample KL estimate can spike: never step on inf/NaN
                actor_loss.backward()
                th.nn.utils.clip_grad_norm_(self.actor.parameters(), KL_GRAD_CLIP)
                self.actor.optimizer.step()
            else:
                skipped += 1

            if gradient_step % self.target_update_interval == 0:
                polyak_update(self.critic.parameters(), self.critic_target.parameters(), self.tau)
                polyak_update(self.batch_norm_stats, self.batch_norm_stats_target, 1.0)

        self._n_updates += gradient_steps
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/ent_coef", np.mean(ent_coefs))
        self.logger.record("train/actor_loss", np.mean(actor_losses))
        self.logger.record("train/critic_loss", np.mean(critic_losses))
        self.logger.record("train/prior_kl", np.mean(prior_kls))
        self.logger.record("train/skipped_actor_steps", skipped)
        if len(ent_coef_losses) > 0:
            self.logger.record("train/ent_coef_loss", np.mean(ent_coef_losses))

    # ------------------------------------------------------------------ learning from the expert

    def _policy_observations(self, observations: np.ndarray) -> th.Tensor:
        obs = np.asarray(observations, dtype=np.float32).reshape(-1, *self.observation_space.shape)
        if self._vec_normalize_env is not None:
            obs = self._vec_normalize_env.normalize_obs(obs)
        return th.as_tensor(obs, dtype=th.float32, device=self.device)

    def bc_pretrain(
        self,
        observations: np.ndarray,
        expert_actions: np.ndarray,
        epochs: int = 10,
        batch_size: int = 256,
        learning_rate: float | None = None,
        loss: str = "nll",
    ) -> list[float]:
        """Behaviour-cloning warm start of the actor on expert ``(observation, action)`` pairs.

        :param observations: ``(N, obs_dim)`` raw observations.
        :param expert_actions: ``(N, d)`` expert actions in env action units
            (e.g. ``info["expert_action"]``).
        :param epochs: passes over the data.
        :param batch_size: minibatch size.
        :param learning_rate: Adam step size (default: the model's initial learning rate). A
            fresh optimiser is used so SAC's Adam state is not touched.
        :param loss: ``"nll"`` (default) maximises the log-likelihood of the expert action under
            the actor's squashed full-covariance distribution, training mean *and* covariance;
            ``"mse"`` regresses only the deterministic action ``tanh(mean)`` (policy space).
            Expert actions are clipped to ±BC_ACTION_CLIP in policy space first.
        :return: mean loss of each epoch.
        """
        if loss not in ("nll", "mse"):
            raise ValueError(f"loss must be 'nll' or 'mse', got {loss!r}")
        obs = self._policy_observations(observations)
        target = self.policy.scale_action(
            np.asarray(expert_actions, dtype=np.float32).reshape(len(obs), -1)
        )
        target_t = th.as_tensor(
            np.clip(target, -BC_ACTION_CLIP, BC_ACTION_CLIP), device=self.device
        )
        lr = self.lr_schedule(1) if learning_rate is None else learning_rate
        optimizer = th.optim.Adam(self.actor.parameters(), lr=lr)

        self.policy.set_training_mode(True)
        history = []
        for _ in range(epochs):
            order = th.randperm(len(obs), device=self.device)
            losses = []
            for start in range(0, len(obs), batch_size):
                idx = order[start : start + batch_size]
                mean, log_diag, kwargs = self.actor.get_action_dist_params(obs[idx])
                dist = self.actor.action_dist.proba_distribution(mean, log_diag, **kwargs)
                if loss == "nll":
                    batch_loss = -dist.log_prob(target_t[idx]).mean()
                else:
                    batch_loss = F.mse_loss(th.tanh(mean), target_t[idx])
                optimizer.zero_grad()
                batch_loss.backward()
                optimizer.step()
                losses.append(batch_loss.item())
            history.append(float(np.mean(losses)))
        self.policy.set_training_mode(False)
        return history

    def add_demonstrations(
        self,
        obs: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        next_obs: np.ndarray,
        dones: np.ndarray,
        truncated: np.ndarray | None = None,
    ) -> int:
        """Push expert transitions into the replay buffer (they are then sampled like any other).

        :param obs: ``(N, obs_dim)`` raw observations.
        :param actions: ``(N, d)`` expert actions in env action units (``info["expert_action"]``);
            scaled to [-1, 1] and clipped like the agent's own actions.
        :param rewards: ``(N,)`` rewards.
        :param next_obs: ``(N, obs_dim)`` raw next observations (the terminal observation at an
            episode end, not the reset one).
        :param dones: ``(N,)`` episode ended (terminated or truncated).
        :param truncated: ``(N,)`` ended by a time limit only (not bootstrapped as terminal when the
            buffer handles timeouts); default all False.
        :return: number of transitions added. The buffer stores ``n_envs`` transitions per slot;
            if ``N`` is not a multiple of ``n_envs`` the last slot is filled with the first
            transitions again.
        """
        if self.replay_buffer is None:
            raise RuntimeError("the replay buffer does not exist yet")
        if self.optimize_memory_usage:
            raise ValueError(
                "add_demonstrations needs optimize_memory_usage=False (next_obs is stored per slot)"
            )
        obs_shape = self.observation_space.shape
        obs_a = np.asarray(obs, dtype=np.float32).reshape(-1, *obs_shape)
        n = len(obs_a)
        next_a = np.asarray(next_obs, dtype=np.float32).reshape(n, *obs_shape)
        scaled = np.clip(
            self.policy.scale_action(np.asarray(actions, dtype=np.float32).reshape(n, -1)), -1, 1
        )
        rewards_a = np.asarray(rewards, dtype=np.float32).reshape(n)
        dones_a = np.asarray(dones, dtype=np.float32).reshape(n)
        trunc_a = (
            np.zeros(n, dtype=bool)
            if truncated is None
            else np.asarray(truncated, dtype=bool).reshape(n)
        )

        k = self.replay_buffer.n_envs
        order = np.arange(-(-n // k) * k) % n
        for start in range(0, len(order), k):
            j = order[start : start + k]
            infos = [{"TimeLimit.truncated": bool(trunc_a[i])} for i in j]
            self.replay_buffer.add(obs_a[j], next_a[j], scaled[j], rewards_a[j], dones_a[j], infos)
        return n


__all__ = ["MVSAC"]
