"""Every bad or hostile file on every loading path of the command line: one clear line, no code run.

    python scripts/audit_loading_paths.py [WORK_DIR]

Builds a tiny dataset, encoder and agent in WORK_DIR (default: a temporary folder), then runs each
command with each bad file (missing, empty, text, truncated, pickle payload, crafted SB3 zip, empty
zip, another kind, another width, renamed keys, a folder) and counts the runs that end in one
``error:`` line naming the file (exit code 2, no traceback, no torch advice). A payload that ran
would create WORK_DIR/PWNED.
"""
import base64
import json
import os
import pickle
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch

W = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="bmvtrack-audit-"))
W.mkdir(parents=True, exist_ok=True)
MARK = W / "PWNED"
from bmvtrack.data.synth import SynthConfig, generate_dataset
from bmvtrack.checkpoint import save_checkpoint
from bmvtrack.config import to_dict
from bmvtrack.models import ModelConfig, build_model
from bmvtrack.motion import MotionPrior
TINY = ModelConfig(patch_size=32, base_width=8, decoder_width=8, z_channels=8, part_size=4)
data = generate_dataset(W / "synth", "davis2017", videos=4, seed=2, cfg=SynthConfig(width=160, height=120, frames=8), progress=False)
prior = MotionPrior(np.array([1, 1, 0, 0, 0.0]), np.diag([0.003, 0.003, 0.003, 0.0004, 0.0004])); prior.save(W / "prior.json")
torch.manual_seed(0)
net = build_model(TINY, prior.mean, prior.cov, prior.sample_std)
save_checkpoint(W / "enc.pt", {"kind": "bmvae", "model": net.state_dict(), "model_config": to_dict(TINY)})
(W / "train.yaml").write_text(f"""
env: {{data: {{root: {data}, layout: davis2017, split: train, filters: {{absent: keep, max_box_fraction: 1.0}}}}, prior: {W/'prior.json'}}}
encoder: {W/'enc.pt'}
agent: {{total_timesteps: 120, learning_starts: 40, batch_size: 32, buffer_size: 2000, net_arch: [32, 32]}}
eval_every: 80
eval_tracks: 1
checkpoint_every: 80
time_budget_min: 0
""")
env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
def run(*args):
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=600, env=env, cwd=W)
r = run("bmvtrack.train_sac", "--config", str(W / "train.yaml"), "--out", str(W / "agent"), "--no-wandb")
assert r.returncode == 0, r.stderr[-3000:]
class P:
    def __reduce__(self): return (os.system, (f"touch {MARK}",))
bad = {}
bad["missing"] = W / "nope.pt"
(W / "empty.pt").write_bytes(b""); bad["empty"] = W / "empty.pt"
(W / "text.pt").write_text("hello"); bad["text"] = W / "text.pt"
b = (W / "enc.pt").read_bytes(); (W / "trunc.pt").write_bytes(b[: len(b) // 2]); bad["truncated"] = W / "trunc.pt"
torch.save({"kind": "bmvae", "x": P()}, W / "pickle.pt"); bad["pickle_payload"] = W / "pickle.pt"
with zipfile.ZipFile(W / "evil.zip", "w") as z:
    z.writestr("data", json.dumps({"policy_class": {":serialized:": base64.b64encode(pickle.dumps(P())).decode()}}))
bad["sb3_evil_zip"] = W / "evil.zip"
zipfile.ZipFile(W / "emptyzip.zip", "w").close(); bad["empty_zip"] = W / "emptyzip.zip"
torch.save({"kind": "other", "a": torch.zeros(2)}, W / "other.pt"); bad["other_kind"] = W / "other.pt"
wide = ModelConfig(**{**to_dict(TINY), "base_width": 16})
sd = build_model(TINY, prior.mean, prior.cov, prior.sample_std).state_dict()
save_checkpoint(W / "width.pt", {"kind": "bmvae", "model": build_model(wide, prior.mean, prior.cov, prior.sample_std).state_dict(), "model_config": to_dict(TINY)}); bad["other_width"] = W / "width.pt"
save_checkpoint(W / "keys.pt", {"kind": "bmvae", "model": {("x." + k): v for k, v in sd.items()}, "model_config": to_dict(TINY)}); bad["renamed_keys"] = W / "keys.pt"
(W / "adir").mkdir(); bad["directory"] = W / "adir"
D = ["--data", str(data), "--layout", "davis2017"]
paths = {
 "evaluate --policy": lambda f, o: ("bmvtrack.evaluate", *D, "--trackers", "zero", "--policy", f"x={f}", "--out", o, "--no-wandb"),
 "visualize --policy": lambda f, o: ("bmvtrack.visualize", *D, "--policy", f"x={f}", "--out", o, "--no-wandb"),
 "train_sac --resume": lambda f, o: ("bmvtrack.train_sac", "--resume", str(f), "--no-wandb"),
 "train_sac --encoder": lambda f, o: ("bmvtrack.train_sac", "--config", str(W / "train.yaml"), "--encoder", str(f), "--out", o, "--no-wandb"),
 "evaluate --segmenter": lambda f, o: ("bmvtrack.evaluate", *D, "--trackers", "segmentation", "--segmenter", str(f), "--out", o, "--no-wandb"),
 "visualize --segmenter": lambda f, o: ("bmvtrack.visualize", *D, "--trackers", "segmentation", "--segmenter", str(f), "--out", o, "--no-wandb"),
 "evaluate_vae --checkpoint": lambda f, o: ("bmvtrack.evaluate_vae", *D, "--checkpoint", str(f), "--out", o, "--no-wandb"),
 "pretrain_vae --resume": lambda f, o: ("bmvtrack.pretrain_vae", "--resume", str(f), "--out", o, "--no-wandb"),
}
rows = []; n = 0
for pname, make in paths.items():
    for bname, f in bad.items():
        n += 1
        r = run(*make(f, str(W / f"out{n}")))
        last = (r.stderr.strip().splitlines() or [""])[-1]
        clear = r.returncode == 2 and "Traceback" not in r.stderr and last.startswith("error: ") and f.name in last and "weights_only" not in r.stderr
        rows.append((pname, bname, r.returncode, clear, last[:150]))
        print(f"{pname:26s} {bname:15s} rc={r.returncode} clear={clear} | {last[:140]}", flush=True)
print(f"\n{sum(r[3] for r in rows)} of {len(rows)} handled clearly; code ran: {MARK.exists()}; work folder {W}")
