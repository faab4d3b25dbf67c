"""One pretraining run: ``Trainer`` sets it up, trains it and closes it; ``train`` does all three.

What a run does:

- training patches come from the training datasets with fresh jitter every epoch
  (``TrainingData``); validation patches are the deterministic paper crops of the held-out split
  (``ValidationSet``), cut once and kept in memory;
- the motion prior is the checkpoint's, ``cfg.prior``, or measured on the training data and saved
  there (``run_prior``);
- each step is one RAdam step under the cyclical learning rate (``Optimisation``);
- a non-finite loss or gradient stops the run with a message (``TrainingDiverged``); the last good
  checkpoint is never overwritten by a diverged state;
- ``time_budget_min`` stops the run cleanly (final validation and checkpoint included) before the
  budget is spent; it counts from the start of ``Trainer`` (data preparation included);
- rank 0 first claims ``out_dir`` (``claim_out_dir``): locked against a second writer for the whole
  run; a folder holding another run (checkpoint.pt, best.pt, a run folder) is refused unless
  ``overwrite`` — a new run's first validation would otherwise replace the old ``best.pt``;
- rank 0 logs (``RunLogger``: ``metrics.jsonl`` always, W&B when enabled), shows a tqdm bar, writes
  ``<out_dir>/checkpoint.pt`` (latest) and ``<out_dir>/best.pt`` (best validation J;
  ``CheckpointWriter``), per-epoch sample-mask grids, and at the end the loss curves (the paper's
  Figs 11–12).
"""
from __future__ import annotations

import math
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NoReturn

import torch
from torch import Tensor
from tqdm.auto import tqdm

from bmvtrack.config import save_config, to_dict
from bmvtrack.logging_wandb import RunLogger, run_name
from bmvtrack.models import count_parameters
from bmvtrack.pretrain_vae.checkpoints import CheckpointReader, CheckpointWriter, RunState, checkpoint_payload
from bmvtrack.pretrain_vae.config import COMMAND, PretrainConfig
from bmvtrack.pretrain_vae.curves import plot_loss_curves
from bmvtrack.pretrain_vae.data import TrainingData
from bmvtrack.pretrain_vae.distributed import init_distributed
from bmvtrack.pretrain_vae.folders import claim_out_dir, record_command
from bmvtrack.pretrain_vae.prior import run_prior
from bmvtrack.pretrain_vae.rng import seed_everything
from bmvtrack.pretrain_vae.step import STAT_KEYS, NonFinite, Optimisation
from bmvtrack.pretrain_vae.validation import ValidationSet
from bmvtrack.run_folder import RunFolder

StopReason = Literal["completed", "max_steps", "time_budget"]


class TrainingDiverged(RuntimeError):
    """A non-finite loss or gradient stopped the run; the message names the last good checkpoint."""


@dataclass
class PretrainResult:
    """What a run did: where its files are, how far it got, and its last metrics."""

    checkpoint: Path | None
    best: Path | None
    run_dir: Path | None
    step: int
    epoch: float
    stop_reason: StopReason
    wall_s: float
    train: dict[str, float]
    val: dict[str, float]
    best_val: float | None
    params: dict[str, int]
    wandb_id: str | None
    images_per_s: float


class _Timing:
    """How long steps, validation and saving take: whether the time budget allows another step."""

    def __init__(self, t0: float, budget_s: float, val_batches: int) -> None:
        self.t0, self.budget_s, self.val_batches = t0, budget_s, val_batches
        self.step_ema: float | None = None
        self.val_s: float | None = None
        self.save_s = 1.0
        self.images = 0
        self.train_s = 0.0

    def out_of_time(self, now: float) -> bool:
        """Whether two more steps, then the final validation and save, would overrun the budget."""
        if self.budget_s <= 0:
            return False
        est_val = self.val_s if self.val_s is not None else self.val_batches * (self.step_ema or 1.0) * 0.5
        return now - self.t0 + 2 * (self.step_ema or 0.0) + (est_val + self.save_s + 5.0) > self.budget_s

    def stepped(self, seconds: float, images: int) -> None:
        self.step_ema = seconds if self.step_ema is None else 0.9 * self.step_ema + 0.1 * seconds
        self.images += images
        self.train_s += seconds

    @property
    def images_per_s(self) -> float:
        return self.images / self.train_s if self.train_s > 0 else 0.0


class _Window:
    """The training scalars summed since they were last logged (they are logged as means)."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.n = 0
        self.t0 = time.perf_counter()

    def add(self, stats: dict[str, float]) -> None:
        for k in (*STAT_KEYS, "grad_norm"):
            self.sums[k] = self.sums.get(k, 0.0) + stats[k]
        self.n += 1

    def take(self) -> tuple[dict[str, float], int, float]:
        """The means, the steps and the seconds since the last take; starts a new window."""
        now = time.perf_counter()
        taken = ({k: v / self.n for k, v in self.sums.items()}, self.n, now - self.t0)
        self.sums, self.n, self.t0 = {}, 0, now
        return taken


def cycle_end_warning(cfg: PretrainConfig) -> str | None:
    """A warning when ``max_steps`` stops the cyclical learning rate far from its low point.

    Why: the triangular cycle is at ``lr_max`` half-way through every cycle; weights taken there
    are the noisiest of the run (measured on DAVIS fold 0: a motion posterior stopped at step 600 of
    400-step cycles tracked at 0.24 AUC, one of the same configuration stopped at step 420 at 0.43).
    A multiple of ``cycle_steps`` ends at ``lr_min``.
    """
    if not cfg.max_steps or cfg.lr_max <= cfg.lr_min or cfg.lr_schedule != "cyclic":
        return None
    phase = (cfg.max_steps % cfg.cycle_steps) / cfg.cycle_steps
    if min(phase, 1.0 - phase) <= 0.125:
        return None
    return (f"warning: max_steps {cfg.max_steps} stops {phase:.0%} into a learning-rate cycle of {cfg.cycle_steps} "
            f"steps, near lr_max: the final weights are the noisiest of the run; a multiple of cycle_steps ends "
            f"at lr_min")


class Trainer:
    """One pretraining run (new or resumed). ``fit()`` trains; ``train_step`` is one optimiser step.

    The parts: ``data`` (``TrainingData``), ``val_set`` (``ValidationSet``, rank 0), ``prior``,
    ``opt`` (``Optimisation``: net, optimiser, schedule), ``state`` (``RunState``: step, epoch,
    best validation J, run identity) and ``writer`` (``CheckpointWriter``).
    """

    def __init__(self, cfg: PretrainConfig, resume: str | Path | None = None, command: str | None = None,
                 progress: bool = True, overwrite: bool = False) -> None:
        self.t0 = time.perf_counter()
        self.cfg = cfg
        self.progress = progress
        self.overwrite = overwrite
        self.folder: RunFolder | None = None
        self.logger: RunLogger | None = None
        self.ctx, self.device = init_distributed(cfg.device)
        try:
            self._setup(Path(resume) if resume is not None else None, command)
        except BaseException:
            self.close()
            raise

    # ---------------------------------------------------------------- set-up

    def say(self, msg: str) -> None:
        if self.ctx.is_main:
            tqdm.write(msg)

    def _setup(self, resume_path: Path | None, command: str | None) -> None:
        cfg, ctx = self.cfg, self.ctx
        self.resume_path = resume_path
        reader = CheckpointReader(resume_path) if resume_path is not None else None
        if reader is not None:
            reader.check_model_config(cfg.model, self.say)
        # the output folder before anything is written (or minutes are spent preparing data):
        # locked against a second writer, and never holding another run that this one would replace
        if ctx.is_main:
            self._claim_out_dir(reader)
        self.data = TrainingData.open(cfg, ctx, self.device, self.progress)
        self.val_set = (ValidationSet.cut(cfg, self.data.sets[0], self.say)
                        if cfg.val_split is not None and ctx.is_main else None)
        self.prior, self.prior_note = run_prior(cfg, ctx, reader.ckpt if reader else None, self.data.sets, self.say)
        self.data.use_prior(self.prior)
        self._build_model(reader)
        # what callers (tests, benchmarks/bench_pretrain.py) read of a Trainer
        self.dataset, self.sampler, self.loader = self.data.dataset, self.data.sampler, self.data.loader
        self.net, self.optimizer, self.scheduler = self.opt.net, self.opt.optimizer, self.opt.scheduler
        self.writer = CheckpointWriter(cfg.out_dir, last_saved_step=self.state.step if reader else None)
        self.run_dir = Path(cfg.out_dir) / self.state.run_name
        if ctx.is_main:
            self._open_run_folder(command)

    def _claim_out_dir(self, reader: CheckpointReader | None) -> None:
        self.folder = claim_out_dir(self.cfg.out_dir, reader.ckpt if reader else None, self.resume_path,
                                    self.overwrite)
        if self.folder.removed:
            self.say(f"--overwrite: removed the previous run's {', '.join(p.name for p in self.folder.removed)} "
                     f"from {self.cfg.out_dir}")
        if self.folder.removed_tmp:
            self.say(f"removed {len(self.folder.removed_tmp)} temporary file(s) left by an interrupted write")

    def _build_model(self, reader: CheckpointReader | None) -> None:
        """The network, optimiser and schedule: seeded for a new run, restored for a resumed one."""
        cfg, ctx = self.cfg, self.ctx
        if reader is None:
            seed_everything(cfg.seed)
        self.opt = Optimisation(cfg, self.prior, self.device, ctx)
        self.state = RunState(run_name=run_name(COMMAND, cfg.tag),
                              run_id=uuid.uuid4().hex)  # os.urandom: no seeded RNG is touched
        if reader is not None:
            reader.restore(self.opt, self.state, self.data.steps_per_epoch, cfg.seed, ctx.rank)
        elif ctx.rank > 0:  # same initial weights (DDP also broadcasts rank 0's), own bottleneck noise
            seed_everything(hash((cfg.seed, ctx.rank)) % 2**31)
        self.opt.distribute()
        self.params = count_parameters(self.opt.net)

    def _open_run_folder(self, command: str | None) -> None:
        """The run folder (config, command, metrics) and its logger (rank 0)."""
        cfg = self.cfg
        self.run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, self.run_dir / "config.yaml")
        record_command(self.run_dir, command, self.state.step)
        config = to_dict(cfg)
        config["params"] = self.params
        config["world_size"] = self.ctx.world
        config["command"] = command
        self.logger = RunLogger(self.run_dir, self.state.run_name, COMMAND, config=config, wandb_cfg=cfg.wandb,
                                resume_id=self.state.wandb_id)
        self.state.wandb_id = self.logger.run_id
        self.say(self._describe())
        if warning := cycle_end_warning(cfg):
            self.say(warning)

    def _describe(self) -> str:
        cfg, p = self.cfg, self.params
        n_val = 0 if self.val_set is None else len(self.val_set)
        schedule = f"cycle {cfg.cycle_steps}" if cfg.lr_schedule == "cyclic" else f"cosine over {cfg.max_steps}"
        lines = [
            (f"{'resuming' if self.resume_path else 'new run'} {self.state.run_name} -> {self.run_dir}"
             + (f" (from {self.resume_path}, step {self.state.step})" if self.resume_path else "")),
            (f"model: {cfg.model.arch} {cfg.model.patch_size}px, bottleneck {cfg.model.bottleneck}, β={cfg.model.beta}, "
             f"{p['total'] / 1e6:.3f} M parameters (encoder {p['encoder'] / 1e6:.3f} M, decoder {p['decoder'] / 1e6:.3f} M)"),
            (f"data: {len(self.data.dataset)} training patches from {len(self.data.samplers)} dataset(s), "
             f"{n_val} validation patches; {self.data.steps_per_epoch} steps/epoch × batch {cfg.batch_size}"
             + (f" × {self.ctx.world} processes" if self.ctx.distributed else "")),
            f"prior: {self.prior_note}",
            (f"device {self.device}, torch threads {torch.get_num_threads()}, lr {cfg.lr_min:g}..{cfg.lr_max:g} "
             f"({schedule} steps), budget {cfg.time_budget_min:g} min"),
        ]
        return "\n".join(lines)

    # ---------------------------------------------------------------- where the run stands

    @property
    def step(self) -> int:
        return self.state.step

    @property
    def epoch(self) -> int:
        return self.state.epoch

    @property
    def epoch_step(self) -> int:
        return self.state.epoch_step

    def _epochs(self) -> float:
        """Epochs done, with the current one's fraction."""
        return self.state.epoch + self.state.epoch_step / self.data.steps_per_epoch

    def train_step(self, patches: Tensor, masks: Tensor, motion: Tensor | None = None,
                   stop_flag: float = 0.0) -> dict[str, float]:
        """One optimiser step (``Optimisation.train_step``) on a batch of the loader."""
        return self.opt.train_step(patches, masks, stop_flag, motion)

    # ---------------------------------------------------------------- checkpoints

    def payload(self) -> dict[str, Any]:
        """The checkpoint of the current state (``checkpoint_payload``)."""
        return checkpoint_payload(self.cfg, self.opt, self.prior, self.state, self.ctx.world, self.params)

    def save(self, best: bool = False) -> None:
        """Write ``checkpoint.pt`` (and ``best.pt``) atomically; rank 0 only; refuses non-finite weights."""
        if self.ctx.is_main:
            self.writer.write(self.payload(), best=best)

    def _save_checked(self, best: bool) -> float:
        """``save``, a diverged state stopping the run; returns the seconds it took."""
        t = time.perf_counter()
        try:
            self.save(best=best)
        except NonFinite as exc:
            self._diverged(str(exc))
        self._pending_best = False
        return time.perf_counter() - t

    # ---------------------------------------------------------------- the loop

    def fit(self) -> PretrainResult:
        """Train until the epochs, ``max_steps`` or the time budget run out; then close the run."""
        try:
            return self._fit()
        finally:
            self.close()

    def _fit(self) -> PretrainResult:
        cfg = self.cfg
        n_val_batches = 0 if self.val_set is None else math.ceil(len(self.val_set) / cfg.batch_size)
        timing = _Timing(self.t0, cfg.time_budget_min * 60.0, n_val_batches)
        total = cfg.epochs * self.data.steps_per_epoch
        if cfg.max_steps:
            total = min(total, cfg.max_steps)
        bar = tqdm(total=total, initial=min(self.state.step, total), desc="pretrain", unit="step", dynamic_ncols=True,
                   disable=not (self.progress and self.ctx.is_main), file=sys.stderr)
        window = _Window()
        self.last_train: dict[str, float] = {}
        self._validated_at = -1
        self._pending_best = False
        try:
            stop_reason = self._train(bar, timing, window)
            self._wrap_up(window)
        finally:
            bar.close()
        return self._result(stop_reason, timing)

    def _train(self, bar: tqdm, timing: _Timing, window: _Window) -> StopReason:
        """Epochs until a limit is reached; which one."""
        cfg, st = self.cfg, self.state
        while st.epoch < cfg.epochs:
            if cfg.max_steps and st.step >= cfg.max_steps:
                return "max_steps"
            stop = self._train_epoch(bar, timing, window)
            if stop is not None:
                return stop
            self._end_epoch(timing)
        return "completed"

    def _train_epoch(self, bar: tqdm, timing: _Timing, window: _Window) -> StopReason | None:
        """The rest of the current epoch; why the run stops within it, or None when it ran to its end."""
        cfg, ctx, st = self.cfg, self.ctx, self.state
        self.data.start_epoch(st.epoch, st.epoch_step)
        for batch in self.data.loader:
            patches, masks, motion = batch[0], batch[1], (batch[2] if len(batch) > 2 else None)
            ts = time.perf_counter()
            flag = 1.0 if ctx.is_main and timing.out_of_time(ts) else 0.0
            try:
                stats = self.opt.train_step(patches, masks, flag, motion)
            except NonFinite as exc:
                self._diverged(str(exc))
            st.step += 1
            st.epoch_step += 1
            timing.stepped(time.perf_counter() - ts, patches.shape[0] * ctx.world)
            window.add(stats)
            bar.update(1)
            if st.step % cfg.log_every == 0:
                row = self._log_train(window)
                bar.set_postfix(loss=f"{row['train/loss']:.3f}", J=f"{row['train/jaccard']:.3f}",
                                lr=f"{row['train/lr']:.2e}", ep=st.epoch)
            if stats["stop"] > 0:
                return "time_budget"
            if cfg.max_steps and st.step >= cfg.max_steps:
                return "max_steps"
            if cfg.checkpoint_every and st.step % cfg.checkpoint_every == 0:
                timing.save_s = self._save_checked(best=False)
        return None

    def _end_epoch(self, timing: _Timing) -> None:
        """An epoch ran to its end: validate, save (``best.pt`` too when J improved), wait for every rank."""
        st = self.state
        st.epoch += 1
        st.epoch_step = 0
        timing.val_s = self._validate_and_log(epoch_end=True)
        self._validated_at = st.step
        timing.save_s = self._save_checked(best=self._pending_best)
        self.ctx.barrier()

    def _wrap_up(self, window: _Window) -> None:
        """After the last step: log what is left, validate and save unless the epoch's end just did."""
        st = self.state
        if window.n:
            self._log_train(window)
        if st.epoch_step >= self.data.steps_per_epoch:  # stopped on the last batch of an epoch
            st.epoch, st.epoch_step = st.epoch + 1, 0
        if self._validated_at != st.step:
            self._validate_and_log(epoch_end=st.epoch_step == 0)
            self._save_checked(best=self._pending_best)
        self.ctx.barrier()

    def _validate_and_log(self, epoch_end: bool) -> float:
        """Validation, sample grid, best.pt bookkeeping; returns the seconds it took (rank 0)."""
        t = time.perf_counter()
        if not self.ctx.is_main or self.val_set is None:
            return 0.0
        st = self.state
        val = self.val_set.evaluate(self.net, self.prior, self.cfg, self.device)
        st.last_val = val
        improved = st.best_val is None or val["val/J"] > st.best_val
        if improved:
            st.best_val = val["val/J"]
        assert self.logger is not None
        self.logger.log({**val, "val/epoch": self._epochs()}, step=st.step)
        grid = self.val_set.sample_grid(self.net, self.device, self.cfg.sample_masks,
                                        self.run_dir / "samples" / f"step_{st.step:07d}.png")
        if grid is not None:
            self.logger.log_image("val/samples", grid, step=st.step,
                                  caption="rows: input, ground truth, prediction (white hit, red false positive, blue miss)")
        self.say(f"step {st.step} (epoch {self._epochs():.2f}"
                 f"{'' if epoch_end else ', partial'}): val loss {val['val/loss']:.4f}, J {val['val/J']:.4f}, "
                 f"KL {val['val/kl']:.4f}, Mahalanobis {val['val/mahalanobis']:.4g}"
                 + (" (best)" if improved else ""))
        self._pending_best = improved
        return time.perf_counter() - t

    def _log_train(self, window: _Window) -> dict[str, float]:
        """Log the window's means (with LR, epoch and speed); the row is also the run's last train metrics."""
        means, n, seconds = window.take()
        row = {f"train/{'loss' if k == 'total' else k}": v for k, v in means.items()}
        row["train/lr"] = self.opt.lr
        row["train/epoch"] = self._epochs()
        row["train/images_per_s"] = n * self.cfg.batch_size * self.ctx.world / max(seconds, 1e-9)
        if self.logger is not None:
            self.logger.log(row, step=self.state.step)
        self.last_train = row
        return row

    def _diverged(self, what: str) -> NoReturn:
        last = self.writer.last_saved_step
        where = (f"the last good checkpoint is {self.writer.path} (step {last})"
                 if last is not None else "no checkpoint was written by this run")
        msg = f"{what} at step {self.state.step + 1}: stopping the run; {where}"
        if self.logger is not None:
            self.logger.log({"train/diverged": 1.0}, step=self.state.step)
            self.logger.summary({"stop_reason": "diverged", "diverged_at_step": self.state.step + 1})
        raise TrainingDiverged(msg)

    def _result(self, stop_reason: StopReason, timing: _Timing) -> PretrainResult:
        """The loss curves and the run's summary (rank 0), and what the run did."""
        st, main = self.state, self.ctx.is_main
        wall = time.perf_counter() - self.t0
        ips = timing.images_per_s
        if main:
            assert self.logger is not None
            curves = plot_loss_curves(self.run_dir)
            if curves is not None:
                self.logger.log_image("curves/losses", curves, step=st.step,
                                      caption="total, construction and KL loss (train and val), as in the paper's Figs 11–12")
            summary = {"stop_reason": stop_reason, "wall_s": wall, "step": st.step, "images_per_s": ips,
                       "params": self.params["total"], "best_val_J": st.best_val, **self.last_train, **st.last_val}
            self.logger.summary(summary)
            self.say(f"stopped ({stop_reason}) at step {st.step}, epoch {self._epochs():.2f}, "
                     f"after {wall:.0f} s; checkpoint {self.writer.path}")
        return PretrainResult(
            checkpoint=self.writer.path if main else None,
            best=self.writer.best_path if main and st.best_val is not None else None,
            run_dir=self.run_dir if main else None,
            step=st.step, epoch=self._epochs(), stop_reason=stop_reason,
            wall_s=wall, train=self.last_train, val=dict(st.last_val), best_val=st.best_val, params=self.params,
            wandb_id=st.wandb_id, images_per_s=ips,
        )

    def close(self) -> None:
        """Finish the logger, release the output folder, leave the process group (idempotent)."""
        if self.logger is not None:
            self.logger.finish()
            self.logger = None
        if self.folder is not None:
            self.folder.release()
            self.folder = None
        self.ctx.leave()


def train(cfg: PretrainConfig, resume: str | Path | None = None, command: str | None = None,
          progress: bool = True, overwrite: bool = False) -> PretrainResult:
    """Run one pretraining (new, or resumed from the checkpoint ``resume``); see ``Trainer``.

    ``cfg.out_dir`` is claimed first (``claim_out_dir``): a folder holding another run is refused
    with ``RunFolderError`` unless ``overwrite`` (its checkpoints and run folders are removed).
    """
    return Trainer(cfg, resume=resume, command=command, progress=progress, overwrite=overwrite).fit()
