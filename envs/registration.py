"""Factories behind ``gymnasium.make("bmvtrack/Track-v0")`` and ``gymnasium.make_vec`` (arguments:
``TrackingEnv``'s docstring), and the SB3 vector env training uses."""
from __future__ import annotations

import copy

import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym

from bmvtrack.config import from_dict
from bmvtrack.data.readers import DataConfig, VideoDataset
from bmvtrack.models import ModelConfig
from bmvtrack.motion import MotionPrior
from bmvtrack.paths import DEFAULT_PRIOR, DEFAULT_VAE_CHECKPOINT
from bmvtrack.envs.state_encoder import DEFAULT_OBS, ObsKind, StateEncoder, TrackStates
from bmvtrack.envs.tracking_env import EnvConfig, TrackingEnv
from bmvtrack.envs.wrappers import EncodedObservation, VecEncodedObservation, VectorEncodedObservation

ENV_ID = "bmvtrack/Track-v0"


def resolve_env_config(config: EnvConfig | dict | str | Path | None = None, **overrides: Any) -> EnvConfig:
    """EnvConfig from an object, a dict, or a YAML file, plus keyword overrides (strictly checked).

    With no data root given, the synthetic default is generated (once) and used.
    """
    from bmvtrack.config import load_config, to_dict

    if isinstance(config, (str, Path)):
        cfg = load_config(EnvConfig, config)
    elif isinstance(config, dict):
        cfg = from_dict(EnvConfig, config, source="env config")
    else:  # a copy: resolving (and what callers set on the result) never changes the caller's config
        cfg = copy.deepcopy(config) if config is not None else EnvConfig()
    data_keys = {k: overrides.pop(k) for k in list(overrides) if k in ("root", "layout", "resolution", "split")}
    if data_keys:
        cfg.data = from_dict(DataConfig, {**to_dict(cfg.data), **data_keys}, source="env data options")
    if overrides:
        merged = {**to_dict(cfg), **overrides}
        cfg = from_dict(EnvConfig, merged, source="env options")
    if cfg.data.root == DataConfig().root and not Path(cfg.data.root).is_dir():
        from bmvtrack.data.synth import default_synthetic

        cfg.data.root = str(default_synthetic())
    if cfg.prior is None and DEFAULT_PRIOR.is_file():
        cfg.prior = str(DEFAULT_PRIOR)
    return cfg


def resolve_encoder(encoder: StateEncoder | str | Path | None, obs: ObsKind, prior: MotionPrior,
                    proposal: bool = False) -> StateEncoder:
    """A StateEncoder from an object or a checkpoint; the default checkpoint, or an untrained one with a warning.

    ``proposal``: the environment emits a proposal box (``EnvConfig.proposal``), which the cue fuses.
    """
    enc = _load_encoder(encoder, obs, prior)
    enc.proposal = proposal
    return enc


def _load_encoder(encoder: StateEncoder | str | Path | None, obs: ObsKind, prior: MotionPrior) -> StateEncoder:
    if isinstance(encoder, StateEncoder):
        return encoder
    path = Path(encoder) if encoder is not None else DEFAULT_VAE_CHECKPOINT
    if path.is_file():
        return StateEncoder.from_checkpoint(path, kind=obs)
    if encoder is not None:
        from bmvtrack.checkpoint import CheckpointError

        raise CheckpointError(f"{path}: encoder checkpoint not found")
    warnings.warn(
        f"no pretrained encoder at {path}: using an UNTRAINED encoder (run `python -m bmvtrack.pretrain_vae`)",
        stacklevel=3,
    )
    return StateEncoder.untrained(ModelConfig(), prior, kind=obs)


def make_raw_env(config: EnvConfig | dict | str | Path | None = None, render_mode: str | None = None,
                 dataset: VideoDataset | None = None, **overrides: Any) -> TrackingEnv:
    cfg = resolve_env_config(config, **overrides)
    return TrackingEnv(cfg, dataset=dataset, render_mode=render_mode)


def make_tracking_env(config: EnvConfig | dict | str | Path | None = None, encoder: StateEncoder | str | Path | None = None,
                      obs: ObsKind = DEFAULT_OBS, render_mode: str | None = None, **overrides: Any) -> gym.Env:
    """The encoded environment: raw TrackingEnv + EncodedObservation (what agents see)."""
    raw = make_raw_env(config, render_mode=render_mode, **overrides)
    enc = resolve_encoder(encoder, obs, raw.prior, raw.cfg.proposal != "none")
    if raw.cfg.crop_size != enc.patch_size:
        raw = make_raw_env(raw.cfg, render_mode=render_mode, dataset=raw.dataset, crop_size=enc.patch_size)
    return EncodedObservation(raw, enc)


def make_tracking_vector_env(num_envs: int = 2, config: EnvConfig | dict | str | Path | None = None,
                             encoder: StateEncoder | str | Path | None = None, obs: ObsKind = DEFAULT_OBS,
                             **overrides: Any) -> gym.vector.VectorEnv:
    """Gymnasium vector env whose copies share one batched encoder forward per step."""
    cfg = resolve_env_config(config, **overrides)
    probe = TrackingEnv(cfg)
    enc = resolve_encoder(encoder, obs, probe.prior, cfg.proposal != "none")
    cfg.crop_size = enc.patch_size
    ds, prior = probe.dataset, probe.prior
    venv = gym.vector.SyncVectorEnv([lambda: TrackingEnv(cfg, dataset=ds, prior=prior) for _ in range(num_envs)])
    return VectorEncodedObservation(venv, enc)


def make_sb3_vec_env(num_envs: int = 2, config: EnvConfig | dict | str | Path | None = None,
                     encoder: StateEncoder | str | Path | None = None, obs: ObsKind = DEFAULT_OBS,
                     subprocess: bool = False, seed: int | None = None, per_track: TrackStates | None = None,
                     **overrides: Any):
    """SB3 VecEnv (Dummy or Subproc) of raw envs; the encoder runs once per step on the whole batch
    (once per copy with ``per_track``, each copy's track's adapted network, all made here first).

    The config is resolved once here and the copies share it, its prior, and (in-process) one
    dataset; an encoder given as a ``StateEncoder`` is used as it is (only its proposal flag is
    set from the config)."""
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    cfg = resolve_env_config(config, **overrides)
    probe = TrackingEnv(cfg)
    enc = resolve_encoder(encoder, obs, probe.prior, cfg.proposal != "none")
    cfg.crop_size = enc.patch_size
    shared = None if subprocess else probe.dataset  # in-process copies share one frame cache
    prior = probe.prior

    def factory(rank: int):
        def _make():
            env = Monitor(TrackingEnv(cfg, dataset=shared, prior=prior))
            env.reset(seed=None if seed is None else seed + rank)
            return env
        return _make

    cls = SubprocVecEnv if subprocess else DummyVecEnv
    venv = cls([factory(i) for i in range(num_envs)])
    if seed is not None:
        venv.seed(seed)
    if per_track is not None:
        per_track.prepare(probe)
    if not subprocess:  # in-process copies share the probe's dataset, hence its proposal boxes
        probe.prepare_proposals()
    return VecEncodedObservation(venv, enc, per_track)
