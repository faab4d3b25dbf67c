"""Shared fixtures: the real DAVIS 2016 data in ../shared (skipped off-CI, required on CI)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# Tiny test models run faster on one thread, and two suites sharing two cores never oversubscribe.
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("BMVTRACK_SHARED", REPO.parent / "shared"))
DAVIS2016 = SHARED / "data" / "davis2016"


@pytest.fixture(scope="session")
def davis2016_root() -> Path:
    """Path of the real DAVIS 2016 train split; its absence fails under CI=true, skips elsewhere."""
    if not DAVIS2016.is_dir():
        msg = f"real DAVIS 2016 data not found at {DAVIS2016} (set BMVTRACK_SHARED)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg + " — required under CI=true")
        pytest.skip(msg)
    return DAVIS2016


@pytest.fixture(autouse=True)
def _wandb_disabled(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test ever talks to W&B servers; runs that log go offline into a temporary folder."""
    monkeypatch.setenv("WANDB_MODE", os.environ.get("BMVTRACK_TEST_WANDB_MODE", "disabled"))
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")


@pytest.fixture(scope="session")
def moving_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One synthetic video (160×120, 10 frames) of a single object that moves, never hidden."""
    from bmvtrack.data.synth import SynthConfig, generate_dataset

    root = tmp_path_factory.mktemp("synth_track")
    cfg = SynthConfig(width=160, height=120, frames=10, objects=(1, 1), leave_prob=0.0, occlusion_prob=0.0)
    return generate_dataset(root, "davis2017", videos=1, seed=1, cfg=cfg, progress=False)


@pytest.fixture(scope="session")
def load_script():
    """A script of ``scripts/`` imported as a module (they are run as files, not installed)."""
    import importlib.util

    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod

    return load


@pytest.fixture(scope="session")
def write_csv():
    """Write rows (dicts with the same keys) as a CSV file, making its folder."""
    import csv

    def write(path: Path, rows: list[dict]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)

    return write
