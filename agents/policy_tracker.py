"""A trained policy as a tracker (``init(frame, box)`` / ``update(frame)``), outside any environment.

It builds the observation the way the environment does (``bmvtrack.envs.observation``: search
crop at the current box, template crop, box geometry, encoded by the same frozen encoder) and moves
its box by the environment's step (``bmvtrack.motion.step_box``), so a policy is evaluated by the
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
from bmvtrack.motion import RBox, step_box
from bmvtrack.proposals import Proposal, make_proposal_tracker
from bmvtrack.envs.observation import crop_at, raw_observation
from bmvtrack.envs.state_encoder import DECODER_KINDS, StateEncoder


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

    def init(self, frame: np.ndarray, box: RBox) -> None:
        self.box, self.first, self.cache = box, True, None
        if self.adapt is not None and self.adapt.steps > 0:  # a per-track copy; the shared encoder is untouched
            if self.shared is not None:
                net, self.reused_init_seconds = self.shared.get(self.base_encoder.net, frame, box)
            else:
                net = adapt_to_box(self.base_encoder.net, frame, box, self.adapt)
            self.encoder = self.base_encoder.with_net(net)
        self.template_crop = (crop_at(frame, box, frame.shape[:2], self.encoder.patch_size, self.context)[0]
                              if self.template else None)
        if self.proposal is not None:
            self.proposal.init(frame, box)

    def update(self, frame: np.ndarray) -> RBox:
        proposal = None if self.proposal is None else self.proposal.update(frame)
        raw = raw_observation(frame, self.box, frame.shape[:2], self.encoder.patch_size, self.context,
                              self.template_crop, self.first, proposal)
        obs, self.cache = self.encoder.encode_raw(raw, self.cache)
        action, _ = self.model.predict(obs, deterministic=True)
        self.first = False
        try:
            self.box = step_box(self.box, action, self.low, self.high, frame.shape[:2])
        except ValueError:  # not 5 finite numbers: the box stays
            self.invalid_actions += 1
        return self.box
