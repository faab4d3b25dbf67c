"""The motion agent: perturbed and random starts, motion-posterior states, box-relative actions, the
expert at visited states, the three variants, saving and scoring (tiny networks, tiny synthetic data)."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from bmvtrack.agents import motion_agent as ma
from bmvtrack.agents.agent_file import AgentFileError
from bmvtrack.agents.expert import ExpertReplayBuffer, expert_loss
from bmvtrack.checkpoint import save_checkpoint
from bmvtrack.config import to_dict
from bmvtrack.data.readers import DataConfig, TrackFilter
from bmvtrack.data.synth import SynthConfig, generate_dataset
from bmvtrack.envs.motion_env import make_motion_env
from bmvtrack.envs.motion_state import MotionState
from bmvtrack.envs.tracking_env import EnvConfig, TrackingEnv
from bmvtrack.models import ModelConfig, build_model
from bmvtrack.motion import RBox, apply_relative, perturbed_box, rotated_iou

KEEP = TrackFilter(absent="keep", max_box_fraction=1.0)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> DataConfig:
    root = tmp_path_factory.mktemp("agent_data")
    cfg = SynthConfig(width=160, height=120, frames=12, objects=(1, 1), leave_prob=0.0, occlusion_prob=0.0)
    generate_dataset(root, "davis2017", videos=3, seed=5, cfg=cfg, progress=False)
    return DataConfig(root=str(root), layout="davis2017", split="train", filters=KEEP)


@pytest.fixture(scope="module")
def net_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny motion posterior (reference: box) with a box-relative prior, as a checkpoint."""
    torch.manual_seed(0)
    cfg = ModelConfig(input="pair", in_channels=7, reference="box", patch_size=32, base_width=8, decoder_width=8,
                      z_channels=8, keypoints=4)
    cov = np.diag([0.04, 0.04, 0.01, 0.04, 0.04])
    net = build_model(cfg, np.zeros(5), cov)
    path = tmp_path_factory.mktemp("agent_net") / "motion.pt"
    save_checkpoint(path, {"kind": "bmvae", "version": 1, "model": net.state_dict(), "model_config": to_dict(cfg)})
    return path


# ------------------------------------------------------------------------------------ starts


def test_random_and_perturbed_starts_and_mid_track_throws(data: DataConfig) -> None:
    plain = TrackingEnv(EnvConfig(data=data, template=False))
    _, info = plain.reset(seed=0)
    assert plain._t == 0 and info["iou"] == 1.0
    env = TrackingEnv(EnvConfig(data=data, template=False, start="random", start_shift=0.3, start_scale=0.2))
    starts, ious = set(), []
    for k in range(12):
        _, info = env.reset(seed=k)
        starts.add(env._t)
        ious.append(info["iou"])
        assert rotated_iou(env.box, env._gt[env._t]) == pytest.approx(info["iou"])
    assert len(starts) > 3  # random frames
    assert max(ious) < 1.0 and min(ious) < 0.7  # off the annotated box
    with pytest.raises(ValueError, match="start frame"):
        env.reset(options={"track_index": 0, "frame": 11})  # the last frame has no next one

    throwing = TrackingEnv(EnvConfig(data=data, template=False, start_shift=0.5, start_scale=0.2, perturb_prob=1.0,
                                     lost_frames=0))
    throwing.reset(seed=0)
    gt_next = throwing._gt[1]
    g = throwing._expert()[0]  # the move onto the next annotated box ...
    _, reward, *_ = throwing.step(g)
    assert reward == pytest.approx(1.0, abs=1e-6)  # ... is rewarded before the throw,
    assert rotated_iou(throwing.box, gt_next) < 0.99  # and the box is thrown after it
    with pytest.raises(ValueError, match="start_shift"):
        TrackingEnv(EnvConfig(data=data, perturb_prob=0.1))


def test_a_random_start_resumes_exactly(data: DataConfig) -> None:
    env = TrackingEnv(EnvConfig(data=data, template=False, start="random", start_shift=0.2))
    env.reset(seed=3)
    env.step(env._expert()[0])
    state = env.get_state()
    other = TrackingEnv(EnvConfig(data=data, template=False, start="random", start_shift=0.2))
    other.set_state(state)
    assert (other._start, other._t, other.box) == (env._start, env._t, env.box)
    a, b = env.step(env._expert()[0]), other.step(other._expert()[0])
    assert a[1] == b[1]


def test_perturbed_box_is_the_evaluation_recipe() -> None:
    box = RBox(50, 40, 20, 10, 15)
    out = perturbed_box(box, [1.0, -2.0, 0.5, 0.0], 0.5, 0.2)
    assert (out.cx, out.cy) == (50 + 0.5 * 20, 40 - 0.5 * 2 * 20)
    assert out.w == pytest.approx(20 * np.exp(0.1)) and out.h == 10 and out.angle == 15


# ------------------------------------------------------------------------------------ state and env


def test_the_state_names_its_slices_and_the_cache_changes_no_number(net_path: Path, data: DataConfig) -> None:
    state = MotionState(net_path)
    env = make_motion_env(state, data=data)
    obs, _ = env.reset(seed=0)
    lay = state.layout
    assert obs.shape == (state.dim,) and lay["box"].stop == state.dim
    tril = obs[lay["search/tril"]]
    assert np.all(np.isfinite(obs)) and tril[0] > 0  # a Cholesky factor: positive diagonal
    raw = env.raw
    frames = raw.dataset.frame(raw.track, 0), raw.dataset.frame(raw.track, 1)
    cached = state(*frames, raw.box, key="k")
    again = state(*frames, RBox(raw.box.cx + 0.2, raw.box.cy, raw.box.w, raw.box.h, raw.box.angle), key="k")
    fresh = state(*frames, RBox(raw.box.cx + 0.2, raw.box.cy, raw.box.w, raw.box.h, raw.box.angle))
    assert state.hits >= 1
    np.testing.assert_array_equal(cached, again)
    np.testing.assert_array_equal(again, fresh)  # the same rounded box: the same state, cached or not
    with pytest.raises(ValueError, match="pair"):
        MotionState(build_model(ModelConfig(patch_size=32, base_width=8, decoder_width=8, z_channels=8),
                                np.zeros(5), np.eye(5) * 0.01))


def test_relative_actions_move_the_box_exactly_and_the_expert_lands_on_the_annotation(
        net_path: Path, data: DataConfig) -> None:
    env = make_motion_env(MotionState(net_path), data=data, lost_frames=0)
    env.reset(seed=1)
    raw = env.raw
    r = np.array([0.05, -0.03, 0.02, 0.04, -0.02], dtype=np.float32)
    before = raw.box
    _, _, _, _, info = env.step(r)
    np.testing.assert_allclose(raw.box.as_array(), apply_relative(before, r).as_array(), atol=1e-5)
    assert info["action_g"].shape == (5,)
    expert = info["expert_relative"]
    _, reward, *_ = env.step(expert)
    assert reward > 0.97  # the expert's move reaches the next annotated box (up to the bounds)
    with pytest.raises(ValueError, match="finite"):
        env.step(np.array([np.nan] * 5))


# ------------------------------------------------------------------------------------ the agent


def _cfg(net_path: Path, data: DataConfig, variant: str, steps: int = 120) -> ma.MotionAgentConfig:
    return ma.MotionAgentConfig(motion_net=str(net_path), data=data, variant=variant, steps=steps, learning_starts=40,
                                batch_size=32, net_arch=(32, 32))


def test_the_untrained_agent_is_the_posterior_mean_rule(net_path: Path, data: DataConfig) -> None:
    model, env, _ = ma.build(_cfg(net_path, data, "rl"))
    assert float(model.log_ent_coef.detach().exp()) == pytest.approx(1.0)  # SB3's "auto" start
    small = ma.build(replace(_cfg(net_path, data, "rl"), ent_coef_init=0.01))[0]
    assert float(small.log_ent_coef.detach().exp()) == pytest.approx(0.01)
    obs, _ = env.reset(seed=0, options={"frame": 0})
    for _ in range(5):
        action = model.predict(obs, deterministic=True)[0]
        mu = np.clip(obs[env.obs_layout["search/mu"]], env.action_space.low, env.action_space.high)
        half = (env.action_space.high - env.action_space.low) / 2
        np.testing.assert_allclose(action, mu, atol=0.011 * half.max() + 1e-6)  # up to the anchor's 0.99 clip
        obs, _, terminated, truncated, _ = env.step(action)
        assert not (terminated or truncated)


def test_the_expert_buffer_labels_next_states_and_not_episode_ends(net_path: Path, data: DataConfig) -> None:
    model, env, _ = ma.build(_cfg(net_path, data, "rl-expert"))
    assert isinstance(model.replay_buffer, ExpertReplayBuffer)
    model.learn(60)
    buf = model.replay_buffer
    n = buf.pos
    assert buf.labelled[:n].sum() > 0
    done = buf.dones[:n, 0] > 0
    assert np.all(buf.labelled[:n][done] == 0)
    buf.sample(16)
    assert expert_loss(model).shape == (16,)


@pytest.mark.parametrize("variant", ["supervised", "rl-expert"])
def test_learning_from_the_expert_moves_the_policy_towards_it(net_path: Path, data: DataConfig, variant: str) -> None:
    model, env, _ = ma.build(_cfg(net_path, data, variant, steps=300))
    model.learn(40)  # fill the buffer without an update
    torch.manual_seed(0)
    model.replay_buffer.sample(256)
    before = float(expert_loss(model).mean().detach())
    model.learn(260, reset_num_timesteps=False)
    torch.manual_seed(0)
    model.replay_buffer.sample(256)
    after = float(expert_loss(model).mean().detach())
    assert after < 0.8 * before


def test_a_saved_agent_tracks_as_it_acted_and_is_bound_to_its_network(
        net_path: Path, data: DataConfig, tmp_path: Path) -> None:
    cfg = _cfg(net_path, data, "rl", steps=60)
    model, record = ma.train(cfg, tmp_path / "run", progress=None)
    assert record["steps"] == 60 and record["updates"] > 0
    loaded, state, meta = ma.load(tmp_path / "run")
    assert meta["kind"] == "motion-agent"
    obs = np.random.default_rng(0).normal(size=(4, state.dim)).astype(np.float32)
    np.testing.assert_allclose(loaded.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0],
                               atol=1e-6)
    env = make_motion_env(state, data=data)
    env.reset(seed=0)
    raw = env.raw
    tracker = ma.agent_tracker(loaded, state, "agent")
    tracker.init(raw.dataset.frame(raw.track, 0), raw.box)
    expected = apply_relative(raw.box, loaded.predict(env._observe(), deterministic=True)[0])
    got = tracker.update(raw.dataset.frame(raw.track, 1))
    np.testing.assert_allclose(got.as_array(), expected.as_array(), atol=1e-4)
    other = tmp_path / "other.pt"
    other.write_bytes(net_path.read_bytes() + b"\0")
    meta_path = next((tmp_path / "run" / "checkpoints").glob("ckpt-*")) / "agent.json"
    import json

    m = json.loads(meta_path.read_text())
    m["encoder"]["path"] = str(other)
    meta_path.write_text(json.dumps(m))
    with pytest.raises(AgentFileError, match="another file"):
        ma.load(tmp_path / "run")


def test_a_state_without_the_box_size_is_the_same_state_less_its_box_slice(
        net_path: Path, data: DataConfig, tmp_path: Path) -> None:
    """box_state=False drops ln(w/W), ln(h/H) (a per-track constant) and nothing else; an agent
    trained on it is reloaded with it."""
    env = ma.build(_cfg(net_path, data, "rl"))[1]
    env.reset(seed=0)
    raw = env.raw
    frames = raw.dataset.frame(raw.track, 0), raw.dataset.frame(raw.track, 1)
    with_box, without = ma.state_for({}, net_path), ma.state_for({"box_state": False}, net_path)
    assert "box" in with_box.layout and "box" not in without.layout and without.dim == with_box.dim - 2
    full = with_box(*frames, raw.box)
    np.testing.assert_array_equal(without(*frames, raw.box), np.delete(full, np.arange(with_box.dim)[with_box.layout["box"]]))
    cfg = replace(_cfg(net_path, data, "rl", steps=30), box_state=False)
    assert cfg.make_state().dim == without.dim
    ma.train(cfg, tmp_path / "run", progress=None)
    assert ma.load(tmp_path / "run")[1].dim == without.dim


def test_training_tracks_of_a_fold_are_seen_through_the_network_named_for_it(
        net_path: Path, data: DataConfig, tmp_path: Path) -> None:
    """train_nets: the named fold's tracks get that network's states (cross-fitting), the others the
    agent's own; a split that is not a fold selection is refused."""
    torch.manual_seed(1)
    cfg = ModelConfig(input="pair", in_channels=7, reference="box", patch_size=32, base_width=8, decoder_width=8,
                      z_channels=8, keypoints=4)
    other = tmp_path / "other.pt"
    save_checkpoint(other, {"kind": "bmvae", "version": 1, "model": build_model(cfg, np.zeros(5), np.diag([0.04] * 5)).state_dict(),
                            "model_config": to_dict(cfg)})
    env = ma.build(_cfg(net_path, data, "rl"))[1]
    seqs = sorted({t.sequence for t in env.raw.tracks})
    folds = tmp_path / "folds.yaml"
    folds.write_text("folds:\n" + "".join(f"  - [{s}]\n" for s in seqs))
    crossed = ma.build(replace(_cfg(net_path, data, "rl"), train_nets=(f"{folds}:0:test={other}",)))[1]
    own, theirs = ma.state_for({}, net_path), ma.state_for({}, other)
    for k, track in enumerate(crossed.raw.tracks):
        obs, _ = crossed.reset(options={"track_index": k})
        raw = crossed.raw
        pair = raw.dataset.frame(track, raw._t), raw.dataset.frame(track, raw._t + 1)
        seen, not_seen = (theirs, own) if track.sequence == seqs[0] else (own, theirs)
        np.testing.assert_allclose(obs, seen(*pair, raw.box), atol=1e-6)
        assert not np.allclose(obs, not_seen(*pair, raw.box), atol=1e-3)
    with pytest.raises(ValueError, match="fold selection"):
        replace(_cfg(net_path, data, "rl"), train_nets=(f"train={other}",)).make_train_states()
    with pytest.raises(ValueError, match="SPLIT=CHECKPOINT"):
        ma.MotionAgentConfig(train_nets=("nothing",))


def test_the_command_trains_scores_and_keeps_a_finished_run(net_path: Path, data: DataConfig, tmp_path: Path) -> None:
    from bmvtrack.run_folder import RunFolderError
    from bmvtrack.train_motion_agent import main

    args = ["--data", data.root, "--layout", "davis2017", "--split", "train", "--eval-split", "val",
            "--motion-net", str(net_path), "--variant", "supervised", "--steps", "60", "--perturb-every", "4",
            "--set", "learning_starts=20", "--set", "net_arch=[16, 16]", "--out", str(tmp_path / "run"), "--quiet"]
    assert main(args) == 0
    rows = (tmp_path / "run" / "eval" / "overall.csv").read_text()
    for name in ("motion-agent-supervised", "motion-agent-supervised-untrained", "rule-mu", "rule-mask"):
        assert name in rows
    assert "perturbed" in (tmp_path / "run" / "eval-perturbed" / "overall.csv").read_text()
    with pytest.raises(RunFolderError):
        main(args)
    # the saved agent scored again on other data: its own folder beside the training run's
    assert main(["--score", str(tmp_path / "run"), "--data", data.root, "--layout", "davis2017", "--split", "train",
                 "--perturb-every", "0", "--step-scales", "0", "1"]) == 0
    again = (tmp_path / "run" / f"eval-{Path(data.root).name}-train" / "overall.csv").read_text()
    assert "motion-agent-supervised-untrained" in again and "rule-mask" in again
    import csv

    auc = {r["tracker"]: float(r["success_auc"]) for r in csv.DictReader(again.splitlines())}
    # the move shrunk to nothing is the untrained start's, unshrunk the agent's own
    assert auc["motion-agent-supervised-step0"] == pytest.approx(auc["motion-agent-supervised-untrained"], abs=1e-9)
    assert auc["motion-agent-supervised-step1"] == pytest.approx(auc["motion-agent-supervised"], abs=1e-9)
    from bmvtrack.config import ConfigError

    with pytest.raises(ConfigError, match="needs --score"):
        main(args[:-3] + ["--step-scales", "0.5", "--out", str(tmp_path / "y")])

    with pytest.raises(ConfigError, match="not a MotionAgentConfig field"):
        main(args[:-3] + ["--set", "nope=1", "--out", str(tmp_path / "x")])


# ------------------------------------------------------------------------------------ proposal beside the agent


def test_a_proposal_tracker_beside_the_agent_is_in_its_state_and_the_rules_follow_it(
        net_path: Path, data: DataConfig) -> None:
    from bmvtrack.proposals import FollowingProposal, agreement

    cfg = ma.MotionAgentConfig(motion_net=str(net_path), data=data, steps=60, learning_starts=20, batch_size=16,
                               net_arch=(16, 16), proposal="kcf", reinit="disagree")
    model, env, _ = ma.build(cfg)
    obs, _ = env.reset(seed=0, options={"frame": 0})
    state, lay = env.state, env.obs_layout
    assert obs.shape == env.observation_space.shape == (state.dim + 11,) and lay["proposal"].stop == state.dim + 11
    assert 0.0 <= obs[lay["proposal"]][-1] <= 1.0  # the overlap of the agent's box and the proposal's
    # the untrained agent still moves by μ′: the proposal is read, not followed, until it is learned
    half = (env.action_space.high - env.action_space.low) / 2
    mu = np.clip(obs[lay["search/mu"]], env.action_space.low, env.action_space.high)
    np.testing.assert_allclose(model.predict(obs, deterministic=True)[0], mu, atol=0.011 * half.max() + 1e-6)
    _, _, _, _, info = env.step(obs[lay["proposal"]][:5])  # moving onto the proposal: they agree, no restart
    assert info["proposal_restart"] is False
    # rule-proposal is the proposal tracker itself (restarted on its own box: never)
    raw = env.raw
    frames = [raw.dataset.frame(raw.track, i) for i in range(4)]
    follow = ma.rule_tracker(state, "proposal", "rule-proposal", proposal=cfg.make_proposal())
    alone = FollowingProposal("kcf", reinit="never")
    follow.init(frames[0], raw.box)
    alone.start(frames[0], raw.box)
    for f in frames[1:]:
        assert agreement(follow.update(f), alone.propose(f)) > 0.95
    assert follow.proposal.restarts == 0
    # rule-fuse: the mask's box where it overlaps the proposal's, else the proposal's
    fuse = ma.rule_tracker(state, "fuse", "rule-fuse", proposal=cfg.make_proposal())
    fuse.init(frames[0], raw.box)
    box = raw.box
    for mask_r, prop_r, pick in (([0.0, 0.0, 0.0, 0.02, 0.0], [0.05, 0.0, 0.0, 0.0, 0.0], "mask"),
                                 ([0.0, 0.0, 0.0, 1.5, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0], "proposal")):
        o = np.zeros(state.dim + 11, dtype=np.float32)
        o[lay["search/motion"]][:] = 0.0
        o[lay["search/motion"].start:lay["search/motion"].start + 5] = mask_r
        o[state.dim:state.dim + 5] = prop_r
        fuse.proposal.box = apply_relative(box, prop_r)
        np.testing.assert_allclose(fuse.act(o), mask_r if pick == "mask" else prop_r, atol=1e-6)
    with pytest.raises(ValueError, match="needs a proposal"):
        ma.rule_tracker(state, "fuse", "x")


def test_the_cue_history_and_colours_are_in_the_state_alike_in_training_and_tracking(net_path: Path,
                                                                                     data: DataConfig) -> None:
    """history=True, colour=True: the state ends with the track's record of mask–proposal agreement
    and the two boxes' colour scores, computed the same way by the environment and by the tracker (the
    same boxes give the same numbers)."""
    cfg = ma.MotionAgentConfig(motion_net=str(net_path), data=data, steps=60, learning_starts=20, batch_size=16,
                               net_arch=(16, 16), proposal="kcf", reinit="never", history=True, colour=True)
    model, env, _ = ma.build(cfg)
    lay = env.obs_layout
    end = env.state.dim + 11
    assert lay["history"] == slice(lay["proposal"].stop, lay["proposal"].stop + 3) == slice(end, end + 3)
    assert lay["colour"] == slice(end + 3, end + 9) and lay["colour/move"] == slice(end + 9, end + 14)
    assert env.observation_space.shape == (end + 14,)
    obs, _ = env.reset(seed=0, options={"frame": 0})
    raw = env.raw
    frames = [raw.dataset.frame(raw.track, i) for i in range(raw._t, raw._t + 5)]
    extras = slice(end, end + 14)
    records, actions = [obs[extras]], []
    tracker = ma.agent_tracker(model, env.state, "agent", cfg.make_proposal(), overlap=False)
    tracker.init(frames[0], raw.box)
    for i in range(1, 5):
        actions.append(model.predict(obs, deterministic=True)[0])
        obs, *_ = env.step(actions[-1])
        records.append(obs[extras])
    seen = []
    act = tracker.act
    tracker.act = lambda o: (seen.append(o[extras].copy()), act(o))[1]
    for f in frames[1:]:
        tracker.update(f)
    np.testing.assert_allclose(np.array(seen), np.array(records[:4]), atol=1e-6)
    assert records[0][0] <= 1.0 and all(r[1] >= 0 for r in records)
    colours = np.array(records)[:, 3:9]
    assert np.all((colours[:, [0, 3]] >= 0) & (colours[:, [0, 3]] <= 1))  # mean likelihoods
    assert colours[:, 3].max() > 0.5  # the proposal's box, near the first box, looks like the object
    for field in ("history", "colour"):
        with pytest.raises(ValueError, match="history and colour need a proposal"):
            ma.MotionAgentConfig(**{field: True})


def test_the_colour_rule_takes_the_box_of_higher_contrast(net_path: Path, data: DataConfig) -> None:
    """colour_choice: the mask's move where its box's colour contrast is at least the proposal's, else
    the proposal's move, and the proposal's where the mask is empty; rule-colour and the untrained
    center=colour agent move by it; both refused without colour scores."""
    from bmvtrack.envs.motion_state import colour_choice
    from bmvtrack.proposals import FollowingProposal

    mask_cue, prop = np.array([0, 0, 0, 0.02, 0, 0.1, 0.0]), np.array([0.05, 0, 0, 0, 0])
    for mask_contrast, prop_contrast, empty, pick in ((0.6, 0.2, 0.0, mask_cue[:5]), (0.1, 0.3, 0.0, prop),
                                                      (0.6, 0.2, 1.0, prop), (0.4, 0.4, 0.0, mask_cue[:5])):
        colour = np.array([0.9, mask_contrast, 0.8, 0.9, prop_contrast, 0.8])
        np.testing.assert_allclose(colour_choice(np.r_[mask_cue[:6], empty], prop, colour), pick)
    cfg = ma.MotionAgentConfig(motion_net=str(net_path), data=data, steps=60, learning_starts=20, batch_size=16,
                               net_arch=(16, 16), proposal="kcf", reinit="never", colour=True, center="colour")
    model, env, _ = ma.build(cfg)
    obs, _ = env.reset(seed=0, options={"frame": 0})
    choice = obs[env.obs_layout["colour/move"]]
    low, high = env.action_space.low, env.action_space.high
    assert ma.agent_kwargs(cfg, env)["state_prior_mean_slice"] == [env.obs_layout["colour/move"].start,
                                                                   env.obs_layout["colour/move"].stop]
    # the policy's squashing keeps a clipped move 1% of the half-range inside the bounds
    np.testing.assert_allclose(model.predict(obs, deterministic=True)[0], np.clip(choice, low, high),
                               atol=0.011 * ((high - low) / 2).max() + 1e-6)
    rule = ma.rule_tracker(env.state, "colour", "rule-colour", proposal=cfg.make_proposal())
    np.testing.assert_array_equal(rule.act(obs), choice)
    with pytest.raises(ValueError, match="colour=True"):
        ma.rule_tracker(env.state, "colour", "x", proposal=FollowingProposal("kcf", "never"))
    with pytest.raises(ValueError, match="need the colour scores"):
        ma.MotionAgentConfig(proposal="kcf", center="colour")


def test_the_proposal_starts_on_the_annotated_box_when_asked(net_path: Path, data: DataConfig,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from bmvtrack.proposals import FollowingProposal

    started: list = []
    real_start = FollowingProposal.start
    monkeypatch.setattr(FollowingProposal, "start", lambda self, frame, box: (started.append(box),
                                                                              real_start(self, frame, box))[1])
    for where in ("box", "annotation"):
        cfg = ma.MotionAgentConfig(motion_net=str(net_path), data=data, steps=60, learning_starts=20, batch_size=16,
                                   net_arch=(16, 16), proposal="kcf", proposal_start=where, start_shift=0.5)
        env = ma.build(cfg)[1]
        started.clear()
        env.reset(seed=3)
        raw = env.raw
        gt = raw._gt[raw._t]
        assert raw.box != gt  # the agent's box starts off the annotation
        assert started == [raw.box if where == "box" else gt]
    with pytest.raises(ValueError, match="proposal_start"):
        ma.MotionAgentConfig(proposal="kcf", proposal_start="mask")


def test_the_agent_trains_on_the_reward_it_is_given(net_path: Path, data: DataConfig) -> None:
    cfg = ma.MotionAgentConfig(motion_net=str(net_path), data=data, steps=60, learning_starts=20, batch_size=16,
                               net_arch=(16, 16), reward="aabb_iou")
    env = ma.build(cfg)[1]
    assert env.raw.cfg.reward == "aabb_iou"
    with pytest.raises(ValueError, match="reward must be one of"):
        ma.MotionAgentConfig(reward="giou")


def test_the_agent_environment_serves_mirrored_and_reversed_tracks(net_path: Path, data: DataConfig) -> None:
    cfg = ma.MotionAgentConfig(motion_net=str(net_path), data=data, steps=60, learning_starts=20, batch_size=16,
                               net_arch=(16, 16), proposal="kcf", augment=("flip", "reverse"))
    model, env, _ = ma.build(cfg)
    names = [t.name for t in env.raw.tracks]
    assert len(names) == 4 * len(ma.build(replace(cfg, augment=()))[1].raw.tracks) and len(set(names)) == len(names)
    idx = names.index(next(n for n in names if n.endswith("~flip~rev")))
    obs, info = env.reset(options={"track_index": idx})
    for _ in range(3):  # the expert's move keeps the box on the mirrored object, the proposal runs on mirrored frames
        obs, reward, *_, info = env.step(info["expert_relative"])
        assert reward > 0.8 and np.isfinite(obs).all()
    with pytest.raises(ValueError, match="augment"):
        ma.MotionAgentConfig(augment=("spin",))


def test_moving_the_proposal_on_a_worker_thread_gives_the_same_track(net_path: Path, data: DataConfig) -> None:
    cfg = ma.MotionAgentConfig(motion_net=str(net_path), data=data, steps=60, learning_starts=20, batch_size=16,
                               net_arch=(16, 16), proposal="kcf", reinit="disagree")
    model, env, _ = ma.build(cfg)
    env.reset(seed=0, options={"frame": 0})
    raw = env.raw
    frames = [raw.dataset.frame(raw.track, i) for i in range(len(raw.track))]
    tracks = {}
    for overlap in (False, True):
        tracker = ma.agent_tracker(model, env.state, "agent", cfg.make_proposal(), overlap=overlap)
        tracker.init(frames[0], raw._gt[0])
        tracks[overlap] = ([tracker.update(f).as_array() for f in frames[1:]], tracker.proposal.restarts)
    np.testing.assert_array_equal(np.array(tracks[True][0]), np.array(tracks[False][0]))
    assert tracks[True][1] == tracks[False][1]
    with pytest.raises(RuntimeError, match="before start"):
        cfg.make_proposal().propose_async(frames[0])


def test_an_agent_centred_on_the_proposal_starts_as_rule_proposal(net_path: Path, data: DataConfig) -> None:
    cfg = ma.MotionAgentConfig(motion_net=str(net_path), data=data, steps=60, learning_starts=20, batch_size=16,
                               net_arch=(16, 16), proposal="kcf", center="proposal")
    model, env, kwargs = ma.build(cfg)
    lay = env.obs_layout
    assert kwargs["state_prior_mean_slice"] == [lay["proposal"].start, lay["proposal"].start + 5]
    obs, _ = env.reset(seed=0, options={"frame": 0})
    half = (env.action_space.high - env.action_space.low) / 2
    for _ in range(4):
        action = model.predict(obs, deterministic=True)[0]
        prop = np.clip(obs[lay["proposal"]][:5], env.action_space.low, env.action_space.high)
        np.testing.assert_allclose(action, prop, atol=0.011 * half.max() + 1e-6)
        assert np.abs(prop - obs[lay["search/mu"]]).max() > 1e-3  # it is not μ′ that it follows
        obs, _, terminated, truncated, info = env.step(action)
        assert not (terminated or truncated) and info["proposal_restart"] is False
    with pytest.raises(ValueError, match="needs a proposal"):
        ma.MotionAgentConfig(center="proposal")
    with pytest.raises(ValueError, match="ent_coef_init"):
        ma.MotionAgentConfig(ent_coef_init=0.0)
    with pytest.raises(ValueError, match="center must be"):
        ma.MotionAgentConfig(center="nowhere")


def test_an_agent_centred_on_the_mask_starts_as_rule_mask(net_path: Path, data: DataConfig) -> None:
    """center=mask: the untrained agent moves onto the decoded mask's box, as rule-mask does wherever
    the mask is not empty."""
    cfg = ma.MotionAgentConfig(motion_net=str(net_path), data=data, steps=60, learning_starts=20, batch_size=16,
                               net_arch=(16, 16), center="mask", ent_coef_init=0.01)
    model, env, kwargs = ma.build(cfg)
    cue = env.obs_layout["search/motion"]
    assert kwargs["state_prior_mean_slice"] == [cue.start, cue.start + 5]
    rule = ma.rule_tracker(env.state, "mask", "rule-mask")
    half = (env.action_space.high - env.action_space.low) / 2
    obs, _ = env.reset(seed=0, options={"frame": 0})
    moved = 0
    for _ in range(4):
        action = model.predict(obs, deterministic=True)[0]
        if obs[cue][6] < 0.5:  # a mask was found
            want = np.clip(rule.act(obs), env.action_space.low, env.action_space.high)
            np.testing.assert_allclose(action, want, atol=0.011 * half.max() + 1e-6)
            moved += 1
        obs, *_ = env.step(action)
    assert moved > 0


def test_cue_exploration_draws_around_the_named_cues(net_path: Path, data: DataConfig) -> None:
    """explore_cues: MV-SAC gets the other cues' moves as exploration ranges, and its warm-up visits
    both the centre's and the other cue's moves."""
    cfg = ma.MotionAgentConfig(motion_net=str(net_path), data=data, steps=40, learning_starts=40, batch_size=16,
                               net_arch=(16, 16), proposal="kcf", reinit="never", center="mask",
                               explore_cues=("proposal",), explore_prob=0.2)
    model, env, kwargs = ma.build(cfg)
    prop = env.obs_layout["proposal"]
    assert kwargs["explore_ranges"] == [[prop.start, prop.start + 5]] and kwargs["explore_prob"] == 0.2
    assert model.explore_ranges == [(prop.start, prop.start + 5)]
    model.learn(40)
    obs = model.replay_buffer.observations[:40, 0]
    acts = model.policy.unscale_action(model.replay_buffer.actions[:40, 0])
    cue = env.obs_layout["search/motion"]
    to_prop = np.linalg.norm(acts - obs[:, prop.start:prop.start + 5], axis=1)
    to_mask = np.linalg.norm(acts - obs[:, cue.start:cue.start + 5], axis=1)
    apart = np.linalg.norm(obs[:, prop.start:prop.start + 5] - obs[:, cue.start:cue.start + 5], axis=1) > 0.05
    assert apart.sum() >= 5  # steps where the cues disagree: draws land on both sides
    assert 0 < (to_prop < to_mask)[apart].sum() < apart.sum()
    for bad in ({"explore_cues": ("mask",)}, {"explore_cues": ("elsewhere",)}, {"explore_prob": 0.5}):
        with pytest.raises(ValueError, match="explore"):
            ma.MotionAgentConfig(proposal="kcf", center="mask", **bad)
    with pytest.raises(ValueError, match="needs a proposal"):
        ma.MotionAgentConfig(center="mask", explore_cues=("proposal",))


def test_the_command_scores_the_proposal_rules_beside_an_agent_that_reads_the_proposal(
        net_path: Path, data: DataConfig, tmp_path: Path) -> None:
    from bmvtrack.train_motion_agent import main

    assert main(["--data", data.root, "--layout", "davis2017", "--split", "train", "--eval-split", "val",
                 "--motion-net", str(net_path), "--steps", "40", "--perturb-every", "0", "--set", "learning_starts=20",
                 "--set", "net_arch=[16, 16]", "--set", "proposal=kcf", "--out", str(tmp_path / "run"), "--quiet"]) == 0
    rows = (tmp_path / "run" / "eval" / "overall.csv").read_text()
    for name in ("motion-agent-rl", "motion-agent-rl-untrained", "rule-mu", "rule-mask", "rule-proposal", "rule-fuse"):
        assert name in rows
    loaded, state, meta = ma.load(tmp_path / "run")
    assert meta["config"]["proposal"] == "kcf" and loaded.observation_space.shape == (state.dim + 11,)


# ------------------------------------------------------------------------------------ first-frame adaptation


def test_an_adapted_agent_sees_each_track_through_its_own_copy_in_training_and_tracking(
        net_path: Path, data: DataConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """adapt.steps > 0: every training track's states come from the network adapted to its first
    frame and box (made once, kept on disk); a tracker adapts the same way at its first init and
    keeps the copy when re-initialised; the command adapts each scored track once for all trackers
    and both protocols."""
    from bmvtrack import adaptation
    from bmvtrack.adaptation import AdaptConfig, SharedAdaptation, adapt_to_box
    from bmvtrack.train_motion_agent import main

    adapt = AdaptConfig(steps=2, lr=1e-2, batch_size=2)
    cfg = replace(_cfg(net_path, data, "rl"), adapt=adapt, adapt_cache=str(tmp_path / "cache"))
    env = ma.build(cfg)[1]
    env.prepare_adapted()
    assert len(list((tmp_path / "cache").rglob("*.pt"))) == len(env.raw.tracks)
    own = cfg.make_state()
    for k, track in enumerate(env.raw.tracks[:2]):
        obs, _ = env.reset(options={"track_index": k})
        raw = env.raw
        pair = raw.dataset.frame(track, raw._t), raw.dataset.frame(track, raw._t + 1)
        copy = adapt_to_box(own.model, *raw.first_frame(track), adapt)
        np.testing.assert_allclose(obs, own.with_model(copy)(*pair, raw.box), atol=1e-5)
        assert not np.allclose(obs, own(*pair, raw.box), atol=1e-3)

    track = env.raw.tracks[0]
    frame0, box0 = env.raw.first_frame(track)
    frame1 = env.raw.dataset.frame(track, 1)
    tracker = ma.rule_tracker(own, "mu", "rule-mu", adapt=SharedAdaptation(adapt))
    tracker.init(frame0, box0)
    np.testing.assert_allclose(tracker.state(frame0, frame1, box0), env.state_of(track)(frame0, frame1, box0), atol=1e-5)
    adapted = tracker.state
    tracker.init(frame1, RBox(box0.cx + 3, box0.cy, box0.w, box0.h, box0.angle))  # re-initialised within the track
    assert tracker.state is adapted

    calls: list[int] = []
    real = adaptation.adapt_motion_net
    monkeypatch.setattr(adaptation, "adapt_motion_net", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    args = ["--data", data.root, "--layout", "davis2017", "--split", "train", "--eval-split", "val",
            "--motion-net", str(net_path), "--steps", "40", "--perturb-every", "4", "--set", "learning_starts=20",
            "--set", "net_arch=[16, 16]", "--set", "adapt.steps=2", "--set", "adapt.batch_size=2", "--set", "adapt.lr=0.01",
            "--set", f"adapt_cache={tmp_path / 'cache'}", "--out", str(tmp_path / "run"), "--quiet", "--no-wandb"]
    assert main(args) == 0
    from bmvtrack.data.readers import VideoDataset

    scored = len(VideoDataset.from_config(replace(data, split="val")).tracks())
    assert len(calls) == scored  # training tracks came from the disk cache; each scored track adapted once
    rows = (tmp_path / "run" / "eval-perturbed" / "overall.csv").read_text()
    assert "motion-agent-rl-untrained" in rows and "rule-mask" in rows
    assert ma.load(tmp_path / "run")[2]["config"]["adapt"]["steps"] == 2
    with pytest.raises(ValueError, match="exclude each other"):
        replace(_cfg(net_path, data, "rl"), adapt=adapt, train_nets=("train=x.pt",))
