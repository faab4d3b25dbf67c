"""Decoding frames and masks with errors that name the file, and a bounded frame cache.

Why a cache: an RL environment replays the same few thousand frames many times; decoding a JPEG
costs far more than a dictionary look-up, and a byte limit keeps memory predictable.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError


class DatasetError(ValueError):
    """Bad input on disk: the message names the file or folder and the problem."""


def read_frame(path: Path | str) -> np.ndarray:
    """An RGB uint8 frame (H, W, 3)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: frame file not found")
    data = np.fromfile(str(path), dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise DatasetError(f"{path}: unreadable or corrupt image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_mask(path: Path | str) -> np.ndarray:
    """A mask as a 2-D uint8 array of values: palette index (DAVIS 2017, YouTube-VOS) or grey level.

    Real DAVIS 2016 files include grey+alpha PNGs; the alpha channel is dropped. RGB masks are
    converted to grey (any non-black pixel is foreground for binary datasets).
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: mask file not found")
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("P", "L"):
                arr = np.asarray(im)
            elif im.mode == "LA":
                arr = np.asarray(im)[..., 0]
            elif im.mode == "1":
                arr = np.asarray(im).astype(np.uint8) * 255
            elif im.mode in ("RGB", "RGBA"):
                arr = np.asarray(im.convert("RGB")).max(axis=2)
            elif im.mode in ("I", "I;16"):
                arr = np.clip(np.asarray(im), 0, 255).astype(np.uint8)
            else:
                raise DatasetError(f"{path}: unsupported mask image mode {im.mode!r}")
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise DatasetError(f"{path}: unreadable or corrupt mask: {exc}") from None
    return np.ascontiguousarray(arr, dtype=np.uint8)


class FrameCache:
    """Least-recently-used cache of decoded arrays, bounded in bytes; thread-safe."""

    def __init__(self, max_bytes: int = 512 * 2**20) -> None:
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: str, load: Callable[[], np.ndarray]) -> np.ndarray:
        with self._lock:
            arr = self._items.get(key)
            if arr is not None:
                self._items.move_to_end(key)
                self.hits += 1
                return arr
        arr = load()
        arr.setflags(write=False)  # shared between callers: nobody may modify it in place
        with self._lock:
            self.misses += 1
            if arr.nbytes <= self.max_bytes and key not in self._items:
                self._items[key] = arr
                self._bytes += arr.nbytes
                while self._bytes > self.max_bytes:
                    _, old = self._items.popitem(last=False)
                    self._bytes -= old.nbytes
        return arr

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0
