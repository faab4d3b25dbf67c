"""W&B offline runs (into a temporary folder) hold the metric keys, images and video we log."""
from __future__ import annotations

from pathlib import Path

import pytest

from bmvtrack.data.synth import SynthConfig, generate_dataset


@pytest.fixture()
def offline_wandb(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    return tmp_path


def _run_dir(root: Path) -> Path:
    (run,) = list((root / "wandb").glob("offline-run-*"))
    return run


def _history_holds(run: Path, *keys: str) -> bool:
    data = next(run.glob("run-*.wandb")).read_bytes()  # the offline run's record log
    return all(k.encode() in data for k in keys)


def test_visualize_logs_video_image_and_metrics(offline_wandb: Path, tmp_path: Path):
    from bmvtrack import visualize

    data = generate_dataset(tmp_path / "d", "davis2017", videos=2, seed=0,
                            cfg=SynthConfig(width=160, height=120, frames=6), progress=False)
    assert visualize.main(["--data", str(data), "--trackers", "zero,oracle", "--out", str(tmp_path / "vis"),
                           "--no-gif"]) == 0
    run = _run_dir(offline_wandb)
    assert list((run / "files/media/videos/rollout").glob("*.mp4"))
    assert list((run / "files/media/images/rollout").glob("*.png"))
    assert _history_holds(run, "rollout/zero/mean_iou", "rollout/oracle/mean_iou", "rollout/video")


def test_evaluate_logs_table_plot_and_metrics(offline_wandb: Path, tmp_path: Path):
    from bmvtrack import evaluate

    data = generate_dataset(tmp_path / "d", "davis2017", videos=2, seed=0,
                            cfg=SynthConfig(width=160, height=120, frames=6), progress=False)
    assert evaluate.main(["--data", str(data), "--trackers", "zero,oracle", "--out", str(tmp_path / "ev"),
                          "--no-progress"]) == 0
    run = _run_dir(offline_wandb)
    assert list((run / "files/media/images/eval").glob("*.png"))
    assert _history_holds(run, "eval/zero/success_auc", "eval/oracle/mean_iou", "eval/overall")
