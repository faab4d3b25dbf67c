"""Agents on disk as data only: JSON for what rebuilds them, tensors for their weights.

Why not SB3's ``model.zip``: its ``data`` entry holds serialised Python objects, so opening a crafted
file runs code. An agent checkpoint here is a folder that nothing can execute:

====================  ==========================================================================
``agent.json``        algorithm, constructor arguments, spaces' shapes, the encoder's identity
                      (SHA-256 and architecture), the run's config, the step, and (for resume)
                      the training state that is plain data (RNG states, counters, env states)
``weights.pt``        policy and optimiser state dicts and the spaces' bounds, read with
                      ``torch.load(weights_only=True)``
``state.pt``          the training state's arrays (last observations, template encodings)
``replay_buffer.npz`` the replay buffer's filled rows, read with ``allow_pickle=False``
====================  ==========================================================================

A run folder keeps checkpoints under ``checkpoints/<name>/`` and names the current one in
``checkpoints/latest``. A checkpoint is written to a hidden ``.<name>.partial`` folder, renamed
into place, and only then does ``latest`` switch (one atomic rename): a run killed at any point
keeps a complete previous checkpoint, and model, buffer and RNG states always belong together.
"""
from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path
from typing import Any, Callable

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from bmvtrack.checkpoint import CheckpointError, load_checkpoint
from bmvtrack.io import atomic_write_text, fsync_dir

FORMAT = "bmvtrack-agent/1"
AGENT_JSON = "agent.json"
WEIGHTS = "weights.pt"
STATE = "state.pt"
BUFFER = "replay_buffer.npz"
CHECKPOINTS = "checkpoints"
LATEST = "latest"
BUFFER_FIELDS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")


class AgentFileError(CheckpointError):
    """An agent file or folder is missing, unsafe, truncated, or does not fit where it is used."""


def _stage(name: str) -> None:
    """A named point inside a checkpoint write; tests replace it to kill the writer there."""


# ---------------------------------------------------------------------------------- finding


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The checkpoint folder ``checkpoints/latest`` names, or None when the run has none yet."""
    ckdir = Path(run_dir) / CHECKPOINTS
    pointer = ckdir / LATEST
    if not pointer.is_file():
        return None
    name = pointer.read_text().strip()
    folder = ckdir / name
    if not name or "/" in name or not (folder / AGENT_JSON).is_file():
        raise AgentFileError(f"{pointer}: names checkpoint {name!r}, which is missing or incomplete")
    return folder


def resolve_agent(path: str | Path) -> Path:
    """The checkpoint folder meant by ``path``: a checkpoint folder, or a run folder (its latest)."""
    path = Path(path)
    if path.suffix == ".zip" or path.name.endswith(".pkl"):
        raise AgentFileError(f"{path}: SB3 zip/pickle agents are not loaded (their pickled entries could run "
                             "code); pass the run folder of an agent trained by bmvtrack.train_sac")
    if not path.exists():
        raise AgentFileError(f"{path}: agent not found (pass a train_sac run folder or one of its checkpoints)")
    if path.is_file():
        if path.name == AGENT_JSON:
            return path.parent
        raise AgentFileError(f"{path}: not an agent (pass a train_sac run folder or one of its checkpoints)")
    if (path / AGENT_JSON).is_file():
        return path
    found = latest_checkpoint(path)
    if found is None:
        raise AgentFileError(f"{path}: holds no agent ({AGENT_JSON} or {CHECKPOINTS}/{LATEST} not found)")
    return found


def read_meta(folder: str | Path) -> dict[str, Any]:
    """``agent.json`` of a checkpoint folder, checked for the keys everything else relies on."""
    path = Path(folder) / AGENT_JSON
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AgentFileError(f"{path}: not found") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AgentFileError(f"{path}: not valid JSON ({exc.__class__.__name__}: {str(exc)[:80]})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise AgentFileError(f"{path}: not a {FORMAT} agent (format {found!r})")
    missing = [k for k in ("algo", "kwargs", "obs_shape", "action_shape", "encoder", "config", "num_timesteps")
               if k not in meta]
    if missing:
        raise AgentFileError(f"{path}: incomplete agent description (missing {', '.join(missing)})")
    if meta["algo"] not in ("mvsac", "sac"):
        raise AgentFileError(f"{path}: unknown algorithm {meta['algo']!r}")
    return meta


# ---------------------------------------------------------------------------------- building


class SpacesEnv(gym.Env):
    """An environment that only declares spaces: enough to rebuild an agent for acting."""

    def __init__(self, observation_space: spaces.Box, action_space: spaces.Box) -> None:
        self.observation_space, self.action_space = observation_space, action_space

    def reset(self, *, seed: int | None = None, options: dict | None = None):  # pragma: no cover - never stepped
        raise RuntimeError("SpacesEnv only declares spaces")

    def step(self, action):  # pragma: no cover - never stepped
        raise RuntimeError("SpacesEnv only declares spaces")


def make_agent(algo: str, env: Any, kwargs: dict[str, Any]):
    """SB3 SAC or MV-SAC from JSON-able constructor arguments (what ``agent.json`` stores)."""
    from stable_baselines3 import SAC

    from bmvtrack.agents.mvsac import MVSAC

    cls = SAC if algo == "sac" else MVSAC
    return cls("MlpPolicy", env, **kwargs)


def _weights(model) -> dict[str, Any]:
    out: dict[str, Any] = {
        "kind": "agent-weights",
        "policy": model.policy.state_dict(),
        "actor_optimizer": model.actor.optimizer.state_dict(),
        "critic_optimizer": model.critic.optimizer.state_dict(),
        "obs_low": torch.as_tensor(model.observation_space.low), "obs_high": torch.as_tensor(model.observation_space.high),
        "act_low": torch.as_tensor(model.action_space.low), "act_high": torch.as_tensor(model.action_space.high),
    }
    if getattr(model, "ent_coef_optimizer", None) is not None:
        out["log_ent_coef"] = model.log_ent_coef.detach().clone()
        out["ent_coef_optimizer"] = model.ent_coef_optimizer.state_dict()
    return out


def _load_weights(model, weights: dict[str, Any], path: Path) -> None:
    try:
        model.policy.load_state_dict(weights["policy"])
        model.actor.optimizer.load_state_dict(weights["actor_optimizer"])
        model.critic.optimizer.load_state_dict(weights["critic_optimizer"])
        if getattr(model, "ent_coef_optimizer", None) is not None:
            with torch.no_grad():
                model.log_ent_coef.copy_(weights["log_ent_coef"])
            model.ent_coef_optimizer.load_state_dict(weights["ent_coef_optimizer"])
    except (KeyError, RuntimeError, ValueError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise AgentFileError(f"{path}: weights do not match the network {AGENT_JSON} describes ({first})") from None


def load_agent(path: str | Path, env: Any = None):
    """``(model, meta, folder)`` from a run or checkpoint folder, without unpickling anything.

    With ``env`` (resume), the agent acts in it and its spaces must match the stored ones;
    without, it is rebuilt on a :class:`SpacesEnv` of the stored spaces (tracking).
    """
    folder = resolve_agent(path)
    meta = read_meta(folder)
    weights = load_checkpoint(folder / WEIGHTS, kind="agent-weights")
    try:
        obs_space = spaces.Box(weights["obs_low"].numpy(), weights["obs_high"].numpy(), dtype=np.float32)
        act_space = spaces.Box(weights["act_low"].numpy(), weights["act_high"].numpy(), dtype=np.float32)
    except (KeyError, AttributeError, ValueError) as exc:
        raise AgentFileError(f"{folder / WEIGHTS}: spaces missing or malformed ({exc})") from None
    if list(obs_space.shape) != list(meta["obs_shape"]) or list(act_space.shape) != list(meta["action_shape"]):
        raise AgentFileError(f"{folder}: {WEIGHTS} and {AGENT_JSON} disagree on the spaces' shapes")
    if env is not None:
        if env.observation_space.shape != obs_space.shape:
            raise AgentFileError(
                f"{folder}: the agent reads observations of {obs_space.shape[0]} values, this environment gives "
                f"{env.observation_space.shape[0]} (another encoder or observation kind?)")
        if env.action_space.shape != act_space.shape or not (
                np.allclose(env.action_space.low, act_space.low) and np.allclose(env.action_space.high, act_space.high)):
            raise AgentFileError(f"{folder}: the agent's action bounds differ from this environment's (another prior?)")
    try:
        model = make_agent(meta["algo"], env if env is not None else SpacesEnv(obs_space, act_space), meta["kwargs"])
    except (TypeError, ValueError, AssertionError) as exc:
        raise AgentFileError(f"{folder / AGENT_JSON}: cannot rebuild the agent ({str(exc).splitlines()[0][:160]})") from None
    _load_weights(model, weights, folder / WEIGHTS)
    model.num_timesteps = int(meta["num_timesteps"])
    return model, meta, folder


# ---------------------------------------------------------------------------------- replay buffer


def _buffer_arrays(buffer) -> dict[str, np.ndarray]:
    n = buffer.buffer_size if buffer.full else buffer.pos
    out = {k: getattr(buffer, k)[:n] for k in BUFFER_FIELDS if getattr(buffer, k, None) is not None}
    out["pos"], out["full"] = np.array(buffer.pos), np.array(buffer.full)
    return out


def load_buffer(buffer, path: Path) -> None:
    """Fill SB3's ``buffer`` in place from ``replay_buffer.npz`` (arrays only, never pickles)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise AgentFileError(f"{path}: replay buffer not found") from None
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise AgentFileError(f"{path}: unreadable or truncated replay buffer ({type(exc).__name__})") from None
    try:
        pos, full = int(arrays.pop("pos")), bool(arrays.pop("full"))
        n = buffer.buffer_size if full else pos
        for k in BUFFER_FIELDS:
            target = getattr(buffer, k, None)
            if target is None:
                continue
            src = arrays[k]
            if src.shape != (n, *target.shape[1:]):
                raise ValueError(f"{k} has shape {src.shape}, expected {(n, *target.shape[1:])}")
            target[:n] = src
        buffer.pos, buffer.full = pos, full
    except (KeyError, ValueError, TypeError) as exc:
        raise AgentFileError(f"{path}: replay buffer does not fit this agent ({exc})") from None


# ---------------------------------------------------------------------------------- saving


def save_agent_checkpoint(model, run_dir: str | Path, meta: dict[str, Any], training: dict[str, Any] | None = None,
                          arrays: dict[str, torch.Tensor] | None = None, buffer: bool = True) -> Path:
    """Write one checkpoint folder and switch ``checkpoints/latest`` to it; returns the folder.

    ``meta`` completes ``agent.json`` (algo, kwargs, encoder, config); ``training`` (JSON-able)
    and ``arrays`` (tensors) are the training state that a resume restores.
    """
    ckdir = Path(run_dir) / CHECKPOINTS
    ckdir.mkdir(parents=True, exist_ok=True)
    previous = latest_checkpoint(run_dir)
    seq = int(previous.name.split("-")[1]) + 1 if previous is not None else 0
    name = f"ckpt-{seq:06d}-step-{model.num_timesteps}"
    partial = ckdir / f".{name}.partial"
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir()
    full_meta = {"format": FORMAT, **meta, "num_timesteps": int(model.num_timesteps),
                 "obs_shape": list(model.observation_space.shape), "action_shape": list(model.action_space.shape),
                 "training": training}
    _write(partial / AGENT_JSON, lambda fh: fh.write(json.dumps(full_meta, indent=1).encode()))
    _stage("agent_json")
    _write(partial / WEIGHTS, lambda fh: torch.save(_weights(model), fh))
    _stage("weights")
    if arrays is not None:
        _write(partial / STATE, lambda fh: torch.save({"kind": "agent-state", **arrays}, fh))
    if buffer and getattr(model, "replay_buffer", None) is not None:
        _write(partial / BUFFER, lambda fh: np.savez(fh, **_buffer_arrays(model.replay_buffer)))
    _stage("buffer")
    fsync_dir(partial)
    partial.rename(ckdir / name)
    fsync_dir(ckdir)
    _stage("renamed")
    atomic_write_text(ckdir / LATEST, name + "\n")
    _stage("pointer")
    remove_stale_checkpoints(run_dir)
    return ckdir / name


def _write(path: Path, writer: Callable[[Any], Any]) -> None:
    with open(path, "wb") as fh:
        writer(fh)
        fh.flush()
        os.fsync(fh.fileno())


def remove_stale_checkpoints(run_dir: str | Path) -> list[Path]:
    """Delete partial checkpoint folders and every checkpoint but the one ``latest`` names."""
    ckdir = Path(run_dir) / CHECKPOINTS
    if not ckdir.is_dir():
        return []
    keep = latest_checkpoint(run_dir)
    gone = [p for p in ckdir.iterdir() if p.is_dir() and p != keep
            and (p.name.startswith("ckpt-") or (p.name.startswith(".") and p.name.endswith(".partial")))]
    for p in gone:
        shutil.rmtree(p)
    return gone


def load_training_arrays(folder: Path) -> dict[str, torch.Tensor]:
    """``state.pt`` of a checkpoint folder (tensors only)."""
    return load_checkpoint(folder / STATE, kind="agent-state")
