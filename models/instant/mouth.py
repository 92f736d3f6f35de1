"""Audio -> mouth parameters: the instant engine's small regressor.

Input: the diffusion model's own audio features, ``MelFeatures`` ``(T, 4 * n_mels)`` per video frame.
Output: per-frame mouth parameters ``(T, 4)`` in ``models.data.visemes.MOUTH_PARAMS`` order
(jaw_open, lip_width, rounding, closure), the exact quantities ``mouth_track`` derives from the
speech bank's phoneme timings, which are the training targets.

The network is a non-causal temporal convolution stack over a window of about +-9 frames
(+-360 ms at 25 fps): lips move before the sound they shape (a /m/ closes before it is voiced), so
it looks both ways. Silence is handled outside the network too: frames whose audio is below the
silence gate get the rest pose exactly, so a silent clip leaves the mouth untouched.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from models.data.visemes import NUM_MOUTH_PARAMS, REST
from models.errors import UserError

BUNDLED_DIR = Path(__file__).resolve().parents[2] / "resources" / "models" / "instant"
# Frames whose RMS is below this (about -54 dBFS) count as silent and get the rest pose.
SILENCE_RMS = 2e-3


@dataclass(frozen=True)
class MouthConfig:
    in_dim: int  # MelFeatures dim: mel_per_frame * n_mels
    width: int  # channels of the hidden convolutions
    kernels: tuple[int, ...]  # temporal kernel of each hidden layer
    dilations: tuple[int, ...]
    fps: float
    sample_rate: int
    n_mels: int
    mel_per_frame: int

    @property
    def receptive_frames(self) -> int:
        return 1 + sum((k - 1) * d for k, d in zip(self.kernels, self.dilations, strict=True))


def default_config() -> MouthConfig:
    from models.config import get_preset

    cond = get_preset("toon-s").cond
    return MouthConfig(
        in_dim=cond.n_mels * cond.mel_per_frame, width=96, kernels=(3, 5, 5, 3), dilations=(1, 1, 2, 2),
        fps=float(cond.fps), sample_rate=int(cond.sample_rate), n_mels=int(cond.n_mels),
        mel_per_frame=int(cond.mel_per_frame),
    )


class MouthRegressor(nn.Module):
    """``(B, T, in_dim)`` mel features -> ``(B, T, 4)`` mouth parameters in [0, 1]."""

    def __init__(self, cfg: MouthConfig) -> None:
        super().__init__()
        self.cfg = cfg
        # Per-mel-bin normalisation learnt from data (a BatchNorm frozen after training would do
        # the same; a plain affine keeps export and inference trivial).
        self.in_scale = nn.Parameter(torch.ones(cfg.in_dim))
        self.in_shift = nn.Parameter(torch.zeros(cfg.in_dim))
        layers: list[nn.Module] = []
        c_in = cfg.in_dim
        for k, d in zip(cfg.kernels, cfg.dilations, strict=True):
            layers += [nn.Conv1d(c_in, cfg.width, k, dilation=d, padding=d * (k - 1) // 2), nn.GELU()]
            c_in = cfg.width
        self.body = nn.Sequential(*layers)
        self.head = nn.Conv1d(cfg.width, NUM_MOUTH_PARAMS, 1)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv1d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="linear")
                nn.init.zeros_(m.bias)
        # Start at the rest pose: sigmoid(bias) = REST.
        nn.init.zeros_(self.head.weight)
        rest = torch.tensor(REST).clamp(0.02, 0.98)
        with torch.no_grad():
            self.head.bias.copy_(torch.log(rest / (1 - rest)))

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = (mel * self.in_scale + self.in_shift).transpose(1, 2)  # (B, F, T)
        return torch.sigmoid(self.head(self.body(x))).transpose(1, 2)  # (B, T, 4)


def save_mouth_model(model: MouthRegressor, folder: str | Path, extra: dict | None = None) -> Path:
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # float16 halves the file; the network is tiny and its outputs are squashed, so nothing is lost
    # that a viewer could see (the export check compares both).
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / "mouth.safetensors"))
    cfg = asdict(model.cfg)
    (folder / "config.json").write_text(json.dumps({"mouth": cfg, **(extra or {})}, indent=2) + "\n")
    return folder


def native_units(folder: str | Path | None = None) -> tuple[float, int]:
    """``(fps, sample_rate)`` the regressor in ``folder`` (default: the bundled one) was trained at,
    read from its config without loading weights: the instant engine's units."""
    path = (Path(folder) if folder else BUNDLED_DIR) / "config.json"
    try:
        raw = json.loads(path.read_text())["mouth"]
        return float(raw["fps"]), int(raw["sample_rate"])
    except (OSError, KeyError, ValueError):
        cfg = default_config()
        return cfg.fps, cfg.sample_rate


def load_mouth_model(folder: str | Path | None = None) -> MouthRegressor:
    """The regressor in ``folder`` (default: the one shipped in resources/models/instant)."""
    from safetensors.torch import load_file

    folder = Path(folder) if folder else BUNDLED_DIR
    cfg_path, w_path = folder / "config.json", folder / "mouth.safetensors"
    if not cfg_path.is_file() or not w_path.is_file():
        raise UserError(f"{folder}: no mouth regressor (config.json + mouth.safetensors); "
                        "train one with `python main.py train-mouth --out DIR`")
    raw = json.loads(cfg_path.read_text())["mouth"]
    raw["kernels"], raw["dilations"] = tuple(raw["kernels"]), tuple(raw["dilations"])
    model = MouthRegressor(MouthConfig(**raw))
    state = {k: v.float() for k, v in load_file(str(w_path)).items()}
    model.load_state_dict(state)
    return model.eval()


def frame_rms(audio: np.ndarray, fps: float, num_frames: int, sample_rate: int) -> np.ndarray:
    """RMS of each video frame's samples ``(T,)`` (frame i covers ``[i sr/fps, (i+1) sr/fps)``)."""
    a = np.asarray(audio, np.float32)
    edges = np.round(np.arange(num_frames + 1) * sample_rate / fps).astype(np.int64)
    sq = np.concatenate([[0.0], np.cumsum(a.astype(np.float64) ** 2)])
    lo, hi = np.minimum(edges[:-1], len(a)), np.minimum(edges[1:], len(a))
    n = np.maximum(hi - lo, 1)
    return np.sqrt((sq[hi] - sq[lo]) / n).astype(np.float32)


class MouthPredictor:
    """Audio (any length) -> ``(T, 4)`` mouth track, with the silence gate. Reusable, stateless."""

    def __init__(self, model: MouthRegressor | None = None) -> None:
        from models.conditions.audio import MelFeatures
        from models.config import get_preset

        self.model = model or load_mouth_model()
        cfg = self.model.cfg
        cond = get_preset("toon-s").cond
        if (cond.n_mels, cond.mel_per_frame, cond.sample_rate) != (cfg.n_mels, cfg.mel_per_frame, cfg.sample_rate):
            raise UserError("the mouth regressor was trained on other audio features than toon-s uses")
        self.features = MelFeatures(cond)
        self.fps = cfg.fps

    @torch.no_grad()
    def __call__(self, audio: np.ndarray, num_frames: int, fps: float | None = None) -> np.ndarray:
        fps = fps or self.fps
        if num_frames <= 0:
            return np.zeros((0, NUM_MOUTH_PARAMS), np.float32)
        a = np.asarray(audio, np.float32)
        if abs(fps - self.fps) > 1e-6:
            # The regressor runs at its own rate; resample its output to the video's frames.
            n_own = max(1, int(round(num_frames / fps * self.fps)))
            own = self(a, n_own, self.fps)
            t = (np.arange(num_frames) + 0.5) / fps * self.fps - 0.5
            return np.stack([np.interp(t, np.arange(n_own), own[:, c]) for c in range(4)], 1).astype(np.float32)
        mel = self.features(a, num_frames)  # (T, F)
        out = self.model(mel[None])[0].numpy()
        rms = frame_rms(a, fps, num_frames, self.model.cfg.sample_rate)
        silent = rms < SILENCE_RMS
        # Gate with a one-frame margin so a closing /p/ just before a pause is kept.
        near_sound = ~silent
        near_sound[1:] |= ~silent[:-1]
        near_sound[:-1] |= ~silent[1:]
        out[~near_sound] = REST
        return out.astype(np.float32)


class LiveMouth:
    """Microphone -> mouth parameters, frame by frame, for the live preview.

    ``push(samples)`` takes any number of new 16 kHz samples and returns the mouth parameters
    ``(N, 4)`` of the video frames they completed. The network looks ``latency_frames`` into the
    future (by default half its context, which gives exactly the offline result), so each row
    belongs to the frame that many frames before the newest sound: at 25 fps and 9 frames, the
    lips trail the microphone by 0.36 s. Fewer frames of latency answer sooner but less exactly.
    """

    def __init__(self, predictor: MouthPredictor | None = None, latency_frames: int | None = None) -> None:
        self.predictor = predictor or MouthPredictor()
        cfg = self.predictor.model.cfg
        self.fps = cfg.fps
        self.hop = int(round(cfg.sample_rate / cfg.fps))
        self.context = cfg.receptive_frames
        self.latency = self.context // 2 if latency_frames is None else int(latency_frames)
        self.window = self.context + self.latency + 2  # frames of audio kept
        self.buf = np.zeros(0, np.float32)
        self.frames_seen = 0

    def reset(self) -> None:
        self.buf = np.zeros(0, np.float32)
        self.frames_seen = 0

    def push(self, samples: np.ndarray) -> np.ndarray:
        self.buf = np.concatenate([self.buf, np.asarray(samples, np.float32).ravel()])
        n_new = len(self.buf) // self.hop - min(self.frames_seen, self.window)
        if n_new <= 0:
            return np.zeros((0, NUM_MOUTH_PARAMS), np.float32)
        total = len(self.buf) // self.hop
        out = self.predictor(self.buf[: total * self.hop], total, self.fps)
        self.frames_seen += n_new
        # Rows for the new frames, ``latency`` frames behind the newest audio.
        rows = out[max(0, total - n_new - self.latency): max(0, total - self.latency)]
        keep = min(total, self.window)
        self.buf = self.buf[(total - keep) * self.hop:]
        self.frames_seen = min(self.frames_seen, keep)
        return rows
