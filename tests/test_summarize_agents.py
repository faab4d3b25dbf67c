"""scripts/summarize_agents.py: runs pool over folds, seeds average per sequence, and each variant is set
against its untrained start, the better hand rule, the supervised-only agent and the baselines."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def summarize(load_script):
    return load_script("summarize_agents")


def _run(write_csv, root: Path, fold: int, variant: str, seed: int, aucs: dict[str, dict[str, float]],
         recovered_shift: float = 0.0) -> None:
    """One run folder: per tracker, per sequence AUC (eval/) and recovery (eval-perturbed/: the AUC
    plus ``recovered_shift``)."""
    for sub, shift in (("eval", 0.0), ("eval-perturbed", recovered_shift)):
        rows = [{"tracker": t, "sequence": s, "success_auc": v, "success_auc_rot": v / 2, "perturbed_recovered": v + shift}
                for t, seqs in aucs.items() for s, v in seqs.items()]
        write_csv(root / f"f{fold}-{variant}-s{seed}" / sub / "sequences.csv", rows)


def test_pooling_and_the_comparisons_defined_before_the_runs(write_csv, tmp_path: Path, summarize) -> None:
    rules = {"rule-mu": {"a": 0.4, "b": 0.5}, "rule-mask": {"a": 0.5, "b": 0.6}}
    _run(write_csv, tmp_path, 0, "rl", 0, {"motion-agent-rl": {"a": 0.6}, "motion-agent-rl-untrained": {"a": 0.4},
                                **{r: {"a": v["a"]} for r, v in rules.items()}})
    _run(write_csv, tmp_path, 0, "rl", 1, {"motion-agent-rl": {"a": 0.8}, "motion-agent-rl-untrained": {"a": 0.4},
                                **{r: {"a": v["a"]} for r, v in rules.items()}})
    _run(write_csv, tmp_path, 1, "rl", 0, {"motion-agent-rl": {"b": 0.7}, "motion-agent-rl-untrained": {"b": 0.5},
                                **{r: {"b": v["b"]} for r, v in rules.items()}})
    _run(write_csv, tmp_path, 0, "supervised", 0, {"motion-agent-supervised": {"a": 0.5}, "motion-agent-supervised-untrained": {"a": 0.4}})
    _run(write_csv, tmp_path, 1, "supervised", 0, {"motion-agent-supervised": {"b": 0.5}, "motion-agent-supervised-untrained": {"b": 0.5}})
    write_csv(tmp_path / "base" / "eval-f0" / "sequences.csv",
           [{"tracker": "csrt", "sequence": "a", "success_auc": 0.3}, {"tracker": "csrt", "sequence": "b", "success_auc": 0.3}])
    auc, seeds = summarize.collect(tmp_path, "eval", "success_auc")
    assert seeds["rl"] == {0, 1}
    assert summarize.per_sequence(summarize.collect(tmp_path, "eval", "success_auc", {1})[0]["rl"]) == {"a": 0.8}
    assert summarize.per_sequence(auc["rl"])["a"] == pytest.approx(0.7)  # the mean of the two seeds
    text = summarize.report(tmp_path, tmp_path / "base")
    assert "best hand rule on this state: rule-mask" in text
    # rl: (0.7 + 0.7)/2 = 0.70; untrained 0.45 → +0.250; rule-mask 0.55 → +0.150; supervised 0.50 → +0.200; csrt 0.3 → +0.400
    row = next(line for line in text.splitlines() if line.startswith("| rl | +"))
    for value in ("+0.250", "+0.150", "+0.200", "+0.400"):
        assert value in row
    assert "| rule-mask | +0.250 [" in text  # 0.55 against CSRT's 0.3
    assert summarize.main([str(tmp_path), "--out", str(tmp_path / "s.md")]) == 0 and (tmp_path / "s.md").is_file()
    # another column of sequences.csv: here half the AUC, so half the RL value
    rot = summarize.report(tmp_path, None, metric="success_auc_rot")
    assert "(success_auc_rot)" in rot and "+0.125" in next(line for line in rot.splitlines() if line.startswith("| rl | +"))
    with pytest.raises(SystemExit, match="no finished runs"):
        summarize.report(tmp_path / "base", None)


def test_a_variant_is_set_against_the_same_variant_of_another_experiment(write_csv, tmp_path: Path, summarize) -> None:
    new, old = tmp_path / "proposal", tmp_path / "plain"
    for root, auc, shift in ((new, 0.7, -0.3), (old, 0.5, 0.0)):
        _run(write_csv, root, 0, "rl", 0, {"motion-agent-rl": {"a": auc, "b": auc + 0.1},
                                          "motion-agent-rl-untrained": {"a": 0.4, "b": 0.4}, "rule-mu": {"a": 0.4, "b": 0.4}},
             recovered_shift=shift)
    assert summarize.main([str(new), "--against", f"runs without it={old}", "--out", str(tmp_path / "s.md")]) == 0
    text = (tmp_path / "s.md").read_text()
    assert "Against the same variant in runs without it" in text
    row = next(line for line in text.splitlines() if line.startswith("| rl | +0.200 ["))
    assert "| -0.100 [" in row  # recovered: 0.4 + 0.1 against 0.5 + 0.1 (AUC + 0.2, recovery 0.3 below it)
    with pytest.raises(SystemExit, match="LABEL=DIR"):
        summarize.main([str(new), "--against", str(old)])


def test_the_better_of_the_two_cues_per_sequence_is_reported(write_csv, tmp_path: Path, summarize) -> None:
    """With rule-mask and rule-proposal: their per-sequence maximum (what choosing one cue per track
    could reach) and their correlation over sequences."""
    cues = {"rule-mask": {"a": 0.8, "b": 0.2, "c": 0.5}, "rule-proposal": {"a": 0.3, "b": 0.7, "c": 0.5}}
    _run(write_csv, tmp_path, 0, "rl", 0, {"motion-agent-rl": {"a": 0.5, "b": 0.5, "c": 0.5},
                                           "motion-agent-rl-untrained": {"a": 0.5, "b": 0.5, "c": 0.5}, **cues})
    text = summarize.report(tmp_path, None)
    assert "picked with the answer" in text and ": 0.667;" in text  # (0.8 + 0.7 + 0.5) / 3
    assert "correlation over sequences -1.00" in text


def test_a_rescored_folder_per_fold_and_the_step_scaled_agent(write_csv, tmp_path: Path, summarize) -> None:
    for fold, seq in ((0, "a"), (1, "b")):
        rows = [{"tracker": t, "sequence": seq, "success_auc": v, "success_auc_rot": v, "perturbed_recovered": v}
                for t, v in (("motion-agent-rl", 0.3), ("motion-agent-rl-untrained", 0.5),
                             ("motion-agent-rl-step0.5", 0.6 + 0.1 * fold), ("rule-mu", 0.4))]
        write_csv(tmp_path / f"f{fold}-rl-s0" / f"eval-x-{fold}-test" / "sequences.csv", rows)
    text = summarize.report(tmp_path, None, sub="eval-x-{fold}-test")
    assert "| rl | 1 | 2 | 0.300 | 0.500 |" in text  # both folds' folders were read
    row = next(line for line in text.splitlines() if line.startswith("| rl-step0.5 |"))
    assert row.startswith("| rl-step0.5 | 0.650 | +0.150 [")  # 0.6 and 0.7 against 0.5
