"""The tracking environment: checkers, determinism, vectorisation, expert/zero-motion sanity."""
from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest

import bmvtrack  # noqa: F401  (registers bmvtrack/Track-v0)
from bmvtrack.data.readers import DataConfig, TrackFilter
from bmvtrack.data.synth import SynthConfig, generate_dataset
from bmvtrack.models import ModelConfig
from bmvtrack.motion import MotionPrior
from bmvtrack.adaptation import AdaptConfig, AdaptedModels
from bmvtrack.envs.state_encoder import OBS_KINDS, StateEncoder, TrackStates
from bmvtrack.envs.wrappers import EncodedObservation
from bmvtrack.envs.registration import make_raw_env, make_sb3_vec_env, make_tracking_env, make_tracking_vector_env
from bmvtrack.envs.tracking_env import EnvConfig, TrackingEnv, track_key

TINY_MODEL = ModelConfig(patch_size=32, base_width=8, decoder_width=8, z_channels=8, part_size=4)
KEEP_ALL = TrackFilter(absent="keep", max_box_fraction=1.0)


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    cfg = SynthConfig(width=160, height=120, frames=8)
    return generate_dataset(tmp_path_factory.mktemp("synth"), "davis2017", videos=3, seed=1, cfg=cfg, progress=False)


@pytest.fixture(scope="module")
def encoder():
    return StateEncoder.untrained(TINY_MODEL, MotionPrior.paper(), kind="features")


def env_cfg(root, **kw) -> EnvConfig:
    return EnvConfig(data=DataConfig(root=str(root), layout="davis2017", filters=KEEP_ALL), **{"crop_size": 32, **kw})


def test_registered_id_and_make_with_module_prefix(synth_root, encoder):
    assert "bmvtrack/Track-v0" in gym.registry
    env = gym.make("bmvtrack:bmvtrack/Track-v0", config=env_cfg(synth_root), encoder=encoder)
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs) and info["iou"] == 1.0
    assert set(info) >= {"iou", "pred_box", "gt_box", "expert_action", "expert_clipped"}


@pytest.mark.parametrize("kind", OBS_KINDS)
def test_checkers_pass_for_every_observation_kind(synth_root, kind):
    from gymnasium.utils.env_checker import check_env as gym_check
    from stable_baselines3.common.env_checker import check_env as sb3_check

    enc = StateEncoder.untrained(TINY_MODEL, MotionPrior.paper(), kind=kind)
    env = make_tracking_env(env_cfg(synth_root), encoder=enc)
    layout = env.obs_layout
    assert layout["box"].stop == env.observation_space.shape[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gym_check(env.unwrapped, skip_render_check=True)  # the raw env (Dict observations)
        gym_check(env, skip_render_check=True)
        sb3_check(env, warn=False)


def test_same_seed_same_actions_same_trajectory(synth_root, encoder):
    def rollout(seed):
        env = make_tracking_env(env_cfg(synth_root), encoder=encoder)
        obs, _ = env.reset(seed=seed)
        env.action_space.seed(seed)
        out = [obs]
        for _ in range(6):
            obs, r, term, trunc, info = env.step(env.action_space.sample())
            out.append(np.append(obs, [r, info["iou"]]))
            if term or trunc:
                break
        return out

    a, b = rollout(3), rollout(3)
    assert len(a) == len(b) and all(np.array_equal(x, y, equal_nan=True) for x, y in zip(a, b))


def test_non_finite_action_is_rejected(synth_root):
    env = make_raw_env(env_cfg(synth_root))
    env.reset(seed=0)
    with pytest.raises(ValueError, match="finite"):
        env.step(np.array([1, 1, np.nan, 0, 0], np.float32))


def test_expert_follows_and_zero_motion_loses_on_synthetic(synth_root):
    env = make_raw_env(env_cfg(synth_root, lost_frames=0))
    for policy in ("expert", "zero"):
        ious = []
        for k in range(len(env.tracks)):
            _, info = env.reset(options={"track_index": k})
            done = False
            while not done:
                act = info["expert_action"] if policy == "expert" else np.array([1, 1, 0, 0, 0], np.float32)
                _, _, term, trunc, info = env.step(act)
                done = term or trunc
                if not np.isnan(info["iou"]):
                    ious.append(info["iou"])
        if policy == "expert":
            expert = np.mean(ious)
            assert expert > 0.99
        else:
            assert np.mean(ious) < expert


def test_the_headline_reward_is_the_evaluations_iou(synth_root):
    from bmvtrack.evaluate import track_ground_truth
    from bmvtrack.motion import aabb_iou, rbox_to_xyxy

    env = make_raw_env(env_cfg(synth_root, lost_frames=0, reward="aabb_iou"))
    rotated = make_raw_env(env_cfg(synth_root, lost_frames=0))
    checked = differs = 0
    for k in range(len(env.tracks)):
        _, info = env.reset(options={"track_index": k})
        rotated.reset(options={"track_index": k})
        gt = track_ground_truth(env.dataset, env.track)  # the evaluation's own tight bounds
        done, t = False, 0
        while not done:
            act = info["expert_action"] + np.array([0.02 * (t % 3), 0, 0.05, 0.01, 0], np.float32)
            _, r, term, trunc, info = env.step(act)
            _, r_rot, _, _, info_rot = rotated.step(act)
            t += 1
            done = term or trunc
            np.testing.assert_array_equal(info["pred_box"], info_rot["pred_box"])
            if np.isnan(info["iou"]):
                assert r == 0.0
                continue
            assert r == pytest.approx(aabb_iou(rbox_to_xyxy(env.box), gt.aabbs[t]), abs=1e-9)
            assert r_rot == pytest.approx(info["iou"]) and info_rot["iou"] == pytest.approx(info["iou"])
            checked += 1
            differs += abs(r - r_rot) > 1e-3
    assert checked > 10 and differs > 0
    with pytest.raises(ValueError, match="reward must be one of"):
        make_raw_env(env_cfg(synth_root, reward="aabb"))


def test_absent_frames_and_termination(synth_root):
    env = make_raw_env(env_cfg(synth_root, lost_frames=2))
    env.reset(seed=0, options={"track_index": 0})
    far = np.array([1, 1, 0, env.action_space.high[3], env.action_space.high[4]], np.float32)
    steps, term = 0, False
    while not term:
        _, r, term, trunc, info = env.step(far)
        steps += 1
        assert np.isfinite(r)
        if trunc:
            break
    assert term and steps <= 3


def test_rgb_render(synth_root):
    env = make_raw_env(env_cfg(synth_root), render_mode="rgb_array")
    env.reset(seed=0)
    img = env.render()
    assert img.shape == (120, 160, 3) and img.dtype == np.uint8
    assert (img[..., 0] > 200).any()  # the agent's red box is drawn


@pytest.mark.parametrize("subprocess", [False, True])
def test_sb3_vec_env_matches_single_env(synth_root, encoder, subprocess):
    venv = make_sb3_vec_env(2, env_cfg(synth_root), encoder=encoder, subprocess=subprocess, seed=0)
    obs = venv.reset()
    assert obs.shape == (2, venv.observation_space.shape[0])
    for _ in range(10):
        obs, rew, done, infos = venv.step(np.tile([[1, 1, 0, 0, 0]], (2, 1)).astype(np.float32))
        assert np.all(np.isfinite(obs)) and np.all(np.isfinite(rew))
    venv.close()


def test_gymnasium_vector_env_batches_encoder(synth_root, encoder, monkeypatch):
    venv = make_tracking_vector_env(3, env_cfg(synth_root), encoder=encoder)
    calls = []
    orig = encoder._forward
    monkeypatch.setattr(encoder, "_forward", lambda x: calls.append(len(x)) or orig(x))
    obs, infos = venv.reset(seed=0)
    assert obs.shape == (3, venv.single_observation_space.shape[0])
    for _ in range(4):
        obs, rew, term, trunc, infos = venv.step(np.tile([1, 1, 0, 0, 0], (3, 1)).astype(np.float32))
    # one forward per reset/step for all 3 copies; templates only at t = 0
    assert len(calls) == 5 and calls[0] == 6 and calls[1] == 3


def test_template_encoding_is_reused_not_stale(synth_root, encoder):
    env = make_tracking_env(env_cfg(synth_root), encoder=encoder)
    sl = env.obs_layout["template/mu"]
    o0, _ = env.reset(seed=0, options={"track_index": 0})
    o1, *_ = env.step(np.array([1, 1, 0, 0, 0], np.float32))
    assert np.array_equal(o0[sl], o1[sl])
    o2, _ = env.reset(options={"track_index": 1})
    assert not np.array_equal(o0[sl], o2[sl])


def test_expert_on_real_davis_dev_val(davis2016_root, tmp_path):
    """The motion model's upper bound inside the env: ≥ 0.99 mean IoU with the default bounds."""
    from bmvtrack.analyze_motion import fit_prior, measure_dataset
    from bmvtrack.data.readers import VideoDataset

    train = VideoDataset(davis2016_root, resolution="240p", split="dev/train", filters=KEEP_ALL)
    prior = fit_prior(measure_dataset(train, progress=False), "dev/train", "minarearect")
    cfg = EnvConfig(data=DataConfig(root=str(davis2016_root), resolution="240p", split="dev/val", filters=KEEP_ALL),
                    lost_frames=0)
    env = TrackingEnv(cfg, prior=prior)
    ious, clipped, steps = [], 0, 0
    for k in range(len(env.tracks)):
        _, info = env.reset(options={"track_index": k})
        done = False
        while not done:
            clipped += info["expert_clipped"]; steps += 1
            _, _, term, trunc, info = env.step(info["expert_action"])
            done = term or trunc
            if not np.isnan(info["iou"]):
                ious.append(info["iou"])
    assert np.mean(ious) >= 0.99
    assert clipped / steps < 0.02


def test_observations_stay_finite_under_extreme_actions(synth_root, encoder):
    """A box grown or flung without limit (as compounding scales do) must not overflow to inf/NaN."""
    from bmvtrack.motion import RBox

    env = make_tracking_env(env_cfg(synth_root, lost_frames=0), encoder=encoder)
    env.reset(seed=0)
    env.unwrapped.box = RBox(1e300, -1e300, 1e300, 1e300, 1e9)
    obs, r, term, trunc, info = env.step(env.action_space.high)
    assert np.all(np.isfinite(obs)) and np.isfinite(r)
    b = info["pred_box"]
    assert np.all(np.isfinite(b)) and abs(b[0]) <= 2 * 160 and b[2] <= 4 * 160


def _look_alike(mask: np.ndarray, anchor: np.ndarray, side: int = 8) -> np.ndarray:
    """An 8×8 blob in a corner of the crop that touches neither the mask nor the anchor (empty if none fits)."""
    n = mask.shape[0]
    for y, x in ((0, 0), (0, n - side), (n - side, 0), (n - side, n - side)):
        block = np.zeros_like(mask)
        block[y:y + side, x:x + side] = True
        near = np.zeros_like(mask)
        near[max(y - 1, 0):y + side + 1, max(x - 1, 0):x + side + 1] = True
        if not (near & (mask | anchor)).any():
            return block
    return np.zeros_like(mask)


def test_mask_motion_cue_recovers_the_expert_motion_from_a_true_mask(synth_root):
    """The features_motion cue, fed the annotated mask of the next frame cropped like the search
    crop, must give (after undoing the standardisation) a motion that lands on the annotated box,
    also when a separate look-alike piece lies in the crop off the agent's box."""
    from bmvtrack.data.patches import CropWindow, crop_mask
    from bmvtrack.motion import apply_motion, rotated_iou
    from bmvtrack.segmentation import fill_rbox
    from bmvtrack.envs.motion_cue import mask_motion_cue

    env = TrackingEnv(env_cfg(synth_root, crop_size=96))
    mean, std = env.prior.mean, env.prior.std
    ious, blobs = [], 0
    for track_index in range(len(env.tracks)):
        obs, info = env.reset(options={"track_index": track_index})
        for _ in range(4):
            x0, y0, x1, y1, w, h = obs["window"]
            nxt = env._t + 1
            if env.track.present[nxt]:
                mask = crop_mask(env.dataset.mask(env.track, nxt), CropWindow(x0, y0, x1, y1, 96))
                agent_box = crop_mask(fill_rbox(env.box, env.track.size), CropWindow(x0, y0, x1, y1, 96))
                blob = _look_alike(mask, agent_box)
                for m in (mask, mask | blob):  # a separate piece off the agent's box must not move the cue
                    cue = mask_motion_cue(m.astype(np.float32), obs["box"], obs["window"], mean, std)
                    assert cue[6] == 0.0 and 0 < cue[5] < 1
                    moved = apply_motion(env.box, cue[:5] * std + mean, w, h)
                    ious.append(rotated_iou(moved, env.gt_boxes(env.track)[nxt]))
                blobs += int(blob.any())
            # follow the expert, perturbed so that the box is not already on the object
            obs, *_ = env.step(info["expert_action"] * np.array([1.05, 0.95, 1, 1, 1], np.float32))
            info = _[-1]
    # 0.974 with the box fitted at frame resolution; fitting on the patch's pixels scored 0.915
    assert len(ious) >= 12 and blobs >= 3 and np.mean(ious) > 0.95, ious
    empty = mask_motion_cue(np.zeros((96, 96), np.float32), obs["box"], obs["window"], mean, std)
    assert empty[6] == 1.0 and np.allclose(empty[:5] * std + mean, [1, 1, 0, 0, 0])


def test_mask_motion_cue_beyond_the_bounds_still_leads_to_the_masks_box():
    """A mask 2.5× taller than the agent's box needs a height scale beyond the bound (1.98):
    with the bounds, the cue's motion is in bounds and still centres the box on the mask's box;
    without them, clipping its components would put the box tens of pixels off."""
    from bmvtrack.data.patches import crop_mask, crop_window
    from bmvtrack.motion import RBox, apply_motion, motion_between, rotated_iou
    from bmvtrack.segmentation import fill_rbox
    from bmvtrack.envs.motion_cue import mask_motion_cue
    from bmvtrack.envs.observation import box_geometry, window_features

    hw, prior = (240, 320), MotionPrior.paper()
    low, high = prior.action_bounds(6.0)
    agent, target = RBox(200.0, 150.0, 24.0, 8.0, 0.0), RBox(203.0, 151.0, 24.0, 20.0, 0.0)
    assert motion_between(agent, target, 320, 240)[1] > high[1]
    win = crop_window(agent, hw, 96)
    prob = crop_mask(fill_rbox(target, hw), win).astype(np.float32)
    args = (prob, box_geometry(agent, hw, False), window_features(win, hw), prior.mean, prior.std)
    g = mask_motion_cue(*args, bounds=(low, high))[:5] * prior.std + prior.mean
    assert np.all(g >= low - 1e-5) and np.all(g <= high + 1e-5)
    moved = apply_motion(agent, g, 320, 240)
    assert abs(moved.cx - target.cx) < 1.5 and abs(moved.cy - target.cy) < 1.5 and rotated_iou(moved, target) > 0.7
    free = mask_motion_cue(*args)[:5] * prior.std + prior.mean
    naive = apply_motion(agent, np.clip(free, low, high), 320, 240)
    assert abs(naive.cy - target.cy) > 20


def expert_ious(env: TrackingEnv, info: dict) -> list[float]:
    """The IoU of each step of the episode under way, moved by the expert action."""
    ious = []
    for _ in range(len(env.track) - 1):
        _, _, terminated, truncated, info = env.step(info["expert_action"])
        ious.append(info["iou"])
        if terminated or truncated:
            break
    return ious


def test_extra_data_pools_tracks_of_another_dataset(synth_root, tmp_path):
    """Tracks of extra_data join the main dataset's, and their frames, masks and boxes are their own:
    the expert policy stays on the object in an episode of a pooled track."""
    other = generate_dataset(tmp_path / "other", "davis2017", videos=1, seed=7,
                             cfg=SynthConfig(width=200, height=100, frames=6), progress=False)
    base = TrackingEnv(env_cfg(synth_root))
    env = TrackingEnv(env_cfg(synth_root, extra_data=[DataConfig(root=str(other), layout="davis2017", filters=KEEP_ALL)]))
    n_other = len(env.tracks) - len(base.tracks)
    assert n_other >= 1 and [t.name for t in env.tracks[: len(base.tracks)]] == [t.name for t in base.tracks]
    obs, info = env.reset(options={"track_index": len(env.tracks) - 1})
    assert env.track.size == (100, 200) and obs["window"][4:].tolist() == [200, 100]
    ious = expert_ious(env, info)
    assert len(ious) >= 3 and np.mean(ious) > 0.9, ious


def test_augmented_training_tracks_are_real_tracks(synth_root):
    """augment=["flip", "reverse"] gives four tracks per track; the expert policy stays on the object in
    a mirrored, reversed episode, whose first box is the original's last box mirrored; the held-out
    config drops the augmentations."""
    base = TrackingEnv(env_cfg(synth_root))
    cfg = env_cfg(synth_root, augment=["flip", "reverse"])
    env = TrackingEnv(cfg)
    assert len(env.tracks) == 4 * len(base.tracks) and env.tracks[-1].name.endswith("~flip~rev")
    orig = base.tracks[0]
    idx = next(i for i, t in enumerate(env.tracks) if t.flip and t.reverse and t.frame_paths[-1] == orig.frame_paths[0])
    obs, info = env.reset(options={"track_index": idx})
    last = base.gt_boxes(orig)[len(env.track) - 1]
    w = orig.size[1]
    assert abs(env.box.cx - (w - 1 - last.cx)) < 0.05 and abs(env.box.cy - last.cy) < 0.05  # pixel centres mirror to W - 1 - x
    ious = expert_ious(env, info)
    assert len(ious) >= 3 and np.mean(ious) > 0.9, ious
    assert cfg.held_out(None).augment == []
    with pytest.raises(ValueError, match="unknown"):
        TrackingEnv(env_cfg(synth_root, augment=["spin"]))


def test_vec_env_states_come_from_each_tracks_adapted_network(synth_root, tmp_path):
    """Each copy is encoded by its own track's adapted copy, the last state of a finished episode
    by the track it finished (not the one the copy was reset to)."""
    enc = StateEncoder.untrained(TINY_MODEL, MotionPrior.paper(), kind="features_motion")
    models = AdaptedModels(enc.net, AdaptConfig(steps=2, lr=1e-2, batch_size=2), tmp_path)
    per_track = TrackStates(enc, models)
    cfg = env_cfg(synth_root, lost_frames=0)
    venv = make_sb3_vec_env(2, cfg, encoder=enc, seed=3, per_track=per_track)
    assert len(models._models) == len(TrackingEnv(cfg).tracks)  # every track adapted before training starts

    def single(track):  # the same track in one env, encoded by that track's adapted network
        raw = TrackingEnv(cfg)
        net = models.get(track_key(track), track.name, lambda: None)
        env = EncodedObservation(raw, enc.with_net(net))
        return env, env.reset(options={"track_index": raw.tracks.index(track)})[0]

    stay = np.tile([[1, 1, 0, 0, 0]], (2, 1)).astype(np.float32)
    obs, base = venv.reset(), make_sb3_vec_env(2, cfg, encoder=enc, seed=3)
    plain = base.reset()
    pairs = [single(t) for t in venv.get_attr("track")]
    for i, (_, first) in enumerate(pairs):
        assert np.allclose(obs[i], first, atol=1e-6)
    assert not np.allclose(obs, plain)  # the adapted networks' states, not the base's
    for _ in range(len(TrackingEnv(cfg).tracks[0]) - 1):
        obs, _, dones, infos = venv.step(stay)
        ref = [env.step(stay[0]) for env, _ in pairs]
    assert dones.all()
    for i, (o, *_rest) in enumerate(ref):
        assert np.allclose(infos[i]["terminal_observation"], o, atol=1e-6)
    for i, t in enumerate(venv.get_attr("track")):  # after the automatic reset: the new track's network
        assert np.allclose(obs[i], single(t)[1], atol=1e-6)
    venv.close()
    base.close()
