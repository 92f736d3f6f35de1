"""Text condition: a byte-level tokenizer and a small transformer encoder trained with the model.

Bytes need no vocabulary file and cover every language. Ids: 0 = pad, 1 = begin, 2 = end,
3 + byte for the UTF-8 bytes. An empty prompt becomes an empty (fully padded) sequence: the
condition is absent.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

PAD, BOS, EOS = 0, 1, 2
VOCAB = 259


def tokenize(texts: list[str], max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Byte tokens ``(B, L)`` and a validity mask ``(B, L)``; L is the longest, at most ``max_len``."""
    seqs = []
    for t in texts:
        t = (t or "").strip()
        if not t:
            seqs.append([])
            continue
        ids = [BOS] + [3 + b for b in t.encode("utf-8")][: max_len - 2] + [EOS]
        seqs.append(ids)
    length = max([len(s) for s in seqs] + [1])
    tokens = torch.full((len(texts), length), PAD, dtype=torch.long)
    for i, s in enumerate(seqs):
        tokens[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    return tokens, tokens != PAD


class TextEncoder(nn.Module):
    """Bytes -> contextual features ``(B, L, width)``; pre-norm transformer with learned positions."""

    def __init__(self, vocab: int, width: int, depth: int, heads: int, max_len: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.pos = nn.Parameter(torch.zeros(max_len, width))
        self.layers = nn.ModuleList(_EncoderLayer(width, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self.max_len = max_len
        nn.init.normal_(self.pos, std=0.02)
        nn.init.normal_(self.embed.weight, std=0.02)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens) + self.pos[: tokens.shape[1]]
        # Keys that are padding are masked; a fully padded row attends to itself only (harmless:
        # the MMDiT masks those tokens out of joint attention anyway).
        eye = torch.eye(tokens.shape[1], dtype=torch.bool, device=tokens.device)
        attn_mask = (mask[:, None, :] | eye[None])[:, None]  # (B, 1, L, L)
        for layer in self.layers:
            x = layer(x, attn_mask)
        return self.norm(x)


class _EncoderLayer(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(approximate="tanh"), nn.Linear(4 * width, width))

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        x = x + self.proj(a.transpose(1, 2).reshape(b, n, d))
        return x + self.mlp(self.norm2(x))
