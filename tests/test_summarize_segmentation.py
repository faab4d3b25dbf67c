"""scripts/summarize_segmentation.py: runs pool over folds, seeds average per sequence, and every network
is set against the reference on the sequences both scored."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def summarize(load_script):
    return load_script("summarize_segmentation")


def _run(write_csv, root: Path, run: str, jf: dict[str, float]) -> None:
    rows = [{"sequence": s, "n_frames": 5, "J": v + 0.1, "F": v - 0.1, "JF": v} for s, v in jf.items()]
    rows.append({"sequence": "overall", "n_frames": 99, "J": 9.0, "F": 9.0, "JF": 9.0})  # never pooled
    write_csv(root / run / "eval" / "vae_eval_gt.csv", rows)


def test_folds_pool_seeds_average_and_the_reference_is_paired(write_csv, tmp_path: Path, summarize) -> None:
    _run(write_csv, tmp_path, "unetref-f0", {"a": 0.5, "b": 0.6})
    _run(write_csv, tmp_path, "unetref-f1", {"c": 0.4})
    _run(write_csv, tmp_path, "mine-f0", {"a": 0.6, "b": 0.8})
    _run(write_csv, tmp_path, "mine-f0-s1", {"a": 0.8, "b": 0.6})  # seed 1: a → 0.7, b → 0.7
    _run(write_csv, tmp_path, "mine-f1", {"c": 0.3})
    _run(write_csv, tmp_path, "half-f1", {"c": 0.1})
    res = summarize.scores(tmp_path, "gt")
    assert res["mine"]["seq"]["a"]["JF"] == pytest.approx(0.7) and res["mine"]["seq"]["b"]["JF"] == pytest.approx(0.7)
    assert res["mine"]["folds"] == {"0", "1"} and res["mine"]["seeds"] == {"0", "1"}
    assert set(res["unetref"]["seq"]) == {"a", "b", "c"}
    text = summarize.report(tmp_path, "unetref", "gt")
    rows = {line.split(" | ")[0].strip("| "): line for line in text.splitlines() if line.startswith("| ")}
    # mine: (0.7 + 0.7 + 0.3) / 3 = 56.7; unetref 50.0; paired over a, b, c: +20, +10, −10 → +6.7, ahead on 2 of 3
    assert "| 56.7 |" in rows["mine"] and "+6.7 (on 3)" in rows["mine"] and "| 2/3 |" in rows["mine"]
    assert "-30.0 (on 1)" in rows["half"]  # only the sequence both scored
    assert text.index("| mine |") < text.index("| unetref |") < text.index("| half |")  # best first


def test_an_empty_folder_is_a_one_line_error(tmp_path: Path, summarize) -> None:
    with pytest.raises(SystemExit, match="no <name>-f<fold>"):
        summarize.report(tmp_path, "unetref", "gt")


def test_one_table_per_reference_and_the_page_header(write_csv, tmp_path: Path, summarize) -> None:
    _run(write_csv, tmp_path / "runs", "unetref-f0", {"a": 0.5})
    _run(write_csv, tmp_path / "runs", "paper-f0", {"a": 0.4})
    out = tmp_path / "page.md"
    assert summarize.main([str(tmp_path / "runs"), "--ref", "unetref", "--ref", "paper", "--out", str(out),
                           "--title", "T", "--reproduce", "cmd"]) == 0
    text = out.read_text()
    assert text.startswith("# T\n") and "```\ncmd\n```" in text
    assert text.count("| network |") == 2 and "-10.0 (on 1)" in text and "+10.0 (on 1)" in text
