"""States from the frozen βMVUnet encoder, computed in one batched forward for all env copies.

``StateEncoder`` turns raw observations (crops + box geometry, ``bmvtrack.envs.observation``) into
flat float32 vectors. Observation kinds (per crop: the search crop, then the template when present):

| kind            | per crop                                   | length per crop    |
|-----------------|--------------------------------------------|--------------------|
| ``posterior``   | μ′ (5) and the Cholesky factor of Σ′ (15)  | 20                 |
| ``features``    | pooled encoder feature (F) + posterior     | F + 20             |
| ``features_mask`` | + decoder mask probabilities (m×m)      | F + 20 + m²        |
| ``features_motion`` | as ``features``                         | F + 20             |

``features_motion`` (``DEFAULT_OBS``, what agents train on) then adds the motion cue of the search
crop (``bmvtrack.envs.motion_cue``: 7 numbers, 13 with a proposal box).
The observation ends with the 7 box-geometry numbers of the raw observation. ``layout`` maps names to slices
(``search/mu``, ``search/tril``, ...) so agents can read the per-state posterior prior.
The template's encoding is computed once per episode (when the box's ``first`` flag is set) and reused.

With ``TrackStates`` each track's state is computed with its track's first-frame-adapted network
(``bmvtrack.adaptation``), the state a tracker has after adapting on frame 0's box.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import torch

from bmvtrack.adaptation import AdaptedModels
from bmvtrack.checkpoint import load_checkpoint, model_entries, network_mismatch
from bmvtrack.models import ModelConfig, build_encoder, build_model
from bmvtrack.models.preprocess import patches_to_tensor
from bmvtrack.data.readers import Track
from bmvtrack.motion import STAY_ACTION, MotionPrior, RBox
from bmvtrack.segmentation import foreground_prob
from bmvtrack.envs.motion_cue import MOTION_CUE, PROPOSAL_CUE, mask_motion_cue
from bmvtrack.envs.tracking_env import EnvConfig, TrackingEnv, track_key

ObsKind = Literal["posterior", "features", "features_mask", "features_motion"]
OBS_KINDS = ("posterior", "features", "features_mask", "features_motion")
DEFAULT_OBS: ObsKind = "features_motion"  # the one default: gym.make's, the vector envs' and the agents'
DECODER_KINDS = ("features_mask", "features_motion")  # kinds that run the decoder too
TRIL = torch.tril_indices(5, 5)


class StateEncoder:
    """The frozen pretrained network and the recipe that turns crops into observation vectors."""

    def __init__(self, model_cfg: ModelConfig, state_dict: dict[str, torch.Tensor], kind: ObsKind = DEFAULT_OBS,
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
    def from_checkpoint(cls, path: str | Path, kind: ObsKind = DEFAULT_OBS, device: str = "cpu") -> "StateEncoder":
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
    def untrained(cls, model_cfg: ModelConfig, prior: MotionPrior, kind: ObsKind = DEFAULT_OBS,
                  seed: int = 0) -> "StateEncoder":
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

    def encode_raw(self, obs: Mapping[str, np.ndarray], template_cache: np.ndarray | None = None,
                   batched: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """``encode`` of raw observations as the environment gives them (``crops``, ``box`` and the
        optional ``window`` and ``proposal``): a batch, or one environment's (``batched=False``,
        encoded as a batch of one). Returns (B, obs_dim) and the template cache."""
        if not batched:
            obs = {k: v[None] for k, v in obs.items()}
        return self.encode(obs["crops"], obs["box"], template_cache, obs.get("window"), obs.get("proposal"))


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


def encode_each(encoders: list[StateEncoder], obs: Mapping[str, np.ndarray],
                template_cache: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """``StateEncoder.encode_raw`` of a batch of raw observations with a different encoder per row
    (one forward each)."""
    def row(a: np.ndarray | None, i: int) -> np.ndarray | None:
        return None if a is None else a[i:i + 1]

    rows = [enc.encode_raw({k: v[i:i + 1] for k, v in obs.items()}, row(template_cache, i), batched=True)
            for i, enc in enumerate(encoders)]
    caches = [c for _, c in rows]
    return (np.concatenate([o for o, _ in rows]),
            None if caches[0] is None else np.concatenate(caches))
