"""Preview MP4s of dataset clips: a grid of clips with their keypoints drawn over them, the mouth
parameters as bars, and the caption and flags printed under each tile. One clip's audio is muxed in.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import cv2
import numpy as np

from models.data.format import ClipStore
from models.keypoints import draw_skeleton
from models.media import write_video

TILE = 256
FONT, FONT_SCALE, LINE_H = cv2.FONT_HERSHEY_PLAIN, 0.75, 12
CAPTION_LINES = 4
CAPTION_H = (CAPTION_LINES + 2) * LINE_H + 8  # caption lines, then the flags, then the clip id
# Characters that fit across a tile in the caption font (it is monospaced).
CHARS_PER_LINE = max(8, (TILE - 6) * 20 // cv2.getTextSize("x" * 20, FONT, FONT_SCALE, 1)[0][0])


def _tile(frame: np.ndarray, kp: np.ndarray, mouth: np.ndarray | None, caption: str, flags: str,
          clip_id: str = "") -> np.ndarray:
    h, w = frame.shape[:2]
    s = TILE / max(h, w)
    img = cv2.resize(frame, (max(1, int(w * s)), max(1, int(h * s))), interpolation=cv2.INTER_LINEAR)
    img = draw_skeleton(img, kp, min_confidence=0.5, thickness=1)
    tile = np.zeros((TILE + CAPTION_H, TILE, 3), np.uint8)
    y0, x0 = (TILE - img.shape[0]) // 2, (TILE - img.shape[1]) // 2
    tile[y0: y0 + img.shape[0], x0: x0 + img.shape[1]] = img
    if mouth is not None:  # jaw, width, rounding, closure as bars on the left
        for i, v in enumerate(mouth):
            cv2.rectangle(tile, (2 + i * 7, TILE - 4), (7 + i * 7, TILE - 4 - int(40 * float(v))),
                          ((255, 80, 80), (80, 255, 80), (80, 160, 255), (255, 255, 80))[i], -1)
    lines = textwrap.wrap(caption, CHARS_PER_LINE)
    if len(lines) > CAPTION_LINES:
        lines = lines[:CAPTION_LINES]
        lines[-1] = lines[-1][: CHARS_PER_LINE - 3] + "..."
    for i, line in enumerate(lines):
        cv2.putText(tile, line, (3, TILE + 13 + i * LINE_H), FONT, FONT_SCALE, (230, 230, 230), 1, cv2.LINE_AA)
    for k, text in enumerate((flags, clip_id)):
        cv2.putText(tile, text[:CHARS_PER_LINE], (3, TILE + 13 + (CAPTION_LINES + k) * LINE_H + 2), FONT,
                    FONT_SCALE, (120, 220, 255), 1, cv2.LINE_AA)
    return tile


def write_preview(root: str | os.PathLike, out: str | os.PathLike, count: int = 16, seconds: float = 4.0,
                  seed: int = 0, indices: list[int] | None = None) -> Path:
    """Grid of ``count`` random clips (or ``indices``) from a dataset folder, ``seconds`` long."""
    store = ClipStore(root)
    rng = np.random.default_rng(seed)
    if indices is None:
        indices = sorted(rng.choice(len(store), size=min(count, len(store)), replace=False).tolist())
    n = int(round(seconds * store.fps))
    clips = []
    for i in indices:
        rec = store.records[i]
        k = min(n, rec["num_frames"])
        d = store.read(i, 0, k)
        clips.append(d)
    cols = int(np.ceil(np.sqrt(len(clips))))
    rows = int(np.ceil(len(clips) / cols))
    grid = np.zeros((n, rows * (TILE + CAPTION_H), cols * TILE, 3), np.uint8)
    for j, d in enumerate(clips):
        r, c = divmod(j, cols)
        flags = f"lipsync {'ok' if d['lipsync_ok'] else 'FAIL'}  pose {'ok' if d['pose_ok'] else 'FAIL'}"
        for f in range(n):
            g = min(f, len(d["frames"]) - 1)
            tile = _tile(d["frames"][g], d["keypoints"][g], None if d["mouth"] is None else d["mouth"][g],
                         d["caption"], flags, str(d["id"]))
            grid[f, r * (TILE + CAPTION_H): (r + 1) * (TILE + CAPTION_H), c * TILE: (c + 1) * TILE] = tile
    # The first clip's sound, padded to the grid's length (the writer stops at the shorter stream).
    audio = np.zeros(int(round(n * store.sample_rate / store.fps)), np.float32)
    if clips:
        a = clips[0]["audio"][: len(audio)]
        audio[: len(a)] = a
    return write_video(out, grid, store.fps, audio, store.sample_rate)
