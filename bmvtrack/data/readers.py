"""Readers for DAVIS 2016, DAVIS 2017 and YouTube-VOS folders, yielding single-object tracks.

A *track* is one object of one video over its annotated frames in order (for YouTube-VOS every
5th frame; the step is kept in ``Track.frame_step``). The paper's pre-processing (appendix 2.1)
is a ``TrackFilter``: drop a track whose object is absent in some frame (or keep it and mark the
frame absent), and drop a track whose object box reaches ≥ 70 % of the frame width or height.
Every problem on disk raises ``DatasetError`` naming the file or folder. A sequence that yields no
track is not an error but is reported: a ``DroppedSequenceWarning`` and ``VideoDataset.dropped``,
so that a filter or a one-frame video never shrinks a dataset unnoticed.

Folds: a ``split`` of the form ``<folds file>:<fold>:<part>`` (e.g.
``configs/folds/davis2016_3fold.yaml:0:test``) selects sequences by a committed folds file, for any
layout: ``test`` is fold ``<fold>``'s sequences, ``train`` those of all the other folds of the file
(``FoldSplit``, ``load_folds``); ``<folds file>:all`` is every sequence of the file (what a
model shipped after the cross-validation trains on). Being a split, it goes wherever a split goes — a config's
``data.split``, ``eval_split``, ``val_split``, the commands' ``--split`` — so a held-out set swapped
in for a split is another part of the same fold, never a filter stacked on the training part.

Training augmentation (``augmented_tracks``): each track also played mirrored left to right
(``Track.flip``: the reader mirrors its frames and masks) and backwards in time (its frame lists
reversed), so a training set of N sequences gives up to 4N tracks with the motion statistics of real
video: a mirror changes the sign of the horizontal motion and of the rotation, a reversal inverts each
step. The variants carry their own names (``bear/1~flip~rev``), so caches keyed by track keep them apart.
"""
from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, UnidentifiedImageError

from bmvtrack.data.images import DatasetError, FrameCache, image_size, read_frame, read_mask

Layout = Literal["auto", "davis2016", "davis2017", "youtube-vos"]
LAYOUTS = ("davis2016", "davis2017", "youtube-vos")
VOID = 255  # DAVIS 2017 / YouTube-VOS "ignore" label
IMAGE_EXTS = (".jpg", ".jpeg", ".png")
AUGMENTS = ("flip", "reverse")  # augmented_tracks: mirrored left to right, played backwards


class DroppedSequenceWarning(UserWarning):
    """Sequences of a dataset yield no track (filters, too few frames); the message says why."""


@dataclass
class TrackFilter:
    """The paper's track filters (appendix 2.1), as configuration."""

    absent: Literal["drop", "keep"] = "drop"  # object fully absent in a frame: drop the track, or keep and mark it
    max_box_fraction: float = field(default=0.7, metadata={"gt": 0.0})  # drop tracks whose box reaches this fraction of frame width or height (≥1 disables)
    min_frames: int = field(default=2, metadata={"ge": 1})  # a track needs at least this many annotated frames


FoldPart = Literal["train", "test", "all"]
FOLD_PARTS = ("train", "test")
FOLD_SPLIT_FORM = ("<folds file>:<fold>:<part> (part train or test), e.g. configs/folds/davis2016_3fold.yaml:0:test, "
                   "or <folds file>:all")


def load_folds(path: str | Path) -> list[list[str]]:
    """The folds of a folds file (YAML ``folds: [[seq, ...], ...]``), checked to be a partition:
    at least two folds, none empty, no sequence twice. Every problem is a one-line DatasetError."""
    from bmvtrack.config import ConfigError, read_yaml

    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: folds file not found")
    try:
        data = read_yaml(path)
    except ConfigError as exc:  # not YAML, or not a mapping
        raise DatasetError(" ".join(str(exc).split())) from None
    if set(data) != {"folds"}:
        raise DatasetError(f"{path}: a folds file is a mapping with the one key 'folds' (a list of lists of "
                           f"sequence names), got keys {sorted(data)}")
    folds = data["folds"]
    if not isinstance(folds, list) or len(folds) < 2:
        raise DatasetError(f"{path}: 'folds' must be a list of at least 2 folds (lists of sequence names)")
    seen: dict[str, int] = {}
    for k, fold in enumerate(folds):
        if not isinstance(fold, list) or not fold:
            raise DatasetError(f"{path}: not a partition: fold {k} is {'empty' if fold in ([], None) else 'not a list'}")
        for name in fold:
            if not isinstance(name, str) or not name:
                raise DatasetError(f"{path}: fold {k} holds {name!r}, not a sequence name")
            if name in seen:
                where = f"fold {k} twice" if seen[name] == k else f"folds {seen[name]} and {k}"
                raise DatasetError(f"{path}: not a partition: sequence '{name}' is in {where}")
            seen[name] = k
    return [list(f) for f in folds]


@dataclass(frozen=True)
class FoldSplit:
    """A split ``<folds file>:<fold>:<part>``: fold ``fold``'s sequences (``test``) or the other folds'
    (``train``); ``<folds file>:all`` (part ``all``, fold -1) is every sequence of the file."""

    path: Path
    fold: int
    part: FoldPart

    @classmethod
    def parse(cls, split: str | None) -> "FoldSplit | None":
        """The fold selection ``split`` names; None for an ordinary split (one naming no .yaml/.yml
        file). A split that names a folds file but is malformed raises DatasetError."""
        if split is None or not re.search(r"\.ya?ml(:|$)", split):
            return None
        head, _, tail = split.rpartition(":")
        if tail.strip() == "all" and re.fullmatch(r"\.ya?ml", Path(head).suffix):
            return cls(Path(head), -1, "all")
        parts = split.rsplit(":", 2)
        if len(parts) != 3 or not re.fullmatch(r"\.ya?ml", Path(parts[0]).suffix):
            raise DatasetError(f"split '{split}': a fold selection is {FOLD_SPLIT_FORM}")
        path, fold, part = parts
        if not re.fullmatch(r"\d+", fold.strip()):
            raise DatasetError(f"split '{split}': fold must be a whole number >= 0, got '{fold}' ({FOLD_SPLIT_FORM})")
        if part.strip() not in FOLD_PARTS:
            raise DatasetError(f"split '{split}': part must be train or test, got '{part}' ({FOLD_SPLIT_FORM})")
        return cls(Path(path), int(fold), part.strip())  # type: ignore[arg-type]

    def sequences(self) -> list[str]:
        """The selected sequences, sorted; an unknown fold is a DatasetError."""
        folds = load_folds(self.path)
        if self.part == "all":
            return sorted(s for f in folds for s in f)
        if self.fold >= len(folds):
            raise DatasetError(f"{self.path}: no fold {self.fold}; the file has folds 0 to {len(folds) - 1}")
        if self.part == "test":
            return sorted(folds[self.fold])
        return sorted(s for k, f in enumerate(folds) if k != self.fold for s in f)

    def __str__(self) -> str:
        return f"{self.path}:all" if self.part == "all" else f"{self.path}:{self.fold}:{self.part}"


@dataclass
class DataConfig:
    """Where a dataset is and how to read it."""

    root: str = "data/synth"  # dataset folder (or set BMVTRACK_DATA); the synthetic default is generated there
    layout: Layout = "auto"  # davis2016 | davis2017 | youtube-vos | auto (detected)
    resolution: str | None = None  # DAVIS resolution folder (480p, 240p, Full-Resolution); detected if only one
    split: str | None = None  # DAVIS: ImageSets file ('dev/train', 'train', ...); YouTube-VOS: split folder; any layout: <folds file>:<fold>:<train|test>
    filters: TrackFilter = field(default_factory=TrackFilter)
    cache_mb: int = field(default=512, metadata={"ge": 0})  # decoded-frame cache size (0 = none)

    def __post_init__(self) -> None:
        """A malformed fold selection is a config error at once (the folds file is read when the data is)."""
        from bmvtrack.config import ConfigError

        try:
            FoldSplit.parse(self.split)
        except DatasetError as exc:
            raise ConfigError(f"data: {exc}") from None


@dataclass(frozen=True)
class Track:
    """One object of one video: annotated frames in order, their masks, and metadata."""

    sequence: str
    object_id: int
    frame_paths: tuple[Path, ...]
    mask_paths: tuple[Path, ...]
    frame_names: tuple[str, ...]
    present: tuple[bool, ...]
    size: tuple[int, int]  # (H, W)
    frame_step: int = 1
    category: str = ""
    layout: str = ""
    binary: bool = False  # DAVIS 2016: any non-zero grey level is the object
    flip: bool = False  # frames and masks mirrored left to right (a training augmentation)
    reverse: bool = False  # frames in reverse order (a training augmentation; the lists are already reversed)

    @property
    def variant(self) -> str:
        """The augmentation's suffix of names and keys ("" for the track as recorded)."""
        return ("~flip" if self.flip else "") + ("~rev" if self.reverse else "")

    @property
    def name(self) -> str:
        return f"{self.sequence}/{self.object_id}{self.variant}"

    def __len__(self) -> int:
        return len(self.frame_paths)


@dataclass
class _ObjectScan:
    present: list[bool]
    max_extent_fraction: float


def _natural_key(name: str) -> tuple:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name))


def _list_images(folder: Path) -> dict[str, Path]:
    """Image files by frame name; two files for one name (00003.jpg, 00003.png) are an error,
    since picking either silently could pair a frame with the wrong mask."""
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir(), key=lambda p: _natural_key(p.name)):
        if p.is_file() and p.suffix.lower() in IMAGE_EXTS and not p.name.startswith("."):
            if p.stem in out:
                raise DatasetError(
                    f"{folder}: ambiguous image files {out[p.stem].name} and {p.name} for frame "
                    f"'{p.stem}'; keep one"
                )
            out[p.stem] = p
    return out


def _image_size(path: Path) -> tuple[int, int]:
    """(H, W) of a frame from its header, without decoding pixels; refuses sizes over MAX_PIXELS."""
    return image_size(path, "frame")


def _mask_mode(path: Path) -> str:
    """The PIL mode of a mask, from its header (after the size check: a bomb never reaches PIL)."""
    image_size(path, "mask")
    try:
        with Image.open(path) as im:
            return im.mode
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DatasetError(f"{path}: unreadable or corrupt mask: {exc}") from None


def _frame_step(names: list[str]) -> int:
    nums = [int(n) for n in names if n.isdigit()]
    if len(nums) < 2:
        return 1
    return max(1, int(np.median(np.diff(nums))))


def detect_layout(root: Path) -> str:
    """Guess the layout from the folder structure (and the first mask's format for DAVIS)."""
    if (root / "JPEGImages").is_dir() and (root / "Annotations").is_dir():
        ann = root / "Annotations"
        for res in sorted(p for p in ann.iterdir() if p.is_dir()):
            for seq in sorted(p for p in res.iterdir() if p.is_dir()):
                masks = _list_images(seq)
                if masks:
                    return "davis2017" if _mask_mode(next(iter(masks.values()))) == "P" else "davis2016"
        raise DatasetError(f"{ann}: no annotation masks found")
    if any((root / s / "JPEGImages").is_dir() for s in ("train", "valid", "test")) or (
        (root / "meta.json").is_file() and (root / "JPEGImages").is_dir()
    ):
        return "youtube-vos"
    raise DatasetError(
        f"{root}: not a DAVIS (JPEGImages/, Annotations/) or YouTube-VOS (<split>/JPEGImages/, "
        "<split>/Annotations/, <split>/meta.json) dataset folder"
    )


class VideoDataset:
    """An annotated video dataset on disk; ``tracks()`` gives its filtered single-object tracks."""

    def __init__(
        self,
        root: str | Path,
        layout: Layout = "auto",
        resolution: str | None = None,
        split: str | None = None,
        filters: TrackFilter | None = None,
        cache: FrameCache | None = None,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"{self.root}: dataset folder not found")
        self.layout = detect_layout(self.root) if layout == "auto" else layout
        if self.layout not in LAYOUTS:
            raise DatasetError(f"{self.root}: unknown layout {layout!r}; use one of {LAYOUTS} or 'auto'")
        self.filters = filters or TrackFilter()
        self.cache = cache if cache is not None else FrameCache()
        self.split = split
        self.fold = FoldSplit.parse(split)  # a fold selection, else None
        self.resolution = resolution
        if self.layout == "youtube-vos":
            self._init_youtube_vos()
        else:
            self._init_davis()
        self._tracks: list[Track] | None = None
        self._dropped: dict[str, str] = {}

    @classmethod
    def from_config(cls, cfg: DataConfig, cache: FrameCache | None = None) -> "VideoDataset":
        return cls(
            cfg.root, cfg.layout, cfg.resolution, cfg.split, cfg.filters,
            cache if cache is not None else FrameCache(cfg.cache_mb * 2**20),
        )

    # ---------------------------------------------------------------- layouts

    def _init_davis(self) -> None:
        jpeg, ann = self.root / "JPEGImages", self.root / "Annotations"
        for d in (jpeg, ann):
            if not d.is_dir():
                raise DatasetError(f"{d}: folder missing for layout {self.layout}")
        if self.resolution is None:
            options = sorted(p.name for p in jpeg.iterdir() if p.is_dir())
            if len(options) != 1:
                raise DatasetError(
                    f"{jpeg}: found resolution folders {options}; choose one with resolution=... "
                    "(e.g. '480p', '240p', 'Full-Resolution')"
                )
            self.resolution = options[0]
        self.frame_dir = jpeg / self.resolution
        self.mask_dir = ann / self.resolution
        for d in (self.frame_dir, self.mask_dir):
            if not d.is_dir():
                raise DatasetError(f"{d}: resolution folder missing")
        all_seqs = sorted(p.name for p in self.frame_dir.iterdir() if p.is_dir())
        if self.fold is not None:
            seqs = self._fold_sequences(all_seqs)
        elif self.split in (None, "all"):
            seqs = all_seqs
        else:
            seqs = self._read_davis_split(self.split)
            missing = [s for s in seqs if s not in all_seqs]
            if missing:
                raise DatasetError(f"{self.frame_dir}: split '{self.split}' names missing sequences {missing}")
        self.sequences = seqs
        self.categories: dict[tuple[str, int], str] = {}

    def _read_davis_split(self, split: str) -> list[str]:
        sets = self.root / "ImageSets"
        direct = sets / f"{split}.txt"
        if direct.is_file():
            path = direct
        else:
            found = sorted(sets.rglob(f"{Path(split).name}.txt")) if sets.is_dir() else []
            if len(found) != 1:
                options = sorted(str(p.relative_to(sets).with_suffix("")) for p in sets.rglob("*.txt")) if sets.is_dir() else []
                raise DatasetError(
                    f"{sets}: split '{split}' {'is ambiguous' if found else 'not found'}; available: {options}"
                )
            path = found[0]
        names = []
        for line in path.read_text().splitlines():
            tok = line.strip().split()
            if not tok:
                continue
            parts = Path(tok[0]).parts  # official 2016 lists hold '/JPEGImages/480p/bear/00000.jpg'
            name = parts[-2] if len(parts) >= 3 else tok[0]
            if name not in names:
                names.append(name)
        if not names:
            raise DatasetError(f"{path}: split file is empty")
        return names

    def _fold_sequences(self, available: list[str]) -> list[str]:
        """The fold selection's sequences, all of which the dataset must have."""
        assert self.fold is not None
        seqs, have = self.fold.sequences(), set(available)
        missing = [s for s in seqs if s not in have]
        if missing:
            raise DatasetError(
                f"{self.frame_dir}: split '{self.split}' names {len(missing)} sequence(s) this dataset lacks: "
                f"{missing[:5]}{' ...' if len(missing) > 5 else ''}"
            )
        return seqs

    def _init_youtube_vos(self) -> None:
        folder = None if self.fold is not None else self.split  # a fold selection picks videos of the default folder
        split = folder or ("train" if (self.root / "train").is_dir() else None)
        base = self.root / split if split else self.root
        if self.fold is None:
            self.split = split
        self.frame_dir, self.mask_dir = base / "JPEGImages", base / "Annotations"
        meta_path = base / "meta.json"
        for d in (self.frame_dir, self.mask_dir):
            if not d.is_dir():
                raise DatasetError(f"{d}: folder missing for layout youtube-vos")
        if not meta_path.is_file():
            raise DatasetError(f"{meta_path}: meta.json missing for layout youtube-vos")
        try:
            meta = json.loads(meta_path.read_text())
            videos = meta["videos"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise DatasetError(f"{meta_path}: malformed meta.json ({exc!r}); expected {{'videos': {{...}}}}") from None
        self.meta = videos
        self.sequences = self._fold_sequences(sorted(videos)) if self.fold is not None else sorted(videos)
        self.categories = {
            (v, int(oid)): str(o.get("category", ""))
            for v, vd in videos.items() for oid, o in vd.get("objects", {}).items()
        }

    # ---------------------------------------------------------------- tracks

    def _sequence_files(self, seq: str) -> tuple[dict[str, Path], dict[str, Path]]:
        fdir, mdir = self.frame_dir / seq, self.mask_dir / seq
        if not fdir.is_dir():
            raise DatasetError(f"{fdir}: frame folder missing for sequence '{seq}'")
        if not mdir.is_dir():
            raise DatasetError(f"{mdir}: annotation folder missing for sequence '{seq}'")
        frames, masks = _list_images(fdir), _list_images(mdir)
        orphans = sorted(set(masks) - set(frames), key=_natural_key)
        if orphans:
            raise DatasetError(f"{mdir}: masks without frames: {orphans[:5]}{' ...' if len(orphans) > 5 else ''}")
        if self.layout != "youtube-vos":
            unmasked = sorted(set(frames) - set(masks), key=_natural_key)
            if unmasked:
                raise DatasetError(
                    f"{fdir}: frames without masks: {unmasked[:5]}{' ...' if len(unmasked) > 5 else ''}"
                )
        if not masks:
            raise DatasetError(f"{mdir}: no masks")
        return frames, masks

    def _scan(self, seq: str) -> tuple[list[Track], str | None]:
        """The sequence's tracks, and why it yields none (None when it yields some)."""
        frames, masks = self._sequence_files(seq)
        names = list(masks)  # annotated frames, natural order
        size = _image_size(frames[names[0]])
        binary = self.layout == "davis2016"
        objects: dict[int, _ObjectScan] = {}
        for i, n in enumerate(names):
            if _image_size(frames[n]) != size:
                raise DatasetError(f"{frames[n]}: frame size differs from the sequence's first frame {size}")
            m = read_mask(masks[n])
            if m.shape != size:
                raise DatasetError(f"{masks[n]}: mask size {m.shape} differs from its frame's size {size}")
            ids = [1] if binary else [int(v) for v in np.unique(m) if v not in (0, VOID)]
            for oid in ids:
                obj = m > 127 if binary else m == oid
                if not obj.any():
                    continue
                scan = objects.setdefault(oid, _ObjectScan([False] * len(names), 0.0))
                scan.present[i] = True
                ys, xs = np.nonzero(np.any(obj, axis=1))[0], np.nonzero(np.any(obj, axis=0))[0]
                frac = max((xs[-1] - xs[0] + 1) / size[1], (ys[-1] - ys[0] + 1) / size[0])
                scan.max_extent_fraction = max(scan.max_extent_fraction, float(frac))
        tracks, reasons = [], []
        f = self.filters
        for oid, scan in sorted(objects.items()):
            if f.max_box_fraction < 1.0 and scan.max_extent_fraction >= f.max_box_fraction:
                reasons.append(
                    f"object {oid} box spans {scan.max_extent_fraction:.0%} of the frame, "
                    f"max_box_fraction is {f.max_box_fraction:g}"
                )
                continue
            idx = [i for i, p in enumerate(scan.present) if p]
            lo, hi = idx[0], idx[-1] + 1  # a track starts and ends where its object is seen
            present = scan.present[lo:hi]
            if f.absent == "drop" and not all(present):
                reasons.append(
                    f"object {oid} absent in {present.count(False)} of {hi - lo} frames, absent='drop'"
                )
                continue
            if hi - lo < f.min_frames:
                reasons.append(f"object {oid} in {hi - lo} frame(s), min_frames is {f.min_frames}")
                continue
            sel = names[lo:hi]
            tracks.append(
                Track(
                    sequence=seq, object_id=oid,
                    frame_paths=tuple(frames[n] for n in sel), mask_paths=tuple(masks[n] for n in sel),
                    frame_names=tuple(sel), present=tuple(present), size=size,
                    frame_step=_frame_step(names), category=self.categories.get((seq, oid), ""),
                    layout=self.layout, binary=binary,
                )
            )
        if tracks:
            return tracks, None
        if len(names) < f.min_frames:
            return [], f"{len(names)} annotated frame(s), min_frames is {f.min_frames}"
        if not objects:
            return [], f"no object in its {len(names)} annotated masks"
        return [], ", ".join(reasons)

    def _scan_all(self) -> list[Track]:
        """Scan every sequence once: tracks, and the dropped sequences (warned about once)."""
        if self._tracks is None:
            out: list[Track] = []
            dropped: dict[str, str] = {}
            for seq in self.sequences:
                tracks, reason = self._scan(seq)
                out.extend(tracks)
                if reason is not None:
                    dropped[seq] = reason
            self._tracks, self._dropped = out, dropped
            if dropped and out:
                warnings.warn(
                    f"{self.root}: dropped {len(dropped)} of {len(self.sequences)} sequences "
                    f"(listed in VideoDataset.dropped): {_summary(dropped)}",
                    DroppedSequenceWarning, stacklevel=3,
                )
        return self._tracks

    def tracks(self) -> list[Track]:
        """All single-object tracks that pass the filters (scanned once, then remembered)."""
        out = self._scan_all()
        if not out:
            raise DatasetError(
                f"{self.root}: no tracks (layout {self.layout}, split {self.split}, "
                f"{len(self.sequences)} sequences) pass the filters {self.filters}"
                + (f"; dropped: {_summary(self._dropped)}" if self._dropped else "")
            )
        return out

    @property
    def dropped(self) -> dict[str, str]:
        """Sequences that yield no track, with the reason: filters, too few frames, no object."""
        self._scan_all()
        return dict(self._dropped)

    # ---------------------------------------------------------------- pixels

    def frame(self, track: Track, i: int) -> np.ndarray:
        """RGB frame ``i`` of the track (cached, read-only; mirrored for a ``flip`` track)."""
        p = track.frame_paths[i]
        if track.flip:
            return self.cache.get(f"{p}~flip", lambda: np.ascontiguousarray(read_frame(p)[:, ::-1]))
        return self.cache.get(str(p), lambda: read_frame(p))

    def raw_mask(self, track: Track, i: int) -> np.ndarray:
        p = track.mask_paths[i]
        if track.flip:
            arr = self.cache.get(f"{p}~flip", lambda: np.ascontiguousarray(read_mask(p)[:, ::-1]))
        else:
            arr = self.cache.get(str(p), lambda: read_mask(p))
        if arr.shape != track.size:
            raise DatasetError(f"{p}: mask size {arr.shape} differs from its frame's size {track.size}")
        return arr

    def mask(self, track: Track, i: int) -> np.ndarray:
        """Boolean mask of the track's object in frame ``i``."""
        m = self.raw_mask(track, i)
        return m > 127 if track.binary else m == track.object_id

    def void(self, track: Track, i: int) -> np.ndarray | None:
        """Pixels to ignore in evaluation (DAVIS 2017 / YouTube-VOS label 255), or None."""
        if track.binary:
            return None
        m = self.raw_mask(track, i)
        v = m == VOID
        return v if v.any() else None


def augmented_tracks(tracks: list[Track], augment: list[str] | tuple[str, ...]) -> list[Track]:
    """``tracks`` and their variants by ``augment`` (a subset of ``AUGMENTS``; every combination:
    ``["flip", "reverse"]`` gives four per track). A reversed track starts at the original's last frame
    with the object, so that it starts where the object is seen, as every track does."""
    bad = [a for a in augment if a not in AUGMENTS]
    if bad:
        raise ValueError(f"augment: unknown {bad}; choose from {AUGMENTS}")
    out = list(tracks)
    if "flip" in augment:
        out += [replace(t, flip=True) for t in out]
    if "reverse" in augment:
        out += [_reversed(t) for t in out]
    return out


def _reversed(t: Track) -> Track:
    last = max(i for i, p in enumerate(t.present) if p) + 1
    return replace(t, frame_paths=t.frame_paths[:last][::-1], mask_paths=t.mask_paths[:last][::-1],
                   frame_names=t.frame_names[:last][::-1], present=t.present[:last][::-1], reverse=True)


def _summary(dropped: dict[str, str], limit: int = 10) -> str:
    items = [f"{seq}: {why}" for seq, why in list(dropped.items())[:limit]]
    more = f"; and {len(dropped) - limit} more" if len(dropped) > limit else ""
    return "; ".join(items) + more
