"""The main job's quick variant, end to end, in a fresh folder (CI's smoke test of the whole chain)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_quick_pipeline_end_to_end(tmp_path: Path):
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path), "WANDB_SILENT": "true"}
    proc = subprocess.run([sys.executable, "-m", "bmvtrack.pipeline", "--quick"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    runs = tmp_path / "runs" / "quick"  # apart from the full job's outputs, which it must not stand in for
    assert not (tmp_path / "runs" / "prior").exists() and not (tmp_path / "runs" / "pretrain_vae").exists()
    for path in ("prior/prior.json", "prior/prior.png", "pretrain_vae/checkpoint.pt",
                 "train_sac/mvsac-s0/checkpoints/latest", "evaluate/synth-quick-test/overall.md",
                 "evaluate/synth-quick-test/success.png"):
        assert (runs / path).is_file(), path
    assert list((runs / "visualize").glob("*.mp4")) and list((runs / "visualize").glob("*_iou.png"))
    table = (runs / "evaluate/synth-quick-test/overall.md").read_text()
    for name in ("zero", "csrt", "segmentation", "mvsac", "oracle"):
        assert f"| {name}" in table
    assert list((tmp_path / "wandb").glob("offline-run-*")), "W&B offline runs were not written"
