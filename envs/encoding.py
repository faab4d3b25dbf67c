"""States from the frozen βMVUnet encoder, computed in one batched forward for all env copies.

``StateEncoder`` turns raw observations (crops + box geometry) into flat float32 vectors.
Observation kinds (per crop: the search crop, then the template when present):

| kind            | per crop                                   | length per crop    |
|-----------------|--------------------------------------------|--------------------|
| ``posterior``   | μ′ (5) and the Cholesky factor of Σ′ (15)  | 20                 |
| ``features``    | pooled encoder feature (F) + posterior     | F + 20             |
| ``features_mask`` | + decoder mask probabilities (m×m)      | F + 20 + m²        |
| ``features_motion`` | as ``features``                         | F + 20             |

``features_motion`` then adds 7 numbers for the search crop: the motion G_t that would move the
agent's box onto the box fitted to the decoder's mask — to the mask pieces that touch the agent's
box, as the segmentation tracker does (standardised by the encoder's prior,
(G − μ)/σ, clipped to ±10), the mask's area fraction, and a flag set when the mask is empty
(G is then "stay"). It puts the segmentation tracker's answer in the state, so the policy can
learn when to follow it and when not (DESIGN.md: the agent earns its keep on crop placement).
When the environment also emits a classical tracker's ``proposal`` box (``EnvConfig.proposal``,
ours), the cue's motion goes to ``bmvtrack.proposals.fuse_boxes`` of the mask's box and the
proposal's (the ``segmentation-csrt`` tracker's box), and 6 more numbers follow: the standardised
motion onto the proposal and the axis-aligned IoU of the mask's box with it.
The observation ends with the 7 box-geometry numbers of the raw observation. ``layout`` maps names to slices
(``search/mu``, ``search/tril``, ...) so agents can read the per-state posterior prior.
The template's encoding is computed once per episode (when the box's ``first`` flag is set) and reused.

Wrappers: ``EncodedObservation`` (one Gymnasium env), ``VecEncodedObservation`` (SB3 VecEnv),
``VectorEncodedObservation`` (Gymnasium vector env). With ``TrackStates`` the first two compute
each copy's state with its track's first-frame-adapted network (``bmvtrack.adaptation``), the
state a tracker has after adapting on frame 0's box.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Callable, Literal

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

from bmvtrack.adaptation import AdaptedModels
from bmvtrack.checkpoint import load_checkpoint, model_entries, network_mismatch
from bmvtrack.models import ModelConfig, build_encoder, build_model
from bmvtrack.models.preprocess import patches_to_tensor
from bmvtrack.data.patches import CropWindow
from bmvtrack.data.readers import Track
from bmvtrack.motion import STAY_ACTION, MotionPrior, RBox, motion_between, motion_within
from bmvtrack.proposals import agreement, fuse_boxes
from bmvtrack.segmentation import Keep, box_in_window, foreground_prob
from bmvtrack.envs.tracking_env import EnvConfig, TrackingEnv, track_key

ObsKind = Literal["posterior", "features", "features_mask", "features_motion"]
OBS_KINDS = ("posterior", "features", "features_mask", "features_motion")
DECODER_KINDS = ("features_mask", "features_motion")  # kinds that run the decoder too
TRIL = torch.tril_indices(5, 5)
MOTION_CUE = 7  # standardised G_t (5), mask area fraction, empty flag
PROPOSAL_CUE = 6  # standardised G_t onto the proposal (5), its agreement with the mask's box


def box_from_geometry(geometry: np.ndarray, frame_wh: tuple[float, float]) -> RBox:
    """The agent's box (pixels) from the raw observation's [cx/W, cy/H, w/W, h/H, sin α, cos α, ...]."""
    w, h = frame_wh
    g = np.asarray(geometry, dtype=np.float64)
    return RBox(g[0] * w, g[1] * h, g[2] * w, g[3] * h, float(np.degrees(np.arctan2(g[4], g[5]))))


def mask_motion_cue(prob: np.ndarray, geometry: np.ndarray, window: np.ndarray, mean: np.ndarray,
                    std: np.ndarray, threshold: float = 0.5, keep: Keep = "overlap",
                    bounds: tuple[np.ndarray, np.ndarray] | None = None,
                    proposal: np.ndarray | None = None) -> np.ndarray:
    """The 7-number motion cue of one search crop (13 with a ``proposal``; see the module docstring).

    ``prob`` is the S×S foreground probability of the crop, ``window`` = [x0, y0, x1, y1, W, H]
    the crop's window in frame pixels. The box is the segmentation tracker's
    (``segmentation.box_in_window``: pasted back at frame resolution, thresholded, the components
    ``keep`` selects), and G_t = motion_between(agent's box, that box). Fitting on the patch's own
    pixels instead lost 4 points of IoU against the annotated box (0.919 against 0.957).
    With ``bounds`` (the action bounds) a motion beyond them is clipped as one motion
    (``motion_within``): the box still goes to that box's centre, so a policy that follows the cue
    follows the tracker even when it jumps further than one action can. ``proposal`` is the
    proposal tracker's box ``[cx, cy, w, h, angle]`` on the same frame.
    """
    x0, y0, x1, y1, fw, fh = (float(v) for v in window)
    box = box_from_geometry(geometry, (fw, fh))
    crop = CropWindow(x0, y0, x1, y1, prob.shape[-1])
    target = box_in_window(prob, crop, (int(round(fh)), int(round(fw))), box, threshold, "minarearect", keep)
    frac, empty = float((prob > threshold).mean()), float(target is None)

    def standardised(to: RBox | None) -> np.ndarray:
        if to is None:
            g = STAY_ACTION
        else:
            g = motion_between(box, to, fw, fh) if bounds is None else motion_within(box, to, *bounds, fw, fh)
        return np.clip((g - mean) / std, -10.0, 10.0)

    if proposal is None:
        return np.concatenate([standardised(target), [frac, empty]]).astype(np.float32)
    other = RBox(*(float(v) for v in proposal))
    return np.concatenate([standardised(fuse_boxes(target, other)), [frac, empty], standardised(other),
                           [agreement(target, other)]]).astype(np.float32)


class StateEncoder:
    """The frozen pretrained network and the recipe that turns crops into observation vectors."""

    def __init__(self, model_cfg: ModelConfig, state_dict: dict[str, torch.Tensor], kind: ObsKind = "features",
                 mask_size: int = 8, device: str = "cpu") -> None:
        if kind not in OBS_KINDS:
            raise ValueError(f"observation kind must be one of {OBS_KINDS}, got {kind!r}")
        self.cfg, self.kind, self.mask_size, self.device = model_cfg, kind, mask_size, torch.device(device)
        prior = {k.rsplit(".", 1)[-1]: v for k, v in state_dict.items() if "bottleneck.prior_" in k}
        if kind in DECODER_KINDS:
            net = build_model(model_cfg, prior["prior_mean"], prior["prior_cov"], prior.get("prior_std"))
            net.load_state_dict(state_dict, strict=True)
            net.requires_grad_(False).eval()
            self.net = net.to(self.device)
        else:
            self.net = build_encoder(model_cfg, state_dict).to(self.device)
        self.per_crop = 20 + (model_cfg.feature_dim if kind != "posterior" else 0) + (mask_size**2 if kind == "features_mask" else 0)
        self.proposal = False  # the environment emits a proposal box (EnvConfig.proposal): set by its builder
        # the encoder's prior standardises the motion cue
        self.prior_mean = prior["prior_mean"].double().cpu().numpy() if "prior_mean" in prior else STAY_ACTION.copy()
        self.prior_std = (np.sqrt(np.diag(prior["prior_cov"].double().cpu().numpy()))
                          if "prior_cov" in prior else np.ones(5))
        # the motion cue stays inside the action bounds: by default the environment's with this prior;
        # training and loading an agent set them to its environment's exactly
        self.cue_bounds = (MotionPrior(self.prior_mean, prior["prior_cov"].double().cpu().numpy()).action_bounds(
            EnvConfig.action_n_std) if "prior_cov" in prior else None)

    @classmethod
    def from_checkpoint(cls, path: str | Path, kind: ObsKind = "features", device: str = "cpu") -> "StateEncoder":
        """The encoder of a pretraining checkpoint. Why so guarded: ``--encoder`` takes any file, and
        every problem with it (unreadable, unsafe, another kind, weights that do not fit their own
        config) must be one line naming it (``CheckpointError``), not torch's multi-line text."""
        if kind not in OBS_KINDS:
            raise ValueError(f"observation kind must be one of {OBS_KINDS}, got {kind!r}")
        torch.device(device)  # a bad device is the caller's error, not the file's
        ckpt = load_checkpoint(path, kind="bmvae")
        cfg, state = model_entries(ckpt, path)
        try:
            return cls(cfg, state, kind, device=device)
        except (RuntimeError, KeyError, ValueError, TypeError, IndexError) as exc:
            raise network_mismatch(path, cfg, state, encoder_only=kind not in DECODER_KINDS, cause=exc) from None

    @classmethod
    def untrained(cls, model_cfg: ModelConfig, prior: MotionPrior, kind: ObsKind = "features", seed: int = 0) -> "StateEncoder":
        """A randomly initialised network of the same class (tests, and before pretraining)."""
        torch.manual_seed(seed)
        net = build_model(model_cfg, prior.mean, prior.cov, prior.sample_std)
        return cls(model_cfg, net.state_dict(), kind)

    def with_net(self, net: torch.nn.Module) -> StateEncoder:
        """The same recipe on another network of the same class (a per-track adapted copy)."""
        out = copy.copy(self)
        out.net = net
        return out

    @property
    def extra(self) -> int:
        """Length of the motion cue, after the crops and before the box (0 without one)."""
        if self.kind != "features_motion":
            return 0
        return MOTION_CUE + (PROPOSAL_CUE if self.proposal else 0)

    @property
    def patch_size(self) -> int:
        return self.cfg.patch_size

    def obs_dim(self, n_crops: int, box_dim: int) -> int:
        return n_crops * self.per_crop + self.extra + box_dim

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
        if self.extra:
            out["search/motion"] = slice(off, off + self.extra)
            off += self.extra
        out["box"] = slice(off, off + box_dim)
        return out

    @torch.no_grad()
    def encode_crops(self, crops: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) uint8 → (N, per_crop) float32 in one forward pass."""
        return self._forward(crops)[0]

    @torch.no_grad()
    def _forward(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(N, per_crop) encodings and, for the decoder kinds, the (N, S, S) foreground probabilities."""
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
        prob = foreground_prob(out["logits"]).unsqueeze(1) if self.kind in DECODER_KINDS else None
        if self.kind == "features_mask":
            parts.append(torch.nn.functional.adaptive_avg_pool2d(prob, self.mask_size).flatten(1))
        enc = torch.cat(parts, dim=1).float().cpu().numpy()
        return enc, (None if prob is None else prob[:, 0].float().cpu().numpy())

    def encode(self, crops: np.ndarray, box: np.ndarray, template_cache: np.ndarray | None = None,
               window: np.ndarray | None = None, proposal: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Batch of raw observations → (B, obs_dim). Templates are re-encoded only at t = 0.

        ``template_cache`` (B, per_crop) holds each copy's template encoding between calls;
        ``window`` (B, 6) is the raw observation's crop window, needed by ``features_motion``;
        ``proposal`` (B, 5) the proposal boxes, needed when ``self.proposal`` is set.
        """
        b, n = crops.shape[:2]
        parts: list[np.ndarray] = []
        if n == 1:
            enc, prob = self._forward(crops[:, 0])
            parts.append(enc)
        else:
            fresh = box[:, -1] == 1.0  # the 'first' flag: a new episode, so a new template
            if template_cache is None:
                template_cache = np.zeros((b, self.per_crop), np.float32)
                fresh = np.ones(b, bool)
            enc, prob = self._forward(np.concatenate([crops[:, 0], crops[fresh, 1]], axis=0))
            template_cache = template_cache.copy()
            template_cache[fresh] = enc[b:]
            parts += [enc[:b], template_cache]
        if self.extra:
            if window is None:
                raise ValueError("observation kind features_motion needs the raw observation's 'window'")
            if self.proposal and proposal is None:
                raise ValueError("this encoder's cue fuses a proposal box: the raw observation needs 'proposal'")
            assert prob is not None
            parts.append(np.stack([mask_motion_cue(prob[i], box[i], window[i], self.prior_mean, self.prior_std,
                                                   bounds=self.cue_bounds,
                                                   proposal=proposal[i] if self.proposal else None)
                                   for i in range(b)]))
        parts.append(box)
        return np.concatenate(parts, axis=1).astype(np.float32), (template_cache if n > 1 else None)


class TrackStates:
    """Each track's encoder: the shared recipe with the track's first-frame-adapted network."""

    def __init__(self, encoder: StateEncoder, models: AdaptedModels) -> None:
        if encoder.kind not in DECODER_KINDS:
            raise ValueError(f"adapted states need an observation with a decoder {DECODER_KINDS}, got {encoder.kind!r}")
        self.encoder, self.models = encoder, models

    def prepare(self, env: TrackingEnv) -> None:
        """Adapt (or load) the network of every track of a TrackingEnv now, with a progress bar."""
        self.models.prepare((track_key(t), t.name, lambda t=t: env.first_frame(t)) for t in env.tracks)

    def for_track(self, track: Track, first: Callable[[], tuple[np.ndarray, RBox]]) -> StateEncoder:
        return self.encoder.with_net(self.models.get(track_key(track), track.name, first))


def encode_each(encoders: list[StateEncoder], crops: np.ndarray, box: np.ndarray,
                template_cache: np.ndarray | None, window: np.ndarray | None,
                proposal: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """``StateEncoder.encode`` with a different encoder per batch row (one forward each)."""
    def row(a: np.ndarray | None, i: int) -> np.ndarray | None:
        return None if a is None else a[i:i + 1]

    rows = [enc.encode(crops[i:i + 1], box[i:i + 1], row(template_cache, i), row(window, i), row(proposal, i))
            for i, enc in enumerate(encoders)]
    caches = [c for _, c in rows]
    return (np.concatenate([o for o, _ in rows]),
            None if caches[0] is None else np.concatenate(caches))


def _optional(obs: dict[str, np.ndarray], key: str, add_batch: bool = False) -> np.ndarray | None:
    """An optional field of a raw observation: ``window`` (crop window), ``proposal`` (proposal box)."""
    v = obs.get(key)
    return None if v is None else (v[None] if add_batch else v)


def _window(obs: dict[str, np.ndarray], add_batch: bool = False) -> np.ndarray | None:
    return _optional(obs, "window", add_batch)


def _proposal(obs: dict[str, np.ndarray], add_batch: bool = False) -> np.ndarray | None:
    return _optional(obs, "proposal", add_batch)


def _flat_space(encoder: StateEncoder, raw: spaces.Dict) -> spaces.Box:
    if encoder.kind == "features_motion" and encoder.proposal != ("proposal" in raw.spaces):
        raise ValueError(f"the environment {'emits' if 'proposal' in raw.spaces else 'has no'} proposal box but "
                         f"the encoder's proposal flag is {encoder.proposal}: build both from one EnvConfig.proposal")
    n = raw["crops"].shape[0]
    d = encoder.obs_dim(n, raw["box"].shape[0])
    return spaces.Box(-np.inf, np.inf, (d,), dtype=np.float32)


class EncodedObservation(gym.ObservationWrapper):
    """One environment: raw crops → encoder state."""

    def __init__(self, env: gym.Env, encoder: StateEncoder, per_track: TrackStates | None = None) -> None:
        super().__init__(env)
        self.encoder, self.per_track = encoder, per_track
        self.observation_space = _flat_space(encoder, env.observation_space)
        self.obs_layout = encoder.layout(env.observation_space["crops"].shape[0], env.observation_space["box"].shape[0])
        self._cache: np.ndarray | None = None

    def observation(self, observation: dict[str, np.ndarray]) -> np.ndarray:
        enc = self.encoder
        if self.per_track is not None:
            raw = self.env.unwrapped
            enc = self.per_track.for_track(raw.track, lambda: raw.first_frame(raw.track))
        obs, self._cache = enc.encode(observation["crops"][None], observation["box"][None], self._cache,
                                      _window(observation, add_batch=True), _proposal(observation, add_batch=True))
        return obs[0]


class VecEncodedObservation(VecEnvWrapper):
    """SB3 VecEnv of raw environments → one batched encoder forward per step for all copies."""

    def __init__(self, venv: VecEnv, encoder: StateEncoder, per_track: TrackStates | None = None) -> None:
        self.encoder, self.per_track = encoder, per_track
        raw = venv.observation_space
        super().__init__(venv, observation_space=_flat_space(encoder, raw))
        self.obs_layout = encoder.layout(raw["crops"].shape[0], raw["box"].shape[0])
        self._cache: np.ndarray | None = None
        self._stepping: list[StateEncoder] = []  # per-track encoders of the episodes a step was sent to

    def _encoders(self) -> list[StateEncoder]:
        """Each copy's encoder for the track it is on now."""
        assert self.per_track is not None
        return [self.per_track.for_track(t, lambda i=i, t=t: self.venv.env_method("first_frame", t, indices=[i])[0])
                for i, t in enumerate(self.venv.get_attr("track"))]

    def _encode(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        if self.per_track is None:
            out, self._cache = self.encoder.encode(obs["crops"], obs["box"], self._cache, _window(obs), _proposal(obs))
        else:
            out, self._cache = encode_each(self._encoders(), obs["crops"], obs["box"], self._cache, _window(obs),
                                           _proposal(obs))
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
                info["terminal_observation"] = enc.encode(
                    term["crops"][None], term["box"][None], None, _window(term, add_batch=True),
                    _proposal(term, add_batch=True))[0][0]
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
        out, self._cache = self.encoder.encode(observations["crops"], observations["box"], self._cache,
                                               _window(observations), _proposal(observations))
        return out
