"""Training windows from one or more dataset folders, bucketed by resolution, resumable exactly.

``WindowDataset`` is an ``IterableDataset`` that yields whole *batches* (use
``DataLoader(ds, batch_size=None, num_workers=n)``), because a batch must share one resolution: clips
are grouped into aspect-ratio buckets (their stored ``height x width``), and every batch is drawn from
one bucket.

The order is a pure function of ``(seed, epoch)``: each epoch cuts every clip into non-overlapping
windows of ``num_frames`` (with a random phase), shuffles them within their bucket, packs batches,
then shuffles the batches. Rank ``r`` of ``world_size`` takes every ``world_size``-th batch (all
ranks get the same count) and DataLoader worker ``w`` of ``n`` every ``n``-th of those, which the
DataLoader's round-robin fetch puts back in order. The resume position is therefore just
``(epoch, batches consumed)``: every batch carries ``batch["position"]`` = the state *after* it, and
``load_state_dict`` continues with exactly the next batch.

Flags: ``audio_ok`` (clip passed the lip-sync filter) and ``pose_ok`` (passed the pose-visibility
filter) come with every sample so training drops only the conditions that failed; ``require_lipsync``
/ ``require_pose`` drop failing clips entirely instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from models.data.format import ClipStore, audio_samples


class WindowDataset(IterableDataset):
    """Batches of aligned training windows.

    Args:
        roots: one dataset folder or several (concatenated; they must share fps and sample rate).
        num_frames: frames per window (a segment is ``1 + 4k``; add motion frames if the trainer
            wants them from the same clip).
        batch_size: windows per batch, all from one resolution bucket.
        seed: fixes the order of every epoch.
        rank, world_size: this process's share under DDP.
        require_lipsync, require_pose: drop clips that failed the filter instead of flagging them.
        reference: also return a reference frame per window, drawn from the whole clip.
        infinite: keep going over epochs (training counts steps); else stop after one epoch.
        drop_last: drop each bucket's incomplete last batch (keeps shapes fixed).
        repeat: per root, how many times each of its windows appears per epoch (mixing ratio of
            sources, e.g. ``(1, 4)`` to see scarce real clips four times as often).
        video_uint8: return ``video`` and ``reference`` as uint8 in [0, 255] (4x less host memory
            and transfer; convert on the GPU with ``x.float() / 127.5 - 1``).
    """

    def __init__(
        self,
        roots: str | os.PathLike | Sequence[str | os.PathLike],
        num_frames: int,
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        require_lipsync: bool = False,
        require_pose: bool = False,
        reference: bool = True,
        infinite: bool = True,
        drop_last: bool = True,
        repeat: Sequence[int] | None = None,
        video_uint8: bool = False,
    ) -> None:
        super().__init__()
        if isinstance(roots, (str, os.PathLike)):
            roots = [roots]
        self.stores = [ClipStore(r) for r in roots]
        fps = {s.fps for s in self.stores}
        srs = {s.sample_rate for s in self.stores}
        if len(fps) > 1 or len(srs) > 1:
            raise ValueError(f"datasets disagree on fps {sorted(fps)} or sample rate {sorted(srs)}")
        self.fps = fps.pop()
        self.sample_rate = srs.pop()
        self.num_frames = int(num_frames)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.rank, self.world_size = int(rank), int(world_size)
        self.reference = reference
        self.infinite = infinite
        self.drop_last = drop_last
        self.video_uint8 = video_uint8
        self.repeat = tuple(int(r) for r in repeat) if repeat is not None else (1,) * len(self.stores)
        if len(self.repeat) != len(self.stores) or min(self.repeat) < 0:
            raise ValueError(f"repeat needs one count >= 0 per root, got {repeat} for {len(self.stores)} roots")
        # (store, index, num_frames, bucket) for every usable clip.
        self.clips: list[tuple[int, int, int, tuple[int, int]]] = []
        self.skipped_short = 0
        self.skipped_flags = 0
        for si, store in enumerate(self.stores):
            for ci, rec in enumerate(store.records):
                if (require_lipsync and not rec["lipsync_ok"]) or (require_pose and not rec["pose_ok"]):
                    self.skipped_flags += 1
                    continue
                if rec["num_frames"] < self.num_frames:
                    self.skipped_short += 1
                    continue
                self.clips.append((si, ci, rec["num_frames"], (rec["height"], rec["width"])))
        if not self.clips:
            raise ValueError(
                f"no clip has {self.num_frames} frames or more (and passes the required flags) in "
                f"{', '.join(str(s.root) for s in self.stores)}"
            )
        self.buckets = sorted({c[3] for c in self.clips})
        self._epoch = 0
        self._batch = 0

    # ------------------------------------------------------------------------------------------
    # Order

    def epoch_plan(self, epoch: int) -> list[list[tuple[int, int]]]:
        """Every batch of one epoch for this rank: lists of ``(clip, start)``."""
        rng = np.random.default_rng([self.seed, epoch])
        by_bucket: dict[tuple[int, int], list[tuple[int, int]]] = {b: [] for b in self.buckets}
        for k, (si, _, t, bucket) in enumerate(self.clips):
            n = t // self.num_frames
            for _ in range(self.repeat[si]):
                phase = int(rng.integers(0, t - n * self.num_frames + 1))
                for w in range(n):
                    by_bucket[bucket].append((k, phase + w * self.num_frames))
        batches = []
        for b in self.buckets:
            items = by_bucket[b]
            order = rng.permutation(len(items))
            for j in range(0, len(items), self.batch_size):
                chunk = [items[o] for o in order[j: j + self.batch_size]]
                if len(chunk) == self.batch_size or not self.drop_last:
                    batches.append(chunk)
        batches = [batches[i] for i in rng.permutation(len(batches))]
        per_rank = len(batches) // self.world_size
        return batches[self.rank: per_rank * self.world_size: self.world_size]

    def __len__(self) -> int:
        """Batches per epoch for this rank."""
        return len(self.epoch_plan(0))

    # ------------------------------------------------------------------------------------------
    # Resume

    def state_dict(self) -> dict:
        """Position of the next batch, as last set by ``load_state_dict`` or consumed in-process
        (with DataLoader workers, keep ``batch["position"]`` of the last batch you trained on)."""
        return {"epoch": self._epoch, "batch": self._batch, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        if "position" in state:  # a batch's position tensor
            epoch, batch = (int(v) for v in state["position"])
        else:
            epoch, batch = int(state["epoch"]), int(state["batch"])
        if "seed" in state and int(state["seed"]) != self.seed:
            raise ValueError(f"resume state was made with seed {state['seed']}, this dataset has seed {self.seed}")
        self._epoch, self._batch = epoch, batch

    # ------------------------------------------------------------------------------------------
    # Iteration

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        epoch, skip = self._epoch, self._batch
        while True:
            plan = self.epoch_plan(epoch)
            for b in range(skip, len(plan)):
                if (b - skip) % nw != wid:
                    continue
                batch = self.make_batch(plan[b], epoch)
                batch["position"] = torch.tensor([epoch, b + 1]) if b + 1 < len(plan) else torch.tensor([epoch + 1, 0])
                if info is None:
                    self._epoch, self._batch = (int(v) for v in batch["position"])
                yield batch
            if not self.infinite:
                return
            # Workers stay aligned across epochs: the next epoch restarts the round-robin at its
            # first batch only if every worker agrees on where it starts, so shift by what is left.
            left = (len(plan) - skip) % nw
            wid = (wid - left) % nw
            epoch, skip = epoch + 1, 0

    def make_batch(self, items: list[tuple[int, int]], epoch: int) -> dict:
        samples = [self.sample(k, start, epoch) for k, start in items]
        out: dict = {}
        for key in ("video", "reference", "audio", "keypoints", "mouth"):
            if key in samples[0]:
                out[key] = torch.stack([s[key] for s in samples])
        for key in ("audio_ok", "pose_ok", "has_mouth"):
            out[key] = torch.tensor([s[key] for s in samples], dtype=torch.bool)
        out["start"] = torch.tensor([s["start"] for s in samples], dtype=torch.long)
        out["caption"] = [s["caption"] for s in samples]
        out["clip_id"] = [s["clip_id"] for s in samples]
        out["fps"] = self.fps
        return out

    def sample(self, k: int, start: int, epoch: int = 0) -> dict:
        """One window as tensors; see the module docstring for keys, shapes and dtypes."""
        si, ci, t, _ = self.clips[k]
        store = self.stores[si]
        extra = ()
        if self.reference:
            rng = np.random.default_rng([self.seed, epoch, k, start, 7])
            extra = (int(rng.integers(0, t)),)
        d = store.read(ci, start, self.num_frames, extra_frames=extra)
        frames = torch.from_numpy(d["frames"]).permute(3, 0, 1, 2)  # (C, T, H, W) uint8
        s: dict = {
            "video": frames.contiguous() if self.video_uint8 else frames.float().div_(127.5).sub_(1.0),
            "keypoints": torch.from_numpy(d["keypoints"]),
            "caption": d["caption"],
            "clip_id": d["id"],
            "start": start,
            "audio_ok": bool(d["lipsync_ok"]),
            "pose_ok": bool(d["pose_ok"]),
        }
        n_audio = audio_samples(self.num_frames, self.fps, self.sample_rate)
        audio = np.zeros(n_audio, np.float32)
        audio[: min(n_audio, len(d["audio"]))] = d["audio"][:n_audio]
        s["audio"] = torch.from_numpy(audio)
        if self.reference:
            ref = torch.from_numpy(np.ascontiguousarray(d["extra"][0])).permute(2, 0, 1)
            s["reference"] = ref.contiguous() if self.video_uint8 else ref.float().div_(127.5).sub_(1.0)
        s["has_mouth"] = d["mouth"] is not None
        s["mouth"] = torch.from_numpy(d["mouth"]) if d["mouth"] is not None else torch.zeros(self.num_frames, 4)
        return s
