"""Pre-encoded DiT training windows: the frozen VAE's latents, computed once per run.

On a GPU the VAE encoder costs little next to the transformer. On a CPU it is most of a DiT step:
for ``toon-s``, encoding one window's 9 target and 5 motion frames costs several times the
transformer's forward and backward on it, and the pose heatmaps cost about as much again. After
stage 0 the VAE is frozen, so a window's latents, its log-mel features and its heatmaps are a pure
function of the window. A DiT stage with ``cache_windows: N`` therefore encodes N windows once
(drawn like the streaming loader draws them: every clip cut into non-overlapping windows with a
random phase, a random reference frame per window, shuffled) and then trains on those.

The trade: a fixed set of N windows, each with one reference frame, where the streaming loader
draws fresh windows every epoch. With N in the thousands over a few hundred clips that costs little
diversity; it is a CPU recipe's choice (the GPU recipes stream).

The cache lives in the run directory (``latents/``), keyed by the window length, the window count,
the data and a fingerprint of the VAE's weights, so stages that agree share it and ``--resume``
reuses it. Batches come in an order that is a pure function of ``(seed, epoch)`` and carry
``position`` exactly like ``WindowDataset``'s, so resuming continues with the next batch.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
import torch.utils.data

# What one cached window holds, all stacked per resolution bucket:
#   x0      (C, 1+k, h, w) float16  target latents (normalised)
#   motion  (C, 2, h, w)   float16  latents of the 5 motion frames before the target
#   ref     (C, 1, h, w)   float16  the reference frame's latent
#   mel     (T, D)         float16  audio features of the target frames
#   heat    (P, T, H, W)   uint8    pose heatmaps of the target frames (x 255)
#   mouth   (1+k, h, w)    bool     latent cells around the lips (for the mouth-weighted loss)
#   lips    (T, 4)         float16  the target frames' mouth parameters (for the lip-reading head)
#   has_lips ()            bool     whether ``lips`` is ground truth (synthetic clips)
TENSOR_KEYS = ("x0", "motion", "ref", "mel", "heat", "mouth", "lips", "has_lips")


def vae_fingerprint(vae: torch.nn.Module) -> str:
    h = hashlib.sha1()
    for k, v in sorted(vae.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def cache_key(data: list[str], segment_frames: int, windows: int, seed: int, fingerprint: str) -> str:
    raw = json.dumps({"data": [str(Path(d).resolve()) for d in data], "seg": segment_frames,
                      "windows": windows, "seed": seed, "vae": fingerprint}, sort_keys=True)
    return hashlib.sha1(raw.encode()).hexdigest()[:16]


class LatentWindows:
    """Batches of cached windows, resumable like ``WindowDataset``.

    ``buckets`` is a list of dicts, one per resolution, each holding the stacked ``TENSOR_KEYS``
    plus ``caption`` (list of str), ``audio_ok`` and ``pose_ok`` (bool tensors).
    """

    def __init__(self, buckets: list[dict], batch_size: int, seed: int) -> None:
        self.buckets = buckets
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self._epoch = 0
        self._batch = 0
        if not any(len(b["caption"]) >= self.batch_size for b in buckets):
            sizes = ", ".join(str(len(b["caption"])) for b in buckets)
            raise ValueError(f"no resolution bucket holds a full batch of {self.batch_size} cached windows "
                             f"(bucket sizes: {sizes}); cache more windows or lower the batch size")

    def __len__(self) -> int:
        return len(self.epoch_plan(0))

    @property
    def num_windows(self) -> int:
        return sum(len(b["caption"]) for b in self.buckets)

    def epoch_plan(self, epoch: int) -> list[tuple[int, np.ndarray]]:
        """Every batch of one epoch: (bucket, window indices), a pure function of (seed, epoch)."""
        rng = np.random.default_rng([self.seed, epoch, 5])
        batches = []
        for bi, b in enumerate(self.buckets):
            order = rng.permutation(len(b["caption"]))
            for j in range(0, len(order) - self.batch_size + 1, self.batch_size):
                batches.append((bi, order[j : j + self.batch_size]))
        return [batches[i] for i in rng.permutation(len(batches))]

    def load_state_dict(self, state: dict) -> None:
        if "seed" in state and int(state["seed"]) != self.seed:
            raise ValueError(f"resume state was made with seed {state['seed']}, this cache has seed {self.seed}")
        self._epoch, self._batch = int(state["epoch"]), int(state["batch"])

    def __iter__(self) -> Iterator[dict]:
        epoch, skip = self._epoch, self._batch
        while True:
            plan = self.epoch_plan(epoch)
            for k in range(skip, len(plan)):
                bi, idx = plan[k]
                b = self.buckets[bi]
                t = torch.from_numpy(idx)
                out = {key: b[key][t] for key in TENSOR_KEYS}
                out["caption"] = [b["caption"][i] for i in idx]
                out["audio_ok"] = b["audio_ok"][t]
                out["pose_ok"] = b["pose_ok"][t]
                out["position"] = torch.tensor([epoch, k + 1]) if k + 1 < len(plan) else torch.tensor([epoch + 1, 0])
                self._epoch, self._batch = (int(v) for v in out["position"])
                yield out
            epoch, skip = epoch + 1, 0


def build_cache(
    data: list[str],
    segment_frames: int,
    motion_frames: int,
    windows: int,
    seed: int,
    encode_batch: Callable[[dict], dict],
    batch_size: int = 4,
    rank: int = 0,
    world_size: int = 1,
    log: Callable[[str], None] = print,
    num_workers: int = 0,
) -> list[dict]:
    """Encode up to ``windows`` windows of ``motion_frames + segment_frames`` frames.

    ``encode_batch`` maps a ``WindowDataset`` batch to a dict of ``TENSOR_KEYS`` (on the CPU).
    ``num_workers`` processes decode the windows while the encoder runs (a GPU encodes faster than
    one process decodes JPEG frames); the batches, and so the cache, are the same for any count.
    """
    from models.data.dataset import WindowDataset

    ds = WindowDataset(data, num_frames=motion_frames + segment_frames, batch_size=batch_size, seed=seed,
                       rank=rank, world_size=world_size, infinite=False, drop_last=False)
    per_bucket: dict[tuple[int, int], dict] = {}
    done = 0
    t0 = time.perf_counter()
    plan = ds.epoch_plan(0)
    total = min(windows, sum(len(b) for b in plan))
    if total < windows:
        log(f"latent cache: the data holds {total} windows of {motion_frames + segment_frames} frames, "
            f"fewer than the {windows} asked for; caching all of them")
    last_log = t0
    todo, planned = [], 0
    for items in plan:
        if planned >= total:
            break
        todo.append(items[: total - planned])
        planned += len(todo[-1])
    batches: Iterator[dict] = (ds.make_batch(items, 0) for items in todo)
    if num_workers > 0:
        batches = iter(torch.utils.data.DataLoader(_PlannedBatches(ds, todo), batch_size=None, shuffle=False,
                                  num_workers=num_workers))
    for items, batch in zip(todo, batches, strict=True):
        enc = encode_batch(batch)
        shape = tuple(batch["video"].shape[-2:])
        slot = per_bucket.setdefault(shape, {k: [] for k in (*TENSOR_KEYS, "caption", "audio_ok", "pose_ok")})
        for k in TENSOR_KEYS:
            slot[k].append(enc[k])
        slot["caption"].extend(batch["caption"])
        slot["audio_ok"].append(batch["audio_ok"])
        slot["pose_ok"].append(batch["pose_ok"])
        done += len(items)
        now = time.perf_counter()
        if now - last_log > 30 or done >= total:
            rate = done / (now - t0)
            log(f"latent cache: {done}/{total} windows encoded ({rate:.2f}/s, "
                f"{(total - done) / max(rate, 1e-9) / 60:.1f} min left)")
            last_log = now
    buckets = []
    for shape in sorted(per_bucket):
        slot = per_bucket[shape]
        b = {k: torch.cat(slot[k]) for k in (*TENSOR_KEYS, "audio_ok", "pose_ok")}
        b["caption"] = slot["caption"]
        buckets.append(b)
    return buckets


class _PlannedBatches(torch.utils.data.Dataset):
    """The cache's batches by index, for loader processes (the order stays the plan's)."""

    def __init__(self, ds, todo: list[list[tuple[int, int]]]) -> None:
        self.ds, self.todo = ds, todo

    def __len__(self) -> int:
        return len(self.todo)

    def __getitem__(self, i: int) -> dict:
        return self.ds.make_batch(self.todo[i], 0)


def save_cache(buckets: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"format": "omnihuman-latent-cache", "version": 1, "buckets": buckets}, tmp)
    tmp.replace(path)


def load_cache(path: Path) -> list[dict]:
    raw = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(raw, dict) or raw.get("format") != "omnihuman-latent-cache":
        raise ValueError(f"{path}: not a latent cache")
    return raw["buckets"]


def lip_mask(keypoints: torch.Tensor, height: int, width: int, margin: float = 1.0, grow: float = 0.0,
             min_confidence: float = 0.3) -> torch.Tensor:
    """Per frame, the cells of a ``height`` x ``width`` grid inside the box around the visible lip
    points, grown by ``margin`` cells plus ``grow`` times the box's larger side on every side:
    ``(B, T, K, 3)`` -> ``(B, T, height, width)`` bool. Frames without visible lips mark nothing."""
    from models.keypoints import FACE_START

    lips = keypoints[:, :, FACE_START : FACE_START + 10].float()
    vis = lips[..., 2] > min_confidence  # (B, T, 10)
    big = torch.tensor(1e9)
    x = lips[..., 0] * width
    y = lips[..., 1] * height
    x0 = torch.where(vis, x, big).amin(-1)
    x1 = torch.where(vis, x, -big).amax(-1)
    y0 = torch.where(vis, y, big).amin(-1)
    y1 = torch.where(vis, y, -big).amax(-1)
    pad = margin + grow * torch.maximum(x1 - x0, y1 - y0).clamp(0, max(height, width))
    x0, x1, y0, y1 = x0 - pad, x1 + pad, y0 - pad, y1 + pad
    cy = torch.arange(height, dtype=torch.float32) + 0.5
    cx = torch.arange(width, dtype=torch.float32) + 0.5
    return ((cy.view(1, 1, -1, 1) >= y0[..., None, None]) & (cy.view(1, 1, -1, 1) <= y1[..., None, None])
            & (cx.view(1, 1, 1, -1) >= x0[..., None, None]) & (cx.view(1, 1, 1, -1) <= x1[..., None, None]))


def lip_pixels(keypoints: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The pixels around the lips of every frame ``(B, T, H, W)`` bool: the lips' box grown by half
    its size and two pixels (an open jaw and the teeth stay inside)."""
    return lip_mask(keypoints, height, width, margin=2.0, grow=0.5)


def mouth_cells(keypoints: torch.Tensor, lat_h: int, lat_w: int, margin: float = 1.0,
                min_confidence: float = 0.3) -> torch.Tensor:
    """Latent cells around the lips: ``(B, T, K, 3)`` keypoints -> ``(B, 1+k, lat_h, lat_w)`` bool.

    Per video frame, the box around the visible lip points grown by ``margin`` latent cells; a
    latent frame takes the union of its video frames (frame 0 alone, then groups of 4, like the
    VAE). Frames without visible lips mark nothing.
    """
    inside = lip_mask(keypoints, lat_h, lat_w, margin=margin, min_confidence=min_confidence)
    t = inside.shape[1]
    if (t - 1) % 4:
        raise ValueError(f"mouth_cells needs 1 + 4k frames, got {t}")
    head = inside[:, :1]
    if t == 1:
        return head
    rest = inside[:, 1:].unflatten(1, ((t - 1) // 4, 4)).any(2)
    return torch.cat([head, rest], dim=1)
