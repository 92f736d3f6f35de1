"""``python main.py info``: parameters, tokens and FLOPs per segment for every preset."""

from __future__ import annotations

import argparse

from models.config import PRESETS, ModelConfig, latent_frames


def add_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="sizes and costs of every preset")
    p.add_argument("--preset", action="append", help="only these presets")
    p.set_defaults(func=run)


def segment_cost(cfg: ModelConfig) -> dict[str, float]:
    """Measured with torch's FLOP counter on the meta device (no memory, exact matmul FLOPs)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from models.conditions.text import tokenize
    from models.dit import Conditions
    from models.model import OmniHuman

    with torch.device("meta"):
        model = OmniHuman(cfg)
    params = model.num_parameters()
    h, w = cfg.resolution_for(16 / 9 if cfg.area >= 480 * 480 else 1.0)
    frames = cfg.sampling.segment_frames
    n_lat = latent_frames(frames)
    lh, lw = h // cfg.vae.spatial_factor, w // cfg.vae.spatial_factor
    d = cfg.dit
    tokens_per_frame = (lh // d.patch_size) * (lw // d.patch_size)
    text_len = 48  # a typical prompt in bytes
    visual_tokens = tokens_per_frame * (1 + d.num_motion_latents + n_lat)
    tok, mask = tokenize(["x" * (text_len - 2)], d.text_max_len)
    with torch.device("meta"):
        cond = Conditions(
            reference=torch.empty(1, d.latent_channels, 1, lh, lw),
            motion=torch.empty(1, d.latent_channels, d.num_motion_latents, lh, lw),
            text_tokens=tok.to("meta"), text_mask=mask.to("meta"),
            audio=torch.empty(1, frames, d.audio_feature_dim),
            pose=torch.empty(1, d.pose_in_channels, frames, h, w),
        )
        x = torch.empty(1, d.latent_channels, n_lat, lh, lw)
        t = torch.empty(1)
        video = torch.empty(1, 3, frames, h, w)
    tr = model.transformer
    with torch.no_grad():
        with FlopCounterMode(display=False) as fc:
            prepared = tr.prepare(cond, n_lat)
        prep_flops = fc.get_total_flops()
        with FlopCounterMode(display=False) as fc:
            tr(x, t, prepared)
        fwd = fc.get_total_flops()
        with FlopCounterMode(display=False) as fc:
            model.vae.decoder(torch.empty(1, d.latent_channels, n_lat, lh, lw, device="meta"), None)
        dec = fc.get_total_flops()
        with FlopCounterMode(display=False) as fc:
            model.vae.encoder(video[:, :, :5], None)
        enc_motion = fc.get_total_flops()
    steps = cfg.sampling.steps
    sampling = 3 * steps * fwd
    return {
        "params_total": params["total"], "params_transformer": params["transformer"], "params_vae": params["vae"],
        "height": h, "width": w, "frames": frames, "visual_tokens": visual_tokens, "text_tokens": text_len,
        "forward_flops": fwd, "steps": steps, "sampling_flops": sampling,
        "segment_flops": sampling + prep_flops + dec + enc_motion, "vae_decode_flops": dec,
    }


def _fmt(n: float) -> str:
    for unit, div in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.2f} {unit}"
    return f"{n:.0f}"


def run(args) -> int:
    names = args.preset or list(PRESETS)
    rows = []
    for name in names:
        cfg = PRESETS[name]
        c = segment_cost(cfg)
        rows.append((name, c))
    print(f"{'preset':<8} {'params':>10} {'(dit/vae)':>16} {'frame':>9} {'frames':>6} {'tokens':>7} "
          f"{'fwd FLOP':>10} {'steps':>5} {'FLOP/segment (3 branches)':>26}")
    for name, c in rows:
        print(f"{name:<8} {_fmt(c['params_total']):>10} "
              f"{_fmt(c['params_transformer']) + '/' + _fmt(c['params_vae']):>16} "
              f"{str(c['width']) + 'x' + str(c['height']):>9} {c['frames']:>6} "
              f"{c['visual_tokens'] + c['text_tokens']:>7} {_fmt(c['forward_flops']):>10} {c['steps']:>5} "
              f"{_fmt(c['segment_flops']):>26}")
    print("tokens: reference + 2 motion + noisy latent frames, 2x2 patches, plus a 48-byte prompt; "
          "FLOP/segment: 3 guidance branches x steps forward passes + conditions + VAE (counted with "
          "torch's FLOP counter).")
    return 0
