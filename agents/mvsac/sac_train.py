"""SB3's ``SAC.train`` with one optional extra term in the actor loss (MV-SAC's ``KL(π ‖ prior)``).

Why a copy. ``SAC.train`` (stable-baselines3 2.9.2, the version this follows) builds the actor
loss inline and calls ``backward()`` on it at once: there is no hook between the two. The seams
SB3 does offer all change the numbers of a trained agent:

- wrapping ``actor.action_log_prob`` (to fold the term into ``log π``): the same ``log π`` also
  drives the entropy-coefficient loss and, through the next-state call, the critic target;
- wrapping ``actor.optimizer`` (``zero_grad`` back-propagates ``coef·KL`` with ``retain_graph``,
  a step pre-hook clips): the two gradients are then summed at the parameters rather than inside
  one backward pass, and the actor drifts from the fused update in the last bits (measured:
  |Δ| = 1.5e-8 after 20 updates); SB3 would also log its loss without the term, and a non-finite
  total loss could not be skipped;
- wrapping the critic's output for the actor's actions: a different sum again.

So this is a copy, kept line for line with SB3's; only the lines marked ``# MV-SAC`` differ, and
with ``term=None`` (and ``update_actor``) it is SB3's update. tests/test_mvsac.py checks that, bit
for bit, against the installed SB3 (which also flags an SB3 upgrade that changes ``SAC.train``). ``MVSAC.train`` calls
SB3's own ``SAC.train`` when the KL term is off, and this copy only when it is on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch as th
from stable_baselines3 import SAC
from stable_baselines3.common.utils import polyak_update
from torch.nn import functional as F


@dataclass(frozen=True)
class ActorLossTerm:
    """An extra term ``coef · mean_B(per_sample(a, log π, s))`` of SAC's actor loss.

    ``per_sample`` gets SAC's own reparameterised actions ``a`` ``(B, d)``, their ``log π`` ``(B,)``
    and the batch's observations, and returns ``(B,)``. Its batch mean is logged as
    ``train/<name>``. With a term, a non-finite actor loss skips that actor step (counted in
    ``train/skipped_actor_steps``) and the actor's gradient norm is clipped to ``max_grad_norm``:
    a Monte-Carlo term can spike.
    """

    name: str
    coef: float
    per_sample: Callable[[th.Tensor, th.Tensor, th.Tensor], th.Tensor]
    max_grad_norm: float


def sac_train(model: SAC, gradient_steps: int, batch_size: int = 64, term: ActorLossTerm | None = None,
              update_actor: bool = True) -> None:
    """``SAC.train`` of ``model`` with ``term`` added to the actor loss (``None``: SB3's update);
    ``update_actor=False``: the critic alone (the actor and the entropy coefficient stay put)."""
    # Switch to train mode (this affects batch norm / dropout)
    model.policy.set_training_mode(True)
    # Update optimizers learning rate
    optimizers = [model.actor.optimizer, model.critic.optimizer]
    if model.ent_coef_optimizer is not None:
        optimizers += [model.ent_coef_optimizer]

    # Update learning rate according to lr schedule
    model._update_learning_rate(optimizers)

    ent_coef_losses, ent_coefs = [], []
    actor_losses, critic_losses = [], []
    term_values, skipped = [], 0  # MV-SAC

    for gradient_step in range(gradient_steps):
        # Sample replay buffer
        replay_data = model.replay_buffer.sample(batch_size, env=model._vec_normalize_env)  # type: ignore[union-attr]
        # For n-step replay, discount factor is gamma**n_steps (when no early termination)
        discounts = replay_data.discounts if replay_data.discounts is not None else model.gamma

        # We need to sample because `log_std` may have changed between two gradient steps
        if model.use_sde:
            model.actor.reset_noise()

        # Action by the current actor for the sampled state
        actions_pi, log_prob = model.actor.action_log_prob(replay_data.observations)
        log_prob = log_prob.reshape(-1, 1)

        ent_coef_loss = None
        if model.ent_coef_optimizer is not None and model.log_ent_coef is not None:
            # Important: detach the variable from the graph
            # so we don't change it with other losses
            # see https://github.com/rail-berkeley/softlearning/issues/60
            ent_coef = th.exp(model.log_ent_coef.detach())
            assert isinstance(model.target_entropy, float)
            ent_coef_loss = -(model.log_ent_coef * (log_prob + model.target_entropy).detach()).mean()
            ent_coef_losses.append(ent_coef_loss.item())
        else:
            ent_coef = model.ent_coef_tensor

        ent_coefs.append(ent_coef.item())

        # Optimize entropy coefficient, also called
        # entropy temperature or alpha in the paper
        if ent_coef_loss is not None and model.ent_coef_optimizer is not None and update_actor:  # MV-SAC: and ...
            model.ent_coef_optimizer.zero_grad()
            ent_coef_loss.backward()
            model.ent_coef_optimizer.step()

        with th.no_grad():
            # Select action according to policy
            next_actions, next_log_prob = model.actor.action_log_prob(replay_data.next_observations)
            # Compute the next Q values: min over all critics targets
            next_q_values = th.cat(model.critic_target(replay_data.next_observations, next_actions), dim=1)
            next_q_values, _ = th.min(next_q_values, dim=1, keepdim=True)
            # add entropy term
            next_q_values = next_q_values - ent_coef * next_log_prob.reshape(-1, 1)
            # td error + entropy term
            target_q_values = replay_data.rewards + (1 - replay_data.dones) * discounts * next_q_values

        # Get current Q-values estimates for each critic network
        # using action from the replay buffer
        current_q_values = model.critic(replay_data.observations, replay_data.actions)

        # Compute critic loss
        critic_loss = 0.5 * sum(F.mse_loss(current_q, target_q_values) for current_q in current_q_values)
        assert isinstance(critic_loss, th.Tensor)  # for type checker
        critic_losses.append(critic_loss.item())  # type: ignore[union-attr]

        # Optimize the critic
        model.critic.optimizer.zero_grad()
        critic_loss.backward()
        model.critic.optimizer.step()

        # Compute actor loss
        # Alternative: actor_loss = th.mean(log_prob - qf1_pi)
        # Min over all critic networks
        q_values_pi = th.cat(model.critic(replay_data.observations, actions_pi), dim=1)
        min_qf_pi, _ = th.min(q_values_pi, dim=1, keepdim=True)
        # MV-SAC: the extra term, on SAC's own samples (built before SAC's loss, where MV-SAC has
        # always built it: the same autograd graph, created in the same order).
        extra = None if term is None else term.per_sample(actions_pi, log_prob.squeeze(1), replay_data.observations)
        actor_loss = (ent_coef * log_prob - min_qf_pi).mean()
        if term is not None and extra is not None:  # MV-SAC
            extra_mean = extra.mean()
            actor_loss = actor_loss + term.coef * extra_mean
            term_values.append(extra_mean.item())
        actor_losses.append(actor_loss.item())

        # Optimize the actor
        model.actor.optimizer.zero_grad()
        if not update_actor:  # MV-SAC: the critic alone
            pass
        elif term is None:  # MV-SAC: (SB3's step)
            actor_loss.backward()
            model.actor.optimizer.step()
        elif th.isfinite(actor_loss):  # MV-SAC: never step on inf/NaN, clip the gradient norm
            actor_loss.backward()
            th.nn.utils.clip_grad_norm_(model.actor.parameters(), term.max_grad_norm)
            model.actor.optimizer.step()
        else:
            skipped += 1

        # Update target networks
        if gradient_step % model.target_update_interval == 0:
            polyak_update(model.critic.parameters(), model.critic_target.parameters(), model.tau)
            # Copy running stats, see GH issue #996
            polyak_update(model.batch_norm_stats, model.batch_norm_stats_target, 1.0)

    model._n_updates += gradient_steps

    model.logger.record("train/n_updates", model._n_updates, exclude="tensorboard")
    model.logger.record("train/ent_coef", np.mean(ent_coefs))
    model.logger.record("train/actor_loss", np.mean(actor_losses))
    model.logger.record("train/critic_loss", np.mean(critic_losses))
    if term is not None:  # MV-SAC
        model.logger.record(f"train/{term.name}", np.mean(term_values))
        model.logger.record("train/skipped_actor_steps", skipped)
    if len(ent_coef_losses) > 0:
        model.logger.record("train/ent_coef_loss", np.mean(ent_coef_losses))
