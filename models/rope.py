"""3D rotary position embedding from explicit integer (t, h, w) position ids.

The head dimension is split into three bands, one per axis; each band rotates pairs of channels by
``position * frequency``. Positions are explicit so the caller decides what a token is: reference
tokens get temporal index 0 (so their temporal rotation is the identity) and ordinary spatial
indices, motion and video frames get temporal indices 1, 2, ...; text tokens get (0, 0, 0).
Computed in float32 whatever the model's dtype.
"""

from __future__ import annotations

import torch


def axis_dims(head_dim: int) -> tuple[int, int, int]:
    """Channels per axis (t, h, w); each even, summing to ``head_dim``."""
    if head_dim % 2:
        raise ValueError(f"head_dim must be even, got {head_dim}")
    hw = 2 * (head_dim // 6)
    return head_dim - 2 * hw, hw, hw


def rope_frequencies(positions: torch.Tensor, head_dim: int, theta: float = 10000.0) -> torch.Tensor:
    """Rotation angles for ``positions`` ``(..., N, 3)`` -> cos/sin table ``(..., N, head_dim // 2, 2)``."""
    angles = []
    for axis, dim in enumerate(axis_dims(head_dim)):
        if dim == 0:
            continue
        freq = theta ** (-torch.arange(0, dim, 2, device=positions.device, dtype=torch.float64) / dim)
        angles.append(positions[..., axis, None].double() * freq)  # (..., N, dim // 2)
    ang = torch.cat(angles, dim=-1).float()
    return torch.stack([ang.cos(), ang.sin()], dim=-1)


def apply_rope(x: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` ``(B, heads, N, head_dim)`` by ``freqs`` ``(B or 1, N, head_dim // 2, 2)``."""
    xf = x.float().unflatten(-1, (-1, 2))  # (B, H, N, D/2, 2)
    cos, sin = freqs[:, None, ..., 0], freqs[:, None, ..., 1]
    x0, x1 = xf[..., 0], xf[..., 1]
    out = torch.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], dim=-1)
    return out.flatten(-2).type_as(x)


def grid_positions(t_indices: torch.Tensor | list[int], h: int, w: int, device=None) -> torch.Tensor:
    """Position ids ``(len(t) * h * w, 3)`` for frames at temporal indices ``t_indices``, in
    (t, h, w) raster order -- the same order tokens are flattened in."""
    t = torch.as_tensor(t_indices, device=device, dtype=torch.long)
    tt, hh, ww = torch.meshgrid(t, torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    return torch.stack([tt, hh, ww], dim=-1).reshape(-1, 3)
