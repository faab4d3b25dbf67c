"""The global RNG states a resumed run restores (torch, CUDA, numpy, Python ``random``).

The jitter of a training patch does not come from here (``PatchDataset`` seeds it per item) nor
does the shuffling (``ResumableSampler``): the global states drive the model's initialisation
and the bottleneck's sampling noise, and restoring them lets a resumed run continue the
uninterrupted one exactly. Saved as plain types, so ``weights_only`` loads them.
"""
from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def rng_state() -> dict[str, Any]:
    """torch (and CUDA), numpy (global bit generator) and Python ``random`` states, plain types only."""
    np_state = np.random.get_state(legacy=False)
    bit = dict(np_state["state"])
    bit = {k: (v.tolist() if isinstance(v, np.ndarray) else int(v)) for k, v in bit.items()}
    py = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else [],
        "numpy": {"bit_generator": str(np_state["bit_generator"]), "state": bit,
                  "has_gauss": int(np_state["has_gauss"]), "gauss": float(np_state["gauss"])},
        "python": [py[0], list(py[1]), py[2]],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what ``rng_state`` returned (CUDA's only where CUDA is available)."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    npst = state["numpy"]
    bit = {k: (np.asarray(v, dtype=np.uint32) if isinstance(v, list) else v) for k, v in npst["state"].items()}
    np.random.set_state({"bit_generator": npst["bit_generator"], "state": bit,
                         "has_gauss": npst["has_gauss"], "gauss": npst["gauss"]})
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))


def seed_everything(seed: int) -> None:
    """Seed torch, numpy's global generator and Python ``random`` (the model init and its noise)."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)
