"""Checkpoints: written atomically, read with ``weights_only=True``, errors that name the file.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts (no pickled objects),
so loading never runs code from the file. Every failure is a one-line ``CheckpointError`` in our
own words: torch's messages run over many lines and advise the unsafe ``weights_only=False``.
"""
from __future__ import annotations

import pickle
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from bmvtrack.io import atomic_save

if TYPE_CHECKING:
    from bmvtrack.models import ModelConfig

REFUSED = "refused: loading it could run code"
_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated, or of another kind than expected."""


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` with torch.save to a temporary file, then rename it over ``path``."""
    atomic_save(path, lambda buf: torch.save(payload, buf))


def _why_unreadable(exc: BaseException, path: Path) -> str:
    """What a failed ``torch.load(weights_only=True)`` means, in our words (never torch's advice)."""
    found = _GLOBAL.search(str(exc)) if isinstance(exc, pickle.UnpicklingError) else None
    if found:  # the safe unpickler stopped at a callable: nothing ran
        return f"contains objects other than tensors and plain data ({found.group(1)}; {REFUSED})"
    if isinstance(exc, EOFError):
        return "unreadable or truncated checkpoint (the data ends early)"
    if isinstance(exc, RuntimeError) and "zip archive" in str(exc):
        return "unreadable or truncated checkpoint (not a complete torch zip archive)"
    if isinstance(exc, RuntimeError) and "PytorchStreamReader" in str(exc):
        return "not a torch checkpoint (a zip archive without torch's records)"
    try:
        with open(path, "rb") as fh:
            head = fh.read(2)
    except OSError:
        head = b""
    if not (head.startswith(b"PK") or head.startswith(b"\x80")):  # neither torch's zip nor a pickle stream
        return "not a torch checkpoint (neither a torch zip archive nor a pickle)"
    if isinstance(exc, pickle.UnpicklingError):
        return f"holds data other than tensors and plain data, or is damaged ({REFUSED})"
    return "unreadable or truncated checkpoint (the data is damaged or ends early)"


def load_checkpoint(path: str | Path, kind: str | None = None, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint safely; ``kind`` (e.g. 'bmvae') must match the file's ``kind`` entry."""
    path = Path(path)
    try:
        if path.is_dir():
            raise CheckpointError(f"{path}: is a folder, not a checkpoint file")
        if not path.is_file():
            raise CheckpointError(f"{path}: checkpoint not found")
        if path.stat().st_size == 0:
            raise CheckpointError(f"{path}: empty file (0 bytes), not a checkpoint")
        with open(path, "rb") as fh:  # permissions and I/O errors: said as such, before torch reads
            fh.read(1)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read the checkpoint ({exc.strerror or type(exc).__name__})") from None
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols, naming weights_only
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # arbitrary bytes make the reader fail in arbitrary ways; none of them ran code
        raise CheckpointError(f"{path}: {_why_unreadable(exc, path)}") from None
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path}: not a bmvtrack checkpoint (top level is {type(payload).__name__})")
    if kind is not None and payload.get("kind") != kind:
        found = repr(payload.get("kind"))
        found = found if len(found) <= 60 else found[:57] + "..."
        raise CheckpointError(f"{path}: expected a '{kind}' checkpoint, found kind={found}")
    return payload


# ------------------------------------------------------------------ networks stored in checkpoints


def model_entries(ckpt: Mapping[str, Any], path: str | Path) -> tuple[ModelConfig, dict[str, Any]]:
    """The ``ModelConfig`` and state dict of a βMVAE/βMVUnet checkpoint; a missing or malformed
    entry is a CheckpointError naming the file."""
    from bmvtrack.config import ConfigError, from_dict
    from bmvtrack.models import ModelConfig

    for key in ("model", "model_config"):
        if key not in ckpt:
            raise CheckpointError(f"{path}: checkpoint has no '{key}' entry (keys: {sorted(map(str, ckpt))[:12]})")
    state = ckpt["model"]
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise CheckpointError(f"{path}: 'model' is not a state dict ({type(state).__name__})")
    if not isinstance(ckpt["model_config"], dict):
        raise CheckpointError(f"{path}: 'model_config' is not a mapping ({type(ckpt['model_config']).__name__})")
    try:
        cfg = from_dict(ModelConfig, dict(ckpt["model_config"]), source=f"{path} [model_config]")
    except (ConfigError, TypeError, ValueError) as exc:
        msg = str(exc)
        raise CheckpointError(msg if msg.startswith(str(path)) else f"{path}: bad model_config: {msg}") from None
    return cfg, state


def _shape(value: Any) -> str:
    return str(tuple(value.shape)) if hasattr(value, "shape") else f"a {type(value).__name__}, not a tensor"


def _listed(names: list[str], limit: int) -> str:
    return ", ".join(names[:limit]) + (f" (+{len(names) - limit} more)" if len(names) > limit else "")


def state_dict_mismatch(expected: Mapping[str, Any], given: Mapping[str, Any], prefix: str = "",
                        limit: int = 3) -> str:
    """One line: the keys ``given`` lacks or has in excess, and the tensors of another size
    (``""`` when the two fit). ``prefix`` is put back in front of the names shown."""
    missing = [prefix + k for k in expected if k not in given]
    unexpected = [prefix + k for k in given if k not in expected]
    sizes = [f"{prefix}{k}: {_shape(given[k])} in the file, {_shape(v)} expected" for k, v in expected.items()
             if k in given and _shape(given[k]) != _shape(v)]
    parts = []
    if missing:
        parts.append(f"missing keys {_listed(missing, limit)}")
    if unexpected:
        parts.append(f"unexpected keys {_listed(unexpected, limit)}")
    if sizes:
        parts.append(f"size mismatch for {_listed(sizes, 1)}")
    return "; ".join(parts)


def _config_summary(cfg: ModelConfig) -> str:
    return (f"arch={cfg.arch}, base_width={cfg.base_width}, decoder_width={cfg.decoder_width}, "
            f"bottleneck={cfg.bottleneck}, part_size={cfg.part_size}")


def _reference_state(cfg: ModelConfig, encoder_only: bool) -> dict[str, Any]:
    """The state dict a network built from ``cfg`` has (the prior's values do not matter here)."""
    import numpy as np

    from bmvtrack.models import BetaMVEncoder, build_model

    d = cfg.num_parts
    prior = (np.zeros(d), np.eye(d), np.ones(d))
    net = BetaMVEncoder(cfg, *prior) if encoder_only else build_model(cfg, *prior)
    return net.state_dict()


def network_mismatch(path: str | Path, cfg: ModelConfig, state: Mapping[str, Any], encoder_only: bool = False,
                     expected: Mapping[str, Any] | None = None, cause: BaseException | None = None) -> CheckpointError:
    """The CheckpointError for weights that do not load into the network their own config describes.

    ``expected`` is that network's state dict (built from ``cfg`` when omitted); with
    ``encoder_only`` only the encoder's entries count (``encoder.`` prefix or an encoder-only dict).
    """
    try:
        expected = dict(expected) if expected is not None else _reference_state(cfg, encoder_only)
    except Exception:  # the config itself cannot be built: say what failed, in one line
        expected = None
    given, prefix = dict(state), ""
    if encoder_only and any(k.startswith("encoder.") for k in given):
        given = {k[len("encoder."):]: v for k, v in given.items() if k.startswith("encoder.")}
        prefix = "encoder."
    detail = state_dict_mismatch(expected, given, prefix) if expected is not None else ""
    if detail:
        return CheckpointError(f"{path}: network does not match its stored config ({detail}) "
                               f"[model_config: {_config_summary(cfg)}]")
    reason = ""
    if cause is not None:
        first = (str(cause).strip().splitlines() or [""])[0][:160]
        reason = f": {type(cause).__name__}" + (f" {first}" if first and "weights_only" not in first else "")
    return CheckpointError(f"{path}: network cannot be built from its stored weights and config{reason} "
                           f"[model_config: {_config_summary(cfg)}]")
