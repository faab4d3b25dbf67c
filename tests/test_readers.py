"""Dataset readers on the real DAVIS 2016 data and on small made-up folders, bad input included."""
from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bmvtrack.data import DatasetError, FrameCache, TrackFilter, VideoDataset
from bmvtrack.data.readers import DroppedSequenceWarning

KEEP_ALL = TrackFilter(absent="keep", max_box_fraction=1.0)
PALETTE = [0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * (256 * 3 - 9)


def _frame(path: Path, h=24, w=32, value=100):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), value, np.uint8)).save(path)


def _palette_mask(path: Path, arr: np.ndarray):
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(arr.astype(np.uint8), mode="P")
    im.putpalette(PALETTE)
    im.save(path)


def _grey_mask(path: Path, arr: np.ndarray):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr.astype(np.uint8), mode="L").save(path)


def _ihdr(w: int, h: int) -> bytes:
    """The 8-bit grey IHDR body and CRC of a PNG of w x h pixels."""
    body = b"IHDR" + struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return body[4:] + struct.pack(">I", zlib.crc32(body))


def make_davis(root: Path, n_frames=4, palette=True, h=24, w=32) -> Path:
    for t in range(n_frames):
        _frame(root / "JPEGImages/480p/seq/" / f"{t:05d}.jpg", h, w)
        m = np.zeros((h, w), np.uint8)
        m[4:10, 3 + t:9 + t] = 1 if palette else 255
        if palette:
            m[14:20, 20:26] = 2
            m[0, :] = 255  # void border
            _palette_mask(root / "Annotations/480p/seq/" / f"{t:05d}.png", m)
        else:
            _grey_mask(root / "Annotations/480p/seq/" / f"{t:05d}.png", m)
    return root


def make_ytvos(root: Path, n_frames=11, h=24, w=32) -> Path:
    base = root / "train"
    frames = []
    for t in range(n_frames):
        _frame(base / "JPEGImages/vid" / f"{t:05d}.jpg", h, w)
        if t % 5 == 0:
            m = np.zeros((h, w), np.uint8)
            m[2:8, 2 + t:8 + t] = 1
            _palette_mask(base / "Annotations/vid" / f"{t:05d}.png", m)
            frames.append(f"{t:05d}")
    meta = {"videos": {"vid": {"objects": {"1": {"category": "cat", "frames": frames}}}}}
    (base / "meta.json").write_text(json.dumps(meta))
    return root


def test_real_davis2016_reads_every_sequence(davis2016_root):
    ds = VideoDataset(davis2016_root, resolution="240p", filters=KEEP_ALL)
    assert ds.layout == "davis2016"
    tracks = ds.tracks()
    assert len(tracks) == 30
    # 2,079 annotated frames; surf's last mask is empty, and a track ends where its object is last seen
    assert sum(len(t) for t in tracks) == 2078
    assert sum(t.present.count(False) for t in tracks) == 14  # bmx-bumps: the rider is hidden
    frame, mask = ds.frame(tracks[0], 0), ds.mask(tracks[0], 0)
    assert frame.shape == (240, 427, 3) and mask.shape == (240, 427) and mask.any()


def test_real_davis2016_dev_split_and_resolutions(davis2016_root):
    with pytest.raises(DatasetError, match="resolution"):
        VideoDataset(davis2016_root)  # both 240p and 480p exist: must choose
    train = VideoDataset(davis2016_root, resolution="240p", split="dev/train", filters=KEEP_ALL).tracks()
    val = VideoDataset(davis2016_root, resolution="240p", split="val", filters=KEEP_ALL).tracks()
    assert len(train) == 24 and len(val) == 6
    assert not {t.sequence for t in train} & {t.sequence for t in val}
    with pytest.warns(DroppedSequenceWarning, match="max_box_fraction"):  # dropped, and said so
        paper = VideoDataset(davis2016_root, resolution="240p", filters=TrackFilter()).tracks()
    assert 0 < len(paper) < 30  # the paper's 70 % size filter removes the big objects


def test_real_grey_alpha_mask_is_read(davis2016_root):
    ds = VideoDataset(davis2016_root, resolution="480p", filters=KEEP_ALL)
    (bear,) = ds.tracks()
    i = bear.frame_names.index("00077")
    assert Image.open(bear.mask_paths[i]).mode == "LA"
    m, prev = ds.mask(bear, i), ds.mask(bear, i - 1)
    assert m.shape == (480, 854)
    assert (m & prev).sum() / (m | prev).sum() > 0.8  # the same bear as in the previous frame


def test_davis2017_palette_objects_and_void(tmp_path):
    ds = VideoDataset(make_davis(tmp_path), filters=KEEP_ALL)
    assert ds.layout == "davis2017" and ds.resolution == "480p"
    tracks = ds.tracks()
    assert [t.object_id for t in tracks] == [1, 2]
    m = ds.mask(tracks[0], 2)
    assert m.sum() == 36 and not m[0].any()  # void row is not the object
    assert ds.void(tracks[0], 0)[0].all()


def test_davis2016_grey_layout(tmp_path):
    ds = VideoDataset(make_davis(tmp_path, palette=False), filters=KEEP_ALL)
    assert ds.layout == "davis2016" and len(ds.tracks()) == 1 and ds.mask(ds.tracks()[0], 0).sum() == 36


def test_youtube_vos_every_fifth_frame(tmp_path):
    ds = VideoDataset(make_ytvos(tmp_path), filters=KEEP_ALL)
    (t,) = ds.tracks()
    assert ds.layout == "youtube-vos" and t.frame_names == ("00000", "00005", "00010")
    assert t.frame_step == 5 and t.category == "cat"


def test_absent_policy_and_size_filter(tmp_path):
    root = make_davis(tmp_path, n_frames=3)
    m = np.zeros((24, 32), np.uint8); m[14:20, 20:26] = 2  # object 1 vanishes in frame 1
    _palette_mask(root / "Annotations/480p/seq/00001.png", m)
    kept = VideoDataset(root, filters=KEEP_ALL).tracks()
    assert kept[0].present == (True, False, True)
    dropped = VideoDataset(root, filters=TrackFilter(absent="drop", max_box_fraction=1.0)).tracks()
    assert [t.object_id for t in dropped] == [2]
    with pytest.raises(DatasetError, match="no tracks"):  # both 6-px objects reach 25 % of the 24-px height
        VideoDataset(root, filters=TrackFilter(absent="keep", max_box_fraction=0.2)).tracks()
    assert len(VideoDataset(root, filters=TrackFilter(absent="keep", max_box_fraction=0.3)).tracks()) == 2


@pytest.mark.parametrize(
    "breakage, message",
    [
        ("no_annotations", "Annotations"),
        ("frame_without_mask", "frames without masks"),
        ("mask_without_frame", "masks without frames"),
        ("corrupt_frame", "00001.jpg"),
        ("corrupt_mask", "unreadable or corrupt mask"),
        ("ambiguous_frame", "ambiguous image files 00001.jpg and 00001.png"),
        ("huge_mask", "00001.png: mask too large"),
        ("mask_size", "mask size"),
        ("empty", "no annotation masks"),
        ("wrong_layout", "meta.json"),
    ],
)
def test_bad_input_names_file_and_problem(tmp_path, breakage, message):
    root = make_davis(tmp_path / "d")
    seq_f, seq_m = root / "JPEGImages/480p/seq", root / "Annotations/480p/seq"
    layout = "auto"
    if breakage == "no_annotations":
        import shutil; shutil.rmtree(root / "Annotations")
    elif breakage == "frame_without_mask":
        (seq_m / "00002.png").unlink()
    elif breakage == "mask_without_frame":
        (seq_f / "00002.jpg").unlink()
    elif breakage == "corrupt_frame":
        (seq_f / "00001.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    elif breakage == "corrupt_mask":
        (seq_m / "00001.png").write_bytes(b"garbage")
    elif breakage == "ambiguous_frame":
        _frame(seq_f / "00001.png")
    elif breakage == "huge_mask":  # a grey PNG whose header claims 20000 x 20000 pixels
        small = (seq_m / "00001.png").read_bytes()
        (seq_m / "00001.png").write_bytes(small[:16] + _ihdr(20000, 20000) + small[33:])
    elif breakage == "mask_size":
        _palette_mask(seq_m / "00001.png", np.zeros((10, 10), np.uint8))
    elif breakage == "empty":
        for p in seq_m.iterdir(): p.unlink()
        for p in seq_f.iterdir(): p.unlink()
    elif breakage == "wrong_layout":
        layout = "youtube-vos"
    with pytest.raises(DatasetError, match=message):
        VideoDataset(root, layout=layout, filters=KEEP_ALL).tracks()


def test_frame_decode_error_names_file(tmp_path):
    root = make_davis(tmp_path)
    ds = VideoDataset(root, filters=KEEP_ALL)
    t = ds.tracks()[0]
    p = t.frame_paths[3]
    data = p.read_bytes()
    p.write_bytes(data[:30])  # truncated after the header was read at scan time
    with pytest.raises(DatasetError, match="00003.jpg"):
        ds.frame(t, 3)


def test_missing_root():
    with pytest.raises(DatasetError, match="not found"):
        VideoDataset("/nonexistent/folder")


def test_frame_cache_is_bounded_and_hits():
    cache = FrameCache(max_bytes=3000)
    loads = []
    for i in [0, 1, 2, 0, 3, 4]:
        cache.get(str(i), lambda i=i: loads.append(i) or np.zeros(1000, np.uint8))
    assert cache.nbytes <= 3000 and len(cache) == 3
    assert loads == [0, 1, 2, 3, 4] and cache.hits == 1
    arr = cache.get("4", lambda: np.zeros(1))
    with pytest.raises(ValueError):
        arr[0] = 1  # shared arrays are read-only


def test_augmented_tracks_mirror_and_reverse(tmp_path):
    """Four variants per track: a mirrored track reads mirrored frames and masks (the original's stay
    as they were), a reversed one runs from the last frame with the object back to the first."""
    from bmvtrack.data.readers import augmented_tracks

    root = make_davis(tmp_path, n_frames=4)
    ds = VideoDataset(root, filters=KEEP_ALL)
    t = ds.tracks()[0]
    out = augmented_tracks([t], ["flip", "reverse"])
    assert [u.name for u in out] == ["seq/1", "seq/1~flip", "seq/1~rev", "seq/1~flip~rev"]
    flip, rev, both = out[1], out[2], out[3]
    assert np.array_equal(ds.mask(flip, 2), ds.mask(t, 2)[:, ::-1]) and not np.array_equal(ds.mask(flip, 2), ds.mask(t, 2))
    assert np.array_equal(ds.frame(flip, 1), ds.frame(t, 1)[:, ::-1])
    assert np.array_equal(ds.mask(t, 2)[4, 3 + 2:9 + 2], np.ones(6, bool))  # the cached original is not mirrored
    assert rev.frame_names == ("00003", "00002", "00001", "00000")
    assert np.array_equal(ds.mask(rev, 0), ds.mask(t, 3)) and np.array_equal(ds.mask(both, 0), ds.mask(t, 3)[:, ::-1])
    assert augmented_tracks([t], []) == [t] and len(augmented_tracks([t], ["reverse"])) == 2
    with pytest.raises(ValueError, match="unknown.*spin"):
        augmented_tracks([t], ["spin"])


def test_reversed_track_starts_where_the_object_is_seen(tmp_path):
    """A track that ends with frames without its object (as a reader with absent='keep' may give)
    is reversed from its last frame with the object."""
    from dataclasses import replace

    from bmvtrack.data.readers import augmented_tracks

    (t, *_) = VideoDataset(make_davis(tmp_path, n_frames=3), filters=KEEP_ALL).tracks()
    t = replace(t, present=(True, True, False))
    rev = augmented_tracks([t], ["reverse"])[1]
    assert rev.present == (True, True) and rev.frame_names == ("00001", "00000")
