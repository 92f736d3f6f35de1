"""``python main.py train-mouth``: (re)train the instant engine's audio-to-mouth regressor."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from models.errors import UserError


def add_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-mouth", help="train the instant engine's audio-to-mouth regressor (CPU, minutes)",
                       description="Train the audio-to-mouth regressor on a speech bank's exact phoneme "
                                   "timings; builds a bank first when --bank is not given.")
    p.add_argument("--out", required=True, help="output folder (mouth.safetensors, config.json, MODEL_CARD.md)")
    p.add_argument("--bank", help="speech bank folder (main.py speech-bank); default: build one")
    p.add_argument("--count", type=int, default=600, help="utterances when building the bank")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--copies", type=int, default=3, help="augmented renderings per utterance")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args) -> int:
    import os

    from models.data.speech import build_speech_bank
    from models.instant.train_mouth import TrainSettings, train_mouth, write_model_card

    log = lambda *a: print(*a, file=sys.stderr, flush=True)  # noqa: E731
    if args.steps < 1:
        raise UserError("--steps must be at least 1")
    tmp = None
    bank = args.bank
    if bank is None:
        tmp = tempfile.mkdtemp(prefix="speech-bank-")
        log(f"building a speech bank of {args.count} utterances in {tmp} ...")
        build_speech_bank(tmp, args.count, seed=args.seed, workers=os.cpu_count() or 1)
        bank = tmp
    try:
        settings = TrainSettings(steps=args.steps, augment_copies=args.copies, seed=args.seed)
        info = train_mouth(bank, args.out, settings, log=log)
        write_model_card(Path(args.out), info)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0
