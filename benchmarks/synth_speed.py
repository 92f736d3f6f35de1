"""Synthetic-data throughput at a preset's resolution, on one core.

Prints rendered clips (and frames) per second per core for ``synth`` (speech synthesis, visemes,
motion, rendering, JPEG encoding), the split between those stages, and how many training windows
per second one DataLoader worker decodes from the written dataset.

    python benchmarks/synth_speed.py [--size toon-s] [--clips 40]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from models.config import get_preset  # noqa: E402
from models.data import synth as sy  # noqa: E402
from models.data.dataset import WindowDataset  # noqa: E402
from models.data.format import DatasetWriter, encode_clip  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="toon-s")
    ap.add_argument("--clips", type=int, default=40)
    ap.add_argument("--seed", type=int, default=123)
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = sy.SynthConfig(area=get_preset(args.size).area, seed=args.seed)
    # Stage timing: wrap the expensive calls of synth_clip.
    stages = {"speech": 0.0, "render": 0.0}
    orig_utt, orig_render = sy._utterance, sy.render_frames

    def timed_utt(*a, **k):
        t = time.perf_counter()
        try:
            return orig_utt(*a, **k)
        finally:
            stages["speech"] += time.perf_counter() - t

    def timed_render(*a, **k):
        t = time.perf_counter()
        try:
            return orig_render(*a, **k)
        finally:
            stages["render"] += time.perf_counter() - t

    sy._utterance, sy.render_frames = timed_utt, timed_render
    frames = 0
    encode = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        with DatasetWriter(os.path.join(tmp, "ds"), cfg.fps) as w:
            for i in range(args.clips):
                clip = sy.synth_clip(cfg, i)
                te = time.perf_counter()
                w.add(encode_clip(clip))
                encode += time.perf_counter() - te
                frames += clip.num_frames
        total = time.perf_counter() - t0
        size = sum(os.path.getsize(os.path.join(tmp, "ds", f)) for f in os.listdir(os.path.join(tmp, "ds")))
        print(f"preset {args.size} (area {cfg.area} px), {args.clips} clips, {frames} frames "
              f"({frames / cfg.fps:.0f} s of video), one core")
        print(f"synth: {args.clips / total:.2f} clips/s/core, {frames / total:.0f} frames/s/core")
        other = total - stages["speech"] - stages["render"] - encode
        print(f"  speech {stages['speech'] / total:.0%}, render {stages['render'] / total:.0%}, "
              f"jpeg+write {encode / total:.0%}, motion/visemes/rest {other / total:.0%}")
        print(f"  disk: {size / frames / 1024:.1f} KiB per frame (frames, audio, keypoints, mouth)")
        ds = WindowDataset(os.path.join(tmp, "ds"), num_frames=25, batch_size=1, seed=0, infinite=False)
        t1 = time.perf_counter()
        n = 0
        for _ in ds:
            n += 1
        dt = time.perf_counter() - t1
        print(f"dataset: {n / dt:.0f} windows of 25 frames/s per worker ({25 * n / dt:.0f} frames/s) "
              "with reference frame, float conversion")
    sy._utterance, sy.render_frames = orig_utt, orig_render


if __name__ == "__main__":
    main()
