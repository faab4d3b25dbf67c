"""The output folder of a pretraining run: claimed before anything is written, and the
``command.txt`` that records every invocation that wrote into a run folder."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from bmvtrack.checkpoint import CheckpointError, load_checkpoint
from bmvtrack.io import atomic_write_text
from bmvtrack.pretrain_vae.config import COMMAND, checkpoint_path
from bmvtrack.run_folder import RunFolder, RunFolderError, claim_run_folder

# What makes an out_dir hold a run: its checkpoints and its run folders (logs, samples, command).
RUN_OUTPUTS = ("checkpoint.pt", "best.pt", f"{COMMAND}-*/")


def _same_run(a: dict[str, Any], path: Path) -> bool:
    """Whether the checkpoint at ``path`` belongs to the run of checkpoint ``a`` (unreadable: no)."""
    try:
        b = load_checkpoint(path, kind="bmvae")
    except CheckpointError:
        return False
    if a.get("run_id") and b.get("run_id"):
        return a["run_id"] == b["run_id"]
    return bool(a.get("run_name")) and a.get("run_name") == b.get("run_name")


def claim_out_dir(out_dir: str | Path, resume_ckpt: dict[str, Any] | None = None,
                  resume_path: str | Path | None = None, overwrite: bool = False) -> RunFolder:
    """Lock ``out_dir`` for this run; refuse to replace another run's checkpoints without ``overwrite``.

    A new run needs a folder without checkpoints or run folders (``--overwrite`` removes them).
    A resumed run may write into the folder only when the checkpoints there are its own (the
    same ``run_id``, or ``run_name`` for older checkpoints) or there are none: continuing run A into a folder holding run B would
    replace B's ``checkpoint.pt`` and ``best.pt`` just as a new run would. ``--overwrite`` never
    removes the checkpoint being resumed.
    """
    out_dir = Path(out_dir)
    resume_path = Path(resume_path) if resume_path is not None else None
    outputs = list(RUN_OUTPUTS)
    if resume_path is not None and resume_path.resolve().parent == out_dir.resolve() and resume_path.name in outputs:
        outputs.remove(resume_path.name)  # e.g. --resume <out>/best.pt --overwrite: keep what is resumed
    same = False
    if resume_ckpt is not None:
        mine = resume_ckpt.get("run_name")
        others = []
        for name in ("checkpoint.pt", "best.pt"):
            path = out_dir / name
            if not path.is_file() or (resume_path is not None and path.resolve() == resume_path.resolve()):
                continue
            if not _same_run(resume_ckpt, path):
                others.append(name)
        same = not others
        if same and overwrite:
            raise RunFolderError(f"{out_dir}: --overwrite would delete the run that --resume continues ({mine}); "
                                 "pass only one of them")
        if others and not overwrite:
            raise RunFolderError(f"{out_dir}: holds another pretraining run ({', '.join(others)}) than the one "
                                 f"--resume continues ({mine}); pass --overwrite to replace it, or choose another --out")
    # --resume auto is a way on only where there is a checkpoint to continue
    hint = "--resume auto" if checkpoint_path(out_dir).is_file() else None
    return claim_run_folder(out_dir, outputs, resume=same, overwrite=overwrite, what="pretraining run",
                            resume_flag=hint)


def record_command(run_dir: Path, command: str | None, step: int) -> None:
    """Append the invocation (default: this process's argv) to ``<run_dir>/command.txt``: a resumed
    run adds its line, so the file tells how every part of the run was made."""
    path = run_dir / "command.txt"
    old = path.read_text() if path.is_file() else ""
    cmd = command or " ".join([Path(sys.executable).name, *sys.argv])
    line = f"# {time.strftime('%Y-%m-%d %H:%M:%S')} cwd={os.getcwd()} step={step}\n{cmd}\n"
    atomic_write_text(path, old + line)
