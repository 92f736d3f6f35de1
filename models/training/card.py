"""MODEL_CARD.md for an exported model: data, recipe, steps, hardware, time, evaluation."""

from __future__ import annotations

import json
import platform

import torch


def model_card(trainer, data_dirs: list[str], eval_table: str | None = None) -> str:
    r = trainer.recipe
    log = trainer.run_dir / "log.jsonl"
    elapsed = 0.0
    if log.is_file():
        lines = [json.loads(x) for x in log.read_text().splitlines() if x.strip()]
        elapsed = sum(0 for _ in lines) + (lines[-1]["elapsed"] if lines else 0.0)
    dev = (torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({platform.processor() or 'x86-64'})")
    stages = "\n".join(
        f"| {s.name} | {s.kind} | {s.steps} | {s.batch_size} | {s.lr:g} | "
        f"{', '.join(f'{k} {v:g}' for k, v in s.keep.items()) or '-'} | {s.motion_prob:g} |"
        for s in r.stages
    )
    init = f", starting from the weights of `{trainer.init}`" if getattr(trainer, "init", None) else ""
    return f"""# {trainer.config.name}: {r.name}

Preset `{trainer.config.name}` ({trainer.model.num_parameters()['total'] / 1e6:.1f} M parameters), trained by
`python main.py train --recipe {r.name}` for {trainer.step} steps{init}.

## Data
{', '.join(data_dirs) or 'see the run directory'} (synthetic toon world unless stated otherwise).

## Recipe
| stage | kind | steps | batch | lr | keep ratios | motion |
| --- | --- | --- | --- | --- | --- | --- |
{stages}

## Hardware and time
{dev}; last logged wall time of this run segment: {elapsed / 60:.1f} min.

## Evaluation
{eval_table or 'not evaluated yet: run `python main.py eval --model DIR --data DIR`.'}
"""
