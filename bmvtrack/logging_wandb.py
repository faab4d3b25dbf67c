"""Run logging: one run-name pattern for files and W&B, W&B offline by default and never required.

``RunLogger`` writes every scalar to ``<run_dir>/metrics.jsonl`` (so curves can be re-plotted
without W&B) and, when enabled, to a W&B run in the project ``bmvtrack``. W&B is imported lazily;
``--no-wandb`` (``WandbConfig.enabled = False``) or ``WANDB_MODE=disabled`` turn it off. Offline
runs land in ``<runs>/wandb/`` and are uploaded later with ``wandb sync <runs>/wandb/offline-run-*``.
Keys are namespaced: ``train/…``, ``val/…``, ``eval/…``, ``rollout/…``.
"""
from __future__ import annotations

import json
import os
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
    group: str | None = None  # runs of one experiment (e.g. seeds) share a group
    tags: list[str] = field(default_factory=list)  # extra tags


def run_name(command: str, tag: str = "", stamp: str | None = None) -> str:
    """``<command>[-<tag>]-<YYYYmmdd-HHMMSS>``: the same name for the run folder and the W&B run."""
    stamp = stamp or time.strftime("%Y%m%d-%H%M%S")
    return "-".join(p for p in (command, tag, stamp) if p)


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
                self.wandb = wandb.init(
                    project=cfg.project, entity=cfg.entity, group=cfg.group, job_type=command,
                    name=name, config=config or {}, dir=str(wandb_dir), mode=mode,
                    tags=[command, *cfg.tags], id=resume_id, resume="allow" if resume_id else None,
                    reinit="finish_previous",
                )

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
