"""Persistent settings (QSettings) with typed defaults, and the named generation presets."""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QSettings, QStandardPaths

ORG = "OmniHuman"
APP = "OmniHuman Studio"

# Generation controls the app remembers; the keys are the widget names in app.controls.
DEFAULTS: dict[str, object] = {
    "engine": "OmniHuman model",
    "model": "",  # ModelChoice.key; empty: the first in the list
    "device": "cpu",
    "dtype": "float32",
    "cpu_threads": 0,  # 0: all cores but one, which stays free for the UI and the camera
    "text": "",
    # steps, cfg_audio, cfg_text, anneal, anneal_strength: the selected model's (its config's sampling)
    "seed": 42,
    "random_seed": False,
    "area": 128 * 128,
    "aspect": "from picture",
    "segment_frames": 0,  # 0: the model's own (the length of its training windows)
    "max_seconds": 4.0,
    "export_quality": "high",
    "export_png": False,
    "mirror": True,
    "take_seconds": 5.0,
    "countdown": 3,
    "live_preview": True,  # the instant engine animates the inputs in the preview while nothing else plays
    "live_lips": 100,  # % of the predicted lip motion
    "live_sway": 100,  # % of the head sway
    "live_sound": False,  # the live preview plays its audio in step with the loop (off: no surprise sound at start)
}

PRESETS: dict[str, dict[str, object]] = {
    # Guidance and annealing stay the model's own (its config's sampling).
    "fast preview": {"steps": 8, "area": 96 * 96, "segment_frames": 0, "max_seconds": 2.0},
    "quality": {"steps": 30, "area": 128 * 128, "segment_frames": 0, "max_seconds": 0.0},
}

AREAS: dict[str, int] = {
    "64 px (test)": 64 * 64,
    "96 px (fast)": 96 * 96,
    "128 px (toon-s)": 128 * 128,
    "256 px (GPU)": 256 * 256,
    "480p (GPU, base)": 832 * 480,
    "720p (GPU, large)": 1280 * 720,
}
SEGMENT_FRAMES = (9, 13, 17, 25, 33, 49)


def default_data_dir() -> Path:
    loc = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppLocalDataLocation)
    return Path(loc or os.path.expanduser("~/.omnihuman-studio"))


class AppSettings:
    """Typed access to QSettings; ``path`` gives an INI file (tests), otherwise the user scope."""

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        if path is not None:
            self.q = QSettings(str(path), QSettings.Format.IniFormat)
        else:
            self.q = QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, ORG, APP)

    def get(self, key: str, default=None):
        if default is None:
            default = DEFAULTS.get(key)
        v = self.q.value(key)
        if v is None:
            return default
        try:
            if isinstance(default, bool):
                return v if isinstance(v, bool) else str(v).lower() in ("1", "true", "yes")
            if isinstance(default, int):
                return int(float(v))
            if isinstance(default, float):
                return float(v)
            if isinstance(default, list):
                return [str(x) for x in v] if isinstance(v, list) else ([str(v)] if v else [])
        except (TypeError, ValueError):
            return default
        return v

    def set(self, key: str, value) -> None:
        self.q.setValue(key, value)

    def sync(self) -> None:
        self.q.sync()

    # -- folders -------------------------------------------------------------------------------------

    @property
    def sessions_dir(self) -> Path:
        d = self.get("sessions_dir", "")
        return Path(d) if d else default_data_dir() / "sessions"

    @property
    def export_dir(self) -> Path:
        d = self.get("export_dir", "")
        return Path(d) if d else Path.home() / "Videos" / "OmniHuman"

    @property
    def model_dirs(self) -> list[str]:
        return self.get("model_dirs", [])
