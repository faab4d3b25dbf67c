"""Shared command-line plumbing: dataset arguments, the synthetic default, error reporting."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

from bmvtrack.data.readers import DataConfig, TrackFilter

from bmvtrack.paths import SYNTH_DIR as DEFAULT_SYNTH_DIR


def add_data_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--data", type=Path, default=None,
                   help=f"dataset folder (default: the synthetic set in {DEFAULT_SYNTH_DIR}, generated if absent)")
    g.add_argument("--layout", default="auto", choices=["auto", "davis2016", "davis2017", "youtube-vos"])
    g.add_argument("--resolution", default=None, help="DAVIS resolution folder (480p, 240p, ...)")
    g.add_argument("--split", default=None,
                   help="DAVIS ImageSets split (e.g. dev/train), YouTube-VOS split folder, or a fold of a folds "
                        "file, FILE:FOLD:train|test (e.g. configs/folds/davis2016_3fold.yaml:0:test: fold 0's "
                        "sequences; :0:train: all the other folds')")
    g.add_argument("--absent", default="keep", choices=["keep", "drop"],
                   help="tracks whose object vanishes in a frame: keep (frame marked absent) or drop (paper)")
    g.add_argument("--max-box-fraction", type=float, default=1.0,
                   help="drop tracks whose box reaches this fraction of the frame (paper: 0.7; 1.0 keeps all)")


def data_config_from_args(args: argparse.Namespace) -> DataConfig:
    """DataConfig from ``add_data_args`` arguments; generates the synthetic default when --data is absent."""
    from bmvtrack.config import validate

    filters = validate(TrackFilter(absent=args.absent, max_box_fraction=args.max_box_fraction),
                       source="--max-box-fraction")
    if args.data is None:
        from bmvtrack.data.synth import default_synthetic

        return DataConfig(root=str(default_synthetic()), layout="davis2017", split=args.split, filters=filters)
    return DataConfig(root=str(args.data), layout=args.layout, resolution=args.resolution, split=args.split,
                      filters=filters)


def error_line(exc: BaseException) -> str:
    """An expected error as one line: ``<path>: <strerror>`` for an OSError that names its file."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        where = str(exc.filename) + (f" -> {exc.filename2}" if exc.filename2 is not None else "")
        return f"{where}: {exc.strerror}"
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return text or type(exc).__name__


def writable_folder(path: str | Path) -> Path:
    """Create ``path`` and check a file can be written in it now (the OSError names the folder),
    so that a command fails in its first second rather than after its work is done."""
    import tempfile

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    return path


def run_main(main: Callable[[list[str] | None], int]) -> None:
    """Run a command's ``main``; expected errors print one clear line instead of a traceback.

    Expected: bad configs, datasets, priors, checkpoints, output folders in use, and every OSError
    (missing files, read-only folders, full disks, names too long): ``error: <what>``, exit code 2.
    """
    from bmvtrack.checkpoint import CheckpointError
    from bmvtrack.config import ConfigError
    from bmvtrack.data.images import DatasetError
    from bmvtrack.motion import PriorError
    from bmvtrack.run_folder import RunFolderError

    try:
        sys.exit(main(None))
    except (ConfigError, DatasetError, PriorError, CheckpointError, RunFolderError, OSError) as exc:
        print(f"error: {error_line(exc)}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
