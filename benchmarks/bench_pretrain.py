"""Pretraining speed: training images/s, data-pipeline overhead, inference patches/s, FLOP/s.

- full step / bare step (target ≤ 1.15): a full training step (next batch from the DataLoader over
  PatchSampler crops, normalisation, forward, loss, backward, clipping, RAdam, LR schedule) against a
  bare forward + loss + backward of a copy of the same model on random tensors of the same shape.
  The two are measured interleaved in one run, so machine noise (a shared 2-core box) hits both alike.
- inference patches/s: deterministic forward (eval, z = μ′) from uint8 patches, batch 32 and batch 1.
- achieved FLOP/s: FLOPs of one training forward + backward counted with
  ``torch.utils.flop_counter.FlopCounterMode``, over the measured bare-step time, divided by this
  machine's own float32 matmul FLOP/s measured in the same run (a 1024² GEMM, best of several).

    python benchmarks/bench_pretrain.py [--config configs/pretrain_default.yaml] [--set key=value ...]
                                        [--steps 20] [--threads N]
"""
from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from bmvtrack.models import count_parameters, loss_from_config
from bmvtrack.models.preprocess import patches_to_tensor
from bmvtrack.pretrain_vae import Trainer, load_pretrain_config


def matmul_flops(n: int = 1024, reps: int = 8) -> float:
    """Best-of-``reps`` float32 GEMM FLOP/s of this machine (2·n³ per product)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=None, help="PretrainConfig YAML (default: the built-in defaults)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--steps", type=int, default=20, help="interleaved (full, bare) step pairs to time")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    out = tempfile.mkdtemp(prefix="bench_pretrain_")
    cfg = load_pretrain_config(args.config, [*args.overrides, "wandb.enabled=false", "val_split=null",
                                             f"out_dir={out}", "sample_masks=0"])
    trainer = Trainer(cfg, progress=False)
    net, mcfg, dev = trainer.net, cfg.model, trainer.device
    b, s = cfg.batch_size, mcfg.patch_size
    print(f"model {mcfg.arch} {s}px, {count_parameters(net)['total'] / 1e6:.3f} M parameters, batch {b}, "
          f"device {dev}, torch threads {torch.get_num_threads()}, {len(trainer.dataset)} training patches")

    bare = copy.deepcopy(net).train()
    x_rand = torch.randn(b, 3, s, s, device=dev)
    y_rand = (torch.rand(b, s, s, device=dev) > 0.5).long()

    def bare_step() -> None:
        out_ = bare(x_rand)
        loss = loss_from_config(out_, y_rand, mcfg)["total"]
        bare.zero_grad(set_to_none=True)
        loss.backward()

    def batches():
        while True:
            trainer.dataset.epoch += 1
            trainer.sampler.set_epoch(trainer.dataset.epoch)
            yield from trainer.loader

    it = batches()
    for _ in range(args.warmup):
        trainer.train_step(*next(it))
        bare_step()
    full_t, bare_t, data_t = [], [], []
    for _ in range(args.steps):  # interleaved: full step, then bare step
        t0 = time.perf_counter()
        patches, masks = next(it)
        t1 = time.perf_counter()
        trainer.train_step(patches, masks)
        t2 = time.perf_counter()
        bare_step()
        t3 = time.perf_counter()
        full_t.append(t2 - t0)
        data_t.append(t1 - t0)
        bare_t.append(t3 - t2)
    full, bare_s, data = statistics.median(full_t), statistics.median(bare_t), statistics.median(data_t)
    ratio = statistics.median([f / g for f, g in zip(full_t, bare_t)])

    # inference: deterministic masks from uint8 patches
    net.eval()
    patches_u8 = next(it)[0].numpy()
    infer = {}
    with torch.no_grad():
        for bs in (b, 1):
            batch = patches_u8[:bs]
            net(patches_to_tensor(batch, dev), sample=False)
            times = []
            for _ in range(max(5, args.steps // 2) if bs == b else 30):
                t = time.perf_counter()
                net(patches_to_tensor(batch, dev), sample=False)
                times.append(time.perf_counter() - t)
            infer[bs] = bs / statistics.median(times)
    net.train()

    # FLOPs of one training forward + backward, and of one inference forward
    with FlopCounterMode(display=False) as fc:
        bare_step()
    train_flops = fc.get_total_flops()
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        bare.eval()
        bare(x_rand, sample=False)
    fwd_flops = fc.get_total_flops()
    peak = max(matmul_flops(), matmul_flops())
    achieved = train_flops / bare_s
    trainer.close()

    print(f"training: {b / full:.1f} images/s (full step {full * 1e3:.0f} ms median, of which data {data * 1e3:.1f} ms)")
    print(f"full step / bare forward+backward: {ratio:.3f}  (bare {bare_s * 1e3:.0f} ms; target <= 1.15)")
    print(f"inference: {infer[b]:.1f} patches/s at batch {b}, {infer[1]:.1f} patches/s at batch 1")
    print(f"FLOPs: {train_flops / b / 1e9:.3f} GFLOP per training image (fwd+bwd), {fwd_flops / b / 1e9:.3f} GFLOP per inference patch")
    print(f"achieved {achieved / 1e9:.2f} GFLOP/s in training vs machine matmul {peak / 1e9:.1f} GFLOP/s: "
          f"ratio {achieved / peak:.3f}")


if __name__ == "__main__":
    main()
