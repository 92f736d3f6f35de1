"""Training recipes: which stages run, for how many steps, with which condition keep ratios.

A recipe is a JSON file (see ``resources/recipes/``). Ratios live here, not in code. Every key is
checked; a bad recipe fails with a message naming the file and the key.

Stages (the omni-condition plan of the paper):
  0 ``vae``:   the causal VAE alone (reconstruction + KL).
  1 ``text``:  text and reference only (audio and pose never present).
  2 ``audio``: adds audio.
  3 ``pose``:  adds pose.
Keep ratios follow the paper's two principles: a stronger condition gets a lower ratio, and a clip
that fails a quality filter still trains the weaker conditions.
"""

from __future__ import annotations

import json
import os
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path

from models.errors import UserError

CONDITIONS = ("text", "reference", "audio", "pose")
STAGE_KINDS = ("vae", "dit")
PRECISIONS = ("auto", "bf16", "fp32")


# Every key of a recipe file is a field below: the fields are the one list the parser checks keys
# against and takes defaults from (a field without a default is a required key).


@dataclass(frozen=True, kw_only=True)
class Stage:
    kind: str  # vae | dit
    steps: int
    lr: float
    batch_size: int
    name: str = ""  # "" : stage<i>
    warmup: int = 0
    keep: dict[str, float] = field(default_factory=dict)  # condition -> keep ratio (absent: never)
    pose_only_with_audio: bool = False  # draw pose among the audio-bearing samples only
    motion_prob: float = 0.0  # share of batches that carry motion frames
    motion_noise: float = 0.0  # motion latents blended toward noise by sigma ~ U(0, this) per sample
    motion_anchor: float = 0.0  # motion latents pulled toward the reference's still video by a ~ U(0, this)
    segment_frames: int = 0  # 1 + 4k frames per training window (0: the preset's)
    crop: int = 0  # train on square crops of this many pixels (0: whole frames); DiT stages crop the latents
    cache_windows: int = 0  # DiT stages: encode this many windows once and train on them (0: stream)
    decoder_only: bool = False  # VAE stages: train the decoder alone (latents, and what learnt them, stay)
    face_crops: float = 0.0  # with crop: share of crops centred on the lips (the rest: anywhere)
    mouth_weight: float | None = None  # extra loss weight around the lips (None: the recipe's for DiT, 0 for VAE)
    lip_pixel_weight: float = 0.0  # DiT stages: weight of the decoded-lips loss (see Trainer.lip_pixel_loss)
    audio_lr_mult: float = 1.0  # DiT stages: the audio path's learning rate is the stage's times this
    audio_mouth_weight: float = 0.0  # DiT stages: weight of the lip-reading loss (DiTConfig.mouth_head)


@dataclass(frozen=True, kw_only=True)
class Recipe:
    preset: str
    stages: tuple[Stage, ...]
    name: str = ""  # "": the file's name
    seed: int = 0
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    min_lr_ratio: float = 0.1
    num_workers: int = 2
    log_every: int = 10
    checkpoint_every: int = 200
    vae_kl_weight: float = 1e-6
    mouth_weight: float = 0.0  # extra loss weight on the latent cells around the lips (0: plain loss)
    precision: str = "auto"  # auto: bf16 autocast on GPUs, fp32 on CPUs; or force "bf16" / "fp32"
    # Changes to the preset's architecture ({"dit": {"patch_size": 1}}): the ladder's variants of a preset.
    architecture: dict = field(default_factory=dict)

    def model_config(self):
        """The preset's ``ModelConfig`` with this recipe's ``architecture`` changes."""
        from models.config import get_preset, with_overrides

        cfg = get_preset(self.preset)
        return with_overrides(cfg, self.architecture) if self.architecture else cfg

    def mouth_weight_of(self, stage: Stage) -> float:
        """The stage's extra loss weight around the lips: its own, else the recipe's (DiT stages) or 0."""
        if stage.mouth_weight is not None:
            return stage.mouth_weight
        return self.mouth_weight if stage.kind == "dit" else 0.0

    @property
    def total_steps(self) -> int:
        return sum(s.steps for s in self.stages)

    def stage_at(self, step: int) -> tuple[int, Stage, int]:
        """(stage index, stage, step within the stage) for a global step."""
        start = 0
        for i, s in enumerate(self.stages):
            if step < start + s.steps:
                return i, s, step - start
            start += s.steps
        return len(self.stages) - 1, self.stages[-1], self.stages[-1].steps


def _need(d: dict, key: str, typ, where: str):
    if key not in d:
        raise UserError(f"{where}: missing key '{key}'")
    v = d[key]
    if typ is float and isinstance(v, int) and not isinstance(v, bool):
        v = float(v)
    if not isinstance(v, typ) or isinstance(v, bool) and typ is not bool:
        raise UserError(f"{where}: key '{key}' must be {typ.__name__}, got {type(v).__name__} {v!r}")
    return v


def _keys(cls, raw: dict, where: str):
    """Check ``raw``'s keys against ``cls``'s fields (plus "comment"); ``get(key)``: its value or the default."""
    known = {f.name: f for f in fields(cls)}
    for k in raw:
        if k not in known and k != "comment":
            raise UserError(f"{where}: unknown key '{k}'")
    for name, f in known.items():
        if f.default is MISSING and f.default_factory is MISSING and name not in raw:
            raise UserError(f"{where}: missing key '{name}'")

    def get(key: str):
        if key in raw:
            return raw[key]
        f = known[key]
        return f.default_factory() if f.default_factory is not MISSING else f.default

    return get


def _motion_level(v, key: str, what: str, where: str, kind: str, motion_prob: float) -> float:
    """A motion-frame key of a stage: a level in [0, 1] that needs a 'dit' stage carrying motion frames."""
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0.0 <= v <= 1.0:
        raise UserError(f"{where}: key '{key}' must be {what} in [0, 1], got {v!r}")
    if v and (kind != "dit" or not motion_prob):
        raise UserError(f"{where}: key '{key}' needs a 'dit' stage with 'motion_prob' > 0")
    return float(v)


def parse_recipe(raw: dict, where: str) -> Recipe:
    from models.config import PRESETS

    if not isinstance(raw, dict):
        raise UserError(f"{where}: a recipe is a JSON object")
    get = _keys(Recipe, raw, where)
    preset = _need(raw, "preset", str, where)
    if preset not in PRESETS:
        raise UserError(f"{where}: key 'preset': unknown preset '{preset}' (known: {', '.join(PRESETS)})")
    stages = []
    raw_stages = _need(raw, "stages", list, where)
    if not raw_stages:
        raise UserError(f"{where}: key 'stages' is empty")
    for i, s in enumerate(raw_stages):
        w = f"{where}: stages[{i}]"
        if not isinstance(s, dict):
            raise UserError(f"{w}: must be an object")
        sget = _keys(Stage, s, w)
        kind = _need(s, "kind", str, w)
        if kind not in STAGE_KINDS:
            raise UserError(f"{w}: key 'kind' must be one of {STAGE_KINDS}, got '{kind}'")
        keep = sget("keep")
        if not isinstance(keep, dict):
            raise UserError(f"{w}: key 'keep' must be an object of ratios")
        for c, r in keep.items():
            if c not in CONDITIONS:
                raise UserError(f"{w}: key 'keep.{c}': unknown condition (known: {', '.join(CONDITIONS)})")
            if not isinstance(r, (int, float)) or isinstance(r, bool) or not 0.0 <= r <= 1.0:
                raise UserError(f"{w}: key 'keep.{c}' must be a ratio in [0, 1], got {r!r}")
        steps = _need(s, "steps", int, w)
        if steps < 0:
            raise UserError(f"{w}: key 'steps' must be >= 0")
        seg = int(sget("segment_frames"))
        if seg and (seg - 1) % 4:
            raise UserError(f"{w}: key 'segment_frames' must be 1 + 4k, got {seg}")
        crop = sget("crop")
        if not isinstance(crop, int) or isinstance(crop, bool) or crop < 0 or crop % 16:
            raise UserError(f"{w}: key 'crop' must be a multiple of 16 pixels (0: whole frames), got {crop!r}")
        cache_windows = sget("cache_windows")
        if not isinstance(cache_windows, int) or isinstance(cache_windows, bool) or cache_windows < 0:
            raise UserError(f"{w}: key 'cache_windows' must be a count >= 0, got {cache_windows!r}")
        if cache_windows and kind != "dit":
            raise UserError(f"{w}: key 'cache_windows' applies to 'dit' stages only")
        decoder_only = sget("decoder_only")
        if not isinstance(decoder_only, bool) or (decoder_only and kind != "vae"):
            raise UserError(f"{w}: key 'decoder_only' is true or false, and applies to 'vae' stages only")
        face_crops = sget("face_crops")
        if not isinstance(face_crops, (int, float)) or isinstance(face_crops, bool) or not 0.0 <= face_crops <= 1.0:
            raise UserError(f"{w}: key 'face_crops' must be a share in [0, 1], got {face_crops!r}")
        if face_crops and not crop:
            raise UserError(f"{w}: key 'face_crops' needs 'crop' (the size of the crops to centre on the face)")
        stage_mouth = _weight(s, "mouth_weight", w) if s.get("mouth_weight") is not None else None
        mp = float(sget("motion_prob"))
        if not 0.0 <= mp <= 1.0:
            raise UserError(f"{w}: key 'motion_prob' must be in [0, 1]")
        motion_noise = _motion_level(sget("motion_noise"), "motion_noise", "a noise level", w, kind, mp)
        motion_anchor = _motion_level(sget("motion_anchor"), "motion_anchor", "a share", w, kind, mp)
        lip_pixel_weight = _weight(s, "lip_pixel_weight", w)
        if lip_pixel_weight and kind != "dit":
            raise UserError(f"{w}: key 'lip_pixel_weight' applies to 'dit' stages only")
        audio_lr_mult = sget("audio_lr_mult")
        if (not isinstance(audio_lr_mult, (int, float)) or isinstance(audio_lr_mult, bool)
                or not 0.0 < audio_lr_mult <= 100.0):
            raise UserError(f"{w}: key 'audio_lr_mult' must be a factor in (0, 100], got {audio_lr_mult!r}")
        if audio_lr_mult != 1.0 and kind != "dit":
            raise UserError(f"{w}: key 'audio_lr_mult' applies to 'dit' stages only")
        audio_mouth_weight = _weight(s, "audio_mouth_weight", w)
        if audio_mouth_weight and kind != "dit":
            raise UserError(f"{w}: key 'audio_mouth_weight' applies to 'dit' stages only")
        stages.append(Stage(
            name=str(sget("name") or f"stage{i}"), kind=kind, steps=steps, lr=_need(s, "lr", float, w),
            warmup=int(sget("warmup")), batch_size=_need(s, "batch_size", int, w),
            keep={c: float(r) for c, r in keep.items()},
            pose_only_with_audio=bool(sget("pose_only_with_audio")),
            motion_prob=mp, motion_noise=motion_noise, motion_anchor=motion_anchor,
            segment_frames=seg, crop=crop,
            cache_windows=cache_windows, decoder_only=decoder_only, face_crops=float(face_crops),
            mouth_weight=stage_mouth, lip_pixel_weight=lip_pixel_weight, audio_lr_mult=float(audio_lr_mult),
            audio_mouth_weight=audio_mouth_weight,
        ))
    recipe = Recipe(
        name=str(get("name") or Path(where).stem), preset=preset, seed=int(get("seed")),
        weight_decay=float(get("weight_decay")), grad_clip=float(get("grad_clip")),
        ema_decay=float(get("ema_decay")), min_lr_ratio=float(get("min_lr_ratio")),
        stages=tuple(stages), num_workers=int(get("num_workers")), log_every=int(get("log_every")),
        checkpoint_every=int(get("checkpoint_every")), vae_kl_weight=float(get("vae_kl_weight")),
        mouth_weight=_weight(raw, "mouth_weight", where), precision=_precision(raw, where),
        architecture=_architecture(raw, preset, where),
    )
    if any(st.audio_mouth_weight for st in stages) and not recipe.model_config().dit.mouth_head:
        raise UserError(f"{where}: key 'audio_mouth_weight' needs a model with a lip-reading head "
                        f"(dit.mouth_head > 0); preset '{preset}' has none")
    return recipe


def _architecture(raw: dict, preset: str, where: str) -> dict:
    """The recipe's changes to its preset's architecture, checked by building the config once."""
    from models.config import get_preset, with_overrides

    v = raw.get("architecture", {})
    if not isinstance(v, dict):
        raise UserError(f"{where}: key 'architecture' must be an object such as {{\"dit\": {{\"patch_size\": 1}}}}")
    if v:
        try:
            cfg = with_overrides(get_preset(preset), v)
            import torch

            from models.model import OmniHuman

            with torch.device("meta"):
                OmniHuman(cfg)
        except (ValueError, TypeError) as e:
            raise UserError(f"{where}: key 'architecture': {e}") from None
    return v


def _precision(raw: dict, where: str) -> str:
    v = raw.get("precision", "auto")
    if v not in PRECISIONS:
        raise UserError(f"{where}: key 'precision' must be one of {', '.join(PRECISIONS)}, got {v!r}")
    return v


def _weight(raw: dict, key: str, where: str) -> float:
    """A loss weight: a number >= 0 (absent: 0)."""
    v = raw.get(key, 0.0)
    if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0:
        raise UserError(f"{where}: key '{key}' must be a number >= 0, got {v!r}")
    return float(v)


def load_recipe(path: str | os.PathLike) -> Recipe:
    p = Path(path)
    if not p.is_file():
        # A bundled recipe by name.
        bundled = Path(__file__).resolve().parent.parent.parent / "resources" / "recipes" / f"{path}.json"
        if bundled.is_file():
            p = bundled
        else:
            raise UserError(f"{p}: recipe file not found")
    try:
        raw = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{p}: not valid JSON ({e})") from None
    return parse_recipe(raw, str(p))


def lr_at(stage: Stage, step_in_stage: int, min_ratio: float) -> float:
    """Learning rate as a pure function of the step: linear warmup, then cosine to ``min_ratio``."""
    import math

    if stage.warmup and step_in_stage < stage.warmup:
        return stage.lr * (step_in_stage + 1) / stage.warmup
    span = max(1, stage.steps - stage.warmup)
    p = min(1.0, (step_in_stage - stage.warmup) / span)
    return stage.lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * p)))
