"""Training MV-SAC (or plain SAC) in the tracking environment: config, demos, callbacks, resume.

``train(cfg)`` builds the vectorised encoded environment, the agent with the motion prior, the
optional expert demonstrations / behaviour-cloning warm start, and runs SB3's ``learn`` with a
progress bar, periodic evaluation on held-out tracks, atomic checkpoints (model + replay buffer)
and a time budget. Every SB3 logger value (``train/actor_loss`` ...) also reaches the run's
JSONL file and W&B through ``RunLoggerOutput``.
"""
from __future__ import annotations

import random
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.logger import CSVOutputFormat, KVWriter, Logger

from bmvtrack.adaptation import AdaptConfig, AdaptedModels, cache_folder
from bmvtrack.config import ConfigError, ranged, save_config, to_dict, validate
from bmvtrack.data.readers import DataConfig, TrackFilter
from bmvtrack.io import atomic_write_text, file_sha256
from bmvtrack.logging_wandb import RunLogger, WandbConfig, run_name
from bmvtrack.metrics import success_auc
from bmvtrack.motion import MotionPrior
from bmvtrack.paths import DEFAULT_VAE_CHECKPOINT, RUNS_DIR
from bmvtrack.run_folder import claim_run_folder
from bmvtrack.agents.agent_file import (BUFFER, CHECKPOINTS, AgentFileError, load_agent, load_buffer, load_training_arrays,
                               make_agent, read_meta, remove_stale_checkpoints, resolve_agent, save_agent_checkpoint)
from bmvtrack.agents.expert import collect_demonstrations
from bmvtrack.envs.registration import make_sb3_vec_env, resolve_env_config
from bmvtrack.envs.state_encoder import DECODER_KINDS, DEFAULT_OBS, ObsKind, StateEncoder, TrackStates
from bmvtrack.envs.tracking_env import EnvConfig, TrackingEnv
from bmvtrack.envs.wrappers import EncodedObservation


@dataclass
class AgentConfig:
    """The agent and its use of the prior and of the expert."""

    algo: Literal["mvsac", "sac"] = "mvsac"  # mvsac: full-covariance prior-shaped SAC; sac: plain SB3 SAC
    total_timesteps: int = ranged(20_000, ge=1)  # environment steps (all copies together)
    learning_starts: int = ranged(1_000, ge=0)  # warm-up steps before gradient updates
    batch_size: int = ranged(256, ge=1)  # replay minibatch
    buffer_size: int = ranged(50_000, ge=1)  # replay capacity (transitions)
    learning_rate: float = ranged(3e-4, gt=0.0)  # Adam step size of actor, critics and entropy coefficient
    gamma: float = ranged(0.9, ge=0.0, le=1.0)  # discount: tracking rewards are immediate, long horizons only add variance
    tau: float = ranged(0.005, gt=0.0, le=1.0)  # target-network Polyak coefficient
    train_freq: int = ranged(1, ge=1)  # env steps (per copy) between updates
    gradient_steps: int = ranged(1, ge=1)  # gradient updates per update round
    net_arch: list[int] = ranged(default_factory=lambda: [256, 256], ge=1)  # hidden layers of actor and critics
    ent_coef: str = "auto_0.1"  # SAC entropy coefficient: 'auto_<initial>' (learned) or a number; rewards are IoUs ≤ 1
    target_entropy: float | None = -19.0  # mvsac: entropy target of the learned coefficient (None = SAC's −dim A); the cue prior starts near it
    prior_source: Literal["global", "state", "cue"] = "cue"  # data MGD, the encoder's per-state posterior, or the mask's motion (obs features_motion)
    prior_file: str | None = None  # shaping prior (e.g. analyze_motion --fit robust); None = the env's prior
    prior_warmup: bool = True  # warm-up actions drawn from the prior instead of uniform noise (mvsac)
    prior_kl_coef: float = ranged(0.1, ge=0.0)  # weight of KL(π ‖ prior) in the actor loss (mvsac; 0 = off); without it the cue agent drifts off its cue
    prior_init: bool = True  # start the actor at the prior (mvsac)
    cue_scale: float = ranged(0.05, gt=0.0)  # prior_source=cue: the cue prior's std as a fraction of the global prior's; it sets the exploration noise (0.2 halved the sampled policy's IoU on held-out synthetic video)
    demo_episodes: int = ranged(0, ge=0)  # expert episodes (info['expert_action']) pushed into the replay buffer
    demo_noise: float = ranged(0.0, ge=0.0)  # execute expert + noise (this × the prior's std) while recording the expert (DART)
    bc_epochs: int = ranged(0, ge=0)  # behaviour-cloning warm start on those demonstrations (0 = off)
    full_covariance: bool = True  # mvsac: learn the Cholesky factor's off-diagonal (False: the diagonal ablation)
    cholesky_diag: Literal["exp", "softplus"] = "exp"  # mvsac: how the actor's output becomes the Cholesky diagonal

    def __post_init__(self) -> None:
        try:
            value = 1.0 if self.ent_coef == "auto" else float(self.ent_coef.removeprefix("auto_"))
        except ValueError:
            value = float("nan")
        if not value > 0:
            raise ConfigError(f"agent.ent_coef: expected 'auto', 'auto_<initial>' or a number > 0, got {self.ent_coef!r}")


@dataclass
class TrainConfig:
    """``python -m bmvtrack.train_sac`` options."""

    env: EnvConfig = field(default_factory=lambda: EnvConfig(data=DataConfig(
        split="train", filters=TrackFilter(absent="keep", max_box_fraction=1.0))))  # training environment
    eval_split: str | None = "val"  # held-out split for periodic evaluation (None = no evaluation)
    eval_every: int = ranged(5_000, ge=1)  # env steps between evaluations
    eval_tracks: int = ranged(0, ge=0)  # evaluate on the first N held-out tracks (0 = all)
    eval_stochastic: bool = True  # also score the sampled (training-time) policy: the cost of exploration
    encoder: str | None = None  # pretrained βMVUnet checkpoint (default runs/pretrain_vae/checkpoint.pt)
    obs: ObsKind = DEFAULT_OBS  # observation kind (bmvtrack.envs.state_encoder); prior_source=cue needs features_motion
    agent: AgentConfig = field(default_factory=AgentConfig)
    adapt: AdaptConfig = field(default_factory=lambda: AdaptConfig(steps=0))  # state from each track's network adapted on frame 0's box (steps 0 = off)
    adapt_cache: str | None = None  # folder of the adapted copies, reused across runs (default runs/adapt_cache)
    n_envs: int = ranged(2, ge=1)  # vectorised environment copies (one batched encoder forward per step)
    seed: int = 0  # seeds env sampling, networks and warm-up
    out_dir: str | None = None  # run folder (default runs/train_sac/<run name>)
    checkpoint_every: int = ranged(5_000, ge=1)  # env steps between checkpoints (model + replay buffer)
    time_budget_min: float = ranged(20.0, ge=0.0)  # stop cleanly after this many minutes (0 = no limit)
    threads: int = ranged(0, ge=0)  # torch threads (0 = leave torch's default)
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
    """Episode IoU, periodic evaluation, checkpoints at rollout ends and the time budget."""

    def __init__(self, cfg: TrainConfig, run_dir: Path, eval_env: EncodedObservation | None, logger: RunLogger,
                 checkpoint: Callable[[bool], Path]) -> None:
        super().__init__()
        self.cfg, self.run_dir, self.eval_env, self.run_logger = cfg, run_dir, eval_env, logger
        self.checkpoint = checkpoint
        self.start = time.time()
        self.last_eval = self.last_ckpt = 0
        self.ep_ious: list[float] = []
        self.history: list[dict[str, float]] = []
        self.stopped_by_budget = False

    def state(self) -> dict[str, Any]:
        """What an exact resume restores (the time budget restarts)."""
        return {"last_eval": self.last_eval, "last_ckpt": self.last_ckpt, "ep_ious": self.ep_ious,
                "history": self.history}

    def set_state(self, state: dict[str, Any]) -> None:
        self.last_eval, self.last_ckpt = int(state["last_eval"]), int(state["last_ckpt"])
        self.ep_ious, self.history = list(state["ep_ious"]), list(state["history"])

    def _on_step(self) -> bool:
        for info in self.locals.get("infos", []):
            ep = info.get("episode")
            if ep is not None and ep["l"] > 0:
                self.ep_ious.append(float(ep["r"] / ep["l"]))
        if len(self.ep_ious) >= 4:
            self.logger.record("rollout/ep_mean_iou", float(np.mean(self.ep_ious)))
            self.ep_ious.clear()
        t = self.num_timesteps
        if self.eval_env is not None and t - self.last_eval >= self.cfg.eval_every:
            self.last_eval = t
            self.evaluate()
        budget = self.cfg.time_budget_min * 60
        if budget > 0 and time.time() - self.start > budget:
            self.stopped_by_budget = True
            print(f"\ntime budget of {self.cfg.time_budget_min} min reached at {t} steps: stopping", file=sys.stderr)
            return False
        return True

    def _on_rollout_end(self) -> None:
        # After a rollout SB3 runs its gradient update: a checkpoint here records that one is due.
        if self.num_timesteps - self.last_ckpt >= self.cfg.checkpoint_every:
            self.last_ckpt = self.num_timesteps
            self.checkpoint(self.num_timesteps > self.model.learning_starts)

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


class ResumableCSV(CSVOutputFormat):
    """SB3's CSV output that appends to an existing ``progress.csv`` instead of truncating it."""

    def __init__(self, filename: str | Path) -> None:
        path = Path(filename)
        header = path.read_text().splitlines()[:1] if path.is_file() else []
        self.file = open(path, "a+")
        self.keys = header[0].split(",") if header and header[0] else []
        self.separator, self.quotechar = ",", '"'


# ---------------------------------------------------------------------------------- exact resume


def _envs(venv) -> list:
    """The Monitor-wrapped raw environments of the in-process vector env training uses."""
    inner = getattr(venv, "venv", venv)
    if not hasattr(inner, "envs"):
        raise TypeError("exact checkpoints need the in-process (DummyVecEnv) training environment")
    return list(inner.envs)


def training_state(model, venv, callback: TrackingCallback, pending_train: bool) -> tuple[dict, dict]:
    """Everything besides weights and buffer that the next steps depend on: counters, the last
    observations, every RNG, each environment copy's episode, the callback's schedule."""
    import torch

    np_state = np.random.get_state()
    py_state = random.getstate()
    envs = [{"env": m.unwrapped.get_state(), "rewards": list(m.rewards), "needs_reset": m.needs_reset,
             "total_steps": m.total_steps} for m in _envs(venv)]
    state = {
        "n_updates": model._n_updates, "episode_num": model._episode_num, "pending_train": bool(pending_train),
        "numpy_rng": [np_state[0], np_state[1].tolist(), *np_state[2:]],  # the rest: int, int, float
        "python_rng": [py_state[0], list(py_state[1]), py_state[2]],
        "action_space_rng": model.action_space.np_random.bit_generator.state,
        "envs": envs, "callback": callback.state(),
        "ep_info_buffer": list(model.ep_info_buffer or []),
    }
    arrays = {"torch_rng": torch.get_rng_state(), "last_obs": torch.as_tensor(np.asarray(model._last_obs)),
              "last_episode_starts": torch.as_tensor(np.asarray(model._last_episode_starts))}
    cache = getattr(venv, "_cache", None)
    if cache is not None:
        arrays["template_cache"] = torch.as_tensor(cache)
    return state, arrays


def restore_training_state(model, venv, callback: TrackingCallback, state: dict, arrays: dict) -> None:
    """Put ``model``, ``venv`` and ``callback`` back where :func:`training_state` found them; run
    the gradient update that was due when the checkpoint was taken."""
    import torch

    model._n_updates, model._episode_num = int(state["n_updates"]), int(state["episode_num"])
    model._last_obs = arrays["last_obs"].numpy()
    model._last_episode_starts = arrays["last_episode_starts"].numpy()
    model.ep_info_buffer = deque(state["ep_info_buffer"], maxlen=model._stats_window_size)
    model.ep_success_buffer = deque(maxlen=model._stats_window_size)
    monitors = _envs(venv)
    if len(monitors) != len(state["envs"]):
        raise ConfigError(f"the checkpoint has {len(state['envs'])} environment copies; n_envs is {len(monitors)}")
    for m, e in zip(monitors, state["envs"]):
        m.unwrapped.set_state(e["env"])
        m.rewards, m.needs_reset, m.total_steps = list(e["rewards"]), bool(e["needs_reset"]), int(e["total_steps"])
    inner = getattr(venv, "venv", venv)
    if hasattr(inner, "_reset_seeds"):
        inner._reset_seeds()
    if hasattr(venv, "_cache"):
        venv._cache = arrays["template_cache"].numpy() if "template_cache" in arrays else None
    callback.set_state(state["callback"])
    n = state["numpy_rng"]
    np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), *n[2:]))
    p = state["python_rng"]
    random.setstate((p[0], tuple(p[1]), p[2]))
    model.action_space.np_random.bit_generator.state = state["action_space_rng"]
    torch.set_rng_state(arrays["torch_rng"])
    if state["pending_train"] and model.gradient_steps > 0:
        model.train(batch_size=model.batch_size, gradient_steps=model.gradient_steps)


def agent_kwargs(cfg: TrainConfig, prior_mean: np.ndarray, prior_cov: np.ndarray, layout: dict[str, slice],
                 cue: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, Any]:
    """The SAC / MV-SAC constructor arguments of ``cfg``, as JSON-able data (what an agent file stores);
    ``cue`` = the (mean, std) that standardise the observation's motion cue
    (``StateEncoder.prior_mean``/``prior_std``), needed by ``prior_source="cue"``."""
    a = cfg.agent
    ent = a.ent_coef if a.ent_coef.startswith("auto") else float(a.ent_coef)
    common: dict[str, Any] = dict(
        learning_rate=a.learning_rate, buffer_size=a.buffer_size, learning_starts=a.learning_starts,
        batch_size=a.batch_size, tau=a.tau, gamma=a.gamma, train_freq=a.train_freq,
        gradient_steps=a.gradient_steps, ent_coef=ent, seed=cfg.seed, verbose=0,
        policy_kwargs=dict(net_arch=list(a.net_arch)),
    )
    if a.algo == "sac":  # plain SB3 SAC: its own entropy target
        return common
    common["target_entropy"] = "auto" if a.target_entropy is None else float(a.target_entropy)
    state = a.prior_source == "state"
    cue_kwargs: dict[str, Any] = {}
    if a.prior_source == "cue":
        if "search/motion" not in layout or cue is None:
            raise ValueError(f"agent.prior_source=cue needs obs=features_motion (got obs={cfg.obs})")
        start = layout["search/motion"].start
        cue_kwargs = dict(cue_slice=[start, start + 5], cue_mean=np.asarray(cue[0]).tolist(),
                          cue_std=np.asarray(cue[1]).tolist(), cue_scale=a.cue_scale)

    def span(key: str) -> list[int] | None:
        return [layout[key].start, layout[key].stop] if state else None

    common["policy_kwargs"].update(full_covariance=a.full_covariance, cholesky_diag=a.cholesky_diag)
    return dict(
        prior_mean=np.asarray(prior_mean, dtype=np.float64).tolist(),
        prior_cov=np.asarray(prior_cov, dtype=np.float64).tolist(), prior_source=a.prior_source,
        state_prior_mean_slice=span("search/mu"), state_prior_tril_slice=span("search/tril"),
        prior_warmup=a.prior_warmup, prior_kl_coef=a.prior_kl_coef, prior_init=a.prior_init, **cue_kwargs,
        **common,
    )


def build_agent(cfg: TrainConfig, venv, prior_mean: np.ndarray, prior_cov: np.ndarray, layout: dict[str, slice],
                cue: tuple[np.ndarray, np.ndarray] | None = None):
    """SAC or MV-SAC on ``venv`` (see :func:`agent_kwargs`)."""
    return make_agent(cfg.agent.algo, venv, agent_kwargs(cfg, prior_mean, prior_cov, layout, cue))


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
    diagnostics (scripts/exploration_probe.py) build their environments from.

    Everything is resolved and loaded here, once: the environment's config (its data root, prior
    file and the encoder's crop size filled in), its prior, and the encoder from its checkpoint;
    the environments are built from these objects (``make_sb3_vec_env``, ``held_out_env``)."""
    enc_path = ensure_encoder(cfg)
    env_cfg = resolve_env_config(cfg.env)
    if env_cfg.proposal != "none" and env_cfg.proposal_cache is None:
        env_cfg.proposal_cache = str(RUNS_DIR / "proposal_cache")
    prior = env_cfg.motion_prior()
    encoder = StateEncoder.from_checkpoint(enc_path, kind=cfg.obs)
    encoder.proposal = env_cfg.proposal != "none"
    encoder.cue_bounds = prior.action_bounds(env_cfg.action_n_std)  # the cue stays within the action bounds
    env_cfg.crop_size = encoder.patch_size
    return enc_path, env_cfg, prior, encoder, track_states(cfg, encoder, enc_path)


def held_out_env(cfg: TrainConfig, env_cfg: EnvConfig, prior: MotionPrior, encoder: StateEncoder,
                 per_track: TrackStates | None) -> EncodedObservation:
    """The ``eval_split`` tracks in order, without termination, in the training states (``env_cfg``,
    ``prior`` and ``encoder`` as ``training_setup`` made them)."""
    raw = TrackingEnv(env_cfg.held_out(cfg.eval_split), prior=prior)
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
        from bmvtrack.pretrain_vae import PretrainConfig
        from bmvtrack.pretrain_vae import train as pretrain

        pcfg = PretrainConfig()
        pcfg.wandb = cfg.wandb
        result = pretrain(pcfg)
        if result.checkpoint is None or not Path(result.checkpoint).is_file():
            raise RuntimeError("pretraining finished without writing a checkpoint")
        path = Path(result.checkpoint)
    return path


# Keys a resumed run may change: how long and how it is watched, never what is learned.
RESUMABLE_KEYS = ("agent.total_timesteps", "time_budget_min", "eval_every", "eval_tracks", "eval_stochastic",
                  "checkpoint_every", "threads", "wandb")
RUN_OUTPUTS = (CHECKPOINTS, "config.yaml", "command.txt", "sb3", "metrics.jsonl", "model.zip", "replay_buffer.pkl")


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def check_resumable(saved: dict[str, Any], cfg: TrainConfig, source: str) -> None:
    """A resumed run learns what it learned before: only :data:`RESUMABLE_KEYS` may change."""
    old, new = _flat(saved), _flat(to_dict(cfg))
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k)
                     and not any(k == r or k.startswith(r + ".") for r in RESUMABLE_KEYS))
    if changed:
        shown = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed[:4])
        raise ConfigError(f"{source}: a resumed run cannot change {shown}"
                          f"{' …' if len(changed) > 4 else ''} (start a new run with another --out instead)")


def encoder_identity(path: Path, encoder: StateEncoder) -> dict[str, Any]:
    """What ties an agent to its encoder: the file's SHA-256, its architecture and the observation kind."""
    return {"path": str(path), "sha256": file_sha256(path), "model_config": to_dict(encoder.cfg), "obs": encoder.kind}


def check_encoder(meta: dict[str, Any], path: Path, where: str, allow_other: bool = False) -> None:
    """An agent reads states of the encoder it was trained with; another one is an error unless allowed."""
    want = meta["encoder"]
    got = file_sha256(path)
    if got == want.get("sha256"):
        return
    msg = (f"{where}: trained with encoder {want.get('path')} (sha256 {str(want.get('sha256'))[:12]}…), "
           f"but {path} has sha256 {got[:12]}…")
    if not allow_other:
        raise AgentFileError(msg + " (pass --allow-other-encoder to use it anyway)")
    print(f"warning: {msg}; used anyway (--allow-other-encoder)", file=sys.stderr)


def resume_config(resume: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """The config of the run at ``resume`` (run or checkpoint folder) with ``overrides`` applied."""
    from bmvtrack.config import apply_overrides, from_dict

    folder = resolve_agent(resume)
    data = read_meta(folder)["config"]
    apply_overrides(data, list(overrides or []), TrainConfig)
    return from_dict(TrainConfig, data, source=f"{folder / 'agent.json'} + overrides")


def train(cfg: TrainConfig, resume: str | None = None, argv: list[str] | None = None, overwrite: bool = False,
          allow_other_encoder: bool = False) -> dict[str, Any]:
    """Train an agent; returns the run folder, the final evaluation and the evaluation history.

    ``resume`` (a run folder or one of its checkpoints) continues that run exactly: everything is
    checked before anything is written. A new run refuses a folder that holds one unless ``overwrite``.
    """
    import torch

    validate(cfg)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    meta = folder = None
    if resume:
        folder = resolve_agent(resume)
        meta = read_meta(folder)
        run_dir = folder.parent.parent
        check_resumable(meta["config"], cfg, str(folder / "agent.json"))
    else:
        run_dir = Path(cfg.out_dir or RUNS_DIR / "train_sac" / run_name("train_sac", f"{cfg.agent.algo}-s{cfg.seed}"))
    claim_run_folder(run_dir, RUN_OUTPUTS, resume=bool(resume), overwrite=overwrite, what="training run")
    remove_stale_checkpoints(run_dir)
    enc_path, env_cfg, prior, encoder, per_track = training_setup(cfg)
    if meta is not None:
        check_encoder(meta, enc_path, str(folder), allow_other_encoder)
    venv = make_sb3_vec_env(cfg.n_envs, env_cfg, encoder=encoder, seed=cfg.seed, per_track=per_track)
    eval_env = held_out_env(cfg, env_cfg, prior, encoder, per_track) if cfg.eval_split else None

    if resume:
        model, _, _ = load_agent(folder, env=venv)
        if (folder / BUFFER).is_file():
            load_buffer(model.replay_buffer, folder / BUFFER)
        arrays = load_training_arrays(folder)
        if not meta.get("training"):
            raise AgentFileError(f"{folder}: holds no training state (a final agent cannot be resumed)")
        kwargs = meta["kwargs"]
    else:
        shaping = MotionPrior.load(cfg.agent.prior_file) if cfg.agent.prior_file else prior
        kwargs = agent_kwargs(cfg, shaping.mean, shaping.cov, venv.obs_layout, cue=(encoder.prior_mean, encoder.prior_std))
        model = make_agent(cfg.agent.algo, venv, kwargs)

    # Everything is checked: from here on the run folder is written.
    name = run_dir.name
    save_config(cfg, run_dir / "config.yaml")
    atomic_write_text(run_dir / "command.txt", " ".join([sys.executable, "-m", "bmvtrack.train_sac", *(argv or [])]) + "\n")
    run_logger = RunLogger(run_dir, name, "train_sac", to_dict(cfg), cfg.wandb)
    identity = {"algo": cfg.agent.algo, "kwargs": kwargs, "encoder": encoder_identity(enc_path, encoder),
                "config": to_dict(cfg)}
    callback: TrackingCallback

    def checkpoint(pending_train: bool) -> Path:
        state, arrays = training_state(model, venv, callback, pending_train)
        return save_agent_checkpoint(model, run_dir, identity, state, arrays)

    callback = TrackingCallback(cfg, run_dir, eval_env, run_logger, checkpoint)
    (run_dir / "sb3").mkdir(exist_ok=True)
    model.set_logger(Logger(str(run_dir / "sb3"), [ResumableCSV(run_dir / "sb3" / "progress.csv"),
                                                   RunLoggerOutput(run_logger)]))
    if resume:
        restore_training_state(model, venv, callback, meta["training"], arrays)
        print(f"resumed {run_dir} at {model.num_timesteps} steps", file=sys.stderr)
    else:
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

    remaining = max(cfg.agent.total_timesteps - model.num_timesteps, 0)
    model.learn(remaining, callback=CallbackList([callback]), progress_bar=True, reset_num_timesteps=not resume)
    # a budget stop ends SB3's loop between a rollout and its gradient update: that update is still due
    checkpoint(callback.stopped_by_budget and model.num_timesteps > model.learning_starts)
    final = callback.evaluate() if eval_env is not None else {}
    run_logger.summary(final)
    run_logger.finish()
    venv.close()
    return {"run_dir": run_dir, "final": final, "history": callback.history, "model": model,
            "stopped_by_budget": callback.stopped_by_budget}
