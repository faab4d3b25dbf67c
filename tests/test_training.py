"""RL training plumbing: a tiny MV-SAC run, checkpoints and resume, the policy as a tracker."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bmvtrack.agents.policy_tracker import PolicyTracker
from bmvtrack.agents.train_sac import AgentConfig, TrainConfig, train
from bmvtrack.agents.agent_file import latest_checkpoint
from bmvtrack.agents.loading import policy_tracker_factory
from bmvtrack.adaptation import AdaptConfig, AdaptedModels, SharedAdaptation
from bmvtrack.checkpoint import save_checkpoint
from bmvtrack.config import load_config, to_dict
from bmvtrack.data.patches import crop_image, crop_window
from bmvtrack.data.readers import DataConfig, TrackFilter, VideoDataset
from bmvtrack.data.synth import SynthConfig, generate_dataset
from bmvtrack.logging_wandb import WandbConfig, read_metrics
from bmvtrack.models import ModelConfig, build_model
from bmvtrack.models.preprocess import patches_to_tensor
from bmvtrack.motion import MotionPrior, boxes_from_masks
from bmvtrack.envs.state_encoder import StateEncoder, TrackStates
from bmvtrack.envs.tracking_env import EnvConfig, TrackingEnv
from bmvtrack.envs.wrappers import EncodedObservation

TINY = ModelConfig(patch_size=32, base_width=8, decoder_width=8, z_channels=8, part_size=4)
KEEP_ALL = TrackFilter(absent="keep", max_box_fraction=1.0)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("rl")
    data = generate_dataset(root / "synth", "davis2017", videos=4, seed=2,
                            cfg=SynthConfig(width=160, height=120, frames=8), progress=False)
    torch.manual_seed(0)
    prior = MotionPrior(np.array([1, 1, 0, 0, 0.0]), np.diag([0.003, 0.003, 0.003, 0.0004, 0.0004]))
    prior.save(root / "prior.json")
    net = build_model(TINY, prior.mean, prior.cov, prior.sample_std)
    save_checkpoint(root / "enc.pt", {"kind": "bmvae", "model": net.state_dict(), "model_config": to_dict(TINY)})
    return root, data


def tiny_cfg(root, data, **agent) -> TrainConfig:
    env = EnvConfig(data=DataConfig(root=str(data), layout="davis2017", split="train", filters=KEEP_ALL),
                    prior=str(root / "prior.json"))
    a = AgentConfig(total_timesteps=160, learning_starts=40, batch_size=32, buffer_size=2000,
                    net_arch=[32, 32], **agent)
    return TrainConfig(env=env, encoder=str(root / "enc.pt"), agent=a, n_envs=2, eval_every=80, eval_tracks=1,
                       checkpoint_every=80, time_budget_min=0, wandb=WandbConfig(enabled=False),
                       out_dir=str(root / "run"))


def test_mvsac_trains_checkpoints_and_resumes(setup):
    root, data = setup
    cfg = tiny_cfg(root, data, demo_episodes=1, bc_epochs=1)
    out = train(cfg)
    run = out["run_dir"]
    ckpt = latest_checkpoint(run)
    assert ckpt is not None and (ckpt / "weights.pt").is_file() and (ckpt / "replay_buffer.npz").is_file()
    assert 0.0 <= out["final"]["eval/mean_iou"] <= 1.0 and len(out["history"]) >= 2
    keys = {k for row in read_metrics(run) for k in row}
    assert {"eval/mean_iou", "eval/success_auc", "eval/stochastic_mean_iou", "train/actor_loss",
            "train/critic_loss"} <= keys
    last = out["history"][-1]  # sampled actions track differently from the policy's mean
    assert 0.0 <= last["eval/stochastic_mean_iou"] <= 1.0
    assert last["eval/stochastic_mean_iou"] != last["eval/mean_iou"]
    cfg.agent.total_timesteps = 240
    again = train(cfg, resume=str(run))
    assert again["model"].num_timesteps >= 240


def test_plain_sac_baseline_runs(setup):
    root, data = setup
    cfg = tiny_cfg(root, data, algo="sac")
    cfg.out_dir = str(root / "run_sac")
    out = train(cfg)
    assert type(out["model"]).__name__ == "SAC"


@pytest.mark.parametrize("kind,adapted,proposal", [("features", False, "none"), ("features_motion", False, "none"),
                                                  ("features_motion", True, "none"),
                                                  ("features_motion", True, "csrt")])
def test_policy_tracker_reproduces_env_rollout(setup, kind, adapted, proposal, tmp_path):
    """The tracker adapter must rebuild the environment's observations exactly (the motion cue too),
    for an agent trained on adapted states the adapted network the environment used, and with a
    proposal tracker the boxes the environment replayed."""
    root, data = setup
    prior = MotionPrior.load(root / "prior.json")
    enc = StateEncoder.from_checkpoint(root / "enc.pt", kind=kind)
    enc.proposal = proposal != "none"
    cfg = EnvConfig(data=DataConfig(root=str(data), layout="davis2017", filters=KEEP_ALL), crop_size=32,
                    lost_frames=0, proposal=proposal)
    adapt = AdaptConfig(steps=3, lr=1e-2, batch_size=4) if adapted else None
    per_track = TrackStates(enc, AdaptedModels(enc.net, adapt, tmp_path)) if adapt else None
    env = EncodedObservation(TrackingEnv(cfg, prior=prior), enc, per_track)

    class Scripted:  # a deterministic "policy" that depends on the observation
        def predict(self, obs, deterministic=True):
            o = np.asarray(obs).reshape(-1)
            tail = np.tanh(o[-14:].sum())  # the motion cue (features_motion) and the box geometry
            return np.array([1 + 0.01 * np.tanh(o[0]), 1.0, 0.02 * np.tanh(o[1]), 0.003 * tail, -0.002],
                            np.float32), None

    policy = Scripted()
    obs, info = env.reset(options={"track_index": 0})
    env_boxes = []
    done = False
    while not done:
        obs, _, term, trunc, info = env.step(policy.predict(obs)[0])
        env_boxes.append(info["pred_box"])
        done = term or trunc
    raw = env.unwrapped
    tracker = PolicyTracker(policy, enc, raw.action_space.low, raw.action_space.high, adapt=adapt,
                            proposal=proposal)
    ds: VideoDataset = raw.dataset
    track = raw.tracks[0]
    tracker.init(ds.frame(track, 0), raw.gt_boxes(track)[0])
    trk_boxes = [tracker.update(ds.frame(track, i)).as_array() for i in range(1, len(track))]
    assert np.allclose(np.array(env_boxes), np.array(trk_boxes), atol=1e-3)


def test_policy_tracker_adapts_only_its_own_copy_of_the_cue_decoder(setup):
    """First-frame adaptation changes the cue, never the encoder outputs, and never the shared encoder."""
    root, data = setup
    enc = StateEncoder.from_checkpoint(root / "enc.pt", kind="features_motion")
    before = {k: v.clone() for k, v in enc.net.state_dict().items()}
    ds = VideoDataset.from_config(DataConfig(root=str(data), layout="davis2017", filters=KEEP_ALL))
    track = ds.tracks()[0]
    box = boxes_from_masks([ds.mask(track, 0)])[0]
    adapt = AdaptConfig(steps=3, lr=1e-3, batch_size=4, params="decoder")
    tracker = PolicyTracker(None, enc, np.zeros(5), np.ones(5), adapt=adapt)
    tracker.init(ds.frame(track, 0), box)
    assert tracker.encoder is not enc and tracker.encoder.net is not enc.net
    assert all(torch.equal(before[k], v) for k, v in enc.net.state_dict().items())
    x = crop_image(ds.frame(track, 1), crop_window(box, track.size, TINY.patch_size))
    with torch.no_grad():
        a, b = enc.net(patches_to_tensor(x[None]), sample=False), tracker.encoder.net(patches_to_tensor(x[None]), sample=False)
    assert torch.equal(a["features"], b["features"]) and torch.equal(a["mu"], b["mu"])
    assert not torch.equal(a["logits"], b["logits"])
    with pytest.raises(ValueError, match="decoder"):
        PolicyTracker(None, StateEncoder.from_checkpoint(root / "enc.pt", kind="features"), np.zeros(5), np.ones(5),
                      adapt=adapt)


def test_trackers_of_one_encoder_share_each_tracks_adaptation_and_are_charged_for_it(setup, monkeypatch):
    """Two agents sharing a SharedAdaptation adapt a track once, track exactly as an agent that
    adapts alone, and the one that reused the copy still has its making time in its frame-0 time."""
    from bmvtrack import adaptation
    from bmvtrack.evaluate import run_tracker

    root, data = setup
    enc = StateEncoder.from_checkpoint(root / "enc.pt", kind="features_motion")
    ds = VideoDataset.from_config(DataConfig(root=str(data), layout="davis2017", filters=KEEP_ALL))
    track = ds.tracks()[0]
    gt = boxes_from_masks([ds.mask(track, i) for i in range(len(track))])
    adapt = AdaptConfig(steps=3, lr=1e-2, batch_size=4)

    class Follow:  # follows the motion cue (standardised G_t right after the two crop encodings)
        def predict(self, obs, deterministic=True):
            return np.array([1.0, 1.0, 0.0, 0.002 * np.tanh(np.asarray(obs).sum()), 0.0], np.float32), None

    made = []
    real = adaptation.adapt_to_box
    monkeypatch.setattr(adaptation, "adapt_to_box", lambda *a, **k: made.append(1) or real(*a, **k))
    shared = SharedAdaptation(adapt)
    lo, hi = np.full(5, -3.0), np.full(5, 3.0)
    first, second = (PolicyTracker(Follow(), enc, lo, hi, adapt=adapt, shared=shared) for _ in range(2))
    alone = PolicyTracker(Follow(), enc, lo, hi, adapt=adapt)
    r1, r2, r0 = (run_tracker(t, ds, track, gt) for t in (first, second, alone))
    assert len(made) == 1 and first.reused_init_seconds == 0.0 and second.reused_init_seconds > 0.0
    assert np.allclose(r1.boxes, r2.boxes) and np.allclose(r2.boxes, r0.boxes, atol=1e-3)
    assert r2.times[0] >= second.reused_init_seconds
    with pytest.raises(ValueError, match="AdaptConfig"):
        PolicyTracker(Follow(), enc, lo, hi, adapt=AdaptConfig(steps=2), shared=shared)


def test_training_on_adapted_states_adapts_each_track_once_and_tracks_adapted(setup, monkeypatch):
    """Every training and held-out track is adapted up front and cached; a second run only loads;
    the trained agent, as a tracker, adapts as it was trained (its state means nothing otherwise)."""
    from bmvtrack import adaptation

    root, data = setup
    cfg = tiny_cfg(root, data)
    cfg.obs, cfg.out_dir, cfg.adapt_cache = "features_motion", str(root / "run_adapt"), str(root / "adapt_cache")
    cfg.adapt = AdaptConfig(steps=1, lr=1e-3, batch_size=2)
    cfg.agent.total_timesteps = 80
    out = train(cfg)
    n_tracks = sum(len(VideoDataset.from_config(DataConfig(root=str(data), layout="davis2017", split=split,
                                                           filters=KEEP_ALL)).tracks()) for split in ("train", "val"))
    (folder,) = (root / "adapt_cache").iterdir()
    assert len(list(folder.glob("*.pt"))) == n_tracks
    tracker = policy_tracker_factory(out["run_dir"])()
    assert tracker.adapt == cfg.adapt
    registry: dict = {}  # two agents of one encoder and AdaptConfig (as evaluate loads them) share adaptations
    one, two = (policy_tracker_factory(out["run_dir"], shared=registry)() for _ in range(2))
    assert one.shared is not None and one.shared is two.shared and len(registry) == 1

    def refuse(*args, **kwargs):
        raise AssertionError("adapted again instead of loading the cached copy")

    monkeypatch.setattr(adaptation, "adapt_to_box", refuse)
    cfg.out_dir = str(root / "run_adapt2")
    assert train(cfg)["run_dir"].is_dir()
    with pytest.raises(ValueError, match="decoder"):
        train(TrainConfig(**{**cfg.__dict__, "obs": "features", "agent": AgentConfig(prior_source="global"),
                             "out_dir": str(root / "run_adapt3")}))


def test_motion_cue_stays_within_the_agents_own_action_bounds(setup):
    """Trained with tighter action bounds than the encoder's default (2σ, not 6σ), the agent's cue
    is clipped to the bounds its actions have, in training and when it is loaded as a tracker."""
    root, data = setup
    cfg = tiny_cfg(root, data)
    cfg.obs, cfg.out_dir, cfg.eval_split = "features_motion", str(root / "run_bounds"), None
    cfg.env.action_n_std, cfg.agent.total_timesteps = 2.0, 60
    out = train(cfg)
    low, high = out["model"].action_space.low, out["model"].action_space.high
    enc = StateEncoder.from_checkpoint(root / "enc.pt", kind="features_motion")
    assert np.all(enc.cue_bounds[1] > high + 1e-3)  # the default would let the cue go further
    tracker = policy_tracker_factory(out["run_dir"])()
    assert np.array_equal(tracker.encoder.cue_bounds[0], low) and np.array_equal(tracker.encoder.cue_bounds[1], high)
    env = TrackingEnv(EnvConfig(data=cfg.env.data, crop_size=32, lost_frames=0), prior=MotionPrior.load(root / "prior.json"))
    obs, _ = env.reset(options={"track_index": 0})
    cues = []
    for _ in range(5):
        encoded, _ = tracker.encoder.encode(obs["crops"][None], obs["box"][None], None, obs["window"][None])
        layout = tracker.encoder.layout(2, 7)["search/motion"]
        cues.append(encoded[0, layout][:5] * tracker.encoder.prior_std + tracker.encoder.prior_mean)
        obs, *_ = env.step(env.action_space.sample())
    cues = np.array(cues)
    assert np.all(cues >= low - 1e-4) and np.all(cues <= high + 1e-4)


@pytest.mark.parametrize("name", ["train_synth.yaml", "train_davis_synth.yaml"])
def test_shipped_training_configs_load(name):
    """Every key of the shipped configs is a real option (unknown keys are rejected), and the DAVIS
    config trains on adapted states from the DAVIS-only encoder with CSRT's box beside the mask, as
    README reports it."""
    cfg = load_config(TrainConfig, Path(__file__).parents[1] / "configs" / name)
    assert cfg.obs == "features_motion" and cfg.agent.cue_scale == 0.05
    if name == "train_davis_synth.yaml":
        assert cfg.adapt.steps == 60 and cfg.encoder == "runs/pretrain_vae_davis_dev/checkpoint.pt"
        assert cfg.adapt == AdaptConfig(steps=60)  # so the copies cached by --set adapt.steps=60 are reused
        assert cfg.env.proposal == "csrt"
