"""The learnability ladder: several configurations of a preset, each trained for the same short CPU
budget on the same data with the same seed, measured on the same held-out clips.

    python benchmarks/ladder.py --spec benchmarks/ladder-face-s.json --out LADDER_DIR \\
        --held-out HELD_OUT [--minutes 12] [--only RUNG ...] [--clips 6] [--seconds 3] [--steps 10]

The spec names a base recipe (its transformer stages), the datasets by key and the rungs: each rung
changes the preset's architecture (``"architecture"``, as in a recipe), the dataset, and the model
folder whose VAE it starts from (``"init"``). Per rung, in ``LADDER_DIR/<rung>/``: the run, its
exported model, ``result.json`` and ``identity.png`` (frames of the 10-s take, one per second).
Measured per rung:

* samples/s: training windows per second of the transformer stage (after the latent cache is built);
* the flow loss over the last logged steps;
* audio mode on the held-out clips: mouth-openness correlation with the true mouth track against the
  shifted-audio baseline, sync (true minus shifted) and its peak offset;
* audio dependence: the lip-cell velocity error with another window's audio above the own audio's
  (percent, mean over t = 0.3 .. 0.9; ``benchmarks/audio_use.py --run``);
* identity over a 10-s audio-driven take of the first held-out clip: SSIM to the reference and detail
  (variance of the Laplacian) as a share of the reference's, in the first and the last second, beside
  the VAE round trip of the reference;
* generation seconds per second of video at the evaluation's steps.

A rung that already holds a result is skipped (delete its ``result.json`` to measure again); a rung
whose run was cut off resumes. ``--table`` prints the table of the results so far.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

ROOT = Path(__file__).resolve().parent.parent


def _resolve(path: str, base: Path) -> str:
    """A spec path: absolute, ``~``, relative to the repository, or relative to the spec."""
    p = Path(path).expanduser()
    if p.is_absolute():
        return str(p)
    for cand in (ROOT / p, base / p):
        if cand.exists():
            return str(cand)
    return str(ROOT / p)


def load_spec(path: str) -> dict:
    from models.errors import UserError

    p = Path(path)
    try:
        spec = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"{p}: cannot read the ladder spec ({e})") from None
    for key in ("recipe", "data", "rungs"):
        if key not in spec:
            raise UserError(f"{p}: missing key '{key}'")
    names = [r.get("name") for r in spec["rungs"]]
    if len(set(names)) != len(names) or not all(names):
        raise UserError(f"{p}: every rung needs a unique 'name'")
    for r in spec["rungs"]:
        if r.get("data", "default") not in spec["data"]:
            raise UserError(f"{p}: rung '{r['name']}': unknown data '{r.get('data')}' "
                            f"(known: {', '.join(spec['data'])})")
    spec["_base"] = p.parent
    return spec


def rung_recipe(spec: dict, rung: dict):
    """The base recipe with the rung's architecture (and any top-level recipe keys it sets)."""
    from models.training.recipe import load_recipe, parse_recipe

    base = load_recipe(_resolve(spec["recipe"], spec["_base"]))
    import dataclasses

    raw = dataclasses.asdict(base)
    raw["stages"] = [{k: v for k, v in s.items()} for s in raw["stages"]]
    raw["name"] = f"{base.name}-{rung['name']}"
    raw["architecture"] = rung.get("architecture", {})
    for k, v in rung.get("recipe", {}).items():
        raw[k] = v
    return parse_recipe(raw, f"ladder rung '{rung['name']}'")


def _share_cache(out: Path, run_dir: Path) -> None:
    """Copy any latent cache a sibling rung already built (the file name is the cache's key: same
    data, window count, seed and VAE weights)."""
    mine = run_dir / "latents"
    for other in out.iterdir():
        if other == run_dir or not (other / "latents").is_dir():
            continue
        for f in (other / "latents").glob("*.pt"):
            if not (mine / f.name).exists():
                mine.mkdir(parents=True, exist_ok=True)
                shutil.copy2(f, mine / f.name)


def _last_loss(run_dir: Path, n: int = 5) -> float:
    rows = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "loss" in r and "psnr" not in r]  # transformer steps (VAE steps log a PSNR)
    return float(np.mean([r["loss"] for r in rows[-n:]])) if rows else float("nan")


def train_rung(spec: dict, rung: dict, out: Path, minutes: float, log=print) -> dict:
    from models.training.trainer import Trainer

    recipe = rung_recipe(spec, rung)
    run_dir = out / rung["name"]
    data = [_resolve(spec["data"][rung.get("data", "default")], spec["_base"])]
    resume = (run_dir / "checkpoint" / "state.json").is_file()
    init = None if resume or not rung.get("init") else _resolve(rung["init"], spec["_base"])
    trainer = Trainer(recipe, data, run_dir, resume=resume, init=init, max_minutes=minutes, log=log)
    run_dir.mkdir(parents=True, exist_ok=True)
    _share_cache(out, run_dir)
    si, stage = next((i, s) for i, s in enumerate(recipe.stages) if s.kind == "dit")
    seg = stage.segment_frames or trainer.config.sampling.segment_frames
    if stage.cache_windows:
        t0 = time.perf_counter()
        trainer._cached_windows(si, stage, seg)  # built (or loaded) before the clock starts
        log(f"{rung['name']}: latent cache ready in {time.perf_counter() - t0:.0f} s")
    step0, t0 = trainer.step, time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t0
    model_dir = run_dir / "model"
    trainer.export(model_dir, card=f"Ladder rung {rung['name']} ({recipe.name}), {trainer.step} steps.\n")
    prev = json.loads((run_dir / "train.json").read_text()) if resume and (run_dir / "train.json").is_file() else {}
    steps = trainer.step - step0 + prev.get("steps", 0)
    seconds += prev.get("seconds", 0.0)
    info = {"steps": steps, "seconds": seconds, "batch": stage.batch_size,
            "samples_per_s": steps * stage.batch_size / max(seconds, 1e-9),
            "params": trainer.model.num_parameters()}
    (run_dir / "train.json").write_text(json.dumps(info, indent=2))
    return info


def measure_rung(run_dir: Path, data: list[str], held_out: str, clips: int, seconds: float, steps: int,
                 take_seconds: float = 10.0, log=print) -> dict:
    from benchmarks.audio_use import audio_gap
    from models.checkpoint import load_model
    from models.data.format import ClipStore
    from models.training.evaluate import identity_take, run_benchmark

    model = load_model(run_dir / "model").eval()
    table = run_benchmark(model, held_out, clips=clips, steps=steps, seconds=seconds, drift_seconds=0,
                          use_mediapipe=False, log=log, modes=("audio",))
    gap = audio_gap(str(run_dir), data, batches=2)
    gap_pct = float(np.mean([100 * (v["other"] - v["own"]) / v["other"] for v in gap.values()]))
    t0 = time.perf_counter()
    take = identity_take(model, ClipStore(held_out).clip(0), seconds=take_seconds, steps=steps)
    gen_s_per_s = (time.perf_counter() - t0) / take["seconds"]
    _save_strip(take["frames"], run_dir / "identity.png", fps=25)
    ps = take["per_second"]
    return {
        "audio": table["audio"], "ground_truth": table["ground_truth"], "vae_round_trip": table["vae_round_trip"],
        "audio_gap_pct": gap_pct, "audio_gap": {str(k): v for k, v in gap.items()},
        "identity": {"first_ssim": ps[0]["ssim"], "last_ssim": ps[-1]["ssim"], "first_detail": ps[0]["detail"],
                     "last_detail": ps[-1]["detail"], "vae_ssim": take.get("vae_ssim"),
                     "vae_detail": take.get("vae_detail"), "per_second": ps},
        "gen_s_per_video_s": gen_s_per_s, "eval_steps": steps,
    }


def _save_strip(frames: np.ndarray, path: Path, fps: int = 25, scale: int = 2) -> None:
    import cv2

    picks = frames[:: fps][:12]
    strip = np.concatenate(list(picks), axis=1)
    strip = cv2.resize(strip, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    cv2.imwrite(str(path), cv2.cvtColor(strip, cv2.COLOR_RGB2BGR))


def format_table(results: dict[str, dict]) -> str:
    def f(v, p=3):
        return "-" if v is None or not np.isfinite(v) else f"{v:.{p}f}"

    rows = ["| rung | px/token | params (DiT) | samples/s | steps | loss | mouth corr | shifted | sync | offset "
            "| audio gap % | SSIM 1st s / last s (VAE) | detail 1st s / last s (VAE) | gen s per s |",
            "| --- " * 14 + "|"]
    for name, r in results.items():
        a, idt = r["audio"], r["identity"]
        rows.append(
            f"| {name} | {r.get('px_per_token', '-')} | {r['train']['params']['transformer'] / 1e6:.1f} M "
            f"| {f(r['train']['samples_per_s'], 1)} | {r['train']['steps']} | {f(r['loss'])} | {f(a['mouth_corr'])} "
            f"| {f(a['mouth_corr_shifted'])} | {f(a['sync'])} | {f(a['offset'], 1)} | {f(r['audio_gap_pct'], 2)} "
            f"| {f(idt['first_ssim'])} / {f(idt['last_ssim'])} ({f(idt['vae_ssim'])}) "
            f"| {f(idt['first_detail'], 2)} / {f(idt['last_detail'], 2)} ({f(idt['vae_detail'], 2)}) "
            f"| {f(r['gen_s_per_video_s'], 1)} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    from models.errors import UserError

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--spec", required=True, help="ladder spec (JSON)")
    ap.add_argument("--out", required=True, help="folder of the rungs' runs and results")
    ap.add_argument("--held-out", help="held-out dataset folder (new characters and voices)")
    ap.add_argument("--minutes", type=float, default=12.0, help="training budget per rung (default 12)")
    ap.add_argument("--only", nargs="*", help="rungs to run (default: all)")
    ap.add_argument("--clips", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--steps", type=int, default=10, help="sampling steps for the evaluation (default 10)")
    ap.add_argument("--take-seconds", type=float, default=10.0, help="length of the identity take (default 10)")
    ap.add_argument("--table", action="store_true", help="print the table of the results so far and stop")
    a = ap.parse_args(argv)
    try:
        spec = load_spec(a.spec)
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        results: dict[str, dict] = {}
        for rung in spec["rungs"]:
            res_path = out / rung["name"] / "result.json"
            if a.table or (a.only and rung["name"] not in a.only):
                if res_path.is_file():
                    results[rung["name"]] = json.loads(res_path.read_text())
                continue
            if res_path.is_file():
                results[rung["name"]] = json.loads(res_path.read_text())
                print(f"{rung['name']}: measured already ({res_path})", file=sys.stderr)
                continue
            if not a.held_out:
                raise UserError("--held-out is needed to measure a rung")
            info = train_rung(spec, rung, out, a.minutes, log=lambda s: print(s, file=sys.stderr, flush=True))
            run_dir = out / rung["name"]
            data = [_resolve(spec["data"][rung.get("data", "default")], spec["_base"])]
            res = measure_rung(run_dir, data, a.held_out, a.clips, a.seconds, a.steps, a.take_seconds,
                               log=lambda s: print(s, file=sys.stderr, flush=True))
            res["train"] = info
            res["loss"] = _last_loss(run_dir)
            res["px_per_token"] = rung.get("px_per_token")
            res["note"] = rung.get("note", "")
            res_path.write_text(json.dumps(res, indent=2))
            results[rung["name"]] = res
            print(format_table({rung["name"]: res}), flush=True)
        print(format_table(results))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
