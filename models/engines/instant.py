"""The instant engine (``models.instant``) behind the engine interface.

``prepare`` fits the face and body rigs of the job's picture (about a second) and keeps them while
the picture and the frame size stay the same; the diffusion settings (model, steps, guidance,
segments) do not apply. Nothing here imports the diffusion stack.
"""

from __future__ import annotations

from collections.abc import Callable

from models.engines.base import EngineJob
from models.engines.registry import INSTANT_ENGINE
from models.engines.types import Callbacks, GenerationResult


class InstantAdapter:
    key = "instant"
    name = INSTANT_ENGINE

    def __init__(self) -> None:
        self._key = None
        self.engine = None  # models.instant.engine.InstantEngine of the current picture
        self.model = None  # no network to load

    @property
    def fps(self) -> float:
        from models.instant.mouth import native_units

        return native_units()[0]

    @property
    def sample_rate(self) -> int:
        from models.instant.mouth import native_units

        return native_units()[1]

    def prepare(self, job: EngineJob, status: Callable[[str], None] | None = None) -> bool:
        from models.instant.engine import InstantEngine, output_size

        key = (hash(job.image.tobytes()), job.image.shape, job.settings.area)
        if key == self._key and self.engine is not None:
            return False
        if status:
            status("Fitting the face and body of the picture...")
        h0, w0 = job.image.shape[:2]
        self.engine = InstantEngine(job.image, output_size(h0, w0, job.settings.area))
        self._key = key
        return True

    def generate(self, job: EngineJob, callbacks: Callbacks | None = None,
                 keep_frames: bool = False) -> GenerationResult:
        from models.instant.engine import generate_instant

        self.prepare(job)
        return generate_instant(job.inputs, job.settings, callbacks, keep_frames=keep_frames, engine=self.engine)

    def release(self) -> None:
        self.engine = None
        self._key = None
