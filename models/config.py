"""Frozen configuration dataclasses for every part, and the registry of named presets.

A preset fixes the architecture (VAE, transformer, conditions) and the defaults a user starts from
(sampling, resolution). ``ModelConfig`` is saved as ``config.json`` inside every checkpoint so a
checkpoint rebuilds its exact model.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from typing import Any

from models.keypoints import HEATMAP_CHANNELS


@dataclass(frozen=True)
class VAEConfig:
    in_channels: int
    latent_channels: int
    base_channels: int
    channel_mults: tuple[int, ...]  # one per resolution level; len - 1 spatial 2x downsamples
    num_res_blocks: int
    temporal_downsample: tuple[bool, ...]  # per downsample step; two True give 4x in time

    @property
    def spatial_factor(self) -> int:
        return 2 ** (len(self.channel_mults) - 1)

    @property
    def temporal_factor(self) -> int:
        return 2 ** sum(self.temporal_downsample)


@dataclass(frozen=True)
class DiTConfig:
    width: int
    depth: int
    num_heads: int
    mlp_ratio: float
    patch_size: int
    latent_channels: int
    # Pose guider: heatmap channels in, conv widths (each stage halves space), channels stacked
    # onto the latent per latent frame (after concatenating the two neighbouring frames).
    pose_in_channels: int
    pose_guider_channels: tuple[int, ...]
    pose_channels: int
    # Text: byte tokens -> small transformer encoder -> MMDiT text stream.
    text_vocab: int
    text_width: int
    text_depth: int
    text_heads: int
    text_max_len: int
    # Audio: per-video-frame features -> MLP -> per-latent-frame window of tokens.
    audio_feature_dim: int
    audio_hidden: int
    audio_context: int  # neighbouring video frames on each side of a latent frame's own frames
    num_motion_latents: int  # latent frames the motion frames occupy (5 video frames -> 2)
    # A training-time lip-reading head on the audio path: mouth parameters (jaw, width, rounding,
    # closure) predicted from each video frame's audio features and their +-2 neighbours. The
    # trainer's ``audio_mouth_weight`` supervises it, so the audio features the cross-attention reads
    # carry the mouth from the first steps; generation never calls it. 0: no head.
    mouth_head: int = 0
    # Per-frame audio modulation: each noisy latent frame's audio tokens, averaged, add a shift, scale
    # and gate to that frame's adaLN modulation in every block (zero-initialised), beside the audio
    # cross-attention. A cross-attention output is one vector added wherever the queries agree; a
    # scale multiplies the features a token already has, so "the lips of this frame open" needs no
    # learnt query for where the lips are. False: cross-attention only (the paper's path).
    audio_adaln: bool = False
    # The reference at every noisy token's own place: its latent is stacked on each noisy frame's
    # channels (beside the pose features) before the patch embedding, whose new columns start at
    # zero. The packed reference tokens stay (the paper's path, for what moved); this gives each
    # token the reference's appearance where it stands without a learnt attention lookup, so a
    # small transformer on a CPU budget keeps the face and spends its steps on what changes.
    ref_concat: bool = False
    # The flow runs on each frame's difference from the reference latent (``z - ref``) instead of
    # the latent itself; the sampler's output gets the reference added back. An undertrained model's
    # expected value is then "the reference, moved a little" rather than "the average face": blur
    # falls on the motion, not on the identity. For framings where the person stays near the
    # reference's place (faces, portraits). On in face-s, over the still reference (Conditions.still):
    # with motion noise at generation it kept the face (docs/experiments/face-s-ladder.md, sixth session).
    ref_residual: bool = False

    @property
    def head_dim(self) -> int:
        return self.width // self.num_heads

    @property
    def audio_window(self) -> int:
        """Audio tokens per latent frame: its 4 video frames plus ``audio_context`` each side."""
        return 4 + 2 * self.audio_context


@dataclass(frozen=True)
class ConditionConfig:
    sample_rate: int
    fps: float
    audio_encoder: str  # "mel" or "wav2vec2"
    n_mels: int
    mel_per_frame: int  # mel hops per video frame; the feature of a frame concatenates them
    heatmap_sigma: float  # fraction of the frame's shorter side


@dataclass(frozen=True)
class SamplingConfig:
    steps: int
    cfg_text: float
    cfg_audio: float
    anneal: str  # none | linear | cosine
    anneal_strength: float  # 0: constant scale, 1: the scale falls to 1 (no guidance) at the end
    segment_frames: int  # 1 + 4k video frames per segment
    motion_frames: int  # frames of the previous segment carried into the next (5 = 2 latents)
    shift: float | None  # None: from the token count
    # The motion latents blended this far toward noise before they condition a segment (0: clean).
    # Training corrupts them by U(0, motion_noise) (the recipe's stage); at generation they are the
    # model's own output, re-encoded, and a fixed level inside that range tells the transformer to
    # take the motion from them and the appearance from the reference.
    motion_noise: float = 0.0
    # Where the audio guidance acts: 0 over the whole frame (the paper's), 1 only around the mouth
    # (found on the reference by MediaPipe's face mesh; without a face the whole frame), between: this
    # share of the guidance is taken away outside the mouth. The audio-minus-no-audio difference
    # reaches the eyes and the face's outline too, and amplified there it scrambles them.
    audio_focus: float = 0.0
    # The motion latents pulled this far toward the reference seen standing still (its still video of
    # the motion frames' length, encoded) before they lead a segment: 0 hands the previous segment's
    # frames over as they are, 1 replaces them by the reference (no continuity). A small model's own
    # frames drift from the reference a little every segment, and led by them it loses the eyes and
    # the mouth; pulled back toward the reference, each segment starts from the face again.
    motion_anchor: float = 0.0
    # The first segment, which has no previous frames, led by the reference's still video as its motion
    # frames (noised like the others). A model trained on clean leads only holds the mouth shut behind it
    # (face-s8: mouth 0.088 against 0.233); one trained on anchored leads (the recipe's motion_anchor)
    # moves it (face-s10: 0.397 against 0.453), with a better first second.
    still_lead: bool = False


@dataclass(frozen=True)
class ModelConfig:
    name: str
    vae: VAEConfig
    dit: DiTConfig
    cond: ConditionConfig
    sampling: SamplingConfig
    area: int  # default pixel area of a frame; the aspect ratio comes from the reference
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> ModelConfig:
        return _from_dict(ModelConfig, d)

    def replace(self, **kw: Any) -> ModelConfig:
        return dataclasses.replace(self, **kw)

    def resolution_for(self, aspect: float, area: int | None = None) -> tuple[int, int]:
        """(height, width) with sides multiples of 16 whose area is about ``area``."""
        return resolution_for(aspect, area or self.area)


def resolution_for(aspect: float, area: int, multiple: int = 16) -> tuple[int, int]:
    """(height, width) for ``aspect = width / height`` near ``area`` pixels, sides multiples of 16."""
    if not (aspect > 0 and math.isfinite(aspect)):
        raise ValueError(f"aspect ratio must be positive, got {aspect}")
    aspect = min(max(aspect, 1 / 4), 4)
    h = math.sqrt(area / aspect)
    w = h * aspect
    return max(multiple, round(h / multiple) * multiple), max(multiple, round(w / multiple) * multiple)


def _from_dict(cls, d: dict[str, Any]):
    kwargs = {}
    names = {f.name: f for f in fields(cls)}
    unknown = set(d) - set(names)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown fields {sorted(unknown)}")
    sub = {"vae": VAEConfig, "dit": DiTConfig, "cond": ConditionConfig, "sampling": SamplingConfig}
    for name, f in names.items():
        if name not in d:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ValueError(f"{cls.__name__}: missing field '{name}'")
            continue
        v = d[name]
        if cls is ModelConfig and name in sub:
            v = _from_dict(sub[name], v)
        elif isinstance(v, list):
            v = tuple(v)
        kwargs[name] = v
    return cls(**kwargs)


# ----------------------------------------------------------------------------------------------
# Presets

_MEL = ConditionConfig(
    sample_rate=16000, fps=25.0, audio_encoder="mel", n_mels=80, mel_per_frame=4, heatmap_sigma=0.015
)


def _dit(width, depth, heads, latent, pose_guider, pose_ch, text_width, text_depth, text_heads,
         audio_hidden, patch_size=2, mouth_head=0, audio_adaln=False, ref_concat=False,
         ref_residual=False) -> DiTConfig:
    return DiTConfig(
        width=width, depth=depth, num_heads=heads, mlp_ratio=4.0, patch_size=patch_size, latent_channels=latent,
        pose_in_channels=HEATMAP_CHANNELS, pose_guider_channels=pose_guider, pose_channels=pose_ch,
        text_vocab=259, text_width=text_width, text_depth=text_depth, text_heads=text_heads,
        text_max_len=128, audio_feature_dim=_MEL.n_mels * _MEL.mel_per_frame, audio_hidden=audio_hidden,
        audio_context=2, num_motion_latents=2, mouth_head=mouth_head, audio_adaln=audio_adaln,
        ref_concat=ref_concat, ref_residual=ref_residual,
    )


PRESETS: dict[str, ModelConfig] = {}


def register(cfg: ModelConfig) -> ModelConfig:
    PRESETS[cfg.name] = cfg
    return cfg


register(ModelConfig(
    name="tiny",
    description="CPU test size: every part present, seconds per segment",
    vae=VAEConfig(in_channels=3, latent_channels=4, base_channels=8, channel_mults=(1, 2, 2, 2),
                  num_res_blocks=1, temporal_downsample=(False, True, True)),
    dit=_dit(64, 2, 2, 4, (8, 16, 16), 8, 32, 1, 2, 64),
    cond=_MEL,
    sampling=SamplingConfig(steps=4, cfg_text=3.0, cfg_audio=4.0, anneal="cosine", anneal_strength=0.5,
                            segment_frames=9, motion_frames=5, shift=None),
    area=64 * 64,
))

register(ModelConfig(
    name="toon-s",
    description="the shipped size: 128 px toon characters, trains on one GPU, generates on a CPU",
    vae=VAEConfig(in_channels=3, latent_channels=8, base_channels=16, channel_mults=(1, 2, 4, 8),
                  num_res_blocks=1, temporal_downsample=(False, True, True)),
    dit=_dit(320, 6, 5, 8, (16, 32, 64), 32, 192, 2, 3, 256),
    cond=_MEL,
    sampling=SamplingConfig(steps=20, cfg_text=3.0, cfg_audio=4.5, anneal="cosine", anneal_strength=0.6,
                            segment_frames=25, motion_frames=5, shift=None),
    area=128 * 128,
))

register(ModelConfig(
    name="face-s",
    description="the CPU-trained talking face: 96 px faces and portraits, a 4x VAE so the mouth spans tokens",
    vae=VAEConfig(in_channels=3, latent_channels=8, base_channels=16, channel_mults=(1, 2, 4),
                  num_res_blocks=1, temporal_downsample=(True, True)),
    dit=_dit(192, 6, 3, 8, (16, 32), 32, 128, 1, 2, 256, mouth_head=4, audio_adaln=True, ref_concat=True,
             ref_residual=True),
    cond=_MEL,
    # motion_noise: face-s7 on the example portrait lost the face segment by segment with clean motion
    # frames and kept it with 0.15-0.3 (docs/experiments/face-s-ladder.md, sixth session).
    # motion_anchor with audio CFG 6: on the bar, SSIM at 10 s 0.752 -> 0.835 (the seventh session). A
    # model fine-tuned on anchored motion frames (the eighth) takes the audio (mouth 0.304 -> 0.453) and
    # with anchor 0.8 and the guidance kept to the mouth (audio_focus 1) keeps the face.
    sampling=SamplingConfig(steps=16, cfg_text=3.0, cfg_audio=6.0, anneal="cosine", anneal_strength=0.6,
                            segment_frames=9, motion_frames=5, shift=None, motion_noise=0.2, motion_anchor=0.8,
                            audio_focus=1.0),
    area=96 * 96,
))

register(ModelConfig(
    name="tiny-face",
    description="CPU test size of face-s: a 4x VAE, patch 1",
    vae=VAEConfig(in_channels=3, latent_channels=4, base_channels=8, channel_mults=(1, 2, 2),
                  num_res_blocks=1, temporal_downsample=(True, True)),
    dit=_dit(64, 2, 2, 4, (8, 16), 8, 32, 1, 2, 64, patch_size=1, mouth_head=4, audio_adaln=True,
             ref_concat=True, ref_residual=True),
    cond=_MEL,
    sampling=SamplingConfig(steps=4, cfg_text=3.0, cfg_audio=4.5, anneal="cosine", anneal_strength=0.6,
                            segment_frames=9, motion_frames=5, shift=None),
    area=32 * 32,
))

register(ModelConfig(
    name="base",
    description="about 1B parameters at 480p: a GPU model",
    vae=VAEConfig(in_channels=3, latent_channels=16, base_channels=96, channel_mults=(1, 2, 4, 4),
                  num_res_blocks=2, temporal_downsample=(False, True, True)),
    dit=_dit(1536, 16, 12, 16, (32, 64, 128), 128, 768, 4, 12, 1024),
    cond=_MEL,
    sampling=SamplingConfig(steps=25, cfg_text=3.0, cfg_audio=4.5, anneal="cosine", anneal_strength=0.6,
                            segment_frames=49, motion_frames=5, shift=None),
    area=832 * 480,
))

register(ModelConfig(
    name="large",
    description="about 8B parameters at 720p: the paper's scale, FSDP training",
    vae=VAEConfig(in_channels=3, latent_channels=16, base_channels=128, channel_mults=(1, 2, 4, 4),
                  num_res_blocks=2, temporal_downsample=(False, True, True)),
    dit=_dit(3072, 28, 24, 16, (32, 64, 128), 128, 1024, 6, 16, 2048),
    cond=_MEL,
    sampling=SamplingConfig(steps=30, cfg_text=3.0, cfg_audio=4.5, anneal="cosine", anneal_strength=0.6,
                            segment_frames=49, motion_frames=5, shift=None),
    area=1280 * 720,
))


def with_overrides(cfg: ModelConfig, overrides: dict[str, Any]) -> ModelConfig:
    """``cfg`` with some fields replaced: ``{"vae": {"channel_mults": [1, 2, 4]}, "dit": {"patch_size": 1},
    "area": 9216}``. Unknown parts or fields raise ``ValueError`` naming them."""
    d = cfg.to_dict()
    for part, value in overrides.items():
        if part not in d or part in ("name", "extra"):
            raise ValueError(f"unknown model field '{part}'")
        if isinstance(d[part], dict):
            if not isinstance(value, dict):
                raise ValueError(f"model field '{part}' takes an object of its fields")
            for key, v in value.items():
                if key not in d[part]:
                    raise ValueError(f"unknown model field '{part}.{key}'")
                d[part][key] = v
        else:
            d[part] = value
    return ModelConfig.from_dict(d)


def get_preset(name: str) -> ModelConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown preset '{name}'; known: {', '.join(PRESETS)}") from None


def latent_frames(video_frames: int) -> int:
    """Causal 4x time compression: ``1 + 4k`` video frames -> ``1 + k`` latent frames."""
    if video_frames < 1 or (video_frames - 1) % 4:
        raise ValueError(f"a segment must have 1 + 4k frames, got {video_frames}")
    return 1 + (video_frames - 1) // 4
