"""Generation time alone and beside one busy core, for each CPU thread policy (models/threads.py).

Each policy runs in a fresh Python process (the OpenMP wait policy is read once, when torch loads),
twice: once alone and once while a busy loop (one Python process spinning) keeps one core busy.
Prints seconds per segment and the slowdown ratio busy / alone; issue 20 asks for at most 2.5x
with one of two cores busy (2x is the fair share). Policies:

- ``default``: torch's own choice, one thread per core, OpenMP's default (spinning) wait.
- ``one``: a single thread.
- ``passive-all``: one thread per core, passive wait.
- ``governor``: what ``main.py generate`` and the app do: the thread governor (threads = free
  cores), OpenMP's default wait.
- ``governor-passive``: the governor and passive wait (measured slower alone on 2 cores; see models/threads.py).

    python benchmarks/threads.py                                  # bundled face-s, 3 segments, all policies
    python benchmarks/threads.py --random-init tiny --segments 1 --policies governor   # seconds: a smoke run

Run it on an otherwise idle machine: the "alone" numbers assume nothing else runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

POLICIES = ("default", "one", "passive-all", "governor", "governor-passive")
PASSIVE = {"OMP_WAIT_POLICY": "PASSIVE", "KMP_BLOCKTIME": "0"}
SPIN = "import time\nwhile True:\n    pass\n"


def child_env(policy: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", *PASSIVE)}
    if policy in ("passive-all", "governor-passive"):
        env.update(PASSIVE)
    return env


def run_child(args) -> dict:
    """One measurement in this process: generation with ``args.child`` as the thread policy."""
    import numpy as np
    import torch

    from models import media
    from models.checkpoint import DEFAULT_MODEL, load_model, random_model, resolve_model_path
    from models.engines import Callbacks, GenerationInputs, GenerationSettings
    from models.pipeline import generate
    from models.threads import ThreadGovernor, available_cores, single_interop_thread

    policy = args.child
    governor = None
    if policy == "one":
        torch.set_num_threads(1)
    elif policy.startswith("governor"):
        governor = ThreadGovernor()
        single_interop_thread()
    if args.random_init:
        model = random_model(args.random_init, seed=0, device="cpu")
    else:
        model = load_model(resolve_model_path(args.model or DEFAULT_MODEL), device="cpu")
    cfg = model.config
    seg = args.segment_frames or cfg.sampling.segment_frames
    fps, sample_rate = cfg.cond.fps, int(cfg.cond.sample_rate)
    frames = seg * args.segments
    image = media.read_image(os.path.join(ROOT, "resources", "examples", "toon.png"))
    audio = media.read_audio(os.path.join(ROOT, "resources", "examples", "speech.wav"), sample_rate)
    need = int(np.ceil(frames / fps * sample_rate)) + 1
    if len(audio) < need:
        audio = np.tile(audio, need // len(audio) + 1)
    audio = audio[:need]
    if governor is not None:
        governor.apply()
    on_step = (lambda *a: governor.tick()) if governor is not None else None
    settings = GenerationSettings(steps=args.steps, seed=0, segment_frames=seg, area=args.area, max_frames=frames)
    t0 = time.perf_counter()
    res = generate(model, GenerationInputs(image=image, audio=audio), settings, Callbacks(on_step=on_step),
                   keep_frames=False)
    total = time.perf_counter() - t0
    per = res.segment_seconds
    steady = per[1:] if len(per) > 1 else per  # the first segment includes one-off warm-up
    return {"policy": policy, "seconds": total, "segments": len(per), "per_segment": per,
            "steady_per_segment": float(np.median(steady)), "threads": torch.get_num_threads(),
            "cores": available_cores(), "size": f"{res.width}x{res.height}x{seg}",
            "governor": [list(h) for h in governor.history] if governor is not None else []}


def measure(args, policy: str, busy: bool) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", policy, "--segments", str(args.segments)]
    for flag in ("random_init", "model", "steps", "area", "segment_frames"):
        v = getattr(args, flag)
        if v is not None:
            cmd += [f"--{flag.replace('_', '-')}", str(v)]
    spinner = None
    if busy:
        spinner = subprocess.Popen([sys.executable, "-c", SPIN],
                                   preexec_fn=(lambda: os.nice(args.busy_nice)) if args.busy_nice else None)
        time.sleep(0.3)
    try:
        proc = subprocess.run(cmd, env=child_env(policy), capture_output=True, text=True, cwd=ROOT,
                              timeout=args.timeout)
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()
    if proc.returncode != 0:
        raise SystemExit(f"{policy} ({'busy' if busy else 'alone'}) failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--model", help="model folder (default: the bundled face-s)")
    src.add_argument("--random-init", metavar="PRESET", help="an untrained preset (tiny: a smoke run)")
    ap.add_argument("--segments", type=int, default=3)
    ap.add_argument("--steps", type=int)
    ap.add_argument("--area", type=int)
    ap.add_argument("--segment-frames", type=int)
    ap.add_argument("--policies", default=",".join(POLICIES), help=f"comma-separated, of {', '.join(POLICIES)}")
    ap.add_argument("--busy-nice", type=int, default=0, help="niceness of the busy loop (0: a full competitor)")
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--json", help="also write the measurements here")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(run_child(args)))
        return 0
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    bad = [p for p in policies if p not in POLICIES]
    if bad:
        ap.error(f"unknown policies {bad}; choose from {', '.join(POLICIES)}")
    rows = []
    for policy in policies:
        alone = measure(args, policy, busy=False)
        busy = measure(args, policy, busy=True)
        rows.append((policy, alone, busy))
    a0 = rows[0][1]
    print(f"threads benchmark: {'random ' + args.random_init if args.random_init else args.model or 'face-s'}, "
          f"{a0['size']} frames per segment, {args.segments} segment(s), {a0['cores']} cores; busy loop nice "
          f"{args.busy_nice}")
    print(f"{'policy':<16} {'alone s/seg':>12} {'busy s/seg':>11} {'busy/alone':>11} {'threads alone/busy':>19}")
    for policy, alone, busy in rows:
        ratio = busy["steady_per_segment"] / max(alone["steady_per_segment"], 1e-9)
        print(f"{policy:<16} {alone['steady_per_segment']:>12.2f} {busy['steady_per_segment']:>11.2f} "
              f"{ratio:>10.2f}x {alone['threads']:>9}/{busy['threads']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump([{"policy": p, "alone": a, "busy": b} for p, a, b in rows], f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
