"""Train the audio-to-mouth regressor on the speech bank's exact phoneme timings.

Targets come from ``models.data.visemes.mouth_track`` (phonemes -> visemes -> coarticulated mouth
parameters). The synthesiser's voices are clean and dry; real recordings are not, so each
utterance is seen through random "microphones": speed change (voice pitch and formants shift with
the timings rescaled), a random smooth equaliser, room reverberation, background noise at 5-40 dB
SNR, silence padding and loudness changes. The audio then goes through the same loudness
normalisation the engine applies, and the model's own ``MelFeatures``.

``python main.py train-mouth --out DIR [--bank BANK]`` is the one command that retrains; the result
is a folder with ``mouth.safetensors``, ``config.json`` and ``MODEL_CARD.md``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.signal import fftconvolve

from models.data.visemes import MOUTH_PARAMS, mouth_gap, mouth_track
from models.instant.mouth import MouthRegressor, default_config, save_mouth_model
from models.media import SAMPLE_RATE, normalize_loudness

SR = SAMPLE_RATE  # the speech bank's rate


@dataclass(frozen=True)
class TrainSettings:
    steps: int = 1500
    batch: int = 16
    crop_frames: int = 100  # 4 s windows
    lr: float = 2e-3
    augment_copies: int = 3  # augmented renderings of each training utterance (plus the clean one)
    val_fraction: float = 0.1
    seed: int = 0


# ----------------------------------------------------------------------------------------------
# Augmentation: one random "microphone and room" per call


def _room_impulse(rng: np.random.Generator) -> np.ndarray:
    rt60 = rng.uniform(0.08, 0.6)
    n = int(rt60 * SR)
    t = np.arange(n) / SR
    ir = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)  # -60 dB at rt60
    ir[: int(0.002 * SR)] = 0
    ir /= np.sqrt((ir ** 2).sum()) + 1e-9
    direct = np.zeros(n)
    direct[0] = 1.0
    wet = rng.uniform(0.1, 0.6)
    return (1 - wet) * direct + wet * ir


def _random_eq(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A smooth random gain curve over log frequency (+-9 dB), plus a random band limit."""
    spec = np.fft.rfft(x)
    f = np.fft.rfftfreq(len(x), 1 / SR)
    logf = np.log2(np.maximum(f, 50.0))
    knots = np.linspace(np.log2(50), np.log2(8000), 7)
    gains_db = rng.uniform(-9, 9, size=knots.size)
    g = 10 ** (np.interp(logf, knots, gains_db) / 20)
    hi = rng.uniform(3000, 8000)  # telephone .. full band
    lo = rng.uniform(50, 300)
    g *= 1 / (1 + (f / hi) ** 8) * (1 - 1 / (1 + (f / lo) ** 4))
    return np.fft.irfft(spec * g, n=len(x))


def _noise(n: int, rng: np.random.Generator) -> np.ndarray:
    white = rng.standard_normal(n)
    kind = rng.integers(3)
    if kind == 0:
        return white
    spec = np.fft.rfft(white)
    f = np.maximum(np.fft.rfftfreq(n, 1 / SR), 20.0)
    spec /= f ** (0.5 if kind == 1 else 1.0)  # pink or brown
    out = np.fft.irfft(spec, n=n)
    return out / (out.std() + 1e-9)


def augment(audio: np.ndarray, phonemes: list, rng: np.random.Generator) -> tuple[np.ndarray, list, np.ndarray]:
    """A random acoustic rendering of one utterance: (audio, phonemes, dry audio on the same clock).

    Phoneme times follow the speed change and padding; the dry version (speed and padding only)
    is what ``mouth_track`` uses to trim pauses, so targets do not depend on the added noise."""
    x = audio.astype(np.float64)
    speed = rng.uniform(0.85, 1.18)
    if abs(speed - 1) > 1e-3:
        n_out = int(len(x) / speed)
        x = np.interp(np.arange(n_out) * speed, np.arange(len(x)), x)
        phonemes = [(p, s / speed, e / speed) for p, s, e in phonemes]
    pad_l = int(rng.uniform(0, 0.8) * SR)
    pad_r = int(rng.uniform(0, 0.8) * SR)
    x = np.concatenate([np.zeros(pad_l), x, np.zeros(pad_r)])
    phonemes = [(p, s + pad_l / SR, e + pad_l / SR) for p, s, e in phonemes]
    dry = x.astype(np.float32)
    if rng.random() < 0.8:
        x = _random_eq(x, rng)
    if rng.random() < 0.6:
        x = fftconvolve(x, _room_impulse(rng))[: len(x)]
    if rng.random() < 0.8:
        snr_db = rng.uniform(5, 40)
        sig = np.sqrt(np.mean(x ** 2)) + 1e-9
        x = x + _noise(len(x), rng) * sig * 10 ** (-snr_db / 20)
    x = x / (np.abs(x).max() + 1e-9) * rng.uniform(0.1, 0.9)
    return x.astype(np.float32), phonemes, dry


# ----------------------------------------------------------------------------------------------
# Data


def _render(bank, indices, copies: int, seed: int, features, fps: float, log=None):
    """Per utterance: (mel (T, F) float32, target (T, 4) float32)."""
    out = []
    for n, i in enumerate(indices):
        u = bank[int(i)]
        versions = [(u.audio, u.phonemes, u.audio, True)]
        rng = np.random.default_rng([seed, int(i)])
        for _ in range(copies):
            versions.append((*augment(u.audio, u.phonemes, rng), False))
        for a, ph, dry, clean in versions:
            num = max(1, int(round(len(a) / SR * fps)))
            target = mouth_track(ph, fps, num, audio=dry)
            a = normalize_loudness(a) * np.float32(rng.uniform(0.5, 1.4) if not clean else 1.0)
            out.append((features(a, num).numpy(), target))
        if log and (n + 1) % 100 == 0:
            log(f"  rendered {n + 1}/{len(indices)} utterances")
    return out


def _batches(items, settings: TrainSettings, rng: np.random.Generator):
    crop = settings.crop_frames
    while True:
        mels, tgts = [], []
        for j in rng.integers(len(items), size=settings.batch):
            mel, tgt = items[int(j)]
            T = len(mel)
            if T >= crop:
                s = int(rng.integers(T - crop + 1))
                m, t = mel[s: s + crop], tgt[s: s + crop]
            else:  # pad with the silence feature and the rest pose
                m = np.concatenate([mel, np.repeat(mel[-1:] * 0 + mel.min(), crop - T, 0)])
                t = np.concatenate([tgt, np.repeat(tgt[-1:], crop - T, 0)])
            mels.append(m)
            tgts.append(t)
        yield torch.from_numpy(np.stack(mels)), torch.from_numpy(np.stack(tgts))


# ----------------------------------------------------------------------------------------------
# Metrics


def evaluate(model: MouthRegressor, items) -> dict:
    """L1 per parameter, correlation of the lip gap, and bilabial closure agreement."""
    model.eval()
    preds, tgts = [], []
    with torch.no_grad():
        for mel, tgt in items:
            preds.append(model(torch.from_numpy(mel)[None])[0].numpy())
            tgts.append(tgt)
    p, t = np.concatenate(preds), np.concatenate(tgts)
    out = {f"l1_{n}": float(np.abs(p[:, c] - t[:, c]).mean()) for c, n in enumerate(MOUTH_PARAMS)}
    gp, gt = mouth_gap(p), mouth_gap(t)
    out["gap_corr"] = float(np.corrcoef(gp, gt)[0, 1])
    closed = t[:, 3] > 0.8
    out["closure_recall"] = float((p[closed, 3] > 0.5).mean()) if closed.any() else float("nan")
    out["closure_false"] = float((p[~closed, 3] > 0.5).mean())
    model.train()
    return out


def train_mouth(bank_dir: str | Path, out: str | Path, settings: TrainSettings = TrainSettings(), log=print) -> dict:
    from models.conditions.audio import MelFeatures
    from models.config import get_preset
    from models.data.speech import SpeechBank

    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    bank = SpeechBank(bank_dir)
    cfg = default_config()
    features = MelFeatures(get_preset("toon-s").cond)
    order = rng.permutation(len(bank))
    n_val = max(1, int(len(bank) * settings.val_fraction))
    val_idx, train_idx = order[:n_val], order[n_val:]
    t0 = time.perf_counter()
    log(f"rendering {len(train_idx)} training utterances x {settings.augment_copies + 1} acoustic versions ...")
    train_items = _render(bank, train_idx, settings.augment_copies, settings.seed, features, cfg.fps, log)
    val_clean = _render(bank, val_idx, 0, settings.seed + 1, features, cfg.fps)
    val_aug = [it for k, it in enumerate(_render(bank, val_idx, 1, settings.seed + 2, features, cfg.fps)) if k % 2]
    frames = sum(len(m) for m, _ in train_items)
    log(f"  {frames} frames ({frames / cfg.fps / 60:.1f} min of audio) in {time.perf_counter() - t0:.0f} s")

    model = MouthRegressor(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, settings.lr, total_steps=settings.steps, pct_start=0.1)
    # Closure and jaw matter most to a viewer (lips that fail to meet on /m/ read as out of sync).
    weights = torch.tensor([1.5, 1.0, 1.0, 2.0])
    batches = _batches(train_items, settings, rng)
    t1 = time.perf_counter()
    for step in range(1, settings.steps + 1):
        mel, tgt = next(batches)
        pred = model(mel)
        # L1 keeps jaw, width and rounding sharp; closure is a rare, all-or-nothing event, so it
        # gets a cross-entropy (a mean, not a median: a likely /m/ still closes the lips).
        shape_err = ((pred[..., :3] - tgt[..., :3]).abs() * weights[:3]).mean()
        closure_err = torch.nn.functional.binary_cross_entropy(pred[..., 3].clamp(1e-5, 1 - 1e-5), tgt[..., 3])
        gap_err = (mouth_gap(pred) - mouth_gap(tgt)).abs().mean()
        loss = shape_err + weights[3] * closure_err + gap_err
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 250 == 0 or step == settings.steps:
            m = evaluate(model, val_aug)
            log(f"step {step}: loss {loss.item():.4f}  val(aug) gap_corr {m['gap_corr']:.3f} "
                f"l1_jaw {m['l1_jaw_open']:.3f} closure_recall {m['closure_recall']:.2f} "
                f"({time.perf_counter() - t1:.0f} s)")
    model.eval()
    metrics = {"val_clean": evaluate(model, val_clean), "val_augmented": evaluate(model, val_aug)}
    info = {
        "training": {**asdict(settings), "bank": str(bank_dir), "utterances_train": len(train_idx),
                     "utterances_val": len(val_idx), "train_frames": frames,
                     "seconds": round(time.perf_counter() - t0, 1)},
        "metrics": metrics,
    }
    save_mouth_model(model, out, info)
    log(f"wrote {out}: {json.dumps(metrics, indent=1)}")
    return info


def write_model_card(folder: Path, info: dict) -> Path:
    tr, m = info["training"], info["metrics"]

    def row(name: str, d: dict) -> str:
        return (f"| {name} | {d['gap_corr']:.3f} | {d['l1_jaw_open']:.3f} | {d['l1_lip_width']:.3f} | "
                f"{d['l1_rounding']:.3f} | {d['l1_closure']:.3f} | {d['closure_recall']:.2f} | "
                f"{d['closure_false']:.3f} |")

    text = f"""# Instant engine: audio-to-mouth regressor

A temporal convolution network (about +-9 frames of context at 25 fps) from the diffusion model's
log-mel features (`MelFeatures`, toon-s: 80 mels x 4 hops per video frame) to four mouth parameters
per video frame: jaw_open, lip_width, rounding, closure (`models/data/visemes.py`). Weights in
float16 (`mouth.safetensors`), architecture in `config.json`.

## Data
Speech bank `{Path(tr['bank']).name}`: espeak-ng utterances in 14 languages, 12 voice variants (female,
male, old, whisper, ...), random rates, pitches and pitch ranges, spoken, sung and chanted; targets
from the exact per-phoneme timings through the coarticulation model of `mouth_track`.
{tr['utterances_train']} training and {tr['utterances_val']} held-out utterances; each training utterance
is used dry and in {tr['augment_copies']} random acoustic renderings (speed 0.85-1.18 with timings rescaled,
random equaliser and band limit, room reverberation RT60 0.08-0.6 s, white/pink/brown noise at
5-40 dB SNR, silence padding, loudness changes), {tr['train_frames']} frames in all.

## Training
`python main.py train-mouth --out DIR` (builds the bank itself; `--bank` reuses one).
{tr['steps']} AdamW steps, batch {tr['batch']} x {tr['crop_frames']} frames, one-cycle LR {tr['lr']}, weighted L1
on jaw, width and rounding, binary cross-entropy on closure, plus L1 on the lip gap; seed {tr['seed']};
{tr['seconds']:.0f} s on a shared 2-core CPU.

## Validation (held-out utterances)
| set | gap corr | L1 jaw | L1 width | L1 round | L1 closure | bilabial recall | false closure |
|---|---|---|---|---|---|---|---|
{row('dry', m['val_clean'])}
{row('augmented', m['val_augmented'])}

gap = jaw_open x (1 - closure), the visible opening between the lips; bilabial recall: frames whose
target closure > 0.8 predicted > 0.5; false closure: other frames predicted > 0.5.

## Limits
Trained on synthetic voices only; real speech is checked by `tests/test_instant_mouth.py` (the
opening follows the speech envelope at zero lag). Laughter, shouting and singing with vibrato are
outside what the data covers. Frames below the silence gate (-54 dBFS) get the rest pose exactly.
"""
    path = folder / "MODEL_CARD.md"
    path.write_text(text)
    return path
