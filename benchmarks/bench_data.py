"""Data speed: frames/s of reading + decoding frames and masks, cold and cached, and generator throughput.

    python benchmarks/bench_data.py [--data PATH/davis2016 --resolution 240p]

Cold and cached passes run back to back in one process; the cached/cold ratio is the figure to
compare across machines.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bmvtrack.data.readers import TrackFilter, VideoDataset
from bmvtrack.data.synth import SynthConfig, generate_dataset
from bmvtrack.paths import DAVIS2016_DIR


def read_all(ds: VideoDataset) -> int:
    n = 0
    for t in ds.tracks():
        for i in range(len(t)):
            ds.frame(t, i)
            if t.present[i]:
                ds.mask(t, i)
            n += 1
    return n


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", default=str(DAVIS2016_DIR))
    p.add_argument("--resolution", default="240p")
    p.add_argument("--videos", type=int, default=4, help="synthetic videos for the generator timing")
    args = p.parse_args()
    ds = VideoDataset(args.data, resolution=args.resolution, filters=TrackFilter(absent="keep", max_box_fraction=1.0))
    ds.cache.max_bytes = 4 * 2**30
    t0 = time.perf_counter(); ds.tracks(); scan = time.perf_counter() - t0
    t0 = time.perf_counter(); n = read_all(ds); cold = n / (time.perf_counter() - t0)
    t0 = time.perf_counter(); read_all(ds); warm = n / (time.perf_counter() - t0)
    print(f"{args.data} ({args.resolution}): {n} frames; scan {scan:.2f}s")
    print(f"read + decode frame and mask: cold {cold:.0f} frames/s, cached {warm:.0f} frames/s "
          f"(cached/cold {warm / cold:.0f}x), cache {ds.cache.nbytes / 2**20:.0f} MiB")
    with tempfile.TemporaryDirectory() as tmp:
        cfg = SynthConfig()
        t0 = time.perf_counter()
        generate_dataset(Path(tmp) / "s", "davis2017", videos=args.videos, seed=0, cfg=cfg, progress=False)
        gen = args.videos * cfg.frames / (time.perf_counter() - t0)
    print(f"synthetic generator (davis2017 layout, {cfg.width}x{cfg.height}): {gen:.0f} frames/s written")


if __name__ == "__main__":
    main()
