"""The motion agent: MV-SAC on the motion posterior's states, acting in box-relative coordinates.

What it is (ours, on top of the paper's plan). The state is ``MotionState``'s vector of the pair
(frame t, frame t+1) at the box held: the motion posterior N(μ′(s), Σ′(s)), the box-relative move
onto the decoded mask's box, the pooled feature and the box's size. The action is the box-relative
motion ``r`` (``MotionTrackingEnv``), converted exactly to the environment's ``G_t``. MV-SAC's prior
is the per-state posterior (``prior_source="state"``): warm-up actions are drawn from it, the KL
term (when on) pulls towards it, and the actor starts as a residual around μ′(s) — the untrained
agent is the posterior-mean tracker. Episodes start at random frames from perturbed boxes, and the
box is thrown off now and then, so that finding the object again is part of the job.

With ``proposal`` (``csrt``, ``kcf``) a proposal tracker runs beside the agent
(``bmvtrack.proposals.FollowingProposal``), in training and in tracking alike: the state shows where
it went, and it is restarted on the agent's box by the rule ``reinit``. The hand rules on that state
are ``rule-proposal`` (move onto the proposal's box: the proposal tracker, restarted by the rule) and
``rule-fuse`` (the decoded mask's box where it overlaps the proposal by ≥ 0.5, else the proposal —
the fusion of the ``segmentation-csrt`` tracker). With ``adapt.steps > 0`` every track, in training
and in tracking, is seen through a copy of the network fine-tuned on its first frame and box
(``bmvtrack.adaptation.adapt_motion_net``; training copies cached on disk under ``adapt_cache``).
With ``center=proposal`` the per-state prior is
centred on the proposal's move instead of μ′ (N(r_prop(s), Σ′(s))): the untrained agent is then
``rule-proposal``, the best hand rule on that state, and RL has to improve on it. ``center=mask``
centres it on the move onto the decoded mask's box (no move where the mask is empty): the untrained
agent is then ``rule-mask`` but for empty masks, where the rule takes μ′ instead. With ``colour``
the state also scores both boxes by the first frame's colours (``bmvtrack.appearance``), the hand
rule ``rule-colour`` takes the box of higher colour contrast, and ``center=colour`` starts there.

Variants (``VARIANTS``), the same data stream and budget:

- ``rl``: MV-SAC, the reward alone (IoU with the next annotated box);
- ``rl-expert``: MV-SAC plus the expert's action at the agent's own states in the actor loss
  (``expert_coef``; DAgger-style) — it uses the expert and is labelled so;
- ``supervised``: the actor on the expert term alone (no critic): what supervision alone gives.

``python -m bmvtrack.train_motion_agent`` trains one and scores it, untrained and trained, with the
project's ``evaluate`` protocol (one pass, and the perturbation protocol for recovery).
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import torch

from bmvtrack.adaptation import AdaptConfig, AdaptedModels, SharedAdaptation, cache_folder
from bmvtrack.data.readers import AUGMENTS, DataConfig, FoldSplit
from bmvtrack.io import file_sha256
from bmvtrack.envs.motion_env import PROPOSAL_STARTS, MotionTrackingEnv, make_motion_env
from bmvtrack.envs.motion_state import PROPOSAL_DIM, AdaptedStates, MotionState
from bmvtrack.envs.tracking_env import REWARDS
from bmvtrack.motion import RBox, apply_relative, keep_in_reach
from bmvtrack.paths import RUNS_DIR
from bmvtrack.proposals import AGREE_IOU, PROPOSALS, REINIT_RULES, FollowingProposal, agreement

VARIANTS = ("rl", "rl-expert", "supervised")
CENTERS = ("mu", "proposal", "mask", "colour")  # where the per-state prior and the untrained policy are centred
Variant = Literal["rl", "rl-expert", "supervised"]


@dataclass
class MotionAgentConfig:
    """One motion agent's training run (the defaults are what the fold results use)."""

    motion_net: str = "runs/motion/checkpoint.pt"  # a motion posterior trained with model.reference: box
    data: DataConfig = field(default_factory=DataConfig)
    variant: Variant = "rl"
    steps: int = 6000  # environment steps (one gradient update each after learning_starts)
    seed: int = 0
    start: Literal["first", "random"] = "random"
    start_shift: float = 0.15  # start boxes (and thrown boxes) off by N(0, this)·max(w, h) per axis
    start_scale: float = 0.1
    perturb_prob: float = 0.02  # per step: the box is thrown off (recovery in training)
    lost_frames: int = 10  # end an episode after this many frames at IoU 0
    augment: tuple[str, ...] = ()  # training tracks also mirrored ("flip") and played backwards ("reverse"): EnvConfig.augment
    reward: Literal["iou", "aabb_iou"] = "iou"  # the rotated IoU, or the evaluation's headline IoU (EnvConfig.reward)
    action_n_std: float = 4.0  # relative action bounds: prior mean ± this many prior stds
    cue_scale: float = 0.3  # the initial policy's spread around μ′(s), × the prior's
    target_entropy: float | None = None  # SAC's entropy target; None: the initial policy's (α keeps the start's spread)
    ent_coef_init: float = 1.0  # SAC's temperature α at the start (SB3's "auto" starts at 1; it then adapts)
    prior_kl_coef: float = 0.0
    expert_coef: float = 10.0  # rl-expert and supervised: weight of the expert term (at 1 the critic's gradient swamped it: no pull in 260 updates on a toy set)
    learning_starts: int = 500
    critic_warmup: int = 0  # MV-SAC's first N updates train the critic alone (the actor keeps its start)
    batch_size: int = 128
    gamma: float = 0.9
    learning_rate: float = 3e-4
    net_arch: tuple[int, ...] = (256, 256)
    quantum: float = 1.0  # MotionState's rounding (px, %, degrees)
    features: bool = False  # the state includes the network's pooled appearance feature
    box_state: bool = True  # the state includes the box's size in the frame (nearly constant within a track)
    train_nets: tuple[str, ...] = ()  # "SPLIT=CHECKPOINT": training tracks of SPLIT's sequences seen through that motion network (cross-fitting: MotionTrackingEnv.track_states)
    proposal: Literal["none", "csrt", "kcf"] = "none"  # a proposal tracker beside the agent (its box in the state)
    reinit: Literal["never", "disagree", "vote"] = "vote"  # when it is restarted on the agent's box (FollowingProposal)
    history: bool = False  # the state also shows the track's record of mask–proposal agreement (CueHistory)
    colour: bool = False  # the state also scores the mask's box and the proposal's by the first frame's colours (ColourModel)
    proposal_start: Literal["box", "annotation"] = "box"  # training episodes start the proposal on the agent's box or the annotated one
    center: Literal["mu", "proposal", "mask", "colour"] = "mu"  # the per-state prior's mean and the untrained policy: μ′(s), the move onto the proposal's box, onto the decoded mask's, or rule-colour's
    explore_cues: tuple[str, ...] = ()  # cue exploration (MVSAC explore_ranges): warm-up and a share of later steps draw around these cues' moves
    explore_prob: float = 0.0  # after warm-up, the share of steps drawn around one of explore_cues
    adapt: AdaptConfig = field(default_factory=lambda: AdaptConfig(steps=0))  # per-track first-frame adaptation of the network (steps > 0: on)
    adapt_cache: str = ""  # folder of the training tracks' adapted copies (default runs/adapt_cache)
    threads: int = 1

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}")
        if not self.ent_coef_init > 0:
            raise ValueError(f"ent_coef_init must be > 0, got {self.ent_coef_init}")
        if self.steps < 1 or self.learning_starts < 0 or self.critic_warmup < 0:
            raise ValueError("steps must be >= 1, learning_starts and critic_warmup >= 0")
        if self.proposal not in PROPOSALS:
            raise ValueError(f"proposal must be one of {PROPOSALS}, got {self.proposal!r}")
        if self.reinit not in REINIT_RULES:
            raise ValueError(f"reinit must be one of {REINIT_RULES}, got {self.reinit!r}")
        if self.reward not in REWARDS:
            raise ValueError(f"reward must be one of {REWARDS}, got {self.reward!r}")
        if any("=" not in item for item in self.train_nets):
            raise ValueError(f"train_nets entries are SPLIT=CHECKPOINT, got {list(self.train_nets)}")
        if not set(self.augment) <= set(AUGMENTS):
            raise ValueError(f"augment must be a subset of {AUGMENTS}, got {list(self.augment)}")
        if self.proposal_start not in PROPOSAL_STARTS:
            raise ValueError(f"proposal_start must be one of {PROPOSAL_STARTS}, got {self.proposal_start!r}")
        if self.center not in CENTERS:
            raise ValueError(f"center must be one of {CENTERS}, got {self.center!r}")
        if (self.history or self.colour) and self.proposal == "none":
            raise ValueError("history and colour need a proposal tracker (proposal=csrt or kcf)")
        if self.center == "proposal" and self.proposal == "none":
            raise ValueError("center=proposal needs a proposal tracker (proposal=csrt or kcf)")
        if "colour" in (self.center, *self.explore_cues) and not self.colour:
            raise ValueError("center=colour and explore_cues=[colour] need the colour scores (colour=true)")
        if not set(self.explore_cues) <= set(CENTERS) - {self.center}:
            raise ValueError(f"explore_cues must be cues other than the centre {self.center!r} among {CENTERS}, "
                             f"got {list(self.explore_cues)}")
        if "proposal" in self.explore_cues and self.proposal == "none":
            raise ValueError("explore_cues=[proposal] needs a proposal tracker (proposal=csrt or kcf)")
        if not 0.0 <= self.explore_prob <= 1.0 or (self.explore_prob > 0 and not self.explore_cues):
            raise ValueError(f"explore_prob must be in [0, 1] and needs explore_cues, got {self.explore_prob}")
        if self.adapt.steps > 0 and self.train_nets:
            raise ValueError("adapt and train_nets exclude each other (each track is seen through one network)")

    def make_state(self) -> MotionState:
        """The ``MotionState`` of this config's motion network."""
        return state_for(vars(self), self.motion_net)

    def make_train_states(self) -> dict[str, MotionState]:
        """``train_nets`` as ``MotionTrackingEnv.track_states``: sequence name → that network's state."""
        out: dict[str, MotionState] = {}
        for item in self.train_nets:
            split, _, net = item.rpartition("=")
            fold = FoldSplit.parse(split)
            if fold is None:
                raise ValueError(f"train_nets: {item!r}: the split must be a fold selection (<folds file>:<fold>:<part>)")
            state = state_for(vars(self), net)
            for seq in fold.sequences():
                out[seq] = state
        return out

    def make_adapted(self, state: MotionState) -> AdaptedStates | None:
        """Per-track adapted states of ``state``'s network (None without ``adapt``), their copies cached
        in a folder specific to the network file and the adaptation config."""
        if self.adapt.steps <= 0:
            return None
        root = Path(self.adapt_cache) if self.adapt_cache else RUNS_DIR / "adapt_cache"
        return AdaptedStates(state, AdaptedModels(state.model, self.adapt, cache_folder(root, self.motion_net, self.adapt)))

    def make_proposal(self) -> FollowingProposal | None:
        """A fresh proposal tracker of this config (None without one): one per environment or tracker."""
        if self.proposal == "none":
            return None
        return FollowingProposal(self.proposal, self.reinit, history=self.history, colour=self.colour)


def state_for(config: dict[str, Any], net: str | Path) -> MotionState:
    """The ``MotionState`` an agent of ``config`` (a ``MotionAgentConfig``'s fields, as ``agent.json``
    stores them; fields newer than the file take their defaults) reads from the network ``net``."""
    return MotionState(net, quantum=float(config.get("quantum", 1.0)), features=bool(config.get("features", False)),
                       box=bool(config.get("box_state", True)))


def agent_kwargs(cfg: MotionAgentConfig, env: MotionTrackingEnv) -> dict[str, Any]:
    """MV-SAC's constructor arguments (JSON-able: what ``agent.json`` stores)."""
    lay, st = env.obs_layout, env.state
    expert = cfg.variant != "rl"
    cue = lay["search/motion"]
    moves = {"mu": lay["search/mu"], "proposal": st.proposal_move, "mask": slice(cue.start, cue.start + 5),
             "colour": lay.get("colour/move")}
    mean = moves[cfg.center]
    return {
        "prior_mean": st.prior_mean.tolist(), "prior_cov": st.prior_cov.tolist(), "prior_source": "state",
        "state_prior_mean_slice": [mean.start, mean.stop],
        "state_prior_tril_slice": [lay["search/tril"].start, lay["search/tril"].stop],
        "prior_warmup": True, "prior_init": True, "prior_kl_coef": cfg.prior_kl_coef, "cue_scale": cfg.cue_scale,
        "expert_coef": cfg.expert_coef if expert else 0.0, "rl": cfg.variant != "supervised",
        "critic_warmup": cfg.critic_warmup,
        "explore_ranges": [[moves[c].start, moves[c].stop] for c in cfg.explore_cues],
        "explore_prob": cfg.explore_prob, "ent_coef": f"auto_{cfg.ent_coef_init:g}",
        "learning_starts": cfg.learning_starts, "batch_size": cfg.batch_size, "gamma": cfg.gamma,
        "learning_rate": cfg.learning_rate, "buffer_size": max(cfg.steps, 1), "seed": cfg.seed,
        "policy_kwargs": {"net_arch": list(cfg.net_arch)}, "verbose": 0, "device": "cpu",
        "target_entropy": cfg.target_entropy if cfg.target_entropy is not None else initial_entropy(cfg, env),
    }


def initial_entropy(cfg: MotionAgentConfig, env: MotionTrackingEnv) -> float:
    """Entropy of the untrained policy's Gaussian in the policy's [-1, 1] space (before tanh): the
    prior's covariance × ``cue_scale²``, mapped by the action bounds."""
    half = (env.action_space.high.astype(np.float64) - env.action_space.low) / 2.0
    cov = env.state.prior_cov * cfg.cue_scale**2 / np.outer(half, half)
    return float(0.5 * np.linalg.slogdet(2.0 * np.pi * np.e * cov)[1])


def build(cfg: MotionAgentConfig, state: MotionState | None = None) -> tuple[Any, MotionTrackingEnv, dict]:
    """The environment and the untrained agent of ``cfg`` (and its constructor arguments)."""
    from bmvtrack.agents.agent_file import make_agent

    torch.set_num_threads(cfg.threads)
    state = state or cfg.make_state()
    env = make_motion_env(state, cfg.action_n_std, cfg.make_proposal(), cfg.proposal_start, cfg.make_train_states(),
                          cfg.make_adapted(state), data=cfg.data, start=cfg.start, start_shift=cfg.start_shift,
                          start_scale=cfg.start_scale, perturb_prob=cfg.perturb_prob, lost_frames=cfg.lost_frames,
                          reward=cfg.reward, augment=list(cfg.augment))
    env.reset(seed=cfg.seed)
    env.action_space.seed(cfg.seed)
    kwargs = agent_kwargs(cfg, env)
    return make_agent("mvsac", env, kwargs), env, kwargs


def train(cfg: MotionAgentConfig, out: str | Path, state: MotionState | None = None,
          progress: Callable[[str], None] | None = print,
          log: Callable[[dict[str, float], int], None] | None = None) -> tuple[Any, dict[str, Any]]:
    """Train ``cfg``'s agent and save its final checkpoint in ``out`` (``agents.agent_file``);
    returns the model and the run's record (steps/s, updates, cache hits). ``progress`` gets a line
    and ``log`` (a ``RunLogger.log``) the mean IoU per step of recent episodes every tenth of the run."""
    from stable_baselines3.common.callbacks import BaseCallback

    from bmvtrack.agents.agent_file import save_agent_checkpoint

    model, env, kwargs = build(cfg, state)
    env.prepare_adapted()
    t0, log_every = time.perf_counter(), max(cfg.steps // 10, 1)

    class Progress(BaseCallback):
        def _on_step(self) -> bool:
            n = self.num_timesteps
            if n % log_every:
                return True
            rate = n / (time.perf_counter() - t0)
            episodes = list(self.model.ep_info_buffer or [])
            iou = float(np.mean([e["r"] / max(e["l"], 1) for e in episodes])) if episodes else float("nan")
            if progress is not None:
                progress(f"{cfg.variant} seed {cfg.seed}: {n}/{cfg.steps} steps, {rate:.1f} steps/s, "
                         f"IoU per step {iou:.3f}")
            if log is not None:
                log({"train/iou_per_step": iou, "train/steps_per_s": rate}, n)
            return True

    model.learn(cfg.steps, callback=Progress())
    seconds = time.perf_counter() - t0
    record = {"steps": cfg.steps, "seconds": seconds, "steps_per_s": cfg.steps / seconds,
              "updates": int(model._n_updates),
              "cache": (env.adapted or env.state).cache_info()}
    net = {"path": str(cfg.motion_net), "sha256": file_sha256(cfg.motion_net), "kind": "motion-posterior"}
    meta = {"algo": "mvsac", "kwargs": kwargs, "kind": "motion-agent", "config": _jsonable(asdict(cfg)),
            "encoder": net, "record": record}
    save_agent_checkpoint(model, out, meta, buffer=False)
    return model, record


def _jsonable(x: Any) -> Any:
    return json.loads(json.dumps(x, default=str))


def load(path: str | Path, state: MotionState | None = None) -> tuple[Any, MotionState, dict[str, Any]]:
    """A saved motion agent, the ``MotionState`` of its network (the file it names, checked by hash)
    and its ``agent.json``."""
    from bmvtrack.agents.agent_file import AgentFileError, load_agent

    model, meta, folder = load_agent(path)
    if meta.get("kind") != "motion-agent":
        raise AgentFileError(f"{folder}: not a motion agent (bmvtrack.train_motion_agent)")
    if state is None:
        net = meta["encoder"]["path"]
        if not Path(net).is_file() or file_sha256(net) != meta["encoder"]["sha256"]:
            raise AgentFileError(f"{folder}: its motion network {net} is missing or another file than it trained on")
        state = state_for(meta["config"], net)
    return model, state, meta


class MotionStateTracker:
    """A box tracker that moves by ``act(state)``: a motion agent's deterministic action, or a rule.

    Each update computes ``MotionState`` of (previous frame, this frame) at the box held and moves
    the box by the box-relative action (``apply_relative``, exactly the environment's step). With a
    ``proposal`` it runs as in the environment: moved to this frame before the state, its cue
    appended, restarted by its rule after the move. ``overlap`` moves the proposal on a worker
    thread while the network computes the state (same boxes; faster on two cores). With ``adapt``
    the first ``init`` of a track reads its states through the network adapted to that frame and box
    (shared with the other trackers of the same ``SharedAdaptation``); a re-initialisation within the
    track (the perturbation protocol) keeps that copy.
    """

    uses_ground_truth = False

    def __init__(self, state: MotionState, act: Callable[[np.ndarray], np.ndarray], name: str,
                 low: np.ndarray | None = None, high: np.ndarray | None = None,
                 proposal: FollowingProposal | None = None, overlap: bool = True,
                 adapt: SharedAdaptation | None = None) -> None:
        self.base_state, self.adapt, self.reused_init_seconds = state, adapt, 0.0
        self.state, self.act, self.name = state, act, name
        self.low, self.high, self.proposal, self.overlap = low, high, proposal, overlap
        self._box: RBox | None = None
        self._frame: np.ndarray | None = None
        self.last_aabb = None

    @property
    def box(self) -> RBox | None:
        """The box held (during ``update``: until the move)."""
        return self._box

    def init(self, frame: np.ndarray, box: RBox) -> None:
        if self.adapt is not None and self.state is self.base_state:
            net, self.reused_init_seconds = self.adapt.get(self.base_state.model, frame, box)
            self.state = self.base_state.with_model(net)
        self._box, self._frame = box, frame
        if self.proposal is not None:
            self.proposal.start(frame, box)

    def update(self, frame: np.ndarray) -> RBox:
        if self._box is None or self._frame is None:
            raise RuntimeError("MotionStateTracker.update called before init")
        pending = None
        if self.proposal is not None:  # the proposal moves on the worker thread while the network runs
            pending = self.proposal.propose_async(frame) if self.overlap else (lambda: self.proposal.propose(frame))
        obs = self.state(self._frame, frame, self._box)
        mask_box = None
        if pending is not None:
            pending()
            obs, mask_box = self.state.with_proposal(obs, self._box, self.proposal, frame)
        r = np.asarray(self.act(obs), dtype=np.float64).reshape(5)
        if self.low is not None and self.high is not None:
            r = np.clip(r, self.low, self.high)
        self._box = keep_in_reach(apply_relative(self._box, r, self.state.context), frame.shape[:2])
        self._frame = frame
        if self.proposal is not None:
            self.proposal.settle(frame, self._box, mask_box)
        return self._box


def agent_tracker(model: Any, state: MotionState, name: str, proposal: FollowingProposal | None = None,
                  overlap: bool = True, adapt: SharedAdaptation | None = None) -> MotionStateTracker:
    """The agent's deterministic policy as a tracker (with the proposal tracker it was trained with)."""
    return MotionStateTracker(state, lambda obs: model.predict(obs, deterministic=True)[0], name, proposal=proposal,
                              overlap=overlap, adapt=adapt)


def step_scaled_tracker(model: Any, start: Any, state: MotionState, scale: float, name: str,
                        proposal: FollowingProposal | None = None,
                        adapt: SharedAdaptation | None = None) -> MotionStateTracker:
    """The agent's move shrunk towards its untrained start's: r₀(s) + ``scale``·(π(s) − r₀(s)), with
    π and r₀ the deterministic moves of ``model`` and of ``start`` (the same agent untrained).

    Why: a diagnostic of what RL learned. Better than both ends at some 0 < ``scale`` < 1 says the
    learned correction points the right way but goes too far (a step off the data the critic saw).
    """
    def act(obs: np.ndarray) -> np.ndarray:
        r0 = start.predict(obs, deterministic=True)[0]
        return r0 + float(scale) * (model.predict(obs, deterministic=True)[0] - r0)

    return MotionStateTracker(state, act, name, model.action_space.low, model.action_space.high, proposal, adapt=adapt)


Rule = Literal["mu", "mask", "proposal", "fuse", "colour"]


def rule_tracker(state: MotionState, rule: Rule, name: str, low: np.ndarray | None = None,
                 high: np.ndarray | None = None, proposal: FollowingProposal | None = None,
                 adapt: SharedAdaptation | None = None) -> MotionStateTracker:
    """The hand rules on the same state: ``mu`` moves by μ′ (the posterior-mean tracker); ``mask``
    moves onto the decoded mask's box, or by μ′ where the mask is empty; with a ``proposal``,
    ``proposal`` moves onto its box and ``fuse`` onto the mask's box where that overlaps the
    proposal's by ≥ ``AGREE_IOU``, else onto the proposal's; with a proposal whose ``colour`` is on,
    ``colour`` moves onto whichever of the two boxes has the higher colour contrast (the proposal's
    where the mask is empty)."""
    mu, cue = state.layout["search/mu"], state.layout["search/motion"]  # the same in an adapted copy's state
    if rule in ("proposal", "fuse", "colour") and proposal is None:
        raise ValueError(f"rule {rule!r} needs a proposal tracker")
    if rule == "colour" and (proposal is None or proposal.colours is None):
        raise ValueError("rule 'colour' needs a proposal tracker with colour=True")
    choice = proposal.extra_layout(state.dim + PROPOSAL_DIM).get("colour/move") if proposal is not None else None

    def act(obs: np.ndarray) -> np.ndarray:
        if rule == "colour":  # the state holds the rule's move (MotionState.with_proposal: colour_choice)
            return obs[choice]
        mask_ok = obs[cue][6] < 0.5
        if rule == "proposal" or (rule == "fuse" and not mask_ok):
            return obs[state.proposal_move]
        if rule == "fuse":  # the boxes themselves: the box held (before this move) and the proposal's
            mask_box = tracker.state.mask_box(obs, tracker.box)
            return obs[cue][:5] if agreement(mask_box, proposal.box) >= AGREE_IOU else obs[state.proposal_move]
        if rule == "mask" and mask_ok:
            return obs[cue][:5]
        return obs[mu]

    tracker = MotionStateTracker(state, act, name, low, high, proposal, adapt=adapt)
    return tracker
