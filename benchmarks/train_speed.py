"""Training throughput: samples per second and model FLOPs utilisation (MFU) of a transformer step.

    python benchmarks/train_speed.py --preset toon-s                 # this CPU
    python benchmarks/train_speed.py --preset toon-s --preset base --device cuda   # a GPU, bf16
    python benchmarks/train_speed.py --preset toon-s --cached --precision bf16      # the CPU recipe's step

A step is the trainer's real transformer step (VAE encode of the window, conditions, forward,
backward, optimiser) on a synthetic batch of the preset's segment length; with ``--cached``, the
step on a latent-cache window (what the CPU recipe trains: no VAE encoding, heatmaps precomputed).
MFU counts the model's matmul FLOPs of forward + backward (torch's FLOP counter, 3x the forward) against the device's
peak (bf16 dense: 989 TFLOP/s for an H100 SXM, overridable with --peak-tflops).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from models.config import get_preset  # noqa: E402
from models.keypoints import NUM_KEYPOINTS  # noqa: E402
from models.training.recipe import parse_recipe  # noqa: E402
from models.training.trainer import MOTION_FRAMES, Trainer  # noqa: E402

PEAKS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}


def synthetic_batch(preset: str, batch: int, frames: int) -> dict:
    cfg = get_preset(preset)
    h, w = cfg.resolution_for(1.0 if cfg.area < 480 * 480 else 16 / 9)
    g = torch.Generator().manual_seed(0)
    kp = torch.rand(batch, frames, NUM_KEYPOINTS, 3, generator=g)
    kp[..., 2] = 1.0
    return {
        "video": torch.rand(batch, 3, frames, h, w, generator=g) * 2 - 1,
        "reference": torch.rand(batch, 3, h, w, generator=g) * 2 - 1,
        "audio": torch.randn(batch, int(frames * 640), generator=g) * 0.1,
        "keypoints": kp,
        "caption": ["a toon character talks and waves"] * batch,
        "audio_ok": torch.ones(batch, dtype=torch.bool),
        "pose_ok": torch.ones(batch, dtype=torch.bool),
    }


def step_flops(trainer: Trainer, stage, batch: dict) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    tr = trainer.model.transformer
    orig = trainer._dit_forward
    box = {}

    def counted(xt, t, cond, frames):
        with FlopCounterMode(display=False) as fc:
            out = tr(xt, t, tr.prepare(cond, frames))
        box["f"] = fc.get_total_flops()
        return out

    trainer._dit_forward = counted
    trainer.dit_step(stage, batch)
    trainer._dit_forward = orig
    trainer.optimizer.zero_grad(set_to_none=True)
    return 3.0 * box["f"]  # forward + backward (2x forward)


def bench(preset: str, device: str, batch: int, steps: int, peak: float | None, cached: bool = False,
          precision: str = "auto", frames: int | None = None, crop: int = 0) -> None:
    recipe = parse_recipe({
        "preset": preset, "seed": 0, "num_workers": 0, "precision": precision,
        "stages": [{"name": "bench", "kind": "dit", "steps": steps + 2, "lr": 1e-4, "batch_size": batch,
                    "keep": {"text": 1.0, "reference": 1.0, "audio": 1.0, "pose": 1.0}, "motion_prob": 1.0,
                    "crop": crop, "face_crops": 1.0 if crop else 0.0}],
    }, "benchmark")
    trainer = Trainer(recipe, [], f"/tmp/omnihuman-bench-{preset}", device=device, log=lambda s: None)
    stage = recipe.stages[0]
    trainer._ensure_optimizer(0, stage)
    trainer._wrap(stage)
    seg = frames or trainer.config.sampling.segment_frames
    if frames:
        import dataclasses

        stage = dataclasses.replace(stage, segment_frames=seg)
    frames = seg + MOTION_FRAMES
    data = synthetic_batch(preset, batch, frames)
    if cached:
        data = {**trainer.encode_cache_batch(data, seg), "caption": data["caption"],
                "audio_ok": data["audio_ok"], "pose_ok": data["pose_ok"]}
    flops = step_flops(trainer, stage, data)
    sync = torch.cuda.synchronize if trainer.device.type == "cuda" else (lambda: None)
    for _ in range(2):  # warm-up
        trainer.optimizer.zero_grad(set_to_none=True)
        trainer.dit_step(stage, data)
        trainer.optimizer.step()
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        trainer.optimizer.zero_grad(set_to_none=True)
        trainer.dit_step(stage, data)
        trainer.optimizer.step()
    sync()
    dt = (time.perf_counter() - t0) / steps
    kind = f"{'cached' if cached else 'streamed'} {'bf16' if trainer.amp else 'fp32'}"
    if crop:
        kind += f" {crop}px crops"
    line = (f"{preset:7s} {trainer.device.type:4s} {kind} batch {batch:3d} x {frames} frames: {dt:7.3f} s/step, "
            f"{batch / dt:8.2f} samples/s, {flops / dt / 1e12:8.3f} TFLOP/s model")
    if trainer.device.type == "cuda":
        name = torch.cuda.get_device_name(0)
        pk = peak or next((v for k, v in PEAKS.items() if k in name), None)
        if pk:
            line += f", MFU {100 * flops / dt / (pk * 1e12):.1f}% of {pk:g} TFLOP/s ({name})"
    print(line, flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", action="append")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--peak-tflops", type=float)
    p.add_argument("--cached", action="store_true", help="time the step on a latent-cache window")
    p.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto")
    p.add_argument("--frames", type=int, help="segment frames (default: the preset's)")
    p.add_argument("--crop", type=int, default=0, help="train on latent crops of this many pixels, on the lips")
    a = p.parse_args()
    for preset in a.preset or ["toon-s"]:
        batch = a.batch or (2 if a.device == "cpu" else {"toon-s": 32, "base": 2, "large": 1}.get(preset, 4))
        bench(preset, a.device, batch, a.steps, a.peak_tflops, a.cached, a.precision, a.frames, a.crop)


if __name__ == "__main__":
    main()
