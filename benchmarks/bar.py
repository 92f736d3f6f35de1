"""The bar a bundled model must pass (issue 18), measured in one go on a model folder.

    python benchmarks/bar.py --model MODEL_DIR --held-out HELD_OUT [--clips 8] [--seconds 3] \\
        [--steps N] [--seed S [S ...]] [--take-seconds 30] [--human AUDIO --image IMG] [--out RESULT_DIR]

On the held-out clips (new characters, new voices), audio mode:

* mouth: the mouth-openness correlation with the true mouth track (boxes tracked on the frames) at
  least half the ground truth's and at least twice the shifted-audio baseline; the sync peak offset
  within +-1 frame of the ground truth's (the mouth leads the sound's envelope, so the ground truth's
  own peak sits a few frames early: the offset is judged against it);
* identity over a long audio-driven take of the first clip (``--take-seconds``, 30 by default, no
  caption): the reference's face found in every frame of the first 10 s (``face_match``, normalised
  cross-correlation of the eyes-and-mouth region, at least 0.5 in the worst frame), SSIM and detail
  against the reference in the 10th second within 15% of the VAE round trip's;
* colour drift over the take: the first segment's mean colour against the last's, at most 3/255;
* generation speed: seconds per second of video at the model's default steps, at most 20.

``--human AUDIO --image IMG``: recorded human speech (not espeak-ng) on a picture: the take is
written (``human.mp4``), a strip of its frames (``human.png``: 2 s, every other frame, the mouth
region enlarged below) and the sync of the tracked mouth with the speech envelope, for the eye to
judge. Everything goes to ``RESULT_DIR/bar.json``; the verdicts are printed.

``--seed 0 100 200``: every measurement is made once per seed and the verdicts judge the means of the
numbers (one seed's mouth moved by about 0.05 and its offset by frames on the bundled model); bar.json
keeps each seed's own under ``per_seed``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

FACE_MATCH_MIN = 0.5


def _verdicts(table: dict, take: dict) -> list[tuple[str, bool, str]]:
    a, gt = table["audio"], table["ground_truth"]
    ps = take["per_second"]
    at10 = ps[min(9, len(ps) - 1)]
    out = [
        ("mouth >= half the ground truth", a["mouth_corr"] >= 0.5 * gt["mouth_corr"],
         f"{a['mouth_corr']:.3f} vs ground truth {gt['mouth_corr']:.3f}"),
        ("mouth >= twice the shifted baseline", a["mouth_corr"] > 0 and a["mouth_corr"] >= 2 * a["mouth_corr_shifted"],
         f"{a['mouth_corr']:.3f} vs shifted {a['mouth_corr_shifted']:.3f}"),
        ("sync peak offset within +-1 frame of the ground truth's", abs(a["offset"] - gt["offset"]) <= 1,
         f"{a['offset']:.1f} frames vs ground truth {gt['offset']:.1f} (means over clips)"),
        ("face in every frame of 10 s", take["face_match_min_10s"] >= FACE_MATCH_MIN,
         f"worst face match {take['face_match_min_10s']:.3f} (>= {FACE_MATCH_MIN})"),
        ("SSIM at 10 s within 15% of the VAE's", at10["ssim"] >= 0.85 * take["vae_ssim"],
         f"{at10['ssim']:.3f} vs VAE {take['vae_ssim']:.3f}"),
        ("detail at 10 s within 15% of the VAE's", at10["detail"] >= 0.85 * take["vae_detail"],
         f"{at10['detail']:.3f} vs VAE {take['vae_detail']:.3f}"),
        ("colour drift over the take <= 3/255", take["colour_shift"] <= 3.0,
         f"{take['colour_shift']:.2f}/255 over {take['seconds']:.0f} s"),
        ("generation <= 20 s per s of video", take["gen_s_per_s"] <= 20.0, f"{take['gen_s_per_s']:.1f} s/s"),
    ]
    return out


def mean_tree(items: list):
    """The mean of several results of the same shape: numbers averaged (NaNs skipped), dicts and lists
    of equal length averaged item by item; anything else (text, lists of frame indices) from the first."""
    first = items[0]
    if len(items) == 1:
        return first
    if isinstance(first, dict):
        return {k: mean_tree([it[k] for it in items]) if all(k in it for it in items) else first[k] for k in first}
    if isinstance(first, list) and all(isinstance(it, list) and len(it) == len(first) for it in items) \
            and not all(isinstance(v, int) for v in first):
        return [mean_tree([it[i] for it in items]) for i in range(len(first))]
    if isinstance(first, float | int) and not isinstance(first, bool) and all(
            isinstance(it, float | int) for it in items):
        vals = np.array(items, dtype=float)
        return float(np.nanmean(vals)) if np.isfinite(vals).any() else float("nan")
    return first


def long_take(model, clip, seconds: float, steps: int | None, seed: int = 0) -> dict:
    from models.training.evaluate import drift, identity_take

    t0 = time.perf_counter()
    take = identity_take(model, clip, seconds=seconds, steps=steps, seed=seed)
    take["gen_s_per_s"] = (time.perf_counter() - t0) / take["seconds"]
    frames = take.pop("frames")
    seg = model.config.sampling.segment_frames
    take["colour_shift"] = drift(frames[:seg], frames[-seg:], clip.frames[0])["colour_shift"]
    first10 = take.pop("face_match_frames")[: int(10 * clip.fps)]
    take["face_match_min_10s"] = float(np.nanmin(first10)) if np.isfinite(first10).any() else float("nan")
    take["face_match_worst_frames"] = [int(i) for i in np.argsort(np.nan_to_num(first10, nan=np.inf))[:5]]
    take["_frames"] = frames
    return take


def human_take(model, audio_path: str, image_path: str, out_dir: Path, steps: int | None, seconds: float,
               seed: int = 0) -> dict:
    import cv2

    from models.engines import GenerationInputs, GenerationSettings
    from models.media import read_audio, read_image, write_video
    from models.pipeline import generate
    from models.training.evaluate import (
        _fit,
        audio_envelope,
        mediapipe_video_keypoints,
        mouth_boxes,
        mouth_openness,
        sync_score,
        track_boxes,
    )

    sr = model.config.cond.sample_rate
    audio = read_audio(audio_path, sample_rate=sr, normalize=True)[: int(seconds * sr)]
    ref = read_image(image_path)
    res = generate(model, GenerationInputs(ref, audio, None, ""),
                   GenerationSettings(steps=steps, seed=seed, mode="audio"))
    frames = res.frames
    small_ref = _fit(ref[None], frames.shape[1:3])[0]
    kp = mediapipe_video_keypoints(ref[None])  # at the picture's own size (normalised: fits the frames)
    box = mouth_boxes(kp, *frames.shape[1:3])[0]
    out: dict = {"audio": audio_path, "image": image_path, "seconds": res.num_frames / res.fps}
    write_video(out_dir / "human.mp4", frames, res.fps, audio=audio, sample_rate=sr)
    if box[2] > box[0]:
        boxes = track_boxes(frames, small_ref, box)
        opened = mouth_openness(frames, boxes)
        env = audio_envelope(audio, len(frames), res.fps, sr)
        conf, off = sync_score(opened, env)
        std = float(np.nanstd(opened)) if np.isfinite(opened).sum() > 1 else float("nan")
        out.update(sync=conf, offset=off, openness_std=std,
                   tracked=float((boxes[:, 2] > boxes[:, 0]).mean()))
        x0, y0, x1, y1 = box
        bw = x1 - x0
        crops = []
        picks = list(range(0, min(len(frames), int(2 * res.fps)), 2))
        for i, f in enumerate(frames):
            if i in picks:
                b = boxes[i] if boxes[i][2] > boxes[i][0] else box
                c = f[max(0, b[1] - bw // 2) : b[3] + bw // 2, max(0, b[0] - bw // 2) : b[2] + bw // 2]
                crops.append(cv2.resize(c, (frames.shape[2] // 2, frames.shape[2] // 2),
                                        interpolation=cv2.INTER_NEAREST))
        top = np.concatenate([frames[i] for i in picks], axis=1)
        bottom = np.concatenate(crops, axis=1)
        pad = np.zeros((bottom.shape[0], top.shape[1] - bottom.shape[1], 3), np.uint8) \
            if top.shape[1] > bottom.shape[1] else None
        bottom = np.concatenate([bottom, pad], axis=1) if pad is not None else bottom[:, : top.shape[1]]
        strip = np.concatenate([top, bottom], axis=0)
        cv2.imwrite(str(out_dir / "human.png"), cv2.cvtColor(strip, cv2.COLOR_RGB2BGR))
    else:
        # No lips for MediaPipe (a drawn face): no sync, but the frames are still there to judge.
        out["note"] = "MediaPipe found no lips on the picture; no sync measured (human.png: every 5th frame)"
        picks = list(range(0, len(frames), 5))[:20]
        rows = [np.concatenate([frames[i] for i in picks[k : k + 10]], axis=1) for k in range(0, len(picks), 10)]
        if len(rows) == 2 and rows[1].shape[1] < rows[0].shape[1]:
            rows[1] = np.concatenate([rows[1], np.zeros((rows[1].shape[0], rows[0].shape[1] - rows[1].shape[1], 3),
                                                        np.uint8)], axis=1)
        cv2.imwrite(str(out_dir / "human.png"), cv2.cvtColor(np.concatenate(rows, axis=0), cv2.COLOR_RGB2BGR))
    return out


def main(argv: list[str] | None = None) -> int:
    from models.checkpoint import load_model
    from models.data.format import ClipStore
    from models.training.evaluate import run_benchmark

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--held-out", required=True)
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--seed", type=int, nargs="+", default=[0],
                    help="the first seed (clip i uses seed + i); several: each is run and the verdicts take "
                         "the mean of their numbers (one seed moves the mouth by ~0.05, the offset by frames)")
    ap.add_argument("--take-seconds", type=float, default=30.0)
    ap.add_argument("--human", default=None, help="recorded human speech (wav, flac, ...)")
    ap.add_argument("--image", default=None, help="the picture for --human")
    ap.add_argument("--human-seconds", type=float, default=6.0)
    ap.add_argument("--out", default=None, help="result folder (default: the model folder)")
    ap.add_argument("--cfg-audio", type=float, default=None, help="override the model's audio guidance scale")
    ap.add_argument("--anneal-strength", type=float, default=None, help="override the guidance annealing (0-1)")
    ap.add_argument("--motion-noise", type=float, default=None, help="override the motion-frame noise (0-1)")
    ap.add_argument("--audio-focus", type=float, default=None, help="override the audio guidance's focus (0-1)")
    ap.add_argument("--motion-anchor", type=float, default=None, help="override the motion frames' anchor (0-1)")
    ap.add_argument("--still-lead", action="store_true", help="lead the first segment with the still reference")
    args = ap.parse_args(argv)
    out_dir = Path(args.out or args.model)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = load_model(args.model).eval()
    overrides = {k: v for k, v in (("cfg_audio", args.cfg_audio), ("anneal_strength", args.anneal_strength),
                                   ("motion_noise", args.motion_noise), ("audio_focus", args.audio_focus),
                                   ("motion_anchor", args.motion_anchor),
                                   ("still_lead", True if args.still_lead else None))
                 if v is not None}
    if overrides:  # the sampling settings under test, in place of the model folder's defaults
        model.config = dataclasses.replace(model.config,
                                           sampling=dataclasses.replace(model.config.sampling, **overrides))
    store = ClipStore(args.held_out)
    tables, takes, frames = [], [], None
    for seed in args.seed:
        t0 = time.perf_counter()
        tables.append(run_benchmark(model, args.held_out, clips=args.clips, steps=args.steps, seconds=args.seconds,
                                    drift_seconds=0, seed=seed, use_mediapipe=False, modes=("audio",),
                                    log=lambda s: None))
        print(f"held-out clips: {min(args.clips, len(store))} x {args.seconds:g} s, seed {seed}, in "
              f"{time.perf_counter() - t0:.0f} s")
        takes.append(long_take(model, store.clip(0), args.take_seconds, args.steps, seed))
        f = takes[-1].pop("_frames")
        if frames is None:  # the strip shows the first seed's take
            frames = f
    table, take = mean_tree(tables), mean_tree(takes)
    import cv2

    picks = frames[:: int(round(store.clip(0).fps))][: int(math.ceil(args.take_seconds))]
    rows = [np.concatenate(list(picks[i : i + 10]), axis=1) for i in range(0, len(picks) - len(picks) % 10 or 1, 10)]
    rows = [r for r in rows if r.shape == rows[0].shape]
    cv2.imwrite(str(out_dir / "take.png"), cv2.cvtColor(np.concatenate(rows, axis=0), cv2.COLOR_RGB2BGR))
    result = {"table": table, "take": take, "sampling": dataclasses.asdict(model.config.sampling), "seed": args.seed}
    if len(args.seed) > 1:  # the means above, and each seed's own numbers
        result["per_seed"] = [{"seed": s, "table": tb, "take": tk} for s, tb, tk in zip(args.seed, tables, takes,
                                                                                        strict=True)]
    if args.human:
        if not args.image:
            ap.error("--human needs --image")
        result["human"] = human_take(model, args.human, args.image, out_dir, args.steps, args.human_seconds,
                                     args.seed[0])
    verdicts = _verdicts(table, take)
    result["verdicts"] = [{"bar": b, "pass": bool(p), "value": v} for b, p, v in verdicts]
    (out_dir / "bar.json").write_text(json.dumps(result, indent=2, default=float))
    for b, p, v in verdicts:
        print(f"{'PASS' if p else 'FAIL'}  {b}: {v}")
    if "human" in result:
        h = result["human"]
        print(f"human speech ({h['seconds']:.1f} s): sync {h.get('sync', float('nan')):.3f}, peak offset "
              f"{h.get('offset', '-')}, mouth openness std {h.get('openness_std', float('nan')):.3f} "
              f"(frames: {out_dir / 'human.png'})")
    print("per second of the take (SSIM / detail / face match): " + ", ".join(
        f"{p['ssim']:.2f}/{p['detail']:.2f}/{p.get('face_match', float('nan')):.2f}" for p in take["per_second"]))
    return 0 if all(p for _, p, _ in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
