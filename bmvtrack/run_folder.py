"""Claiming an output folder: no run is replaced without being asked, no two writers share one.

Every command that writes a run folder claims it first with :func:`claim_run_folder`:

- an exclusive lock (``fcntl.flock`` on ``<folder>/.lock``, held until the claim is released or
  the process exits, whichever comes first) so that a second command on the same folder stops at
  once instead of interleaving its files; the kernel drops the lock of a killed process, so a
  stale ``.lock`` file never blocks anyone;
- a folder that already holds a run's outputs is refused unless the caller resumes it or the user
  passed ``--overwrite`` (then exactly those outputs are removed);
- temporary files that a killed writer left behind (``.<name>.<random>.tmp``, see ``bmvtrack.io``)
  are removed, since with the lock held nobody else can be writing them.
"""
from __future__ import annotations

import fcntl
import os
import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

LOCK_NAME = ".lock"
# bmvtrack.io's temporaries: mkstemp(prefix=".<name>.", suffix=".tmp")
_TMP = re.compile(r"^\..+\.[^.]+\.tmp$")
_TMP_DEPTH = 3  # run folders nest at most results/<tracker>/ or <run>/samples/ deep
_LIST_AT_MOST = 4  # names listed in a refusal; the rest are counted


class RunFolderError(ValueError):
    """An output folder is in use, holds a run that would be replaced, or cannot be written."""


@dataclass
class RunFolder:
    """A claimed output folder; the lock lives until ``release`` (or the process's end).

    Claiming a folder this process already holds returns the same object; each claim needs its
    own ``release`` (the lock goes with the last one).
    """

    path: Path
    removed_tmp: list[Path] = field(default_factory=list)
    removed: list[Path] = field(default_factory=list)  # outputs deleted by --overwrite
    _fd: int | None = field(default=None, repr=False)
    _claims: int = field(default=0, repr=False)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Drop one claim; the lock goes with the last (normally the process exit does it)."""
        self._claims = max(self._claims - 1, 0)
        if self._claims:
            return
        _HELD.pop(_key(self.path), None)
        if self._fd is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> RunFolder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


_HELD: dict[str, RunFolder] = {}  # folders this process holds: claiming one twice is not a conflict


def _key(path: Path) -> str:
    return str(path.resolve())


def _lock(path: Path) -> int:
    lock = path / LOCK_NAME
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise RunFolderError(f"{path}: cannot write to the output folder ({exc.strerror})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            owner = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
        finally:
            os.close(fd)
        raise RunFolderError(f"{path}: another process (pid {owner}) is writing this folder; wait for it "
                             "to finish or choose another --out") from None
    except OSError as exc:  # e.g. a file system without flock: no lock means no safe claim
        os.close(fd)
        raise RunFolderError(f"{path}: cannot lock the output folder ({exc.strerror}); "
                             "choose an --out on a local file system") from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


def writer_pid(path: str | Path) -> str | None:
    """The pid of *another* process holding ``path``'s lock (a run being written), else None.

    For readers (``evaluate --rescore``) that must not take a half-written run for a finished one.
    """
    path = Path(path)
    if _key(path) in _HELD:
        return None
    try:
        fd = os.open(path / LOCK_NAME, os.O_RDONLY)
    except OSError:
        return None  # no lock file: never claimed, so nobody claims it now
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return os.read(fd, 64).decode(errors="replace").strip() or "unknown"
        except OSError:
            return None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def orphan_temporaries(path: str | Path, patterns: Iterable[str] | None = None) -> list[Path]:
    """Temporary files of interrupted atomic writes under ``path``.

    Default: ``bmvtrack.io``'s ``.<name>.<random>.tmp`` files in ``path`` and its subfolders down
    to three levels, not inside hidden folders (``.git``, ``.venv``) nor inside a nested folder
    that holds its own ``.lock`` (another run folder: it cleans up when it is claimed, and may be
    being written right now). With ``patterns``: the files matching those globs, in ``path`` only.
    """
    path = Path(path)
    if patterns is not None:
        return sorted({p for pat in patterns for p in path.glob(pat) if p.is_file() and not p.is_symlink()})
    found: list[Path] = []

    def walk(folder: Path, depth: int) -> None:
        try:
            entries = list(os.scandir(folder))
        except OSError:
            return
        for e in entries:
            if e.is_file(follow_symlinks=False) and _TMP.match(e.name):
                found.append(Path(e.path))
            elif (e.is_dir(follow_symlinks=False) and depth < _TMP_DEPTH and not e.name.startswith(".")
                  and not os.path.exists(os.path.join(e.path, LOCK_NAME))):
                walk(Path(e.path), depth + 1)

    walk(path, 0)
    return sorted(found)


def _present(path: Path, outputs: Iterable[str]) -> list[Path]:
    """The outputs that exist, in the order given: plain names, or glob patterns (``pretrain_vae-*/``:
    folders only)."""
    found: dict[Path, None] = {}
    for name in outputs:
        if any(c in name for c in "*?["):
            dirs_only = name.endswith("/")
            found.update((p, None) for p in sorted(path.glob(name.rstrip("/")))
                         if p.name != LOCK_NAME and (p.is_dir() or not dirs_only))
        elif (path / name).exists() or (path / name).is_symlink():
            found[path / name] = None
    return list(found)


def _listing(present: list[Path], path: Path) -> str:
    names = [str(p.relative_to(path)) for p in present]
    more = len(names) - _LIST_AT_MOST
    return ", ".join(names[:_LIST_AT_MOST]) + (f" and {more} more" if more > 0 else "")


def claim_run_folder(path: str | Path, outputs: Iterable[str], *, resume: bool = False,
                     overwrite: bool = False, what: str = "run", resume_flag: str | None = "--resume",
                     temporaries: Iterable[str] | None = None) -> RunFolder:
    """Lock ``path`` for this process and make sure no finished ``what`` in it is lost.

    ``outputs`` are the names (files or folders, relative to ``path``; glob patterns allowed, a
    trailing ``/`` matching folders only) whose presence means the folder holds a ``what``. With
    any of them present, a new run is refused unless ``resume`` (the caller continues it; nothing
    is removed even with ``overwrite``) or ``overwrite`` (they are deleted first). The refusal is
    one line naming the way on: ``resume_flag`` (None for a command that cannot resume),
    ``--overwrite``, another ``--out``. A successful claim removes orphan temporary files
    (``temporaries``: see :func:`orphan_temporaries`); a refused one touches nothing and leaves
    the folder unlocked.
    """
    path = Path(path)
    key = _key(path)
    held = _HELD.get(key)
    if held is None:
        if path.exists() and not path.is_dir():
            raise RunFolderError(f"{path}: exists and is not a folder; choose another --out")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunFolderError(f"{path}: cannot create the output folder ({exc.strerror})") from None
        held = RunFolder(path, _fd=_lock(path))
        _HELD[key] = held
    held._claims += 1
    try:
        present = _present(path, outputs)
        if present and not resume:
            if not overwrite:
                ways = (f"pass {resume_flag} to continue it, " if resume_flag else "pass ") + \
                    "--overwrite to replace it, or choose another --out"
                article = "an" if what[:1].lower() in "aeiou" else "a"
                raise RunFolderError(f"{path}: already holds {article} {what} ({_listing(present, path)}); {ways}")
            for target in present:
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target)
                else:
                    target.unlink(missing_ok=True)
            held.removed = present
        held.removed_tmp = orphan_temporaries(path, temporaries)
        for tmp in held.removed_tmp:
            tmp.unlink(missing_ok=True)
    except OSError as exc:
        held.release()
        raise RunFolderError(f"{path}: cannot clear the output folder ({exc.strerror}: {exc.filename})") from None
    except BaseException:
        held.release()  # this claim only: a folder the process held before stays held
        raise
    return held
