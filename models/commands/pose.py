"""``python main.py extract-pose VIDEO --out POSE.npy [--reference IMAGE] [--preview OUT.mp4]``.

Extracts the keypoints of the person in a video (the project's layout, ``(T, K, 3)``), optionally
retargets them onto a reference picture's body, and optionally writes a preview video that draws the
extracted skeleton over the video's frames and, beside it, the retargeted skeleton over the
reference: what the model will be given.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from models.errors import UserError

PREVIEW_HEIGHT = 480


def add_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "extract-pose",
        help="extract body, hand and face keypoints from a video of a person",
        description="Extract keypoints (33 body, 2x21 hand, 20 face points with confidences) from "
        "every frame of a video. Frames without a person are filled from their neighbours and listed "
        "in the .json written beside the .npy.",
    )
    p.add_argument("video", help="video of one person (any format ffmpeg reads)")
    p.add_argument("--out", required=True, help="keypoints .npy, shape (T, 95, 3) of (x, y, confidence)")
    p.add_argument("--reference", help="reference image: also retarget the poses onto its body")
    p.add_argument("--retargeted-out", help="where to save the retargeted keypoints .npy (needs --reference)")
    p.add_argument("--preview", help="MP4 drawing the extracted (and retargeted) skeletons over the frames")
    p.add_argument("--mirror", action="store_true", help="the video is mirrored (a selfie / webcam view)")
    p.add_argument("--max-frames", type=int, help="only the first N frames")
    p.add_argument("--no-smooth", action="store_true", help="keep MediaPipe's raw per-frame keypoints")
    p.add_argument("--person", type=int, metavar="N",
                   help="in a wide shot with several (small) people: the N-th person found, 1 being the largest "
                        "and most persistent (default: the landmarker's own pick, then person 1)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)


def _progress_printer(quiet: bool):
    last = [-1]

    def progress(done: int, total: int | None) -> None:
        if quiet:
            return
        if total:
            pct = int(100 * done / total)
            if pct // 10 != last[0] // 10 or done == total:
                last[0] = pct
                print(f"\rextracting poses: {done}/{total} frames ({pct}%)", end="", file=sys.stderr, flush=True)
        elif done % 25 == 0:
            print(f"\rextracting poses: {done} frames", end="", file=sys.stderr, flush=True)

    return progress


def run(args: argparse.Namespace) -> int:
    from models.conditions.pose import extract_video_poses, save_pose_track
    from models.media import read_image
    from models.validation import VIDEO_SUFFIXES, check_output_path

    out = Path(args.out)
    if out.suffix.lower() != ".npy":
        raise UserError(f"--out {out}: pose files are .npy")
    if args.retargeted_out and not args.reference:
        raise UserError("--retargeted-out needs --reference IMAGE")
    if args.max_frames is not None and args.max_frames < 1:
        raise UserError("--max-frames must be at least 1")
    if args.person is not None and args.person < 1:
        raise UserError(f"--person must be at least 1 (1 is the largest and most persistent person), got {args.person}")
    check_output_path(out, "--out", (".npy",))  # every output before the video is read
    if args.retargeted_out:
        check_output_path(args.retargeted_out, "--retargeted-out", (".npy",))
    if args.preview:
        check_output_path(args.preview, "--preview", VIDEO_SUFFIXES)
    reference_image = read_image(args.reference) if args.reference else None  # fail early on a bad image

    track = extract_video_poses(
        args.video, progress=_progress_printer(args.quiet), max_frames=args.max_frames, smooth=not args.no_smooth,
        person=args.person,
    )
    if not args.quiet:
        print(file=sys.stderr)
        if track.meta.get("person_message"):
            print(f"{args.video}: {track.meta['person_message']}", file=sys.stderr)
    save_pose_track(track, out)
    n_missing = int(track.missing.sum())
    log = (lambda *a: None) if args.quiet else print
    log(f"{out}: {track.num_frames} frames at {track.fps:g} fps, {track.width}x{track.height}"
        + (f"; {n_missing} frames without a person were filled from their neighbours" if n_missing else ""))

    retargeted = None
    ref_info = None
    if reference_image is not None:
        from models.conditions.pose import PoseTrack
        from models.conditions.reference import analyze_reference
        from models.conditions.retarget import retarget

        ref_info = analyze_reference(reference_image)
        log(f"{args.reference}: {ref_info.message}")
        retargeted = retarget(track.keypoints, ref_info.keypoints, track.aspect, ref_info.aspect, mirror=args.mirror)
        if args.retargeted_out:
            rt = PoseTrack(retargeted, track.fps, ref_info.width, ref_info.height, track.missing.copy(),
                           str(args.video), {"reference": str(args.reference)})
            save_pose_track(rt, args.retargeted_out)
            log(f"{args.retargeted_out}: retargeted onto the reference ({ref_info.framing})")

    if args.preview:
        path = write_pose_preview(args.video, track.keypoints, args.preview, track.missing, track.fps,
                                  reference_image, retargeted, max_frames=track.num_frames)
        log(f"{path}: preview written")
    return 0


def _fit_height(img: np.ndarray, height: int) -> np.ndarray:
    import cv2

    h, w = img.shape[:2]
    width = max(2, int(round(w * height / h / 2)) * 2)
    return cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA if h > height else cv2.INTER_LINEAR)


def _label(img: np.ndarray, text: str, color=(255, 255, 255)) -> None:
    import cv2

    cv2.putText(img, text, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(img, text, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.55, color, 1, cv2.LINE_AA)


def write_pose_preview(
    video: str | Path,
    keypoints: np.ndarray,
    out_path: str | Path,
    missing: np.ndarray | None = None,
    fps: float | None = None,
    reference_image: np.ndarray | None = None,
    retargeted: np.ndarray | None = None,
    max_frames: int | None = None,
    height: int = PREVIEW_HEIGHT,
) -> Path:
    """MP4: the video's frames with the extracted skeleton; beside them, when given, the reference
    picture with the retargeted skeleton. Frames filled for lack of a person are labelled."""
    from models.keypoints import draw_skeleton
    from models.media import VideoWriter, read_video_frames

    info, frames = read_video_frames(video, strict=False)
    fps = fps or info.fps
    n = len(keypoints) if max_frames is None else min(max_frames, len(keypoints))
    ref_panel = _fit_height(reference_image, height) if reference_image is not None else None
    writer = None
    try:
        for i, frame in enumerate(frames):
            if i >= n:
                break
            left = _fit_height(draw_skeleton(frame, keypoints[i]), height)
            filled = missing is not None and bool(missing[i])
            _label(left, "no person: filled" if filled else "extracted", (255, 80, 80) if filled else (255, 255, 255))
            panel = left
            if ref_panel is not None and retargeted is not None:
                right = draw_skeleton(ref_panel, retargeted[i])
                _label(right, "retargeted onto the reference")
                panel = np.concatenate([left, right], axis=1)
            if writer is None:
                writer = VideoWriter(out_path, panel.shape[1], panel.shape[0], fps)
            writer.write(panel)
    finally:
        frames.close()
        if writer is not None:
            writer.close()
    if writer is None:
        raise UserError(f"{video}: no frames to preview")
    return Path(out_path)
