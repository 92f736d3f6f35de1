"""The OmniHuman model engine: ``models.pipeline.generate`` behind the engine interface.

It keeps one model loaded and reloads only when the job asks for another model, device or
precision. ``wav2vec2``: a local wav2vec2 folder, the audio encoder of models trained on its
features (``cond.audio_encoder == "wav2vec2"``).
"""

from __future__ import annotations

from collections.abc import Callable

from models.engines.base import EngineJob
from models.engines.registry import MODEL_ENGINE, load_model
from models.engines.types import Callbacks, GenerationResult


class DiffusionEngine:
    key = "model"
    name = MODEL_ENGINE

    def __init__(self, loader: Callable = load_model, wav2vec2: str | None = None) -> None:
        self._loader = loader
        self._key: tuple | None = None
        self.model = None
        self.wav2vec2 = wav2vec2
        self.audio_features = None  # the audio encoder, made with the model

    @classmethod
    def from_model(cls, model, wav2vec2: str | None = None) -> DiffusionEngine:
        """An engine around a model loaded already (the eval, benchmarks); jobs without a model use it."""
        engine = cls(wav2vec2=wav2vec2)
        engine.model = model
        engine._key = ("loaded", str(model.device), None)
        engine._make_audio_encoder()
        return engine

    @property
    def fps(self) -> float:
        return float(self.model.config.cond.fps)

    @property
    def sample_rate(self) -> int:
        return int(self.model.config.cond.sample_rate)

    def prepare(self, job: EngineJob, status: Callable[[str], None] | None = None) -> bool:
        """Load the model the job asks for unless it is loaded already; True when it (re)loaded."""
        if job.model is None:
            if self.model is None:
                from models.errors import UserError

                raise UserError("no model chosen for the OmniHuman engine")
            return False
        key = (job.model.key, job.device, job.dtype)
        if self._key == key and self.model is not None:
            return False
        if status:
            status(f"Loading {job.model.label} on {job.device} ({job.dtype})...")
        self.model = None  # free the old one first: two big models may not fit together
        self._key = None
        self.model = self._loader(job.model, job.device, job.dtype)
        self._key = key
        self._make_audio_encoder()
        return True

    def _make_audio_encoder(self) -> None:
        self.audio_features = None
        cond = self.model.config.cond
        if self.wav2vec2 or cond.audio_encoder != "mel":
            from models.conditions.audio import make_audio_encoder

            self.audio_features = make_audio_encoder(cond, self.wav2vec2, device=self.model.device)

    def generate(self, job: EngineJob, callbacks: Callbacks | None = None,
                 keep_frames: bool = False) -> GenerationResult:
        from models import pipeline  # looked up per call: tests replace pipeline.generate

        extra = {"audio_features": self.audio_features} if self.audio_features is not None else {}
        return pipeline.generate(self.model, job.inputs, job.settings, callbacks, keep_frames=keep_frames, **extra)

    def release(self) -> None:
        self.model = None
        self.audio_features = None
        self._key = None
