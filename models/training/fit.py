"""Fit a recipe to a wall-clock budget on the machine at hand.

A recipe fixes the shape of a run (stages, keep ratios, batch sizes, learning rates); the hardware
decides how long its steps take. ``time_stages`` times a few real steps of every stage (the
trainer's own ``train_step``, on the real data, through the real data loader, on this device) and
``scale_recipe`` scales all step counts by one factor so that the whole plan fits the budget. The stages keep their
proportions, so a fitted recipe is the same plan, only shorter or longer, and it is written out as
an ordinary recipe file: training from it is still a pure function of the step and resumes exactly.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from models.training.recipe import Recipe, Stage


@dataclass(frozen=True)
class StageTiming:
    name: str
    seconds_per_step: float
    steps_timed: int
    fixed_seconds: float = 0.0  # once per run, whatever the step count (building a latent cache)


def time_stages(recipe: Recipe, data: list[str], device: str = "auto", warmup_steps: int = 2,
                timed_steps: int = 5, num_workers: int | None = None,
                log: Callable[[str], None] | None = None) -> list[StageTiming]:
    """Seconds per step of each stage with steps > 0 (after ``warmup_steps`` untimed ones)."""
    from models.training.trainer import Trainer

    log = log or (lambda s: None)
    # One trainer for all probes: building the model once is most of the fixed cost.
    probe = dataclasses.replace(recipe, stages=tuple(dataclasses.replace(s, steps=max(s.steps, 1))
                                                     for s in recipe.stages))
    with tempfile.TemporaryDirectory(prefix="omnihuman-fit-") as tmp:
        trainer = Trainer(probe, data, tmp, device=device, num_workers=num_workers, log=lambda s: None)
        return _time_each_stage(trainer, recipe, warmup_steps, timed_steps, log)


def _time_each_stage(trainer, recipe: Recipe, warmup_steps: int, timed_steps: int,
                     log: Callable[[str], None]) -> list[StageTiming]:
    sync = torch.cuda.synchronize if trainer.device.type == "cuda" else (lambda: None)
    out = []
    cached: set[tuple[int, int]] = set()
    for idx, stage in enumerate(recipe.stages):
        if stage.steps == 0:
            continue
        trainer._ensure_optimizer(idx, stage)
        trainer._wrap(stage)
        fixed = 0.0
        if stage.kind == "dit" and stage.cache_windows:
            # Build a small cache to time both the encoding (per window, paid once per run for each
            # distinct cache) and the steps on cached windows.
            probe_windows = min(stage.cache_windows, max(64, 8 * stage.batch_size))
            timed_stage = dataclasses.replace(stage, cache_windows=probe_windows)
            t_build = time.perf_counter()
            loader = iter(trainer._loader(idx, timed_stage))
            per_window = (time.perf_counter() - t_build) / probe_windows
            key = (stage.segment_frames, stage.cache_windows)
            if key not in cached:
                cached.add(key)
                fixed = per_window * stage.cache_windows
                log(f"  {stage.name:8s} latent cache: {per_window * 1000:8.1f} ms/window, "
                    f"{fixed / 60:.1f} min for {stage.cache_windows} windows")
        else:
            loader = iter(trainer._loader(idx, stage))
        t0 = None
        for i in range(warmup_steps + timed_steps):
            if i == warmup_steps:
                sync()
                t0 = time.perf_counter()
            trainer.train_step(stage, next(loader))
        sync()
        dt = (time.perf_counter() - t0) / timed_steps
        del loader
        out.append(StageTiming(stage.name, dt, timed_steps, fixed))
        log(f"  {stage.name:8s} {stage.kind:3s} batch {stage.batch_size:3d}: {dt * 1000:8.1f} ms/step")
        trainer.optimizer = None
        trainer.opt_stage = -1
    return out


def scale_recipe(recipe: Recipe, timings: list[StageTiming], seconds: float) -> Recipe:
    """The recipe with every stage's steps scaled by one factor so the run takes ``seconds``."""
    per_step = {t.name: t.seconds_per_step for t in timings}
    planned = sum(s.steps * per_step[s.name] for s in recipe.stages if s.steps)
    if planned <= 0:
        raise ValueError("the recipe has no steps to fit")
    fixed = sum(t.fixed_seconds for t in timings)
    if fixed >= seconds:
        raise ValueError(f"building the latent caches alone takes {fixed / 60:.1f} min, more than the "
                         f"{seconds / 60:.1f} min budget; cache fewer windows")
    factor = (seconds - fixed) / planned
    stages = []
    for s in recipe.stages:
        steps = 0 if s.steps == 0 else max(1, int(math.floor(s.steps * factor)))
        warmup = min(max(1, round(s.warmup * factor)) if s.warmup else 0, max(steps // 5, 1 if s.warmup else 0))
        stages.append(dataclasses.replace(s, steps=steps, warmup=warmup))
    total = sum(s.steps for s in stages)
    return dataclasses.replace(recipe, stages=tuple(stages), log_every=max(1, min(recipe.log_every, total // 100 or 1)),
                               checkpoint_every=max(1, min(recipe.checkpoint_every, total // 5 or 1)))


def recipe_to_json(recipe: Recipe, comment: str = "") -> dict:
    """A recipe as the JSON object ``parse_recipe`` reads back."""
    def stage(s: Stage) -> dict:
        d = dataclasses.asdict(s)
        if not d["keep"]:
            del d["keep"]
        return d

    raw = dataclasses.asdict(recipe)
    raw["stages"] = [stage(s) for s in recipe.stages]
    if comment:
        raw["comment"] = comment
    return raw

