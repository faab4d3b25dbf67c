"""A trained policy as a tracker (``init(frame, box)`` / ``update(frame)``), outside any environment.

It rebuilds exactly the observation the environment gives (search crop at the current box,
template crop, box geometry, encoded by the same frozen encoder), so a policy is evaluated by the
same one-pass protocol as every baseline tracker.

With ``adapt`` the network is fine-tuned on frame 0's box before tracking (``bmvtrack.adaptation``).
For an agent trained on unadapted states only the decoder is (``--policy-adapt``): the motion cue
improves while every encoder output the policy reads stays what it was trained on. An agent
trained on adapted states (``train_sac --set adapt.steps=60``) adapts as it was trained.
An agent whose environment had a proposal tracker (``env.proposal``) runs that tracker live on
the full frames, from frame 0's box, as the environment replayed it.
"""
from __future__ import annotations

import numpy as np

from bmvtrack.adaptation import AdaptConfig, SharedAdaptation, adapt_to_box
from bmvtrack.data.patches import crop_image, crop_window
from bmvtrack.motion import RBox, apply_motion, keep_in_reach
from bmvtrack.proposals import Proposal, make_proposal_tracker
from bmvtrack.envs.encoding import DECODER_KINDS, StateEncoder
from bmvtrack.envs.tracking_env import box_geometry, window_features


class PolicyTracker:
    """Drives an SB3 policy (``predict``) frame by frame; non-finite actions keep the box still."""

    uses_ground_truth = False

    def __init__(self, model, encoder: StateEncoder, action_low: np.ndarray, action_high: np.ndarray,
                 template: bool = True, context: float = 0.25, name: str = "policy",
                 adapt: AdaptConfig | None = None, shared: SharedAdaptation | None = None,
                 proposal: Proposal = "none") -> None:
        if adapt is not None and adapt.steps > 0 and encoder.kind not in DECODER_KINDS:
            raise ValueError(f"adapt needs an observation with a decoder {DECODER_KINDS}, got {encoder.kind!r}")
        if shared is not None and shared.cfg != adapt:
            raise ValueError("a shared adaptation must have the tracker's own AdaptConfig")
        self.model, self.encoder, self.base_encoder, self.name = model, encoder, encoder, name
        self.adapt, self.shared = adapt, shared
        self.reused_init_seconds = 0.0  # adaptation time of a shared copy made for another tracker
        self.low, self.high = np.asarray(action_low, np.float64), np.asarray(action_high, np.float64)
        self.template, self.context = template, context
        self.invalid_actions = 0
        if encoder.proposal != (proposal != "none"):
            raise ValueError(f"proposal {proposal!r} does not match the encoder's proposal flag {encoder.proposal}")
        self.proposal = None if proposal == "none" else make_proposal_tracker(proposal)

    def _crop(self, frame: np.ndarray, box: RBox) -> tuple[np.ndarray, np.ndarray]:
        """The crop at ``box`` and its window row [x0, y0, x1, y1, W, H] (as the env gives)."""
        win = crop_window(box, frame.shape[:2], self.encoder.patch_size, self.context)
        return crop_image(frame, win), window_features(win, frame.shape[:2])

    def init(self, frame: np.ndarray, box: RBox) -> None:
        self.box, self.first, self.cache = box, True, None
        if self.adapt is not None and self.adapt.steps > 0:  # a per-track copy; the shared encoder is untouched
            if self.shared is not None:
                net, self.reused_init_seconds = self.shared.get(self.base_encoder.net, frame, box)
            else:
                net = adapt_to_box(self.base_encoder.net, frame, box, self.adapt)
            self.encoder = self.base_encoder.with_net(net)
        self.template_crop = self._crop(frame, box)[0] if self.template else None
        if self.proposal is not None:
            self.proposal.init(frame, box)

    def update(self, frame: np.ndarray) -> RBox:
        search, window = self._crop(frame, self.box)
        crops = [search] + ([self.template_crop] if self.template else [])
        geom = box_geometry(self.box, frame.shape[:2], self.first)
        prop = None if self.proposal is None else self.proposal.update(frame).as_array()[None].astype(np.float32)
        obs, self.cache = self.encoder.encode(np.stack(crops)[None], geom[None], self.cache, window[None], prop)
        action, _ = self.model.predict(obs, deterministic=True)
        action = np.asarray(action, np.float64).reshape(-1)
        self.first = False
        if action.shape != (5,) or not np.all(np.isfinite(action)):
            self.invalid_actions += 1
            return self.box
        h, w = frame.shape[:2]
        self.box = keep_in_reach(apply_motion(self.box, np.clip(action, self.low, self.high), w, h), (h, w))
        return self.box
