"""W&B offline runs (into a temporary folder) hold the metric keys, images and video we log, and each
command's resolved configuration as the run's config (read back from the run's record log)."""
from __future__ import annotations

import json
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from bmvtrack.data.synth import SynthConfig, generate_dataset


@pytest.fixture()
def offline_wandb(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.delenv("WANDB_RUN_GROUP", raising=False)
    return tmp_path


@pytest.fixture()
def synth(tmp_path: Path) -> Path:
    return generate_dataset(tmp_path / "d", "davis2017", videos=2, seed=0,
                            cfg=SynthConfig(width=160, height=120, frames=6), progress=False)


def _run_dir(root: Path, timeout: float = 60.0) -> Path:
    """The one offline run under ``root``, once its record log is complete: wandb-core may still be
    writing it after ``finish()`` returned (seen on a loaded machine), so wait for its exit record."""
    deadline = time.monotonic() + timeout
    while True:
        runs = list((root / "wandb").glob("offline-run-*"))
        assert len(runs) <= 1, runs
        if runs and any(r.WhichOneof("record_type") == "exit" for r in _records(runs[0])):
            return runs[0]
        assert time.monotonic() < deadline, f"no finished W&B run under {root} after {timeout:.0f} s"
        time.sleep(0.1)


def _history_holds(run: Path, *keys: str) -> bool:
    data = next(run.glob("run-*.wandb")).read_bytes()  # the offline run's record log
    return all(k.encode() in data for k in keys)


def _records(run: Path):
    """The protobuf records of an offline run's ``.wandb`` file (a LevelDB-style log: 32 KiB blocks
    of chunks, each ``crc32 u32, length u16, type u8`` + data; types full/first/middle/last)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = b"".join(f.read_bytes() for f in run.glob("run-*.wandb"))
    if data[:4] != b":W&B":  # not written yet
        return
    pos, buf, block = 7, b"", 32768
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a chunk header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0 or pos + 7 + length > len(data):  # the end, or a chunk still being written
            break
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        buf = chunk if kind in (1, 2) else buf + chunk
        if kind in (1, 4):
            yield pb.Record.FromString(buf)


def run_record(run: Path) -> tuple[dict, dict]:
    """``(config, run)`` of an offline run: its config as logged, and its group, job type and name."""
    config, info = {}, {}
    for rec in _records(run):
        kind = rec.WhichOneof("record_type")
        items = rec.run.config.update if kind == "run" else rec.config.update if kind == "config" else []
        if kind == "run":
            info = {"group": rec.run.run_group, "job_type": rec.run.job_type, "name": rec.run.display_name}
        config.update({item.key: json.loads(item.value_json) for item in items})
    config.pop("_wandb", None)
    return config, info


def test_visualize_logs_video_image_metrics_and_config(offline_wandb: Path, synth: Path, tmp_path: Path):
    from bmvtrack import visualize

    assert visualize.main(["--data", str(synth), "--trackers", "zero,oracle", "--out", str(tmp_path / "vis"),
                           "--no-gif"]) == 0
    run = _run_dir(offline_wandb)
    (video,) = list((run / "files/media/videos/rollout").glob("*.mp4"))
    assert video.read_bytes()[4:8] == b"ftyp"  # the H.264 MP4 itself, not a conversion
    assert list((run / "files/media/images/rollout").glob("*.png"))
    assert _history_holds(run, "rollout/zero/mean_iou", "rollout/oracle/mean_iou", "rollout/video")
    config, info = run_record(run)
    assert {"args", "data", "sequence", "frames", "trackers"} <= set(config)
    assert config["args"]["trackers"] == "zero,oracle" and config["args"]["fps"] == 10
    assert config["data"]["root"] == str(synth) and config["data"]["layout"] == "davis2017"  # --layout auto, resolved
    assert config["trackers"] == ["zero", "oracle"] and config["frames"] == 6
    assert info["job_type"] == "visualize"


def test_evaluate_logs_table_plot_metrics_and_config(offline_wandb: Path, synth: Path, tmp_path: Path):
    from bmvtrack import evaluate

    assert evaluate.main(["--data", str(synth), "--trackers", "zero,oracle", "--out", str(tmp_path / "ev"),
                          "--no-progress", "--max-tracks", "2"]) == 0
    run = _run_dir(offline_wandb)
    assert list((run / "files/media/images/eval").glob("*.png"))
    assert _history_holds(run, "eval/zero/success_auc", "eval/oracle/mean_iou", "eval/overall")
    config, info = run_record(run)
    assert {"args", "command", "title", "data", "adapt", "kind", "trackers", "tracks"} <= set(config)
    assert config["args"]["max_tracks"] == 2 and config["args"]["box_method"] == "minarearect"
    assert config["args"]["out"] == str(tmp_path / "ev") and config["args"]["no_wandb"] is False
    assert config["data"] == {**config["data"], "root": str(synth), "layout": "davis2017", "split": None}
    assert config["data"]["filters"]["absent"] == "keep" and config["data"]["resolution"] == "120p"
    assert config["trackers"] == ["zero", "oracle"] and config["tracks"] == 2 and config["kind"] == "run"
    assert config["adapt"]["steps"] > 0 and config["command"].startswith("python -m bmvtrack.evaluate ")
    assert info == {**info, "job_type": "evaluate", "group": ""}


@pytest.fixture()
def tiny_encoder(tmp_path: Path) -> tuple[Path, Path]:
    """A prior and a tiny βMVUnet checkpoint (untrained) for the commands that read an encoder."""
    from bmvtrack.checkpoint import save_checkpoint
    from bmvtrack.config import to_dict
    from bmvtrack.models import ModelConfig, build_model
    from bmvtrack.motion import MotionPrior

    torch.manual_seed(0)
    prior = MotionPrior(np.array([1, 1, 0, 0, 0.0]), np.diag([0.003, 0.003, 0.003, 0.0004, 0.0004]))
    prior.save(tmp_path / "prior.json")
    small = ModelConfig(patch_size=32, base_width=8, decoder_width=8, z_channels=8, part_size=4)
    net = build_model(small, prior.mean, prior.cov, prior.sample_std)
    save_checkpoint(tmp_path / "enc.pt", {"kind": "bmvae", "model": net.state_dict(), "model_config": to_dict(small)})
    return tmp_path / "prior.json", tmp_path / "enc.pt"


def test_train_sac_logs_its_full_config_in_the_runners_group(offline_wandb: Path, synth: Path, tiny_encoder,
                                                             tmp_path: Path):
    from bmvtrack import train_sac

    prior, enc = tiny_encoder
    sets = {"env.data.root": synth, "env.data.layout": "davis2017", "env.prior": prior, "agent.learning_starts": 20,
            "agent.batch_size": 16, "agent.buffer_size": 500, "agent.net_arch": "[16,16]", "n_envs": 1,
            "eval_every": 40, "eval_tracks": 1, "checkpoint_every": 40, "wandb.group": "exp/mvsac"}
    argv = ["--encoder", str(enc), "--timesteps", "40", "--time-budget", "0", "--seed", "3",
            "--out", str(tmp_path / "agent"), *sum((["--set", f"{k}={v}"] for k, v in sets.items()), [])]
    assert train_sac.main(argv) == 0
    config, info = run_record(_run_dir(offline_wandb))
    assert {"env", "agent", "encoder", "seed", "n_envs", "eval_every", "out_dir", "wandb"} <= set(config)
    assert config["agent"]["total_timesteps"] == 40 and config["agent"]["net_arch"] == [16, 16]
    assert config["env"]["data"]["root"] == str(synth) and config["env"]["prior"] == str(prior)
    assert config["encoder"] == str(enc) and config["seed"] == 3 and config["wandb"]["mode"] == "offline"
    assert info == {**info, "group": "exp/mvsac", "job_type": "train_sac"}  # the experiment runner's grouping


def test_evaluate_vae_logs_its_config_and_takes_the_group_from_the_environment(offline_wandb: Path, synth: Path,
                                                                               tiny_encoder, tmp_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch):
    from bmvtrack.evaluate_vae import main

    monkeypatch.setenv("WANDB_RUN_GROUP", "pexp/bmvunet")  # as scripts/run_pretrain_experiments.sh sets it
    _, enc = tiny_encoder
    assert main(["--checkpoint", str(enc), "--data", str(synth), "--out", str(tmp_path / "ve"), "--max-tracks", "1",
                 "--quiet"]) == 0
    config, info = run_record(_run_dir(offline_wandb))
    assert {"args", "eval", "data", "model", "checkpoint", "device", "command", "out"} <= set(config)
    assert config["eval"]["crop"] == "gt" and config["eval"]["max_tracks"] == 1
    assert config["model"]["patch_size"] == 32 and config["data"]["layout"] == "davis2017"
    assert info == {**info, "group": "pexp/bmvunet", "job_type": "evaluate_vae"}


def test_a_wandb_that_fails_to_start_only_warns(offline_wandb: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture):
    import wandb

    from bmvtrack.logging_wandb import RunLogger, read_metrics

    def refuse(**_kw):
        raise wandb.errors.UsageError("api_key not configured (no-tty)")

    monkeypatch.setattr(wandb, "init", refuse)
    logger = RunLogger(tmp_path / "r", "x", "evaluate", {"a": Path("/p")})
    logger.log({"eval/x": 1.0}, step=0)
    logger.finish()
    assert logger.run_id is None and read_metrics(tmp_path / "r") == [{"step": 0, "eval/x": 1.0}]
    assert "W&B did not start" in capsys.readouterr().err


def test_configs_are_logged_as_plain_data():
    from bmvtrack.adaptation import AdaptConfig
    from bmvtrack.logging_wandb import plain

    value = {"p": Path("/a/b"), "t": (1, Path("c")), "n": np.float32(0.5), "arr": np.arange(3), "cfg": AdaptConfig(steps=2)}
    out = plain(value)
    assert out["p"] == "/a/b" and out["t"] == [1, "c"] and out["n"] == 0.5 and out["arr"] == [0, 1, 2]
    assert out["cfg"]["steps"] == 2 and json.loads(json.dumps(out)) == out
