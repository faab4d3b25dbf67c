"""A classical tracker's box beside the mask: the fusion rule, the environment's replay, the fused cue."""
from __future__ import annotations

import numpy as np
import pytest

from bmvtrack.data.readers import DataConfig, TrackFilter
from bmvtrack.data.synth import SynthConfig, generate_dataset
from bmvtrack.models import ModelConfig
from bmvtrack.motion import MotionPrior, RBox, motion_between
from bmvtrack.opencv_trackers import OpenCVTracker
from bmvtrack.proposals import agreement, fuse_boxes, run_proposals
from bmvtrack.envs.motion_cue import MOTION_CUE, PROPOSAL_CUE, mask_motion_cue
from bmvtrack.envs.state_encoder import StateEncoder
from bmvtrack.envs.tracking_env import EnvConfig, TrackingEnv, track_key
from bmvtrack.envs.wrappers import EncodedObservation

TINY_MODEL = ModelConfig(patch_size=32, base_width=8, decoder_width=8, z_channels=8, part_size=4)


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    cfg = SynthConfig(width=160, height=120, frames=8)
    return generate_dataset(tmp_path_factory.mktemp("synth"), "davis2017", videos=2, seed=3, cfg=cfg, progress=False)


def env_cfg(root, **kw) -> EnvConfig:
    data = DataConfig(root=str(root), layout="davis2017", filters=TrackFilter(absent="keep", max_box_fraction=1.0))
    return EnvConfig(data=data, crop_size=32, **kw)


def test_fusion_keeps_the_mask_box_while_it_agrees_and_takes_the_proposal_otherwise():
    proposal = RBox(50, 50, 20, 20, 0.0)
    tight = RBox(51, 50, 16, 18, 10.0)  # same object, tighter and tilted
    latched = RBox(90, 50, 20, 20, 0.0)  # a look-alike beside it: no overlap
    shrunk = RBox(50, 50, 4, 4, 0.0)  # a piece of the object: inside, but IoU 0.04
    assert agreement(tight, proposal) > 0.5 and fuse_boxes(tight, proposal) is tight
    assert agreement(latched, proposal) == 0.0 and fuse_boxes(latched, proposal) is proposal
    assert fuse_boxes(shrunk, proposal) is proposal and fuse_boxes(shrunk, proposal, min_iou=0.01) is shrunk
    assert fuse_boxes(None, proposal) is proposal and agreement(None, proposal) == 0.0


def test_env_replays_the_proposal_trackers_boxes_on_the_next_frame(synth_root):
    env = TrackingEnv(env_cfg(synth_root, proposal="csrt"))
    obs, _ = env.reset(options={"track_index": 1})
    track, ds = env.track, env.dataset
    first = env.gt_boxes(track)[0]
    live = OpenCVTracker("csrt")
    live.init(ds.frame(track, 0), first)
    expected = [live.update(ds.frame(track, i)).as_array() for i in range(1, len(track))]
    seen = [obs["proposal"]]
    for _ in range(len(track) - 2):  # the observation after step t shows frame t + 1
        obs, *_ = env.step(np.array([1.0, 1.0, 0.0, 0.0, 0.0], np.float32))
        seen.append(obs["proposal"])
    assert np.allclose(np.array(seen), np.array(expected[: len(seen)]), atol=1e-4)
    # deterministic: a second run gives the same boxes, which is what lets the env run it once per track
    boxes = run_proposals("csrt", lambda i: ds.frame(track, i), len(track), first)
    assert np.allclose(np.array([b.as_array() for b in boxes[1:]]), np.array(expected), atol=1e-6)


def test_fused_cue_points_at_the_proposal_when_the_mask_is_empty():
    mean, std = np.array([1.0, 1.0, 0.0, 0.0, 0.0]), np.full(5, 0.1)
    geometry = np.array([0.5, 0.5, 0.1, 0.1, 0.0, 1.0, 0.0], np.float32)  # box at (50, 50), 10×10 in 100×100
    window = np.array([40, 40, 60, 60, 100, 100], np.float32)
    proposal = np.array([53.0, 50.0, 10.0, 10.0, 0.0], np.float32)
    empty = np.zeros((16, 16), np.float32)
    cue = mask_motion_cue(empty, geometry, window, mean, std, proposal=proposal)
    assert cue.shape == (MOTION_CUE + PROPOSAL_CUE,)
    box = RBox(50.0, 50.0, 10.0, 10.0, 0.0)
    towards = (motion_between(box, RBox(*proposal), 100, 100) - mean) / std
    assert np.allclose(cue[:5], towards, atol=1e-5) and cue[6] == 1.0  # fused motion = the proposal's; empty flag
    assert np.allclose(cue[7:12], towards, atol=1e-5) and cue[12] == 0.0  # the proposal's motion, no agreement
    assert np.allclose(mask_motion_cue(empty, geometry, window, mean, std)[:5], (np.array([1, 1, 0, 0, 0]) - mean) / std)


def test_encoder_and_environment_must_agree_on_the_proposal(synth_root):
    enc = StateEncoder.untrained(TINY_MODEL, MotionPrior.paper(), kind="features_motion")
    with pytest.raises(ValueError, match="proposal"):
        EncodedObservation(TrackingEnv(env_cfg(synth_root, proposal="csrt")), enc)
    enc.proposal = True
    env = EncodedObservation(TrackingEnv(env_cfg(synth_root, proposal="csrt")), enc)
    obs, _ = env.reset(seed=0)
    assert obs.shape == env.observation_space.shape and np.isfinite(obs).all()
    assert env.obs_layout["search/motion"].stop - env.obs_layout["search/motion"].start == MOTION_CUE + PROPOSAL_CUE
    with pytest.raises(ValueError, match="proposal must be one of"):
        TrackingEnv(env_cfg(synth_root, proposal="siamrpn"))


def test_proposal_boxes_are_kept_on_disk_and_a_broken_file_is_remade(synth_root, tmp_path, monkeypatch, capsys):
    import bmvtrack.proposals as proposals

    env = TrackingEnv(env_cfg(synth_root, proposal="csrt", proposal_cache=str(tmp_path)))
    env.prepare_proposals()
    files = sorted(tmp_path.glob("*.json"))
    assert len(files) == len(env.tracks)
    track = env.tracks[0]
    first = env.first_frame(track)[1]
    made = env._proposals.boxes(track_key(track), track.name, lambda i: env.dataset.frame(track, i), len(track), first)

    def must_not_run(*a, **k):
        raise AssertionError("the cached boxes should have been read")

    monkeypatch.setattr(proposals, "run_proposals", must_not_run)
    fresh = proposals.ProposalTracks("csrt", tmp_path)
    read = fresh.boxes(track_key(track), track.name, lambda i: env.dataset.frame(track, i), len(track), first)
    assert np.allclose([b.as_array() for b in read], [b.as_array() for b in made])
    monkeypatch.undo()
    victim = fresh._file(track_key(track), track.name, len(track), first)
    victim.write_text("[[1, 2, 3")  # a truncated file
    again = proposals.ProposalTracks("csrt", tmp_path).boxes(
        track_key(track), track.name, lambda i: env.dataset.frame(track, i), len(track), first)
    assert "unusable proposal boxes" in capsys.readouterr().err
    assert np.allclose([b.as_array() for b in again], [b.as_array() for b in made])


def test_proposal_tracker_on_a_large_frame_runs_on_the_shrunk_frame(synth_root):
    """A 480-row frame is tracked at 240 rows: the boxes are the small frame's, mapped back."""
    import cv2

    from bmvtrack.proposals import make_proposal_tracker

    env = TrackingEnv(env_cfg(synth_root))
    track, ds = env.tracks[0], env.dataset
    first = env.gt_boxes(track)[0]
    big = lambda i: cv2.resize(ds.frame(track, i), None, fx=4, fy=4, interpolation=cv2.INTER_NEAREST)  # noqa: E731
    small = lambda i: cv2.resize(big(i), None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)  # noqa: E731
    on_big, on_small = make_proposal_tracker("csrt"), OpenCVTracker("csrt")
    scale = lambda b, s: RBox((b.cx + 0.5) * s - 0.5, (b.cy + 0.5) * s - 0.5, b.w * s, b.h * s, b.angle)  # noqa: E731
    big_first = scale(first, 4.0)
    on_big.init(big(0), big_first)
    on_small.init(small(0), scale(big_first, 0.5))
    assert on_big.scale == 0.5
    for i in range(1, len(track)):
        a, b = on_big.update(big(i)), scale(on_small.update(small(i)), 2.0)
        assert np.allclose(a.as_array(), b.as_array(), atol=1e-6)
    assert make_proposal_tracker("csrt").max_height == 240  # 240p frames (the training data) pass unchanged


def test_a_following_proposal_is_restarted_on_the_agents_box_by_its_rule(synth_root):
    from bmvtrack.data.readers import VideoDataset
    from bmvtrack.proposals import FollowingProposal

    ds = VideoDataset.from_config(env_cfg(synth_root).data)
    track = next(iter(ds.tracks()))
    frames = [ds.frame(track, i) for i in range(3)]
    start = RBox(60.0, 50.0, 30.0, 24.0, 0.0)
    far = RBox(start.cx + 60.0, start.cy, start.w, start.h, 0.0)  # no overlap with the proposal
    with pytest.raises(ValueError, match="reinit"):
        FollowingProposal("kcf", reinit="sometimes")
    outcomes = {}
    for rule in ("never", "disagree", "vote"):
        p = FollowingProposal("kcf", reinit=rule)
        p.start(frames[0], start)
        near = p.propose(frames[1])
        assert not p.settle(frames[1], near, None)  # agreeing with the proposal: never restarted
        p.propose(frames[2])
        outcomes[rule] = (p.settle(frames[2], far, None), p.settle(frames[2], far, far))
        assert (agreement(p.box, far) > 0.9) == any(outcomes[rule]) and p.restarts == sum(outcomes[rule])
    assert outcomes == {"never": (False, False), "disagree": (True, False), "vote": (False, True)}


def test_the_cue_history_counts_disagreement_and_restarts_with_the_track():
    from bmvtrack.proposals import HISTORY_RATE, CueHistory

    first = RBox(50.0, 50.0, 20.0, 10.0, 0.0)
    far = RBox(150.0, 50.0, 20.0, 10.0, 0.0)
    hist = CueHistory()
    hist.start(first)
    agree, apart, size = hist.update(first, first, first)  # the cues agree on the first box
    assert (agree, apart, size) == (1.0, 0.0, 0.0)
    for k in range(1, 4):  # the mask goes elsewhere (or is empty): apart counts up, agreement decays
        agree, apart, size = hist.update(RBox(50.0, 50.0, 40.0, 10.0, 0.0), far if k < 3 else None, first)
        assert apart == pytest.approx(k / 10.0) and agree == pytest.approx((1 - HISTORY_RATE) ** k)
        assert size == pytest.approx(np.log(2.0))  # the box held has doubled since the first frame
    assert hist.update(first, first, first)[1] == 0.0  # agreeing again resets the count
    hist.start(far)
    assert hist.update(far, far, far).tolist() == [1.0, 0.0, 0.0]
