"""MMDiT blocks and the OmniHuman transformer.

Visual sequence, in this order: reference tokens, motion-frame tokens, noisy video tokens (each a
2x2 patch of one latent frame). Text tokens form a second stream with their own weights that meets
the visual stream in one joint attention per block (MMDiT). Per block, the noisy tokens of latent
frame f also cross-attend to the audio tokens of f only (its 4 video frames +- ``audio_context``).
Pose features from the pose guider are stacked on the noisy latent's channels before the patch
embedding. Clean tokens (reference, motion) are modulated with timestep 0 and are not predicted.

RoPE positions (t, h, w): reference t = 0, motion frames t = 1..M, noisy frames t = M+1.. where
M = ``num_motion_latents`` is reserved whether or not motion frames are present, so a first segment
and a later one place their noisy frames alike. Text tokens sit at (0, 0, 0).

Shapes: latents ``(B, C, F, h, w)`` with F latent frames; video-rate conditions have
``T = 1 + 4 (F - 1)`` frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from models.conditions.text import TextEncoder
from models.config import DiTConfig
from models.rope import apply_rope, grid_positions, rope_frequencies

REFERENCE, MOTION, NOISY = 0, 1, 2


@dataclass
class Conditions:
    """Everything a forward pass is conditioned on, for a batch of B.

    reference:  ``(B, C, 1, h, w)`` normalised VAE latent of the reference image (always present).
    motion:     ``(B, C, M, h, w)`` latents of the previous segment's last frames, or None.
    text_tokens/text_mask: ``(B, L)`` byte ids and validity, or None for no text at all.
    audio:      ``(B, T, F_audio)`` per-video-frame features, or None.
    pose:       ``(B, P, T, H, W)`` keypoint heatmaps at video resolution, or None.
    text_keep/audio_keep/pose_keep: ``(B,)`` bool, per-sample switches (None: all on). A switched
                off condition is absent for that sample: what training drop and guidance use.
    """

    reference: torch.Tensor
    motion: torch.Tensor | None = None
    text_tokens: torch.Tensor | None = None
    text_mask: torch.Tensor | None = None
    audio: torch.Tensor | None = None
    pose: torch.Tensor | None = None
    text_keep: torch.Tensor | None = None
    audio_keep: torch.Tensor | None = None
    pose_keep: torch.Tensor | None = None
    # ``(B, C, F, h, w)``: the reference encoded as a still video of the segment's length
    # (``OmniHuman.still_latents``). A causal VAE codes its first latent frame (one video frame)
    # and the later ones (four frames each) differently, so the reference latent itself is not what
    # an unmoving frame looks like at latent frame 1 or 2 (RMS difference 1.2-1.3 on the face-s VAE,
    # more than the latents' own RMS). ``ref_concat`` and ``ref_residual`` use this when given.
    still: torch.Tensor | None = None


@dataclass
class PreparedConditions:
    """Conditions turned into model features once per sampling run (they do not depend on t)."""

    reference: torch.Tensor  # (B, C, 1, h, w)
    motion: torch.Tensor | None  # (B, C, M, h, w)
    text: torch.Tensor | None  # (B, L, D)
    text_valid: torch.Tensor | None  # (B, L) bool
    audio: torch.Tensor  # (B, F, W, D) audio tokens per latent frame (null tokens where absent)
    pose: torch.Tensor  # (B, Cp, F, h, w) pose features (zeros where absent)
    still: torch.Tensor | None = None  # (B, C, F, h, w) the reference as a still video (Conditions.still)


class ModulationOut(NamedTuple):
    shift: torch.Tensor
    scale: torch.Tensor
    gate: torch.Tensor


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of flow time ``t`` in [0, 1] (scaled by 1000), ``(B,) -> (B, dim)``."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = 1000.0 * t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight


class MLP(nn.Sequential):
    def __init__(self, dim: int, hidden: int, out: int | None = None) -> None:
        super().__init__(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, out or dim))


class StreamWeights(nn.Module):
    """One MMDiT stream's weights in a block: qkv with QK-norm, output projection, MLP, and the
    block's learned modulation offset (added to the shared timestep modulation: adaLN-single)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.q_norm = RMSNorm(dim // heads)
        self.k_norm = RMSNorm(dim // heads)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = MLP(dim, int(dim * mlp_ratio))
        self.mod_offset = nn.Parameter(torch.zeros(6, dim))

    def modulation(self, shared: torch.Tensor, tokens_per_frame: int = 0) -> tuple[ModulationOut, ModulationOut]:
        """``shared`` ``(B, 6, D)`` -> (attention, MLP) modulation, each ``(B, 1, D)``; or per frame,
        ``(B, F, 6, D)`` -> each ``(B, F * tokens_per_frame, D)`` (every token takes its frame's)."""
        if shared.dim() == 3:
            m = (shared + self.mod_offset).unsqueeze(2).unbind(1)
        else:
            m = (shared + self.mod_offset).repeat_interleave(tokens_per_frame, dim=1).unbind(2)
        return ModulationOut(*m[:3]), ModulationOut(*m[3:])

    def qkv_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        return self.q_norm(q), self.k_norm(k), v  # each (B, H, N, Dh)


class AudioCrossAttention(nn.Module):
    """Noisy tokens of latent frame f attend to the audio tokens of f only.

    Queries ``(B, F, S, D)`` (S tokens per frame), audio ``(B, F, W, D)``. The output projection
    starts at zero, so an untrained audio path leaves the network unchanged.
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.q_norm = RMSNorm(dim // heads)
        self.k_norm = RMSNorm(dim // heads)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        b, f, s, d = x.shape
        w = audio.shape[2]
        h, dh = self.heads, d // self.heads
        q = self.q(self.norm(x)).view(b * f, s, h, dh).transpose(1, 2)
        k, v = self.kv(audio).view(b * f, w, 2, h, dh).permute(2, 0, 3, 1, 4)
        o = F.scaled_dot_product_attention(self.q_norm(q), self.k_norm(k), v)
        return self.out(o.transpose(1, 2).reshape(b, f, s, d))


class MMDiTBlock(nn.Module):
    def __init__(self, cfg: DiTConfig) -> None:
        super().__init__()
        self.heads = cfg.num_heads
        self.vis = StreamWeights(cfg.width, cfg.num_heads, cfg.mlp_ratio)
        self.txt = StreamWeights(cfg.width, cfg.num_heads, cfg.mlp_ratio)
        self.audio_attn = AudioCrossAttention(cfg.width, cfg.num_heads)

    def forward(
        self,
        x: torch.Tensor,  # (B, N, D) visual tokens: clean first, then noisy
        txt: torch.Tensor | None,  # (B, L, D)
        mod_vis_clean: torch.Tensor,  # (B, 6, D) shared modulation at t = 0
        mod_vis_noisy: torch.Tensor,  # (B, 6, D) shared modulation at t, or (B, F, 6, D) per frame
        mod_txt: torch.Tensor,  # (B, 6, D)
        n_clean: int,
        frames: int,  # noisy latent frames F
        rope: torch.Tensor,  # (1, L + N, Dh/2, 2)
        key_mask: torch.Tensor | None,  # (B, 1, 1, L + N) bool or None
        audio: torch.Tensor,  # (B, F, W, D)
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        per_frame = (x.shape[1] - n_clean) // frames
        (a_c, m_c), (a_n, m_n) = self.vis.modulation(mod_vis_clean), self.vis.modulation(mod_vis_noisy, per_frame)

        def seg_mod(y: torch.Tensor, mc: ModulationOut, mn: ModulationOut) -> torch.Tensor:
            return torch.cat([modulate(y[:, :n_clean], mc.shift, mc.scale),
                              modulate(y[:, n_clean:], mn.shift, mn.scale)], dim=1)

        def seg_gate(y: torch.Tensor, mc: ModulationOut, mn: ModulationOut) -> torch.Tensor:
            return torch.cat([y[:, :n_clean] * mc.gate, y[:, n_clean:] * mn.gate], dim=1)

        # Joint attention over [text | visual].
        qv, kv, vv = self.vis.qkv_heads(seg_mod(self.vis.norm1(x), a_c, a_n))
        n_txt = 0
        if txt is not None:
            a_t, m_t = self.txt.modulation(mod_txt)
            qt, kt, vt = self.txt.qkv_heads(modulate(self.txt.norm1(txt), a_t.shift, a_t.scale))
            n_txt = txt.shape[1]
            q, k, v = torch.cat([qt, qv], 2), torch.cat([kt, kv], 2), torch.cat([vt, vv], 2)
        else:
            q, k, v = qv, kv, vv
        q, k = apply_rope(q, rope), apply_rope(k, rope)
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask)
        o = o.transpose(1, 2).flatten(2)  # (B, L + N, D)

        x = x + seg_gate(self.vis.proj(o[:, n_txt:]), a_c, a_n)
        # Audio: only the noisy tokens, frame by frame.
        noisy = x[:, n_clean:]
        b, n, d = noisy.shape
        noisy = noisy + self.audio_attn(noisy.view(b, frames, n // frames, d), audio).view(b, n, d)
        x = torch.cat([x[:, :n_clean], noisy], dim=1)
        x = x + seg_gate(self.vis.mlp(seg_mod(self.vis.norm2(x), m_c, m_n)), m_c, m_n)

        if txt is not None:
            txt = txt + a_t.gate * self.txt.proj(o[:, :n_txt])
            txt = txt + m_t.gate * self.txt.mlp(modulate(self.txt.norm2(txt), m_t.shift, m_t.scale))
        return x, txt


class PoseGuider(nn.Module):
    """Heatmaps ``(B, P, T, H, W)`` -> pose features ``(B, Cp, F, H/s, W/s)``, s the VAE's spatial factor.

    Per video frame: a conv stack that is s x in space (one stride-2 conv per guider width). Then
    pooled onto latent frames with the VAE's grouping (latent 0 <- frame 0, latent f <- frames
    4f-3..4f), concatenated with the previous and next latent frame's features, and mapped by a
    zero-initialised 1x1 conv.
    """

    def __init__(self, cfg: DiTConfig) -> None:
        super().__init__()
        # One stride-2 conv per channel width: (16, 32, 64) is 8x in space, (16, 32) is 4x (the VAE's factor).
        chans = list(cfg.pose_guider_channels)
        layers: list[nn.Module] = [nn.Conv2d(cfg.pose_in_channels, chans[0], 3, padding=1), nn.SiLU()]
        for c_in, c_out in zip(chans, chans[1:] + chans[-1:], strict=True):
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.SiLU()]
        self.convs = nn.Sequential(*layers)
        self.out = nn.Conv3d(3 * chans[-1], cfg.pose_channels, 1)

    def forward(self, heatmaps: torch.Tensor, frame_chunk: int = 16) -> torch.Tensor:
        b, p, t = heatmaps.shape[:3]
        frames = heatmaps.transpose(1, 2).flatten(0, 1)  # (B*T, P, H, W)
        feats = torch.cat([self.convs(frames[i : i + frame_chunk]) for i in range(0, frames.shape[0], frame_chunk)])
        feats = feats.unflatten(0, (b, t)).transpose(1, 2)  # (B, C, T, h, w)
        pooled = pool_to_latent_frames(feats)
        prev = F.pad(pooled, (0, 0, 0, 0, 1, 0))[:, :, :-1]
        nxt = F.pad(pooled, (0, 0, 0, 0, 0, 1))[:, :, 1:]
        return self.out(torch.cat([prev, pooled, nxt], dim=1))


def pool_to_latent_frames(x: torch.Tensor) -> torch.Tensor:
    """Mean over each latent frame's video frames: ``(B, C, 1+4k, ...) -> (B, C, 1+k, ...)``."""
    t = x.shape[2]
    if (t - 1) % 4:
        raise ValueError(f"video-rate conditions need 1 + 4k frames, got {t}")
    head = x[:, :, :1]
    if t == 1:
        return head
    rest = x[:, :, 1:].unflatten(2, ((t - 1) // 4, 4)).mean(3)
    return torch.cat([head, rest], dim=2)


def visual_positions(n_motion: int, frames: int, hp: int, wp: int, reserved_motion: int, device=None) -> torch.Tensor:
    """RoPE ids ``(N, 3)`` of the visual sequence [reference | motion | noisy] in token order.

    Reference: temporal index 0, ordinary spatial indices. Motion frames: 1..n_motion. Noisy
    frames: after the ``reserved_motion`` slots, so they sit alike with or without motion frames.
    """
    t_ids = [0] + list(range(1, 1 + n_motion)) + list(range(1 + reserved_motion, 1 + reserved_motion + frames))
    return grid_positions(t_ids, hp, wp, device=device)


def audio_window_indices(frames: int, video_frames: int, context: int, device=None) -> torch.Tensor:
    """Video-frame index of every audio token: ``(F, 4 + 2 context)``; out of range -> -1.

    Latent frame f owns video frames 4f-3..4f (frame 0 alone for f = 0); its window adds
    ``context`` frames on each side.
    """
    f = torch.arange(frames, device=device)[:, None]
    offs = torch.arange(-3 - context, 1 + context, device=device)[None]
    idx = 4 * f + offs
    # Latent frame 0 owns only video frame 0: its window is [-context, context].
    first = (f == 0) & (offs < -context)
    idx = torch.where(first | (idx < 0) | (idx >= video_frames), torch.full_like(idx, -1), idx)
    return idx


class OmniHumanTransformer(nn.Module):
    """The one-stage conditioned video diffusion transformer (velocity prediction)."""

    def __init__(self, cfg: DiTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d, p = cfg.width, cfg.patch_size
        self.patch_embed = nn.Linear(self.input_channels * p * p, d)
        self.type_embed = nn.Parameter(torch.zeros(3, d))
        self.time_mlp = nn.Sequential(nn.Linear(256, d), nn.SiLU(), nn.Linear(d, d))
        self.vis_mod = nn.Linear(d, 6 * d)  # shared adaLN projections (per-block offsets in blocks)
        self.txt_mod = nn.Linear(d, 6 * d)
        self.final_mod = nn.Linear(d, 2 * d)
        self.final_norm = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.final = nn.Linear(d, cfg.latent_channels * p * p)

        self.text_encoder = TextEncoder(
            cfg.text_vocab, cfg.text_width, cfg.text_depth, cfg.text_heads, cfg.text_max_len
        )
        self.text_proj = nn.Sequential(nn.LayerNorm(cfg.text_width), nn.Linear(cfg.text_width, d))
        self.audio_proj = MLP(cfg.audio_feature_dim, cfg.audio_hidden, d)
        self.audio_null = nn.Parameter(torch.zeros(d))  # the absent-audio token
        self.audio_pad = nn.Parameter(torch.zeros(d))  # outside the clip
        self.audio_pos = nn.Parameter(torch.zeros(cfg.audio_window, d))
        # Training-time lip reading from the audio features (see DiTConfig.mouth_head).
        self.audio_mouth = nn.Conv1d(d, cfg.mouth_head, 5, padding=2) if cfg.mouth_head else None
        # Per-frame audio modulation of the noisy tokens (see DiTConfig.audio_adaln).
        self.audio_mod = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d)) if cfg.audio_adaln else None
        self.pose_guider = PoseGuider(cfg)
        self.blocks = nn.ModuleList(MMDiTBlock(cfg) for _ in range(cfg.depth))
        self.gradient_checkpointing = False
        self.initialize_weights()

    @property
    def input_channels(self) -> int:
        """Channels per latent cell before the patch embedding: latent, pose features, and (with
        ``ref_concat``) the reference latent."""
        c = self.cfg.latent_channels + self.cfg.pose_channels
        return c + self.cfg.latent_channels if self.cfg.ref_concat else c

    def to_flow(self, z: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        """Latents ``(B, C, F, h, w)`` -> the space the flow runs in (``DiTConfig.ref_residual``);
        ``ref`` is the reference as a still video (``Conditions.still``) or its one-frame latent."""
        return z - ref.to(z.dtype) if self.cfg.ref_residual else z

    def from_flow(self, x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        """The sampler's output -> latents (the inverse of ``to_flow``)."""
        return x + ref.to(x.dtype) if self.cfg.ref_residual else x

    def audio_path_parameters(self) -> list[nn.Parameter]:
        """The parameters that exist only to bring in the audio: its projection, its null, pad and
        position tokens, and every block's audio cross-attention (a recipe may train them faster)."""
        mods = [self.audio_proj] + [b.audio_attn for b in self.blocks]
        mods += [m for m in (self.audio_mouth, self.audio_mod) if m is not None]
        params = [p for m in mods for p in m.parameters()] + [self.audio_null, self.audio_pad, self.audio_pos]
        return [p for p in params if p.requires_grad]

    # -- initialisation in one place ---------------------------------------------------------

    def zero_initialised(self) -> list[nn.Module]:
        """Layers that start at zero so an untrained path leaves the network unchanged."""
        return ([self.pose_guider.out] + [b.audio_attn.out for b in self.blocks]
                + ([self.audio_mod[1]] if self.audio_mod is not None else []))

    def initialize_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        self.text_encoder.apply(_init_small)
        nn.init.normal_(self.type_embed, std=0.02)
        nn.init.normal_(self.audio_null, std=0.02)
        nn.init.normal_(self.audio_pad, std=0.02)
        nn.init.normal_(self.audio_pos, std=0.02)
        nn.init.normal_(self.time_mlp[0].weight, std=0.02)
        nn.init.normal_(self.time_mlp[2].weight, std=0.02)
        # adaLN-Zero: all modulation starts at zero, so every block starts as the identity.
        for lin in (self.vis_mod, self.txt_mod, self.final_mod, self.final):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)
        for b in self.blocks:
            nn.init.zeros_(b.vis.mod_offset)
            nn.init.zeros_(b.txt.mod_offset)
        for m in self.zero_initialised():
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)
        if self.cfg.ref_concat:  # the reference columns start unused (a switched-on model starts as before)
            p2 = self.cfg.patch_size ** 2
            with torch.no_grad():
                self.patch_embed.weight[:, -self.cfg.latent_channels * p2:].zero_()

    def read_lips(self, audio: torch.Tensor) -> torch.Tensor:
        """The lip-reading head: per-video-frame audio features ``(B, T, F_audio)`` -> mouth
        parameters ``(B, T, mouth_head)``, from the same projected features the audio
        cross-attention reads (training supervises it; generation does not use it)."""
        if self.audio_mouth is None:
            raise ValueError("this transformer has no lip-reading head (its config's mouth_head is 0)")
        feats = self.audio_proj(audio.to(self.patch_embed.weight.dtype))  # (B, T, D)
        return self.audio_mouth(feats.transpose(1, 2)).transpose(1, 2)

    # -- conditions ---------------------------------------------------------------------------

    def prepare(self, cond: Conditions, frames: int) -> PreparedConditions:
        """Encode text, audio and pose once for a run with ``frames`` noisy latent frames."""
        ref = cond.reference
        b, dev = ref.shape[0], ref.device
        video_frames = 1 + 4 * (frames - 1)
        dtype = self.patch_embed.weight.dtype

        text = text_valid = None
        if cond.text_tokens is not None and cond.text_tokens.shape[1] > 0:
            mask = cond.text_mask if cond.text_mask is not None else cond.text_tokens != 0
            if cond.text_keep is not None:
                mask = mask & cond.text_keep[:, None].to(dev)
            text = self.text_proj(self.text_encoder(cond.text_tokens, mask))
            text_valid = mask

        # Audio tokens: (B, T, D) per video frame -> windows (B, F, W, D).
        d = self.cfg.width
        if cond.audio is not None:
            a = cond.audio.to(dtype)
            if a.shape[1] < video_frames:
                a = F.pad(a, (0, 0, 0, video_frames - a.shape[1]))
            per_frame = self.audio_proj(a[:, :video_frames])
            keep = cond.audio_keep if cond.audio_keep is not None else torch.ones(b, dtype=torch.bool, device=dev)
            per_frame = torch.where(keep[:, None, None].to(dev), per_frame, self.audio_null.to(per_frame.dtype))
        else:
            per_frame = self.audio_null.to(dtype).expand(b, video_frames, d)
        idx = audio_window_indices(frames, video_frames, self.cfg.audio_context, dev)  # (F, W)
        gathered = per_frame[:, idx.clamp_min(0)]  # (B, F, W, D)
        audio = torch.where((idx >= 0)[None, :, :, None], gathered, self.audio_pad.to(gathered.dtype))
        audio = audio + self.audio_pos.to(audio.dtype)

        h, w = ref.shape[-2:]
        if cond.pose is not None:
            pose = self.pose_guider(cond.pose[:, :, :video_frames].to(dtype))
            if cond.pose_keep is not None:
                pose = pose * cond.pose_keep.view(b, 1, 1, 1, 1).to(pose.dtype)
        else:
            pose = ref.new_zeros(b, self.cfg.pose_channels, frames, h, w, dtype=dtype)
        return PreparedConditions(ref, cond.motion, text, text_valid, audio, pose, cond.still)

    # -- forward ------------------------------------------------------------------------------

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, F, h, w) -> (B, F * h/p * w/p, C * p * p)`` in (f, h, w) raster order."""
        b, c, f, h, w = x.shape
        p = self.cfg.patch_size
        x = x.view(b, c, f, h // p, p, w // p, p).permute(0, 2, 3, 5, 1, 4, 6)
        return x.reshape(b, f * (h // p) * (w // p), c * p * p)

    def unpatchify(self, x: torch.Tensor, f: int, h: int, w: int) -> torch.Tensor:
        b = x.shape[0]
        p = self.cfg.patch_size
        c = x.shape[-1] // (p * p)
        x = x.view(b, f, h // p, w // p, c, p, p).permute(0, 4, 1, 2, 5, 3, 6)
        return x.reshape(b, c, f, h, w)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: PreparedConditions) -> torch.Tensor:
        """Velocity for noisy latents ``x`` ``(B, C, F, h, w)`` at flow time ``t`` ``(B,)``."""
        b, c, frames, h, w = x.shape
        p = self.cfg.patch_size
        if h % p or w % p:
            raise ValueError(f"latent size {h}x{w} is not a multiple of the patch size {p}")
        dtype = self.patch_embed.weight.dtype
        hp, wp = h // p, w // p
        m = self.cfg.num_motion_latents

        noisy_in = [x.to(dtype), cond.pose.to(dtype)]
        if self.cfg.ref_concat:  # the reference at every noisy frame's cells (as a still video when given)
            still = cond.still if cond.still is not None else cond.reference
            noisy_in.append(still.to(dtype).expand(-1, -1, frames, -1, -1))
        noisy_in = torch.cat(noisy_in, dim=1)
        clean = [cond.reference] + ([cond.motion] if cond.motion is not None else [])
        clean = torch.cat(clean, dim=2).to(dtype)
        n_motion = clean.shape[2] - 1
        if n_motion > m:
            raise ValueError(f"{n_motion} motion latents given, the model reserves {m}")
        pad = self.input_channels - clean.shape[1]  # clean tokens carry no pose (nor a second reference)
        clean_in = torch.cat([clean, clean.new_zeros(b, pad, *clean.shape[2:])], dim=1)

        tok_clean = self.patch_embed(self.patchify(clean_in))
        tok_noisy = self.patch_embed(self.patchify(noisy_in))
        per = hp * wp
        types = torch.cat([self.type_embed[REFERENCE].expand(per, -1),
                           self.type_embed[MOTION].expand(per * n_motion, -1)])
        tok_clean = tok_clean + types
        tok_noisy = tok_noisy + self.type_embed[NOISY]
        vis = torch.cat([tok_clean, tok_noisy], dim=1)
        n_clean = tok_clean.shape[1]

        pos_vis = visual_positions(n_motion, frames, hp, wp, m, device=x.device)
        txt = cond.text
        n_txt = 0 if txt is None else txt.shape[1]
        pos = torch.cat([pos_vis.new_zeros(n_txt, 3), pos_vis]) if n_txt else pos_vis
        rope = rope_frequencies(pos, self.cfg.head_dim)[None]

        key_mask = None
        if txt is not None:
            valid = torch.cat([cond.text_valid, cond.text_valid.new_ones(b, vis.shape[1])], dim=1)
            key_mask = valid[:, None, None, :]

        temb = self.time_mlp(timestep_embedding(torch.cat([t, torch.zeros_like(t)]), 256).to(dtype))
        temb = F.silu(temb)
        vis_mod = self.vis_mod(temb).view(2 * b, 6, -1)
        mod_noisy, mod_clean = vis_mod[:b], vis_mod[b:]
        if self.audio_mod is not None:
            # Each noisy frame's own audio (its tokens averaged) shifts its modulation: (B, F, 6, D).
            heard = self.audio_mod(cond.audio.mean(2).to(dtype)).view(b, frames, 6, -1)
            mod_noisy = mod_noisy[:, None] + heard
        mod_txt = self.txt_mod(temb[:b]).view(b, 6, -1)

        for block in self.blocks:
            args = (vis, txt, mod_clean, mod_noisy, mod_txt, n_clean, frames, rope, key_mask, cond.audio)
            if self.gradient_checkpointing and torch.is_grad_enabled():
                vis, txt = checkpoint(block, *args, use_reentrant=False)
            else:
                vis, txt = block(*args)

        shift, scale = self.final_mod(temb[:b]).unsqueeze(1).chunk(2, dim=-1)
        out = self.final(modulate(self.final_norm(vis[:, n_clean:]), shift, scale))
        return self.unpatchify(out, frames, h, w).float()


def _init_small(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
