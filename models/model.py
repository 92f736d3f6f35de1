"""The OmniHuman model: causal VAE + conditioned transformer, built from one ``ModelConfig``."""

from __future__ import annotations

import torch
import torch.nn as nn

from models.config import ModelConfig
from models.dit import OmniHumanTransformer
from models.vae import CausalVAE


class OmniHuman(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.vae.latent_channels != config.dit.latent_channels:
            raise ValueError("VAE and transformer disagree on latent channels")
        if config.vae.spatial_factor not in (4, 8) or config.vae.temporal_factor != 4:
            raise ValueError("the pipeline expects a VAE that is 4x or 8x in space and 4x in time")
        if 2 ** len(config.dit.pose_guider_channels) != config.vae.spatial_factor:
            raise ValueError(f"the pose guider has {len(config.dit.pose_guider_channels)} stride-2 stages, "
                             f"so it is {2 ** len(config.dit.pose_guider_channels)}x in space; the VAE is "
                             f"{config.vae.spatial_factor}x")
        self.config = config
        self.vae = CausalVAE(config.vae)
        self.transformer = OmniHumanTransformer(config.dit)

    @property
    def uses_still(self) -> bool:
        """Whether the transformer reads the reference as a still video (``Conditions.still``)."""
        return self.config.dit.ref_concat or self.config.dit.ref_residual

    def still_latents(self, reference: torch.Tensor, video_frames: int) -> torch.Tensor:
        """The reference as a still video of ``video_frames`` frames, encoded: ``(B, C, F, h, w)``.

        ``reference`` is pixels ``(B, 3, 1, H, W)`` in [-1, 1], or a latent ``(B, C, 1, h, w)``
        (decoded first: the training cache keeps latents). A causal VAE codes its first latent frame
        and the later ones differently; this is what an unmoving person is, slot by slot.
        """
        if reference.shape[1] != 3:
            reference = self.vae.decode(reference).clamp(-1, 1)
        return self.vae.encode(reference.expand(-1, -1, video_frames, -1, -1).contiguous())

    def num_parameters(self) -> dict[str, int]:
        count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
        return {"vae": count(self.vae), "transformer": count(self.transformer), "total": count(self)}

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device
