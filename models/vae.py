"""Causal 3D VAE: 8x in space, 4x in time, ``1 + 4k`` frames <-> ``1 + k`` latent frames.

Causality comes from three choices: every 3D convolution pads time on the left only; normalisation
is per position (RMS over channels), never over time; temporal down/upsampling keeps frame 0 on its
own and groups the later frames in pairs. Hence latent frame 0 sees video frame 0 alone, and latent
frame k >= 1 sees video frames up to 4k.

Long videos are encoded and decoded in temporal chunks. Each causal convolution needs the last
``kernel_t - 1`` frames of its input from the previous chunk; those live in an explicit
``CausalCache`` passed through the call, never on the module, so memory is bounded by the chunk
size and the same module can run several streams at once. Large frames can be processed in spatial
tiles that are blended in their overlap.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.config import VAEConfig


class CausalCache:
    """Per-stream state for chunked causal processing: the tail frames each conv layer saw last."""

    def __init__(self) -> None:
        self.tails: dict[int, torch.Tensor] = {}
        self.first_chunk = True

    def advance(self) -> None:
        self.first_chunk = False


class ChannelRMSNorm(nn.Module):
    """RMS norm over channels at every (t, h, w) position of ``(B, C, T, H, W)``."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rms = x.float().pow(2).mean(1, keepdim=True).add(self.eps).rsqrt()
        return (x.float() * rms).type_as(x) * self.weight.view(1, -1, 1, 1, 1)


class CausalConv3d(nn.Module):
    """3D convolution padded on the left in time (zeros, or the cached tail of the previous chunk)."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, kernel_t: int | None = None) -> None:
        super().__init__()
        kt = kernel if kernel_t is None else kernel_t
        self.kt, self.pad = kt, kernel // 2
        self.conv = nn.Conv3d(cin, cout, (kt, kernel, kernel), padding=(0, self.pad, self.pad))
        self.cache_key = -1  # assigned once by the VAE so each layer has its slot in a CausalCache

    def forward(self, x: torch.Tensor, cache: CausalCache | None) -> torch.Tensor:
        if self.kt == 1:
            return self.conv(x)
        need = self.kt - 1
        prev = cache.tails.get(self.cache_key) if cache is not None else None
        if prev is None:
            if cache is not None:
                pad = x.new_zeros(x.shape[0], x.shape[1], need, x.shape[3], x.shape[4])
                cache.tails[self.cache_key] = torch.cat([pad, x], dim=2)[:, :, -need:].detach()
            return self._zero_padded(x)
        xp = torch.cat([prev, x], dim=2)
        if cache is not None:
            cache.tails[self.cache_key] = xp[:, :, -need:].detach()
        return self.conv(xp)

    def _zero_padded(self, x: torch.Tensor) -> torch.Tensor:
        """The convolution of ``x`` after ``kt - 1`` zero frames, without multiplying the zeros:
        output frame ``j < kt - 1`` uses only the kernel's last ``j + 1`` taps. A single frame (a
        reference image, image training) costs one tap instead of ``kt``."""
        need, t = self.kt - 1, x.shape[2]
        w, b = self.conv.weight, self.conv.bias
        outs = [F.conv3d(x[:, :, : j + 1], w[:, :, need - j :], b, padding=(0, self.pad, self.pad))
                for j in range(min(need, t))]
        if t > need:
            outs.append(self.conv(x))
        return outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.norm1 = ChannelRMSNorm(cin)
        self.conv1 = CausalConv3d(cin, cout)
        self.norm2 = ChannelRMSNorm(cout)
        self.conv2 = CausalConv3d(cout, cout)
        self.skip = nn.Conv3d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, cache: CausalCache | None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)), cache)
        h = self.conv2(F.silu(self.norm2(h)), cache)
        return self.skip(x) + h


def _per_frame(fn, x: torch.Tensor) -> torch.Tensor:
    """Apply a 2D op to every frame of ``(B, C, T, H, W)``."""
    b, _, t = x.shape[:3]
    y = fn(x.transpose(1, 2).flatten(0, 1))
    return y.unflatten(0, (b, t)).transpose(1, 2)


class Downsample(nn.Module):
    """2x in space (strided conv per frame); optionally 2x in time (frame 0 alone, then pairs)."""

    def __init__(self, channels: int, temporal: bool) -> None:
        super().__init__()
        self.spatial = nn.Conv2d(channels, channels, 3, stride=2, padding=0)
        self.temporal = nn.Conv3d(channels, channels, (2, 1, 1), stride=(2, 1, 1)) if temporal else None

    def forward(self, x: torch.Tensor, cache: CausalCache | None) -> torch.Tensor:
        x = _per_frame(lambda f: self.spatial(F.pad(f, (0, 1, 0, 1))), x)
        if self.temporal is None:
            return x
        first = cache is None or cache.first_chunk
        head, rest = (x[:, :, :1], x[:, :, 1:]) if first else (x[:, :, :0], x)
        if rest.shape[2] % 2:
            raise ValueError("temporal chunk must hold 1 + 4k frames first, then multiples of 4")
        return torch.cat([head, self.temporal(rest)], dim=2) if rest.shape[2] else head


class Upsample(nn.Module):
    """2x in space (nearest + conv per frame); optionally 2x in time (frame 0 stays one frame)."""

    def __init__(self, channels: int, temporal: bool) -> None:
        super().__init__()
        self.spatial = nn.Conv2d(channels, channels, 3, padding=1)
        self.temporal = nn.Conv3d(channels, 2 * channels, 1) if temporal else None

    def forward(self, x: torch.Tensor, cache: CausalCache | None) -> torch.Tensor:
        if self.temporal is not None:
            first = cache is None or cache.first_chunk
            head, rest = (x[:, :, :1], x[:, :, 1:]) if first else (x[:, :, :0], x)
            if rest.shape[2]:
                b, c, t, h, w = rest.shape
                # (B, 2C, T, H, W) -> (B, C, 2T, H, W): each latent frame becomes two frames
                r = self.temporal(rest).view(b, 2, c, t, h, w).permute(0, 2, 3, 1, 4, 5).reshape(b, c, 2 * t, h, w)
                x = torch.cat([head, r], dim=2)
            else:
                x = head
        return _per_frame(lambda f: self.spatial(F.interpolate(f, scale_factor=2.0, mode="nearest")), x)


class Encoder(nn.Module):
    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        chans = [cfg.base_channels * m for m in cfg.channel_mults]
        self.conv_in = CausalConv3d(cfg.in_channels, chans[0])
        self.blocks = nn.ModuleList()
        self.downs = nn.ModuleList()
        cin = chans[0]
        for i, c in enumerate(chans):
            self.blocks.append(nn.ModuleList(ResBlock(cin if j == 0 else c, c) for j in range(cfg.num_res_blocks)))
            cin = c
            if i < len(chans) - 1:
                self.downs.append(Downsample(c, cfg.temporal_downsample[i]))
        self.mid = nn.ModuleList([ResBlock(cin, cin), ResBlock(cin, cin)])
        self.norm_out = ChannelRMSNorm(cin)
        self.conv_out = CausalConv3d(cin, 2 * cfg.latent_channels)

    def forward(self, x: torch.Tensor, cache: CausalCache | None) -> torch.Tensor:
        h = self.conv_in(x, cache)
        for i, level in enumerate(self.blocks):
            for blk in level:
                h = blk(h, cache)
            if i < len(self.downs):
                h = self.downs[i](h, cache)
        for blk in self.mid:
            h = blk(h, cache)
        return self.conv_out(F.silu(self.norm_out(h)), cache)


class Decoder(nn.Module):
    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        chans = [cfg.base_channels * m for m in cfg.channel_mults][::-1]
        temporal = list(cfg.temporal_downsample)[::-1]
        self.conv_in = CausalConv3d(cfg.latent_channels, chans[0])
        self.mid = nn.ModuleList([ResBlock(chans[0], chans[0]), ResBlock(chans[0], chans[0])])
        self.blocks = nn.ModuleList()
        self.ups = nn.ModuleList()
        cin = chans[0]
        for i, c in enumerate(chans):
            self.blocks.append(
                nn.ModuleList(ResBlock(cin if j == 0 else c, c) for j in range(cfg.num_res_blocks + 1))
            )
            cin = c
            if i < len(chans) - 1:
                self.ups.append(Upsample(c, temporal[i]))
        self.norm_out = ChannelRMSNorm(cin)
        self.conv_out = CausalConv3d(cin, cfg.in_channels)

    def forward(self, z: torch.Tensor, cache: CausalCache | None) -> torch.Tensor:
        h = self.conv_in(z, cache)
        for blk in self.mid:
            h = blk(h, cache)
        for i, level in enumerate(self.blocks):
            for blk in level:
                h = blk(h, cache)
            if i < len(self.ups):
                h = self.ups[i](h, cache)
        return self.conv_out(F.silu(self.norm_out(h)), cache)


class CausalVAE(nn.Module):
    """Video ``(B, 3, 1+4k, H, W)`` in [-1, 1] <-> latents ``(B, C, 1+k, H/8, W/8)``.

    ``encode`` returns normalised latents: per-channel statistics, set after VAE training so the
    diffusion model sees unit-variance latents. Latent frame 0 (one image) and the later latent frames
    (four frames each) have statistics of their own (``latent_*`` and ``later_*``): their scales
    differ several times over, and one shared scale would leave the later frames, where the motion
    is, with a fraction of the signal-to-noise ratio of the first at every diffusion time.
    """

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.register_buffer("latent_mean", torch.zeros(cfg.latent_channels))
        self.register_buffer("latent_std", torch.ones(cfg.latent_channels))
        self.register_buffer("later_mean", torch.zeros(cfg.latent_channels))
        self.register_buffer("later_std", torch.ones(cfg.latent_channels))
        for i, m in enumerate(m for m in self.modules() if isinstance(m, CausalConv3d)):
            m.cache_key = i

    # -- raw passes over one chunk -----------------------------------------------------------

    def encode_moments(self, x: torch.Tensor, cache: CausalCache | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of the posterior for one chunk (not normalised)."""
        mean, logvar = self.encoder(x, cache).chunk(2, dim=1)
        if cache is not None:
            cache.advance()
        return mean, logvar.clamp(-30.0, 20.0)

    def _decode_chunk(self, z: torch.Tensor, cache: CausalCache | None) -> torch.Tensor:
        out = self.decoder(z, cache)
        if cache is not None:
            cache.advance()
        return out

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Models saved before the later frames had statistics of their own used one set for all.
        for name in ("mean", "std"):
            if prefix + f"later_{name}" not in state_dict and prefix + f"latent_{name}" in state_dict:
                state_dict[prefix + f"later_{name}"] = state_dict[prefix + f"latent_{name}"].clone()
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _stats(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel mean and std broadcast over ``z``'s latent frames (frame 0: the image's)."""
        t = z.shape[2]
        mean = torch.cat([self.latent_mean.view(1, -1, 1), self.later_mean.view(1, -1, 1).expand(1, -1, t - 1)], 2)
        std = torch.cat([self.latent_std.view(1, -1, 1), self.later_std.view(1, -1, 1).expand(1, -1, t - 1)], 2)
        return mean[..., None, None].to(z.dtype), std[..., None, None].to(z.dtype)

    def normalize(self, z: torch.Tensor) -> torch.Tensor:
        """Raw latents of a sequence that starts at video frame 0 -> unit-variance latents."""
        mean, std = self._stats(z)
        return (z - mean) / std

    def denormalize(self, z: torch.Tensor) -> torch.Tensor:
        mean, std = self._stats(z)
        return z * std + mean

    # -- chunked / tiled public API ----------------------------------------------------------

    def encode(self, video: torch.Tensor, chunk_latents: int = 4, tile: int | None = None,
               overlap: int = 16) -> torch.Tensor:
        """Encode ``(B, 3, 1+4k, H, W)`` to normalised latents ``(B, C, 1+k, H/8, W/8)``.

        Time is processed ``chunk_latents`` latent frames at a time; ``tile`` (pixels) splits large
        frames into overlapping spatial tiles.
        """
        self._check_frames(video.shape[2], 4)
        if tile is not None and max(video.shape[-2:]) > tile:
            f = self.cfg.spatial_factor
            return _tiled(video, tile, overlap, f, 1 / f, lambda v: self.encode(v, chunk_latents))
        cache = CausalCache()
        chunks = _time_chunks(video, 1 + 4 * (chunk_latents - 1), 4 * chunk_latents)
        outs = [self.encode_moments(chunk, cache)[0] for chunk in chunks]
        return self.normalize(torch.cat(outs, dim=2))

    def decode(self, z: torch.Tensor, chunk_latents: int = 4, tile: int | None = None,
               overlap: int = 2) -> torch.Tensor:
        """Decode normalised latents ``(B, C, 1+k, h, w)`` to video ``(B, 3, 1+4k, 8h, 8w)``.

        ``tile`` and ``overlap`` are in latent pixels.
        """
        if tile is not None and max(z.shape[-2:]) > tile:
            f = self.cfg.spatial_factor
            return _tiled(z, tile, overlap, 1, f, lambda zz: self.decode(zz, chunk_latents))
        cache = CausalCache()
        z = self.denormalize(z)
        outs = [self._decode_chunk(chunk, cache) for chunk in _time_chunks(z, chunk_latents, chunk_latents)]
        return torch.cat(outs, dim=2)

    def iter_decode(self, z: torch.Tensor, chunk_latents: int = 4) -> Iterator[torch.Tensor]:
        """Decode chunk by chunk, yielding video frames as soon as each chunk is ready."""
        cache = CausalCache()
        z = self.denormalize(z)
        for chunk in _time_chunks(z, chunk_latents, chunk_latents):
            yield self._decode_chunk(chunk, cache)

    @staticmethod
    def _check_frames(t: int, factor: int) -> None:
        if (t - 1) % factor:
            raise ValueError(f"the VAE takes 1 + {factor}k frames, got {t}")

    def forward(self, video: torch.Tensor, sample: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training pass: reconstruction, posterior mean and log-variance (single chunk)."""
        mean, logvar = self.encode_moments(video)
        z = mean + torch.randn_like(mean) * (0.5 * logvar).exp() if sample else mean
        return self.decoder(z, None), mean, logvar


def _time_chunks(x: torch.Tensor, first: int, step: int) -> Iterator[torch.Tensor]:
    """Chunks along time: ``first`` frames, then ``step`` at a time (the last may be shorter)."""
    t = x.shape[2]
    first = min(first, t)
    yield x[:, :, :first]
    for s in range(first, t, step):
        yield x[:, :, s : s + step]


def _tiled(x: torch.Tensor, tile: int, overlap: int, unit: int, scale: float, fn) -> torch.Tensor:
    """Run ``fn`` on overlapping spatial tiles of ``x`` and blend the results linearly.

    ``tile``/``overlap`` are in ``x``'s pixels; ``scale`` maps them to the output's pixels; tiles
    start at multiples of ``unit`` so the VAE's downsampling grid stays aligned.
    """
    h, w = x.shape[-2:]

    def starts(n: int) -> list[int]:
        if n <= tile:
            return [0]
        stride = max(unit, (tile - overlap) // unit * unit)
        s = list(range(0, n - tile, stride)) + [n - tile]
        return sorted({(v // unit) * unit for v in s})

    out = None
    weight = None
    for y0 in starts(h):
        for x0 in starts(w):
            part = fn(x[..., y0 : y0 + tile, x0 : x0 + tile])
            if out is None:
                shape = list(part.shape[:-2]) + [round(h * scale), round(w * scale)]
                out = part.new_zeros(shape)
                weight = part.new_zeros(shape[-2:])
            ph, pw = part.shape[-2:]
            ramp = max(1, round(overlap * scale))
            wy = _ramp(ph, ramp, y0 > 0, y0 + tile < h, part)
            wx = _ramp(pw, ramp, x0 > 0, x0 + tile < w, part)
            m = wy[:, None] * wx[None, :]
            oy, ox = round(y0 * scale), round(x0 * scale)
            out[..., oy : oy + ph, ox : ox + pw] += part * m
            weight[oy : oy + ph, ox : ox + pw] += m
    return out / weight.clamp_min(1e-8)


def _ramp(n: int, r: int, lead: bool, trail: bool, like: torch.Tensor) -> torch.Tensor:
    w = torch.ones(n, dtype=like.dtype, device=like.device)
    r = min(r, n // 2)
    ramp = (torch.arange(r, dtype=like.dtype, device=like.device) + 1) / (r + 1)
    if lead and r:
        w[:r] = ramp
    if trail and r:
        w[-r:] = ramp.flip(0)
    return w
