"""Checkpoints: a folder with ``model.safetensors`` + ``config.json`` (+ ``MODEL_CARD.md``).

Loading is strict: the config rebuilds the exact model, and any missing, unexpected or mis-shaped
tensor is named in the error. Nothing is unpickled and nothing is downloaded: a model is a folder
on disk, bundled under ``resources/models/`` or chosen by the user.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from models.config import ModelConfig, get_preset
from models.errors import UserError
from models.model import OmniHuman

FORMAT_VERSION = 1
REPO_ROOT = Path(__file__).resolve().parent.parent
BUNDLED_DIR = REPO_ROOT / "resources" / "models"
DEFAULT_MODEL = "face-s"


class CheckpointError(UserError):
    """A model folder that cannot be loaded; the message names the folder and the problem."""


def save_model(model: OmniHuman, folder: str | os.PathLike, card: str | None = None,
               dtype: torch.dtype | None = None, extra: dict | None = None) -> Path:
    """Write ``model`` to ``folder``; ``dtype`` (e.g. bf16) casts floating tensors for shipping."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {}
    for k, v in model.state_dict().items():
        v = v.detach().cpu()
        if dtype is not None and v.is_floating_point():
            v = v.to(dtype)
        state[k] = v.contiguous()
    meta = {"format_version": str(FORMAT_VERSION), "preset": model.config.name}
    save_file(state, str(folder / "model.safetensors"), metadata=meta)
    cfg = {"format_version": FORMAT_VERSION, "model": model.config.to_dict()}
    if extra:
        cfg.update(extra)
    (folder / "config.json").write_text(json.dumps(cfg, indent=2))
    if card is not None:
        (folder / "MODEL_CARD.md").write_text(card)
    return folder


def read_config(folder: str | os.PathLike) -> ModelConfig:
    folder = Path(folder)
    path = folder / "config.json"
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: model folder not found")
    if not path.is_file():
        raise CheckpointError(f"{folder}: not a model folder (no config.json)")
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: unreadable config ({e})") from None
    if not isinstance(raw, dict) or "model" not in raw:
        raise CheckpointError(f"{path}: no 'model' section")
    if raw.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path}: format version {raw['format_version']} is newer than this program's")
    try:
        return ModelConfig.from_dict(raw["model"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: invalid model config ({e})") from None


def check_state_dict(expected: dict[str, torch.Tensor], got: dict[str, torch.Tensor], where: str) -> None:
    """Raise CheckpointError naming missing, unexpected and mis-shaped keys."""
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    shapes = sorted(
        f"{k} (checkpoint {tuple(got[k].shape)}, model {tuple(expected[k].shape)})"
        for k in set(expected) & set(got)
        if tuple(got[k].shape) != tuple(expected[k].shape)
    )
    problems = []

    def fmt(label: str, items: list[str]) -> None:
        if items:
            shown = ", ".join(items[:5]) + (f" and {len(items) - 5} more" if len(items) > 5 else "")
            problems.append(f"{len(items)} {label}: {shown}")

    fmt("missing keys", missing)
    fmt("unexpected keys", unexpected)
    fmt("mis-shaped tensors", shapes)
    if problems:
        raise CheckpointError(f"{where}: checkpoint does not match its config; " + "; ".join(problems))


def load_model(folder: str | os.PathLike, device: str | torch.device = "cpu",
               dtype: torch.dtype | None = None) -> OmniHuman:
    """Build the model of ``folder/config.json`` and load ``model.safetensors`` strictly."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    config = read_config(folder)
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise CheckpointError(f"{folder}: no model.safetensors")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{weights}: not a valid safetensors file ({e})") from None
    with torch.device("meta"):
        model = OmniHuman(config)
    check_state_dict(model.state_dict(), state, str(weights))
    model = model.to_empty(device="cpu")
    # Keep the stored dtype's values exactly, then cast as asked.
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()}, strict=True)
    model = model.to(device)
    if dtype is not None:
        model = model.to(dtype)
    return model.eval()


def random_model(preset: str, seed: int = 0, device: str | torch.device = "cpu") -> OmniHuman:
    """A randomly initialised model of a preset (for tests and for trying the pipeline untrained)."""
    try:
        config = get_preset(preset)
    except KeyError as e:
        raise UserError(str(e.args[0])) from None
    torch.manual_seed(seed)
    model = OmniHuman(config)
    # adaLN-Zero makes an untrained network output exactly zero; perturb the zero-initialised
    # layers so an untrained model's output visibly depends on its inputs.
    g = torch.Generator().manual_seed(seed)
    for p in model.transformer.parameters():
        if p.abs().sum() == 0 and p.ndim >= 1:
            p.data.copy_(torch.randn(p.shape, generator=g) * 0.02)
    return model.to(device).eval()


@dataclass(frozen=True)
class ModelEntry:
    name: str
    path: Path
    bundled: bool
    description: str
    notice: str = ""  # what a user should know before choosing it (config.json's "notice")


def read_notice(folder: str | os.PathLike) -> str:
    """The optional top-level ``notice`` of a model folder's config.json ("" when none or unreadable)."""
    try:
        raw = json.loads((Path(folder) / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return ""
    notice = raw.get("notice", "") if isinstance(raw, dict) else ""
    return notice if isinstance(notice, str) else ""


def recommended_for(folder: str | os.PathLike, framing: str | None = None) -> bool:
    """Whether the model of ``folder`` should be the default engine for a picture of ``framing``.

    Data, not code: a model folder's config.json carries ``"recommended": true`` (every picture) or
    a list of framings (``["portrait", "half"]``: pictures in its domain) once its evaluation passes
    the bar its model card names. Without the key it is not recommended, so the app starts on the
    instant engine; bundling a model that passes its bar with the key set is all it takes to switch.
    """
    try:
        raw = json.loads((Path(folder) / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False
    rec = raw.get("recommended", False) if isinstance(raw, dict) else False
    if isinstance(rec, list):
        return framing in rec
    return rec is True


def list_models(extra_dirs: list[str | os.PathLike] = ()) -> list[ModelEntry]:
    """Bundled models under resources/models plus model folders in ``extra_dirs``."""
    out = []
    for root, bundled in [(BUNDLED_DIR, True)] + [(Path(d), False) for d in extra_dirs]:
        if not root.is_dir():
            continue
        candidates = [root] if (root / "config.json").is_file() else sorted(p for p in root.iterdir() if p.is_dir())
        for p in candidates:
            if (p / "config.json").is_file() and (p / "model.safetensors").is_file():
                try:
                    desc = read_config(p).description
                except CheckpointError:
                    continue
                out.append(ModelEntry(p.name, p, bundled, desc, read_notice(p)))
    return out


def resolve_model_path(name_or_path: str | os.PathLike) -> Path:
    """A model folder from a bundled name (``toon-s``) or a path."""
    p = Path(name_or_path)
    if p.is_dir():
        return p
    bundled = BUNDLED_DIR / str(name_or_path)
    if bundled.is_dir():
        return bundled
    raise CheckpointError(f"{name_or_path}: no such model folder or bundled model")
