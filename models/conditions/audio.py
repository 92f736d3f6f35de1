"""Audio -> per-video-frame features.

Two encoders with one output contract, ``(T_video, F)`` float32 for 16 kHz mono audio:

* ``MelFeatures`` (default, no weights): log-mel spectrogram computed in torch with a hop of a
  quarter video frame; the feature of video frame i concatenates its 4 mel hops, so ``F = 4 * n_mels``
  and lip-relevant timing inside a frame survives.
* ``Wav2Vec2Features``: a Hugging Face wav2vec2 folder on local disk (config.json + weights), run
  through ``transformers`` with ``local_files_only``; hidden states averaged over layers and
  resampled from 50 Hz to the video frame rate.

Frame i covers samples ``[i * sr / fps, (i + 1) * sr / fps)``.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import torch

from models.config import ConditionConfig
from models.errors import UserError
from models.media import SAMPLE_RATE


def _hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def _mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(
    n_mels: int, n_fft: int, sample_rate: int, fmin: float = 40.0, fmax: float | None = None
) -> torch.Tensor:
    """Triangular HTK-style mel filters ``(n_mels, n_fft // 2 + 1)``, area-normalised (Slaney)."""
    fmax = fmax or sample_rate / 2
    mels = np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2)
    hz = _mel_to_hz(mels)
    bins = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    fb = np.zeros((n_mels, bins.size))
    for i in range(n_mels):
        lo, c, hi = hz[i], hz[i + 1], hz[i + 2]
        up = (bins - lo) / max(c - lo, 1e-9)
        down = (hi - bins) / max(hi - c, 1e-9)
        fb[i] = np.clip(np.minimum(up, down), 0, None) * (2.0 / (hi - lo))
    return torch.from_numpy(fb).float()


class MelFeatures:
    """Log-mel features per video frame: ``(T, mel_per_frame * n_mels)``."""

    def __init__(self, cond: ConditionConfig) -> None:
        self.sr = cond.sample_rate
        self.fps = cond.fps
        self.n_mels = cond.n_mels
        self.per_frame = cond.mel_per_frame
        self.hop = self.sr / self.fps / self.per_frame
        if abs(self.hop - round(self.hop)) > 1e-6:
            raise UserError(f"fps {self.fps} does not split {self.sr} Hz audio into whole mel hops")
        self.hop = int(round(self.hop))
        self.win = 2 * self.hop if 2 * self.hop >= 320 else 400
        self.n_fft = 1 << math.ceil(math.log2(self.win))
        self.window = torch.hann_window(self.win)
        self.fb = mel_filterbank(self.n_mels, self.n_fft, self.sr)

    @property
    def dim(self) -> int:
        return self.n_mels * self.per_frame

    def __call__(self, audio: np.ndarray | torch.Tensor, num_frames: int | None = None) -> torch.Tensor:
        a = torch.as_tensor(np.asarray(audio, np.float32)).flatten()
        n_hops_needed = None
        if num_frames is not None:
            n_hops_needed = num_frames * self.per_frame
        else:
            num_frames = max(1, int(round(a.numel() / (self.hop * self.per_frame))))
            n_hops_needed = num_frames * self.per_frame
        # Centre each window on its hop's midpoint: hop j covers samples [j*hop, (j+1)*hop).
        total = n_hops_needed * self.hop
        if a.numel() < total:
            a = torch.nn.functional.pad(a, (0, total - a.numel()))
        a = a[:total]
        pad_l = (self.win - self.hop) // 2
        pad_r = self.win - self.hop - pad_l
        a = torch.nn.functional.pad(a, (pad_l, pad_r))
        frames = a.unfold(0, self.win, self.hop)[:n_hops_needed]  # (hops, win)
        spec = torch.fft.rfft(frames * self.window, n=self.n_fft).abs().pow(2)
        mel = spec @ self.fb.T  # (hops, n_mels)
        logmel = torch.log(mel.clamp_min(1e-10))
        # Fixed affine normalisation (independent of the clip, so silence stays silence).
        logmel = (logmel + 7.0) / 4.0
        return logmel.reshape(num_frames, self.per_frame * self.n_mels)


class Wav2Vec2Features:
    """A local Hugging Face wav2vec2 folder as the audio encoder (no download, ever)."""

    def __init__(self, folder: str | os.PathLike, fps: float, device: str | torch.device = "cpu",
                 layers: str = "mean", sample_rate: int = SAMPLE_RATE) -> None:
        folder = Path(folder)
        if not (folder / "config.json").is_file():
            raise UserError(f"{folder}: not a wav2vec2 folder (no config.json)")
        try:
            model_type = json.loads((folder / "config.json").read_text()).get("model_type", "")
        except (OSError, json.JSONDecodeError) as e:
            raise UserError(f"{folder / 'config.json'}: unreadable ({e})") from None
        if "wav2vec2" not in model_type and "hubert" not in model_type and "wavlm" not in model_type:
            raise UserError(f"{folder}: model_type '{model_type}' is not a wav2vec2-compatible encoder")
        if not any((folder / n).is_file() for n in ("model.safetensors", "pytorch_model.bin")):
            raise UserError(f"{folder}: no weights (model.safetensors) found")
        try:
            from transformers import AutoModel
        except ImportError:
            raise UserError("wav2vec2 features need the 'transformers' package: pip install transformers") from None
        self.model = AutoModel.from_pretrained(str(folder), local_files_only=True, use_safetensors=(
            folder / "model.safetensors").is_file()).to(device).eval()
        self.fps = fps
        self.sample_rate = int(sample_rate)
        self.device = device
        self.layers = layers
        self.dim = int(self.model.config.hidden_size)

    @torch.no_grad()
    def __call__(self, audio: np.ndarray | torch.Tensor, num_frames: int | None = None) -> torch.Tensor:
        a = torch.as_tensor(np.asarray(audio, np.float32)).flatten()
        if num_frames is None:
            num_frames = max(1, int(round(a.numel() / self.sample_rate * self.fps)))
        a = (a - a.mean()) / (a.std() + 1e-7)  # wav2vec2's expected input normalisation
        min_len = 400
        if a.numel() < min_len:
            a = torch.nn.functional.pad(a, (0, min_len - a.numel()))
        out = self.model(a[None].to(self.device), output_hidden_states=True)
        hs = out.hidden_states
        h = torch.stack(hs[1:], 0).mean(0) if self.layers == "mean" else hs[-1]  # (1, T50, D)
        h = torch.nn.functional.interpolate(h.transpose(1, 2), size=num_frames, mode="linear", align_corners=False)
        return h[0].transpose(0, 1).float().cpu()


def make_audio_encoder(cond: ConditionConfig, wav2vec2_folder: str | None = None, device="cpu"):
    if cond.audio_encoder == "wav2vec2" or wav2vec2_folder:
        if not wav2vec2_folder:
            raise UserError("this model uses wav2vec2 audio features: give the folder with --wav2vec2 DIR")
        return Wav2Vec2Features(wav2vec2_folder, cond.fps, device=device, sample_rate=cond.sample_rate)
    return MelFeatures(cond)
