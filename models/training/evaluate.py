"""The evaluation benchmark: generate held-out synthetic clips per driving mode and score them.

Metrics (each also computed on the ground-truth clips, the ceiling it is reported against):

* PSNR / SSIM against ground truth (combined pose+audio mode, where the ground truth is determined).
* Mouth: openness measured from pixels in the mouth box, correlated with the ground-truth viseme
  track (jaw opening). The box is the reference's mouth box (from its lip keypoints) tracked on
  each row's own frames (the head moves on its own in audio mode), for the ground truth too, so the
  ceiling and the generated modes use one measure; the score in the ground truth's keypoint boxes is
  kept beside it.
* Sync: correlation of mouth openness with the audio envelope at the true alignment minus its median
  over shifted alignments (+-4..15 frames) -- SyncNet's offset confidence without SyncNet -- and the
  offset where the correlation peaks.
* The shifted-audio baseline, for mouth and sync alike: the same frames scored against the audio
  (and the viseme track) moved by each of ``BASELINE_SHIFTS`` (+-8..15 frames, wrapped around the
  clip), averaged: what a mouth that moves like speech but not with *this* speech scores. One
  random shift per clip was too noisy to compare against on a few short clips.
* Pose (pose-driven mode): error of MediaPipe body keypoints of the generated frames against the
  driving keypoints, in fractions of the frame diagonal.
* HKC / HKV (the paper's hand metrics): mean confidence of MediaPipe hand keypoints, and their
  variance over time (how much the hands move).
* Drift over a 30-second generation: colour shift (mean absolute difference of per-channel means,
  0-255) and appearance distance (1 - SSIM) between the first and last segments' frames and the
  reference.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from models import keypoints as kpl

# -- metrics on arrays ------------------------------------------------------------------------


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * math.log10(255.0**2 / mse)


def _gray(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    return x @ np.array([0.299, 0.587, 0.114]) if x.ndim == 3 else x


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of two RGB uint8 images (grayscale, Gaussian window sigma 1.5)."""
    import cv2

    x, y = _gray(a), _gray(b)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(z):
        return cv2.GaussianBlur(z, (11, 11), 1.5)

    mx, my = blur(x), blur(y)
    sxx = blur(x * x) - mx * mx
    syy = blur(y * y) - my * my
    sxy = blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return float(s.mean())


def video_psnr_ssim(gen: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    n = min(len(gen), len(gt))
    ps = [psnr(gen[i], gt[i]) for i in range(n)]
    ps = [p for p in ps if math.isfinite(p)] or [100.0]
    return float(np.mean(ps)), float(np.mean([ssim(gen[i], gt[i]) for i in range(n)]))


_LIPS = [kpl.INDEX[n] for n in ("face_lip_corner_left", "face_lip_corner_right", "face_lip_upper_outer",
                                  "face_lip_lower_outer", "face_lip_upper_inner", "face_lip_lower_inner")]


_FACE_PARTS = [i for n, i in kpl.INDEX.items() if n.startswith(("face_lip_", "face_left_eye", "face_right_eye"))]


def mouth_boxes(keypoints: np.ndarray, height: int, width: int) -> np.ndarray:
    """Per-frame mouth box (x0, y0, x1, y1) in pixels from lip keypoints; zeros where absent.

    The box is the lips' horizontal extent and is as tall as it is wide, centred on the mouth, so a
    wide-open jaw stays inside it.
    """
    boxes = np.zeros((len(keypoints), 4), np.int64)
    for i, kp in enumerate(keypoints):
        pts = kp[_LIPS]
        if (pts[:, 2] < 0.3).any():
            continue
        xs, ys = pts[:, 0] * width, pts[:, 1] * height
        cx, cy = xs.mean(), ys.mean()
        half = max(2.0, 0.75 * (xs.max() - xs.min()))
        boxes[i] = (max(0, int(cx - half)), max(0, int(cy - half)), min(width, int(cx + half) + 1),
                    min(height, int(cy + half) + 1))
    return boxes


def match_region(frames: np.ndarray, reference: np.ndarray, box, search: int) -> tuple[np.ndarray, np.ndarray]:
    """Find the reference's ``box`` (x0, y0, x1, y1) in each frame within ``search`` pixels of where
    it is in the reference: normalised cross-correlation of the blurred luminance. Returns the
    offsets ``(T, 2)`` (dx, dy) and the match scores ``(T,)`` (1: the region as in the reference;
    NaN where the box or the frame gives nothing to match)."""
    import cv2

    def prep(img):
        return cv2.GaussianBlur(_gray(img).astype(np.float32), (3, 3), 0)

    h, w = reference.shape[:2]
    x0, y0, x1, y1 = max(0, int(box[0])), max(0, int(box[1])), min(w, int(box[2])), min(h, int(box[3]))
    offsets = np.zeros((len(frames), 2), np.int64)
    scores = np.full(len(frames), np.nan)
    tmpl = prep(reference)[y0:y1, x0:x1]
    if tmpl.size == 0 or tmpl.std() < 1e-6:
        return offsets, scores
    sx0, sy0, sx1, sy1 = max(0, x0 - search), max(0, y0 - search), min(w, x1 + search), min(h, y1 + search)
    for i, f in enumerate(frames):
        region = prep(f)[sy0:sy1, sx0:sx1]
        if region.std() < 1e-6:
            scores[i] = 0.0  # a flat frame: nothing of the reference is left
            continue
        res = cv2.matchTemplate(region, tmpl, cv2.TM_CCOEFF_NORMED)
        _, score, _, (mx, my) = cv2.minMaxLoc(res)
        scores[i] = score if np.isfinite(score) else 0.0
        offsets[i] = (sx0 + mx - x0, sy0 + my - y0)
    return offsets, scores


def track_boxes(frames: np.ndarray, reference: np.ndarray, box, min_match: float = 0.3) -> np.ndarray:
    """The mouth box placed on ``reference`` (by its keypoints), followed over generated ``frames``.

    In audio mode the model moves the head on its own, so boxes placed by the ground truth's lip
    keypoints can miss a mouth that does move. This tracks the lower face instead: a template from
    the reference (the mouth box widened by its width on each side, from the nose to below the chin)
    is found (``match_region``) within one box size of where it sits in the reference, and the box
    moves with it. Where the best match is below ``min_match`` (the face is gone) the box is empty,
    so those frames score NaN. Returns ``(T, 4)`` boxes.
    """
    out = np.zeros((len(frames), 4), np.int64)
    x0, y0, x1, y1 = (int(v) for v in box)
    bw, bh = x1 - x0, y1 - y0
    if bw <= 0 or bh <= 0:
        return out
    h, w = reference.shape[:2]
    offsets, scores = match_region(frames, reference, (x0 - bw, y0 - bh, x1 + bw, y1 + bh // 2), max(bw, bh))
    for i, ((dx, dy), sc) in enumerate(zip(offsets, scores, strict=True)):
        if np.isfinite(sc) and sc >= min_match:
            out[i] = (max(0, x0 + dx), max(0, y0 + dy), min(w, x1 + dx), min(h, y1 + dy))
    return out


def face_box(keypoints: np.ndarray, height: int, width: int, pad: float = 0.25) -> tuple[int, int, int, int] | None:
    """The box around the eyes and the lips of one frame's keypoints (padded by ``pad`` of its size);
    None when they are not all seen."""
    pts = keypoints[_FACE_PARTS]
    if (pts[:, 2] < 0.3).any():
        return None
    xs, ys = pts[:, 0] * width, pts[:, 1] * height
    px, py = pad * max(2.0, xs.max() - xs.min()), pad * max(2.0, ys.max() - ys.min())
    return (int(xs.min() - px), int(ys.min() - py), int(xs.max() + px) + 1, int(ys.max() + py) + 1)


def mouth_openness(frames: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Share of dark pixels in each frame's mouth box (dark: below half the box's 90th percentile
    luminance). An open toon mouth shows its dark interior; NaN where there is no box."""
    out = np.full(len(frames), np.nan)
    for i, (f, (x0, y0, x1, y1)) in enumerate(zip(frames, boxes, strict=False)):
        if x1 <= x0 or y1 <= y0:
            continue
        lum = _gray(f[y0:y1, x0:x1])
        out[i] = float((lum < 0.5 * np.percentile(lum, 90)).mean())
    return out


def audio_envelope(audio: np.ndarray, num_frames: int, fps: float, sample_rate: int) -> np.ndarray:
    """Log RMS per video frame."""
    spf = sample_rate / fps
    env = np.zeros(num_frames)
    for i in range(num_frames):
        seg = audio[int(i * spf) : int((i + 1) * spf)]
        env[i] = math.log(float(np.sqrt(np.mean(seg.astype(np.float64) ** 2))) + 1e-4) if len(seg) else math.log(1e-4)
    return env


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 4:
        return float("nan")
    a, b = a[ok], b[ok]
    if a.std() < 1e-9 or b.std() < 1e-9:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def shifted_corr(x: np.ndarray, y: np.ndarray, offset: int) -> float:
    """corr(x[t], y[t + offset]); NaN when the offset leaves no overlap (a clip shorter than it)."""
    if abs(offset) >= min(len(x), len(y)):
        return float("nan")
    if offset >= 0:
        return _corr(x[: len(x) - offset], y[offset:])
    return _corr(x[-offset:], y[: len(y) + offset])


def sync_score(openness: np.ndarray, envelope: np.ndarray, max_offset: int = 15) -> tuple[float, int]:
    """(confidence, best offset): correlation at the true alignment minus the median correlation over
    offsets 4..max_offset frames either way, and the offset in [-max_offset, max_offset] where the
    correlation peaks."""
    offs = list(range(-max_offset, max_offset + 1))
    corrs = np.array([shifted_corr(openness, envelope, o) for o in offs])
    far = np.array([c for o, c in zip(offs, corrs, strict=True) if abs(o) >= 4 and np.isfinite(c)])
    c0 = corrs[max_offset]
    if not np.isfinite(c0) or far.size == 0:
        return float("nan"), 0
    best = offs[int(np.nanargmax(corrs))]
    return float(c0 - np.median(far)), int(best)


def keypoint_error(pred: np.ndarray, target: np.ndarray, min_conf: float = 0.5) -> float:
    """Mean distance of body points present in both, in fractions of the unit frame's diagonal."""
    body = slice(0, kpl.NUM_BODY)
    p, t = pred[:, body], target[:, body]
    ok = (p[..., 2] >= min_conf) & (t[..., 2] >= min_conf)
    if not ok.any():
        return float("nan")
    d = np.hypot(p[..., 0] - t[..., 0], p[..., 1] - t[..., 1])
    return float(d[ok].mean() / math.sqrt(2))


def hand_metrics(kp: np.ndarray) -> tuple[float, float]:
    """(HKC, HKV): mean hand keypoint confidence over all frames and hand points, and the variance
    over time of the detected hand keypoint positions (averaged over points)."""
    hands = kp[:, kpl.LEFT_HAND_START : kpl.FACE_START]
    hkc = float(hands[..., 2].mean())
    var = []
    for j in range(hands.shape[1]):
        ok = hands[:, j, 2] > 0.5
        if ok.sum() >= 2:
            var.append(float(hands[ok, j, :2].var(axis=0).sum()))
    return hkc, float(np.mean(var)) if var else 0.0


def drift(first: np.ndarray, last: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Colour shift and appearance distance of the last segment against the first and the reference."""
    def mean_colour(x):
        return x.reshape(-1, 3).astype(np.float64).mean(0)

    return {
        "colour_shift": float(np.abs(mean_colour(last) - mean_colour(first)).mean()),
        "appearance_first": 1.0 - ssim(first[0], last[-1]),
        "appearance_reference": 1.0 - ssim(reference, last[-1]),
    }


# -- the benchmark ------------------------------------------------------------------------------


def _nanmean(v: list[float]) -> float:
    """Mean of the finite values (None and NaN skipped); NaN when there are none."""
    v = [x for x in v if x is not None and np.isfinite(x)]
    return float(np.mean(v)) if v else float("nan")


@dataclass
class ModeScores:
    psnr: list[float] = field(default_factory=list)
    ssim: list[float] = field(default_factory=list)
    mouth_corr: list[float] = field(default_factory=list)
    sync: list[float] = field(default_factory=list)
    sync_shifted: list[float] = field(default_factory=list)
    mouth_corr_shifted: list[float] = field(default_factory=list)
    # the mouth scored in the ground truth's keypoint boxes (the measure before boxes were tracked)
    mouth_corr_kp_boxes: list[float] = field(default_factory=list)
    mouth_tracked: list[float] = field(default_factory=list)  # share of frames the face was tracked in
    offset: list[int] = field(default_factory=list)
    kp_error: list[float] = field(default_factory=list)
    hkc: list[float] = field(default_factory=list)
    hkv: list[float] = field(default_factory=list)
    skipped: int = 0  # clips the engine could not animate in this mode (said in the log)

    def summary(self) -> dict[str, float]:
        out = {k: _nanmean(getattr(self, k)) for k in self.__dataclass_fields__ if k != "skipped"}
        out["skipped"] = self.skipped
        return out


def mediapipe_video_keypoints(frames: np.ndarray) -> np.ndarray:
    """MediaPipe keypoints ``(T, K, 3)`` of a video, tracked with a fresh extractor."""
    from models.conditions.pose import PoseExtractor

    with PoseExtractor(static_image_mode=False) as ex:
        return np.stack([ex(f) for f in frames])


BASELINE_SHIFTS = tuple(k for a in range(8, 16) for k in (a, -a))  # frames


def score_clip(frames: np.ndarray, clip, scores: ModeScores, extract=None, with_gt: bool = True,
               track: bool = False) -> None:
    """Add one generated (or ground-truth) clip's metrics to ``scores``, with the shifted-audio
    baseline (the frames against the audio and viseme track moved by ``BASELINE_SHIFTS``).

    ``track``: place the mouth boxes on ``frames`` themselves (``track_boxes`` from the reference's
    mouth), not by the ground truth's lip keypoints -- for generated frames, whose head moves on its
    own. The keypoint-box score is kept beside it (``mouth_corr_kp_boxes``)."""
    n = min(len(frames), clip.num_frames)
    frames = frames[:n]
    h, w = frames.shape[1:3]
    if with_gt:
        p, s = video_psnr_ssim(frames, clip.frames[:n])
        scores.psnr.append(p)
        scores.ssim.append(s)
    kp_boxes = mouth_boxes(clip.keypoints[:n], h, w)
    if track:
        boxes = track_boxes(frames, clip.frames[0], kp_boxes[0])
        scores.mouth_tracked.append(float((boxes[:, 2] > boxes[:, 0]).mean()))
        if clip.mouth is not None:
            scores.mouth_corr_kp_boxes.append(_corr(mouth_openness(frames, kp_boxes), clip.mouth[:n, 0]))
    else:
        boxes = kp_boxes
    opened = mouth_openness(frames, boxes)
    if clip.mouth is not None:
        scores.mouth_corr.append(_corr(opened, clip.mouth[:n, 0]))
    env = audio_envelope(clip.audio, n, clip.fps, clip.sample_rate)
    conf, off = sync_score(opened, env)
    scores.sync.append(conf)
    scores.offset.append(off)
    spf = clip.sample_rate / clip.fps
    scores.sync_shifted.append(_nanmean([
        sync_score(opened, audio_envelope(np.roll(clip.audio, int(round(k * spf))), n, clip.fps, clip.sample_rate))[0]
        for k in BASELINE_SHIFTS]))
    if clip.mouth is not None:
        scores.mouth_corr_shifted.append(_nanmean([_corr(opened, np.roll(clip.mouth[:, 0], k)[:n])
                                                   for k in BASELINE_SHIFTS]))
    if extract is not None:
        kp = extract(frames)
        scores.kp_error.append(keypoint_error(kp, clip.keypoints[:n]))
        hkc, hkv = hand_metrics(kp)
        scores.hkc.append(hkc)
        scores.hkv.append(hkv)


def run_benchmark(model, data_dir: str, clips: int = 6, steps: int | None = None, seconds: float = 4.0,
                  drift_seconds: float = 30.0, use_mediapipe: bool = True, seed: int = 0,
                  log: Callable[[str], None] = print, cfg_audio: float | None = None,
                  anneal_strength: float | None = None,
                  modes: tuple[str, ...] = ("audio", "pose", "combined")) -> dict:
    """Evaluate ``model`` on held-out clips of ``data_dir``; returns {mode: summary} + drift.

    ``model``: an engine (``models.engines``), an engine key (``"model"`` needs a model, so in practice
    ``"instant"``), or an ``OmniHuman`` (wrapped in the diffusion engine): the same inputs and the same
    metrics for both engines, side by side against the ground-truth ceiling.
    ``cfg_audio`` / ``anneal_strength``: the audio guidance to sample with (None: the model's).
    ``modes``: the driving modes to generate (the ground truth and the VAE round trip are always scored).
    """
    from models.data.format import ClipStore
    from models.engines import Callbacks, EngineJob, GenerationInputs, GenerationSettings, as_engine
    from models.errors import UserError

    engine = as_engine(model)
    diffusion = getattr(engine, "model", None) is not None  # a VAE to round-trip through

    def gen(inputs, settings, callbacks=None, keep_frames=True):
        job = EngineJob(inputs.image, inputs.audio, inputs.pose, inputs.text, settings)
        engine.prepare(job)
        return engine.generate(job, callbacks, keep_frames=keep_frames)

    store = ClipStore(data_dir)
    extractor = None
    if use_mediapipe:
        try:
            import mediapipe  # noqa: F401

            extractor = mediapipe_video_keypoints
        except ImportError as e:  # the pose and hand metrics are skipped, and the log says so
            log(f"pose and hand metrics skipped: {e}")
    unknown = set(modes) - {"audio", "pose", "combined"}
    if unknown:
        raise ValueError(f"unknown modes {sorted(unknown)}")
    gen_modes = tuple(modes)
    modes = ("ground_truth",) + (("vae_round_trip",) if diffusion else ()) + gen_modes
    results: dict[str, ModeScores] = {m: ModeScores() for m in modes}
    n_clips = min(clips, len(store))
    for ci in range(n_clips):
        clip = store.clip(ci)
        n = min(clip.num_frames, int(seconds * clip.fps))
        clip_frames = clip.frames[:n]
        ref = clip.frames[0]
        audio = clip.audio[: int(n / clip.fps * clip.sample_rate)]
        # every row scores the mouth in boxes tracked on its own frames: one measure for the ceiling
        # and the generated modes alike
        score_clip(clip_frames, clip, results["ground_truth"], extractor, track=True)
        if "vae_round_trip" in results:  # the ceiling the VAE leaves the transformer
            score_clip(vae_round_trip(engine.model, clip_frames), clip, results["vae_round_trip"], track=True)
        for mode in gen_modes:
            try:
                res = gen(GenerationInputs(ref, audio if mode != "pose" else None,
                                           clip.keypoints[:n] if mode != "audio" else None, clip.caption),
                          GenerationSettings(steps=steps, seed=seed + ci, mode=mode, max_frames=n,
                                             area=ref.shape[0] * ref.shape[1], cfg_audio=cfg_audio,
                                             anneal_strength=anneal_strength))
            except UserError as e:  # e.g. the instant engine finds no face on this character
                log(f"eval: clip {ci + 1} {mode}: skipped ({e})")
                results[mode].skipped += 1
                continue
            frames = _fit(res.frames, ref.shape[:2])
            score_clip(frames, clip, results[mode], extractor if mode != "audio" else None,
                       with_gt=(mode == "combined"), track=True)
        log(f"eval: clip {ci + 1}/{n_clips}")
    table = {m: s.summary() for m, s in results.items()}
    if drift_seconds > 0 and n_clips:
        clip = store.clip(0)
        ref = clip.frames[0]
        reps = int(math.ceil(drift_seconds * clip.sample_rate / len(clip.audio)))
        long_audio = np.tile(clip.audio, reps)[: int(drift_seconds * clip.sample_rate)]
        segs: list[np.ndarray] = []

        try:
            res = gen(GenerationInputs(ref, long_audio, None, clip.caption),
                      GenerationSettings(steps=steps, seed=seed, area=ref.shape[0] * ref.shape[1],
                                         cfg_audio=cfg_audio, anneal_strength=anneal_strength),
                      Callbacks(on_segment=lambda i, f, s: segs.append(f)), keep_frames=False)
        except UserError as e:
            log(f"eval: drift skipped ({e})")
            segs = []
        if segs:
            first, last = _fit(segs[0], ref.shape[:2]), _fit(segs[-1], ref.shape[:2])
            table["drift"] = drift(first, last, ref)
            table["drift"]["seconds"] = res.num_frames / res.fps
        gt = clip.frames
        table["drift_ground_truth"] = drift(gt[: len(gt) // 4], gt[-len(gt) // 4 :], ref)
    return table


def detail(frame: np.ndarray) -> float:
    """Fine detail of an image: the variance of its Laplacian on the grey levels."""
    import cv2

    return float(cv2.Laplacian(_gray(frame).astype(np.float64), cv2.CV_64F).var())


def identity_take(model, clip, seconds: float = 10.0, steps: int | None = None, seed: int = 0,
                  cfg_audio: float | None = None, caption: bool = False) -> dict:
    """How well a long audio-driven take keeps the reference: per second of the take, the mean SSIM of
    its frames to the reference and their detail (variance of the Laplacian) as a share of the
    reference's, and how well the reference's face (eyes and mouth, placed by the clip's first
    keypoints) is found again in them (``face_match``: normalised cross-correlation, 1 = as in the
    reference; ``face_match_min`` its worst frame); beside them what the VAE round trip of the
    reference alone scores (the ceiling).
    The clip's audio is repeated to ``seconds``; without ``caption`` no text is given (the app's
    default), so the identity must come from the reference. ``model``: as for ``run_benchmark``."""
    from models.engines import EngineJob, GenerationSettings, as_engine

    engine = as_engine(model)
    ref = clip.frames[0]
    n = int(round(seconds * clip.sample_rate))
    audio = np.tile(clip.audio, int(math.ceil(n / len(clip.audio))))[:n]
    settings = GenerationSettings(steps=steps, seed=seed, mode="audio", area=ref.shape[0] * ref.shape[1],
                                  cfg_audio=cfg_audio)
    job = EngineJob(ref, audio, None, clip.caption if caption else "", settings)
    engine.prepare(job)
    res = engine.generate(job, keep_frames=True)
    frames = _fit(res.frames, ref.shape[:2])
    ref_detail = max(detail(ref), 1e-6)
    fps = res.fps
    per_second = []
    for s0 in range(0, len(frames), int(round(fps))):
        chunk = frames[s0 : s0 + int(round(fps))]
        per_second.append({"ssim": float(np.mean([ssim(f, ref) for f in chunk])),
                           "detail": float(np.mean([detail(f) for f in chunk]) / ref_detail)})
    box = face_box(clip.keypoints[0], *ref.shape[:2])
    if box is not None:  # eyes and mouth: the reference's face region found again, frame by frame
        _, match = match_region(frames, ref, box, max(4, (box[2] - box[0]) // 2))
        step = int(round(fps))
        for k, entry in enumerate(per_second):
            entry["face_match"] = float(np.nanmean(match[k * step : (k + 1) * step]))
        out_min = float(np.nanmin(match)) if np.isfinite(match).any() else float("nan")
    else:
        match, out_min = np.full(len(frames), np.nan), float("nan")
    out = {"seconds": len(frames) / fps, "per_second": per_second, "frames": frames, "face_match_min": out_min,
           "face_match_frames": match}
    if getattr(engine, "model", None) is not None:
        rt = vae_round_trip(engine.model, ref[None])[0]
        out["vae_ssim"], out["vae_detail"] = ssim(rt, ref), detail(rt) / ref_detail
    return out


def vae_round_trip(model, frames: np.ndarray) -> np.ndarray:
    """``frames`` (T, H, W, 3) uint8 encoded and decoded by the model's VAE, one generation segment
    (``sampling.segment_frames``) at a time like the pipeline; at the model's 16-pixel-multiple size,
    then back to the frames' size. A trailing part shorter than 1 + 4k frames is cut to it."""
    import torch

    from models.pipeline import prepare_reference, to_uint8

    seg = model.config.sampling.segment_frames
    h, w = frames.shape[1:3]
    h16, w16 = max(16, h // 16 * 16), max(16, w // 16 * 16)
    vae = model.vae
    param = next(vae.parameters())
    out = []
    for s in range(0, len(frames), seg):
        chunk = frames[s : s + seg]
        chunk = chunk[: 1 + (len(chunk) - 1) // 4 * 4]
        x = torch.cat([prepare_reference(f, h16, w16) for f in chunk], dim=2).to(param.device, param.dtype)
        with torch.no_grad():
            out.append(to_uint8(vae.decode(vae.encode(x))))
    return _fit(np.concatenate(out), (h, w))


def _fit(frames: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Resize generated frames to the clip's size when the model's 16-multiple rounding differs."""
    import cv2

    if frames.shape[1:3] == tuple(hw):
        return frames
    return np.stack([cv2.resize(f, (hw[1], hw[0]), interpolation=cv2.INTER_AREA) for f in frames])


def format_table(table: dict) -> str:
    rows = ["| mode | PSNR | SSIM | mouth corr | mouth corr, shifted | mouth corr, keypoint boxes | face tracked "
            "| sync (true - shifted) | sync, shifted audio | peak offset | kp error | HKC | HKV |", "| --- " * 13 + "|"]

    def f(v, p=3):
        return "-" if v is None or not np.isfinite(v) else f"{v:.{p}f}"

    for mode in ("ground_truth", "vae_round_trip", "audio", "pose", "combined"):
        if mode not in table:
            continue
        s = table[mode]
        rows.append(f"| {mode} | {f(s['psnr'], 2)} | {f(s['ssim'])} | {f(s['mouth_corr'])} | "
                    f"{f(s['mouth_corr_shifted'])} | {f(s.get('mouth_corr_kp_boxes'))} | "
                    f"{f(s.get('mouth_tracked'), 2)} | "
                    f"{f(s['sync'])} | {f(s['sync_shifted'])} | {f(s['offset'], 1)} | "
                    f"{f(s['kp_error'])} | {f(s['hkc'])} | {f(s['hkv'], 5)} |"
                    + (f" ({s['skipped']} clips skipped)" if s.get("skipped") else ""))
    for key in ("drift", "drift_ground_truth"):
        if key in table:
            d = table[key]
            rows.append("")
            rows.append(f"{key}: colour shift {d['colour_shift']:.2f}/255, appearance distance to first "
                        f"{d['appearance_first']:.3f}, to reference {d['appearance_reference']:.3f}"
                        + (f" over {d['seconds']:.0f} s" if "seconds" in d else ""))
    return "\n".join(rows)
