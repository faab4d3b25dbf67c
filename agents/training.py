"""Training MV-SAC (or plain SAC) in the tracking environment: config, demos, callbacks, resume.

``train(cfg)`` builds the vectorised encoded environment, the agent with the motion prior, the
optional expert demonstrations / behaviour-cloning warm start, and runs SB3's ``learn`` with a
progress bar, periodic evaluation on held-out tracks, atomic checkpoints (model + replay buffer)
and a time budget. Every SB3 logger value (``train/actor_loss`` ...) also reaches the run's
JSONL file and W&B through ``RunLoggerOutput``.
"""
from __future__ import annotations

import io
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from stable_baselines3 import SAC
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.logger import KVWriter, Logger, configure

from bmvtrack.adaptation import AdaptConfig, AdaptedModels, cache_folder
from bmvtrack.config import save_config, to_dict
from bmvtrack.data.readers import DataConfig, TrackFilter
from bmvtrack.io import atomic_save, atomic_write_bytes
from bmvtrack.logging_wandb import RunLogger, WandbConfig, run_name
from bmvtrack.metrics import success_auc
from bmvtrack.motion import MotionPrior
from bmvtrack.paths import DEFAULT_VAE_CHECKPOINT, RUNS_DIR
from agents.mvsac import MVSAC
from envs.encoding import DECODER_KINDS, EncodedObservation, ObsKind, StateEncoder, TrackStates
from envs.registration import make_sb3_vec_env, resolve_encoder, resolve_env_config
from envs.tracking_env import EnvConfig, TrackingEnv


@dataclass
class AgentConfig:
    """The agent and its use of the prior and of the expert."""

    algo: Literal["mvsac", "sac"] = "mvsac"  # mvsac: full-covariance prior-shaped SAC; sac: plain SB3 SAC
    total_timesteps: int = 20_000  # environment steps (all copies together)
    learning_starts: int = 1_000  # warm-up steps before gradient updates
    batch_size: int = 256  # replay minibatch
    buffer_size: int = 50_000  # replay capacity (transitions)
    learning_rate: float = 3e-4  # Adam step size of actor, critics and entropy coefficient
    gamma: float = 0.9  # discount: tracking rewards are immediate, long horizons only add variance
    tau: float = 0.005  # target-network Polyak coefficient
    train_freq: int = 1  # env steps (per copy) between updates
    gradient_steps: int = 1  # gradient updates per update round
    net_arch: list[int] = field(default_factory=lambda: [256, 256])  # hidden layers of actor and critics
    ent_coef: str = "auto_0.1"  # SAC entropy coefficient: 'auto_<initial>' (learned) or a number; rewards are IoUs ≤ 1
    target_entropy: float | None = -19.0  # mvsac: entropy target of the learned coefficient (None = SAC's −dim A); the cue prior starts near it
    prior_source: Literal["global", "state", "cue"] = "cue"  # data MGD, the encoder's per-state posterior, or the mask's motion (obs features_motion)
    prior_file: str | None = None  # shaping prior (e.g. analyze_motion --fit robust); None = the env's prior
    prior_warmup: bool = True  # warm-up actions drawn from the prior instead of uniform noise (mvsac)
    prior_kl_coef: float = 0.1  # weight of KL(π ‖ prior) in the actor loss (mvsac; 0 = off); without it the cue agent drifts off (README)
    prior_init: bool = True  # start the actor at the prior (mvsac)
    cue_scale: float = 0.05  # prior_source=cue: the cue prior's std as a fraction of the global prior's; it sets the exploration noise (0.2 halved the sampled policy's IoU on synthetic video: README)
    demo_episodes: int = 0  # expert episodes (info['expert_action']) pushed into the replay buffer
    demo_noise: float = 0.0  # execute expert + noise (this × the prior's std) while recording the expert (DART)
    bc_epochs: int = 0  # behaviour-cloning warm start on those demonstrations (0 = off)


@dataclass
class TrainConfig:
    """``python -m bmvtrack.train_sac`` options."""

    env: EnvConfig = field(default_factory=lambda: EnvConfig(data=DataConfig(
        split="train", filters=TrackFilter(absent="keep", max_box_fraction=1.0))))  # training environment
    eval_split: str | None = "val"  # held-out split for periodic evaluation (None = no evaluation)
    eval_every: int = 5_000  # env steps between evaluations
    eval_tracks: int = 0  # evaluate on the first N held-out tracks (0 = all)
    eval_stochastic: bool = True  # also score the sampled (training-time) policy: the cost of exploration
    encoder: str | None = None  # pretrained βMVUnet checkpoint (default runs/pretrain_vae/checkpoint.pt)
    obs: ObsKind = "features_motion"  # observation kind (envs.encoding); prior_source=cue needs features_motion
    agent: AgentConfig = field(default_factory=AgentConfig)
    adapt: AdaptConfig = field(default_factory=lambda: AdaptConfig(steps=0))  # state from each track's network adapted on frame 0's box (steps 0 = off)
    adapt_cache: str | None = None  # folder of the adapted copies, reused across runs (default runs/adapt_cache)
    n_envs: int = 2  # vectorised environment copies (one batched encoder forward per step)
    seed: int = 0  # seeds env sampling, networks and warm-up
    out_dir: str | None = None  # run folder (default runs/train_sac/<run name>)
    checkpoint_every: int = 5_000  # env steps between checkpoints (model + replay buffer)
    time_budget_min: float = 20.0  # stop cleanly after this many minutes (0 = no limit)
    threads: int = 0  # torch threads (0 = leave torch's default)
    wandb: WandbConfig = field(default_factory=WandbConfig)


class RunLoggerOutput(KVWriter):
    """SB3 logger output that forwards every recorded value to a RunLogger (JSONL + W&B)."""

    def __init__(self, logger: RunLogger) -> None:
        self.logger = logger

    def write(self, key_values: dict[str, Any], key_excluded: dict[str, Any], step: int = 0) -> None:
        scalars = {k: v for k, v in key_values.items() if isinstance(v, (int, float, np.floating, np.integer))}
        if scalars:
            self.logger.log(scalars, step=step)

    def close(self) -> None:
        pass


def evaluate_in_env(model, env: EncodedObservation, max_tracks: int = 0,
                    deterministic: bool = True) -> dict[str, float]:
    """One-pass tracking of every held-out track (no termination): IoU statistics.

    ``deterministic=False`` acts as in training (sampled actions) and names its keys
    ``eval/stochastic_*``: the gap to the deterministic score is what exploration costs.
    """
    raw: TrackingEnv = env.unwrapped
    n = len(raw.tracks) if max_tracks <= 0 else min(max_tracks, len(raw.tracks))
    ious: list[float] = []
    for k in range(n):
        obs, info = env.reset(options={"track_index": k})
        done = False
        while not done:
            action, _ = model.predict(obs, deterministic=deterministic)
            obs, _, term, trunc, info = env.step(action)
            done = term or trunc
            ious.append(info["iou"])
    arr = np.array(ious, dtype=np.float64)
    valid = arr[~np.isnan(arr)]
    prefix = "eval/" if deterministic else "eval/stochastic_"
    out = {f"{prefix}mean_iou": float(valid.mean()) if len(valid) else float("nan"),
           f"{prefix}success_auc": success_auc(arr)}
    if deterministic:
        out["eval/tracks"] = float(n)
    return out


class TrackingCallback(BaseCallback):
    """Episode IoU, periodic evaluation, atomic checkpoints and the time budget."""

    def __init__(self, cfg: TrainConfig, run_dir: Path, eval_env: EncodedObservation | None, logger: RunLogger) -> None:
        super().__init__()
        self.cfg, self.run_dir, self.eval_env, self.run_logger = cfg, run_dir, eval_env, logger
        self.start = time.time()
        self.last_eval = self.last_ckpt = 0
        self.ep_ious: list[float] = []
        self.history: list[dict[str, float]] = []
        self.stopped_by_budget = False

    def _on_step(self) -> bool:
        for info in self.locals.get("infos", []):
            ep = info.get("episode")
            if ep is not None and ep["l"] > 0:
                self.ep_ious.append(ep["r"] / ep["l"])
        if len(self.ep_ious) >= 4:
            self.logger.record("rollout/ep_mean_iou", float(np.mean(self.ep_ious)))
            self.ep_ious.clear()
        t = self.num_timesteps
        if self.eval_env is not None and t - self.last_eval >= self.cfg.eval_every:
            self.last_eval = t
            self.evaluate()
        if t - self.last_ckpt >= self.cfg.checkpoint_every:
            self.last_ckpt = t
            save_agent(self.model, self.run_dir)
        budget = self.cfg.time_budget_min * 60
        if budget > 0 and time.time() - self.start > budget:
            self.stopped_by_budget = True
            print(f"\ntime budget of {self.cfg.time_budget_min} min reached at {t} steps: stopping", file=sys.stderr)
            return False
        return True

    def evaluate(self) -> dict[str, float]:
        res = evaluate_in_env(self.model, self.eval_env, self.cfg.eval_tracks)
        if self.cfg.eval_stochastic:
            res.update(evaluate_in_env(self.model, self.eval_env, self.cfg.eval_tracks, deterministic=False))
        res["time/minutes"] = (time.time() - self.start) / 60
        self.history.append({"step": self.num_timesteps, **res})
        for k, v in res.items():
            self.logger.record(k, v)
        self.run_logger.log(res, step=self.num_timesteps)
        return res


def save_agent(model, run_dir: Path) -> None:
    """Model zip and replay buffer, each written atomically (a crash keeps the previous pair)."""
    atomic_save(run_dir / "model.zip", lambda buf: model.save(buf))
    if getattr(model, "replay_buffer", None) is not None:
        from stable_baselines3.common.save_util import save_to_pkl

        buf = io.BytesIO()
        save_to_pkl(buf, model.replay_buffer)
        atomic_write_bytes(run_dir / "replay_buffer.pkl", buf.getvalue())


def collect_demonstrations(env: EncodedObservation, episodes: int, seed: int,
                          noise: float = 0.0) -> dict[str, np.ndarray]:
    """Expert episodes: the env's ``info['expert_action']`` recorded at every step.

    ``noise`` > 0 executes the expert action plus Gaussian noise with ``noise²·Σ`` (Σ the env's
    prior) while still recording the expert's action, so that the demonstrations also show how
    to come back from boxes that are off the object (DART; a policy cloned from perfect
    trajectories never sees its own mistakes).
    """
    obs_l, act_l, exe_l, rew_l, nxt_l, done_l, trunc_l = [], [], [], [], [], [], []
    rng = np.random.default_rng(seed)
    raw: TrackingEnv = env.unwrapped
    tril = np.linalg.cholesky(raw.prior.cov) * noise
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


def build_agent(cfg: TrainConfig, venv, prior_mean: np.ndarray, prior_cov: np.ndarray, layout: dict[str, slice],
                cue: tuple[np.ndarray, np.ndarray] | None = None):
    """SAC or MV-SAC on ``venv``; ``cue`` = the (mean, std) that standardise the observation's
    motion cue (``StateEncoder.prior_mean``/``prior_std``), needed by ``prior_source="cue"``."""
    a = cfg.agent
    ent = a.ent_coef if a.ent_coef.startswith("auto") else float(a.ent_coef)
    common = dict(
        learning_rate=a.learning_rate, buffer_size=a.buffer_size, learning_starts=a.learning_starts,
        batch_size=a.batch_size, tau=a.tau, gamma=a.gamma, train_freq=a.train_freq,
        gradient_steps=a.gradient_steps, ent_coef=ent, seed=cfg.seed, verbose=0,
        policy_kwargs=dict(net_arch=list(a.net_arch)),
    )
    if a.algo == "sac":  # plain SB3 SAC: its own entropy target
        return SAC("MlpPolicy", venv, **common)
    common["target_entropy"] = "auto" if a.target_entropy is None else float(a.target_entropy)
    state = a.prior_source == "state"
    cue_kwargs: dict[str, Any] = {}
    if a.prior_source == "cue":
        if "search/motion" not in layout or cue is None:
            raise ValueError(f"agent.prior_source=cue needs obs=features_motion (got obs={cfg.obs})")
        start = layout["search/motion"].start
        cue_kwargs = dict(cue_slice=(start, start + 5), cue_mean=cue[0], cue_std=cue[1], cue_scale=a.cue_scale)
    return MVSAC(
        "MlpPolicy", venv, prior_mean=prior_mean, prior_cov=prior_cov, prior_source=a.prior_source,
        state_prior_mean_slice=layout["search/mu"] if state else None,
        state_prior_tril_slice=layout["search/tril"] if state else None,
        prior_warmup=a.prior_warmup, prior_kl_coef=a.prior_kl_coef, prior_init=a.prior_init, **cue_kwargs,
        **common,
    )


def track_states(cfg: TrainConfig, encoder: StateEncoder, enc_path: Path) -> TrackStates | None:
    """Per-track adapted states when ``cfg.adapt.steps > 0`` (copies cached under ``adapt_cache``)."""
    if cfg.adapt.steps <= 0:
        return None
    if cfg.obs not in DECODER_KINDS:
        raise ValueError(f"adapt needs an observation with a decoder {DECODER_KINDS} (got obs={cfg.obs})")
    root = Path(cfg.adapt_cache) if cfg.adapt_cache else RUNS_DIR / "adapt_cache"
    return TrackStates(encoder, AdaptedModels(encoder.net, cfg.adapt, cache_folder(root, enc_path, cfg.adapt)))


def training_setup(cfg: TrainConfig) -> tuple[Path, EnvConfig, MotionPrior, StateEncoder, TrackStates | None]:
    """The encoder file, the training environment's config and prior, the state encoder (its motion
    cue kept within the action bounds) and the per-track adapted states: what training and its
    diagnostics (scripts/exploration_probe.py) build their environments from."""
    enc_path = ensure_encoder(cfg)
    env_cfg = resolve_env_config(cfg.env)
    if env_cfg.proposal != "none" and env_cfg.proposal_cache is None:
        env_cfg.proposal_cache = str(RUNS_DIR / "proposal_cache")
    probe = TrackingEnv(env_cfg)
    encoder = resolve_encoder(str(enc_path), cfg.obs, probe.prior, env_cfg.proposal != "none")
    encoder.cue_bounds = (probe.action_space.low, probe.action_space.high)  # the cue stays within reach
    env_cfg.crop_size = encoder.patch_size
    return enc_path, env_cfg, probe.prior, encoder, track_states(cfg, encoder, enc_path)


def held_out_env(cfg: TrainConfig, env_cfg: EnvConfig, prior: MotionPrior, encoder: StateEncoder,
                 per_track: TrackStates | None) -> EncodedObservation:
    """The ``eval_split`` tracks in order, without termination, in the training states."""
    ecfg = resolve_env_config(env_cfg, split=cfg.eval_split, order="sequential", lost_frames=0, extra_data=[])
    raw = TrackingEnv(ecfg, prior=prior)
    if per_track is not None:
        per_track.prepare(raw)
    raw.prepare_proposals()
    return EncodedObservation(raw, encoder, per_track)


def ensure_encoder(cfg: TrainConfig) -> Path:
    """The encoder checkpoint; pretrains the default βMVUnet first when none exists (saying so)."""
    path = Path(cfg.encoder) if cfg.encoder else DEFAULT_VAE_CHECKPOINT
    if not path.is_file():
        if cfg.encoder:
            from bmvtrack.checkpoint import CheckpointError

            raise CheckpointError(f"{path}: encoder checkpoint not found")
        print(f"no pretrained encoder at {path}: pretraining the default βMVUnet first", file=sys.stderr)
        from bmvtrack.pretrain import PretrainConfig
        from bmvtrack.pretrain import train as pretrain

        pcfg = PretrainConfig()
        pcfg.wandb = cfg.wandb
        result = pretrain(pcfg)
        if result.checkpoint is None or not Path(result.checkpoint).is_file():
            raise RuntimeError("pretraining finished without writing a checkpoint")
        path = Path(result.checkpoint)
    return path


def train(cfg: TrainConfig, resume: str | None = None, argv: list[str] | None = None) -> dict[str, Any]:
    """Train an agent; returns the run folder, the final evaluation and the evaluation history."""
    import torch

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    enc_path, env_cfg, prior, encoder, per_track = training_setup(cfg)
    tag = f"{cfg.agent.algo}-s{cfg.seed}"
    name = run_name("train_sac", tag)
    run_dir = Path(resume).parent if resume else Path(cfg.out_dir or RUNS_DIR / "train_sac" / name)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    (run_dir / "command.txt").write_text(" ".join([sys.executable, "-m", "bmvtrack.train_sac", *(argv or [])]) + "\n")

    venv = make_sb3_vec_env(cfg.n_envs, env_cfg, encoder=encoder, seed=cfg.seed, per_track=per_track)
    eval_env = held_out_env(cfg, env_cfg, prior, encoder, per_track) if cfg.eval_split else None

    run_logger = RunLogger(run_dir, name, "train_sac", to_dict(cfg), cfg.wandb)
    if resume:
        cls = SAC if cfg.agent.algo == "sac" else MVSAC
        model = cls.load(resume, env=venv, seed=cfg.seed)
        buf = Path(resume).with_name("replay_buffer.pkl")
        if buf.is_file():
            model.load_replay_buffer(buf)
        print(f"resumed from {resume} at {model.num_timesteps} steps", file=sys.stderr)
    else:
        shaping = MotionPrior.load(cfg.agent.prior_file) if cfg.agent.prior_file else prior
        model = build_agent(cfg, venv, shaping.mean, shaping.cov, venv.obs_layout,
                            cue=(encoder.prior_mean, encoder.prior_std))
        a = cfg.agent
        if a.demo_episodes > 0:
            demo_env = EncodedObservation(TrackingEnv(env_cfg, prior=prior), encoder, per_track)
            demos = collect_demonstrations(demo_env, a.demo_episodes, cfg.seed, noise=a.demo_noise)
            if a.bc_epochs > 0 and hasattr(model, "bc_pretrain"):
                losses = model.bc_pretrain(demos["obs"], demos["actions"], epochs=a.bc_epochs)
                run_logger.log({"bc/final_loss": losses[-1]}, step=0)
            if hasattr(model, "add_demonstrations"):
                model.add_demonstrations(demos["obs"], demos["executed"], demos["rewards"], demos["next_obs"],
                                         demos["dones"], demos["truncated"])
    sb3_logger = configure(str(run_dir / "sb3"), ["csv"])
    model.set_logger(Logger(sb3_logger.dir, [*sb3_logger.output_formats, RunLoggerOutput(run_logger)]))

    callback = TrackingCallback(cfg, run_dir, eval_env, run_logger)
    remaining = max(cfg.agent.total_timesteps - model.num_timesteps, 0)
    model.learn(remaining, callback=CallbackList([callback]), progress_bar=True, reset_num_timesteps=not resume)
    save_agent(model, run_dir)
    final = callback.evaluate() if eval_env is not None else {}
    run_logger.summary(final)
    run_logger.finish()
    venv.close()
    return {"run_dir": run_dir, "final": final, "history": callback.history, "model": model,
            "stopped_by_budget": callback.stopped_by_budget}
