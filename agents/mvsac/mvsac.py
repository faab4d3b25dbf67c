"""MV-SAC: SB3's SAC with a full-covariance squashed Gaussian actor and a Gaussian action prior.

What is added to :class:`stable_baselines3.SAC` (each option is off by default and switchable),
and where it lives:

- the actor's distribution is a tanh-squashed full-covariance Gaussian (:mod:`.policies`,
  :mod:`.distributions`);
- an action prior ``N(μ, Σ)`` (:class:`.prior.ActionPrior`): the global MGD of real object motion
  (``prior_source="global"``, ``prior_mean``/``prior_cov`` in the environment's action units), the
  encoder's per-state posterior ``N(μ′(s), Σ′(s))`` read from the observation
  (``prior_source="state"``), or the motion the decoder's mask proposes for this state with the
  global covariance, ``N(g(s), Σ)`` (``prior_source="cue"``, the ``features_motion`` observation);
- ``prior_warmup``: warm-up actions (before ``learning_starts``) drawn from the prior and clipped
  into the action Box, instead of SB3's uniform noise (``_sample_action`` override);
- ``prior_kl_coef``: ``coef · KL(π(·|s) ‖ prior)`` added to the actor loss (``train`` override;
  :mod:`.sac_train` says why that needs a copy of ``SAC.train``);
- ``prior_init``: the actor starts out equal to the (global) prior (:meth:`MVActor.init_to_gaussian`);
  with ``prior_source="cue"`` it starts out equal to the cue's prior and stays a residual around
  ``g(s)`` (the actor's ``anchor``), so the policy begins as the segmentation tracker; with
  ``prior_source="state"`` it is a residual around the state's ``μ′(s)`` (the anchor is the
  state's mean slice) with the global prior's covariance times ``cue_scale``: the untrained agent
  follows the motion posterior's mean;
- ``explore_ranges``/``explore_prob``: cue exploration. Warm-up draws are centred on one of the
  prior's mean and these observation ranges (other cues' moves, env units), chosen uniformly per
  step; after warm-up a fraction ``explore_prob`` of the steps draw around one of these ranges
  instead of acting. Why: an actor that starts as a residual around one cue only ever tries moves
  near it, so the critic never learns what following another cue would have been worth where the
  two disagree — the choice a tracker with two cues has to make (off-policy SAC learns from
  such steps as from any other);
- ``critic_warmup``: the first N gradient updates train the critic alone; the actor (and SAC's
  entropy coefficient) move only once the critic has values for the start's own actions, so that an
  actor that starts as a good rule is not pushed around by a random critic. (On DAVIS it only
  delayed the motion agent's early drop in training IoU: a temperature starting at SB3's 1 caused
  most of it; docs/architecture.md, section 12);
- learning from the expert: :meth:`MVSAC.bc_pretrain` and :meth:`MVSAC.add_demonstrations`, thin
  methods over :mod:`bmvtrack.agents.expert`; ``expert_coef``: the expert's action at the agent's
  own visited states (``info["expert_relative"]``, kept by :class:`.expert.ExpertReplayBuffer`)
  pulls the actor's deterministic action towards it in the actor loss (DAgger-style, an agent so
  trained is labelled as using the expert); ``rl=False`` trains the actor on that term alone, with
  the same data and budget and no critic: the supervised-only agent beside it.

The options are instance attributes saved by SB3's ``save`` and restored by ``MVSAC.load``; the
prior is derived from them in ``_setup_model`` and not saved.

KL estimator. ``KL(π ‖ prior) = E_{a∼π}[log π(a|s) − log prior(a|s)]`` is estimated with the
actor's own reparameterised samples ``a = tanh(μ(s) + L(s) ε)`` — the same samples (and the same
``log π``) SAC already draws for its actor loss, one per state of the batch.

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

from bmvtrack.agents import expert
from bmvtrack.agents.mvsac.policies import MVActor, MVSACPolicy
from bmvtrack.agents.mvsac.prior import ActionPrior, as_range, cue_anchor
from bmvtrack.agents.mvsac.sac_train import ActorLossTerm, sac_train

# With the KL term on, the actor's gradient norm is clipped to this: the one-sample Monte-Carlo
# KL is noisy (measured: batch means from 1 to 29 between consecutive updates) and a rare spike
# drove the actor to NaN after ~550 updates.
KL_GRAD_CLIP = 10.0


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
    :param explore_ranges: observation ranges of other cues' moves (``d`` values each, env units)
        for cue exploration (module docstring); needs a per-state prior and ``prior_warmup``.
    :param explore_prob: after warm-up, the fraction of steps drawn around one of ``explore_ranges``.
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {"MlpPolicy": MVSACPolicy}
    policy: MVSACPolicy
    actor: MVActor
    action_prior: ActionPrior

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
        expert_coef: float = 0.0,
        rl: bool = True,
        critic_warmup: int = 0,
        explore_ranges: list[tuple[int, int]] | None = None,
        explore_prob: float = 0.0,
        **sac_kwargs: Any,
    ):
        # Set before SAC.__init__, which calls _setup_model().
        self.prior_mean = None if prior_mean is None else np.asarray(prior_mean, dtype=np.float64)
        self.prior_cov = None if prior_cov is None else np.asarray(prior_cov, dtype=np.float64)
        self.prior_source = prior_source
        self.state_prior_mean_slice = as_range(state_prior_mean_slice)
        self.state_prior_tril_slice = as_range(state_prior_tril_slice)
        self.prior_warmup = bool(prior_warmup)
        self.prior_kl_coef = float(prior_kl_coef)
        self.prior_init = bool(prior_init)
        self.cue_slice = as_range(cue_slice)
        self.cue_mean = None if cue_mean is None else np.asarray(cue_mean, dtype=np.float64)
        self.cue_std = None if cue_std is None else np.asarray(cue_std, dtype=np.float64)
        self.cue_scale = float(cue_scale)
        self.expert_coef = float(expert_coef)
        self.rl = bool(rl)
        self.critic_warmup = int(critic_warmup)
        if self.critic_warmup < 0:
            raise ValueError(f"critic_warmup must be >= 0, got {critic_warmup}")
        self.explore_ranges = list(explore_ranges or [])  # normalised and checked in _setup_model (also on load)
        self.explore_prob = float(explore_prob)
        if not 0.0 <= self.explore_prob <= 1.0:
            raise ValueError(f"explore_prob must be in [0, 1], got {explore_prob}")
        if self.explore_ranges and (prior_source == "global" or not self.prior_warmup):
            raise ValueError("explore_ranges need a per-state prior (prior_source 'state' or 'cue') and prior_warmup")
        if self.explore_prob > 0 and not self.explore_ranges:
            raise ValueError("explore_prob > 0 needs explore_ranges")
        if self.expert_coef < 0:
            raise ValueError(f"expert_coef must be >= 0, got {expert_coef}")
        if not self.rl and self.expert_coef <= 0:
            raise ValueError("rl=False trains on the expert term alone: it needs expert_coef > 0")
        super().__init__(policy, env, **sac_kwargs)

    # ------------------------------------------------------------------ set-up and saving

    def _setup_model(self) -> None:
        if self.prior_source == "cue" and self.prior_init:
            anchor = cue_anchor(self.action_space, self.observation_space, self.cue_slice, self.cue_mean, self.cue_std)
            self.policy_kwargs = {**self.policy_kwargs, "anchor": anchor}
        if self.prior_source == "state" and self.prior_init:  # a residual around μ′(s), in action units as it stands
            d = self.action_dim
            anchor = cue_anchor(self.action_space, self.observation_space, self.state_prior_mean_slice,
                                np.zeros(d), np.ones(d))
            self.policy_kwargs = {**self.policy_kwargs, "anchor": anchor}
        super()._setup_model()
        if self.expert_coef > 0:
            self.replay_buffer = expert.ExpertReplayBuffer.like(self.replay_buffer)
        self.action_prior = ActionPrior(
            self.action_space, self.observation_space, source=self.prior_source,
            mean=self.prior_mean, cov=self.prior_cov,
            state_mean_range=self.state_prior_mean_slice, state_tril_range=self.state_prior_tril_slice,
            cue_range=self.cue_slice, cue_mean=self.cue_mean, cue_std=self.cue_std, cue_scale=self.cue_scale,
            used=self.prior_warmup or self.prior_kl_coef > 0, init=self.prior_init, device=self.device,
        )
        # SB3 saves tuples as JSON: `load` gives lists back, normalised again here.
        self.explore_ranges = [as_range(r) for r in self.explore_ranges]
        d, obs_dim = self.action_dim, int(np.prod(self.observation_space.shape))
        for start, stop in self.explore_ranges:
            if stop - start != d or start < 0 or stop > obs_dim:
                raise ValueError(f"explore range {(start, stop)} must cover {d} entries inside the {obs_dim}-D observation")
        if self.prior_source == "state":
            self.state_prior_mean_slice = self.action_prior.state_mean_range
            self.state_prior_tril_slice = self.action_prior.state_tril_range
        if self.prior_source == "cue":
            self.cue_slice = self.action_prior.cue_range
        if self.prior_init:
            self.action_prior.init_actor(self.actor)

    def _excluded_save_params(self) -> list[str]:
        # Derived from the prior_* / cue_* options by _setup_model() on load.
        return [*super()._excluded_save_params(), "action_prior"]

    @property
    def action_dim(self) -> int:
        return int(np.prod(self.action_space.shape))

    # ------------------------------------------------------------------ the prior

    def prior_params(self, observations: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """Prior ``(mean, scale_tril)`` in the policy's [-1, 1] space (:meth:`ActionPrior.params`).

        :param observations: ``(B, obs_dim)`` as the policy sees them (normalised if VecNormalize).
        """
        return self.action_prior.params(observations, self._vec_normalize_env)

    def prior_log_prob(self, scaled_actions: th.Tensor, observations: th.Tensor) -> th.Tensor:
        """Log-density of the prior at actions in the policy's [-1, 1] space, shape ``(B,)``."""
        return self.action_prior.log_prob(scaled_actions, observations, self._vec_normalize_env)

    def prior_kl(self, observations: th.Tensor) -> th.Tensor:
        """One-sample Monte-Carlo estimates of ``KL(π(·|s) ‖ prior(·|s))``, shape ``(B,)``.

        With the actor's reparameterised sample (differentiable). Average over many samples
        (repeat observations) for a precise value.
        """
        actions, log_prob = self.actor.action_log_prob(observations)
        return self._sampled_kl(actions, log_prob, observations)

    def _sampled_kl(self, actions: th.Tensor, log_prob: th.Tensor, observations: th.Tensor) -> th.Tensor:
        return self.action_prior.kl(actions, log_prob, observations, self._vec_normalize_env)

    def _sample_action(
        self,
        learning_starts: int,
        action_noise: ActionNoise | None = None,
        n_envs: int = 1,
    ) -> tuple[np.ndarray, np.ndarray]:
        """SB3's action selection, except that warm-up actions come from the prior if asked, and
        cue exploration (module docstring)."""
        rng = self.action_space.np_random
        warm = self.prior_warmup and self.num_timesteps < learning_starts
        explore = bool(self.explore_ranges) and (warm or rng.random() < self.explore_prob)
        if not (warm or explore):
            return super()._sample_action(learning_starts, action_noise, n_envs)
        mean_range = None
        if explore:
            choices = ([None] if warm else []) + list(self.explore_ranges)
            mean_range = choices[int(rng.integers(len(choices)))]
        last_obs = self._last_original_obs if self._vec_normalize_env is not None else self._last_obs
        prior_actions = self.action_prior.sample(rng, n_envs, last_obs, mean_range)
        scaled_action = self.policy.scale_action(prior_actions)
        if action_noise is not None:
            scaled_action = np.clip(scaled_action + action_noise(), -1, 1)
        return self.policy.unscale_action(scaled_action), scaled_action

    # ------------------------------------------------------------------ training

    def train(self, gradient_steps: int, batch_size: int = 64) -> None:
        """SAC's update, with ``prior_kl_coef · KL(π ‖ prior)`` added to the actor loss.

        With ``prior_kl_coef == 0`` it is SB3's own ``SAC.train``, unchanged; with the term on,
        :func:`.sac_train.sac_train` (SB3 offers no seam for an extra actor-loss term).
        """
        if not self.rl:
            expert.expert_train(self, gradient_steps, batch_size)
            return
        if self._n_updates < self.critic_warmup:  # the critic learns the start's values first
            sac_train(self, gradient_steps, batch_size, update_actor=False)
            return
        if self.prior_kl_coef <= 0.0 and self.expert_coef <= 0.0:
            super().train(gradient_steps, batch_size)
            return
        if self.expert_coef <= 0.0:
            term = ActorLossTerm(name="prior_kl", coef=self.prior_kl_coef, per_sample=self._sampled_kl,
                                 max_grad_norm=KL_GRAD_CLIP)
        else:
            def per_sample(actions: th.Tensor, log_prob: th.Tensor, obs: th.Tensor) -> th.Tensor:
                out = self.expert_coef * expert.expert_loss(self)
                if self.prior_kl_coef > 0:
                    out = out + self.prior_kl_coef * self._sampled_kl(actions, log_prob, obs)
                return out

            term = ActorLossTerm(name="prior_kl+expert" if self.prior_kl_coef > 0 else "expert", coef=1.0,
                                 per_sample=per_sample, max_grad_norm=KL_GRAD_CLIP)
        sac_train(self, gradient_steps, batch_size, term)

    # ------------------------------------------------------------------ learning from the expert

    # Functions of the model (they use no MV-SAC internals), bound here as methods because
    # agents/train_sac.py and scripts call ``model.bc_pretrain`` / ``model.add_demonstrations``.
    bc_pretrain = expert.bc_pretrain
    add_demonstrations = expert.add_demonstrations


__all__ = ["KL_GRAD_CLIP", "MVSAC"]
