"""Observation wrappers: raw observations (crops + box geometry) → encoder states (``StateEncoder``).

``EncodedObservation`` wraps one Gymnasium env, ``VecEncodedObservation`` an SB3 VecEnv and
``VectorEncodedObservation`` a Gymnasium vector env; the vectorised two run one batched encoder
forward per step for all copies. With ``TrackStates`` the first two compute each copy's state with
its track's first-frame-adapted network. Each has ``obs_layout``, the named slices of its states
(``StateEncoder.layout``).
"""
from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

from bmvtrack.envs.state_encoder import StateEncoder, TrackStates, encode_each


def _flat_space(encoder: StateEncoder, raw: spaces.Dict) -> spaces.Box:
    if encoder.kind == "features_motion" and encoder.proposal != ("proposal" in raw.spaces):
        raise ValueError(f"the environment {'emits' if 'proposal' in raw.spaces else 'has no'} proposal box but "
                         f"the encoder's proposal flag is {encoder.proposal}: build both from one EnvConfig.proposal")
    n = raw["crops"].shape[0]
    d = encoder.obs_dim(n, raw["box"].shape[0])
    return spaces.Box(-np.inf, np.inf, (d,), dtype=np.float32)


def _layout(encoder: StateEncoder, raw: spaces.Dict) -> dict[str, slice]:
    return encoder.layout(raw["crops"].shape[0], raw["box"].shape[0])


class EncodedObservation(gym.ObservationWrapper):
    """One environment: raw crops → encoder state."""

    def __init__(self, env: gym.Env, encoder: StateEncoder, per_track: TrackStates | None = None) -> None:
        super().__init__(env)
        self.encoder, self.per_track = encoder, per_track
        self.observation_space = _flat_space(encoder, env.observation_space)
        self.obs_layout = _layout(encoder, env.observation_space)
        self._cache: np.ndarray | None = None

    def observation(self, observation: dict[str, np.ndarray]) -> np.ndarray:
        enc = self.encoder
        if self.per_track is not None:
            raw = self.env.unwrapped
            enc = self.per_track.for_track(raw.track, lambda: raw.first_frame(raw.track))
        obs, self._cache = enc.encode_raw(observation, self._cache)
        return obs[0]


class VecEncodedObservation(VecEnvWrapper):
    """SB3 VecEnv of raw environments → one batched encoder forward per step for all copies."""

    def __init__(self, venv: VecEnv, encoder: StateEncoder, per_track: TrackStates | None = None) -> None:
        self.encoder, self.per_track = encoder, per_track
        raw = venv.observation_space
        super().__init__(venv, observation_space=_flat_space(encoder, raw))
        self.obs_layout = _layout(encoder, raw)
        self._cache: np.ndarray | None = None
        self._stepping: list[StateEncoder] = []  # per-track encoders of the episodes a step was sent to

    def _encoders(self) -> list[StateEncoder]:
        """Each copy's encoder for the track it is on now."""
        assert self.per_track is not None
        return [self.per_track.for_track(t, lambda i=i, t=t: self.venv.env_method("first_frame", t, indices=[i])[0])
                for i, t in enumerate(self.venv.get_attr("track"))]

    def _encode(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        if self.per_track is None:
            out, self._cache = self.encoder.encode_raw(obs, self._cache, batched=True)
        else:
            out, self._cache = encode_each(self._encoders(), obs, self._cache)
        return out

    def reset(self) -> np.ndarray:
        self._cache = None
        return self._encode(self.venv.reset())

    def step_async(self, actions: np.ndarray) -> None:
        if self.per_track is not None:  # a finished episode's last state needs its own track's network
            self._stepping = self._encoders()
        self.venv.step_async(actions)

    def step_wait(self) -> Any:
        obs, rewards, dones, infos = self.venv.step_wait()
        for i, info in enumerate(infos):  # the final observation of a finished episode is encoded too
            term = info.get("terminal_observation")
            if isinstance(term, dict):
                enc = self._stepping[i] if self.per_track is not None else self.encoder
                info["terminal_observation"] = enc.encode_raw(term)[0][0]
        return self._encode(obs), rewards, dones, infos


class VectorEncodedObservation(gym.vector.VectorObservationWrapper):
    """Gymnasium vector env of raw environments → batched encoder states."""

    def __init__(self, env: gym.vector.VectorEnv, encoder: StateEncoder) -> None:
        super().__init__(env)
        self.encoder = encoder
        raw = env.single_observation_space
        self.single_observation_space = _flat_space(encoder, raw)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, env.num_envs)
        self.obs_layout = _layout(encoder, raw)
        self._cache: np.ndarray | None = None

    def reset(self, **kwargs: Any):
        self._cache = None
        return super().reset(**kwargs)

    def observations(self, observations: dict[str, np.ndarray]) -> np.ndarray:
        out, self._cache = self.encoder.encode_raw(observations, self._cache, batched=True)
        return out
