"""The motion cue: the segmentation tracker's answer for one search crop, as a motion G_t.

``mask_motion_cue`` gives 7 numbers for the search crop: the motion G_t that would move the
agent's box onto the box fitted to the decoder's mask — to the mask pieces that touch the agent's
box, as the segmentation tracker does (standardised by the encoder's prior, (G − μ)/σ, clipped to
±10), the mask's area fraction, and a flag set when the mask is empty (G is then "stay"). It puts
the segmentation tracker's answer in the state, so the policy can learn when to follow it and when
not (the agent earns its keep on crop placement).
When the environment also emits a classical tracker's ``proposal`` box (``EnvConfig.proposal``,
ours), the cue's motion goes to ``bmvtrack.proposals.fuse_boxes`` of the mask's box and the
proposal's (the ``segmentation-csrt`` tracker's box), and 6 more numbers follow: the standardised
motion onto the proposal and the axis-aligned IoU of the mask's box with it.
"""
from __future__ import annotations

import numpy as np

from bmvtrack.data.patches import CropWindow
from bmvtrack.motion import STAY_ACTION, RBox, motion_between, motion_within
from bmvtrack.proposals import agreement, fuse_boxes
from bmvtrack.segmentation import Keep, box_in_window

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
