"""The omni-condition stage plan: which conditions each training sample carries.

Per sample, each condition of the stage is kept with its recipe ratio; conditions the stage does not
list are never present. Quality flags remove only the condition they are about (a clip that fails
the lip-sync filter still trains text, reference and pose), so weak-condition data is never wasted.
With ``pose_only_with_audio`` the pose is drawn among the samples that drew audio, at the rate that
gives the recipe's overall pose ratio (the paper: pose in half of the audio-bearing samples).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from models.training.recipe import Stage


@dataclass
class ConditionDraw:
    text: torch.Tensor  # (B,) bool
    reference: torch.Tensor
    audio: torch.Tensor
    pose: torch.Tensor

    def mix_names(self) -> list[str]:
        """A label per sample, e.g. 'text+ref+audio', for logging the loss per condition mix."""
        out = []
        for i in range(len(self.text)):
            parts = [n for n, v in (("text", self.text), ("ref", self.reference), ("audio", self.audio),
                                    ("pose", self.pose)) if bool(v[i])]
            out.append("+".join(parts) or "none")
        return out


def draw_conditions(stage: Stage, audio_ok: torch.Tensor, pose_ok: torch.Tensor, has_text: torch.Tensor,
                    generator: torch.Generator) -> ConditionDraw:
    b = len(audio_ok)

    def bern(p: float) -> torch.Tensor:
        return torch.rand(b, generator=generator) < p

    keep = stage.keep
    text = bern(keep.get("text", 0.0)) & has_text
    reference = bern(keep.get("reference", 0.0))
    audio_raw = bern(keep.get("audio", 0.0))
    if stage.pose_only_with_audio and keep.get("audio", 0.0) > 0:
        pose_raw = audio_raw & bern(min(1.0, keep.get("pose", 0.0) / keep["audio"]))
    else:
        pose_raw = bern(keep.get("pose", 0.0))
    audio = audio_raw & audio_ok.bool()
    pose = pose_raw & pose_ok.bool()
    return ConditionDraw(text=text, reference=reference, audio=audio, pose=pose)
