"""Checkpoints: written atomically, read with ``weights_only=True``, errors that name the file.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts (no pickled objects),
so loading never runs code from the file.
"""
from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from bmvtrack.io import atomic_save


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated, or of another kind than expected."""


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` with torch.save to a temporary file, then rename it over ``path``."""
    atomic_save(path, lambda buf: torch.save(payload, buf))


def load_checkpoint(path: str | Path, kind: str | None = None, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint safely; ``kind`` (e.g. 'bmvae') must match the file's ``kind`` entry."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable or truncated checkpoint ({type(exc).__name__}: {str(exc)[:200]})") from None
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path}: not a bmvtrack checkpoint (top level is {type(payload).__name__})")
    if kind is not None and payload.get("kind") != kind:
        raise CheckpointError(f"{path}: expected a '{kind}' checkpoint, found kind={payload.get('kind')!r}")
    return payload
