"""The raw observation of one frame: what the environment emits and the policy tracker rebuilds.

One builder for both, so that a policy evaluated as a tracker (``bmvtrack.agents.policy_tracker``)
sees exactly what it was trained on (``bmvtrack.envs.tracking_env``). The fields
(``TrackingEnv.observation_space``):

* ``crops`` (n_crops, S, S, 3) uint8: the search crop of the frame at the agent's current box (the
  paper's padded window, ``context·(w + h)`` per side), then the template crop when there is one;
* ``box`` (7,) float32: ``[cx/W, cy/H, w/W, h/H, sin α, cos α, first]`` (``box_geometry``);
* ``window`` (6,) float32: ``[x0, y0, x1, y1, W, H]``, the search crop's window in frame pixels
  and the frame size (``window_features``);
* ``proposal`` (5,) float32, only with a proposal tracker: its box ``[cx, cy, w, h, angle]``.
"""
from __future__ import annotations

import numpy as np

from bmvtrack.data.patches import CropWindow, crop_image, crop_window
from bmvtrack.motion import RBox

BOX_FEATURES = 7
WINDOW_FEATURES = 6


def box_geometry(box: RBox, frame_hw: tuple[int, int], first: bool) -> np.ndarray:
    """The 7 geometry numbers of an observation: [cx/W, cy/H, w/W, h/H, sin α, cos α, first]."""
    h, w = frame_hw
    a = np.radians(box.angle)
    return np.array([box.cx / w, box.cy / h, box.w / w, box.h / h, np.sin(a), np.cos(a), float(first)], dtype=np.float32)


def window_features(window: CropWindow, frame_hw: tuple[int, int]) -> np.ndarray:
    """The 6 numbers of an observation's ``window``: [x0, y0, x1, y1, W, H] (pixels)."""
    h, w = frame_hw
    return np.array([window.x0, window.y0, window.x1, window.y1, w, h], dtype=np.float32)


def crop_at(frame: np.ndarray, box: RBox, frame_hw: tuple[int, int], size: int,
            context: float) -> tuple[np.ndarray, CropWindow]:
    """The ``size × size`` crop of ``frame`` around ``box`` (padded by ``context·(w + h)``) and its window."""
    win = crop_window(box, frame_hw, size, context)
    return crop_image(frame, win), win


def raw_observation(frame: np.ndarray, box: RBox, frame_hw: tuple[int, int], crop_size: int, context: float,
                    template: np.ndarray | None, first: bool, proposal: RBox | None = None) -> dict[str, np.ndarray]:
    """The raw observation of ``frame`` seen from the agent's ``box`` (see the module docstring).

    ``template`` is the template crop (None: no template), ``first`` marks the first observation of
    a track, ``proposal`` the proposal tracker's box on this frame (None: no proposal tracker).
    """
    search, win = crop_at(frame, box, frame_hw, crop_size, context)
    crops = [search] if template is None else [search, template]
    obs = {
        "crops": np.stack(crops).astype(np.uint8),
        "box": box_geometry(box, frame_hw, first),
        "window": window_features(win, frame_hw),
    }
    if proposal is not None:
        obs["proposal"] = proposal.as_array().astype(np.float32)
    return obs
