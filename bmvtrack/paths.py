"""Default locations of generated artefacts (relative to the working directory; env-overridable).

Machine-local paths come from here or from config, never from committed absolute paths.
"""
from __future__ import annotations

import os
from pathlib import Path

DATA_DIR = Path(os.environ.get("BMVTRACK_DATA_DIR", "data"))
RUNS_DIR = Path(os.environ.get("BMVTRACK_RUNS_DIR", "runs"))
SYNTH_DIR = Path(os.environ.get("BMVTRACK_SYNTH_DIR", DATA_DIR / "synth"))
DAVIS2016_DIR = DATA_DIR / "davis2016"  # the DAVIS 2016 release (or a link to it), as the DAVIS configs expect
DEFAULT_PRIOR = RUNS_DIR / "prior" / "prior.json"
DEFAULT_VAE_DIR = RUNS_DIR / "pretrain_vae"
DEFAULT_VAE_CHECKPOINT = DEFAULT_VAE_DIR / "checkpoint.pt"
DEFAULT_MOTION_DIR = RUNS_DIR / "motion"
DEFAULT_MOTION_CHECKPOINT = DEFAULT_MOTION_DIR / "checkpoint.pt"
DEFAULT_RELATIVE_PRIOR = RUNS_DIR / "prior" / "relative_prior.json"
