"""Rollout videos: H.264 MP4 that browsers and W&B play, and overlay labels legible at every panel size."""
from __future__ import annotations

import subprocess

import numpy as np
import pytest
from PIL import Image

from bmvtrack.video import PALETTE, mp4_boxes, overlay, put_lines, write_gif, write_mp4

imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")


def _frames(n: int = 12, h: int = 121, w: int = 161) -> list[np.ndarray]:
    """Red left half, blue right half, a white square moving right (odd sizes on purpose)."""
    out = []
    for i in range(n):
        f = np.zeros((h, w, 3), np.uint8)
        f[:, : w // 2] = (220, 0, 0)
        f[:, w // 2:] = (0, 0, 220)
        f[50:62, 5 * i:5 * i + 12] = 255
        out.append(f)
    return out


def test_mp4_is_h264_yuv420p_even_sized_and_fast_start(tmp_path):
    path = write_mp4(_frames(), tmp_path / "v.mp4", fps=10)
    probe = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)],
                           capture_output=True, text=True)  # no output file: ffmpeg prints the streams, exits 1
    (stream,) = [line for line in probe.stderr.splitlines() if "Video:" in line]
    assert "Video: h264" in stream and "yuv420p" in stream and "160x120" in stream, stream
    assert imageio_ffmpeg.count_frames_and_secs(str(path)) == (12, 1.2)
    boxes = mp4_boxes(path)  # +faststart: the index (moov) is before the media data
    assert boxes[0] == "ftyp" and boxes.index("moov") < boxes.index("mdat"), boxes
    assert not list(tmp_path.glob(".*"))  # the temporary was renamed, nothing left beside it


def test_mp4_decodes_to_the_frames_written(tmp_path):
    frames = _frames()
    path = write_mp4(frames, tmp_path / "v.mp4", fps=10)
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    assert meta["codec"] == "h264" and meta["pix_fmt"].startswith("yuv420p") and meta["size"] == (160, 120)
    decoded = [np.frombuffer(b, np.uint8).reshape(120, 160, 3) for b in reader]
    assert len(decoded) == len(frames)
    for got, want in zip(decoded, frames):  # RGB order kept (no BGR swap), lossy but close
        assert np.abs(got.astype(int) - want[:120, :160]).mean() < 6
    assert tuple(decoded[0][100, 20]) == pytest.approx((220, 0, 0), abs=12)


def test_mp4_rejects_frames_it_cannot_encode(tmp_path):
    with pytest.raises(ValueError, match="no frames"):
        write_mp4([], tmp_path / "v.mp4")
    with pytest.raises(ValueError, match="frame 1"):
        write_mp4([np.zeros((20, 20, 3), np.uint8), np.zeros((20, 22, 3), np.uint8)], tmp_path / "v.mp4")
    assert not list(tmp_path.iterdir())


def test_gif_is_unchanged_a_looping_gif(tmp_path):
    path = write_gif(_frames(5), tmp_path / "v.gif", fps=10)
    with Image.open(path) as im:
        assert im.format == "GIF" and im.n_frames == 5 and im.info["loop"] == 0 and im.info["duration"] == 100


def _label(width: int, height: int, background: int) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]]:
    frame = np.full((height, width, 3), background, np.uint8)
    img = frame.copy()
    plate = put_lines(img, ["csrt  t=12", "IoU 0.73  mean 0.81", "ds 0.012 -0.034  sin +0.100",
                            "dx +0.0123  dy -0.0045"], colour=PALETTE[1])
    return frame, img, plate


@pytest.mark.parametrize("background", [0, 128, 255])
def test_label_on_a_320_px_panel_is_legible(background):
    frame, img, (x0, y0, x1, y1) = _label(320, 240, background)
    assert 0 < x0 < x1 < 320 and 0 < y0 < y1 < 240  # the whole label is inside the panel
    assert (x1 - x0) >= 0.45 * 320 and (y1 - y0) <= 0.5 * 240  # scaled to the panel, not a corner of it
    region = img[y0:y1, x0:x1].astype(int)
    text = region.min(axis=2) >= 200  # light glyph pixels
    plate = region.max(axis=2) <= 100  # the dark plate around them, whatever the frame beneath (0, 128, 255)
    assert text.sum() > 400 and plate.sum() > 0.5 * region[..., 0].size
    assert np.median(region[text]) - np.median(region[plate]) >= 150  # contrast of glyphs against their plate
    rows = np.flatnonzero(text.any(axis=1))
    glyph_rows = np.split(rows, np.flatnonzero(np.diff(rows) > 1) + 1)
    assert len(glyph_rows) == 4  # one band of text per line: drawn once, no offset copy
    assert all(len(r) >= 8 for r in glyph_rows)  # glyphs at least 8 px tall
    assert np.array_equal(img[y1:], frame[y1:]) and np.array_equal(img[:, x1:], frame[:, x1:])  # nothing else drawn


def test_label_grows_with_the_panel_and_a_frame_keeps_its_size():
    small, large = _label(320, 240, 128)[2], _label(960, 720, 128)[2]
    assert large[2] - large[0] > 1.5 * (small[2] - small[0])
    gray = np.full((240, 320, 3), 128, np.uint8)
    first = overlay(gray, None, None, "mvsac", 0, 1.0, 1.0, None)  # no action yet: 2 lines, same size
    later = overlay(gray, None, None, "mvsac", 1, 0.8, 0.9, np.array([0.01, 0.0, 0.1, 0.001, -0.002]))

    def height(img):
        rows = np.flatnonzero((img.min(axis=2) >= 200).any(axis=1))
        return rows[np.flatnonzero(np.diff(rows) > 1)[0]] - rows[0] + 1  # the first line's glyph band
    assert height(first) == height(later)
