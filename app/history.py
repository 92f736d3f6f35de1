"""The history of takes: one record per run folder, rebuilt from the folders on disk (Qt-free).

Every run writes ``run.json`` (the app's settings, engine, model, seed, size) beside its segments,
so the history of earlier sessions is read back from the sessions folder when the app starts: the
takes on disk are the history, and a restart loses nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.media import DEFAULT_FPS

MAX_RESTORED = 60  # the newest runs read back at start (older ones stay on disk)


@dataclass
class RunRecord:
    """One take in the history."""

    run_dir: Path
    settings: dict
    seed: int | None = None
    fps: float = DEFAULT_FPS
    audio: np.ndarray | None = None  # what played under it; None for a restored take until it is read
    thumbnail: np.ndarray | None = None
    segments: int = 0
    status: str = "running"
    extra: dict = field(default_factory=dict)
    model_label: str = ""
    num_frames: int = 0
    size: tuple[int, int] | None = None  # (width, height)

    @property
    def engine(self) -> str:
        return str(self.settings.get("engine", ""))

    @property
    def is_instant(self) -> bool:
        return self.engine.lower().startswith("instant")

    def inputs(self) -> str:
        """The picture and the audio of the take, by file name."""
        s = self.settings
        picture = Path(s["image_file"]).name if s.get("image_file") else "a picture"
        audio = Path(s["audio_file"]).name if s.get("audio_file") else "a recording or no audio"
        return f"{picture} + {audio}"

    def summary(self) -> str:
        s = self.settings
        who = "Instant" if self.is_instant else (self.model_label or s.get("model", "") or "model")
        if self.is_instant:
            how = f"seed {self.seed}"
        else:
            how = (f"seed {self.seed}  steps {s.get('steps')}  aCFG {s.get('cfg_audio')} focus {s.get('audio_focus')}"
                   f"  tCFG {s.get('cfg_text')}"
                   f"  {s.get('anneal')} {s.get('anneal_strength')}  anchor {s.get('motion_anchor')}"
                   f"{'  lead' if s.get('still_lead') else ''}")
        length = f"{self.num_frames / self.fps:.1f} s" if self.num_frames and self.fps else f"{self.segments} seg"
        size = f"  {self.size[0]}x{self.size[1]}" if self.size else ""
        return f"{who}: {self.inputs()}\n{how}\n{length}{size}  {self.status}"


def read_run(run_dir: Path) -> RunRecord | None:
    """The record of one run folder, or None when it holds no finished segment or no readable run.json."""
    run_dir = Path(run_dir)
    segs = sorted(run_dir.glob("segment_*.npy"))
    if not segs:
        return None
    try:
        meta = json.loads((run_dir / "run.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(meta, dict):
        return None
    settings = dict(meta.get("settings") or {})
    settings.setdefault("engine", meta.get("engine", ""))
    try:
        first = np.load(segs[0], mmap_mode="r")  # a view: only the first frame is read
        thumb = np.array(first[0]) if first.ndim == 4 and len(first) else None
    except (OSError, ValueError):
        thumb = None
    fps = float(meta.get("fps") or DEFAULT_FPS)
    n = int(meta.get("num_frames") or sum(int(x.get("frames", 0)) for x in meta.get("segments", [])))
    done = meta.get("cancelled") is not None
    status = ("cancelled" if meta.get("cancelled") else "done") if done else "stopped early"
    size = (int(meta["width"]), int(meta["height"])) if meta.get("width") and meta.get("height") else None
    if size is None and thumb is not None:
        size = (thumb.shape[1], thumb.shape[0])
    return RunRecord(run_dir, settings, meta.get("seed"), fps, None, thumb, len(segs), status,
                     {"video": str(run_dir / "take.mp4") if (run_dir / "take.mp4").is_file() else ""},
                     str(meta.get("model", "")), n, size)


def scan_runs(sessions_dir: Path, limit: int = MAX_RESTORED) -> list[RunRecord]:
    """The takes under ``sessions_dir``, oldest first (folder names are time stamps), the newest ``limit``."""
    root = Path(sessions_dir)
    if not root.is_dir():
        return []
    dirs = sorted((d for d in root.iterdir() if d.is_dir() and d.name.startswith("run-")), key=lambda d: d.name)
    out = []
    for d in dirs[-limit:]:
        rec = read_run(d)
        if rec is not None:
            out.append(rec)
    return out


def record_audio(rec: RunRecord) -> np.ndarray | None:
    """The audio that plays under a take: its own (in memory), else the take's MP4 track, else its
    audio file trimmed as it was. Blocking (decodes): call it off the UI thread."""
    if rec.audio is not None:
        return rec.audio
    from models.media import SAMPLE_RATE, MediaError, read_audio

    take = rec.run_dir / "take.mp4"
    if take.is_file():
        try:
            return read_audio(take, allow_silent=True)
        except MediaError:
            pass
    path = rec.settings.get("audio_file")
    if path and Path(path).is_file():
        try:
            audio = read_audio(path)
        except MediaError:
            return None
        trim = rec.settings.get("trim") or (0.0, len(audio) / SAMPLE_RATE)
        return audio[int(trim[0] * SAMPLE_RATE): int(round(trim[1] * SAMPLE_RATE))]
    return None
