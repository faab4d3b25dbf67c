"""Drawing tracking overlays and writing MP4 / GIF files (atomically).

MP4 uses OpenCV's ``mp4v`` encoder (in every opencv wheel, no ffmpeg needed); GIF uses Pillow.
"""
from __future__ import annotations

import os
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


def draw_box(img: np.ndarray, box: RBox | None, colour: tuple[int, int, int], thickness: int = 2) -> None:
    if box is not None and np.all(np.isfinite(box.as_array())):
        cv2.polylines(img, [np.round(rbox_corners(box)).astype(np.int32)], True, colour, thickness, cv2.LINE_AA)


def put_lines(img: np.ndarray, lines: Sequence[str], colour=(255, 255, 0), origin=(6, 16), scale: float = 0.42) -> None:
    """Text with a dark outline so it reads on any background."""
    x, y = origin
    for i, line in enumerate(lines):
        pos = (x, y + i * int(22 * scale + 8))
        cv2.putText(img, line, pos, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(img, line, pos, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA)


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
    put_lines(img, lines, colour=colour, scale=0.4 if img.shape[1] < 480 else 0.5)
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
    """RGB frames → MP4 (mp4v), written to a temporary file and renamed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames[0].shape[:2]
    w2, h2 = w - w % 2, h - h % 2  # even sizes for the codec
    tmp = _tmp_beside(path)
    try:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w2, h2))
        if not writer.isOpened():
            raise RuntimeError(f"{path}: OpenCV could not open an mp4v video writer")
        for f in frames:
            writer.write(cv2.cvtColor(np.ascontiguousarray(f[:h2, :w2]), cv2.COLOR_RGB2BGR))
        writer.release()
        publish(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


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
