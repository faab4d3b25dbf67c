"""Object-centred patches: the paper's padding, and crop → paste is the identity on the object."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from bmvtrack.data.patches import crop_image, crop_mask, crop_window, paste_patch
from bmvtrack.motion import RBox, rbox_corners


def test_window_is_padded_by_quarter_of_w_plus_h():
    win = crop_window(RBox(100, 80, 40, 20, 0), (200, 300), 64)
    pad = (40 + 20) / 4
    assert (win.x0, win.y0, win.x1, win.y1) == pytest.approx((80 - pad, 70 - pad, 120 + pad, 90 + pad))


def test_window_clipped_to_frame_or_not():
    box = RBox(5, 5, 20, 20, 0)
    clipped = crop_window(box, (100, 100), 32)
    assert clipped.x0 == 0 and clipped.y0 == 0
    free = crop_window(box, (100, 100), 32, clip=False)
    assert free.x0 < 0 and free.x1 - free.x0 == pytest.approx(free.y1 - free.y0)
    outside = crop_window(RBox(500, 500, 10, 10, 0), (100, 100), 32)
    assert 0 <= outside.x0 < outside.x1 <= 100


def test_crop_then_paste_recovers_mask():
    frame_hw = (240, 320)
    box = RBox(150, 120, 80, 40, 25)
    mask = np.zeros(frame_hw, np.uint8)
    cv2.fillPoly(mask, [rbox_corners(box).astype(np.int32)], 1)
    win = crop_window(box, frame_hw, 96)
    patch = crop_mask(mask.astype(bool), win)
    assert patch.shape == (96, 96) and 0.1 < patch.mean() < 0.7
    back = paste_patch(patch, win, frame_hw) > 0.5
    iou = (back & (mask > 0)).sum() / (back | (mask > 0)).sum()
    assert iou > 0.95


def test_crop_image_shape_and_dtype():
    frame = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    out = crop_image(frame, crop_window(RBox(80, 60, 30, 30, 0), (120, 160), 48))
    assert out.shape == (48, 48, 3) and out.dtype == np.uint8


def test_patch_sampler_augmentations_keep_patch_and_mask_aligned(tmp_path):
    """Rotation (with mirrored borders) and blur must move image and label together: on frames that
    picture their own mask, the augmented patch is bright exactly where the augmented mask is set."""
    from bmvtrack.data.patch_sampler import AugmentConfig, PatchSampler
    from bmvtrack.data.readers import TrackFilter, VideoDataset
    from bmvtrack.data.synth import SynthConfig, generate_dataset

    root = generate_dataset(tmp_path, "davis2017", videos=1, seed=3,
                            cfg=SynthConfig(width=160, height=120, frames=4, objects=(1, 1)), progress=False)
    ds = VideoDataset(root, "davis2017", filters=TrackFilter(absent="keep", max_box_fraction=1.0))
    ds.frame = lambda tr, i: np.repeat((ds.mask(tr, i) * 255).astype(np.uint8)[..., None], 3, axis=-1)
    plain = PatchSampler(ds, 64, AugmentConfig(jitter_shift=0, jitter_scale=0, flip=False, colour=0))
    rotated = PatchSampler(ds, 64, AugmentConfig(jitter_shift=0, jitter_scale=0, flip=False, colour=0,
                                                 rotate=40.0, blur=1.0))
    moved = []
    for i in range(len(plain)):
        _, m0 = plain.sample(i, np.random.default_rng(i))
        patch, mask = rotated.sample(i, np.random.default_rng(i))
        assert patch.shape == (64, 64, 3) and mask.shape == (64, 64) and mask.dtype == bool
        assert np.mean((patch[..., 0] > 127) == mask) > 0.97
        moved.append(np.mean(m0 != mask))
    assert max(moved) > 0.02  # the masks really were rotated
