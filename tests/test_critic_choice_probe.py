"""scripts/critic_choice_probe.py: the tracker moves by the candidate its critic values most, among the
cues' moves (``cues``) or those and the actor's and μ′ (``all``)."""
from __future__ import annotations

import numpy as np
import torch
from test_motion_agent import data, net_path  # noqa: F401  (fixtures)

from bmvtrack.agents import motion_agent as ma
from bmvtrack.data.readers import DataConfig, VideoDataset
from bmvtrack.motion import boxes_from_masks


def test_the_critic_choice_follows_the_candidate_the_critic_values_most(net_path, data: DataConfig,  # noqa: F811
                                                                        load_script) -> None:
    probe = load_script("critic_choice_probe")
    cfg = ma.MotionAgentConfig(motion_net=str(net_path), data=data, steps=60, learning_starts=20, batch_size=16,
                               net_arch=(16, 16), proposal="kcf", reinit="never")
    model, env, _ = ma.build(cfg)
    state = cfg.make_state()
    low, high = model.action_space.low, model.action_space.high
    seen: list[int] = []

    def likes_the_proposal(o: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A critic that values a move by its closeness to the move onto the proposal's box."""
        seen.append(len(a))
        target = model.policy.scale_action(np.clip(o[:, state.proposal_move].numpy(), low, high))
        q = -((a - torch.as_tensor(target)) ** 2).sum(1, keepdim=True)
        return q, q + 1.0

    model.critic = likes_the_proposal
    ds = VideoDataset.from_config(data)
    track = ds.tracks()[0]
    gt = boxes_from_masks([ds.mask(track, i) for i in range(len(track))])

    def run(tracker) -> list:
        tracker.init(ds.frame(track, 0), gt[0])
        return [tracker.update(ds.frame(track, i)).as_array() for i in range(1, len(track))]

    follows = ma.rule_tracker(state, "proposal", "rule-proposal", low, high, cfg.make_proposal())
    expected = run(follows)
    for mode in ("cues", "all"):
        seen.clear()
        np.testing.assert_allclose(run(probe.critic_tracker(model, state, cfg, mode, None)), expected, atol=1e-4)
        assert set(seen) <= ({1, 2} if mode == "cues" else {3, 4}) and max(seen) == (2 if mode == "cues" else 4)
