"""scripts/cue_choice_probe.py: the logistic chooser learns a rule the data hold, and the history and
the colour scores are extra blocks of the features."""
from __future__ import annotations

import numpy as np


def test_the_logistic_chooser_recovers_a_rule_and_history_and_colour_add_their_columns(load_script) -> None:
    probe = load_script("cue_choice_probe")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2000, 3))
    y = (x[:, 1] - 0.5 * x[:, 2] + 0.3 * rng.standard_normal(2000) > 0).astype(float)
    w = probe.fit_logistic(x, y, l2=1.0)
    assert w[1] > 1.0 and w[2] < -0.5 and abs(w[0]) < 0.3  # the rule's signs, the noise column near 0
    assert ((np.c_[x, np.ones(2000)] @ w > 0) == (y > 0.5)).mean() > 0.9
    lay = {"search/scaled": slice(0, 15), "search/motion": slice(15, 22), "box": slice(22, 24),
           "proposal": slice(24, 35), "history": slice(35, 38), "colour": slice(38, 44)}
    obs = np.arange(44, dtype=np.float32)[None].repeat(2, 0)
    plain, more = probe.features(obs, lay, False), probe.features(obs, lay, True)
    assert plain.shape == (2, 25) and more.shape == (2, 28)  # 15 + 2 + 2 + the proposal's 6 (+ 3)
    np.testing.assert_array_equal(more[0, -3:], [35, 36, 37])
    most = probe.features(obs, lay, True, colour=True)
    assert most.shape == (2, 34)
    np.testing.assert_array_equal(most[0, -6:], np.arange(38, 44))
    np.testing.assert_array_equal(plain[0, 15:17], [20, 21])  # the mask's area and empty flag, not its move
