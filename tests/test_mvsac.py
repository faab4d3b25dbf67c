"""MV-SAC: the squashed full-covariance distribution, the prior options, expert learning, save/load.

Distribution checks are statistical or against independent computations; agent checks use a
tiny deterministic "target" environment (observation = random target, reward = −‖a − target‖²,
one-step episodes) with small networks and budgets of a few hundred steps.
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3 import SAC
from stable_baselines3.common.distributions import SquashedDiagGaussianDistribution
from stable_baselines3.common.env_util import make_vec_env

from bmvtrack.agents import MVSAC, MVSACPolicy
from bmvtrack.agents.mvsac import ActionPrior, sac_train
from bmvtrack.agents.mvsac.distributions import SquashedMultivariateGaussianDistribution, n_offdiag

SMALL_NET = {"net_arch": [32, 32]}



# ---------------------------------------------------------------------------------------------
# Test environments


class TargetEnv(gym.Env):
    """Observation: a random target in [-1, 1]^dim; reward −‖a − target‖²; one-step episodes.

    ``info["expert_action"]`` (at reset and step) is the target. ``action_low/high`` set the
    action Box (default [-1, 1]); the reward uses the raw action.
    """

    def __init__(self, dim: int = 2, action_low=-1.0, action_high=1.0):
        self.observation_space = spaces.Box(-1.0, 1.0, (dim,), np.float32)
        low = np.broadcast_to(np.asarray(action_low, np.float32), (dim,))
        high = np.broadcast_to(np.asarray(action_high, np.float32), (dim,))
        self.action_space = spaces.Box(low, high, dtype=np.float32)
        self.dim = dim
        self.target = np.zeros(dim, np.float32)

    def _obs(self) -> np.ndarray:
        return self.target.copy()

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.target = self.np_random.uniform(-1, 1, self.dim).astype(np.float32)
        return self._obs(), {"expert_action": self.target.copy()}

    def step(self, action):
        reward = -float(np.sum((np.asarray(action, np.float64) - self.target) ** 2))
        return self._obs(), reward, True, False, {"expert_action": self.target.copy()}


class EpisodicTargetEnv(TargetEnv):
    """TargetEnv whose episodes last ``length`` steps (a new target at each step), so that the
    critic's target bootstraps (one-step episodes end every transition)."""

    def __init__(self, length: int = 5):
        super().__init__(dim=2)
        self.length, self.t = length, 0

    def reset(self, *, seed=None, options=None):
        self.t = 0
        return super().reset(seed=seed, options=options)

    def step(self, action):
        reward = -float(np.sum((np.asarray(action, np.float64) - self.target) ** 2))
        self.t += 1
        self.target = self.np_random.uniform(-1, 1, self.dim).astype(np.float32)
        return self._obs(), reward, False, self.t >= self.length, {"expert_action": self.target.copy()}


# Per-state posterior Cholesky factor (env units).
STATE_TRIL = np.array([[0.05, 0.0], [0.03, 0.02]])


class StatePriorTargetEnv(TargetEnv):
    """TargetEnv whose observation also carries a posterior N(μ′, Σ′): ``[target, μ′, tril(L′)]``.

    μ′ = target (an informative posterior), L′ = STATE_TRIL (row-major lower-triangular entries).
    """

    MEAN_SLICE = (2, 4)
    TRIL_SLICE = (4, 7)

    def __init__(self):
        super().__init__(dim=2)
        self.observation_space = spaces.Box(-2.0, 2.0, (7,), np.float32)

    def _obs(self) -> np.ndarray:
        tril = STATE_TRIL[np.tril_indices(2)]
        return np.concatenate([self.target, self.target, tril]).astype(np.float32)


def mean_reward(model, env: TargetEnv, n: int = 200, seed: int = 123) -> float:
    """Mean reward of the deterministic policy of ``model`` (``None``: uniform random actions)."""
    rewards = []
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(seed + 1)  # not `seed`: the same stream would sample the target itself
    for _ in range(n):
        action = (
            env.action_space.sample()
            if model is None
            else model.predict(obs, deterministic=True)[0]
        )
        _, reward, *_ = env.step(action)
        rewards.append(reward)
        obs, _ = env.reset()
    return float(np.mean(rewards))


def finite_parameters(model) -> bool:
    return all(th.isfinite(p).all() for p in model.policy.parameters())


# ---------------------------------------------------------------------------------------------
# The distribution


def random_params(dim: int, batch: int, seed: int = 0, dtype=th.float64):
    gen = th.Generator().manual_seed(seed)
    mean = 0.5 * th.randn(batch, dim, generator=gen, dtype=dtype)
    log_diag = -0.5 + 0.3 * th.randn(batch, dim, generator=gen, dtype=dtype)
    offdiag = 0.4 * th.randn(batch, n_offdiag(dim), generator=gen, dtype=dtype)
    return mean, log_diag, offdiag


def independent_cholesky(log_diag: np.ndarray, offdiag: np.ndarray) -> np.ndarray:
    """L from its parameters, written with explicit loops (not the module's code)."""
    dim = len(log_diag)
    factor = np.zeros((dim, dim))
    k = 0
    for i in range(dim):
        factor[i, i] = math.exp(log_diag[i])
        for j in range(i):
            factor[i, j] = offdiag[k]
            k += 1
    return factor


@pytest.mark.parametrize("dim", [1, 2, 5])
def test_log_prob_is_change_of_variables(dim):
    mean, log_diag, offdiag = random_params(dim, batch=64)
    dist = SquashedMultivariateGaussianDistribution(dim, epsilon=0.0)
    th.manual_seed(0)
    actions, log_prob = dist.log_prob_from_params(mean, log_diag, offdiag)
    assert log_prob.shape == (64,)
    pre = dist.gaussian_actions

    expected = []
    for b in range(64):
        factor = independent_cholesky(log_diag[b].numpy(), offdiag[b].numpy())
        gauss = th.distributions.MultivariateNormal(
            mean[b], covariance_matrix=th.as_tensor(factor @ factor.T)
        )
        jacobian = th.log(1 - th.tanh(pre[b]) ** 2).sum()
        expected.append(gauss.log_prob(pre[b]) - jacobian)
    expected = th.stack(expected)
    th.testing.assert_close(log_prob, expected, rtol=1e-9, atol=1e-9)
    # Same value from the squashed actions alone (atanh path).
    th.testing.assert_close(dist.log_prob(actions), expected, rtol=1e-6, atol=1e-6)


def test_density_matches_histogram_2d():
    """exp(log_prob) integrated over bins equals the sampled mass per bin (and totals 1)."""
    mean = th.tensor([[0.4, -0.3]], dtype=th.float64)
    log_diag = th.log(th.tensor([[0.6, 0.4]], dtype=th.float64))
    offdiag = th.tensor([[0.35]], dtype=th.float64)
    dist = SquashedMultivariateGaussianDistribution(2, epsilon=0.0)
    n = 200_000
    th.manual_seed(1)
    samples = dist.actions_from_params(
        mean.expand(n, 2), log_diag.expand(n, 2), offdiag.expand(n, 1)
    )
    bins = 10
    counts, _, _ = np.histogram2d(
        samples[:, 0].numpy(), samples[:, 1].numpy(), bins=bins, range=[[-1, 1], [-1, 1]]
    )
    empirical = counts / n

    fine = 20  # midpoint rule, fine×fine points per bin
    grid = (np.arange(bins * fine) + 0.5) / (bins * fine) * 2 - 1
    xx, yy = np.meshgrid(grid, grid, indexing="ij")
    points = th.as_tensor(np.stack([xx.ravel(), yy.ravel()], 1))
    m = len(points)
    dist.proba_distribution(mean.expand(m, 2), log_diag.expand(m, 2), offdiag.expand(m, 1))
    density = dist.log_prob(points).exp().numpy().reshape(bins * fine, bins * fine)
    cell = (2.0 / (bins * fine)) ** 2
    predicted = (density * cell).reshape(bins, fine, bins, fine).sum(axis=(1, 3))

    assert predicted.sum() == pytest.approx(1.0, abs=5e-3)
    stderr = np.sqrt(predicted * (1 - predicted) / n) + 1e-4
    assert np.max(np.abs(empirical - predicted) / stderr) < 5.0


@pytest.mark.parametrize("offdiag", ["none", "zeros"])
def test_diagonal_factor_equals_sb3_squashed_diag(offdiag):
    dim, batch = 3, 128
    mean, log_diag, _ = random_params(dim, batch, seed=2)
    tril = None if offdiag == "none" else th.zeros(batch, n_offdiag(dim), dtype=th.float64)
    sb3 = SquashedDiagGaussianDistribution(dim)
    ours = SquashedMultivariateGaussianDistribution(dim)
    th.manual_seed(3)
    actions, sb3_log_prob = sb3.log_prob_from_params(mean, log_diag)
    ours.proba_distribution(mean, log_diag, tril)
    th.testing.assert_close(ours.log_prob(actions), sb3_log_prob, rtol=1e-7, atol=1e-7)
    th.testing.assert_close(
        ours.log_prob(actions, sb3.gaussian_actions), sb3_log_prob, rtol=1e-9, atol=1e-9
    )
    th.testing.assert_close(ours.mode(), sb3.mode())


def test_samples_have_requested_covariance_before_squashing():
    dim, n = 3, 100_000
    mean, log_diag, offdiag = random_params(dim, 1, seed=4)
    factor = independent_cholesky(log_diag[0].numpy(), offdiag[0].numpy())
    dist = SquashedMultivariateGaussianDistribution(dim)
    th.manual_seed(5)
    dist.actions_from_params(
        mean.expand(n, dim), log_diag.expand(n, dim), offdiag.expand(n, n_offdiag(dim))
    )
    pre = dist.gaussian_actions.numpy()
    cov = factor @ factor.T
    std = np.sqrt(np.diag(cov))
    np.testing.assert_allclose(pre.mean(0), mean[0].numpy(), atol=5 * std.max() / math.sqrt(n))
    # Standard error of a covariance entry is about sqrt((σ_i²σ_j² + σ_ij²)/n) ≤ σ_iσ_j·sqrt(2/n).
    tolerance = 5 * np.outer(std, std) * math.sqrt(2 / n)
    assert np.all(np.abs(np.cov(pre.T) - cov) < tolerance)


def test_distribution_contract():
    dim, batch = 4, 16
    mean, log_diag, offdiag = random_params(dim, batch, seed=6, dtype=th.float32)
    for t in (mean, log_diag, offdiag):
        t.requires_grad_(True)
    dist = SquashedMultivariateGaussianDistribution(dim)
    heads = dist.proba_distribution_net(latent_dim=8)
    assert [h.out_features for h in heads] == [dim, dim, n_offdiag(dim)]
    assert dist.proba_distribution_net(latent_dim=8, full_covariance=False)[2] is None

    actions = dist.actions_from_params(mean, log_diag, offdiag)
    assert actions.shape == (batch, dim) and actions.abs().max() < 1
    assert dist.entropy() is None
    actions.sum().backward()  # reparameterised: gradients reach every parameter
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in (mean, log_diag, offdiag))
    th.testing.assert_close(
        dist.actions_from_params(mean, log_diag, offdiag, deterministic=True), th.tanh(mean)
    )
    sampled, log_prob = dist.log_prob_from_params(mean, log_diag, offdiag)
    assert sampled.shape == (batch, dim) and log_prob.shape == (batch,)
    assert th.isfinite(log_prob).all()


# ---------------------------------------------------------------------------------------------
# The agent

ACTION_LOW, ACTION_HIGH = np.array([-1.0, 0.0]), np.array([3.0, 1.0])
PRIOR_MEAN = np.array([0.0, 0.7])  # away from the Box centre (1.0, 0.5)
PRIOR_COV = np.array([[0.16, 0.048], [0.048, 0.0225]])  # std 0.4 and 0.15, correlation 0.8


def boxed_env() -> TargetEnv:
    return TargetEnv(dim=2, action_low=ACTION_LOW, action_high=ACTION_HIGH)


def make_model(env=None, **kwargs) -> MVSAC:
    options = {"learning_starts": 50, "batch_size": 32, "policy_kwargs": SMALL_NET, "seed": 0}
    options.update(kwargs)
    return MVSAC("MlpPolicy", env if env is not None else TargetEnv(), **options)


def sample_actions(model: MVSAC, obs: np.ndarray, deterministic: bool) -> np.ndarray:
    actions, _ = model.predict(obs, deterministic=deterministic)
    return actions


@pytest.mark.parametrize("source", ["global", "state", "cue"])
def test_save_load_restores_policy_and_prior(tmp_path, source):
    if source == "global":
        env = boxed_env()
        prior = {"prior_mean": PRIOR_MEAN, "prior_cov": PRIOR_COV, "prior_init": True}
    elif source == "cue":
        env = StatePriorTargetEnv()
        prior = {"prior_source": "cue", "prior_init": True, "cue_slice": StatePriorTargetEnv.MEAN_SLICE,
                 "cue_mean": np.array([0.1, -0.1]), "cue_std": np.array([0.5, 0.5]),
                 "prior_mean": np.zeros(2), "prior_cov": 0.01 * np.eye(2)}
    else:
        env = StatePriorTargetEnv()
        prior = {
            "prior_source": "state",
            "state_prior_mean_slice": slice(*StatePriorTargetEnv.MEAN_SLICE),
            "state_prior_tril_slice": StatePriorTargetEnv.TRIL_SLICE,
        }
    policy_kwargs = {"net_arch": [16, 16], "cholesky_diag": "softplus", "full_covariance": True}
    model = make_model(
        env, prior_warmup=True, prior_kl_coef=0.1, policy_kwargs=policy_kwargs, **prior
    )
    model.learn(120)
    model.save(tmp_path / "mvsac")
    loaded = MVSAC.load(tmp_path / "mvsac", env=env)

    obs = np.stack([env.reset(seed=i)[0] for i in range(20)])
    np.testing.assert_array_equal(
        sample_actions(loaded, obs, True), sample_actions(model, obs, True)
    )
    assert isinstance(loaded.policy, MVSACPolicy)
    assert loaded.policy._mv_actor_kwargs == {"full_covariance": True, "cholesky_diag": "softplus",
                                              "anchor": model.policy._mv_actor_kwargs["anchor"]}
    assert (model.policy._mv_actor_kwargs["anchor"] is not None) == (source == "cue")
    for name in (
        "prior_source",
        "state_prior_mean_slice",
        "state_prior_tril_slice",
        "prior_warmup",
        "prior_kl_coef",
        "prior_init",
        "cue_slice",
    ):
        assert getattr(loaded, name) == getattr(model, name), name
    if source == "global":
        np.testing.assert_array_equal(loaded.prior_mean, PRIOR_MEAN)
        np.testing.assert_array_equal(loaded.prior_cov, PRIOR_COV)
    obs_t = th.as_tensor(obs)
    for a, b in zip(loaded.prior_params(obs_t), model.prior_params(obs_t)):
        th.testing.assert_close(a, b)
    loaded.learn(10)  # training resumes


def test_action_prior_maps_the_global_prior_into_the_policy_space_like_sb3():
    env = boxed_env()
    prior = ActionPrior(env.action_space, env.observation_space, mean=PRIOR_MEAN, cov=PRIOR_COV)
    mean, tril = prior.params(th.zeros(3, 2))
    assert mean.shape == (3, 2) and tril.shape == (3, 2, 2)
    expected_mean = make_model(env).policy.scale_action(PRIOR_MEAN)
    np.testing.assert_allclose(mean.numpy(), np.broadcast_to(expected_mean, (3, 2)), atol=1e-6)
    scale = np.diag(2.0 / (ACTION_HIGH - ACTION_LOW))
    np.testing.assert_allclose((tril[0] @ tril[0].T).numpy(), scale @ PRIOR_COV @ scale, rtol=1e-5)


def _warmup_actions(model: MVSAC, n: int) -> np.ndarray:
    model.learn(n)  # learning_starts > n: warm-up only
    return model.policy.unscale_action(model.replay_buffer.actions[:n, 0])


def test_warmup_actions_follow_global_prior():
    n = 2000
    model = make_model(
        boxed_env(),
        prior_mean=PRIOR_MEAN,
        prior_cov=PRIOR_COV,
        prior_warmup=True,
        learning_starts=10**6,
    )
    actions = _warmup_actions(model, n)
    assert np.all(actions >= ACTION_LOW) and np.all(actions <= ACTION_HIGH)
    std = np.sqrt(np.diag(PRIOR_COV))
    np.testing.assert_allclose(actions.mean(0), PRIOR_MEAN, atol=4 * std.max() / math.sqrt(n))
    np.testing.assert_allclose(np.cov(actions.T), PRIOR_COV, rtol=0.15, atol=0.1 * std.min() ** 2)
    # Contrast: SB3's uniform warm-up has the Box centre as mean.
    uniform = _warmup_actions(make_model(boxed_env(), learning_starts=10**6), n)
    assert abs(uniform[:, 0].mean() - 1.0) < 0.1 and abs(actions[:, 0].mean() - 1.0) > 0.8


def test_warmup_actions_follow_state_prior():
    n = 2000
    model = make_model(
        StatePriorTargetEnv(),
        prior_source="state",
        state_prior_mean_slice=StatePriorTargetEnv.MEAN_SLICE,
        state_prior_tril_slice=StatePriorTargetEnv.TRIL_SLICE,
        prior_warmup=True,
        learning_starts=10**6,
    )
    actions = _warmup_actions(model, n)
    targets = model.replay_buffer.observations[:n, 0, :2]
    residual = actions - targets
    inside = np.all(np.abs(actions) < 0.999, axis=1)  # drop the few clipped at the Box edge
    cov = STATE_TRIL @ STATE_TRIL.T
    np.testing.assert_allclose(residual[inside].mean(0), 0.0, atol=4 * 0.05 / math.sqrt(n))
    np.testing.assert_allclose(np.cov(residual[inside].T), cov, rtol=0.15, atol=1e-5)


class TwoCueTargetEnv(StatePriorTargetEnv):
    """StatePriorTargetEnv with a second cue at ``OTHER_SLICE``: the mirrored target, −target."""

    OTHER_SLICE = (7, 9)

    def __init__(self):
        super().__init__()
        self.observation_space = spaces.Box(-2.0, 2.0, (9,), np.float32)

    def _obs(self) -> np.ndarray:
        return np.concatenate([super()._obs(), -self.target]).astype(np.float32)


def _cue_model(**kwargs) -> MVSAC:
    env = TwoCueTargetEnv()
    return make_model(env, prior_source="state", state_prior_mean_slice=env.MEAN_SLICE,
                      state_prior_tril_slice=env.TRIL_SLICE, prior_warmup=True,
                      explore_ranges=[env.OTHER_SLICE], **kwargs)


def _near_other_cue(model: MVSAC, first: int, n: int) -> np.ndarray:
    """Whether each stored action from ``first`` on lies nearer the other cue than the prior's mean."""
    actions = model.policy.unscale_action(model.replay_buffer.actions[first:first + n, 0])
    obs = model.replay_buffer.observations[first:first + n, 0]
    return np.linalg.norm(actions - obs[:, 7:9], axis=1) < np.linalg.norm(actions - obs[:, 2:4], axis=1)


def test_cue_exploration_draws_around_each_cue():
    n = 2000
    warm = _cue_model(learning_starts=10**6)
    warm.learn(n)  # warm-up only: half the draws around μ′(s), half around the other cue
    near = _near_other_cue(warm, 0, n)
    assert 0.44 < near.mean() < 0.56
    actions = warm.policy.unscale_action(warm.replay_buffer.actions[:n, 0])
    obs = warm.replay_buffer.observations[:n, 0]
    inside = np.all(np.abs(actions) < 0.999, axis=1) & near & (np.linalg.norm(obs[:, :2], axis=1) > 0.3)
    np.testing.assert_allclose((actions - obs[:, 7:9])[inside].mean(0), 0.0, atol=0.01)  # with the state's spread
    # after warm-up: a share explore_prob of the steps around the other cue, the rest the actor's
    start = {"prior_init": True, "prior_mean": np.zeros(2), "prior_cov": STATE_TRIL @ STATE_TRIL.T,
             "learning_starts": 0, "gradient_steps": 0}  # the actor stays a residual around μ′(s)
    after = _cue_model(explore_prob=0.3, **start)
    after.learn(n)
    share = _near_other_cue(after, 0, n).mean()
    plain = make_model(TwoCueTargetEnv(), prior_source="state", state_prior_mean_slice=(2, 4),
                       state_prior_tril_slice=(4, 7), prior_warmup=True, **start)
    plain.learn(n)  # the same actor without cue exploration never goes near the other cue
    assert 0.24 < share < 0.36 and _near_other_cue(plain, 0, n).mean() < share / 3


def test_cue_exploration_is_checked_and_saved(tmp_path):
    with pytest.raises(ValueError, match="explore_prob"):
        _cue_model(explore_prob=1.5)
    with pytest.raises(ValueError, match="must cover 2 entries"):
        make_model(TwoCueTargetEnv(), prior_source="state", state_prior_mean_slice=(2, 4),
                   state_prior_tril_slice=(4, 7), prior_warmup=True, explore_ranges=[(7, 10)])
    with pytest.raises(ValueError, match="per-state prior"):
        make_model(boxed_env(), prior_mean=PRIOR_MEAN, prior_cov=PRIOR_COV, prior_warmup=True,
                   explore_ranges=[(0, 2)])
    model = _cue_model(explore_prob=0.2)
    model.save(tmp_path / "m")
    loaded = MVSAC.load(tmp_path / "m", env=TwoCueTargetEnv())
    assert loaded.explore_ranges == [(7, 9)] and loaded.explore_prob == 0.2


def test_prior_init_outputs_prior():
    # std 0.1 and 0.02 in env units (0.05 and 0.04 in the policy's [-1, 1] space)
    narrow_cov = np.array([[0.01, 0.0012], [0.0012, 0.0004]])
    env = boxed_env()
    model = make_model(env, prior_mean=PRIOR_MEAN, prior_cov=narrow_cov, prior_init=True)
    obs = np.stack([env.reset(seed=i)[0] for i in range(5000)])
    np.testing.assert_allclose(
        sample_actions(model, obs, True), np.broadcast_to(PRIOR_MEAN, (5000, 2)), atol=1e-5
    )
    stochastic = sample_actions(model, obs, False)
    np.testing.assert_allclose(stochastic.mean(0), PRIOR_MEAN, atol=0.01)
    np.testing.assert_allclose(np.cov(stochastic.T), narrow_cov, rtol=0.1, atol=2e-5)
    # Without prior_init the initial action is nowhere near it.
    plain = make_model(env, prior_mean=PRIOR_MEAN, prior_cov=narrow_cov)
    assert np.abs(sample_actions(plain, obs[:100], True) - PRIOR_MEAN).max() > 0.1


def gaussian_kl(m0, c0, m1, c1) -> float:
    """Closed-form KL(N(m0, c0) ‖ N(m1, c1))."""
    inv1 = np.linalg.inv(c1)
    diff = m1 - m0
    return 0.5 * (
        np.trace(inv1 @ c0)
        + diff @ inv1 @ diff
        - len(m0)
        + np.log(np.linalg.det(c1) / np.linalg.det(c0))
    )


def test_prior_kl_is_zero_at_prior_and_positive_elsewhere():
    narrow_cov = np.array([[0.01, 0.0012], [0.0012, 0.0004]])
    env = boxed_env()
    model = make_model(
        env, prior_mean=PRIOR_MEAN, prior_cov=narrow_cov, prior_init=True, prior_kl_coef=1.0
    )
    obs = th.as_tensor(np.stack([env.reset(seed=i)[0] for i in range(20_000)]))
    with th.no_grad():
        at_prior = model.prior_kl(obs).mean().item()
    assert abs(at_prior) < 0.02

    # A narrow policy centred at 0 (tanh ≈ identity there): the MC estimate matches the closed form.
    mean_s, tril_s = model.prior_params(obs[:1])
    pi_tril = th.tensor([[0.03, 0.0], [0.01, 0.02]])
    model.actor.init_to_gaussian(th.zeros(2), pi_tril)
    with th.no_grad():
        estimate = model.prior_kl(obs).mean().item()
    prior_cov_s = (tril_s[0] @ tril_s[0].T).double().numpy()
    expected = gaussian_kl(
        np.zeros(2), (pi_tril @ pi_tril.T).double().numpy(), mean_s[0].double().numpy(), prior_cov_s
    )
    assert expected > 10
    assert estimate == pytest.approx(expected, rel=0.03)

    # An untrained actor is far from the prior too.
    with th.no_grad():
        assert (
            make_model(env, prior_mean=PRIOR_MEAN, prior_cov=narrow_cov).prior_kl(obs).mean().item()
            > 1.0
        )


def _update_state(model: MVSAC) -> dict[str, th.Tensor]:
    """Every number an update changes: networks, optimiser states, entropy coefficient, RNGs."""
    out = {f"policy/{k}": v for k, v in model.policy.state_dict().items()}
    optimizers = {"actor": model.actor.optimizer, "critic": model.critic.optimizer,
                  "ent_coef": model.ent_coef_optimizer}
    for name, optimizer in optimizers.items():
        for i, state in ({} if optimizer is None else optimizer.state_dict()["state"]).items():
            out.update({f"{name}_optimizer/{i}/{k}": th.as_tensor(v) for k, v in state.items()})
    if model.log_ent_coef is not None:
        out["log_ent_coef"] = model.log_ent_coef
    out["torch_rng"] = th.get_rng_state()
    out["numpy_rng"] = th.as_tensor(np.random.get_state()[1].astype(np.int64))
    return {k: v.detach().clone() for k, v in out.items()}


@pytest.mark.parametrize(
    "options", [{}, {"ent_coef": 0.2, "target_update_interval": 2}], ids=["learned-ent-coef", "fixed-ent-coef"]
)
def test_train_copy_with_the_kl_term_off_is_sb3_sac_train(options):
    """MV-SAC's copy of SAC.train (``sac_train``, what ``train`` runs when the KL term is on), forced
    through with the term off (prior_kl_coef=0), is bit for bit the installed SB3's SAC.train: same
    parameters, optimiser states, logs and RNG consumption, from the same state and RNG."""
    def updated(update) -> MVSAC:
        model = make_model(EpisodicTargetEnv(), prior_mean=np.zeros(2), prior_cov=0.1 * np.eye(2), prior_init=True,
                           learning_starts=10**6, **options)
        model.learn(200)  # warm-up only: fills the replay buffer, no update yet
        th.manual_seed(11)
        np.random.seed(11)  # SB3's replay buffer samples with numpy's global generator
        update(model)
        return model

    assert updated(lambda m: None).prior_kl_coef == 0.0
    before = _update_state(updated(lambda m: None))
    sb3 = updated(lambda m: SAC.train(m, gradient_steps=8, batch_size=32))
    expected = _update_state(sb3)
    assert not th.equal(expected["policy/actor.mu.weight"], before["policy/actor.mu.weight"])  # it learnt
    for name, update in (("copy", lambda m: sac_train(m, gradient_steps=8, batch_size=32, term=None)),
                         ("MVSAC.train", lambda m: m.train(gradient_steps=8, batch_size=32))):
        model = updated(update)
        state = _update_state(model)
        assert state.keys() == expected.keys(), name
        for key, value in expected.items():
            assert th.equal(state[key], value), (name, key)
        assert model.logger.name_to_value == sb3.logger.name_to_value, name
        assert model._n_updates == sb3._n_updates == 8


def test_critic_warmup_trains_the_critic_alone_then_the_actor():
    """With ``critic_warmup=N`` the first N updates move the critic and leave the actor and the entropy
    coefficient exactly where they were; the update after them moves the actor as well."""
    model = make_model(EpisodicTargetEnv(), prior_mean=np.zeros(2), prior_cov=0.1 * np.eye(2), prior_init=True,
                       learning_starts=10**6, critic_warmup=6)
    model.learn(200)  # fills the replay buffer, no update yet
    start = _update_state(model)
    model.train(gradient_steps=6, batch_size=32)
    warm = _update_state(model)
    for key in ("policy/actor.mu.weight", "log_ent_coef"):
        assert th.equal(warm[key], start[key]), key
    assert not th.equal(warm["policy/critic.qf0.0.weight"], start["policy/critic.qf0.0.weight"])
    model.train(gradient_steps=1, batch_size=32)
    assert not th.equal(_update_state(model)["policy/actor.mu.weight"], start["policy/actor.mu.weight"])
    assert model._n_updates == 7
    with pytest.raises(ValueError, match="critic_warmup"):
        make_model(EpisodicTargetEnv(), critic_warmup=-1)


@pytest.mark.parametrize("source", ["global", "state"])
def test_kl_training_runs_without_nan_and_logs(source):
    if source == "global":
        env, prior = boxed_env(), {"prior_mean": PRIOR_MEAN, "prior_cov": PRIOR_COV}
    else:
        env = StatePriorTargetEnv()
        prior = {
            "prior_source": "state",
            "state_prior_mean_slice": StatePriorTargetEnv.MEAN_SLICE,
            "state_prior_tril_slice": StatePriorTargetEnv.TRIL_SLICE,
        }
    model = make_model(env, prior_kl_coef=0.5, prior_warmup=True, **prior)
    model.learn(150)
    model.train(gradient_steps=5, batch_size=32)
    assert np.isfinite(model.logger.name_to_value["train/prior_kl"])
    assert np.isfinite(model.logger.name_to_value["train/actor_loss"])
    assert finite_parameters(model)


def test_mvsac_learns_target_task():
    env = TargetEnv()
    model = make_model(
        env,
        learning_starts=100,
        batch_size=64,
        learning_rate=1e-3,
        policy_kwargs={"net_arch": [64, 64]},
    )
    model.learn(500)
    learned = mean_reward(model, env)
    assert mean_reward(None, env) < -1.0  # random actions: ≈ −4/3
    assert learned > -0.3, learned  # doing nothing scores −2/3
    assert finite_parameters(model)


@pytest.mark.slow
@pytest.mark.parametrize(
    "options",
    [
        {},
        {
            "prior_mean": np.zeros(2),
            "prior_cov": 0.3 * np.eye(2),
            "prior_warmup": True,
            "prior_kl_coef": 0.05,
            "prior_init": True,
        },
        {"policy_kwargs": {"net_arch": [64, 64], "full_covariance": False}},
    ],
    ids=["plain", "prior", "diagonal"],
)
def test_mvsac_learns_target_task_well(options):
    options = {"policy_kwargs": {"net_arch": [64, 64]}, **options}
    model = make_model(
        TargetEnv(), learning_starts=100, batch_size=64, learning_rate=1e-3, **options
    )
    model.learn(2000)
    assert mean_reward(model, TargetEnv()) > -0.05


# ---------------------------------------------------------------------------------------------
# Learning from the expert


def expert_data(env: TargetEnv, n: int, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    obs, info = env.reset(seed=seed)
    observations, actions = [], []
    for _ in range(n):
        observations.append(obs)
        actions.append(info["expert_action"])
        obs, info = env.reset()
    return np.array(observations), np.array(actions)


@pytest.mark.parametrize("loss", ["nll", "mse"])
def test_bc_pretrain_clones_the_expert(loss):
    env = TargetEnv()
    model = make_model(env)
    before = mean_reward(model, env)
    observations, actions = expert_data(env, 1000)
    history = model.bc_pretrain(
        observations, actions, epochs=25, batch_size=64, learning_rate=3e-3, loss=loss
    )
    assert history[-1] < history[0]
    after = mean_reward(model, env)
    assert after > -0.03 and after > before + 0.3, (before, after)
    assert finite_parameters(model)


def test_add_demonstrations_fills_the_buffer():
    env = boxed_env()
    model = make_model(env)
    observations, _ = expert_data(env, 10)
    actions = np.tile(PRIOR_MEAN, (10, 1))
    rewards = -np.arange(10, dtype=np.float32)
    assert model.add_demonstrations(observations, actions, rewards, observations, np.ones(10)) == 10
    buffer = model.replay_buffer
    assert buffer.size() == 10
    np.testing.assert_allclose(
        model.policy.unscale_action(buffer.actions[:10, 0]), actions, atol=1e-6
    )
    np.testing.assert_allclose(buffer.rewards[:10, 0], rewards)
    np.testing.assert_allclose(buffer.observations[:10, 0], observations)
    model.learn(60)  # the agent's own transitions follow the demonstrations
    assert buffer.size() == 70

    vec_model = make_model(make_vec_env(boxed_env, n_envs=2))
    vec_model.add_demonstrations(
        observations[:5], actions[:5], rewards[:5], observations[:5], np.ones(5)
    )
    assert vec_model.replay_buffer.size() == 3  # 3 slots of 2 (last one padded)


def test_invalid_prior_is_rejected():
    bad_cov = np.array([[1.0, 2.0], [2.0, 1.0]])  # symmetric, not positive definite
    with pytest.raises(ValueError, match="positive definite"):
        make_model(prior_mean=np.zeros(2), prior_cov=bad_cov)
    with pytest.raises(ValueError, match="state_prior"):
        make_model(prior_source="state", prior_kl_coef=1.0)
    with pytest.raises(ValueError, match="prior_mean"):
        make_model(prior_warmup=True)


def test_cue_prior_starts_as_the_cue_and_keeps_it_while_learning():
    """prior_source="cue" with prior_init: the actor is a residual around the motion the
    observation proposes, so before any update its deterministic action is that motion (here the
    target itself: reward ≈ 0), where the global-prior start is no better than guessing."""
    env = StatePriorTargetEnv()
    cue = {"prior_source": "cue", "prior_init": True, "cue_slice": StatePriorTargetEnv.MEAN_SLICE,
           "cue_mean": np.zeros(2), "cue_std": np.ones(2), "prior_mean": np.zeros(2),
           "prior_cov": 0.04 * np.eye(2)}
    model = make_model(env, prior_warmup=True, prior_kl_coef=0.1, **cue)
    obs = np.stack([env.reset(seed=i)[0] for i in range(50)])
    anchored = sample_actions(model, obs, True)
    target = np.clip(obs[:, 2:4], -0.99, 0.99)
    np.testing.assert_allclose(anchored, target, atol=1e-4)
    start = mean_reward(model, env)
    global_start = mean_reward(make_model(env, prior_mean=np.zeros(2), prior_cov=0.04 * np.eye(2),
                                          prior_init=True), env)
    assert start > -0.01 and global_start < -0.3
    # warm-up actions are drawn around each state's cue (prior std 0.2), not uniformly
    warm_model = make_model(env, learning_starts=10**6, prior_warmup=True,
                            **{k: v for k, v in cue.items() if k != "prior_init"})
    warm = _warmup_actions(warm_model, 500)
    offset = warm - warm_model.replay_buffer.observations[:500, 0, 2:4]
    inside = np.all(np.abs(warm) < 0.999, axis=1)  # clipping at the bounds shifts the rest
    assert abs(offset[inside].mean()) < 0.03 and 0.15 < offset[inside].std() < 0.25
    model.learn(400)
    assert finite_parameters(model) and mean_reward(model, env) > -0.05
