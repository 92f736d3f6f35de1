"""``python main.py train`` and ``python main.py export-model``."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="omni-condition training (stage 0 VAE, then stages 1-3)",
                       description="Train with a recipe; the same command runs under torchrun for many GPUs.")
    p.add_argument("--recipe", required=True, help="recipe JSON file or bundled recipe name (resources/recipes)")
    p.add_argument("--data", required=True, action="append", help="dataset folder (repeat for several)")
    p.add_argument("--out", required=True, help="run directory (checkpoints, log)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out exactly where it stopped")
    p.add_argument("--init", metavar="MODEL_DIR",
                   help="start a new run from a trained model folder's weights (fine-tuning; same preset)")
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=int, help="data loader processes (default: the recipe's)")
    p.add_argument("--max-steps", type=int, help="stop after this many steps in total (the run can be resumed)")
    p.add_argument("--max-minutes", type=float,
                   help="stop after this much wall-clock time, with a checkpoint (the run can be resumed)")
    p.add_argument("--export", metavar="DIR", help="after training, write a model folder (EMA weights, bf16)")
    p.set_defaults(func=run)

    f = sub.add_parser("fit-recipe", help="scale a recipe's steps to a time budget on this machine",
                       description="Time a few real steps of every stage on this device and data, then write the "
                                   "recipe with all step counts scaled by one factor to fill the budget.")
    f.add_argument("--recipe", required=True, help="recipe JSON file or bundled recipe name")
    f.add_argument("--data", required=True, action="append", help="dataset folder (repeat for several)")
    when = f.add_mutually_exclusive_group(required=True)
    when.add_argument("--minutes", type=float, help="wall-clock minutes of training to fill")
    when.add_argument("--end-by", type=float, metavar="EPOCH_SECONDS",
                      help="fill the time from the end of the timing until this moment (Unix time)")
    f.add_argument("--out", required=True, help="where to write the fitted recipe (JSON)")
    f.add_argument("--device", default="auto")
    f.add_argument("--workers", type=int, help="data loader processes (default: the recipe's)")
    f.add_argument("--timed-steps", type=int, default=5, help="steps timed per stage (after 2 warm-up steps)")
    f.set_defaults(func=run_fit)

    e = sub.add_parser("export-model", help="write a model folder from a training run")
    e.add_argument("run_dir")
    e.add_argument("--out", required=True)
    e.add_argument("--fp32", action="store_true", help="keep float32 weights (default bf16)")
    e.set_defaults(func=run_export)
    add_eval(sub)


def _check_data(dirs: list[str]) -> None:
    from models.errors import UserError

    for d in dirs:
        if not (Path(d) / "index.json").is_file():
            raise UserError(f"{d}: not a dataset folder (no index.json); make one with `main.py synth`")


def run(args) -> int:
    from models.checkpoint import resolve_model_path
    from models.training.recipe import load_recipe
    from models.training.trainer import Trainer, close_distributed

    recipe = load_recipe(args.recipe)
    _check_data(args.data)
    ok = False
    try:
        trainer = Trainer(recipe, args.data, args.out, device=args.device, resume=args.resume,
                          num_workers=args.workers, max_steps=args.max_steps, max_minutes=args.max_minutes,
                          init=resolve_model_path(args.init) if args.init else None)
        trainer.train()
        if args.export and trainer.dist.main:
            from models.training.card import model_card

            trainer.export(args.export, model_card(trainer, args.data))
        ok = True
    finally:
        close_distributed(wait=ok)
    return 0


def run_fit(args) -> int:
    import json
    import sys
    import time

    from models.errors import UserError
    from models.training.fit import recipe_to_json, scale_recipe, time_stages
    from models.training.recipe import load_recipe

    recipe = load_recipe(args.recipe)
    _check_data(args.data)
    if args.minutes is not None and args.minutes <= 0:
        raise UserError(f"--minutes must be positive, got {args.minutes:g}")
    if args.timed_steps < 1:
        raise UserError(f"--timed-steps must be at least 1, got {args.timed_steps}")
    print(f"timing {len(recipe.stages)} stages of {recipe.name} on {args.device}:", file=sys.stderr, flush=True)
    timings = time_stages(recipe, args.data, device=args.device, timed_steps=args.timed_steps,
                          num_workers=args.workers, log=lambda m: print(m, file=sys.stderr, flush=True))
    minutes = args.minutes if args.minutes is not None else (args.end_by - time.time()) / 60.0
    if minutes <= 0:
        raise UserError(f"--end-by: that moment passed while timing the stages ({-minutes:.1f} min ago)")
    fitted = scale_recipe(recipe, timings, minutes * 60.0)
    factor = fitted.total_steps / max(recipe.total_steps, 1)
    measured = ", ".join(f"{t.name} {t.seconds_per_step * 1000:.0f} ms/step" for t in timings)
    comment = (f"{recipe.name} fitted to {minutes:.3g} min of training (steps x {factor:.4f}); measured: "
               f"{measured}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(recipe_to_json(fitted, comment), indent=2) + "\n")
    for s in fitted.stages:
        print(f"{s.name:8s} {s.steps:7d} steps (warmup {s.warmup})")
    print(f"{fitted.total_steps} steps in all, about {minutes:.3g} min; wrote {out}")
    return 0


def run_export(args) -> int:
    import json

    import torch

    from models.errors import UserError
    from models.training.card import model_card
    from models.training.recipe import parse_recipe
    from models.training.trainer import Trainer

    state = Path(args.run_dir) / "checkpoint" / "state.json"
    if not state.is_file():
        raise UserError(f"{args.run_dir}: not a training run (no checkpoint/state.json)")
    raw = json.loads(state.read_text())["recipe"]
    recipe = parse_recipe({k: v for k, v in raw.items()}, str(state))
    trainer = Trainer(recipe, [], args.run_dir, device="cpu", resume=True)
    trainer.export(args.out, model_card(trainer, []), dtype=None if args.fp32 else torch.bfloat16)
    print(f"wrote {args.out}")
    return 0


def add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="benchmark a model on held-out synthetic clips, per driving mode")
    p.add_argument("--model", help="model folder or bundled name (the model engine)")
    p.add_argument("--engine", choices=("model", "instant"), default="model",
                   help="instant: score the instant engine on the same clips instead of a model")
    p.add_argument("--data", required=True, help="held-out dataset folder (e.g. `main.py synth --seed 999`)")
    p.add_argument("--clips", type=int, default=6)
    p.add_argument("--steps", type=int, help="sampling steps (default: the model's)")
    p.add_argument("--seconds", type=float, default=4.0, help="seconds of each clip to generate")
    p.add_argument("--drift-seconds", type=float, default=30.0)
    p.add_argument("--no-mediapipe", action="store_true", help="skip the pose and hand metrics")
    p.add_argument("--cfg-audio", type=float, help="audio guidance scale to sample with (default: the model's)")
    p.add_argument("--anneal-strength", type=float,
                   help="guidance annealing strength, 0-1 (default: the model's)")
    p.add_argument("--json", help="also write the table as JSON here")
    p.set_defaults(func=run_eval)


def run_eval(args) -> int:
    import json
    import sys

    from models.checkpoint import load_model, resolve_model_path
    from models.engines import make_engine
    from models.engines.diffusion import DiffusionEngine
    from models.errors import UserError
    from models.training.evaluate import format_table, run_benchmark

    _check_data([args.data])
    if args.engine == "instant":
        if args.model:
            raise UserError("--model does not apply to --engine instant")
        model = make_engine("instant")
    elif not args.model:
        raise UserError("--model is required (or --engine instant)")
    else:
        model = DiffusionEngine.from_model(load_model(resolve_model_path(args.model)))
    table = run_benchmark(model, args.data, clips=args.clips, steps=args.steps, seconds=args.seconds,
                          drift_seconds=args.drift_seconds, use_mediapipe=not args.no_mediapipe,
                          log=lambda s: print(s, file=sys.stderr, flush=True), cfg_audio=args.cfg_audio,
                          anneal_strength=args.anneal_strength)
    print(format_table(table))
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=2))
    return 0
