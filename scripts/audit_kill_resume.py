"""SIGKILL a real train_sac process at several moments, resume it, compare with an uninterrupted run.

    python scripts/audit_kill_resume.py WORK_DIR

WORK_DIR is the folder scripts/audit_loading_paths.py filled (tiny data, encoder, train.yaml).
Each killed run is resumed (or, killed before its first checkpoint, restarted with --overwrite);
its final weights, replay buffer and update count must equal the uninterrupted run's bit for bit.
"""
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from bmvtrack.agents.agent_file import load_agent

W = Path(sys.argv[1])
env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
base = ["--config", str(W / "train.yaml"), "--set", "agent.total_timesteps=600", "--set", "checkpoint_every=40",
        "--set", "agent.algo=sac", "--no-wandb"]
def run(out, extra=()):
    out.parent.mkdir(parents=True, exist_ok=True)
    log = open(f"{out}.log", "a")
    args = [*base, "--out", str(out)] if "--resume" not in extra else ["--no-wandb"]
    return subprocess.Popen([sys.executable, "-m", "bmvtrack.train_sac", *args, *extra],
                            env=env, stdout=log, stderr=log)
def state(out):
    m, meta, f = load_agent(out)
    z = np.load(f / "replay_buffer.npz", allow_pickle=False)
    return m.policy.state_dict(), {k: z[k] for k in z.files}, meta["training"]["n_updates"], meta["num_timesteps"]
ref_dir = W / "kill" / "ref"; shutil.rmtree(ref_dir, ignore_errors=True)
t0 = time.time(); assert run(ref_dir).wait() == 0; total = time.time() - t0
ref = state(ref_dir)
print(f"uninterrupted: {total:.1f} s, {ref[3]} steps")
for frac in (0.35, 0.5, 0.65, 0.8, 0.9):
    out = W / "kill" / f"k{frac}"; shutil.rmtree(out, ignore_errors=True)
    p = run(out); time.sleep(total * frac); p.send_signal(signal.SIGKILL); p.wait()
    at = (out / "checkpoints" / "latest").read_text().strip() if (out / "checkpoints" / "latest").exists() else None
    partial = list((out / "checkpoints").glob(".*.partial")) if (out / "checkpoints").exists() else []
    assert run(out, ["--resume", str(out)]).wait() == 0 if at else run(out, ["--overwrite"]).wait() == 0
    got = state(out)
    same = got[2] == ref[2] and all(torch.equal(got[0][k], ref[0][k]) for k in ref[0]) and all(np.array_equal(got[1][k], ref[1][k]) for k in ref[1])
    print(f"killed at {frac:.0%} of the run: latest={at}, partial checkpoint left={bool(partial)} -> resumed equal to uninterrupted: {same}")
