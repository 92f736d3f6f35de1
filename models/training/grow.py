"""Grow a trained model's latent space: more latent channels, the same behaviour at the start.

A model whose VAE latent is too small to hold a detail (toon-s's 8 channels and the mouth) need not
be trained again from nothing. The grown model keeps every trained weight; the new channels start
unused:

* the encoder's new mean rows are small (a scaled copy of the old rows plus noise, so that the
  new channels carry something the decoder can learn to use); their log-variance rows copy the
  old ones;
* the decoder's input columns for the new channels are zero, so decoding ignores them;
* the transformer's patch embedding has zero columns for them, and its output layer zero rows:
  the velocity of the old channels is unchanged, the new channels' velocity starts at zero;
* the new channels' latent statistics are mean 0, std 1 until a VAE stage recalibrates them.

Fine-tuning then teaches the VAE to put what the old channels lose into the new ones (with the
recipe's weights: the lips) and the transformer to generate them.
"""

from __future__ import annotations

import torch

from models.config import ModelConfig
from models.errors import UserError


def growable(old: ModelConfig, new: ModelConfig) -> bool:
    """True when ``new`` differs from ``old`` only by more latent channels (VAE and transformer alike)."""
    o, n = old.to_dict(), new.to_dict()
    if o["cond"] != n["cond"]:
        return False
    for part in ("vae", "dit"):
        a, b = dict(o[part]), dict(n[part])
        ca, cb = a.pop("latent_channels"), b.pop("latent_channels")
        if a != b or cb <= ca:
            return False
    return o["vae"]["latent_channels"] == o["dit"]["latent_channels"] and \
        n["vae"]["latent_channels"] == n["dit"]["latent_channels"]


def grow_latent_state(old_state: dict[str, torch.Tensor], old: ModelConfig, new: ModelConfig,
                      new_state: dict[str, torch.Tensor], seed: int = 0) -> dict[str, torch.Tensor]:
    """The grown model's state dict: ``old_state`` (a model of ``old``) mapped onto the shapes of
    ``new_state`` (a freshly built model of ``new``), as the module docstring describes."""
    if not growable(old, new):
        raise UserError(f"cannot grow a '{old.name}' model into '{new.name}': only the number of latent channels "
                        "may differ, and it must grow")
    c0, c1 = old.vae.latent_channels, new.vae.latent_channels
    pp = new.dit.patch_size ** 2
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for key, target in new_state.items():
        src = old_state[key].to(torch.float32)
        if src.shape == target.shape:
            out[key] = src.clone()
            continue
        w = torch.zeros(target.shape, dtype=torch.float32)
        if key.startswith("vae.encoder.conv_out."):  # rows: [mean c, log-variance c]
            w[:c0] = src[:c0]
            w[c1:c1 + c0] = src[c0:]
            reps = -(-(c1 - c0) // c0)
            w[c1 + c0:] = src[c0:].repeat(reps, *[1] * (src.dim() - 1))[: c1 - c0]
            if key.endswith("weight"):
                base = src[:c0].repeat(reps, *[1] * (src.dim() - 1))[: c1 - c0]
                noise = torch.randn(base.shape, generator=gen) * float(src[:c0].std())
                w[c0:c1] = 0.1 * base + 0.1 * noise
        elif key == "vae.decoder.conv_in.conv.weight":  # input columns: the latent channels
            w[:, :c0] = src
        elif key in ("vae.latent_mean", "vae.later_mean"):
            w[:c0] = src
        elif key in ("vae.latent_std", "vae.later_std"):
            w.fill_(1.0)
            w[:c0] = src
        elif key == "transformer.patch_embed.weight":  # columns: (latent c, pose[, reference c]) x patch
            pose = new.dit.pose_channels * pp
            w[:, :c0 * pp] = src[:, :c0 * pp]
            w[:, c1 * pp:c1 * pp + pose] = src[:, c0 * pp:c0 * pp + pose]
            if new.dit.ref_concat:
                w[:, c1 * pp + pose:c1 * pp + pose + c0 * pp] = src[:, c0 * pp + pose:]
        elif key in ("transformer.final.weight", "transformer.final.bias"):  # rows: latent c x patch
            w[:c0 * pp] = src
        else:
            raise UserError(f"cannot grow the latent: no rule for weight '{key}' "
                            f"{tuple(src.shape)} -> {tuple(target.shape)}")
        out[key] = w
    return out


# Transformer switches whose new weights start at zero (or are used only in training), so a model
# trained without them is the same function with them switched on.
SWITCHES = ("ref_concat", "audio_adaln", "mouth_head")
# Switches that keep every weight's shape but change what the network is asked (the flow's space):
# a model trained without them is a starting point that fine-tuning adapts, not the same function.
RETARGETS = ("ref_residual",)


def switchable(old: ModelConfig, new: ModelConfig) -> bool:
    """True when ``new`` is ``old`` with one or more of ``SWITCHES`` or ``RETARGETS`` turned on
    (nothing else differs)."""
    o, n = old.to_dict(), new.to_dict()
    if o["vae"] != n["vae"] or o["cond"] != n["cond"]:
        return False
    a, b = dict(o["dit"]), dict(n["dit"])
    turned = [k for k in SWITCHES + RETARGETS if a.get(k) != b.get(k)]
    if not turned or any(a.get(k) for k in turned):
        return False  # nothing switched, or a switch changed from one "on" to another
    for k in SWITCHES + RETARGETS:
        a.pop(k, None), b.pop(k, None)
    return a == b


def switch_on_state(old_state: dict[str, torch.Tensor], new_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``old_state`` on the shapes of ``new_state`` (a fresh model with the switches on): every old
    weight kept; the patch embedding's new reference columns zero; new layers as freshly built
    (their outputs start at zero, see ``OmniHumanTransformer.zero_initialised``)."""
    out: dict[str, torch.Tensor] = {}
    for key, target in new_state.items():
        if key not in old_state:
            out[key] = target.clone()
            continue
        src = old_state[key].to(target.dtype)
        if src.shape == target.shape:
            out[key] = src.clone()
        elif key == "transformer.patch_embed.weight" and src.shape[0] == target.shape[0] \
                and src.shape[1] < target.shape[1]:
            w = torch.zeros_like(target)
            w[:, :src.shape[1]] = src
            out[key] = w
        else:
            raise UserError(f"cannot switch on the transformer's new paths: weight '{key}' "
                            f"{tuple(src.shape)} -> {tuple(target.shape)}")
    return out
