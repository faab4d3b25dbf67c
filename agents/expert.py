"""Learning from the expert, apart from the algorithm: demonstrations and behaviour cloning.

The tracking environment knows the expert's action (``info["expert_action"]``, the motion to the
ground-truth box). Three functions use it:

- :func:`collect_demonstrations` records expert episodes (optionally with DART noise);
- :func:`bc_pretrain` warm-starts an actor by behaviour cloning on them;
- :func:`add_demonstrations` pushes them into an off-policy agent's replay buffer;
- :class:`ExpertReplayBuffer`, :func:`expert_loss` and :func:`expert_train` use it at the agent's own
  visited states instead (DAgger-style), beside the RL loss or alone.

They take the model as an argument: they read only SB3 pieces (the actor's
``get_action_dist_params``/``action_dist``, ``policy.scale_action``, the replay buffer), none of
MV-SAC's own, so they sit outside the algorithm (they work on SB3's ``SAC`` as well); MV-SAC binds
them as its methods ``MVSAC.bc_pretrain`` / ``MVSAC.add_demonstrations``.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3 import SAC
from stable_baselines3.common.buffers import ReplayBuffer
from torch.nn import functional as F

# Expert actions are clipped into [-BC_ACTION_CLIP, BC_ACTION_CLIP] (policy space) before their
# log-likelihood is taken: atanh(±1) is infinite, and a bound action would drag the mean away.
BC_ACTION_CLIP = 0.999


def collect_demonstrations(env: gym.Env, episodes: int, seed: int,
                          noise: float = 0.0) -> dict[str, np.ndarray]:
    """Expert episodes: the env's ``info['expert_action']`` recorded at every step.

    ``env`` is the tracking environment as the agent sees it (the encoded observation wrapper
    around a ``TrackingEnv``, whose ``prior`` gives Σ).

    ``noise`` > 0 executes the expert action plus Gaussian noise with ``noise²·Σ`` (Σ the env's
    prior) while still recording the expert's action, so that the demonstrations also show how
    to come back from boxes that are off the object (DART; a policy cloned from perfect
    trajectories never sees its own mistakes).
    """
    obs_l, act_l, exe_l, rew_l, nxt_l, done_l, trunc_l = [], [], [], [], [], [], []
    rng = np.random.default_rng(seed)
    tril = np.linalg.cholesky(env.unwrapped.prior.cov) * noise
    for e in range(episodes):
        obs, info = env.reset(seed=seed + e if e == 0 else None)
        done = False
        while not done:
            act = info["expert_action"]
            executed = act if noise <= 0 else np.clip(act + tril @ rng.standard_normal(len(act)),
                                                      env.action_space.low, env.action_space.high)
            nxt, r, term, trunc, info = env.step(executed.astype(np.float32))
            done = term or trunc
            obs_l.append(obs); act_l.append(act); exe_l.append(executed); rew_l.append(r); nxt_l.append(nxt)
            done_l.append(done); trunc_l.append(trunc and not term)
            obs = nxt
    return {k: np.asarray(v) for k, v in
            dict(obs=obs_l, actions=act_l, executed=exe_l, rewards=rew_l, next_obs=nxt_l, dones=done_l,
                 truncated=trunc_l).items()}


def policy_observations(model: SAC, observations: np.ndarray) -> th.Tensor:
    """Raw observations as the policy sees them: batched, normalised if VecNormalize, on its device."""
    obs = np.asarray(observations, dtype=np.float32).reshape(-1, *model.observation_space.shape)
    if model._vec_normalize_env is not None:
        obs = model._vec_normalize_env.normalize_obs(obs)
    return th.as_tensor(obs, dtype=th.float32, device=model.device)


def bc_pretrain(
    model: SAC,
    observations: np.ndarray,
    expert_actions: np.ndarray,
    epochs: int = 10,
    batch_size: int = 256,
    learning_rate: float | None = None,
    loss: str = "nll",
) -> list[float]:
    """Behaviour-cloning warm start of ``model``'s actor on expert ``(observation, action)`` pairs.

    :param observations: ``(N, obs_dim)`` raw observations.
    :param expert_actions: ``(N, d)`` expert actions in env action units
        (e.g. ``info["expert_action"]``).
    :param epochs: passes over the data (minibatch order from torch's global generator).
    :param batch_size: minibatch size.
    :param learning_rate: Adam step size (default: the model's initial learning rate). A
        fresh optimiser is used so SAC's Adam state is not touched.
    :param loss: ``"nll"`` (default) maximises the log-likelihood of the expert action under
        the actor's squashed distribution, training mean *and* covariance;
        ``"mse"`` regresses only the deterministic action ``tanh(mean)`` (policy space).
        Expert actions are clipped to ±BC_ACTION_CLIP in policy space first.
    :return: mean loss of each epoch.
    """
    if loss not in ("nll", "mse"):
        raise ValueError(f"loss must be 'nll' or 'mse', got {loss!r}")
    obs = policy_observations(model, observations)
    target = model.policy.scale_action(
        np.asarray(expert_actions, dtype=np.float32).reshape(len(obs), -1)
    )
    target_t = th.as_tensor(
        np.clip(target, -BC_ACTION_CLIP, BC_ACTION_CLIP), device=model.device
    )
    lr = model.lr_schedule(1) if learning_rate is None else learning_rate
    optimizer = th.optim.Adam(model.actor.parameters(), lr=lr)

    model.policy.set_training_mode(True)
    history = []
    for _ in range(epochs):
        order = th.randperm(len(obs), device=model.device)
        losses = []
        for start in range(0, len(obs), batch_size):
            idx = order[start : start + batch_size]
            mean, log_diag, kwargs = model.actor.get_action_dist_params(obs[idx])
            dist = model.actor.action_dist.proba_distribution(mean, log_diag, **kwargs)
            if loss == "nll":
                batch_loss = -dist.log_prob(target_t[idx]).mean()
            else:
                batch_loss = F.mse_loss(th.tanh(mean), target_t[idx])
            optimizer.zero_grad()
            batch_loss.backward()
            optimizer.step()
            losses.append(batch_loss.item())
        history.append(float(np.mean(losses)))
    model.policy.set_training_mode(False)
    return history


def add_demonstrations(
    model: SAC,
    obs: np.ndarray,
    actions: np.ndarray,
    rewards: np.ndarray,
    next_obs: np.ndarray,
    dones: np.ndarray,
    truncated: np.ndarray | None = None,
) -> int:
    """Push expert transitions into ``model``'s replay buffer (then sampled like any other).

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
    if model.replay_buffer is None:
        raise RuntimeError("the replay buffer does not exist yet")
    if model.optimize_memory_usage:
        raise ValueError(
            "add_demonstrations needs optimize_memory_usage=False (next_obs is stored per slot)"
        )
    obs_shape = model.observation_space.shape
    obs_a = np.asarray(obs, dtype=np.float32).reshape(-1, *obs_shape)
    n = len(obs_a)
    next_a = np.asarray(next_obs, dtype=np.float32).reshape(n, *obs_shape)
    scaled = np.clip(
        model.policy.scale_action(np.asarray(actions, dtype=np.float32).reshape(n, -1)), -1, 1
    )
    rewards_a = np.asarray(rewards, dtype=np.float32).reshape(n)
    dones_a = np.asarray(dones, dtype=np.float32).reshape(n)
    trunc_a = (
        np.zeros(n, dtype=bool)
        if truncated is None
        else np.asarray(truncated, dtype=bool).reshape(n)
    )

    k = model.replay_buffer.n_envs
    order = np.arange(-(-n // k) * k) % n
    for start in range(0, len(order), k):
        j = order[start : start + k]
        infos = [{"TimeLimit.truncated": bool(trunc_a[i])} for i in j]
        model.replay_buffer.add(obs_a[j], next_a[j], scaled[j], rewards_a[j], dones_a[j], infos)
    return n


# ------------------------------------------------------------------ the expert at the agent's own states


class ExpertReplayBuffer(ReplayBuffer):
    """SB3's replay buffer that also keeps the expert's action at each stored next state.

    The environment reports the expert's action for the state a step leads to
    (``info["expert_relative"]`` of the motion environment, else ``info["expert_action"]``), so it is
    the stored ``next_observations`` that get a label; a transition that ended its episode has none
    (its last state has no next annotated frame). ``sample`` leaves the batch's labelled states in
    ``last_expert_batch`` for :func:`expert_loss`. One environment copy (the labels follow SB3's
    row order, which with more copies draws the copy inside ``_get_samples``).
    """

    KEYS = ("expert_relative", "expert_action")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.n_envs != 1:
            raise ValueError("ExpertReplayBuffer keeps one environment copy's labels (n_envs=1)")
        self.expert = np.zeros((self.buffer_size, self.action_dim), dtype=np.float32)
        self.labelled = np.zeros(self.buffer_size, dtype=np.float32)
        self.last_expert_batch: tuple[th.Tensor, th.Tensor, th.Tensor] | None = None

    @classmethod
    def like(cls, buffer: ReplayBuffer) -> "ExpertReplayBuffer":
        """An empty expert buffer with ``buffer``'s size, spaces and device."""
        return cls(buffer.buffer_size, buffer.observation_space, buffer.action_space, device=buffer.device,
                   n_envs=buffer.n_envs, optimize_memory_usage=buffer.optimize_memory_usage,
                   handle_timeout_termination=buffer.handle_timeout_termination)

    def add(self, obs, next_obs, action, reward, done, infos) -> None:  # type: ignore[override]
        pos, info = self.pos, infos[0]
        label = next((info[k] for k in self.KEYS if k in info), None)
        self.labelled[pos] = float(label is not None and not bool(np.asarray(done).reshape(-1)[0]))
        self.expert[pos] = 0.0 if label is None else np.asarray(label, dtype=np.float32).reshape(-1)
        super().add(obs, next_obs, action, reward, done, infos)

    def _get_samples(self, batch_inds: np.ndarray, env=None):  # type: ignore[override]
        data = super()._get_samples(batch_inds, env)
        self.last_expert_batch = (data.next_observations, self.to_torch(self.expert[batch_inds]),
                                  self.to_torch(self.labelled[batch_inds]))
        return data


def expert_loss(model: SAC) -> th.Tensor:
    """Per-sample squared distance between the actor's deterministic action and the expert's, at the
    last sampled batch's labelled states (``ExpertReplayBuffer``), in units of the global prior's
    standard deviation (policy space; ones without a global prior), averaged over the action's
    dimensions. Unlabelled rows give 0."""
    buffer = model.replay_buffer
    if not isinstance(buffer, ExpertReplayBuffer) or buffer.last_expert_batch is None:
        raise RuntimeError("expert_loss needs an ExpertReplayBuffer that has been sampled")
    next_obs, expert_actions, labelled = buffer.last_expert_batch
    target = model.policy.scale_action(expert_actions.cpu().numpy())
    target_t = th.as_tensor(np.clip(target, -BC_ACTION_CLIP, BC_ACTION_CLIP), device=model.device)
    mean, _, _ = model.actor.get_action_dist_params(next_obs)
    prior = getattr(model, "action_prior", None)
    std = th.ones_like(target_t[0])
    if prior is not None and prior.tril_scaled is not None:
        std = th.sqrt(th.diagonal(prior.tril_scaled @ prior.tril_scaled.T))
        if prior.source == "cue":  # its factor was scaled by cue_scale
            std = std / prior.init_scale
    return (((th.tanh(mean) - target_t) / std) ** 2).mean(dim=-1) * labelled


def expert_train(model: SAC, gradient_steps: int, batch_size: int) -> None:
    """The supervised-only update: the actor follows :func:`expert_loss` alone (no critic, no entropy),
    on the same replay batches an RL update would draw."""
    model.policy.set_training_mode(True)
    model._update_learning_rate([model.actor.optimizer])
    losses = []
    for _ in range(gradient_steps):
        model.replay_buffer.sample(batch_size, env=model._vec_normalize_env)  # type: ignore[union-attr]
        loss = expert_loss(model).mean()
        model.actor.optimizer.zero_grad()
        loss.backward()
        model.actor.optimizer.step()
        losses.append(loss.item())
    model._n_updates += gradient_steps
    model.logger.record("train/n_updates", model._n_updates, exclude="tensorboard")
    model.logger.record("train/expert", float(np.mean(losses)) if losses else float("nan"))
