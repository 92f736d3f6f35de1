"""Persistent settings (QSettings) with typed defaults, and the named generation presets."""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QSettings, QStandardPaths

ORG = "OmniHuman"
APP = "OmniHuman Studio"

# Generation controls the app remembers; the keys are the widget names in app.controls.
DEFAULTS: dict[str, object] = {
    "engine": "",  # "": picked for the picture (app.controls.default_engine) until the user picks one
    "model": "",  # ModelChoice.key; empty: the first in the list
    "device": "cpu",
    "dtype": "float32",
    "cpu_threads": 0,  # 0: all cores but one, which stays free for the UI and the camera
    "text": "",
    # steps, cfg_audio, audio_focus, cfg_text, anneal, anneal_strength, motion_anchor, still_lead: the
    # selected model's (its config's sampling)
    "seed": 42,
    "random_seed": False,
    "area": 0,  # the model engine's frame area; 0: the model's own (its training size)
    "instant_area": 0,  # the instant engine's; 0: the picture's own size (long side capped)
    "aspect": "from picture",
    "segment_frames": 0,  # 0: the model's own (the length of its training windows)
    "max_seconds": 0.0,  # 0: the whole audio; a cap is shown beside Generate and on every take it cut
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

# The named presets of the model engine's sampling; "default" is what a fresh install starts with, and
# the panel shows which one the current values match (none: "custom").
DEFAULT_PRESET = "default"
MODEL_OWN = None  # a preset value that is the selected model's own
PRESETS: dict[str, dict[str, object]] = {
    # Guidance and annealing stay the model's own (its config's sampling) unless a preset names them;
    # a value of None (MODEL_OWN) is the selected model's own, read from its config by app.controls.
    "fast preview": {"steps": 8, "area": 96 * 96, "segment_frames": 0, "max_seconds": 2.0},
    DEFAULT_PRESET: {"steps": MODEL_OWN, "cfg_audio": MODEL_OWN, "audio_focus": MODEL_OWN, "cfg_text": MODEL_OWN,
                     "anneal": MODEL_OWN, "anneal_strength": MODEL_OWN, "motion_anchor": MODEL_OWN,
                     "still_lead": MODEL_OWN,
                     "area": 0, "segment_frames": 0, "max_seconds": 0.0},
    "quality": {"steps": 30, "area": 0, "segment_frames": 0, "max_seconds": 0.0},
}

# The model engine's frame sizes (pixel areas); 0 is the chosen model's own, named by the panel.
AREAS: dict[str, int] = {
    "64 px (test size)": 64 * 64,
    "96 px (fast)": 96 * 96,
    "128 px": 128 * 128,
    "256 px (GPU models)": 256 * 256,
    "480p (base, GPU)": 832 * 480,
    "720p (large, GPU)": 1280 * 720,
}
# The instant engine renders the picture itself: at its own size (long side capped by the engine's
# MAX_SIDE, named in the label by app.controls), or smaller for speed.
INSTANT_AREAS: dict[str, int] = {
    "the picture's own": 0,
    "about 640x480 (faster)": 640 * 480,
    "about 320x240 (fastest)": 320 * 240,
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
        """Where Export opens: the last folder exported to, else ~/Videos/OmniHuman (created), else home.

        A save dialog given a folder that does not exist opens in the working directory, so the
        folder returned always exists."""
        d = self.get("export_dir", "")
        if d and Path(d).is_dir():
            return Path(d)
        default = Path.home() / "Videos" / "OmniHuman"
        try:
            default.mkdir(parents=True, exist_ok=True)
            return default
        except OSError:
            return Path.home()

    @property
    def model_dirs(self) -> list[str]:
        return self.get("model_dirs", [])
