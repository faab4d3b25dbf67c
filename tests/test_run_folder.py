"""Claiming output folders (bmvtrack.run_folder) and the commands that claim them.

Real outcomes: a second process on a folder is refused while the first keeps its files, a
finished result is never replaced without --overwrite (and with it, only that result goes),
orphan temporaries of killed writes disappear, and a refused claim leaves nothing locked.
pretrain_vae and evaluate have their own tests in test_pretrain.py and test_evaluate.py.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bmvtrack.run_folder import LOCK_NAME, RunFolderError, claim_run_folder, orphan_temporaries, writer_pid

REPO = Path(__file__).resolve().parents[1]

HOLDER = """
import sys, time
from bmvtrack.run_folder import claim_run_folder
claim_run_folder(sys.argv[1], [])
print("held", flush=True)
time.sleep(float(sys.argv[2]))
"""


class Holder:
    """Another process that claims ``path`` and keeps it for ``seconds`` (or until stopped)."""

    def __init__(self, path: Path, seconds: float = 60.0) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(path), str(seconds)], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env)
        line = self.proc.stdout.readline()
        assert line.strip() == "held", line + self.proc.stderr.read()

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=30)


# ----------------------------------------------------------------------------- the library


def test_new_folder_is_created_locked_and_released(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b"
    folder = claim_run_folder(out, ["result.txt"])
    assert out.is_dir() and (out / LOCK_NAME).read_text() == str(os.getpid()) and folder.held
    again = claim_run_folder(out, ["result.txt"])  # the same process: not a conflict
    assert again is folder
    again.release()
    assert folder.held  # one claim is still out
    folder.release()
    assert not folder.held


def test_a_finished_run_is_refused_then_overwritten_exactly(tmp_path: Path) -> None:
    out = tmp_path / "run"
    (out / "results" / "x").mkdir(parents=True)
    (out / "results" / "x" / "a.json").write_text("{}")
    (out / "report.md").write_text("old")
    (out / "run-1").mkdir()
    (out / "run-1.txt").write_text("a file the folder pattern must not take")
    (out / "notes.txt").write_text("the user's")
    outputs = ["results", "report.md", "run-*/"]
    with pytest.raises(RunFolderError) as err:
        claim_run_folder(out, outputs, what="test run", resume_flag="--resume auto")
    msg = str(err.value)
    assert "\n" not in msg and "already holds a test run" in msg
    assert "report.md" in msg and "--resume auto" in msg and "--overwrite" in msg and "another --out" in msg
    with pytest.raises(RunFolderError) as err:
        claim_run_folder(out, outputs, what="test run", resume_flag=None)
    assert "--resume" not in str(err.value)  # a command that cannot resume does not suggest it
    assert (out / "report.md").read_text() == "old" and (out / "results" / "x" / "a.json").is_file()
    assert writer_pid(out) is None  # the refusal left it unlocked
    with claim_run_folder(out, outputs, resume=True) as folder:  # resuming keeps everything
        assert folder.removed == [] and (out / "report.md").is_file()
    with claim_run_folder(out, outputs, overwrite=True) as folder:
        assert sorted(p.name for p in folder.removed) == ["report.md", "results", "run-1"]
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME, "notes.txt", "run-1.txt"]


def test_many_outputs_are_listed_in_one_short_line(tmp_path: Path) -> None:
    for i in range(12):
        (tmp_path / f"run-{i:02d}").mkdir()
    with pytest.raises(RunFolderError, match=r"run-00, run-01, run-02, run-03 and 8 more\)"):
        claim_run_folder(tmp_path, ["run-*/"])


def test_orphan_temporaries_are_removed_but_not_a_neighbours(tmp_path: Path) -> None:
    out = tmp_path / "run"
    (out / "results" / "zero").mkdir(parents=True)
    (out / "other_run").mkdir()
    (out / "other_run" / LOCK_NAME).write_text("")  # another run folder nested here: not ours to clean
    (out / ".git").mkdir()
    planted = [out / ".checkpoint.pt.abc.tmp", out / "results" / "zero" / ".seq_1.json.k2j4h5l9.tmp"]
    kept = [out / "other_run" / ".checkpoint.pt.abc.tmp", out / ".git" / ".index.abc.tmp", out / "notes.tmp",
            out / ".hidden", out / "results" / "zero" / "seq_1.json"]
    for p in planted + kept:
        p.write_text("x")
    assert orphan_temporaries(out) == sorted(planted)
    folder = claim_run_folder(out, ["results"], resume=True)
    folder.release()
    assert sorted(folder.removed_tmp) == sorted(planted)
    assert not any(p.exists() for p in planted) and all(p.exists() for p in kept)
    # with explicit patterns only those are cleaned (a shared folder such as a prior's)
    (out / ".prior.json.abc.tmp").write_text("x")
    (out / ".other.json.abc.tmp").write_text("x")
    with claim_run_folder(out, [], temporaries=[".prior.json.*.tmp"]):
        pass
    assert not (out / ".prior.json.abc.tmp").exists() and (out / ".other.json.abc.tmp").exists()


def test_second_process_is_refused_at_once_and_the_lock_dies_with_the_holder(tmp_path: Path) -> None:
    out = tmp_path / "run"
    holder = Holder(out)
    try:
        t = time.perf_counter()
        with pytest.raises(RunFolderError) as err:
            claim_run_folder(out, [])
        assert time.perf_counter() - t < 1.0  # no waiting
        assert f"another process (pid {holder.proc.pid}) is writing this folder" in str(err.value)
        assert writer_pid(out) == str(holder.proc.pid)
    finally:
        holder.stop()  # killed: the kernel drops its lock; the stale .lock file blocks nobody
    assert (out / LOCK_NAME).exists() and writer_pid(out) is None
    with claim_run_folder(out, []):
        assert (out / LOCK_NAME).read_text() == str(os.getpid())


def test_unusable_folders_are_one_line_errors(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunFolderError, match="exists and is not a folder"):
        claim_run_folder(tmp_path / "file", [])
    with pytest.raises(RunFolderError, match="cannot create the output folder"):
        claim_run_folder(tmp_path / "file" / "sub", [])
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        try:
            with pytest.raises(RunFolderError, match="cannot write to the output folder"):
                claim_run_folder(ro, [])
        finally:
            ro.chmod(0o755)


# ----------------------------------------------------------------------------- analyze_motion


def test_analyze_motion_never_replaces_a_prior_silently(moving_root: Path, tmp_path: Path) -> None:
    from bmvtrack.analyze_motion import main

    prior = tmp_path / "prior" / "prior.json"
    base = ["--data", str(moving_root), "--layout", "davis2017", "--out", str(prior)]
    (prior.parent).mkdir()
    (prior.parent / ".prior.json.abc.tmp").write_text("left by a killed write")
    assert main([*base, "--no-plot"]) == 0
    assert not (prior.parent / ".prior.json.abc.tmp").exists()
    first = prior.read_text()
    with pytest.raises(RunFolderError, match=r"already holds a motion prior prior\.json \(prior\.json\); pass --overwrite"):
        main([*base, "--fit", "robust"])
    assert prior.read_text() == first
    # a second prior beside it is another output: allowed, and the first stays as it was
    assert main([*base[:-1], str(prior.with_name("prior_robust.json")), "--fit", "robust", "--no-plot"]) == 0
    assert prior.read_text() == first
    assert main([*base, "--fit", "robust", "--no-plot", "--overwrite"]) == 0
    assert json.loads(prior.read_text()) != json.loads(first)
    with pytest.raises(SystemExit):  # a folder as --out is a usage error, never rmtree'd by --overwrite
        main([*base[:-1], str(prior.parent), "--overwrite"])
    assert prior.is_file()


# ----------------------------------------------------------------------------- evaluate_vae


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from bmvtrack.checkpoint import save_checkpoint
    from bmvtrack.config import to_dict
    from bmvtrack.models import ModelConfig, build_model
    from bmvtrack.motion import PAPER_COV, PAPER_MEAN, PAPER_TABLE1_STD

    torch.manual_seed(0)
    m = build_model(ModelConfig(patch_size=32, base_width=8, decoder_width=8, z_channels=8, part_size=4),
                    PAPER_MEAN, PAPER_COV, PAPER_TABLE1_STD)
    path = tmp_path_factory.mktemp("ckpt") / "checkpoint.pt"
    save_checkpoint(path, {"kind": "bmvae", "model": m.state_dict(), "model_config": to_dict(m.cfg)})
    return path


def test_evaluate_vae_keeps_each_crops_report(moving_root: Path, tiny_checkpoint: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from bmvtrack import evaluate_vae

    out = tmp_path / "eval"
    base = ["--checkpoint", str(tiny_checkpoint), "--data", str(moving_root), "--no-wandb", "--quiet", "--out", str(out)]
    assert evaluate_vae.main([*base, "--crop", "gt"]) == 0
    gt = (out / "vae_eval_gt.csv").read_bytes()
    assert evaluate_vae.main([*base, "--crop", "perturbed"]) == 0  # another crop: its own report beside
    assert (out / "vae_eval_gt.csv").read_bytes() == gt
    with pytest.raises(RunFolderError, match=r"already holds a gt-crop VAE evaluation \(vae_eval_gt\.md, vae_eval_gt\.csv\)"):
        evaluate_vae.main([*base, "--crop", "gt", "--context", "0.5"])
    assert (out / "vae_eval_gt.csv").read_bytes() == gt
    assert evaluate_vae.main([*base, "--crop", "gt", "--context", "0.5", "--overwrite"]) == 0
    assert (out / "vae_eval_gt.csv").read_bytes() != gt and (out / "vae_eval_perturbed.csv").is_file()
    # without --out: two runs named by the same second get two folders
    monkeypatch.setattr(evaluate_vae.command, "RUNS_DIR", tmp_path / "runs")
    monkeypatch.setattr(evaluate_vae.command, "run_name", lambda *a, **k: "evaluate_vae-gt-fixed")
    base = base[:-2]
    assert evaluate_vae.main([*base, "--crop", "gt"]) == 0
    assert evaluate_vae.main([*base, "--crop", "gt"]) == 0
    made = sorted(p.name for p in (tmp_path / "runs" / "evaluate_vae").iterdir())
    assert made == ["evaluate_vae-gt-fixed", "evaluate_vae-gt-fixed-2"]


# ----------------------------------------------------------------------------- visualize


def test_visualize_keeps_an_earlier_video_of_the_track(moving_root: Path, tmp_path: Path) -> None:
    from bmvtrack.visualize import main

    out = tmp_path / "vis"
    out.mkdir()
    (out / ".synth-0000_1.k2j4h5l9.mp4").write_bytes(b"half a video")  # write_mp4's temporary, from a killed run
    base = ["--data", str(moving_root), "--layout", "davis2017", "--no-wandb", "--no-gif", "--out", str(out)]
    assert main([*base, "--trackers", "zero"]) == 0
    videos = sorted(out.glob("*.mp4"))
    assert len(videos) == 1 and not list(out.glob(".*.mp4"))
    first = videos[0].read_bytes()
    with pytest.raises(RunFolderError, match=r"already holds a video of .*_iou\.png.*pass --overwrite"):
        main([*base, "--trackers", "oracle"])
    assert videos[0].read_bytes() == first
    assert main([*base, "--trackers", "oracle", "--overwrite"]) == 0
    assert videos[0].read_bytes() != first
