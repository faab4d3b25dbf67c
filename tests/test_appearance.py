"""The first-frame colour model scores boxes on the object above boxes off it or on a piece of it."""
import numpy as np
import pytest

from bmvtrack.appearance import RING, SCORE_DIM, ColourModel, colour_index
from bmvtrack.motion import RBox, fill_rbox


def scene(cx: int, cy: int, rng: np.random.Generator) -> np.ndarray:
    """A noisy green field with a 40×30 red-and-blue object centred at (cx, cy)."""
    frame = np.zeros((240, 320, 3), np.uint8)
    frame[..., 1] = 120 + rng.integers(0, 20, (240, 320))
    frame[cy - 15:cy + 15, cx - 20:cx, 0] = 200
    frame[cy - 15:cy + 15, cx - 20:cx, 1] = 10
    frame[cy - 15:cy + 15, cx:cx + 20, 2] = 210
    frame[cy - 15:cy + 15, cx:cx + 20, 1] = 10
    return frame


def test_box_on_the_object_scores_above_background_and_a_piece() -> None:
    rng = np.random.default_rng(0)
    model = ColourModel()
    model.start(scene(100, 100, rng), RBox(100, 100, 40, 30, 0))
    later = scene(180, 140, rng)
    on = model.score(later, RBox(180, 140, 40, 30, 0))
    off = model.score(later, RBox(60, 60, 40, 30, 0))
    piece = model.score(later, RBox(170, 140, 20, 30, 0))  # the red half only
    assert on.shape == (SCORE_DIM,)
    inside, contrast, similarity = on
    assert inside > 0.9 and contrast > 0.8 and similarity > 0.9
    assert off[0] < 0.1 and off[2] < 0.5  # the first box holds a little of the field at its edges
    assert piece[0] > 0.9  # object colours inside...
    assert piece[1] < contrast - 0.1  # ...and around it: a piece fits worse than the whole
    assert piece[2] < similarity - 0.1  # half the colours of the first box (√½ at most)


def test_scores_in_the_window_equal_scores_on_the_whole_frame() -> None:
    """Boxes are filled in a window around the ring only; the numbers are those of the whole frame."""
    rng = np.random.default_rng(1)
    first = scene(100, 100, rng)
    model = ColourModel()
    model.start(first, RBox(100, 100, 40, 30, 0))
    later = scene(150, 120, rng)
    for box in (RBox(150, 120, 40, 30, 30), RBox(5, 230, 40, 30, 70), RBox(150, 180, 60, 20, -20)):
        inner, outer = fill_rbox(box, later.shape[:2]), fill_rbox(RBox(box.cx, box.cy, RING * box.w, RING * box.h, box.angle), later.shape[:2])
        idx = colour_index(later)
        inside = model.likelihood[idx[inner]].mean()
        contrast = inside - model.likelihood[idx[outer & ~inner]].mean()
        np.testing.assert_allclose(model.score(later, box)[:2], [inside, contrast], rtol=1e-5)
    assert model.score(later, RBox(150, 120, 40, 30, 30))[0] > model.score(later, RBox(150, 180, 40, 30, 30))[0]


def test_no_box_or_off_the_frame_scores_zero_and_unstarted_model_refuses() -> None:
    rng = np.random.default_rng(2)
    frame = scene(100, 100, rng)
    with pytest.raises(RuntimeError, match="before start"):
        ColourModel().score(frame, RBox(100, 100, 40, 30, 0))
    model = ColourModel()
    model.start(frame, RBox(100, 100, 40, 30, 0))
    assert not model.score(frame, None).any()
    assert not model.score(frame, RBox(-500, -500, 10, 10, 0)).any()
