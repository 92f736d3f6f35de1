"""``python main.py generate``: reference image + audio (+ pose, + text) -> MP4 with the audio."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from models.errors import UserError


def add_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="animate a reference image with audio and/or pose",
                       description="Animate a reference image; the video lasts as long as the audio.")
    p.add_argument("--image", required=True, help="reference image (any format, any aspect ratio)")
    p.add_argument("--audio", help="audio or video file whose audio drives the lips and body")
    p.add_argument("--pose", help="keypoints .npy of shape (T, K, 3) for pose-driven or combined runs")
    p.add_argument("--pose-video", help="video of a person whose poses drive the body (retargeted)")
    p.add_argument("--mirror", action="store_true", help="the pose video is mirrored (webcam)")
    p.add_argument("--person", type=int, metavar="N",
                   help="--pose-video with several small people: the N-th found, 1 = largest and most persistent")
    p.add_argument("--text", default="", help="text prompt")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", help="model folder or bundled model name (default: the bundled face-s)")
    src.add_argument("--random-init", metavar="PRESET", help="untrained model of a preset (pipeline check)")
    p.add_argument("--engine", choices=["model", "instant"], default="model")
    p.add_argument("--mode", choices=["auto", "audio", "pose", "combined"], default="auto")
    p.add_argument("--steps", type=int)
    p.add_argument("--cfg-audio", type=float)
    p.add_argument("--cfg-text", type=float)
    p.add_argument("--anneal", choices=["none", "linear", "cosine"])
    p.add_argument("--anneal-strength", type=float)
    p.add_argument("--motion-noise", type=float,
                   help="0-1: how far the previous segment's frames are blended toward noise before they lead the "
                        "next (default: the model's; higher keeps the reference's look over long takes)")
    p.add_argument("--motion-anchor", type=float,
                   help="0-1: how far the previous segment's frames are pulled toward the reference before they "
                        "lead the next (default: the model's; higher keeps the face, lower keeps the motion flowing)")
    p.add_argument("--still-lead", action=argparse.BooleanOptionalAction, default=None,
                   help="lead the first segment with the reference standing still, as the anchored segments after "
                        "it are (default: the model's)")
    p.add_argument("--audio-focus", type=float,
                   help="0-1: how much of the audio guidance is kept to the mouth (found on the reference); 0 "
                        "guides the whole frame (default: the model's; higher keeps the eyes steady)")
    p.add_argument("--seed", type=int, default=42, help="noise seed (42, as in the app)")
    p.add_argument("--fps", type=float)
    p.add_argument("--segment-frames", type=int, help="frames per segment, 1 + 4k")
    p.add_argument("--area", type=int, help="pixel area of a frame (default: the preset's)")
    p.add_argument("--max-seconds", type=float, help="only the first seconds (quick previews)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"], default="auto")
    p.add_argument("--wav2vec2", metavar="DIR",
                   help="local wav2vec2 folder (config.json + model.safetensors): the audio encoder of a model "
                        "trained on wav2vec2 features")
    p.add_argument("--out", default="out.mp4", help="output MP4")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)


def settings_from_args(args, fps: float | None, max_frames: int | None = None):
    """The ``GenerationSettings`` of the command line (``fps``: the output rate, None before it is known)."""
    from models.engines import GenerationSettings

    return GenerationSettings(
        steps=args.steps, cfg_text=args.cfg_text, cfg_audio=args.cfg_audio, anneal=args.anneal,
        anneal_strength=args.anneal_strength, motion_noise=args.motion_noise,
        audio_focus=args.audio_focus, motion_anchor=args.motion_anchor, still_lead=args.still_lead,
        segment_frames=args.segment_frames, area=args.area, fps=fps,
        seed=args.seed,  # 42 unless given, as in the app (both engines)
        mode=args.mode, max_frames=max_frames,
    )


def run(args) -> int:
    """One path for both engines: the registry makes the engine, the run writer streams the MP4."""
    from models import media
    from models.engines import Callbacks, EngineJob, GenerationSettings, make_engine
    from models.engines.registry import model_from_args, resolve_device, resolve_dtype
    from models.engines.writer import RunWriter
    from models.threads import ThreadGovernor, single_interop_thread
    from models.validation import check_output_path, validate_image, validate_seconds, validate_settings

    log = (lambda *a: None) if args.quiet else (lambda *a: print(*a, file=sys.stderr, flush=True))
    if args.audio is None and args.pose is None and args.pose_video is None:
        raise UserError("give --audio, --pose or --pose-video (or several)")
    if args.engine == "instant" and (args.model or args.random_init or args.wav2vec2):
        raise UserError("--model, --random-init and --wav2vec2 apply to the model engine, not --engine instant")
    person = getattr(args, "person", None)
    if person is not None and (person < 1 or not args.pose_video):
        raise UserError("--person N needs --pose-video and counts from 1 (the largest and most persistent person)")
    # Every setting and the output path before any work (reading media, extracting poses, the model).
    if args.max_seconds is not None:
        validate_seconds(args.max_seconds, "--max-seconds")
    validate_settings(settings_from_args(args, args.fps))
    check_output_path(args.out, "--out")
    governor = ThreadGovernor(log=log)  # measures the machine's other load from now on (models/threads.py)
    image = validate_image(media.read_image(args.image), args.image)

    engine = make_engine(args.engine)
    job = EngineJob(image, None, None, args.text, GenerationSettings())
    if engine.key == "model":
        engine.wav2vec2 = args.wav2vec2
        device = resolve_device(args.device)
        job.model, job.device, job.dtype = model_from_args(args.model, args.random_init), device, \
            resolve_dtype(args.dtype, device)
        cond = job.model.config().cond  # the units, before the weights are loaded
        native_fps, sample_rate = float(cond.fps), int(cond.sample_rate)
    else:
        native_fps, sample_rate = engine.fps, engine.sample_rate
    fps = float(args.fps or native_fps)

    audio = media.read_audio(args.audio, sample_rate) if args.audio else None
    if audio is not None and args.max_seconds:
        audio = audio[: int(args.max_seconds * sample_rate)]
    pose = load_pose_file(args.pose) if args.pose else None
    if args.pose_video:
        pose = poses_from_video(args.pose_video, image, args.mirror, fps, log, person)
    max_frames = max(1, int(round(args.max_seconds * fps))) if args.max_seconds else None
    job.audio, job.pose = audio, pose
    job.settings = validate_settings(settings_from_args(args, fps, max_frames))
    t0 = time.perf_counter()
    if engine.key == "model":
        single_interop_thread()
    engine.prepare(job)
    if engine.key == "model":
        _log_model(engine.model, job.model, args, log, time.perf_counter() - t0)
    else:
        e = engine.engine
        log(f"instant engine: reference {image.shape[1]}x{image.shape[0]} -> frames {e.width}x{e.height}; "
            f"{e.message} ({time.perf_counter() - t0:.1f} s to prepare)")
        if pose is not None and args.mode != "audio":
            log(f"instant engine: {e.body.message}")  # what the puppet moves, and what it leaves at rest

    track = audio
    if audio is not None and max_frames:
        track = audio[: int(round(max_frames / fps * sample_rate))]
    # Streams the MP4 and keeps each finished segment beside it until the take is complete.
    writer = RunWriter(fps, track, video=Path(args.out), sample_rate=sample_rate)
    state = {"t": time.perf_counter()}
    on_cpu = engine.key == "model" and engine.model.device.type == "cpu"

    def on_step(seg: int, n_seg: int, step: int, steps: int) -> None:
        if on_cpu:
            governor.tick()  # another process started or stopped: follow it
        if step == steps:
            return
        if not args.quiet and sys.stderr.isatty():
            print(f"\rsegment {seg + 1}/{n_seg}  step {step}/{steps}", end="", file=sys.stderr, flush=True)

    def on_segment(seg: int, frames: np.ndarray, start: int) -> None:
        writer.on_segment(seg, frames, start)
        now = time.perf_counter()
        if sys.stderr.isatty() and not args.quiet:
            print("\r", end="", file=sys.stderr)
        if engine.key == "model":
            log(f"segment {seg + 1}: frames {start}-{start + len(frames) - 1} in {now - state['t']:.1f} s")
        state["t"] = now

    threads_before = None
    if on_cpu:
        import torch

        threads_before = torch.get_num_threads()
        governor.apply()
    try:
        result = engine.generate(job, Callbacks(on_step=on_step, on_segment=on_segment))
    except BaseException:
        writer.close()
        if not writer.failed and writer.kept:  # a write failure says where already
            log(f"stopped early: {writer.where()}")
        raise
    finally:
        if threads_before is not None:
            torch.set_num_threads(threads_before)
    out = writer.finish(result)
    rate = result.num_frames / max(result.seconds, 1e-9)
    log(f"wrote {out}: {result.num_frames} frames at {result.fps:g} fps, {result.width}x{result.height}, "
        f"mode {result.mode}, seed {result.seed}, {result.seconds:.1f} s "
        f"({result.seconds / max(result.num_segments, 1):.1f} s per segment, {rate:.0f} frames/s)")
    if getattr(result, "audio_region", ""):
        log(f"audio guidance: {result.audio_region}")
    return 0


def load_pose_file(path: str) -> np.ndarray:
    from models.keypoints import validate_keypoints

    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: file not found")
    try:
        arr = np.load(p, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise UserError(f"{p}: not a readable .npy keypoint array ({str(e).splitlines()[0]})") from None
    if isinstance(arr, np.lib.npyio.NpzFile):
        keys = list(arr.keys())
        arr = arr["keypoints"] if "keypoints" in keys else arr[keys[0]]
    try:
        return validate_keypoints(arr, str(p))
    except ValueError as e:
        raise UserError(str(e)) from None


def _log_model(model, choice, args, log, seconds: float) -> None:
    from models.checkpoint import read_notice

    if args.random_init:
        log(f"note: untrained '{args.random_init}' model with random weights -- the video shows noise, "
            "not a person; this checks the pipeline end to end")
    else:
        notice = read_notice(choice.path)
        if notice:
            log(f"note: {notice}")
    log(f"model {model.config.name}: {model.num_parameters()['total'] / 1e6:.1f} M parameters on {model.device} "
        f"({seconds:.1f} s to load)")


def poses_from_video(path: str, image: np.ndarray, mirror: bool, fps: float, log,
                     person: int | None = None) -> np.ndarray:
    """Poses of the person in ``path``, retargeted onto the reference's body, at the output fps."""
    from models.keypoints import resample_keypoints

    try:
        from models.conditions.pose import extract_video_poses
        from models.conditions.reference import analyze_reference
        from models.conditions.retarget import retarget
    except ImportError as e:
        raise UserError(f"--pose-video needs the pose extractor, which is not available ({e})") from None
    track = extract_video_poses(path, person=person)
    log(f"{path}: poses of {len(track.keypoints)} frames at {track.fps:g} fps")
    if track.meta.get("person_message"):
        log(f"{path}: {track.meta['person_message']}")
    n = max(1, int(round(len(track.keypoints) * fps / track.fps)))
    driver = resample_keypoints(track.keypoints, n)
    ref = analyze_reference(image)
    h, w = image.shape[:2]
    return retarget(driver, ref.keypoints, track.width / track.height, w / h, mirror=mirror)
