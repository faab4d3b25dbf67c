"""Reference probe: a textbook U-Net of about 2 M parameters, trained for a fixed number of CPU minutes.

Why: the βMVUnet is compared with a plain U-Net of the same size and training time (on the official
DAVIS 2016 val split such a network, trained for 10 minutes on two cores on the 30 train sequences,
scores J&F 59). Our β = 0 βMVUnet is not that network (ResNet stem, stride-4 first skip, pooled
bottleneck). This script trains the textbook one (double 3×3 convs at five resolutions,
full-resolution first stage, BCE + Dice) on the same patches, for a fixed wall time, and scores it
with the same evaluation code (``bmvtrack.evaluate_vae``), so that the two can be read side by side
on DAVIS dev/val.

    python scripts/unet_reference_probe.py --minutes 10 --threads 2 --out runs/unet_ref
    python scripts/unet_reference_probe.py --steps 1000 --threads 1 --train-split configs/folds/davis2016_3fold.yaml:0:train \
        --val-split configs/folds/davis2016_3fold.yaml:0:test --out runs/folds/unet-f0

``--net bmvunet`` trains the small βMVUnet (``configs/model_small.yaml``) in this same loop instead —
Adam, cosine decay, BCE + Dice, no KL term — so that the two differences, the network and the
training recipe, can be told apart. ``--set model.KEY=VALUE`` changes that βMVUnet's shape (e.g.
``--set model.stem=unet``), so that parts of the network can be tried in the same loop.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, RandomSampler

from bmvtrack.data.readers import DataConfig, TrackFilter, VideoDataset
from bmvtrack.data.patch_sampler import AugmentConfig, PatchSampler
from bmvtrack.models.preprocess import patches_to_tensor
from bmvtrack.pretrain_vae import PatchDataset
from bmvtrack.evaluate_vae import VaeEvalConfig, evaluate, write_report
from bmvtrack.config import load_config
from bmvtrack.models import ModelConfig, build_model, construction_loss
from bmvtrack.motion import PAPER_COV, PAPER_MEAN, PAPER_TABLE1_STD
from bmvtrack.paths import DAVIS2016_DIR


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )


class TextbookUNet(nn.Module):
    """Ronneberger-style U-Net, widths w·(1, 2, 4, 8, 16); output dict like the βMVUnet's."""

    def __init__(self, width: int = 16, patch_size: int = 96) -> None:
        super().__init__()
        ws = [width * 2**i for i in range(5)]
        self.downs = nn.ModuleList([_block(3, ws[0])] + [_block(ws[i - 1], ws[i]) for i in range(1, 5)])
        self.ups = nn.ModuleList([_block(ws[i + 1] + ws[i], ws[i]) for i in range(4)])
        self.outc = nn.Conv2d(ws[0], 2, 1)
        self.cfg = SimpleNamespace(patch_size=patch_size, arch="textbook-unet", bottleneck="none")

    def forward(self, x: Tensor, sample: bool | None = None, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        skips = []
        for i, down in enumerate(self.downs):
            x = down(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        for i in reversed(range(4)):
            x = F.interpolate(x, size=skips[i].shape[-2:], mode="bilinear", align_corners=False)
            x = self.ups[i](torch.cat([x, skips[i]], 1))
        return {"logits": self.outc(x)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DAVIS2016_DIR))
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--steps", type=int, default=0,
                    help="stop after this many steps instead of --minutes (the same budget as a βMVUnet run on a shared machine)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--net", choices=("unet", "bmvunet"), default="unet",
                    help="the textbook U-Net, or the small βMVUnet trained by this script's recipe")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="model.KEY=VALUE",
                    help="a ModelConfig field of the βMVUnet (--net bmvunet only), e.g. model.stem=unet")
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/unet_ref")
    ap.add_argument("--train-split", default="dev/train", help="e.g. configs/folds/davis2016_3fold.yaml:0:train")
    ap.add_argument("--val-split", default="dev/val", help="e.g. configs/folds/davis2016_3fold.yaml:0:test")
    args = ap.parse_args()
    bad = [o for o in args.overrides if not o.startswith("model.")]
    if bad or (args.overrides and args.net != "bmvunet"):
        ap.error(f"--set {(bad or args.overrides)[0]}: only model.KEY=VALUE, and only with --net bmvunet")
    model_cfg = load_config(ModelConfig, overrides=[o.removeprefix("model.") for o in args.overrides])
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    keep_all = TrackFilter(absent="keep", max_box_fraction=1.0)  # what evaluate_vae's command line uses
    train_ds, val_ds = (VideoDataset.from_config(DataConfig(root=args.data, layout="davis2016", resolution="240p",
                                                            split=split, filters=keep_all))
                        for split in (args.train_split, args.val_split))
    data = PatchDataset([PatchSampler(train_ds, 96, AugmentConfig())], seed=args.seed)
    model = (TextbookUNet(args.width) if args.net == "unet"
             else build_model(model_cfg, PAPER_MEAN, PAPER_COV, PAPER_TABLE1_STD))
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    budget = args.minutes * 60

    def progress(elapsed: float) -> float:
        """Fraction of the budget done: steps when --steps is given, else wall time."""
        return steps / args.steps if args.steps else elapsed / budget

    steps, t0, losses = 0, time.perf_counter(), []
    while progress(time.perf_counter() - t0) < 1.0:
        data.epoch += 1
        loader = DataLoader(data, batch_size=args.batch_size, sampler=RandomSampler(data), drop_last=True)
        for patch, mask in loader:
            elapsed = time.perf_counter() - t0
            if progress(elapsed) >= 1.0:
                break
            for g in opt.param_groups:  # cosine decay over the budget
                g["lr"] = args.lr * 0.5 * (1 + np.cos(np.pi * progress(elapsed)))
            model.train()
            logits = model(patches_to_tensor(patch.numpy()))["logits"]
            loss = construction_loss(logits, mask, class_weights="none", mask_loss="bce_dice")["cons"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
            steps += 1
            if steps % 50 == 0:
                print(f"step {steps}  {elapsed:.0f}s  loss {np.mean(losses[-50:]):.3f}", flush=True)
    model.eval()
    torch.save(model.state_dict(), out / f"{args.net}_ref.pt")
    result = {"params": n_params, "steps": steps, "images": steps * args.batch_size,
              "train_seconds": time.perf_counter() - t0, "final_loss": float(np.mean(losses[-50:]))}
    for crop in ("gt", "tracking"):
        rep = evaluate(model, val_ds, VaeEvalConfig(crop=crop), progress=print)
        write_report(rep, out / "eval")  # the same per-sequence files as evaluate_vae's
        result[f"JF_{crop}"] = 100 * rep.overall["JF"]
        result[f"J_{crop}"] = 100 * rep.overall["J"]
        result[f"box_JF_{crop}"] = 100 * rep.overall["box_JF"]
        result[f"per_track_JF_{crop}"] = {t.name: 100 * t.metrics["JF"] for t in rep.tracks}
    print(json.dumps(result, indent=1))
    (out / "result.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
