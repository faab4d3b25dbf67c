"""The motion agent's environment: the tracking MDP seen through the motion posterior, acting in
box-relative coordinates.

``MotionTrackingEnv`` wraps a raw ``TrackingEnv``. Its action is the box-relative motion
``r = [ln w′/w, ln h′/h, sinθ, Δcx/W_win, Δcy/H_win]`` (``bmvtrack.motion.relative_between``), the
same move wherever the box is in the frame; each step converts it exactly to the environment's
``G_t`` (``relative_to_action``), which stays the interface underneath. Bounds: the mean of the
network's box-relative prior ± ``action_n_std`` of its standard deviations. The observation is
``MotionState``'s vector of the pair (frame t, frame t+1) at the agent's box, so μ′(s) and Σ′(s)
are in the action's units: the per-state prior MV-SAC samples from.

With a ``FollowingProposal`` (``proposal``), a proposal tracker (CSRT, KCF) runs beside the agent:
started on the episode's first box (``proposal_start="box"``: the agent's, perturbed at a perturbed
start; ``"annotation"``: the annotated box of that frame, as a tracker is started in one-pass
evaluation while the agent's own box starts off it), moved to frame t+1 before each observation
(the state gains its ``proposal`` slice: where it went, seen from the agent's box), and restarted on
the agent's box by its rule after each step (``info["proposal_restart"]``). With its ``history``
on, the state also shows how the mask and the proposal have agreed over the episode so far; with its
``colour`` on, how much each of their boxes looks like the object of the episode's first frame.

``track_states`` (sequence name → ``MotionState``) shows the frames of those sequences through another
motion network: cross-fitting, a network that never saw them (``MotionAgentConfig.train_nets``). Why:
a motion posterior's mask is far more reliable on the sequences it trained on than on new ones, so an
agent trained on states of its own posterior's training sequences learns to trust cues that fail
on new video.

``adapted`` (``AdaptedStates``) shows each track through a copy of the agent's network adapted to
that track's first frame and box, as the agent's tracker adapts on new video
(``MotionAgentConfig.adapt``).

``info["expert_relative"]`` is the box-relative motion onto the next annotated box, clipped to the
bounds (zero where the object is absent): the expert action at the agent's own states, which
``MVSAC(expert_coef=...)`` learns from (DAgger-style) and a supervised-only agent learns from alone.
"""
from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from bmvtrack.data.readers import Track
from bmvtrack.envs.motion_state import PROPOSAL_DIM, AdaptedStates, MotionState
from bmvtrack.envs.tracking_env import TrackingEnv, track_key
from bmvtrack.motion import relative_between, relative_to_action
from bmvtrack.proposals import FollowingProposal

# the wrapped environment's own G_t bounds (in σ of the G_t prior): wide, so that converting a relative
# action never clips it (clipping would break the exact conversion); the relative bounds are the limit
INNER_N_STD = 1000.0
PROPOSAL_STARTS = ("box", "annotation")  # where the proposal tracker starts an episode


class MotionTrackingEnv(gym.Wrapper):
    """``TrackingEnv`` with box-relative actions and motion-posterior states (module docstring)."""

    def __init__(self, env: TrackingEnv, state: MotionState, action_n_std: float = 4.0,
                 proposal: FollowingProposal | None = None, proposal_start: str = "box",
                 track_states: dict[str, MotionState] | None = None,
                 adapted: AdaptedStates | None = None) -> None:
        if adapted is not None and track_states:
            raise ValueError("adapted states and track_states (another network per sequence) exclude each other")
        if proposal_start not in PROPOSAL_STARTS:
            raise ValueError(f"proposal_start must be one of {PROPOSAL_STARTS}, got {proposal_start!r}")
        raw = env.unwrapped
        if not isinstance(raw, TrackingEnv):
            raise TypeError("MotionTrackingEnv wraps a TrackingEnv")
        super().__init__(env)
        raw.cfg.action_n_std = INNER_N_STD
        lo, hi = raw.prior.action_bounds(INNER_N_STD)
        raw.action_space = spaces.Box(lo, hi, dtype=np.float32)
        self.state = state
        self.track_states = dict(track_states or {})
        self.adapted = adapted
        for seq, other in self.track_states.items():
            if other.layout != state.layout or other.context != state.context:
                raise ValueError(f"track_states[{seq!r}]: its state's layout differs from the agent's")
        std = np.sqrt(np.diag(state.prior_cov))
        self.action_space = spaces.Box((state.prior_mean - action_n_std * std).astype(np.float32),
                                       (state.prior_mean + action_n_std * std).astype(np.float32), dtype=np.float32)
        self.proposal, self.proposal_start = proposal, proposal_start
        self.obs_layout = dict(state.layout)
        dim = state.dim
        if proposal is not None:
            self.obs_layout["proposal"] = slice(dim, dim + PROPOSAL_DIM)
            dim += PROPOSAL_DIM
            extra = proposal.extra_layout(dim)
            self.obs_layout.update(extra)
            dim = max([dim, *(sl.stop for sl in extra.values())])
        self.observation_space = spaces.Box(-np.inf, np.inf, (dim,), dtype=np.float32)
        self._mask_box = None

    @property
    def raw(self) -> TrackingEnv:
        return self.env.unwrapped  # type: ignore[return-value]

    def state_of(self, track: Track) -> MotionState:
        """The state ``track``'s frames are seen through (its adapted copy's, ``track_states``, else the agent's)."""
        if self.adapted is not None:
            return self.adapted.for_track(track_key(track), track.name, lambda: self.raw.first_frame(track))
        return self.track_states.get(track.sequence, self.state)

    def prepare_adapted(self) -> None:
        """Adapt (or load) every track's copy now, with a progress bar, not in the first episodes."""
        if self.adapted is not None:
            tracks = self.raw.tracks
            self.adapted.models.prepare((track_key(t), t.name, lambda t=t: self.raw.first_frame(t)) for t in tracks)

    def _observe(self) -> np.ndarray:
        raw = self.raw
        t = raw._t
        nxt = min(t + 1, len(raw.track) - 1)
        ds, tr = raw.dataset, raw.track
        search = ds.frame(tr, nxt)
        state = self.state_of(tr)
        obs = state(ds.frame(tr, t), search, raw.box, key=(track_key(tr), t))
        if self.proposal is None:
            return obs
        self.proposal.propose(search)
        obs, self._mask_box = state.with_proposal(obs, raw.box, self.proposal, search)
        return obs

    def _expert(self, info: dict[str, Any]) -> dict[str, Any]:
        raw = self.raw
        t = raw._t
        gt = raw._gt[t + 1] if t + 1 < len(raw._gt) else None
        r = np.zeros(5) if gt is None else relative_between(raw.box, gt, self.state.context)
        info["expert_relative"] = np.clip(r, self.action_space.low, self.action_space.high).astype(np.float32)
        return info

    def reset(self, **kwargs: Any):
        _, info = self.env.reset(**kwargs)
        if self.proposal is not None:
            raw = self.raw
            gt = raw._gt[raw._t] if self.proposal_start == "annotation" else None
            self.proposal.start(raw.dataset.frame(raw.track, raw._t), raw.box if gt is None else gt)
        return self._observe(), self._expert(info)

    def step(self, action: np.ndarray):
        r = np.asarray(action, dtype=np.float64).reshape(-1)
        if r.shape != (5,) or not np.all(np.isfinite(r)):
            raise ValueError(f"action must be 5 finite numbers, got {np.asarray(action).tolist()}")
        r = np.clip(r, self.action_space.low, self.action_space.high)
        raw = self.raw
        h, w = raw.track.size
        g = relative_to_action(raw.box, r, w, h, self.state.context)
        _, reward, terminated, truncated, info = self.env.step(g)
        info["action_g"] = g.astype(np.float32)
        if self.proposal is not None:
            frame = raw.dataset.frame(raw.track, raw._t)
            info["proposal_restart"] = self.proposal.settle(frame, raw.box, self._mask_box)
        return self._observe(), reward, terminated, truncated, self._expert(info)


def make_motion_env(state: MotionState, action_n_std: float = 4.0, proposal: FollowingProposal | None = None,
                    proposal_start: str = "box", track_states: dict[str, MotionState] | None = None,
                    adapted: AdaptedStates | None = None, **config: Any) -> MotionTrackingEnv:
    """A ``MotionTrackingEnv`` over a ``TrackingEnv`` built from ``EnvConfig`` fields (``data=DataConfig``,
    ``start``, ``start_shift``, ``perturb_prob``, ...); no template crop (the state does not read it)."""
    from bmvtrack.envs.tracking_env import EnvConfig

    cfg = EnvConfig(**{"template": False, **config})
    cfg.crop_size = 8  # the raw observation's crop is not read: keep it cheap
    return MotionTrackingEnv(TrackingEnv(cfg), state, action_n_std, proposal, proposal_start, track_states, adapted)
