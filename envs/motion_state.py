"""The motion posterior's view of one step, as a flat state: what the motion agent observes.

A βMVUnet trained with ``model.input: pair`` (``reference: box``) reads frame t's crop at the box
held, that box filled in, and frame t+1 through the same window. ``MotionState`` turns its output
into one float32 vector (``layout`` names the slices):

| slice | length | meaning |
|---|---|---|
| ``search/mu`` | 5 | μ′: the posterior mean of the box-relative motion (``bmvtrack.motion.RELATIVE_NAMES``) |
| ``search/tril`` | 15 | the Cholesky factor of Σ′, row by row |
| ``search/motion`` | 7 | the box-relative motion onto the box fitted to the decoded mask (5), the mask's area fraction, an empty flag |
| ``search/scaled`` | 15 | (μ′ − m)/σ, (mask motion − m)/σ and ln(√diag Σ′ / σ), with the prior's mean m and standard deviations σ: the same numbers at the scale of one, for the networks that read the state |
| ``search/features`` | F | the pooled encoder feature (with ``features=True``) |
| ``box`` | 2 | ln(w/W), ln(h/H): the box's size in the frame (with ``box=True``, the default) |

With a proposal tracker beside the agent (``bmvtrack.proposals.FollowingProposal``), the
environment and the tracker append ``proposal`` (``PROPOSAL_DIM`` numbers, ``proposal_cue``): the
box-relative move onto the proposal's box, the same standardised by the prior, and the two boxes'
overlap; with the proposal's ``history`` on, then ``history`` (``HISTORY_DIM`` numbers,
``bmvtrack.proposals.CueHistory``): how the mask and the proposal have agreed over the track so far;
with its ``colour`` on, then ``colour`` (6 numbers, ``bmvtrack.appearance.ColourModel``): how much
the mask's box and the proposal's look like the object of the first frame, and ``colour/move`` (5):
the move onto the one of higher colour contrast (``colour_choice``; the hand rule ``rule-colour``).
The proposal is stateful (it depends on the track so far), so it is kept out of the cache.

μ′ and Σ′ are in the same units as the motion agent's actions, so they are its per-state prior
N(μ′(s), Σ′(s)) as they stand (``prior_source="state"``).

Why a cache. An agent revisits the same frames with nearly the same boxes, epoch after epoch.
The network is evaluated at the box rounded to ``quantum`` (centre in pixels; sides in steps of
``quantum``% in log scale; the angle in steps of ``quantum`` degrees), so the state is a function of
the rounded box and can be kept, keyed by the frame pair and that box. Training and tracking round
alike, so the cache changes no number, only the time.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from pathlib import Path
from typing import Any, Hashable

import numpy as np
import torch

from bmvtrack.appearance import SCORE_DIM, mask_box_wins
from bmvtrack.data.pair_sampler import pair_crops
from bmvtrack.models.preprocess import patches_to_tensor
from bmvtrack.motion import MIN_SIDE, RBox, apply_relative, canonicalize, fill_rbox, rbox_from_points, relative_between
from bmvtrack.proposals import FollowingProposal, agreement
from bmvtrack.segmentation import foreground_prob

MASK_CUE = 7  # relative motion onto the mask's box (5), area fraction, empty flag
PROPOSAL_DIM = 11  # relative motion onto the proposal's box (5), the same standardised (5), their overlap
TRIL = torch.tril_indices(5, 5)


class MotionState:
    """States of a motion-posterior network (a checkpoint path or a loaded ``model.input: pair`` model)."""

    def __init__(self, model: Any, context: float = 0.25, threshold: float = 0.5, quantum: float = 1.0,
                 cache_size: int = 100_000, features: bool = False, device: str = "cpu", box: bool = True) -> None:
        if isinstance(model, (str, Path)):
            from bmvtrack.agents.baselines.motion_posterior import load_motion_posterior

            model = load_motion_posterior(model, device)[0]
        cfg = model.cfg
        if cfg.input != "pair":
            raise ValueError("MotionState needs a motion-posterior network (model.input: pair)")
        if cfg.reference != "box":
            raise ValueError("MotionState needs a network whose reference channel is the box (model.reference: box)")
        if quantum < 0:
            raise ValueError(f"quantum must be >= 0, got {quantum}")
        self.model, self.size, self.context, self.threshold = model, cfg.patch_size, context, threshold
        self.quantum, self.cache_size = float(quantum), int(cache_size)
        self.device = next(model.parameters()).device
        self.features = bool(features)  # the pooled appearance feature: off by default (agents memorised it)
        self.feature_dim = int(cfg.feature_dim) if features else 0
        self.box = bool(box)  # the box's size: nearly constant within a track, so it tells tracks apart
        buffers = {k.rsplit(".", 1)[-1]: v for k, v in model.state_dict().items() if "prior_" in k}
        # the box-relative MGD the network was trained with
        self.prior_mean = buffers["prior_mean"].double().cpu().numpy().copy()
        self.prior_cov = buffers["prior_cov"].double().cpu().numpy().copy()
        self.layout: dict[str, slice] = {}
        off = 0
        self.prior_std = np.sqrt(np.diag(self.prior_cov))
        for name, n in (("search/mu", 5), ("search/tril", 15), ("search/motion", MASK_CUE), ("search/scaled", 15),
                        ("search/features", self.feature_dim), ("box", 2 if self.box else 0)):
            if n == 0:
                continue
            self.layout[name] = slice(off, off + n)
            off += n
        self.dim = off
        self.proposal_move = slice(off, off + 5)  # with ``proposal`` appended: the move onto its box
        self._cache: OrderedDict[Hashable, np.ndarray] = OrderedDict()
        self.hits = self.misses = 0
        self._options = {"context": context, "threshold": threshold, "quantum": quantum, "cache_size": cache_size,
                         "features": features, "box": box}

    def with_model(self, model: Any) -> "MotionState":
        """The same state (options, layout) read through another network of the same kind, e.g. a
        track's first-frame-adapted copy; it has its own cache."""
        return MotionState(model, **self._options)

    def rounded(self, box: RBox) -> RBox:
        """The box the network is evaluated at (see the module docstring)."""
        q = self.quantum
        if q == 0:
            return box
        step = q / 100.0
        return RBox(round(box.cx / q) * q, round(box.cy / q) * q,
                    math.exp(round(math.log(box.w) / step) * step), math.exp(round(math.log(box.h) / step) * step),
                    round(box.angle / q) * q)

    def __call__(self, ref_frame: np.ndarray, search_frame: np.ndarray, box: RBox,
                 key: Hashable | None = None) -> np.ndarray:
        """The state of the pair (frame t, frame t+1) seen from ``box``; ``key`` names the pair for the
        cache (None: not cached)."""
        qbox = self.rounded(box)
        ck = None if key is None else (key, qbox.cx, qbox.cy, qbox.w, qbox.h, qbox.angle)
        if ck is not None and ck in self._cache:
            self.hits += 1
            self._cache.move_to_end(ck)
            return self._cache[ck]
        self.misses += 1
        out = self._compute(ref_frame, search_frame, qbox)
        if ck is not None and self.cache_size > 0:
            self._cache[ck] = out
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return out

    @torch.no_grad()
    def _compute(self, ref_frame: np.ndarray, search_frame: np.ndarray, box: RBox) -> np.ndarray:
        hw = ref_frame.shape[:2]
        x, crop = pair_crops(ref_frame, fill_rbox(box, hw), search_frame, box, self.size, self.context)
        out = self.model(patches_to_tensor(x[None], self.device), sample=False)
        tril = out["scale_tril"] if "scale_tril" in out else torch.linalg.cholesky(out["cov"])
        prob = foreground_prob(out["logits"])[0].cpu().numpy()
        h, w = hw
        mu, cov = out["mu"][0].double().cpu().numpy(), out["cov"][0].double().cpu().numpy()
        cue = self._mask_cue(prob, crop, box)
        m, sd = self.prior_mean, self.prior_std
        scaled = [(mu - m) / sd, np.where(cue[6] > 0.5, 0.0, (cue[:5] - m) / sd), np.log(np.sqrt(np.diag(cov)) / sd)]
        parts = [mu, tril[0][TRIL[0], TRIL[1]].double().cpu().numpy(), cue, np.clip(np.concatenate(scaled), -10, 10),
                 out["features"][0].double().cpu().numpy() if self.features else np.zeros(0),
                 np.array([math.log(box.w / w), math.log(box.h / h)] if self.box else [])]
        return np.concatenate(parts).astype(np.float32)

    def _mask_cue(self, prob: np.ndarray, crop: np.ndarray, box: RBox) -> np.ndarray:
        """Relative motion onto the box of the decoded mask (all its pixels, mapped back to the frame)."""
        fg = prob > self.threshold
        pts = np.argwhere(fg)[:, ::-1].astype(np.float64)  # (x, y) in crop pixels
        if len(pts) < 3:
            return np.array([0, 0, 0, 0, 0, float(fg.mean()), 1.0])
        inv = np.linalg.inv(np.vstack([crop, [0.0, 0.0, 1.0]]))[:2]
        frame_pts = pts @ inv[:, :2].T + inv[:, 2]
        t = canonicalize(rbox_from_points(frame_pts), box.angle)
        target = RBox(t.cx, t.cy, max(t.w, MIN_SIDE), max(t.h, MIN_SIDE), t.angle)  # collinear pixels: a line
        r = np.clip(relative_between(box, target, self.context), -3.0, 3.0)
        return np.concatenate([r, [float(fg.mean()), 0.0]])

    def mask_box(self, obs: np.ndarray, box: RBox) -> RBox | None:
        """The decoded mask's box in the search frame (None: the mask is empty), from a state at ``box``."""
        cue = obs[self.layout["search/motion"]]
        return None if cue[6] > 0.5 else apply_relative(box, cue[:5].astype(np.float64), self.context)

    def with_proposal(self, obs: np.ndarray, box: RBox, proposal: FollowingProposal,
                      search: np.ndarray) -> tuple[np.ndarray, RBox | None]:
        """``obs`` (a state at ``box``) with the cue of the ``proposal``'s box in the ``search`` frame
        appended (and its ``extras``: history, colour scores, when on), and the decoded mask's box
        (for the proposal's restart rule): one step of the proposal, the same in the environment and
        in tracking. Call after ``proposal.propose(search)``."""
        mask_box = self.mask_box(obs, box)
        cue = self.proposal_cue(box, proposal.box)
        parts = [obs, cue, *proposal.extras(search, box, mask_box)]
        if proposal.colours is not None:
            parts.append(colour_choice(obs[self.layout["search/motion"]], cue[:5], parts[-1]))
        return np.concatenate(parts), mask_box

    def proposal_cue(self, box: RBox, proposal: RBox) -> np.ndarray:
        """The ``proposal`` slice (module docstring) of a proposal's box seen from ``box``."""
        r = np.clip(relative_between(box, proposal, self.context), -3.0, 3.0)
        iou = agreement(box, proposal)
        scaled = np.clip((r - self.prior_mean) / self.prior_std, -10, 10)
        return np.concatenate([r, scaled, [iou]]).astype(np.float32)

    def cache_info(self) -> dict[str, int]:
        """Hits, misses and entries of the state cache."""
        return {"hits": self.hits, "misses": self.misses, "entries": len(self._cache)}


def colour_choice(mask_cue: np.ndarray, proposal_move: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """The move onto whichever box has the higher colour contrast: the decoded mask's (``mask_cue``,
    the ``search/motion`` slice) where its contrast is at least the proposal's, else the proposal's
    (also where the mask is empty). ``colour``: the two boxes' ``ColourModel`` scores, mask's first."""
    mask_ok = mask_cue[6] < 0.5
    take_mask = mask_ok and mask_box_wins(colour[:SCORE_DIM], colour[SCORE_DIM:])
    return np.asarray(mask_cue[:5] if take_mask else proposal_move, dtype=np.float32)


class AdaptedStates:
    """Each track's ``MotionState`` through its own first-frame-adapted copy of the network.

    Why: a motion posterior's cues (μ′, the decoded mask) are much better on sequences it trained on
    than on new ones; adapting a copy to each track's first frame and box (``AdaptedModels``, cached
    on disk) is what a tracker can do on new video, so training states should be made the same way.
    """

    def __init__(self, state: MotionState, models: Any) -> None:
        self.state, self.models = state, models  # models: bmvtrack.adaptation.AdaptedModels of state.model
        self._states: dict[str, MotionState] = {}

    def for_track(self, key: str, name: str, first: Any) -> MotionState:
        """Track ``key``'s state (``first()`` gives frame 0 and its box when its copy must be made)."""
        if key not in self._states:
            self._states[key] = self.state.with_model(self.models.get(key, name, first))
        return self._states[key]

    def cache_info(self) -> dict[str, int]:
        """Hits, misses and entries of the tracks' state caches, summed."""
        infos = [s.cache_info() for s in self._states.values()]
        return {k: sum(i[k] for i in infos) for k in ("hits", "misses", "entries")}
