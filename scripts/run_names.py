"""Run names ``<variant>-s<seed>``: the one rule the summary scripts pool seeds by.

Training runs and their evaluated agents are named ``<variant>-s<seed>`` (``bmvtrack.train_sac``'s
default run name, scripts/run_*_experiments.sh); the scripts here import this module as a sibling
(scripts/ is on the path when they run as scripts).
"""
from __future__ import annotations

import re

SEED_SUFFIX = re.compile(r"-s\d+$")


def seed_variant(run: str) -> str:
    """A run's variant: its name without the ``-s<seed>`` suffix, so seeds pool."""
    return SEED_SUFFIX.sub("", run)
