"""The live session without Qt: inputs, a live skeleton, the microphone, the frame for a time."""

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mediapipe")

from models.errors import UserError  # noqa: E402
from models.instant.live import IDLE_SECONDS, LiveSession, live_size  # noqa: E402
from models.media import SAMPLE_RATE, num_video_frames, read_audio, read_image, resample_audio  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def example():
    return read_image(ROOT / "resources/examples/toon.png"), read_audio(ROOT / "resources/examples/speech.wav")


@pytest.fixture(scope="module")
def session(example):
    s = LiveSession()
    img, audio = example
    assert "face" in s.set_inputs(img, audio, None, seed=3).lower()
    return s


def test_the_loop_is_the_audio_and_the_clock_picks_the_frame(session, example):
    img, audio = example
    assert session.fps == session.engine.fps  # the engine's own rate when none is asked for
    assert session.num_frames == num_video_frames(len(audio), session.fps, SAMPLE_RATE)
    frame, i = session.frame(0.0)
    assert frame.shape == (*live_size(*img.shape[:2]), 3) and frame.dtype == np.uint8 and i == 0
    assert session.frame(1.0 + 0.5 / session.fps)[1] == int(session.fps)
    assert session.frame(session.num_frames / session.fps)[1] == 0  # it loops
    engine = session.engine
    session.set_inputs(img.copy(), None)  # the same picture: the engine (its face mesh) is kept
    assert session.engine is engine and session.num_frames == int(round(IDLE_SECONDS * session.fps))
    session.set_inputs(img, audio, None, seed=3)


def test_a_live_skeleton_moves_the_body_and_none_gives_it_back(session, example):

    img, _ = example
    session.set_mouth_scale(0.0)
    session.set_sway(0.0)
    try:
        rest, _ = session.frame(0.0)
        kp = session.engine.body.ref_kp.copy()  # the reference's pose as the body puppet rigs it
        for wrist, elbow in ((15, 13), (16, 14)):
            kp[wrist, 1] = kp[elbow, 1] - 0.15
        session.push_pose(kp, img.shape[1] / img.shape[0], mirror=False)
        assert session.live_pose is not None
        moved, _ = session.frame(0.0)
        lower = slice(int(0.55 * rest.shape[0]), rest.shape[0])
        assert np.abs(moved[lower].astype(int) - rest[lower]).mean() > 2.0
        session.push_pose(None)
        assert np.abs(session.frame(0.0)[0][lower].astype(int) - rest[lower]).max() <= 2
    finally:
        session.set_mouth_scale(1.0)
        session.set_sway(1.0)


def test_the_microphone_drives_the_lips(session, example):
    _, audio = example
    rest = session.engine.render(None).astype(int)
    session.start_mic(48000.0)
    try:
        mic = resample_audio(audio[: 2 * SAMPLE_RATE], SAMPLE_RATE, target=48000)
        moved = []
        for k in range(0, len(mic), 4800):
            session.push_mic(mic[k : k + 4800])
            moved.append(float(np.abs(session.frame(0.0)[0].astype(int) - rest).max()))
        assert max(moved) > 30
        for _ in range(10):
            session.push_mic(np.zeros(4800, np.float32))
        still = session.frame(0.0)[0].astype(int)
        assert np.abs(still - rest)[int(0.55 * len(rest)):].max() <= 40  # back near rest (blinks aside)
    finally:
        session.stop_mic()
    assert not session.mic_on


def test_a_picture_it_cannot_use_raises_and_holds_no_engine(example):
    s = LiveSession()
    with pytest.raises(UserError, match="RGB"):
        s.set_inputs(np.zeros((64, 64), np.uint8), example[1])
    assert s.engine is None
