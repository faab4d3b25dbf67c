"""Atomic file output: a crash never leaves a half-written prior, checkpoint or report."""
from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Callable


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def publish(tmp: Path | str, path: Path | str) -> None:
    """Give a finished temporary file normal permissions and rename it over ``path``."""
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, path)


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    """Write ``data`` to a temporary file in the same folder, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        publish(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: Path | str, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def file_slug(name: str) -> str:
    """``name`` safe as a file name: each run of characters other than letters, digits, ``.``, ``_``
    and ``-`` becomes one ``_`` (a track ``bear/1`` → ``bear_1``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def per_track_file(folder: Path | str, name: str, ident: str, suffix: str) -> Path:
    """``folder/<name, filesystem-safe>-<10 hex digits of sha1(ident)><suffix>``: one cached file per track."""
    digest = hashlib.sha1(ident.encode()).hexdigest()[:10]
    return Path(folder) / f"{file_slug(name)}-{digest}{suffix}"


def atomic_save(path: Path | str, writer: Callable[[io.BytesIO], Any]) -> None:
    """Serialise through ``writer(buffer)`` (e.g. ``torch.save``, ``fig.savefig``) then write atomically."""
    buf = io.BytesIO()
    writer(buf)
    atomic_write_bytes(path, buf.getvalue())


def file_sha256(path: Path | str, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes: what ties an agent to the exact encoder it was trained on."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def fsync_dir(path: Path | str) -> None:
    """Make a rename inside ``path`` durable (POSIX: the directory entry itself must be synced)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
