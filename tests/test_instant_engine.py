"""The instant engine on real photographs: face rig, silence, no face, streaming, cancel, the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.data.visemes import REST
from tests.media_assets import astronaut_path, coffee_path, full_body_photo

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def astronaut():
    from models.media import read_image

    return read_image(astronaut_path())


@pytest.fixture(scope="module")
def engine(astronaut):
    from models.instant.engine import InstantEngine

    return InstantEngine(astronaut)


def _mouth_box(engine, margin: float = 0.6) -> tuple[slice, slice]:
    from models.instant.face import LIPS_OUTER_LOWER, LIPS_OUTER_UPPER

    pts = engine.face.P[list(LIPS_OUTER_UPPER + LIPS_OUTER_LOWER)]
    m = margin * engine.face.W
    (x0, y0), (x1, y1) = pts.min(0) - m, pts.max(0) + m
    return slice(int(y0), int(y1) + 1), slice(int(x0), int(x1) + 1)


def test_rest_is_the_reference_and_the_jaw_opens(engine, astronaut):
    assert engine.face_found
    np.testing.assert_array_equal(engine.render(), astronaut)
    ys, xs = _mouth_box(engine)
    opened = engine.render(np.array([0.8, 0.6, 0.05, 0.0]))
    closed = engine.render(np.array([0.05, 0.45, 0.15, 1.0]))
    assert opened.shape == astronaut.shape
    diff = np.abs(opened.astype(int) - astronaut)
    assert diff[ys, xs].mean() > 5  # the mouth changed ...
    outside = np.ones(astronaut.shape[:2], bool)
    x0, y0, x1, y1 = engine.face.crop
    outside[y0:y1, x0:x1] = False
    assert diff[outside].max() == 0  # ... and nothing outside the face crop did
    # Open: a dark mouth cavity appears; closed: the lips meet over the reference's teeth.
    dark = lambda im: int((im[ys, xs].astype(float).mean(-1) < 70).sum())  # noqa: E731
    assert dark(opened) > dark(astronaut) + 0.3 * engine.face.W ** 2 * 0.25
    assert dark(closed) < dark(opened)


def test_blink_changes_only_the_eyes(engine, astronaut):
    from models.instant.face import EYES

    f = engine.render(blink=1.0)
    diff = np.abs(f.astype(int) - astronaut).sum(-1)
    ys, xs = _mouth_box(engine)
    assert diff[ys, xs].max() == 0
    eye = engine.face.P[list(EYES["left"][0])]
    (x0, y0), (x1, y1) = eye.min(0).astype(int), eye.max(0).astype(int)
    assert diff[y0 - 2: y1 + 6, x0: x1 + 1].mean() > 5


def test_silent_audio_leaves_the_mouth_exactly_as_in_the_reference(engine, astronaut):
    from models.engines import GenerationInputs, GenerationSettings
    from models.instant.engine import generate_instant

    inputs = GenerationInputs(image=astronaut, audio=np.zeros(16000 * 2, np.float32))
    res = generate_instant(inputs, GenerationSettings(seed=1), engine=engine)
    assert res.num_frames == 50 and res.frames.shape == (50, *astronaut.shape)
    ys, xs = _mouth_box(engine)
    for frame in res.frames:
        np.testing.assert_array_equal(frame[ys, xs], astronaut[ys, xs])
    # The live preview's per-frame path gives the same frames.
    track = engine.audio_track(inputs.audio, 50, 25.0, seed=1)
    np.testing.assert_array_equal(engine.render_track(track, 7), res.frames[7])


def test_speech_streams_in_chunks_and_cancels(engine, astronaut):
    from models.engines import Callbacks, GenerationInputs, GenerationSettings
    from models.instant.engine import CHUNK_FRAMES, generate_instant
    from models.media import read_audio

    audio = read_audio(ROOT / "resources" / "examples" / "speech.wav")[: 16000 * 3]
    got = []
    cb = Callbacks(on_segment=lambda i, frames, start: got.append((i, start, len(frames))),
                   should_cancel=lambda: len(got) >= 2)
    res = generate_instant(GenerationInputs(image=astronaut, audio=audio), GenerationSettings(seed=0), cb,
                           keep_frames=False, engine=engine)
    assert res.cancelled and res.num_frames == 2 * CHUNK_FRAMES
    assert got == [(0, 0, CHUNK_FRAMES), (1, CHUNK_FRAMES, CHUNK_FRAMES)]


def test_no_face_gives_the_message_and_refuses_audio_only():
    from models.engines import GenerationInputs
    from models.errors import UserError
    from models.instant.engine import InstantEngine, generate_instant
    from models.media import read_image

    coffee = read_image(coffee_path())
    eng = InstantEngine(coffee)
    assert not eng.face_found and "No face found" in eng.message
    np.testing.assert_array_equal(eng.render(np.array([0.8, 0.5, 0.1, 0.0])), coffee)
    with pytest.raises(UserError, match="needs a face"):
        generate_instant(GenerationInputs(image=coffee, audio=np.ones(16000, np.float32) * 0.1), engine=eng)


def test_pose_moves_the_body_of_a_full_body_photo():
    from models import keypoints as kpl
    from models.engines import GenerationInputs, GenerationSettings
    from models.instant.engine import InstantEngine, generate_instant

    photo = full_body_photo()
    eng = InstantEngine(photo)
    ref = eng.reference_keypoints
    lw = kpl.INDEX["left_wrist"]
    assert ref[lw, 2] > 0.3
    pose = np.repeat(ref[None], 5, 0)
    pose[:, lw, 0] += np.linspace(0, 0.08, 5)
    res = generate_instant(GenerationInputs(image=photo, pose=pose), GenerationSettings(seed=0), engine=eng)
    assert res.mode == "pose" and res.num_frames == 5
    x, y = (ref[lw, :2] * [eng.width, eng.height]).astype(int)
    near = (slice(y - 8, y + 8), slice(x - 8, x + 8))
    assert np.abs(res.frames[-1][near].astype(int) - eng.image[near]).mean() > 3
    assert (res.frames[-1][:10, :10] == eng.image[:10, :10]).all()


def test_cli_exports_mp4_with_audio(tmp_path):
    from models.cli import main
    from models.media import probe_streams, read_video_frames

    out = tmp_path / "instant.mp4"
    code = main(["generate", "--engine", "instant", "--image", str(astronaut_path()), "--audio",
                 str(ROOT / "resources" / "examples" / "speech.wav"), "--max-seconds", "1.2", "--out", str(out),
                 "--quiet"])
    assert code == 0 and out.is_file()
    streams = probe_streams(out)
    assert streams["video"] and streams["audio"]
    info, frames = read_video_frames(out)
    n = sum(1 for _ in frames)
    assert n == 30
    assert abs(streams["duration"] - 1.2) <= 0.04 + 1 / 25
    assert REST[1] == 0.5
