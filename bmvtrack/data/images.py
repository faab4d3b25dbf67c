"""Decoding frames and masks with errors that name the file, and a bounded frame cache.

Why the bytes are checked before decoding: decoders forgive damage. OpenCV 4.10 decodes a
truncated JPEG without an error, and OpenCV and Pillow both decode a JPEG whose entropy-coded data
was overwritten, at most printing libjpeg's anonymous "Corrupt JPEG data" line; Pillow skips the
CRCs of PNG image data. So every JPEG and PNG is walked first (JPEG: markers, segment lengths, byte
stuffing, restart order, end-of-image marker; PNG: chunk lengths, every CRC, IEND), and the size in
its header is checked against ``MAX_PIXELS`` before a pixel is decoded. The walk is pure Python and
NumPy, so the outcome does not depend on the OpenCV or Pillow version.

Why a cache: an RL environment replays the same few thousand frames many times; decoding a JPEG
costs far more than a dictionary look-up, and a byte limit keeps memory predictable.
"""
from __future__ import annotations

import io
import threading
import zlib
from collections import OrderedDict
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

# Largest image decoded: 8K UHD (7680 x 4320 pixels). A header that claims more is refused before
# decoding: a PNG of a few KB can claim 30000 x 30000 pixels (2.7 GB as RGB), a decompression bomb.
MAX_PIXELS = 7680 * 4320

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SOI = b"\xff\xd8"
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # frame headers (not DHT, JPG, DAC)
_JPEG_RST = range(0xD0, 0xD8)
# markers that may end entropy-coded data (libjpeg accepts these): DHT, DAC, SOS, DQT, DNL, DRI,
# EOI, TEM, COM, APPn. Anything else there is damage.
_JPEG_AFTER_SCAN = frozenset({0xC4, 0xCC, 0xDA, 0xDB, 0xDC, 0xDD, 0xD9, 0x01, 0xFE,
                              *range(0xE0, 0xF0)})
_JPEG_SEQUENTIAL = frozenset({0xC0, 0xC1, 0xC9})  # each component is coded in exactly one scan
_JPEG_PROGRESSIVE = frozenset({0xC2, 0xCA})
_HEADER_READ = 1 << 13  # image_size() reads this much first, the rest only if the header is longer


class DatasetError(ValueError):
    """Bad input on disk: the message names the file or folder and the problem."""


class _Corrupt(Exception):
    """A structural problem; ``check_image_bytes`` adds the file name."""


class _Truncated(_Corrupt):
    """The bytes end early; for a header-only read, a cue to read the rest of the file."""


class _TooLarge(Exception):
    """The header claims more than ``MAX_PIXELS``."""


def _check_pixels(h: int, w: int) -> None:
    if h * w > MAX_PIXELS:
        raise _TooLarge(
            f"header claims {w}x{h} pixels, more than the limit of {MAX_PIXELS:,} (8K UHD, 7680x4320); "
            "refused before decoding (a damaged header or a decompression bomb)"
        )


def _jpeg_segment_ok(m: int, seg: bytes) -> bool:
    """Whether a segment's length agrees with its content (overwritten bytes rarely do)."""
    n = len(seg)
    if m in _JPEG_SOF:
        return n >= 6 and n == 6 + 3 * seg[5]
    if m == 0xDA:  # SOS
        return n >= 1 and 1 <= seg[0] <= 4 and n == 4 + 2 * seg[0]
    if m in (0xDD, 0xDC):  # DRI, DNL
        return n == 2
    if m == 0xC4:  # DHT: tables of (class/id, 16 counts, symbols)
        p = 0
        while p < n:
            if p + 17 > n or seg[p] >> 4 > 1 or seg[p] & 15 > 3:
                return False
            p += 17 + sum(seg[p + 1:p + 17])
        return p == n
    if m == 0xDB:  # DQT: tables of (precision/id, 64 values of 1 or 2 bytes)
        p = 0
        while p < n:
            if seg[p] >> 4 > 1 or seg[p] & 15 > 3:
                return False
            p += 1 + 64 * (1 + (seg[p] >> 4))
        return p == n
    return True


def _jpeg_walk(data: bytes, header_only: bool = False) -> tuple[int, int]:
    """Walk a JPEG's markers and entropy-coded data; (H, W) from its frame header.

    Catches what libjpeg only warns about: truncation (no end-of-image marker), and invalid or
    out-of-order markers inside entropy-coded data (overwritten bytes). Damage that contains no
    0xFF byte (say, a run of zeros) keeps the structure intact and needs a full Huffman decode to
    see; neither OpenCV nor Pillow reports it.
    """
    n = len(data)
    size: tuple[int, int] | None = None
    restart_interval = scans = coded = sof = 0
    components: set[int] = set()
    markers = codes = None  # positions of 0xFF followed by a marker code, and the codes
    pos = 2
    while True:
        if pos >= n:
            raise _Truncated(f"truncated JPEG: file ends at byte {n} before the end-of-image marker")
        if data[pos] != 0xFF:
            raise _Corrupt(f"corrupt JPEG: expected a marker at byte {pos}, found 0x{data[pos]:02x}")
        while pos < n and data[pos] == 0xFF:  # fill bytes may precede a marker
            pos += 1
        if pos >= n:
            raise _Truncated(f"truncated JPEG: file ends at byte {n} inside a marker")
        m, at = data[pos], pos - 1
        pos += 1
        if m == 0xD9:  # EOI
            break
        if m == 0x01:  # TEM has no length
            continue
        if m in _JPEG_RST:
            raise _Corrupt(
                f"corrupt JPEG: restart marker 0x{m:02x} at byte {at} outside entropy-coded data"
            )
        if m < 0xC0 or m == 0xD8:
            raise _Corrupt(f"corrupt JPEG: invalid marker 0x{m:02x} at byte {at}")
        if pos + 2 > n:
            raise _Truncated(f"truncated JPEG: file ends at byte {n} inside marker 0x{m:02x}")
        length = (data[pos] << 8) | data[pos + 1]
        if length < 2:
            raise _Corrupt(f"corrupt JPEG: marker 0x{m:02x} at byte {at} has length {length}")
        if pos + length > n:
            raise _Truncated(  # cut short, or a marker in overwritten bytes with a random length
                f"truncated or corrupt JPEG: segment 0x{m:02x} at byte {at} claims {length} bytes, "
                f"file ends at byte {n}"
            )
        seg = data[pos + 2:pos + length]
        pos += length
        if not _jpeg_segment_ok(m, seg):
            raise _Corrupt(f"corrupt JPEG: malformed segment 0x{m:02x} at byte {at}")
        if m in _JPEG_SOF:
            if size is not None:
                raise _Corrupt(f"corrupt JPEG: second frame header at byte {at}")
            h, w = (seg[1] << 8) | seg[2], (seg[3] << 8) | seg[4]
            _check_pixels(h, w)
            size, sof, components = (h, w), m, set(seg[6::3])
            if header_only:
                return size
        elif m == 0xDD:  # DRI
            restart_interval = (seg[0] << 8) | seg[1]
        elif m == 0xDA:  # SOS: entropy-coded data follows, up to the next marker that is not RSTn
            if size is None:
                raise _Corrupt(f"corrupt JPEG: scan at byte {at} before any frame header")
            ns = seg[0]
            coded += ns
            ss, se, ah_al = seg[1 + 2 * ns:4 + 2 * ns]
            if not set(seg[1:1 + 2 * ns:2]) <= components or (
                sof in _JPEG_SEQUENTIAL and (coded > len(components) or (ss, se, ah_al) != (0, 63, 0))
            ) or (sof in _JPEG_PROGRESSIVE and (ss > se or se > 63)):
                raise _Corrupt(f"corrupt JPEG: scan header at byte {at} does not match the frame header")
            if markers is None:
                arr = np.frombuffer(data, np.uint8)
                ff = np.flatnonzero(arr[:-1] == 0xFF)
                nxt = arr[ff + 1]
                keep = (nxt != 0x00) & (nxt != 0xFF)  # FF00 is a stuffed 0xFF byte, FFFF fill
                markers, codes = ff[keep], nxt[keep]
            scans += 1
            i, expect = int(np.searchsorted(markers, pos)), 0
            while True:
                if i >= len(markers):
                    raise _Truncated(
                        f"truncated JPEG: entropy-coded data from byte {pos} runs to the end of the file "
                        f"(byte {n}) without an end-of-image marker"
                    )
                code, mpos = int(codes[i]), int(markers[i])
                if code not in _JPEG_RST:
                    break
                if restart_interval == 0 or code != 0xD0 + expect:
                    raise _Corrupt(
                        f"corrupt JPEG: unexpected restart marker 0x{code:02x} at byte {mpos} in "
                        "entropy-coded data (damaged or overwritten bytes)"
                    )
                expect = (expect + 1) % 8
                i += 1
            if code not in _JPEG_AFTER_SCAN:
                raise _Corrupt(
                    f"corrupt JPEG: invalid marker 0x{code:02x} at byte {mpos} in entropy-coded data "
                    "(damaged or overwritten bytes)"
                )
            pos = mpos
    if size is None or scans == 0:
        missing = "frame header" if size is None else "image data (no scan)"
        raise _Corrupt(f"corrupt JPEG: no {missing}")
    tail = data[pos:].lstrip(b"\x00")
    stripped = tail.lstrip(b"\xff")
    second_image = len(stripped) < len(tail) and stripped[:1] == b"\xd8"
    extra = tail.replace(b"\xff\xd9", b"").strip(b"\x00\xff")  # not padding or a repeated EOI
    if extra and not second_image and data.rstrip(b"\x00").endswith(b"\xff\xd9"):
        # bytes after EOI are allowed (vendor trailers, padding, a second image), but not more
        # image data ending in another EOI: then the first "EOI" was inside overwritten data
        raise _Corrupt(
            f"corrupt JPEG: end-of-image marker at byte {pos - 2} is followed by {n - pos} bytes of "
            "data ending in another end-of-image marker (damaged or overwritten bytes)"
        )
    return size


def _png_walk(data: bytes, header_only: bool = False) -> tuple[int, int]:
    """Walk a PNG's chunks, checking every CRC and the final IEND chunk; (H, W) from IHDR."""
    n, pos, idat = len(data), 8, False
    size: tuple[int, int] | None = None
    view = memoryview(data)
    while True:
        if pos + 8 > n:
            raise _Truncated(f"truncated PNG: file ends at byte {n} before the IEND chunk")
        length = int.from_bytes(data[pos:pos + 4], "big")
        ctype = bytes(data[pos + 4:pos + 8])
        if length > 0x7FFFFFFF or not ctype.isalpha():
            raise _Corrupt(f"corrupt PNG: invalid chunk header at byte {pos}")
        name, end = ctype.decode(), pos + 8 + length
        if end + 4 > n:
            raise _Truncated(
                f"truncated PNG: chunk {name} at byte {pos} needs {length + 12} bytes, "
                f"file ends at byte {n}"
            )
        if zlib.crc32(view[pos + 4:end]) != int.from_bytes(data[end:end + 4], "big"):
            raise _Corrupt(f"corrupt PNG: CRC mismatch in chunk {name} at byte {pos}")
        if size is None:
            if ctype != b"IHDR" or length != 13:
                raise _Corrupt(f"corrupt PNG: first chunk is {name}, not IHDR")
            w = int.from_bytes(data[pos + 8:pos + 12], "big")
            h = int.from_bytes(data[pos + 12:pos + 16], "big")
            if w == 0 or h == 0:
                raise _Corrupt(f"corrupt PNG: header claims {w}x{h} pixels")
            _check_pixels(h, w)
            size = (h, w)
            if header_only:
                return size
        idat |= ctype == b"IDAT"
        pos = end + 4
        if ctype == b"IEND":
            break
    if not idat:
        raise _Corrupt("corrupt PNG: no image data (IDAT chunk)")
    return size


def _walk(data: bytes, header_only: bool) -> tuple[int, int]:
    if not data:
        raise _Corrupt("empty file (0 bytes)")
    if data.startswith(_JPEG_SOI):
        return _jpeg_walk(data, header_only)
    if data.startswith(_PNG_SIGNATURE):
        return _png_walk(data, header_only)
    raise _Corrupt(f"not a JPEG or PNG file (starts with {bytes(data[:8])!r})")


def check_image_bytes(path: Path | str, data: bytes, what: str = "image",
                      header_only: bool = False) -> tuple[int, int]:
    """(H, W) of a JPEG or PNG file's bytes, after checking their structure and ``MAX_PIXELS``.

    Raises ``DatasetError`` naming ``path`` for an empty file, a file that is neither JPEG nor PNG,
    a truncated or damaged one, or one over the pixel limit. ``header_only`` stops at the size.
    """
    try:
        return _walk(data, header_only)
    except _TooLarge as exc:
        raise DatasetError(f"{path}: {what} too large: {exc}") from None
    except _Corrupt as exc:
        raise DatasetError(f"{path}: unreadable or corrupt {what}: {exc}") from None


def _read_bytes(path: Path, what: str) -> bytes:
    if not path.is_file():
        raise DatasetError(f"{path}: {what} file not found")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read {what} file: {exc}") from None


def image_size(path: Path | str, what: str = "image") -> tuple[int, int]:
    """(H, W) from the file header without decoding pixels; over ``MAX_PIXELS`` is an error."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: {what} file not found")
    try:
        with open(path, "rb") as fh:
            head = fh.read(_HEADER_READ)
            try:
                return _walk(head, header_only=True)
            except _Truncated:
                head += fh.read()  # a header longer than the first read (large EXIF, ICC profile)
            except (_Corrupt, _TooLarge):
                pass
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read {what} file: {exc}") from None
    return check_image_bytes(path, head, what, header_only=True)


def read_frame(path: Path | str) -> np.ndarray:
    """An RGB uint8 frame (H, W, 3); a damaged, truncated or oversized file is a ``DatasetError``."""
    path = Path(path)
    data = _read_bytes(path, "frame")
    check_image_bytes(path, data, "frame")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise DatasetError(f"{path}: unreadable or corrupt frame: OpenCV could not decode it")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_mask(path: Path | str) -> np.ndarray:
    """A mask as a 2-D uint8 array of values: palette index (DAVIS 2017, YouTube-VOS) or grey level.

    Real DAVIS 2016 files include grey+alpha PNGs; the alpha channel is dropped. RGB masks are
    converted to grey (any non-black pixel is foreground for binary datasets). The bytes are
    checked as a frame's are (``check_image_bytes``) before Pillow decodes them.
    """
    path = Path(path)
    data = _read_bytes(path, "mask")
    check_image_bytes(path, data, "mask")
    try:
        with Image.open(io.BytesIO(data)) as im:
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
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as exc:
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
