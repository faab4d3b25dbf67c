"""States from the frozen βMVUnet encoder, computed in one batched forward for all env copies.

``StateEncoder`` turns raw observations (crops + box geometry) into flat float32 vectors.
Observation kinds (per crop: the search crop, then the template when present):

| kind            | per crop                                   | length per crop    |
|-----------------|--------------------------------------------|--------------------|
| ``posterior``   | μ′ (5) and the Cholesky factor of Σ′ (15)  | 20                 |
| ``features``    | pooled encoder feature (F) + posterior     | F + 20             |
| ``features_mask`` | + decoder mask probabilities (m×m)      | F + 20 + m²        |

followed by the 7 box-geometry numbers of the raw observation. ``layout`` maps names to slices
(``search/mu``, ``search/tril``, ...) so agents can read the per-state posterior prior.
The template's encoding is computed once per episode (when the box's ``first`` flag is set) and reused.

Wrappers: ``EncodedObservation`` (one Gymnasium env), ``VecEncodedObservation`` (SB3 VecEnv),
``VectorEncodedObservation`` (Gymnasium vector env).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

from bmvtrack.checkpoint import load_checkpoint
from bmvtrack.config import from_dict
from bmvtrack.models import ModelConfig, build_encoder, build_model
from bmvtrack.models.preprocess import patches_to_tensor
from bmvtrack.motion import MotionPrior

ObsKind = Literal["posterior", "features", "features_mask"]
OBS_KINDS = ("posterior", "features", "features_mask")
TRIL = torch.tril_indices(5, 5)


class StateEncoder:
    """The frozen pretrained network and the recipe that turns crops into observation vectors."""

    def __init__(self, model_cfg: ModelConfig, state_dict: dict[str, torch.Tensor], kind: ObsKind = "features",
                 mask_size: int = 8, device: str = "cpu") -> None:
        if kind not in OBS_KINDS:
            raise ValueError(f"observation kind must be one of {OBS_KINDS}, got {kind!r}")
        self.cfg, self.kind, self.mask_size, self.device = model_cfg, kind, mask_size, torch.device(device)
        if kind == "features_mask":
            prior = {k[len("encoder.bottleneck."):]: v for k, v in state_dict.items() if k.startswith("encoder.bottleneck.prior_")}
            net = build_model(model_cfg, prior["prior_mean"], prior["prior_cov"], prior.get("prior_std"))
            net.load_state_dict(state_dict, strict=True)
            net.requires_grad_(False).eval()
            self.net = net.to(self.device)
        else:
            self.net = build_encoder(model_cfg, state_dict).to(self.device)
        self.per_crop = 20 + (model_cfg.feature_dim if kind != "posterior" else 0) + (mask_size**2 if kind == "features_mask" else 0)

    @classmethod
    def from_checkpoint(cls, path: str | Path, kind: ObsKind = "features", device: str = "cpu") -> "StateEncoder":
        ckpt = load_checkpoint(path, kind="bmvae")
        cfg = from_dict(ModelConfig, ckpt["model_config"], source=f"{path} [model_config]")
        return cls(cfg, ckpt["model"], kind, device=device)

    @classmethod
    def untrained(cls, model_cfg: ModelConfig, prior: MotionPrior, kind: ObsKind = "features", seed: int = 0) -> "StateEncoder":
        """A randomly initialised network of the same class (tests, and before pretraining)."""
        torch.manual_seed(seed)
        net = build_model(model_cfg, prior.mean, prior.cov, prior.sample_std)
        return cls(model_cfg, net.state_dict(), kind)

    @property
    def patch_size(self) -> int:
        return self.cfg.patch_size

    def obs_dim(self, n_crops: int, box_dim: int) -> int:
        return n_crops * self.per_crop + box_dim

    def layout(self, n_crops: int, box_dim: int) -> dict[str, slice]:
        out, off = {}, 0
        for name in ("search", "template")[:n_crops]:
            out[f"{name}/mu"] = slice(off, off + 5)
            out[f"{name}/tril"] = slice(off + 5, off + 20)
            if self.kind != "posterior":
                out[f"{name}/features"] = slice(off + 20, off + 20 + self.cfg.feature_dim)
            if self.kind == "features_mask":
                s = off + 20 + self.cfg.feature_dim
                out[f"{name}/mask"] = slice(s, s + self.mask_size**2)
            off += self.per_crop
        out["box"] = slice(off, off + box_dim)
        return out

    @torch.no_grad()
    def encode_crops(self, crops: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) uint8 → (N, per_crop) float32 in one forward pass."""
        x = patches_to_tensor(crops, self.device)
        if x.shape[-1] != self.cfg.patch_size:
            x = torch.nn.functional.interpolate(x, size=(self.cfg.patch_size,) * 2, mode="bilinear", align_corners=False)
        out = self.net(x, sample=False)
        tril = out["scale_tril"] if "scale_tril" in out else torch.linalg.cholesky(out["cov"])
        if tril.shape[0] != x.shape[0]:  # the paper's batch bottleneck has one Σ′ per batch
            tril = tril.expand(x.shape[0], -1, -1)
        parts = [out["mu"], tril[:, TRIL[0], TRIL[1]]]
        if self.kind != "posterior":
            parts.append(out["features"])
        if self.kind == "features_mask":
            prob = out["logits"].softmax(1)[:, 1:].sum(1, keepdim=True)
            parts.append(torch.nn.functional.adaptive_avg_pool2d(prob, self.mask_size).flatten(1))
        return torch.cat(parts, dim=1).float().cpu().numpy()

    def encode(self, crops: np.ndarray, box: np.ndarray, template_cache: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Batch of raw observations → (B, obs_dim). Templates are re-encoded only at t = 0.

        ``template_cache`` (B, per_crop) holds each copy's template encoding between calls.
        """
        b, n = crops.shape[:2]
        if n == 1:
            return np.concatenate([self.encode_crops(crops[:, 0]), box], axis=1).astype(np.float32), None
        fresh = box[:, -1] == 1.0  # the 'first' flag: a new episode, so a new template
        if template_cache is None:
            template_cache = np.zeros((b, self.per_crop), np.float32)
            fresh = np.ones(b, bool)
        batch = np.concatenate([crops[:, 0], crops[fresh, 1]], axis=0)
        enc = self.encode_crops(batch)
        template_cache = template_cache.copy()
        template_cache[fresh] = enc[b:]
        return np.concatenate([enc[:b], template_cache, box], axis=1).astype(np.float32), template_cache


def _flat_space(encoder: StateEncoder, raw: spaces.Dict) -> spaces.Box:
    n = raw["crops"].shape[0]
    d = encoder.obs_dim(n, raw["box"].shape[0])
    return spaces.Box(-np.inf, np.inf, (d,), dtype=np.float32)


class EncodedObservation(gym.ObservationWrapper):
    """One environment: raw crops → encoder state."""

    def __init__(self, env: gym.Env, encoder: StateEncoder) -> None:
        super().__init__(env)
        self.encoder = encoder
        self.observation_space = _flat_space(encoder, env.observation_space)
        self.obs_layout = encoder.layout(env.observation_space["crops"].shape[0], env.observation_space["box"].shape[0])
        self._cache: np.ndarray | None = None

    def observation(self, observation: dict[str, np.ndarray]) -> np.ndarray:
        obs, self._cache = self.encoder.encode(observation["crops"][None], observation["box"][None], self._cache)
        return obs[0]


class VecEncodedObservation(VecEnvWrapper):
    """SB3 VecEnv of raw environments → one batched encoder forward per step for all copies."""

    def __init__(self, venv: VecEnv, encoder: StateEncoder) -> None:
        self.encoder = encoder
        raw = venv.observation_space
        super().__init__(venv, observation_space=_flat_space(encoder, raw))
        self.obs_layout = encoder.layout(raw["crops"].shape[0], raw["box"].shape[0])
        self._cache: np.ndarray | None = None

    def _encode(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        out, self._cache = self.encoder.encode(obs["crops"], obs["box"], self._cache)
        return out

    def reset(self) -> np.ndarray:
        self._cache = None
        return self._encode(self.venv.reset())

    def step_wait(self) -> Any:
        obs, rewards, dones, infos = self.venv.step_wait()
        for info in infos:  # the final observation of a finished episode is encoded too
            term = info.get("terminal_observation")
            if isinstance(term, dict):
                info["terminal_observation"] = self.encoder.encode(term["crops"][None], term["box"][None])[0][0]
        return self._encode(obs), rewards, dones, infos


class VectorEncodedObservation(gym.vector.VectorObservationWrapper):
    """Gymnasium vector env of raw environments → batched encoder states."""

    def __init__(self, env: gym.vector.VectorEnv, encoder: StateEncoder) -> None:
        super().__init__(env)
        self.encoder = encoder
        raw = env.single_observation_space
        self.single_observation_space = _flat_space(encoder, raw)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, env.num_envs)
        self.obs_layout = encoder.layout(raw["crops"].shape[0], raw["box"].shape[0])
        self._cache: np.ndarray | None = None

    def reset(self, **kwargs: Any):
        self._cache = None
        return super().reset(**kwargs)

    def observations(self, observations: dict[str, np.ndarray]) -> np.ndarray:
        out, self._cache = self.encoder.encode(observations["crops"], observations["box"], self._cache)
        return out
