"""Damaged, oversized and ambiguous image files are DatasetErrors; dropped sequences are reported.

Why: a decoder that forgives damage hands the tracker wrong pixels without a word (OpenCV 4.10
decodes a truncated JPEG; OpenCV and Pillow decode a JPEG with overwritten entropy-coded data),
a PNG header can claim billions of pixels, and a sequence can vanish from a dataset unnoticed.
"""
from __future__ import annotations

import io
import struct
import warnings
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from bmvtrack.data import DatasetError, TrackFilter, VideoDataset, read_frame, read_mask
from bmvtrack.data.images import MAX_PIXELS, check_image_bytes, image_size
from bmvtrack.data.readers import DroppedSequenceWarning
from test_readers import KEEP_ALL, _frame, _grey_mask, make_davis


def _noise(h=240, w=320, seed=0) -> np.ndarray:
    """A textured RGB image: its JPEG has tens of KB of entropy-coded data, like a real frame."""
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (3, 3), 0)


def _jpeg(rgb: np.ndarray, *params: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90, *params])
    assert ok
    return buf.tobytes()


def _png(arr: np.ndarray, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", **kw)
    return buf.getvalue()


def _png_chunk(ctype: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + ctype + data + struct.pack(">I", zlib.crc32(ctype + data))


def _png_claiming(w: int, h: int) -> bytes:
    """A valid-looking grey PNG of a few hundred bytes whose header claims w x h pixels."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
            + _png_chunk(b"IDAT", zlib.compress(b"\0" * 4096)) + _png_chunk(b"IEND", b""))


def _ecs_span(jpeg: bytes) -> tuple[int, int]:
    """(start, end) of the entropy-coded data of a single-scan JPEG."""
    sos = jpeg.index(b"\xff\xda")
    start = sos + 2 + int.from_bytes(jpeg[sos + 2:sos + 4], "big")
    return start, jpeg.rindex(b"\xff\xd9")


def _garbage_mid_ecs(jpeg: bytes, seed: int = 0) -> bytes:
    """2 KB of random bytes written over the middle of the entropy-coded data."""
    start, end = _ecs_span(jpeg)
    assert end - start > 3 * 2048, "entropy-coded data too short for the test"
    mid = (start + end) // 2 - 1024
    garbage = np.random.default_rng(seed).integers(0, 256, 2048, dtype=np.uint8).tobytes()
    return jpeg[:mid] + garbage + jpeg[mid + 2048:]


def _corrupt(case: str, jpeg: bytes, png: bytes) -> tuple[str, bytes, str]:
    """(file name, bytes, expected problem) for one kind of damage."""
    if case == "truncated_jpeg":
        return "00003.jpg", jpeg[: len(jpeg) // 2], "truncated JPEG"
    if case == "garbage_jpeg":
        return "00003.jpg", _garbage_mid_ecs(jpeg), "corrupt JPEG"
    if case == "truncated_png":
        return "00003.png", png[: len(png) // 2], "truncated PNG"
    if case == "bad_crc_png":
        i = png.index(b"IDAT")
        n = int.from_bytes(png[i - 4:i], "big")
        crc = i + 4 + n
        return "00003.png", png[:crc] + bytes([png[crc] ^ 0xFF]) + png[crc + 1:], "CRC mismatch in chunk IDAT"
    if case == "bad_data_png":
        i = png.index(b"IDAT") + 4 + 100
        return "00003.png", png[:i] + bytes([png[i] ^ 0x55]) + png[i + 1:], "CRC mismatch in chunk IDAT"
    if case == "zero_bytes":
        return "00003.jpg", b"", "empty file"
    if case == "text_as_jpg":
        return "00003.jpg", b"this is not an image\n" * 10, "not a JPEG or PNG file"
    raise AssertionError(case)


CASES = ["truncated_jpeg", "garbage_jpeg", "truncated_png", "bad_crc_png", "bad_data_png", "zero_bytes", "text_as_jpg"]
MASK_CASES = ["truncated_png", "bad_crc_png", "bad_data_png", "zero_bytes", "text_as_jpg"]


@pytest.fixture(scope="module")
def encoded() -> tuple[bytes, bytes, bytes]:
    """(frame JPEG, frame PNG, mask PNG) of valid, textured images."""
    img = _noise()
    mask = ((_noise(seed=1)[..., 0] > 128) * 255).astype(np.uint8)
    return _jpeg(img), _png(img), _png(mask)


def _assert_names_file(err: pytest.ExceptionInfo, path: Path, problem: str) -> None:
    msg = str(err.value)
    assert str(path) in msg and problem in msg, msg
    assert "\n" not in msg


@pytest.mark.parametrize("case", CASES)
def test_damaged_frame_is_dataset_error(tmp_path, encoded, case):
    name, data, problem = _corrupt(case, encoded[0], encoded[1])
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(DatasetError) as err:
        read_frame(path)
    _assert_names_file(err, path, problem)


@pytest.mark.parametrize("case", MASK_CASES)
def test_damaged_mask_is_dataset_error(tmp_path, encoded, case):
    name, data, problem = _corrupt(case, encoded[0], encoded[2])
    path = tmp_path / "00003.png"  # masks are PNGs; the content decides, not the name
    path.write_bytes(data)
    with pytest.raises(DatasetError) as err:
        read_mask(path)
    _assert_names_file(err, path, problem)


def test_decoders_alone_miss_the_damage(encoded):
    """The premise: without the byte checks these files decode into wrong pixels, silently."""
    jpeg, png = encoded[0], encoded[1]
    good = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    bad = cv2.imdecode(np.frombuffer(_garbage_mid_ecs(jpeg), np.uint8), cv2.IMREAD_COLOR)
    assert bad is not None and bad.shape == good.shape
    assert np.mean(np.abs(bad.astype(int) - good).max(axis=2) > 8) > 0.2  # a fifth of the pixels or more
    _, crc_bad, _ = _corrupt("bad_crc_png", jpeg, png)
    with Image.open(io.BytesIO(crc_bad)) as im:
        im.load()  # Pillow does not check the CRCs of image data
        assert im.size == (320, 240)


@pytest.mark.parametrize("seed", range(8))
def test_overwritten_jpeg_is_caught_for_any_random_garbage(tmp_path, encoded, seed):
    path = tmp_path / "f.jpg"
    path.write_bytes(_garbage_mid_ecs(encoded[0], seed))
    with pytest.raises(DatasetError, match="corrupt JPEG"):  # "corrupt" or "truncated or corrupt"
        read_frame(path)


def test_end_of_image_marker_inside_overwritten_bytes(tmp_path, encoded):
    """Overwritten bytes that happen to hold FF D9 end the walk early; the real EOI still follows."""
    jpeg = encoded[0]
    start, end = _ecs_span(jpeg)
    mid = (start + end) // 2
    path = tmp_path / "f.jpg"
    path.write_bytes(jpeg[:mid] + b"\xff\xd9" + b"\x11" * 2046 + jpeg[mid + 2048:])
    with pytest.raises(DatasetError, match="followed by .* another end-of-image marker"):
        read_frame(path)


@pytest.mark.parametrize("case", ["truncated_jpeg", "garbage_jpeg", "truncated_png", "bad_crc_png"])
def test_errors_do_not_depend_on_the_opencv_version(tmp_path, encoded, monkeypatch, case):
    """A lenient decoder (OpenCV 4.10 returns a truncated JPEG as an image) changes nothing."""
    name, data, problem = _corrupt(case, encoded[0], encoded[1])
    path = tmp_path / name
    path.write_bytes(data)
    calls = []
    monkeypatch.setattr(cv2, "imdecode", lambda buf, flags: calls.append(1) or np.zeros((240, 320, 3), np.uint8))
    with pytest.raises(DatasetError, match=problem):
        read_frame(path)
    assert not calls  # refused before any decoder saw the bytes


def test_damaged_files_in_a_dataset(tmp_path, encoded):
    root = make_davis(tmp_path, n_frames=4, h=240, w=320)
    (root / "JPEGImages/480p/seq/00001.jpg").write_bytes(_jpeg(_noise()))
    ds = VideoDataset(root, filters=KEEP_ALL)
    track = ds.tracks()[0]
    p = track.frame_paths[1]
    p.write_bytes(_garbage_mid_ecs(p.read_bytes()))  # damaged after the scan read its header
    with pytest.raises(DatasetError, match="00001.jpg: unreadable or corrupt frame: corrupt JPEG"):
        ds.frame(track, 1)
    m = root / "Annotations/480p/seq/00002.png"
    m.write_bytes(m.read_bytes()[:-12])  # IEND cut off
    with pytest.raises(DatasetError, match="00002.png: unreadable or corrupt mask: truncated PNG"):
        VideoDataset(root, filters=KEEP_ALL).tracks()


# ------------------------------------------------------------------ valid data is unchanged


def _valid_files() -> dict[str, bytes]:
    img = _noise(120, 160)
    grey = img[..., 0]
    out = {
        "baseline.jpg": _jpeg(img),
        "progressive.jpg": _jpeg(img, cv2.IMWRITE_JPEG_PROGRESSIVE, 1),
        "optimized.jpg": _jpeg(img, cv2.IMWRITE_JPEG_OPTIMIZE, 1),
        "restart_markers.jpg": _jpeg(img, cv2.IMWRITE_JPEG_RST_INTERVAL, 3),
        "grey.jpg": cv2.imencode(".jpg", grey)[1].tobytes(),
        "rgb.png": _png(img),
        "grey16.png": cv2.imencode(".png", grey.astype(np.uint16) * 257)[1].tobytes(),
        "grey_alpha.png": _png(np.dstack([grey, grey])),
    }
    buf = io.BytesIO()
    Image.fromarray(img).quantize(16).save(buf, format="PNG", transparency=0)
    out["palette.png"] = buf.getvalue()
    buf = io.BytesIO()  # a header longer than image_size's first read: a 100 KB ICC profile
    Image.fromarray(img).save(buf, format="JPEG", quality=90, icc_profile=b"\0" * 100_000, progressive=True)
    out["big_header.jpg"] = buf.getvalue()
    out["trailer.jpg"] = out["baseline.jpg"] + b"vendor trailer after EOI"
    out["double_eoi.jpg"] = out["baseline.jpg"] + b"\xff\xd9\x00\x00"
    out["second_image.jpg"] = out["baseline.jpg"] + out["grey.jpg"]
    return out


@pytest.mark.parametrize("name", sorted(_valid_files()))
def test_valid_files_read_as_before(tmp_path, name):
    data = _valid_files()[name]
    path = tmp_path / name
    path.write_bytes(data)
    expected = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    frame = read_frame(path)
    assert frame.dtype == np.uint8 and np.array_equal(frame, expected)  # exactly the old decode
    assert image_size(path) == check_image_bytes(path, data) == frame.shape[:2]
    if name.endswith(".png"):
        assert read_mask(path).shape == frame.shape[:2]


def test_real_davis2016_files_pass_the_checks(davis2016_root):
    files = sorted(davis2016_root.glob("JPEGImages/*/*/*.jpg")) + sorted(davis2016_root.glob("Annotations/*/*/*.png"))
    assert len(files) > 4000
    for p in files:
        check_image_bytes(p, p.read_bytes())
    bear = davis2016_root / "JPEGImages/480p/bear/00000.jpg"
    data = bear.read_bytes()
    expected = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert np.array_equal(read_frame(bear), expected) and expected.shape == (480, 854, 3)


@pytest.mark.parametrize("case", ["truncated_jpeg", "garbage_jpeg"])
def test_real_480p_frame_damage_is_caught(tmp_path, davis2016_root, case):
    data = (davis2016_root / "JPEGImages/480p/bear/00000.jpg").read_bytes()
    name, bad, problem = _corrupt(case, data, b"")
    path = tmp_path / name
    path.write_bytes(bad)
    with pytest.raises(DatasetError) as err:
        read_frame(path)
    _assert_names_file(err, path, problem)


# ------------------------------------------------------------------ sizes and decompression bombs


def test_png_claiming_30000_squared_pixels_is_refused(tmp_path):
    bomb = _png_claiming(30000, 30000)
    with pytest.raises(Image.DecompressionBombError):  # what escaped as a traceback before
        Image.open(io.BytesIO(bomb))
    path = tmp_path / "00000.png"
    path.write_bytes(bomb)
    for read in (read_frame, read_mask, image_size):
        with pytest.raises(DatasetError) as err:
            read(path)
        _assert_names_file(err, path, "30000x30000 pixels")
        assert "too large" in str(err.value)


@pytest.mark.parametrize("where", ["frame", "first_mask", "later_mask"])
def test_bomb_in_a_dataset_is_a_dataset_error(tmp_path, where):
    root = make_davis(tmp_path, n_frames=3)
    path = {
        "frame": root / "JPEGImages/480p/seq/00001.jpg",
        "first_mask": root / "Annotations/480p/seq/00000.png",  # read by layout detection
        "later_mask": root / "Annotations/480p/seq/00002.png",
    }[where]
    path.write_bytes(_png_claiming(30000, 30000))
    with pytest.raises(DatasetError, match=f"{path.name}: (frame|mask|image) too large"):
        VideoDataset(root, filters=KEEP_ALL).tracks()


def test_pixel_limit_is_8k_uhd_and_checked_from_the_header(tmp_path):
    assert MAX_PIXELS == 7680 * 4320
    ok, over = tmp_path / "8k.png", tmp_path / "over.png"
    ok.write_bytes(_png_claiming(7680, 4320))
    over.write_bytes(_png_claiming(7681, 4320))
    assert image_size(ok) == (4320, 7680)
    with pytest.raises(DatasetError, match="over.png: image too large"):
        image_size(over)
    jpeg = bytearray(_jpeg(_noise(64, 64)))  # a small JPEG whose frame header now claims 10000 x 10000
    sof = jpeg.index(b"\xff\xc0")
    jpeg[sof + 5:sof + 9] = struct.pack(">HH", 10000, 10000)
    big = tmp_path / "big.jpg"
    big.write_bytes(bytes(jpeg))
    with pytest.raises(DatasetError, match="big.jpg: frame too large: header claims 10000x10000"):
        read_frame(big)


# ------------------------------------------------------------------ ambiguous frame files


@pytest.mark.parametrize("folder, other", [("JPEGImages", "00002.png"), ("JPEGImages", "00002.jpeg"),
                                           ("Annotations", "00002.jpg")])
def test_same_frame_name_twice_is_ambiguous(tmp_path, folder, other):
    root = make_davis(tmp_path, n_frames=3)
    seq = root / folder / "480p/seq"
    existing = "00002.jpg" if folder == "JPEGImages" else "00002.png"
    (seq / other).write_bytes((seq / existing).read_bytes())
    with pytest.raises(DatasetError) as err:
        VideoDataset(root, filters=KEEP_ALL).tracks()
    msg = str(err.value)
    assert str(seq) in msg and existing in msg and other in msg and "ambiguous" in msg, msg


# ------------------------------------------------------------------ dropped sequences


def _add_sequence(root: Path, name: str, n_frames: int, box=(4, 10, 3, 9)) -> None:
    for t in range(n_frames):
        _frame(root / f"JPEGImages/480p/{name}/{t:05d}.jpg")
        m = np.zeros((24, 32), np.uint8)
        y0, y1, x0, x1 = box
        m[y0:y1, x0:x1] = 255
        _grey_mask(root / f"Annotations/480p/{name}/{t:05d}.png", m)


def test_one_frame_sequence_is_dropped_and_reported(tmp_path):
    root = make_davis(tmp_path, palette=False)
    _add_sequence(root, "short", 1)
    with pytest.warns(DroppedSequenceWarning, match=r"dropped 1 of 2 sequences .*short: 1 annotated frame"):
        ds = VideoDataset(root, filters=KEEP_ALL)
        tracks = ds.tracks()
    assert [t.sequence for t in tracks] == ["seq"]
    assert ds.dropped == {"short": "1 annotated frame(s), min_frames is 2"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ds.tracks() is tracks and "short" in ds.dropped  # reported once, remembered
    with pytest.warns(DroppedSequenceWarning):  # available before tracks(): the first access scans
        assert list(VideoDataset(root, filters=KEEP_ALL).dropped) == ["short"]


def test_filtered_and_empty_sequences_name_their_reason(tmp_path):
    root = make_davis(tmp_path, palette=False)
    _add_sequence(root, "big", 3, box=(0, 24, 0, 30))  # the object spans the whole frame height
    _add_sequence(root, "empty", 3, box=(0, 0, 0, 0))
    with pytest.warns(DroppedSequenceWarning) as rec:
        ds = VideoDataset(root, filters=TrackFilter(absent="keep", max_box_fraction=0.7))
        assert [t.sequence for t in ds.tracks()] == ["seq"]
    assert len(rec) == 1 and "big: object 1 box spans 100% of the frame" in str(rec[0].message)
    assert ds.dropped == {
        "big": "object 1 box spans 100% of the frame, max_box_fraction is 0.7",
        "empty": "no object in its 3 annotated masks",
    }


def test_nothing_dropped_means_no_warning(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = VideoDataset(make_davis(tmp_path), filters=KEEP_ALL)
        assert len(ds.tracks()) == 2 and ds.dropped == {}


def test_all_dropped_error_says_why(tmp_path):
    root = tmp_path
    _add_sequence(root, "short", 1)
    with pytest.raises(DatasetError, match="no tracks .* dropped: short: 1 annotated frame"):
        VideoDataset(root, filters=KEEP_ALL).tracks()


def test_real_davis2016_dropped_sequences(davis2016_root):
    with pytest.warns(DroppedSequenceWarning, match="dropped 14 of 30 sequences"):
        ds = VideoDataset(davis2016_root, resolution="240p", filters=TrackFilter())
        kept = {t.sequence for t in ds.tracks()}
    dropped = ds.dropped
    assert len(dropped) == 14 and not kept & set(dropped) and len(kept | set(dropped)) == 30
    assert dropped["bmx-bumps"] == "object 1 absent in 14 of 90 frames, absent='drop'"
    assert all("max_box_fraction is 0.7" in why for seq, why in dropped.items() if seq != "bmx-bumps")
