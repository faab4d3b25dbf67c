"""Pretraining (bmvtrack.pretrain_vae / python -m bmvtrack.pretrain_vae): tiny model, tiny synthetic data.

Every run here is a real one (a 32-px βMVUnet on 3 synthetic videos of 6 frames): the loss must
fall, checkpoints must load with weights_only and survive a failed write, a resumed run must
continue the uninterrupted one exactly, and a NaN must stop the run without touching the last good
checkpoint.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from bmvtrack.checkpoint import CheckpointError, load_checkpoint
from bmvtrack.config import ConfigError, from_dict, to_dict
from bmvtrack.data.synth import SynthConfig, generate_dataset
from bmvtrack.logging_wandb import read_metrics
from bmvtrack.models import ModelConfig, build_encoder, build_model
from bmvtrack.pretrain_vae import (
    PretrainConfig,
    Trainer,
    TrainingDiverged,
    load_pretrain_config,
    resolve_config,
    train,
)
from bmvtrack.pretrain_vae import main as pretrain_main
from bmvtrack.pretrain_vae.trainer import cycle_end_warning
from bmvtrack.run_folder import RunFolderError

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pretrain_data")
    generate_dataset(root, "davis2017", videos=3, seed=0, cfg=SynthConfig(width=160, height=120, frames=6), progress=False)
    return root


def tiny_overrides(data: Path, out: Path, **extra: object) -> list[str]:
    base: dict[str, object] = {
        "model.patch_size": 32, "model.base_width": 8, "model.decoder_width": 8, "model.z_channels": 8,
        "data.root": str(data), "prior": str(data / "prior.json"), "out_dir": str(out),
        "batch_size": 8, "epochs": 2, "log_every": 1, "checkpoint_every": 0, "time_budget_min": 0,
        "lr_min": 1e-3, "lr_max": 3e-3, "cycle_steps": 20, "wandb.enabled": False,
        "sample_masks": 4, "val_max_patches": 16,
    }
    base.update(extra)
    return [f"{k}={json.dumps(v)}" for k, v in base.items()]


def tiny_cfg(data: Path, out: Path, **extra: object) -> PretrainConfig:
    return load_pretrain_config(None, tiny_overrides(data, out, **extra))


def train_rows(run_dir: Path, key: str) -> list[float]:
    return [r[key] for r in read_metrics(run_dir) if key in r]


def test_loss_goes_down_and_checkpoint_contract(tiny_data: Path, tmp_path: Path) -> None:
    res = train(tiny_cfg(tiny_data, tmp_path, epochs=10), progress=False)
    assert res.step == 30 and res.stop_reason == "completed"
    losses = train_rows(res.run_dir, "train/loss")
    assert len(losses) == 30
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5]), losses
    for key in ("val/loss", "val/J", "val/kl", "val/mahalanobis"):
        assert np.isfinite(train_rows(res.run_dir, key)).all() and train_rows(res.run_dir, key)

    # the contract the environment reads, with weights_only=True
    ckpt = load_checkpoint(res.checkpoint, kind="bmvae")
    for key in ("kind", "version", "model", "model_config", "prior", "config", "epoch", "step", "optimizer",
                "scheduler", "rng", "best_val", "wandb_id"):
        assert key in ckpt, key
    assert ckpt["step"] == 30 and ckpt["epoch"] == 10 and ckpt["version"] == 1
    assert set(ckpt["rng"]) >= {"torch", "numpy", "python"}
    mcfg = from_dict(ModelConfig, ckpt["model_config"])
    net = build_model(mcfg, ckpt["prior"]["mean"], ckpt["prior"]["cov"])
    net.load_state_dict(ckpt["model"], strict=True)
    enc = build_encoder(mcfg, ckpt["model"])
    assert enc(torch.zeros(2, 3, 32, 32))["mu"].shape == (2, 5)
    assert from_dict(PretrainConfig, ckpt["config"]).model == mcfg
    best = load_checkpoint(res.best, kind="bmvae")
    assert best["best_val"] == pytest.approx(max(train_rows(res.run_dir, "val/J")))
    # run folder: resolved config, command, sample grids, loss curves (Figs 11–12)
    files = {p.name for p in res.run_dir.iterdir()}
    assert {"config.yaml", "command.txt", "metrics.jsonl", "loss_curves.png", "samples"} <= files
    assert len(list((res.run_dir / "samples").glob("*.png"))) == 10
    assert not list(tmp_path.glob(".*.tmp"))


def test_failed_checkpoint_write_keeps_the_previous_one(tiny_data: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    train(tiny_cfg(tiny_data, tmp_path, max_steps=3), progress=False)
    path = tmp_path / "checkpoint.pt"
    before = path.read_bytes()
    cfg = tiny_cfg(tiny_data, tmp_path, max_steps=5, checkpoint_every=1)
    trainer = Trainer(cfg, resume=path, progress=False)

    def disk_full(fd: int) -> None:  # the temp file is written, the rename never happens
        raise OSError("No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space"):
        trainer.fit()
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert load_checkpoint(path, kind="bmvae")["step"] == 3
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_resume_continues_the_uninterrupted_run(tiny_data: Path, tmp_path: Path) -> None:
    straight = train(tiny_cfg(tiny_data, tmp_path / "a", max_steps=7, epochs=4), progress=False)
    first = train(tiny_cfg(tiny_data, tmp_path / "b", max_steps=4, epochs=4), progress=False)
    assert first.step == 4
    saved = load_checkpoint(first.checkpoint, kind="bmvae")

    trainer = Trainer(tiny_cfg(tiny_data, tmp_path / "b", max_steps=7, epochs=4), resume=first.checkpoint,
                      progress=False)
    assert trainer.step == 4 and (trainer.epoch, trainer.epoch_step) == (1, 1)
    opt = trainer.optimizer.state_dict()
    assert opt["param_groups"][0]["lr"] == saved["optimizer"]["param_groups"][0]["lr"]
    for k, st in saved["optimizer"]["state"].items():
        torch.testing.assert_close(opt["state"][k]["exp_avg"], st["exp_avg"], rtol=0, atol=0)
        torch.testing.assert_close(opt["state"][k]["exp_avg_sq"], st["exp_avg_sq"], rtol=0, atol=0)
    assert trainer.scheduler.state_dict()["last_epoch"] == saved["scheduler"]["last_epoch"] == 4
    resumed = trainer.fit()
    assert resumed.step == 7 and resumed.run_dir == first.run_dir  # same run folder (and W&B id)

    a = load_checkpoint(straight.checkpoint, kind="bmvae")
    b = load_checkpoint(resumed.checkpoint, kind="bmvae")
    for k in a["model"]:
        torch.testing.assert_close(b["model"][k], a["model"][k], msg=k)
    assert train_rows(resumed.run_dir, "train/loss")[-3:] == pytest.approx(train_rows(straight.run_dir, "train/loss")[-3:])
    assert b["scheduler"]["last_epoch"] == 7 and b["wandb_id"] == saved["wandb_id"]


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tiny_data: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from bmvtrack.pretrain_vae import step as pretrain

    real = pretrain.loss_from_config
    calls = {"n": 0}

    def nan_at_step_5(out, target, cfg, **kwargs):
        parts = real(out, target, cfg, **kwargs)
        if torch.is_grad_enabled():  # training steps only, not validation
            calls["n"] += 1
            if calls["n"] == 5:
                parts["total"] = parts["total"] * float("nan")
        return parts

    monkeypatch.setattr(pretrain, "loss_from_config", nan_at_step_5)
    with pytest.raises(TrainingDiverged, match=r"non-finite loss.*step 5.*last good checkpoint .*checkpoint\.pt \(step 4\)"):
        train(tiny_cfg(tiny_data, tmp_path, epochs=4, checkpoint_every=2), progress=False)
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt", kind="bmvae")
    assert ckpt["step"] == 4
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


def test_nan_through_the_command_exits_nonzero(tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from bmvtrack.pretrain_vae import step as pretrain

    monkeypatch.setattr(pretrain, "loss_from_config", lambda out, t, cfg, **kw: {k: out["kl"] * float("nan") for k in
                                                                                  pretrain.STAT_KEYS})
    args = [a for o in tiny_overrides(tiny_data, tmp_path) for a in ("--set", o)]
    assert pretrain_main([*args, "--quiet"]) == 1
    assert "non-finite loss" in capsys.readouterr().err
    assert not (tmp_path / "checkpoint.pt").exists()


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="bogus"):
        load_pretrain_config(None, ["bogus=1"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  base_width: 8\n  widht: 3\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*model\.widht"):
        load_pretrain_config(bad)
    with pytest.raises(ConfigError, match="lr_min"):
        load_pretrain_config(None, ["lr_min=1e-3", "lr_max=1e-4"])
    assert load_pretrain_config(None, ["lr_max=3e-3"]).lr_max == 3e-3  # "3e-3" is a number, not a string


def test_shipped_configs_load() -> None:
    default = load_pretrain_config(CONFIGS / "pretrain_default.yaml")
    machine_local = {"out_dir": "runs/pretrain_vae", "prior": "runs/prior/prior.json"}  # BMVTRACK_* may move them
    builtin = {**to_dict(PretrainConfig()), **machine_local}
    builtin["data"]["root"] = "data/synth"
    assert to_dict(default) == builtin  # the file spells out the built-in defaults
    davis = load_pretrain_config(CONFIGS / "pretrain_davis.yaml")  # the shipped DAVIS encoder: all 30 sequences
    assert (davis.data.split, davis.val_split, davis.data.resolution) == (
        "configs/folds/davis2016_3fold.yaml:all", None, "240p")
    # the paper's network; its loss without the KL term and the batch class weights
    assert (davis.model.beta, davis.model.class_weights) == (0.0, "none")
    assert {**to_dict(davis.model), "beta": 5.0, "class_weights": "batch"} == to_dict(default.model)
    assert davis.max_steps % davis.cycle_steps == 0 and cycle_end_warning(davis) is None  # ends at lr_min
    assert davis.data.filters == default.data.filters  # unspecified keys keep the pretraining defaults
    plain = load_pretrain_config(CONFIGS / "pretrain_plain_unet.yaml")
    assert plain.model.beta == 0.0 and {**to_dict(plain.model), "beta": 5.0} == to_dict(default.model)


def test_resume_errors_name_the_file(tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    res = train(tiny_cfg(tiny_data, tmp_path, max_steps=2), progress=False)
    wider = tiny_cfg(tiny_data, tmp_path, max_steps=4, **{"model.base_width": 16})
    with pytest.raises(CheckpointError, match=r"checkpoint\.pt: cannot resume.*base_width: checkpoint 8 vs config 16"):
        train(wider, resume=res.checkpoint, progress=False)
    # through the command: the checkpoint's config + an override that changes the network
    assert pretrain_main(["--resume", str(res.checkpoint), "--set", "model.base_width=16", "--quiet"]) == 2
    assert "checkpoint.pt: cannot resume" in capsys.readouterr().err
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(res.checkpoint.read_bytes()[: 5000])
    assert pretrain_main(["--resume", str(truncated), "--quiet"]) == 2
    assert "truncated.pt: unreadable or truncated" in capsys.readouterr().err


def test_command_resume_auto_uses_the_checkpoint_config(tiny_data: Path, tmp_path: Path) -> None:
    args = [a for o in tiny_overrides(tiny_data, tmp_path, max_steps=2) for a in ("--set", o)]
    assert pretrain_main([*args, "--quiet"]) == 0
    cfg, path = resolve_config(None, [f"out_dir={json.dumps(str(tmp_path))}", "max_steps=5"], "auto")
    assert path == tmp_path / "checkpoint.pt" and cfg.model.base_width == 8 and cfg.max_steps == 5
    assert pretrain_main(["--resume", "auto", "--out", str(tmp_path), "--max-steps", "5", "--quiet"]) == 0
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt", kind="bmvae")
    assert ckpt["step"] == 5
    run_dirs = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert len(run_dirs) == 1  # the resumed run writes into the same run folder
    assert (run_dirs[0] / "command.txt").read_text().count("bmvtrack.pretrain_vae") == 2


def test_time_budget_stops_cleanly(tiny_data: Path, tmp_path: Path) -> None:
    res = train(tiny_cfg(tiny_data, tmp_path, epochs=50, time_budget_min=0.001), progress=False)
    assert res.stop_reason == "time_budget" and 1 <= res.step < 150
    assert load_checkpoint(res.checkpoint, kind="bmvae")["step"] == res.step
    assert "val/J" in res.val


def test_extra_data_and_batch_bottleneck(tiny_data: Path, tmp_path: Path) -> None:
    extra = [{"root": str(tiny_data), "layout": "davis2017", "split": "val"}]
    cfg = tiny_cfg(tiny_data, tmp_path, extra_data=extra, max_steps=3, **{"model.bottleneck": "batch"})
    assert cfg.extra_data[0].filters.absent == "keep"  # the pretraining filter defaults
    res = train(cfg, progress=False)
    assert res.step == 3 and np.isfinite(res.train["train/loss"])
    ckpt = load_checkpoint(res.checkpoint, kind="bmvae")
    assert ckpt["model_config"]["bottleneck"] == "batch"


def test_wandb_offline_run_holds_the_loss_keys(tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wb"))
    first = train(tiny_cfg(tiny_data, tmp_path / "out", max_steps=3, **{"wandb.enabled": True}), progress=False)
    assert first.wandb_id
    runs = list((tmp_path / "wb" / "wandb").glob(f"offline-run-*-{first.wandb_id}"))
    assert runs, list((tmp_path / "wb").rglob("*"))
    wanted = (b"train/loss", b"train/kl", b"train/cons", b"val/J")
    # wandb's service process may still be writing the offline file when finish() returns on a
    # loaded machine: give it a moment (a wait for a file, not a speed requirement)
    for _ in range(60):
        blob = b"".join(p.read_bytes() for p in runs[0].glob("*.wandb"))
        if all(key in blob for key in wanted):
            break
        time.sleep(0.5)
    for key in wanted:
        assert key in blob, key
    keys = set().union(*(r.keys() for r in read_metrics(first.run_dir)))
    assert {"train/loss", "train/kl", "train/cons", "train/ce", "train/jaccard", "train/lr", "val/loss", "val/J",
            "val/kl", "val/mahalanobis"} <= keys
    resumed = train(tiny_cfg(tiny_data, tmp_path / "out", max_steps=4, **{"wandb.enabled": True}),
                    resume=first.checkpoint, progress=False)
    assert resumed.wandb_id == first.wandb_id


def _torchrun(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "bmvtrack.pretrain_vae", *args]
    return subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=300, env=env, cwd=REPO)


def _ddp_run(tiny_data: Path, out: Path) -> dict[str, str]:
    import yaml

    cfg = tiny_cfg(tiny_data, out, max_steps=3, epochs=4, batch_size=4, **{"model.bottleneck": "batch"})
    path = out / "tiny.yaml"
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(to_dict(cfg)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    proc = _torchrun(["--config", str(path), "--quiet"], env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "× 2 processes" in proc.stdout
    return env


def test_ddp_two_cpu_processes(tiny_data: Path, tmp_path: Path) -> None:
    """torchrun --nproc_per_node=2 (gloo): rank 0 writes a plain (un-prefixed) checkpoint."""
    _ddp_run(tiny_data, tmp_path)
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt", kind="bmvae")
    assert ckpt["world_size"] == 2 and ckpt["step"] == 3
    assert not any(k.startswith("module.") for k in ckpt["model"])
    assert len(list(tmp_path.glob("pretrain_vae-*"))) == 1  # only rank 0 made a run folder


@pytest.mark.slow
def test_ddp_resume(tiny_data: Path, tmp_path: Path) -> None:
    env = _ddp_run(tiny_data, tmp_path)
    proc = _torchrun(["--resume", "auto", "--out", str(tmp_path), "--max-steps", "5", "--quiet"], env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert load_checkpoint(tmp_path / "checkpoint.pt", kind="bmvae")["step"] == 5


# --------------------------------------------------------------------------- the output folder


def _cli(data: Path, out: Path, **extra: object) -> list[str]:
    return [a for o in tiny_overrides(data, out, **extra) for a in ("--set", o)] + ["--quiet"]


def test_a_finished_run_is_never_replaced_without_being_asked(tiny_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / ".checkpoint.pt.abc.tmp").write_bytes(b"half a checkpoint")  # a killed write's leftover
    assert pretrain_main(_cli(tiny_data, out, max_steps=3)) == 0
    assert not (out / ".checkpoint.pt.abc.tmp").exists()
    files = {p.name: p.read_bytes() for p in (out / "checkpoint.pt", out / "best.pt")}
    first_run = [p.name for p in out.glob("pretrain_vae-*")]
    # the same command again (e.g. pretrain_vae twice with no arguments): refused, nothing touched
    with pytest.raises(RunFolderError) as err:
        pretrain_main(_cli(tiny_data, out, max_steps=3))
    msg = str(err.value)
    assert "\n" not in msg and "already holds a pretraining run" in msg and "(checkpoint.pt, best.pt, pretrain_vae-" in msg
    assert "--resume auto" in msg and "--overwrite" in msg and "another --out" in msg
    assert {n: (out / n).read_bytes() for n in files} == files
    # continuing a *different* run into it would replace its checkpoints just the same
    other = train(tiny_cfg(tiny_data, tmp_path / "other", max_steps=2), progress=False)
    with pytest.raises(RunFolderError, match=r"holds another pretraining run .* than the one --resume continues"):
        pretrain_main(["--resume", str(other.checkpoint), "--out", str(out), "--quiet"])
    with pytest.raises(RunFolderError, match="pass only one of them"):
        pretrain_main(["--resume", "auto", "--out", str(out), "--overwrite", "--quiet"])
    assert {n: (out / n).read_bytes() for n in files} == files and [p.name for p in out.glob("pretrain_vae-*")] == first_run
    # --resume auto continues it; --overwrite replaces it (the old run folder goes with it)
    assert pretrain_main(["--resume", "auto", "--out", str(out), "--max-steps", "4", "--quiet"]) == 0
    assert load_checkpoint(out / "checkpoint.pt", kind="bmvae")["step"] == 4
    time.sleep(1.1)  # run folders are named by the second
    assert pretrain_main(_cli(tiny_data, out, max_steps=2) + ["--overwrite"]) == 0
    runs = [p.name for p in out.glob("pretrain_vae-*")]
    assert len(runs) == 1 and runs != first_run
    assert load_checkpoint(out / "checkpoint.pt", kind="bmvae")["step"] == 2


def _pretrain_process(args: list[str]) -> subprocess.Popen[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "bmvtrack.pretrain_vae", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)


def _wait_for(cond, proc: subprocess.Popen[str], what: str, timeout: float = 120.0) -> None:
    end = time.time() + timeout
    while not cond():
        if proc.poll() is not None:
            raise AssertionError(f"process ended before {what}: " + proc.stdout.read()[-2000:] + proc.stderr.read()[-2000:])
        assert time.time() < end, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_two_processes_on_one_out_dir(tiny_data: Path, tmp_path: Path) -> None:
    """The second pretrain_vae on a folder being written stops at once; the first's run is intact."""
    from bmvtrack.run_folder import writer_pid

    out = tmp_path / "run"
    # the first runs on its time budget (about 20 s), long past the second's start
    first = _pretrain_process(_cli(tiny_data, out, epochs=100000, time_budget_min=0.35, checkpoint_every=5))
    try:
        _wait_for(lambda: writer_pid(out) == str(first.pid), first, "the first run's lock")
        t = time.perf_counter()
        second = _pretrain_process(_cli(tiny_data, out, max_steps=2))
        _, err = second.communicate(timeout=120)
        second_s = time.perf_counter() - t
        assert first.poll() is None, "the first run ended before the second was refused: make it longer"
    finally:
        out_first, err_first = first.communicate(timeout=300)
    assert second.returncode == 2, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: ") and f"another process (pid {first.pid}) is writing this folder" in last, err
    assert "Traceback" not in err
    assert first.returncode == 0, err_first[-3000:]
    assert second_s < 60  # refused before any data preparation or training (imports dominate)
    # the first run's files are its own and whole: one run folder, steps logged once each, in order
    runs = list(out.glob("pretrain_vae-*"))
    assert len(runs) == 1
    ckpt = load_checkpoint(out / "checkpoint.pt", kind="bmvae")
    steps = [r["step"] for r in read_metrics(runs[0]) if "train/loss" in r]
    assert steps == list(range(1, ckpt["step"] + 1))
    assert ckpt["run_name"] == runs[0].name and load_checkpoint(out / "best.pt", kind="bmvae")["run_name"] == runs[0].name


def test_a_killed_run_resumes_exactly_through_the_command(tiny_data: Path, tmp_path: Path) -> None:
    """SIGKILL mid-run (stale .lock, maybe a half-written checkpoint), then --resume auto: the same weights."""
    straight = train(tiny_cfg(tiny_data, tmp_path / "straight", max_steps=12, epochs=6, checkpoint_every=1),
                     progress=False)
    out = tmp_path / "killed"
    proc = _pretrain_process(_cli(tiny_data, out, max_steps=12, epochs=6, checkpoint_every=1))

    def saved_step() -> int:
        try:
            return load_checkpoint(out / "checkpoint.pt", kind="bmvae")["step"]
        except CheckpointError:
            return -1

    try:
        _wait_for(lambda: saved_step() >= 3, proc, "a checkpoint at step 3")
    finally:
        proc.kill()
        proc.communicate(timeout=60)
    killed_at = saved_step()
    assert 3 <= killed_at < 12
    (out / ".checkpoint.pt.zz9.tmp").write_bytes(b"a write the kill interrupted")
    assert pretrain_main(["--resume", "auto", "--out", str(out), "--quiet"]) == 0
    assert not list(out.glob(".*.tmp"))
    a = load_checkpoint(straight.checkpoint, kind="bmvae")
    b = load_checkpoint(out / "checkpoint.pt", kind="bmvae")
    assert b["step"] == 12, killed_at
    for k in a["model"]:
        torch.testing.assert_close(b["model"][k], a["model"][k], rtol=0, atol=0, msg=k)


def test_an_interrupted_run_without_checkpoint_is_refused_without_suggesting_resume(tmp_path: Path) -> None:
    from bmvtrack.pretrain_vae import claim_out_dir

    (tmp_path / "pretrain_vae-20250101-000000" / "samples").mkdir(parents=True)  # killed before its first checkpoint
    with pytest.raises(RunFolderError) as err:
        claim_out_dir(tmp_path)
    assert "(pretrain_vae-20250101-000000); pass --overwrite" in str(err.value) and "--resume" not in str(err.value)
    with claim_out_dir(tmp_path, overwrite=True) as folder:
        assert [p.name for p in folder.removed] == ["pretrain_vae-20250101-000000"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock"]


def test_runs_with_the_same_name_are_still_told_apart(tiny_data: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Run names are made of the start second: two runs started together share one; run_id does not."""
    from bmvtrack.pretrain_vae import trainer as pretrain

    monkeypatch.setattr(pretrain, "run_name", lambda command, tag="": "pretrain_vae-20250101-000000")
    a = train(tiny_cfg(tiny_data, tmp_path / "a", max_steps=2), progress=False)
    b = train(tiny_cfg(tiny_data, tmp_path / "b", max_steps=2), progress=False)
    ids = [load_checkpoint(r.checkpoint, kind="bmvae")["run_id"] for r in (a, b)]
    assert a.run_dir.name == b.run_dir.name and ids[0] != ids[1]
    before = a.checkpoint.read_bytes()
    with pytest.raises(RunFolderError, match=r"holds another pretraining run \(checkpoint\.pt, best\.pt\)"):
        train(tiny_cfg(tiny_data, tmp_path / "a", max_steps=3), resume=b.checkpoint, progress=False)
    assert a.checkpoint.read_bytes() == before
    # its own checkpoint resumes (run_id kept)
    again = train(tiny_cfg(tiny_data, tmp_path / "a", max_steps=3), resume=a.checkpoint, progress=False)
    assert again.step == 3 and load_checkpoint(a.checkpoint, kind="bmvae")["run_id"] == ids[0]


def test_cosine_schedule_decays_once_and_resumes_only_over_its_own_horizon(tiny_data: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cosine decays over max_steps"):
        load_pretrain_config(None, ["lr_schedule=cosine"])
    assert cycle_end_warning(load_pretrain_config(None, ["lr_schedule=cosine", "cycle_steps=400", "max_steps=600"])) is None
    cfg = tiny_cfg(tiny_data, tmp_path / "a", max_steps=6, epochs=4, lr_schedule="cosine", lr_min=1e-5)
    res = train(cfg, progress=False)
    lrs = train_rows(res.run_dir, "train/lr")
    # the learning rate after each step: from the peak (no warm-up), one decay (no cycle), down to lr_min
    assert len(lrs) == 6 and lrs[0] > 0.9 * cfg.lr_max and lrs[-1] == pytest.approx(cfg.lr_min)
    assert all(b < a for a, b in zip(lrs, lrs[1:]))
    assert load_checkpoint(res.checkpoint, kind="bmvae")["scheduler"]["T_max"] == 6
    for other in (dict(max_steps=9, lr_schedule="cosine"), dict(max_steps=9)):  # another horizon; cyclical
        with pytest.raises(CheckpointError, match=r"checkpoint\.pt: checkpoint state does not fit.*cosine decay over 6"):
            Trainer(tiny_cfg(tiny_data, tmp_path / "a", epochs=4, lr_min=1e-5, **other), resume=res.checkpoint,
                    progress=False)


def test_the_unet_loop_options_train_and_a_resume_refuses_another_optimiser(tiny_data: Path, tmp_path: Path) -> None:
    loop = dict(optimizer="adam", lr_schedule="cosine", grad_clip=0.0, lr_min=1e-6)
    cfg = tiny_cfg(tiny_data, tmp_path / "a", max_steps=20, epochs=10, **loop,
                   **{"model.mask_loss": "bce_dice", "model.class_weights": "none", "model.beta": 0.0})
    trainer = Trainer(cfg, progress=False)
    assert type(trainer.opt.optimizer) is torch.optim.Adam
    res = trainer.fit()
    losses = train_rows(res.run_dir, "train/loss")
    assert len(losses) == 20 and np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5]), losses
    assert load_checkpoint(res.checkpoint, kind="bmvae")["model_config"]["mask_loss"] == "bce_dice"
    with pytest.raises(CheckpointError, match=r"checkpoint\.pt: checkpoint state does not fit.*optimiser is adam, the config's radam"):
        Trainer(tiny_cfg(tiny_data, tmp_path / "a", max_steps=30, epochs=10, **{**loop, "optimizer": "radam"},
                         **{"model.mask_loss": "bce_dice", "model.class_weights": "none", "model.beta": 0.0}),
                resume=res.checkpoint, progress=False)


def test_a_step_budget_that_stops_at_the_learning_rate_peak_is_warned_about() -> None:
    cfg = load_pretrain_config(None, ["cycle_steps=400"])
    assert cycle_end_warning(cfg) is None  # no step budget: the time budget decides
    for steps, warned in ((800, False), (820, False), (600, True), (700, True), (1200, False)):
        cfg = load_pretrain_config(None, ["cycle_steps=400", f"max_steps={steps}"])
        assert (cycle_end_warning(cfg) is not None) == warned, steps
