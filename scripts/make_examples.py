"""Render the bundled example inputs from the synthetic toon world (deterministic).

Writes resources/examples/toon.png (the reference: the clip's first frame), speech.wav (its real
espeak-ng speech, 16 kHz) and pose.npy (its (T, 95, 3) keypoint track, the pose sequence that drives
the body in combined mode). Run from the repository root: ``python scripts/make_examples.py``.
"""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from models.data.synth import SynthConfig, synth_clip  # noqa: E402
from models.media import write_image, write_wav  # noqa: E402

SEED, INDEX = 7, 3


def main(out: str = "resources/examples") -> None:
    cfg = SynthConfig(area=256 * 256, seed=SEED, min_seconds=5.0, max_seconds=6.0, lipsync_fail_rate=0.0,
                      pose_fail_rate=0.0, framing="half", aspect="3:4", kind="human", mode="speech", style="outlined")
    clip = synth_clip(cfg, INDEX)
    o = Path(out)
    o.mkdir(parents=True, exist_ok=True)
    write_image(o / "toon.png", clip.frames[0])
    write_wav(o / "speech.wav", clip.audio)
    np.save(o / "pose.npy", clip.keypoints.astype(np.float32))
    print(f"{o}: {clip.frames.shape[2]}x{clip.frames.shape[1]} reference, {len(clip.audio) / 16000:.2f} s of "
          f"speech, {len(clip.keypoints)} pose frames; caption: {clip.caption}")


if __name__ == "__main__":
    main(*sys.argv[1:])
