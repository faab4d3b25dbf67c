"""The tracking environment ``bmvtrack/Track-v0``: one episode replays one single-object track.

``TrackingEnv`` (documented below, Gymnasium style) is the raw environment: image crops and box
geometry. ``gymnasium.make("bmvtrack/Track-v0")`` returns it wrapped in ``EncodedObservation``
(``bmvtrack.envs.wrappers``), which turns each raw observation into the frozen encoder's state
(``bmvtrack.envs.state_encoder``); vectorised copies share one batched encoder forward per step.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

import cv2
import gymnasium as gym
import numpy as np
from gymnasium import spaces

from bmvtrack.data.readers import DataConfig, Track, VideoDataset, augmented_tracks
from bmvtrack.proposals import PROPOSALS, Proposal, ProposalTracks
from bmvtrack.motion import (
    STAY_ACTION, MotionPrior, RBox, aabb_iou, boxes_from_masks, keep_in_reach, mask_aabb, motion_between, motion_within,
    perturbed_box, rbox_corners, rbox_to_xyxy, rotated_iou, step_box,
)
from bmvtrack.envs.observation import BOX_FEATURES, WINDOW_FEATURES, crop_at, raw_observation


def track_key(track: Track) -> str:
    """A track's identity, unique across pooled datasets (names can repeat between them)."""
    return f"{track.mask_paths[0]}#{track.object_id}{track.variant}"


REWARDS = ("iou", "aabb_iou")


@dataclass
class EnvConfig:
    """Options of the tracking environment."""

    data: DataConfig = field(default_factory=DataConfig)
    extra_data: list[DataConfig] = field(default_factory=list)  # more datasets whose tracks join data's (training only)
    augment: list[str] = field(default_factory=list)  # training tracks also mirrored ("flip") and played backwards ("reverse"): readers.augmented_tracks (ours)
    prior: str | None = None  # prior file from analyze_motion; None = the paper's prior
    box_method: Literal["minarearect", "principal"] = "minarearect"  # how annotated boxes are made from masks
    crop_size: int = field(default=64, metadata={"ge": 1})  # side of the crops fed to the encoder
    context: float = field(default=0.25, metadata={"ge": 0.0})  # crop padding per side as a fraction of (w + h) (paper: 1/4)
    template: bool = True  # add the first frame's crop at the annotated box
    action_n_std: float = field(default=6.0, metadata={"gt": 0.0})  # action bounds: prior mean ± this many stds (real motion is heavy-tailed: 4σ clips 4 % of DAVIS steps)
    reward: Literal["iou", "aabb_iou"] = "iou"  # the rotated IoU with the next annotated box, or the evaluation's headline IoU (ours)
    lost_iou: float = field(default=0.0, metadata={"ge": 0.0, "lt": 1.0})  # IoU at or below this counts as a lost frame
    lost_frames: int = field(default=5, metadata={"ge": 0})  # terminate after this many consecutive lost frames (0 = never)
    order: Literal["random", "sequential"] = "random"  # track sampling; sequential for evaluation
    max_tracks: int = field(default=0, metadata={"ge": 0})  # use only the first N tracks (0 = all)
    proposal: Proposal = "none"  # a classical tracker's box in the observation (bmvtrack.proposals; ours)
    proposal_cache: str | None = None  # folder keeping the proposal boxes across runs (None = memory only)
    start: Literal["first", "random"] = "first"  # episodes start at frame 0, or at a random frame with the object in it and the next (ours)
    start_shift: float = field(default=0.0, metadata={"ge": 0.0})  # the start box is the annotated one moved by N(0, this)·max(w, h) per axis (ours)
    start_scale: float = field(default=0.0, metadata={"ge": 0.0})  # ... and each side scaled by exp(N(0, this))
    perturb_prob: float = field(default=0.0, metadata={"ge": 0.0, "le": 1.0})  # per step, the agent's box is thrown off as a start box is (start_shift/start_scale): recovery in training (ours)

    def motion_prior(self) -> MotionPrior:
        """The motion prior of the action bounds: the ``prior`` file, else the paper's."""
        return MotionPrior.load(self.prior) if self.prior else MotionPrior.paper()

    def held_out(self, split: str | None) -> EnvConfig:
        """The evaluation environment of this (resolved) config: the tracks of ``split`` in order,
        never terminated, without the extra training datasets and augmentations; nothing is resolved again."""
        return replace(self, data=replace(self.data, split=split), order="sequential", lost_frames=0, extra_data=[],
                       augment=[])


class TrackingEnv(gym.Env):
    """Single-object tracking as an MDP: move a rotated box along a video, one frame per step.

    ## Description
    At reset a track is chosen (at random from ``self.np_random``, or in order for evaluation).
    The agent's box starts at the annotated box of frame 0; after that only the agent's actions
    move it. The annotation serves the reward, termination, metrics and ``info`` only.

    ``gymnasium.make("bmvtrack/Track-v0")`` returns this environment inside ``EncodedObservation``:
    each raw observation (below) becomes the frozen βMVUnet encoder's state, a flat vector. This
    class alone (``make_raw_env``) gives the raw observations.

    ## Action Space
    ``Box(low, high, (5,), float32)``: the motion ``G_t = [Δs_x, Δs_y, sinθ, Δx, Δy]`` of the motion
    model (``bmvtrack.motion``), with bounds μ ± n·σ of the motion prior (``action_n_std``).

    | Num | Action | Meaning |
    |-----|--------|---------|
    | 0 | Δs_x | width scale w'/w |
    | 1 | Δs_y | height scale h'/h |
    | 2 | sinθ | rotation (θ = α' − α) |
    | 3 | Δx | t_x / W_img (rotation about the image origin, as in the paper) |
    | 4 | Δy | t_y / H_img |

    Actions are clipped to the bounds; a NaN or infinite action raises ``ValueError``.

    ## Observation Space
    What ``gymnasium.make`` returns: ``Box(-inf, inf, (obs_dim,), float32)``, the encoder's state
    of the raw observation, in named slices (``env.get_wrapper_attr("obs_layout")``, from
    ``StateEncoder.layout``):

    | Slice | Length | Meaning |
    |-------|--------|---------|
    | ``search/mu`` | 5 | posterior mean μ′ of the search crop (a motion, as the action) |
    | ``search/tril`` | 15 | lower Cholesky factor of its posterior covariance Σ′, row by row |
    | ``search/features`` | F | pooled encoder feature (not with ``obs="posterior"``) |
    | ``search/mask`` | m² | decoder mask probabilities, m×m pooled (``obs="features_mask"`` only) |
    | ``template/...`` | as ``search/...`` | the same of the template crop (with ``template=True``) |
    | ``search/motion`` | 7 (13) | the motion cue (``obs="features_motion"`` only, ``bmvtrack.envs.motion_cue``): the standardised G_t onto the box fitted to the decoder's mask (with a proposal tracker: onto that box fused with the proposal's), the mask's area fraction and an empty flag; with a proposal tracker then the standardised G_t onto its box and the two boxes' agreement |
    | ``box`` | 7 | the raw observation's ``box`` |

    F is the network's feature size (128 for the default ``ModelConfig``), m = 8. With the default
    network and observation (``features_motion``, template on) ``obs_dim`` is 310 (316 with a
    proposal tracker): ``search/mu`` 0:5, ``search/tril`` 5:20, ``search/features`` 20:148, the
    template's 148:296, ``search/motion`` 296:303 and ``box`` 303:310.

    The raw observation (this class) is ``Dict(crops=Box(0, 255, (n_crops, S, S, 3), uint8),
    box=Box(-inf, inf, (7,), float32), window=Box(-inf, inf, (6,), float32))``, built by
    ``bmvtrack.envs.observation.raw_observation``: ``crops[0]`` is the search crop of frame t+1 at
    the agent's current box (the paper's padded window), ``crops[1]`` (when ``template=True``) the
    crop of frame 0 at the annotated box; ``box`` = [cx/W, cy/H, w/W, h/H, sin α, cos α, first] —
    the geometry the action's translation depends on (the motion rotates about the image origin);
    ``first`` is 1 right after reset; ``window`` = [x0, y0, x1, y1, W, H]: the search crop's window
    in frame pixels and the frame size, so that what is seen in the crop (a predicted mask, say)
    can be mapped back to a motion G_t. With ``proposal`` set (ours), ``proposal`` =
    [cx, cy, w, h, angle]: a classical tracker's box on frame t+1 (``bmvtrack.proposals``; run once
    per track from frame 0's annotated box, since it does not depend on the agent).

    ## Rewards
    The rotated IoU of the moved box with the annotated box of frame t+1. With ``reward="aabb_iou"``
    (ours) the evaluation's headline IoU instead: the axis-aligned IoU of the bounds of the box's
    corners with the tight bounds of frame t+1's mask (OTB), so that training and scoring ask for
    the same box. Frames where the object is absent give reward 0 and ``info["iou"] = nan``;
    ``info["iou"]`` is the rotated IoU either way (it also decides when the target is lost).

    ## Starting State
    The annotated box of frame 0 of the chosen track (``options={"track_index": k}`` chooses it).
    With ``start="random"`` (ours) a frame drawn uniformly among those where the object is in it
    and in the next (``options={"frame": i}`` chooses it); the template is then that frame's crop.
    ``start_shift``/``start_scale`` throw the start box off the annotated one
    (``bmvtrack.motion.perturbed_box``, the evaluation's perturbation recipe), and with
    ``perturb_prob`` the agent's box is thrown off the same way after a step (with that
    probability, where the object is present): episodes then include losing the object and
    finding it again.

    ## Episode End
    The box is kept within reach of the frame (``bmvtrack.motion.keep_in_reach``: centre within one
    frame size of the image, sides at most 4 frame sizes), so observations stay finite whatever the
    policy does. Terminated when the IoU stays ≤ ``lost_iou`` for ``lost_frames`` consecutive present
    frames (target lost); truncated at the end of the track.

    ## Info
    ``iou``, ``pred_box`` and ``gt_box`` (``[cx, cy, w, h, angle]``; gt nan when absent),
    ``expert_action`` (the G_t that moves the agent's current box onto the next annotated box,
    clipped to the action bounds) and ``expert_clipped``, ``track``, ``frame``.

    ## Arguments
    ```python
    import gymnasium as gym
    import bmvtrack

    env = gym.make("bmvtrack/Track-v0", config=None, encoder=None, obs="features_motion",
                   render_mode=None, **overrides)
    envs = gym.make_vec("bmvtrack/Track-v0", num_envs=4, config=None, encoder=None, obs="features_motion")
    ```
    * ``config``: an ``EnvConfig``, a dict of its fields, or a YAML file; ``None`` = the defaults.
      With no data root given the synthetic default is generated (once) and used; with no
      ``prior`` the analysed one (``runs/prior/prior.json``) when it exists, else the paper's.
    * ``**overrides``: ``EnvConfig`` fields (``lost_frames=0``, ``proposal="csrt"``, ...) and the
      data options ``root``, ``layout``, ``resolution``, ``split``; unknown names are errors.
    * ``encoder``: a ``StateEncoder`` or a pretraining checkpoint; ``None`` = the default checkpoint
      (``runs/pretrain_vae/checkpoint.pt``), or an untrained network with a warning when there is
      none. ``crop_size`` is set to its patch size.
    * ``obs``: the observation kind, ``"features_motion"`` (the default, what agents train on),
      ``"features"``, ``"features_mask"`` or ``"posterior"``.
    * ``render_mode``: ``"rgb_array"`` draws frame t with the annotated (green) and the agent's
      (red) box.
    ``make_vec`` runs the copies in one process and encodes them in one batched forward.

    ## Version History
    * v0: initial release. The default observation kind is ``features_motion`` (it was
      ``features`` before the agents' default became the environment's); the unused reward
      shapings ``iou_delta`` and ``iou_success`` are gone; ``reward="aabb_iou"`` (the evaluation's
      headline IoU) was added beside the default ``"iou"``.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(
        self,
        config: EnvConfig | None = None,
        dataset: VideoDataset | None = None,
        prior: MotionPrior | None = None,
        render_mode: str | None = None,
        **overrides: Any,
    ) -> None:
        cfg = config or EnvConfig()
        for k, v in overrides.items():
            if not hasattr(cfg, k):
                raise TypeError(f"TrackingEnv: unknown option {k!r}")
            setattr(cfg, k, v)
        if cfg.reward not in REWARDS:
            raise ValueError(f"TrackingEnv: reward must be one of {REWARDS}, got {cfg.reward!r}")
        self.cfg = cfg
        self.dataset = dataset if dataset is not None else VideoDataset.from_config(cfg.data)
        tracks = list(self.dataset.tracks())
        for extra in cfg.extra_data:  # a track carries its own file paths, so self.dataset reads any of them
            tracks += VideoDataset.from_config(extra).tracks()
        tracks = augmented_tracks(tracks, cfg.augment)
        self.tracks: list[Track] = tracks[: cfg.max_tracks] if cfg.max_tracks > 0 else list(tracks)
        self.prior = prior if prior is not None else cfg.motion_prior()
        lo, hi = self.prior.action_bounds(cfg.action_n_std)
        self.action_space = spaces.Box(lo, hi, dtype=np.float32)
        n_crops = 2 if cfg.template else 1
        s = cfg.crop_size
        raw = {
            "crops": spaces.Box(0, 255, (n_crops, s, s, 3), dtype=np.uint8),
            "box": spaces.Box(-np.inf, np.inf, (BOX_FEATURES,), dtype=np.float32),
            "window": spaces.Box(-np.inf, np.inf, (WINDOW_FEATURES,), dtype=np.float32),
        }
        if cfg.start != "first" and cfg.proposal != "none":
            raise ValueError("start='random' does not combine with a proposal tracker (its boxes run from frame 0)")
        if cfg.perturb_prob > 0 and cfg.start_shift == 0.0 and cfg.start_scale == 0.0:
            raise ValueError("perturb_prob throws the box by start_shift/start_scale: set one of them above 0")
        if cfg.proposal not in PROPOSALS:
            raise ValueError(f"proposal must be one of {PROPOSALS}, got {cfg.proposal!r}")
        self._proposals: ProposalTracks | None = None
        if cfg.proposal != "none":
            raw["proposal"] = spaces.Box(-np.inf, np.inf, (5,), dtype=np.float32)
            # per-track proposal boxes, shared by in-process copies that share the dataset object
            shared, key = self.dataset.__dict__, f"_proposals_{cfg.proposal}"
            if key not in shared:
                shared[key] = ProposalTracks(cfg.proposal, cfg.proposal_cache)
            self._proposals = shared[key]
        self.observation_space = spaces.Dict(raw)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.render_mode = render_mode
        # annotated boxes per track, shared by in-process copies that share the dataset object
        self._gt_cache: dict[str, list[RBox | None]] = self.dataset.__dict__.setdefault(
            f"_gt_boxes_{cfg.box_method}", {})
        self._bounds_cache: dict[str, list[np.ndarray | None]] = self.dataset.__dict__.setdefault("_gt_bounds", {})
        self._next_index = 0
        self.track: Track | None = None

    # ------------------------------------------------------------------ helpers

    def gt_boxes(self, track: Track) -> list[RBox | None]:
        """Canonical annotated boxes of a track (computed once per track)."""
        key = track_key(track)
        boxes = self._gt_cache.get(key)
        if boxes is None:
            masks = (self.dataset.mask(track, i) if track.present[i] else None for i in range(len(track)))
            boxes = boxes_from_masks(masks, self.cfg.box_method)
            self._gt_cache[key] = boxes
        return boxes

    def gt_bounds(self, track: Track) -> list[np.ndarray | None]:
        """Tight axis-aligned bounds of a track's masks (``motion.mask_aabb``; computed once per track)."""
        key = track_key(track)
        bounds = self._bounds_cache.get(key)
        if bounds is None:
            bounds = [mask_aabb(self.dataset.mask(track, i)) if track.present[i] else None for i in range(len(track))]
            self._bounds_cache[key] = bounds
        return bounds

    def first_frame(self, track: Track) -> tuple[np.ndarray, RBox]:
        """Frame 0 of ``track`` and its annotated box: all a tracker is given (episodes start there)."""
        box = self.gt_boxes(track)[0]
        if box is None:  # tracks start where the object is seen, so this is a broken dataset
            raise RuntimeError(f"track {track.name} has no box in its first frame")
        return self.dataset.frame(track, 0), box

    def prepare_proposals(self) -> None:
        """Run the proposal tracker over every track now (with a progress bar), not in the first episodes."""
        if self._proposals is None:
            return
        from tqdm.auto import tqdm

        for track in tqdm(self.tracks, desc=f"{self.cfg.proposal} proposals", unit="track"):
            self._proposal_track(track)

    def _proposal_track(self, track: Track) -> list[RBox]:
        """The proposal tracker's box on every frame of ``track`` (run once, then kept)."""
        assert self._proposals is not None
        first = self.first_frame(track)[1]
        return self._proposals.boxes(track_key(track), track.name, lambda i: self.dataset.frame(track, i),
                                     len(track), first)

    def _observation(self) -> dict[str, np.ndarray]:
        nxt = min(self._t + 1, len(self.track) - 1)
        return raw_observation(
            self.dataset.frame(self.track, nxt), self.box, self.track.size, self.cfg.crop_size, self.cfg.context,
            self._template if self.cfg.template else None, self._t == 0,
            self._proposal_boxes[nxt] if self._proposals is not None else None)

    def _expert(self) -> tuple[np.ndarray, bool]:
        """G_t from the agent's box to the next annotated box, clipped to the bounds as one motion."""
        gt = self._gt[self._t + 1] if self._t + 1 < len(self._gt) else None
        if gt is None:
            return STAY_ACTION.astype(np.float32), False
        h, w = self.track.size
        act = motion_between(self.box, gt, w, h)
        clipped = motion_within(self.box, gt, self.action_space.low, self.action_space.high, w, h)
        return clipped.astype(np.float32), bool(np.any(np.abs(clipped - act) > 1e-9))

    def _info(self, iou: float) -> dict[str, Any]:
        gt = self._gt[self._t]
        expert, was_clipped = self._expert() if self._t + 1 < len(self.track) else (
            STAY_ACTION.astype(np.float32), False)
        return {
            "iou": iou,
            "pred_box": self.box.as_array().astype(np.float32),
            "gt_box": (gt.as_array() if gt is not None else np.full(5, np.nan)).astype(np.float32),
            "expert_action": expert,
            "expert_clipped": was_clipped,
            "track": self.track.name,
            "frame": self._t,
        }

    # ------------------------------------------------------------------ API

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        options = options or {}
        if "track_index" in options:
            idx = int(options["track_index"]) % len(self.tracks)
        elif self.cfg.order == "sequential":
            idx = self._next_index % len(self.tracks)
            self._next_index += 1
        else:
            idx = int(self.np_random.integers(len(self.tracks)))
        self.track, self._track_index = self.tracks[idx], idx
        self._gt = self.gt_boxes(self.track)
        self._t = self._start = self._start_frame(options)
        self._lost = 0
        if self._t == 0:
            frame, first = self.first_frame(self.track)
        else:
            frame, first = self.dataset.frame(self.track, self._t), self._gt[self._t]
        self.box = self._thrown(first)
        if self._proposals is not None:
            self._proposal_boxes = self._proposal_track(self.track)
        self._template = crop_at(frame, first, self.track.size, self.cfg.crop_size, self.cfg.context)[0]
        return self._observation(), self._info(rotated_iou(self.box, first))

    def _start_frame(self, options: dict[str, Any]) -> int:
        """Frame 0, or (``start="random"``) a frame with the object in it and in the next."""
        if "frame" in options:
            t = int(options["frame"])
            if not (0 <= t < len(self.track) - 1 and self._gt[t] is not None):
                raise ValueError(f"start frame {t} of {self.track.name}: the object is not in it, or it is the last")
            return t
        if self.cfg.start == "first":
            return 0
        ok = [t for t in range(len(self.track) - 1) if self._gt[t] is not None and self._gt[t + 1] is not None]
        return int(ok[self.np_random.integers(len(ok))]) if ok else 0

    def _thrown(self, box: RBox) -> RBox:
        """``box`` perturbed by ``start_shift``/``start_scale`` with the environment's RNG."""
        if self.cfg.start_shift == 0.0 and self.cfg.start_scale == 0.0:
            return box
        z = self.np_random.standard_normal(4)
        return keep_in_reach(perturbed_box(box, z, self.cfg.start_shift, self.cfg.start_scale), self.track.size)

    def step(self, action: np.ndarray):
        if self.track is None:
            raise RuntimeError("call reset() before step()")
        self.box = step_box(self.box, action, self.action_space.low, self.action_space.high, self.track.size)
        self._t += 1
        gt = self._gt[self._t]
        if gt is None:
            iou, reward = float("nan"), 0.0
        else:
            iou = reward = rotated_iou(self.box, gt)
            if self.cfg.reward == "aabb_iou":
                bounds = self.gt_bounds(self.track)[self._t]
                reward = 0.0 if bounds is None else aabb_iou(rbox_to_xyxy(self.box), bounds)
            self._lost = self._lost + 1 if iou <= self.cfg.lost_iou else 0
            if self.cfg.perturb_prob > 0 and self.np_random.random() < self.cfg.perturb_prob:
                self.box = self._thrown(self.box)  # after the reward: the next move has to recover
        terminated = self.cfg.lost_frames > 0 and self._lost >= self.cfg.lost_frames
        truncated = self._t >= len(self.track) - 1 and not terminated
        return self._observation(), float(reward), bool(terminated), bool(truncated), self._info(iou)

    def get_state(self) -> dict[str, Any]:
        """The episode's position and the RNG, as plain data: what an exact resume restores."""
        if self.track is None:
            return {"rng": self.np_random.bit_generator.state, "next_index": self._next_index}
        return {"rng": self.np_random.bit_generator.state, "next_index": self._next_index,
                "track_index": self._track_index, "start": self._start, "t": self._t, "lost": self._lost,
                "box": self.box.as_array().tolist()}

    def set_state(self, state: dict[str, Any]) -> None:
        """Continue exactly where :meth:`get_state` was taken (same dataset and config)."""
        self.np_random.bit_generator.state = state["rng"]
        self._next_index = int(state["next_index"])
        if "track_index" not in state:
            return
        self.reset(options={"track_index": int(state["track_index"]), "frame": int(state.get("start", 0))})
        self.np_random.bit_generator.state = state["rng"]  # reset with a track index draws nothing; stay safe
        self._t, self._lost = int(state["t"]), int(state["lost"])
        self.box = RBox(*map(float, state["box"]))

    def render(self) -> np.ndarray | None:
        """RGB frame t with the annotated box (green), the agent's box (red), IoU and step."""
        if self.render_mode != "rgb_array" or self.track is None:
            return None
        img = np.ascontiguousarray(self.dataset.frame(self.track, self._t)).copy()
        gt = self._gt[self._t]
        if gt is not None:
            cv2.polylines(img, [rbox_corners(gt).astype(np.int32)], True, (0, 220, 0), 2)
        cv2.polylines(img, [rbox_corners(self.box).astype(np.int32)], True, (230, 30, 30), 2)
        iou = rotated_iou(self.box, gt) if gt is not None else float("nan")
        cv2.putText(img, f"t={self._t} IoU={iou:.2f}", (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 0), 1, cv2.LINE_AA)
        return img
