"""train_sac's flags: ranges are checked before anything runs, path values stay strings."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bmvtrack.config import ConfigError
from bmvtrack.train_sac import parser, resolve

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("flags,key", [(["--set", "n_envs=0"], "n_envs"), (["--set", "agent.batch_size=0"], "batch_size"),
                                       (["--set", "agent.learning_rate=-1"], "learning_rate"),
                                       (["--timesteps", "-5"], "total_timesteps"),
                                       (["--set", "agent.net_arch=[64, 0]"], "net_arch"),
                                       (["--set", "agent.gamma=1.5"], "gamma"),
                                       (["--set", "agent.ent_coef=fast"], "ent_coef")])
def test_out_of_range_values_are_one_line_errors(flags, key, tmp_path):
    res = subprocess.run([sys.executable, "-m", "bmvtrack.train_sac", *flags, "--out", str(tmp_path / "run"),
                          "--no-wandb"], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert res.returncode == 2, res.stderr[-1500:]
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and key in lines[0], res.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize("name", ["/x/run #1", "/x/yes", "/x/007", "/x/a: b", "*star", "&anchor", "null"])
def test_path_flags_are_taken_as_written(name):
    cfg = resolve(parser().parse_args(["--out", name, "--encoder", name]))
    assert cfg.out_dir == name and cfg.encoder == name


def test_resume_refuses_a_config_file(tmp_path):
    with pytest.raises(ConfigError, match="--resume"):
        resolve(parser().parse_args(["--resume", str(tmp_path), "--config", "configs/train_synth.yaml"]))
