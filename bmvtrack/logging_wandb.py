"""Run logging: one run-name pattern for files and W&B, W&B offline by default and never required.

``RunLogger`` writes every scalar to ``<run_dir>/metrics.jsonl`` (so curves can be re-plotted
without W&B) and, when enabled, to a W&B run in the project ``bmvtrack``. W&B is imported lazily;
``--no-wandb`` (``WandbConfig.enabled = False``) or ``WANDB_MODE=disabled`` turn it off, and a W&B
that fails to start (not installed, not logged in for an online run) only warns: the command goes on
with ``metrics.jsonl``. Offline runs land in ``<runs>/wandb/`` (``WANDB_DIR`` moves them) and are
uploaded later with ``wandb sync <runs>/wandb/offline-run-*``; ``WANDB_MODE=online`` (or
``--set wandb.mode=online``) logs live. Every command logs its resolved configuration as the run's
config (``command_config``: its parsed arguments plus what they resolved to, e.g. the dataset's
detected layout); runs of one experiment share ``WandbConfig.group`` or ``WANDB_RUN_GROUP``.
Keys are namespaced: ``train/…``, ``val/…``, ``eval/…``, ``rollout/…``.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from bmvtrack.paths import RUNS_DIR


@dataclass
class WandbConfig:
    """Weights & Biases options (offline by default: this machine has no network)."""

    enabled: bool = True  # false = no W&B at all (same as --no-wandb)
    mode: Literal["offline", "online", "disabled"] = "offline"  # WANDB_MODE in the environment wins
    project: str = "bmvtrack"  # one project for every command
    entity: str | None = None  # W&B team or user (online only)
    group: str | None = None  # runs of one experiment (e.g. seeds) share a group; unset: WANDB_RUN_GROUP
    tags: list[str] = field(default_factory=list)  # extra tags


def run_name(command: str, tag: str = "", stamp: str | None = None) -> str:
    """``<command>[-<tag>]-<YYYYmmdd-HHMMSS>``: the same name for the run folder and the W&B run."""
    stamp = stamp or time.strftime("%Y%m%d-%H%M%S")
    return "-".join(p for p in (command, tag, stamp) if p)


def plain(value: Any) -> Any:
    """``value`` as JSON-able plain data (dataclasses as dicts, paths as strings, tuples as lists,
    numpy scalars and arrays as numbers and lists), so a config logs the same to W&B, JSON and YAML."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if callable(getattr(value, "tolist", None)):  # numpy scalar or array
        return plain(value.tolist())
    return str(value)


def command_config(args: Any, **resolved: Any) -> dict[str, Any]:
    """A command's resolved configuration: ``args`` (its parsed argparse namespace) and the values
    they resolved to (``data=dataset_config(...)``, tracker names, …), as plain data."""
    return {"args": plain(vars(args)), **{k: plain(v) for k, v in resolved.items()}}


def dataset_config(cfg: Any, ds: Any) -> dict[str, Any]:
    """A ``DataConfig`` with what reading it resolved: the detected layout and resolution."""
    out = plain(cfg)
    out.update(layout=ds.layout, resolution=getattr(ds, "resolution", None))
    return out


class RunLogger:
    """Scalars to JSONL always; scalars, images and videos to W&B when enabled."""

    def __init__(self, run_dir: str | Path, name: str, command: str, config: dict[str, Any] | None = None,
                 wandb_cfg: WandbConfig | None = None, resume_id: str | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self._jsonl = open(self.run_dir / "metrics.jsonl", "a", buffering=1)
        self.wandb = None
        cfg = wandb_cfg or WandbConfig()
        mode = os.environ.get("WANDB_MODE", cfg.mode)
        if cfg.enabled and mode != "disabled":
            try:
                import wandb
            except ImportError:  # W&B is optional at run time
                wandb = None
            if wandb is not None:
                wandb_dir = Path(os.environ.get("WANDB_DIR", RUNS_DIR))
                wandb_dir.mkdir(parents=True, exist_ok=True)
                try:
                    self.wandb = wandb.init(
                        project=cfg.project, entity=cfg.entity, job_type=command,
                        # read here, not by wandb: its settings keep the environment of the process's first run
                        group=cfg.group or os.environ.get("WANDB_RUN_GROUP") or None,
                        name=name, config=plain(config or {}), dir=str(wandb_dir), mode=mode,
                        tags=[command, *cfg.tags], id=resume_id, resume="allow" if resume_id else None,
                        reinit="finish_previous",  # wandb >= 0.19.9
                    )
                except Exception as exc:  # W&B is never required: a failed start costs the run its dashboard only
                    print(f"warning: W&B did not start ({type(exc).__name__}: {exc}); "
                          f"logging to {self.run_dir / 'metrics.jsonl'} only", file=sys.stderr)
                    self.wandb = None

    @property
    def run_id(self) -> str | None:
        return None if self.wandb is None else self.wandb.id

    def log(self, metrics: dict[str, Any], step: int | None = None) -> None:
        row = {k: (float(v) if hasattr(v, "__float__") else v) for k, v in metrics.items()}
        self._jsonl.write(json.dumps({"step": step, **row}) + "\n")
        if self.wandb is not None:
            self.wandb.log(row, step=step)

    def log_image(self, key: str, path: str | Path, step: int | None = None, caption: str = "") -> None:
        if self.wandb is not None:
            import wandb

            self.wandb.log({key: wandb.Image(str(path), caption=caption)}, step=step)

    def log_video(self, key: str, path: str | Path, step: int | None = None, fps: int = 10) -> None:
        if self.wandb is not None:
            import wandb

            self.wandb.log({key: wandb.Video(str(path), fps=fps)}, step=step)

    def log_table(self, key: str, columns: list[str], rows: list[list[Any]], step: int | None = None) -> None:
        if self.wandb is not None:
            import wandb

            self.wandb.log({key: wandb.Table(columns=columns, data=rows)}, step=step)

    def summary(self, values: dict[str, Any]) -> None:
        if self.wandb is not None:
            for k, v in values.items():
                self.wandb.summary[k] = v

    def finish(self) -> None:
        self._jsonl.close()
        if self.wandb is not None:
            self.wandb.finish()
            self.wandb = None


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """Rows of ``metrics.jsonl`` (for plots and tests)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
