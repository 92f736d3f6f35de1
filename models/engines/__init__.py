"""The two engines behind one interface (DESIGN section 9).

* ``types``: inputs, settings, callbacks, result, driving-mode resolution (shared by both engines);
* ``base``: ``EngineJob`` and the ``Engine`` protocol (prepare, generate, release, fps, sample_rate);
* ``diffusion``: the OmniHuman model engine (``models.pipeline``);
* ``instant``: the instant engine's adapter (``models.instant``, no diffusion stack);
* ``registry``: the engines by key and name, the models, devices and precisions;
* ``writer``: the run writer (segments, run.json, MP4) and the export.

Importing this package imports neither engine: the registry makes them on demand.
"""

from models.engines.base import Engine, EngineJob
from models.engines.registry import ENGINES, ModelChoice, as_engine, engine_spec, make_engine
from models.engines.types import (
    MODES,
    Callbacks,
    GenerationInputs,
    GenerationResult,
    GenerationSettings,
    resolve_mode,
)

__all__ = [
    "ENGINES", "MODES", "Callbacks", "Engine", "EngineJob", "GenerationInputs", "GenerationResult",
    "GenerationSettings", "ModelChoice", "as_engine", "engine_spec", "make_engine", "resolve_mode",
]
