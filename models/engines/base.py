"""The engine interface: one job in, frames streamed through callbacks, one result out.

An engine is a long-lived object (the app keeps one per engine for the whole session):

* ``prepare(job, status)`` loads or fits what the job needs (the diffusion model for its model,
  device and precision; the instant engine's face and body rigs for its picture) unless that is
  ready already, and says whether it did work;
* ``generate(job, callbacks, keep_frames)`` runs it, streaming finished segments to
  ``callbacks.on_segment`` and stopping soon after ``callbacks.should_cancel`` turns True;
* ``release()`` frees what it holds;
* ``fps`` and ``sample_rate``: the units of the prepared engine (from its model's config), so a
  caller slices audio under the frames it receives without guessing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from models.engines.types import Callbacks, GenerationInputs, GenerationResult, GenerationSettings

if TYPE_CHECKING:
    from models.engines.registry import ModelChoice


@dataclass
class EngineJob:
    """One run: the inputs, the settings and, for the diffusion engine, which model where."""

    image: np.ndarray  # (H, W, 3) uint8
    audio: np.ndarray | None  # mono float32 at the engine's sample rate, already trimmed
    pose: np.ndarray | None  # (T, K, 3) in the reference's frame, or None
    text: str
    settings: GenerationSettings
    model: ModelChoice | None = None  # the diffusion engine's model (the instant engine needs none)
    device: str = "cpu"
    dtype: str = "float32"

    @property
    def inputs(self) -> GenerationInputs:
        return GenerationInputs(image=self.image, audio=self.audio, pose=self.pose, text=self.text)


class Engine(Protocol):
    key: str  # "model" or "instant": the CLI's and the eval's name
    name: str  # what the app shows

    @property
    def fps(self) -> float: ...

    @property
    def sample_rate(self) -> int: ...

    def prepare(self, job: EngineJob, status: Callable[[str], None] | None = None) -> bool: ...

    def generate(self, job: EngineJob, callbacks: Callbacks | None = None,
                 keep_frames: bool = False) -> GenerationResult: ...

    def release(self) -> None: ...
