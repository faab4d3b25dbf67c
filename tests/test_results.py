"""Result pages are made from finished evaluate runs, never typed."""
from __future__ import annotations

import json
from pathlib import Path

from bmvtrack import evaluate, results
from bmvtrack.data.synth import SynthConfig, generate_dataset


def test_a_page_holds_the_runs_table_command_and_plot(tmp_path: Path):
    data = generate_dataset(tmp_path / "d", "davis2017", videos=2, seed=0,
                            cfg=SynthConfig(width=160, height=120, frames=6), progress=False)
    run = tmp_path / "ev"
    assert evaluate.main(["--data", str(data), "--trackers", "zero,oracle", "--out", str(run), "--no-progress",
                          "--no-wandb"]) == 0
    out = tmp_path / "pages"
    assert results.main([f"synthetic={run}", "--out", str(out)]) == 0
    text = (out / "synthetic.md").read_text()
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ") and "---" not in line}
    assert {"zero", "oracle"} <= set(rows)
    overall = (run / "overall.csv").read_text().splitlines()
    oracle_auc = float(next(r for r in overall if r.startswith("oracle")).split(",")[overall[0].split(",").index("success_auc")])
    assert f"{oracle_auc:.3f}" in rows["oracle"]
    assert "bmvtrack.evaluate" in text and (out / "synthetic_success.png").is_file()
    assert "[synthetic](synthetic.md)" in (out / "index.md").read_text()


def test_an_unfinished_run_is_refused(tmp_path: Path, capsys):
    run = tmp_path / "ev"
    run.mkdir()
    (run / "manifest.json").write_text(json.dumps({"status": "running", "trackers": [], "tracks": []}))
    assert results.main([f"x={run}", "--out", str(tmp_path / "pages")]) == 2
    assert "not finished" in capsys.readouterr().err
    assert not (tmp_path / "pages" / "x.md").exists()


def test_a_machine_local_dataset_root_is_shown_as_path():
    cmd = "python -m bmvtrack.evaluate --data /home/me/datasets/davis2016 --resolution 240p --out runs/x"
    assert results.portable(cmd) == "python -m bmvtrack.evaluate --data PATH/davis2016 --resolution 240p --out runs/x"
