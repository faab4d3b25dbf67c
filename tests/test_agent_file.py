"""Agent files are data only, bound to their encoder, and a killed run resumes to the same result."""
from __future__ import annotations

import base64
import json
import os
import pickle
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import bmvtrack.agents.agent_file as agent_file
from bmvtrack.agents.agent_file import AgentFileError, latest_checkpoint, load_agent
from bmvtrack.agents.loading import learned_tracker_factories, policy_tracker_factory
from bmvtrack.agents.train_sac import train
from bmvtrack.checkpoint import CheckpointError, save_checkpoint
from bmvtrack.config import ConfigError, to_dict
from bmvtrack.models import build_model
from bmvtrack.motion import MotionPrior
from bmvtrack.run_folder import RunFolderError
from test_training import TINY, setup, tiny_cfg  # noqa: F401  (fixture)

REPO = Path(__file__).resolve().parents[1]


class Payload:
    """Unpickling this runs ``touch MARKER``: the proof that a loader executed code."""

    marker = ""

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def pickled_payload(marker: Path) -> bytes:
    Payload.marker = str(marker)
    return pickle.dumps(Payload())


def sb3_zip(path: Path, marker: Path) -> Path:
    """The crafted SB3 model.zip: a cloudpickled class in its ``data`` entry."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("data", json.dumps({"policy_class": {":serialized:": base64.b64encode(pickled_payload(marker)).decode()}}))
    return path


@pytest.fixture(scope="module")
def trained(setup):  # noqa: F811
    root, data = setup
    cfg = tiny_cfg(root, data)
    cfg.out_dir = str(root / "agent_file_run")
    cfg.agent.total_timesteps = 120
    out = train(cfg)
    return root, data, out["run_dir"]


def one_line(exc: BaseException, *names: str) -> str:
    msg = str(exc)
    assert "\n" not in msg and "weights_only" not in msg, msg
    for n in names:
        assert n in msg, msg
    return msg


def test_agent_folder_holds_only_data_and_reloads_the_same_policy(trained):
    _, _, run = trained
    ckpt = latest_checkpoint(run)
    assert sorted(p.name for p in ckpt.iterdir()) == ["agent.json", "replay_buffer.npz", "state.pt", "weights.pt"]
    torch.load(ckpt / "weights.pt", weights_only=True)  # loadable without unpickling objects
    torch.load(ckpt / "state.pt", weights_only=True)
    np.load(ckpt / "replay_buffer.npz", allow_pickle=False)
    model, meta, _ = load_agent(run)
    again, _, _ = load_agent(ckpt)
    obs = np.random.default_rng(0).standard_normal((4, *model.observation_space.shape)).astype(np.float32)
    assert np.array_equal(model.predict(obs, deterministic=True)[0], again.predict(obs, deterministic=True)[0])
    assert meta["num_timesteps"] == 120 and len(meta["encoder"]["sha256"]) == 64


def test_crafted_payloads_never_run(trained, tmp_path):
    root, _, run = trained
    marker = tmp_path / "PWNED"
    evil_zip = sb3_zip(tmp_path / "evil.zip", marker)
    cases = []
    with pytest.raises(AgentFileError) as e:
        policy_tracker_factory(evil_zip)
    cases.append(e.value)
    with pytest.raises(AgentFileError) as e:
        learned_tracker_factories([f"x={evil_zip}"], [])
    cases.append(e.value)
    with pytest.raises(AgentFileError) as e:
        train(tiny_cfg(root, trained[1]), resume=str(evil_zip))
    cases.append(e.value)
    # a copy of a real agent with each of its files replaced by a pickle payload
    for name in ("weights.pt", "state.pt", "replay_buffer.npz"):
        evil = tmp_path / f"evil_{name}"
        shutil.copytree(latest_checkpoint(run), evil)
        if name.endswith(".npz"):
            np.savez(evil / name, observations=np.array([Payload()], dtype=object))
        else:
            torch.save({"kind": "agent-weights", "x": Payload()}, evil / name)
        with pytest.raises(CheckpointError) as e:
            if name == "weights.pt":
                load_agent(evil)
            elif name == "state.pt":
                agent_file.load_training_arrays(evil)
            else:
                model, _, _ = load_agent(evil)
                agent_file.load_buffer(model.replay_buffer, evil / name)
        cases.append(e.value)
    assert not marker.exists()
    for exc in cases:
        one_line(exc)


def test_the_crafted_zip_from_the_command_line_runs_nothing(tmp_path):
    marker = tmp_path / "PWNED"
    evil = sb3_zip(tmp_path / "evil.zip", marker)
    for cmd in (["evaluate", "--trackers", "zero", "--policy", f"x={evil}", "--out", str(tmp_path / "ev")],
                ["train_sac", "--resume", str(evil)]):
        res = subprocess.run([sys.executable, "-m", f"bmvtrack.{cmd[0]}", *cmd[1:], "--no-wandb"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
        assert res.returncode == 2, res.stderr[-2000:]
        last = res.stderr.strip().splitlines()[-1]
        assert last.startswith("error: ") and "evil.zip" in last and "Traceback" not in res.stderr
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["missing", "empty_dir", "bad_json", "other_format", "truncated_weights",
                                    "no_weights", "other_width", "dangling_latest", "text_file"])
def test_every_bad_agent_is_one_clear_line(trained, tmp_path, damage):
    _, _, run = trained
    bad = tmp_path / "agent"
    shutil.copytree(latest_checkpoint(run), bad)
    target = bad
    if damage == "missing":
        target = tmp_path / "nope"
    elif damage == "empty_dir":
        shutil.rmtree(bad)
        bad.mkdir()
    elif damage == "bad_json":
        (bad / "agent.json").write_text("{not json")
    elif damage == "other_format":
        (bad / "agent.json").write_text(json.dumps({"format": "something-else"}))
    elif damage == "truncated_weights":
        data = (bad / "weights.pt").read_bytes()
        (bad / "weights.pt").write_bytes(data[: len(data) // 2])
    elif damage == "no_weights":
        (bad / "weights.pt").unlink()
    elif damage == "other_width":
        meta = json.loads((bad / "agent.json").read_text())
        meta["kwargs"]["policy_kwargs"]["net_arch"] = [16, 16]
        (bad / "agent.json").write_text(json.dumps(meta))
    elif damage == "dangling_latest":
        shutil.copytree(run, tmp_path / "run")
        (tmp_path / "run" / "checkpoints" / "latest").write_text("ckpt-999999-step-1\n")
        target = tmp_path / "run"
    elif damage == "text_file":
        target = tmp_path / "notes.txt"
        target.write_text("hello")
    with pytest.raises(CheckpointError) as e:
        policy_tracker_factory(target)
    one_line(e.value, target.name)


def test_an_agent_is_bound_to_its_encoder(trained, tmp_path, capsys):
    root, _, run = trained
    tracker = policy_tracker_factory(run)()
    other = tmp_path / "enc.pt"
    prior = MotionPrior.load(root / "prior.json")
    torch.manual_seed(5)
    net = build_model(TINY, prior.mean, prior.cov, prior.sample_std)
    save_checkpoint(other, {"kind": "bmvae", "model": net.state_dict(), "model_config": to_dict(TINY)})
    with pytest.raises(AgentFileError) as e:
        policy_tracker_factory(run, encoder=other)
    one_line(e.value, "enc.pt", "--allow-other-encoder")
    assert policy_tracker_factory(run, encoder=other, allow_other_encoder=True)() is not None
    assert "used anyway" in capsys.readouterr().err
    assert tracker is not None


def test_a_finished_run_is_not_replaced_and_resume_validates_before_writing(trained):
    root, data, run = trained
    cfg = tiny_cfg(root, data)
    cfg.out_dir, cfg.agent.total_timesteps = str(run), 120
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != ".lock"}
    with pytest.raises(RunFolderError) as e:
        train(cfg)
    one_line(e.value, "--resume", "--overwrite")
    other = tiny_cfg(root, data, algo="sac")
    other.out_dir = str(run)
    with pytest.raises(ConfigError) as e:  # another algorithm cannot continue this run
        train(other, resume=str(run))
    one_line(e.value, "agent.algo")
    after = {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != ".lock"}
    assert after == before


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs, no handler catches it."""


def final_state(run: Path) -> tuple[dict, dict, int]:
    model, meta, folder = load_agent(run)
    with np.load(folder / "replay_buffer.npz", allow_pickle=False) as z:
        buf = {k: z[k] for k in z.files}
    return model.policy.state_dict(), buf, meta["training"]["n_updates"]


_STRAIGHT: dict[str, tuple] = {}


def straight_run(root: Path, data: Path, algo: str) -> tuple:
    """The uninterrupted run's final state (made once per algorithm)."""
    if algo not in _STRAIGHT:
        cfg = tiny_cfg(root, data, algo=algo)
        cfg.out_dir, cfg.agent.total_timesteps, cfg.checkpoint_every = str(root / f"straight_{algo}"), 240, 40
        train(cfg)
        _STRAIGHT[algo] = final_state(Path(cfg.out_dir))
    return _STRAIGHT[algo]


@pytest.mark.parametrize("algo,stage", [("sac", "agent_json"), ("sac", "weights"), ("sac", "buffer"),
                                        ("sac", "renamed"), ("sac", "pointer"), ("mvsac", "weights"),
                                        ("mvsac", "pointer")])
def test_a_run_killed_at_any_point_of_a_checkpoint_resumes_to_the_same_result(setup, algo, stage,  # noqa: F811
                                                                             monkeypatch):
    """Killed while writing the 3rd checkpoint (at the named point), resumed: bit-identical weights,
    replay buffer and update count to the uninterrupted run."""
    root, data = setup
    ref_w, ref_buf, ref_updates = straight_run(root, data, algo)
    cfg = tiny_cfg(root, data, algo=algo)
    cfg.out_dir, cfg.agent.total_timesteps, cfg.checkpoint_every = str(root / f"killed_{algo}_{stage}"), 240, 40
    calls = {"n": 0}

    def stage_hook(name: str) -> None:
        if name == stage:
            calls["n"] += 1
            if calls["n"] == 3:
                raise Killed(name)

    monkeypatch.setattr(agent_file, "_stage", stage_hook)
    with pytest.raises(Killed):
        train(cfg)
    monkeypatch.undo()
    train(cfg, resume=cfg.out_dir)
    weights, buf, updates = final_state(Path(cfg.out_dir))
    assert updates == ref_updates
    assert weights.keys() == ref_w.keys() and all(torch.equal(weights[k], ref_w[k]) for k in weights)
    assert buf.keys() == ref_buf.keys() and all(np.array_equal(buf[k], ref_buf[k]) for k in buf)
    assert not list((Path(cfg.out_dir) / "checkpoints").glob(".*.partial"))
