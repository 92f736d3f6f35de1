"""The one dataset format for synthetic and real clips.

A dataset is a folder::

    index.json          format, version, fps, sample rate, shard list, one record per clip
    shard-00000.bin     clips' binary fields back to back (append-only, read with pread)
    ...

Per clip, the record names its shard, frame count, ``height``/``width`` (its aspect bucket), the
caption, the quality flags and where each field lives (``[offset, nbytes]`` in the shard):

* ``frames``      JPEG per frame (quality 92), concatenated; ``frame_offsets`` (T + 1) int64 locate each,
                  so a training window decodes only its own frames (~0.2 ms per 128 px frame);
* ``audio``       int16 mono at the dataset's sample rate, ``round(T * sr / fps)`` samples;
* ``keypoints``   float32 ``(T, 95, 3)`` in the project's layout;
* ``mouth``       float32 ``(T, 4)`` ground-truth mouth parameters (synthetic clips only).

Flags: ``lipsync_ok`` (the audio belongs to the visible speech, in sync) and ``pose_ok`` (the body is
visible enough to learn pose from). A failing clip still carries every field: training uses it for
the conditions that remain valid.

Nothing in a shard or the index depends on the time or the machine, so the same clips written in the
same order give byte-identical files.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from models.errors import UserError
from models.keypoints import NUM_KEYPOINTS
from models.media import SAMPLE_RATE

FORMAT_NAME = "omnihuman-clips"
FORMAT_VERSION = 1
INDEX_NAME = "index.json"
JPEG_QUALITY = 92
DEFAULT_SHARD_BYTES = 256 << 20


@dataclass
class Clip:
    """One clip in memory. ``frames`` (T, H, W, 3) uint8 RGB; ``audio`` float32 mono."""

    clip_id: str
    frames: np.ndarray
    audio: np.ndarray
    keypoints: np.ndarray
    caption: str
    fps: float
    lipsync_ok: bool = True
    pose_ok: bool = True
    mouth: np.ndarray | None = None
    source: str = "synthetic"
    meta: dict = field(default_factory=dict)
    sample_rate: int = SAMPLE_RATE

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])


@dataclass
class EncodedClip:
    """A clip turned into bytes (done in worker processes) plus its record, minus shard placement."""

    record: dict
    blobs: dict[str, bytes]


def audio_samples(num_frames: int, fps: float, sample_rate: int) -> int:
    return int(round(num_frames * sample_rate / fps))


def encode_clip(clip: Clip) -> EncodedClip:
    t, h, w, c = clip.frames.shape
    if c != 3 or clip.frames.dtype != np.uint8:
        raise ValueError(
            f"{clip.clip_id}: frames must be (T, H, W, 3) uint8, got {clip.frames.shape} {clip.frames.dtype}"
        )
    kp = np.ascontiguousarray(clip.keypoints, np.float32)
    if kp.shape != (t, NUM_KEYPOINTS, 3):
        raise ValueError(f"{clip.clip_id}: keypoints {kp.shape} do not match {t} frames")
    jpgs = []
    for f in clip.frames:
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(f[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise ValueError(f"{clip.clip_id}: JPEG encoding failed")
        jpgs.append(buf.tobytes())
    offsets = np.zeros(t + 1, np.int64)
    offsets[1:] = np.cumsum([len(b) for b in jpgs])
    n_audio = audio_samples(t, clip.fps, clip.sample_rate)
    audio = np.zeros(n_audio, np.float32)
    a = np.asarray(clip.audio, np.float32)[:n_audio]
    audio[: len(a)] = a
    pcm = (np.clip(audio, -1, 1) * 32767.0).round().astype("<i2")
    blobs = {
        "frames": b"".join(jpgs),
        "frame_offsets": offsets.astype("<i8").tobytes(),
        "audio": pcm.tobytes(),
        "keypoints": kp.astype("<f4").tobytes(),
    }
    if clip.mouth is not None:
        mouth = np.ascontiguousarray(clip.mouth, "<f4")
        if mouth.shape != (t, 4):
            raise ValueError(f"{clip.clip_id}: mouth {mouth.shape} does not match {t} frames")
        blobs["mouth"] = mouth.tobytes()
    record = {
        "id": clip.clip_id, "num_frames": t, "height": h, "width": w, "fps": float(clip.fps),
        "caption": clip.caption, "lipsync_ok": bool(clip.lipsync_ok), "pose_ok": bool(clip.pose_ok),
        "source": clip.source, "meta": clip.meta,
    }
    return EncodedClip(record, blobs)


class DatasetWriter:
    """Append clips to a dataset folder; ``close()`` writes the index. Use as a context manager."""

    def __init__(self, root: str | os.PathLike, fps: float, sample_rate: int = SAMPLE_RATE,
                 shard_bytes: int = DEFAULT_SHARD_BYTES, meta: dict | None = None) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        if (self.root / INDEX_NAME).exists():
            raise UserError(f"{self.root}: already holds a dataset (index.json); choose an empty folder")
        self.fps, self.sample_rate, self.shard_bytes = float(fps), int(sample_rate), int(shard_bytes)
        self.meta = meta or {}
        self.records: list[dict] = []
        self.shards: list[str] = []
        self._fh = None
        self._pos = 0

    def _open_shard(self) -> None:
        if self._fh is not None:
            self._fh.close()
        name = f"shard-{len(self.shards):05d}.bin"
        self.shards.append(name)
        self._fh = open(self.root / name, "wb")
        self._pos = 0

    def add(self, clip: Clip | EncodedClip) -> dict:
        enc = encode_clip(clip) if isinstance(clip, Clip) else clip
        if abs(enc.record["fps"] - self.fps) > 1e-6:
            raise ValueError(f"{enc.record['id']}: fps {enc.record['fps']} != dataset fps {self.fps}")
        size = sum(len(b) for b in enc.blobs.values())
        if self._fh is None or (self._pos > 0 and self._pos + size > self.shard_bytes):
            self._open_shard()
        rec = dict(enc.record)
        rec["shard"] = len(self.shards) - 1
        fields = {}
        for name in sorted(enc.blobs):
            b = enc.blobs[name]
            self._fh.write(b)
            fields[name] = [self._pos, len(b)]
            self._pos += len(b)
        rec["fields"] = fields
        self.records.append(rec)
        return rec

    def close(self) -> Path:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        index = {
            "format": FORMAT_NAME, "version": FORMAT_VERSION, "fps": self.fps, "sample_rate": self.sample_rate,
            "shards": self.shards, "meta": self.meta, "clips": self.records,
        }
        path = self.root / INDEX_NAME
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(index, ensure_ascii=False, indent=None, separators=(",", ":")))
        os.replace(tmp, path)
        return path

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def decode_jpeg(buf: bytes | memoryview) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(buf, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError("corrupt JPEG frame in dataset shard")
    return img[..., ::-1]


class ClipStore:
    """Random access to a dataset folder's clips; reads only the bytes a window needs.

    Safe to use from DataLoader workers: shard files are opened lazily per process.
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        path = self.root / INDEX_NAME
        if not path.exists():
            raise UserError(f"{self.root}: not a dataset folder (no {INDEX_NAME})")
        index = json.loads(path.read_text())
        if index.get("format") != FORMAT_NAME:
            raise UserError(f"{path}: not an OmniHuman dataset index")
        if index.get("version", 0) > FORMAT_VERSION:
            raise UserError(f"{path}: dataset version {index['version']} is newer than this code supports")
        self.fps = float(index["fps"])
        self.sample_rate = int(index["sample_rate"])
        self.shards = index["shards"]
        self.records: list[dict] = index["clips"]
        self.meta = index.get("meta", {})
        self._fds: dict[int, int] = {}
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self.records)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_fds"] = {}
        return state

    def _fd(self, shard: int) -> int:
        if self._pid != os.getpid():
            self._fds, self._pid = {}, os.getpid()
        fd = self._fds.get(shard)
        if fd is None:
            fd = os.open(self.root / self.shards[shard], os.O_RDONLY)
            self._fds[shard] = fd
        return fd

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds = {}

    def _read(self, rec: dict, name: str, start: int = 0, length: int | None = None) -> bytes:
        off, n = rec["fields"][name]
        length = n - start if length is None else length
        return os.pread(self._fd(rec["shard"]), length, off + start)

    def read(
        self, i: int, start: int = 0, num_frames: int | None = None, frames: bool = True,
        extra_frames: tuple[int, ...] = (),
    ) -> dict:
        """Frames ``[start, start + num_frames)`` of clip ``i`` with every field aligned to them.

        Returns ``frames`` (T, H, W, 3) uint8, ``audio`` float32 (S,), ``keypoints`` (T, K, 3),
        ``mouth`` (T, 4) or None, the record's caption and flags, and ``extra`` frames (uint8,
        decoded from the whole clip, for reference images).
        """
        rec = self.records[i]
        t_all = rec["num_frames"]
        n = t_all - start if num_frames is None else num_frames
        if start < 0 or n <= 0 or start + n > t_all:
            raise IndexError(f"clip {rec['id']}: window [{start}, {start + n}) outside its {t_all} frames")
        out: dict = {"id": rec["id"], "caption": rec["caption"], "lipsync_ok": rec["lipsync_ok"],
                     "pose_ok": rec["pose_ok"], "fps": rec["fps"], "start": start, "record": rec}
        offs = np.frombuffer(self._read(rec, "frame_offsets"), "<i8")
        if frames:
            blob = self._read(rec, "frames", int(offs[start]), int(offs[start + n] - offs[start]))
            base = int(offs[start])
            out["frames"] = np.stack([
                decode_jpeg(memoryview(blob)[int(offs[f]) - base: int(offs[f + 1]) - base])
                for f in range(start, start + n)
            ])
        if extra_frames:
            out["extra"] = [decode_jpeg(self._read(rec, "frames", int(offs[f]), int(offs[f + 1] - offs[f])))
                            for f in extra_frames]
        sr, fps = self.sample_rate, rec["fps"]
        a0, a1 = audio_samples(start, fps, sr), audio_samples(start + n, fps, sr)
        pcm = np.frombuffer(self._read(rec, "audio", 2 * a0, 2 * (a1 - a0)), "<i2")
        out["audio"] = pcm.astype(np.float32) / 32767.0
        row = NUM_KEYPOINTS * 3 * 4
        out["keypoints"] = np.frombuffer(self._read(rec, "keypoints", start * row, n * row), "<f4").reshape(
            n, NUM_KEYPOINTS, 3).copy()
        if "mouth" in rec["fields"]:
            out["mouth"] = np.frombuffer(self._read(rec, "mouth", start * 16, n * 16), "<f4").reshape(n, 4).copy()
        else:
            out["mouth"] = None
        return out

    def clip(self, i: int) -> Clip:
        d = self.read(i)
        rec = d["record"]
        return Clip(rec["id"], d["frames"], d["audio"], d["keypoints"], rec["caption"], rec["fps"],
                    rec["lipsync_ok"], rec["pose_ok"], d["mouth"], rec.get("source", ""), rec.get("meta", {}),
                    self.sample_rate)
