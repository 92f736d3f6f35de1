"""Which engines and models exist, and where they run: the registry the app, the CLI and the eval share.

Engines are named twice: a short ``key`` for the command line (``--engine model|instant``) and a
``name`` for the app's picker (kept in the user's settings). Models are ``ModelChoice``: a trained
folder or an untrained preset. Devices and precisions are checked here once, with messages a user
can act on. Nothing heavy is imported until an engine or a model is made.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from models.errors import UserError

UNTRAINED_PRESETS = {
    "toon-s": "untrained toon-s (random weights, pipeline check)",
    "tiny": "tiny (random weights, test size, seconds per run)",
}
DTYPES = ("float32", "bfloat16", "float16")


# ------------------------------------------------------------------------------------------------
# Engines


@dataclass(frozen=True)
class EngineSpec:
    key: str
    name: str
    factory: Callable[[], object]
    description: str = ""


def _diffusion():
    from models.engines.diffusion import DiffusionEngine

    return DiffusionEngine()


def _instant():
    from models.engines.instant import InstantAdapter

    return InstantAdapter()


MODEL_ENGINE = "OmniHuman model"
INSTANT_ENGINE = "Instant (photo warp)"
ENGINES: dict[str, EngineSpec] = {
    "model": EngineSpec("model", MODEL_ENGINE, _diffusion, "the OmniHuman diffusion model"),
    "instant": EngineSpec("instant", INSTANT_ENGINE, _instant,
                          "warps the picture itself along its landmarks, in real time on a CPU"),
}


def engine_spec(key_or_name: str) -> EngineSpec:
    for spec in ENGINES.values():
        if key_or_name in (spec.key, spec.name):
            return spec
    raise UserError(f"unknown engine '{key_or_name}' (choose one of {', '.join(ENGINES)})")


def make_engine(key_or_name: str):
    return engine_spec(key_or_name).factory()


def as_engine(model_or_engine):
    """An engine for ``model_or_engine``: an engine key or name, an ``OmniHuman`` (wrapped in a
    diffusion engine), or an engine already (returned as it is)."""
    if isinstance(model_or_engine, str):
        return make_engine(model_or_engine)
    if hasattr(model_or_engine, "generate") and hasattr(model_or_engine, "prepare"):
        return model_or_engine
    from models.engines.diffusion import DiffusionEngine

    return DiffusionEngine.from_model(model_or_engine)


# ------------------------------------------------------------------------------------------------
# Models


@dataclass(frozen=True)
class ModelChoice:
    """A trained model folder (``path``) or an untrained preset (``preset``, random weights)."""

    label: str
    path: str = ""
    preset: str = ""
    bundled: bool = False
    description: str = ""
    notice: str = ""  # shown under the model picker (e.g. a placeholder model says what it can't do)

    @property
    def key(self) -> str:
        return f"path:{self.path}" if self.path else f"preset:{self.preset}"

    @property
    def trained(self) -> bool:
        return bool(self.path)

    def config(self):
        """The model's ``ModelConfig`` (read from its folder without loading weights)."""
        if self.path:
            from models.checkpoint import read_config

            return read_config(self.path)
        from models.config import get_preset

        return get_preset(self.preset)


def model_choices(extra_dirs: list[str] = ()) -> list[ModelChoice]:
    """Trained models (bundled, then the user's folders), then the untrained fallbacks."""
    from models.checkpoint import list_models

    out = []
    try:
        entries = list_models([d for d in extra_dirs if d])
    except OSError:
        entries = []
    for e in entries:
        where = "bundled" if e.bundled else str(e.path.parent)
        out.append(ModelChoice(f"{e.name} ({where})", path=str(e.path), bundled=e.bundled, description=e.description,
                               notice=e.notice))
    for preset, label in UNTRAINED_PRESETS.items():
        out.append(ModelChoice(label, preset=preset, description="untrained: the output is noise-like"))
    return out


def model_from_args(model: str | None, random_init: str | None) -> ModelChoice:
    """The CLI's ``--model NAME_OR_DIR`` / ``--random-init PRESET`` as a choice (default: the bundled one)."""
    from models.checkpoint import DEFAULT_MODEL, resolve_model_path

    if random_init:
        return ModelChoice(f"untrained {random_init}", preset=random_init)
    path = resolve_model_path(model or DEFAULT_MODEL)
    return ModelChoice(path.name, path=str(path))


# ------------------------------------------------------------------------------------------------
# Devices and precision


def available_devices() -> list[str]:
    import torch

    devs = ["cpu"]
    if torch.cuda.is_available():
        devs += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        devs.append("mps")
    return devs


def resolve_device(name: str) -> str:
    """``auto`` -> the first GPU, else the CPU; a CUDA device that is not there -> UserError."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {name}: no CUDA GPU is available to PyTorch; choose the CPU")
    return name


def resolve_dtype(name: str, device: str) -> str:
    """``auto`` -> bfloat16 on a GPU that has it, else float32; float16 on the CPU -> UserError."""
    import torch

    if name == "auto":
        return "bfloat16" if device.startswith("cuda") and torch.cuda.is_bf16_supported() else "float32"
    if name not in DTYPES:
        raise UserError(f"precision must be one of {DTYPES}, got '{name}'")
    if name == "float16" and device == "cpu":
        raise UserError("float16 is not supported on the CPU; choose float32 or bfloat16")
    return name


def torch_dtype(name: str):
    import torch

    try:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]
    except KeyError:
        raise UserError(f"precision must be one of {DTYPES}, got '{name}'") from None


def load_model(choice: ModelChoice, device: str, dtype: str):
    """Load the model of ``choice`` on ``device`` in ``dtype``; UserError with an actionable message."""
    from models.checkpoint import load_model as load_folder
    from models.checkpoint import random_model

    device = resolve_device(device)
    td = torch_dtype(resolve_dtype(dtype, device))
    if choice.path:
        return load_folder(choice.path, device=device, dtype=td)
    return random_model(choice.preset, seed=0, device=device).to(td)
