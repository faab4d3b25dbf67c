"""Drawing tracking overlays and writing MP4 / GIF files (atomically).

MP4 is H.264 (libx264, ``yuv420p``, even frame sizes, ``+faststart``: the index at the front of the
file), the format browsers and W&B play, written by the ffmpeg binary that ships inside the
``imageio-ffmpeg`` wheel (no system ffmpeg needed). GIF uses Pillow.

Overlay text is one label per panel: the lines on a translucent dark plate, drawn once in a light
colour, with a bar in the tracker's colour; its size follows the panel's (``label_scale``), so it
stays legible on a 320-px panel and does not shrink to a corner of a 1280-px one.
"""
from __future__ import annotations

import os
import struct
import tempfile
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from PIL import Image

from bmvtrack.io import publish
from bmvtrack.motion import RBox, rbox_corners

GT_COLOUR = (0, 220, 0)
PALETTE = [(230, 40, 40), (40, 120, 255), (255, 170, 0), (200, 0, 200), (0, 200, 200), (255, 255, 255), (120, 60, 0)]
TEXT_COLOUR = (245, 245, 245)
FONT = cv2.FONT_HERSHEY_DUPLEX
MP4_CRF = 20  # libx264 constant rate factor: thin box edges and small text stay sharp
MP4_OUTPUT = ["-crf", str(MP4_CRF), "-preset", "medium", "-movflags", "+faststart", "-f", "mp4"]


def draw_box(img: np.ndarray, box: RBox | None, colour: tuple[int, int, int], thickness: int = 2) -> None:
    if box is not None and np.all(np.isfinite(box.as_array())):
        cv2.polylines(img, [np.round(rbox_corners(box)).astype(np.int32)], True, colour, thickness, cv2.LINE_AA)


def label_scale(lines: Sequence[str], width: int, height: int, max_width: float = 0.62,
                max_height: float = 0.45) -> float:
    """Font scale at which ``lines`` span at most ``max_width`` of the panel's width and
    ``max_height`` of its height (within 0.3 … 0.9: no larger on a big panel)."""
    if not lines:
        return 1.0
    widest = max(cv2.getTextSize(line, FONT, 1.0, 1)[0][0] for line in lines)
    pitch = _line_pitch(1.0)
    return float(np.clip(min(max_width * width / widest, max_height * height / (pitch * len(lines))), 0.3, 0.9))


def _line_pitch(scale: float) -> float:
    (_, h), base = cv2.getTextSize("Ag", FONT, scale, 1)
    return h + base + 3 * scale


def put_lines(img: np.ndarray, lines: Sequence[str], colour=PALETTE[0], origin: tuple[int, int] | None = None,
              scale: float | None = None) -> tuple[int, int, int, int]:
    """One label in the top-left corner (or at ``origin``): ``lines`` drawn once in a light colour on a
    translucent dark plate, with a bar in ``colour`` (the tracker's) on its left. ``scale`` defaults
    to ``label_scale`` of the panel. Returns the plate ``(x0, y0, x1, y1)``."""
    h, w = img.shape[:2]
    if not lines:
        return (0, 0, 0, 0)
    scale = label_scale(lines, w, h) if scale is None else scale
    thick = max(1, int(round(scale * 1.6)))
    pad, bar = max(2, int(round(5 * scale))), max(2, int(round(5 * scale)))
    pitch = _line_pitch(scale)
    widest = max(cv2.getTextSize(line, FONT, scale, thick)[0][0] for line in lines)
    x0, y0 = origin or (max(1, int(round(4 * scale))), max(1, int(round(4 * scale))))
    x1, y1 = min(w, x0 + bar + 2 * pad + widest), min(h, y0 + 2 * pad + int(np.ceil(pitch * len(lines))))
    plate = img[y0:y1, x0:x1]
    plate[:] = (plate.astype(np.float32) * 0.35).astype(img.dtype)  # 65 % black: text reads on any frame
    plate[:, :bar] = colour
    (_, asc), _ = cv2.getTextSize("Ag", FONT, scale, thick)
    for i, line in enumerate(lines):
        baseline = int(round(y0 + pad + asc + i * pitch))
        cv2.putText(img, line, (x0 + bar + pad, baseline), FONT, scale, TEXT_COLOUR, thick, cv2.LINE_AA)
    return (x0, y0, x1, y1)


def overlay(frame: np.ndarray, gt: RBox | None, pred: RBox | None, title: str, t: int, iou: float,
            running_iou: float, action: np.ndarray | None, colour=PALETTE[0]) -> np.ndarray:
    """One panel: frame, ground truth (green), tracker box, IoU, running mean IoU and the 5 action values
    ``[Δs_x, Δs_y, sinθ, Δx, Δy]``."""
    img = np.ascontiguousarray(frame).copy()
    draw_box(img, gt, GT_COLOUR)
    draw_box(img, pred, colour)
    lines = [f"{title}  t={t}", f"IoU {iou:.2f}  mean {running_iou:.2f}"]
    if action is not None:
        a = np.asarray(action, dtype=np.float64)
        lines.append(f"ds {a[0]:.3f} {a[1]:.3f}  sin {a[2]:+.3f}")
        lines.append(f"dx {a[3]:+.4f}  dy {a[4]:+.4f}")
    # one size for every frame of the panel (frame 0 has no action lines): fitted to the longest form
    widest = [lines[0], "IoU 0.00  mean 0.00", "ds -0.000 -0.000  sin +0.000", "dx +0.0000  dy +0.0000"]
    put_lines(img, lines, colour=colour, scale=label_scale(widest, img.shape[1], img.shape[0]))
    return img


def tile(panels: Sequence[np.ndarray], columns: int = 0) -> np.ndarray:
    """Panels of equal size side by side (``columns`` per row; 0 = all in one row)."""
    cols = columns or len(panels)
    rows = [panels[i:i + cols] for i in range(0, len(panels), cols)]
    blank = np.zeros_like(panels[0])
    return np.concatenate([np.concatenate(list(r) + [blank] * (cols - len(r)), axis=1) for r in rows], axis=0)


def _tmp_beside(path: Path) -> Path:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    return Path(tmp)


def write_mp4(frames: Sequence[np.ndarray], path: str | Path, fps: int = 10) -> Path:
    """RGB frames → H.264 MP4 (``yuv420p``, ``+faststart``), written to a temporary file and renamed.

    The encoder needs even sizes: an odd last row or column is dropped. Raises RuntimeError when
    ffmpeg fails or leaves no playable file.
    """
    import imageio_ffmpeg

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not len(frames):
        raise ValueError(f"{path}: no frames to write")
    h, w = frames[0].shape[:2]
    w2, h2 = w - w % 2, h - h % 2  # yuv420p halves the chroma planes: even sizes only
    if w2 < 2 or h2 < 2:
        raise ValueError(f"{path}: frames of {w}x{h} px are too small for a video")
    tmp = _tmp_beside(path)
    try:
        writer = imageio_ffmpeg.write_frames(str(tmp), (w2, h2), pix_fmt_in="rgb24", pix_fmt_out="yuv420p",
                                             fps=fps, codec="libx264", quality=None, macro_block_size=2,
                                             ffmpeg_log_level="error", output_params=list(MP4_OUTPUT))
        try:
            writer.send(None)  # starts ffmpeg
            for i, f in enumerate(frames):
                if f.shape[:2] != (h, w) or f.ndim != 3 or f.shape[2] != 3:
                    raise ValueError(f"{path}: frame {i} is {f.shape}, the first is {(h, w, 3)}")
                writer.send(np.ascontiguousarray(f[:h2, :w2], dtype=np.uint8))
        except OSError as exc:
            raise RuntimeError(f"{path}: ffmpeg could not encode the video: {exc}") from exc
        finally:
            writer.close()  # flushes and waits for ffmpeg (moov atom moved to the front)
        boxes = mp4_boxes(tmp)
        if "moov" not in boxes or "mdat" not in boxes:
            raise RuntimeError(f"{path}: ffmpeg left no complete MP4 (top-level boxes {boxes})")
        publish(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def mp4_boxes(path: str | Path) -> list[str]:
    """Types of the top-level boxes of an MP4 file, in file order (``moov`` before ``mdat`` when the
    file is fast-start, i.e. playable while it downloads)."""
    out: list[str] = []
    with open(path, "rb") as fh:
        size_total = os.fstat(fh.fileno()).st_size
        pos = 0
        while pos + 8 <= size_total:
            fh.seek(pos)
            size, kind = struct.unpack(">I4s", fh.read(8))
            if size == 1:  # 64-bit size follows
                size = struct.unpack(">Q", fh.read(8))[0]
            elif size == 0:  # box runs to the end of the file
                size = size_total - pos
            if size < 8:
                break
            out.append(kind.decode("latin-1"))
            pos += size
    return out


def write_gif(frames: Sequence[np.ndarray], path: str | Path, fps: int = 10, max_width: int = 1280) -> Path:
    """RGB frames → looping GIF (downscaled to ``max_width``), written atomically."""
    from bmvtrack.io import atomic_save

    path = Path(path)
    scale = min(1.0, max_width / frames[0].shape[1])
    size = (int(frames[0].shape[1] * scale), int(frames[0].shape[0] * scale))
    imgs = [Image.fromarray(f).resize(size, Image.BILINEAR) if scale < 1 else Image.fromarray(f) for f in frames]
    atomic_save(path, lambda buf: imgs[0].save(buf, format="GIF", save_all=True, append_images=imgs[1:],
                                                duration=int(1000 / fps), loop=0))
    return path
