"""``main.py synth``, ``main.py speech-bank`` and ``main.py prepare-data``: build training datasets."""

from __future__ import annotations

import argparse
import os
import sys
import time

from models.errors import UserError


def add_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="render a synthetic toon dataset with exact ground truth")
    p.add_argument("--clips", type=int, required=True, help="number of clips")
    p.add_argument("--out", required=True, help="output dataset folder (new or empty)")
    p.add_argument("--size", default="toon-s", help="model preset whose pixel area the clips use (default toon-s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--speech-bank", help="speech bank folder (main.py speech-bank); default: synthesise per clip")
    p.add_argument("--drive", help="prepared real dataset whose poses drive some characters")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="rendering processes")
    p.add_argument("--framings", help="framing mix, e.g. face=0.5,portrait=0.3,half=0.2 (framings: portrait, half, "
                   "full, face); default portrait 0.4, half 0.35, full 0.25")
    p.add_argument("--preview", help="also write a preview MP4 of 16 clips here")
    p.set_defaults(func=run_synth)

    p = sub.add_parser("speech-bank", help="synthesise a speech bank with phoneme timings (espeak-ng)")
    p.add_argument("--out", required=True)
    p.add_argument("--count", type=int, default=500, help="utterances")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.set_defaults(func=run_speech_bank)

    p = sub.add_parser("prepare-data", help="turn a folder of real videos into a training dataset")
    p.add_argument("video_dir", help="folder of videos; NAME.txt next to NAME.mp4 is its caption")
    p.add_argument("--out", required=True, help="output dataset folder (new or empty)")
    p.add_argument("--size", default="toon-s", help="model preset whose pixel area the clips use")
    p.add_argument("--max-seconds", type=float, default=20.0, help="split longer videos into clips this long")
    p.add_argument("--preview", help="also write a preview MP4 of prepared clips here")
    p.set_defaults(func=run_prepare)


def _progress(label: str):
    t0 = time.time()

    def report(done: int, total: int | None) -> None:
        if total and (done == total or done % max(1, total // 20) == 0):
            rate = done / max(time.time() - t0, 1e-6)
            print(f"{label}: {done}/{total} ({rate:.1f}/s)", file=sys.stderr, flush=True)

    return report


def _area(size: str) -> int:
    from models.config import get_preset

    try:
        return get_preset(size).area
    except KeyError as e:
        raise UserError(str(e).strip("'\"")) from None


def _check_out(out: str) -> None:
    if os.path.isdir(out) and os.listdir(out):
        raise UserError(f"{out}: folder is not empty; choose a new output folder")


def parse_framings(text: str) -> dict[str, float]:
    """``"face=0.5,portrait=0.5"`` -> ``{"face": 0.5, "portrait": 0.5}``; a UserError names what is wrong."""
    from models.data.toon import FRAMINGS

    out: dict[str, float] = {}
    for part in text.split(","):
        name, sep, value = part.strip().partition("=")
        name = name.strip()
        if name not in FRAMINGS:
            raise UserError(f"--framings: unknown framing '{name}'; known: {', '.join(FRAMINGS)}")
        try:
            w = float(value) if sep else 1.0
        except ValueError:
            raise UserError(f"--framings: weight of '{name}' is not a number: '{value.strip()}'") from None
        if not w >= 0 or w == float("inf"):
            raise UserError(f"--framings: weight of '{name}' must be a finite number >= 0, got {value.strip()}")
        out[name] = out.get(name, 0.0) + w
    if sum(out.values()) <= 0:
        raise UserError("--framings: the weights add up to 0; give at least one framing a positive weight")
    return out


def run_synth(args) -> int:
    from models.data.preview import write_preview
    from models.data.synth import SynthConfig, build_synthetic_dataset

    if args.clips < 1:
        raise UserError("--clips must be at least 1")
    _check_out(args.out)
    framings = parse_framings(args.framings) if args.framings else None
    cfg = SynthConfig(area=_area(args.size), seed=args.seed, bank=args.speech_bank, drive=args.drive,
                      framings=framings)
    if args.speech_bank:
        from models.data.speech import SpeechBank

        SpeechBank(args.speech_bank)  # fail early with a clear message
    t0 = time.time()
    build_synthetic_dataset(args.out, args.clips, cfg, workers=max(1, args.workers),
                            progress=_progress("synth"))
    print(f"wrote {args.clips} clips to {args.out} in {time.time() - t0:.1f} s")
    if args.preview:
        print(f"preview: {write_preview(args.out, args.preview, count=16, seed=args.seed)}")
    return 0


def run_speech_bank(args) -> int:
    from models.data.speech import build_speech_bank
    from models.media import SAMPLE_RATE

    _check_out(args.out)
    bank = build_speech_bank(args.out, args.count, args.seed, progress=_progress("speech-bank"),
                             workers=max(1, args.workers))
    total = sum(it["length"] for it in bank.items) / SAMPLE_RATE
    print(f"wrote {len(bank)} utterances ({total / 60:.1f} min of speech) to {args.out}")
    return 0


def run_prepare(args) -> int:
    from models.data.prepare import prepare_videos
    from models.data.preview import write_preview

    _check_out(args.out)
    report = prepare_videos(args.video_dir, args.out, area=_area(args.size), max_seconds=args.max_seconds,
                            progress=_progress("prepare-data"), log=lambda m: print(m, file=sys.stderr))
    print(f"prepared {report.clips} clips from {report.videos_ok} videos into {args.out}; "
          f"skipped {len(report.skipped)}")
    for path, why in report.skipped:
        print(f"  skipped: {why}" if path in why else f"  skipped {path}: {why}")
    if args.preview and report.clips:
        print(f"preview: {write_preview(args.out, args.preview, count=min(16, report.clips))}")
    return 0 if report.clips or not report.skipped else 1
