"""Does a trained transformer use the audio? And how much of the mouth does its VAE keep?

    python benchmarks/audio_use.py --run RUN_DIR --data TRAIN_DIR [--batches 4]
    python benchmarks/audio_use.py --model MODEL_DIR --held-out HELD_OUT_DIR [--frames 72]
    python benchmarks/audio_use.py --model MODEL_DIR --held-out HELD_OUT --renoise [--t0 0.2 1.0] [--cfg-audio S]

``--run``: on the run's latent cache (the windows its transformer stages trained on), with the run's
EMA weights and every condition kept, the velocity error on the lip cells at t = 0.3 / 0.5 / 0.7 /
0.9 with the window's own audio, another window's audio (rolled within the batch) and no audio, from
the same noise. A model that draws the mouth from the audio has a clearly lower error with its own
audio; the gap is the signal the flow loss gives the audio path.

``--model``: per held-out clip, the mouth-openness correlation with the true mouth track of the
ground truth, of the VAE round trip one generation segment at a time (what the transformer can
reach) and of the round trip one frame at a time (what a single latent frame keeps).

``--model --renoise``: where the generator loses the mouth. Each held-out segment's true latents are
noised to t0 (0.2 ... 1.0, the same noise for every t0) and denoised by the model with the pipeline's
guided Euler sampler (the reference frame, the caption and the clip's own audio, or another clip's);
the mouth-openness correlation of the result with the true track. At small t0 the noisy latents still
hold the true mouth; at t0 = 1 the result is a generation. A model that draws the mouth from the
audio keeps the correlation up with its own audio and loses it with another clip's.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

T_VALUES = (0.3, 0.5, 0.7, 0.9)


def audio_gap(run: str, data: list[str], batches: int) -> dict[float, dict[str, float]]:
    """Per t: the lip-cell velocity error with the window's own audio, another window's and none."""
    from models.conditions.text import tokenize
    from models.config import latent_frames
    from models.dit import Conditions
    from models.flow import flow_loss, interpolate
    from models.training.recipe import load_recipe
    from models.training.trainer import Trainer

    recipe = load_recipe(str(Path(run) / "recipe.json"))
    trainer = Trainer(recipe, data, run, resume=True, device="cpu")
    trainer.ema.copy_to(trainer.model.transformer)
    dit = trainer.model.transformer.eval()
    si = next((i for i, s in enumerate(recipe.stages) if s.kind == "dit" and s.cache_windows), None)
    if si is None:
        raise SystemExit(f"{run}: the recipe has no transformer stage with a latent cache")
    stage = recipe.stages[si]
    seg = stage.segment_frames or trainer.config.sampling.segment_frames
    windows = iter(trainer._cached_windows(si, stage, seg))
    gen = torch.Generator().manual_seed(0)
    errors = {t: {"own": [], "other": [], "none": []} for t in T_VALUES}
    for _ in range(batches):
        b = next(windows)
        x0, ref, mel, cells = b["x0"].float(), b["ref"].float(), b["mel"].float(), b["mouth"].float()
        still = None
        if trainer.model.uses_still:
            with torch.no_grad():
                still = trainer.model.still_latents(ref, seg)
        x0 = dit.to_flow(x0, still if still is not None else ref)  # the flow's own space (ref_residual)
        n = len(x0)
        tokens, mask = tokenize(list(b["caption"]), dit.cfg.text_max_len)
        for t0 in T_VALUES:
            noise = torch.randn(x0.shape, generator=gen)
            t = torch.full((n,), t0)
            xt = interpolate(x0, noise, t)
            for name, audio, keep in (("own", mel, True), ("other", mel.roll(1, 0), True), ("none", mel, False)):
                cond = Conditions(reference=ref, text_tokens=tokens, text_mask=mask, audio=audio, still=still,
                                  text_keep=torch.ones(n, dtype=torch.bool), audio_keep=torch.full((n,), keep))
                with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=trainer.amp):
                    pred = dit(xt, t, dit.prepare(cond, latent_frames(seg)))
                # Lip cells only (a tiny weight elsewhere keeps windows without a visible mouth finite).
                errors[t0][name].append(flow_loss(pred, x0, noise, weight_map=cells * 1e3 + 1e-6))
    print(f"{run}: lip-cell velocity error, {batches} batches of {stage.batch_size} cached windows")
    out = {}
    for t0, d in errors.items():
        v = out[t0] = {k: torch.cat(x).mean().item() for k, x in d.items()}
        print(f"t={t0}: own audio {v['own']:.4f}  other audio {v['other']:.4f}  no audio {v['none']:.4f}  "
              f"other - own {v['other'] - v['own']:+.4f} ({100 * (v['other'] - v['own']) / v['other']:.2f}%)")
    return out


def vae_mouth(model_dir: str, held_out: str, frames: int) -> None:
    from models.checkpoint import load_model
    from models.data.format import ClipStore
    from models.training.evaluate import _corr, mouth_boxes, mouth_openness, vae_round_trip

    model = load_model(model_dir).eval()
    store = ClipStore(held_out)
    rows = []
    for i in range(len(store)):
        clip = store.clip(i)
        if clip.mouth is None:
            continue
        n = min(clip.num_frames, frames)
        video = clip.frames[:n]
        boxes = mouth_boxes(clip.keypoints[:n], *video.shape[1:3])
        track = clip.mouth[:n, 0]
        seg = vae_round_trip(model, video)
        single = np.concatenate([vae_round_trip(model, video[k : k + 1]) for k in range(n)])
        row = (_corr(mouth_openness(video, boxes), track),
               _corr(mouth_openness(seg, boxes[: len(seg)]), track[: len(seg)]),
               _corr(mouth_openness(single, boxes), track))
        rows.append(row)
        print(f"clip {i}: ground truth {row[0]:.2f}  round trip by segment {row[1]:.2f}  by frame {row[2]:.2f}",
              flush=True)
    m = np.nanmean(np.array(rows), 0)
    print(f"mean over {len(rows)} clips: ground truth {m[0]:.3f}  by segment {m[1]:.3f}  by frame {m[2]:.3f}")


RENOISE_T = (0.2, 0.4, 0.6, 0.8, 1.0)


def renoise_mouth(model_dir: str, held_out: str, frames: int, steps: int, t_values=RENOISE_T,
                  cfg_audio: float | None = None, anneal_strength: float | None = None) -> None:
    from models.checkpoint import load_model
    from models.conditions.audio import MelFeatures
    from models.conditions.text import tokenize
    from models.config import latent_frames
    from models.data.format import ClipStore
    from models.dit import Conditions
    from models.flow import Guidance, euler_sample, interpolate, shift_for_tokens
    from models.pipeline import branch_model, prepare_reference, to_uint8
    from models.training.evaluate import _corr, _fit, mouth_boxes, mouth_openness

    model = load_model(model_dir).eval()
    cfg = model.config
    sc = cfg.sampling
    seg = sc.segment_frames
    guidance = Guidance(text=sc.cfg_text, audio=sc.cfg_audio if cfg_audio is None else cfg_audio, anneal=sc.anneal,
                        strength=sc.anneal_strength if anneal_strength is None else anneal_strength)
    store = ClipStore(held_out)
    clips = [store.clip(i) for i in range(len(store))]
    clips = [c for c in clips if c.mouth is not None]
    mel = MelFeatures(cfg.cond)
    n = min(frames, *(c.num_frames for c in clips)) // seg * seg
    feats = [mel(c.audio, c.num_frames)[:n] for c in clips]
    rows = {(t0, who): [] for t0 in t_values for who in ("own", "other")}
    for ci, clip in enumerate(clips):
        h, w = clip.frames.shape[1:3]
        h16, w16 = max(16, h // 16 * 16), max(16, w // 16 * 16)
        ref_px = prepare_reference(clip.frames[0], h16, w16)
        ref = model.vae.encode(ref_px)
        still = model.still_latents(ref_px, seg) if model.uses_still else None
        base = still if still is not None else ref
        tokens, mask = tokenize([clip.caption], cfg.dit.text_max_len)
        boxes = mouth_boxes(clip.keypoints[:n], h, w)
        track = clip.mouth[:n, 0]
        gen = torch.Generator().manual_seed(ci)
        out = {k: [] for k in rows}
        for s in range(0, n, seg):
            x = torch.cat([prepare_reference(f, h16, w16) for f in clip.frames[s : s + seg]], dim=2)
            with torch.no_grad():
                x0 = model.vae.encode(x)
            noise = torch.randn(x0.shape, generator=gen)
            n_lat = latent_frames(seg)
            shift = sc.shift or shift_for_tokens((n_lat + 1) * (x0.shape[-2] // 2) * (x0.shape[-1] // 2))
            for who, f in (("own", feats[ci]), ("other", feats[(ci + 1) % len(clips)])):
                cond = Conditions(reference=ref, text_tokens=tokens, text_mask=mask, audio=f[s : s + seg][None],
                                  still=still)
                null = Conditions(reference=ref, still=still)
                with torch.no_grad():
                    runner = branch_model(model, model.transformer.prepare(cond, n_lat),
                                          model.transformer.prepare(null, n_lat))
                    for t0 in t_values:
                        k = max(1, round(steps * t0))
                        xt = interpolate(model.transformer.to_flow(x0, base), noise, torch.tensor([t0]))
                        lat = euler_sample(_from_t0(runner, t0), xt, k, shift, guidance, has_text=True,
                                           has_audio=True)
                        out[(t0, who)].append(to_uint8(model.vae.decode(model.transformer.from_flow(lat, base))))
        for key, parts in out.items():
            video = _fit(np.concatenate(parts), (h, w))
            rows[key].append(_corr(mouth_openness(video, boxes), track))
        print(f"clip {ci}: " + "  ".join(f"t0={t0} own {rows[(t0, 'own')][-1]:.2f} other {rows[(t0, 'other')][-1]:.2f}"
                                         for t0 in t_values), flush=True)
    print(f"mean over {len(clips)} clips, {n} frames each ({steps} steps from t0 = 1; audio guidance "
          f"{guidance.audio}, anneal strength {guidance.strength}):")
    for t0 in t_values:
        own, other = np.nanmean(rows[(t0, "own")]), np.nanmean(rows[(t0, "other")])
        print(f"t0={t0}: own audio {own:.3f}  other audio {other:.3f}")


def _from_t0(runner, t0: float):
    """The sampler integrates t = 1 -> 0; map its times onto t0 -> 0 (the model sees the true times)."""
    def run(x, t, branches):
        return runner(x, t * t0, branches) * t0
    return run


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", help="a training run folder (its checkpoint and latent cache)")
    p.add_argument("--data", nargs="+", help="the run's training data folders (they key its latent cache)")
    p.add_argument("--batches", type=int, default=4)
    p.add_argument("--model", help="a model folder, for the VAE's mouth")
    p.add_argument("--held-out", help="held-out clips for --model")
    p.add_argument("--frames", type=int, default=72)
    p.add_argument("--renoise", action="store_true", help="with --model: where the generator loses the mouth")
    p.add_argument("--steps", type=int, default=10, help="--renoise: sampling steps from t0 = 1")
    p.add_argument("--t0", type=float, nargs="+", default=list(RENOISE_T), help="--renoise: noise levels")
    p.add_argument("--cfg-audio", type=float, help="--renoise: audio guidance scale (default: the model's)")
    p.add_argument("--anneal-strength", type=float, help="--renoise: guidance annealing (default: the model's)")
    a = p.parse_args()
    if a.run:
        if not a.data:
            p.error("--run needs --data (the run's training data)")
        audio_gap(a.run, a.data, a.batches)
    if a.model:
        if not a.held_out:
            p.error("--model needs --held-out")
        if a.renoise:
            renoise_mouth(a.model, a.held_out, a.frames, a.steps, tuple(a.t0), a.cfg_audio, a.anneal_strength)
        else:
            vae_mouth(a.model, a.held_out, a.frames)
    if not (a.run or a.model):
        p.error("pass --run RUN_DIR --data DIR, or --model DIR --held-out DIR")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
