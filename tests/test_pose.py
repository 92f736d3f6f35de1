"""Pose extraction and reference analysis on real photographs and video shipped by PyPI packages."""

from __future__ import annotations

import numpy as np
import pytest

from models import keypoints as kpl
from models.conditions.pose import (
    PoseExtractor,
    PoseTrack,
    extract_image_pose,
    extract_video_poses,
    load_pose_track,
    person_present,
    save_pose_track,
)
from models.conditions.reference import analyze_reference, classify_framing, portrait_template
from models.errors import UserError
from models.media import MediaError, read_image, write_video
from tests import media_assets as assets

I = kpl.INDEX


def _face_points(kp):
    return kp[kpl.FACE_START :]


@pytest.fixture(scope="module")
def carphone_track() -> PoseTrack:
    return extract_video_poses(assets.carphone_path())


def test_real_portrait_landmarks():
    img = read_image(assets.astronaut_path())
    info = analyze_reference(img)
    kp = info.keypoints
    assert info.person_found and info.face_visible
    assert info.framing == "portrait"
    kpl.validate_keypoints(kp)
    # Head and shoulders found, anatomically ordered in the image (a frontal photo: the person's
    # left is on the image's right).
    for name in ("nose", "left_eye", "right_eye", "left_shoulder", "right_shoulder", "mouth_left"):
        assert kp[I[name], 2] > 0.5, name
    assert kp[I["left_eye"], 0] > kp[I["nose"], 0] > kp[I["right_eye"], 0]
    assert kp[I["left_eye"], 1] < kp[I["nose"], 1] < kp[I["mouth_left"], 1] < kp[I["left_shoulder"], 1]
    # Every face point found, and the lips and eyes sit around the body model's mouth and eyes.
    face = _face_points(kp)
    assert (face[:, 2] > 0).all()
    mouth = kp[[I["mouth_left"], I["mouth_right"]], :2].mean(0)
    lips = face[:10, :2].mean(0)
    assert np.linalg.norm(lips - mouth) < 0.03
    assert np.linalg.norm(kp[I["face_left_iris"], :2] - kp[I["left_eye"], :2]) < 0.03
    # The box holds the face and is inside the image.
    x0, y0, x1, y1 = info.bbox
    assert 0 <= x0 < kp[I["right_eye"], 0] and kp[I["left_eye"], 0] < x1 <= 1 and 0 <= y0 < y1 <= 1


def test_real_full_body_photo():
    info = analyze_reference(assets.full_body_photo())
    kp = info.keypoints
    assert info.person_found
    assert info.framing == "full_body"
    for name in ("left_shoulder", "right_shoulder", "left_hip", "left_knee", "right_knee", "right_ankle"):
        assert kp[I[name], 2] > 0.5, name
    # Head above hips above knees above the (visible) right ankle.
    assert kp[I["nose"], 1] < kp[I["right_hip"], 1] < kp[I["right_knee"], 1] < kp[I["right_ankle"], 1]
    assert info.bbox[3] - info.bbox[1] > 0.8  # the cyclist spans the picture's height


def test_real_video_landmarks(carphone_track):
    tr = carphone_track
    assert tr.keypoints.shape == (120, kpl.NUM_KEYPOINTS, 3)
    assert tr.fps == pytest.approx(29.97, abs=0.01)
    assert (tr.width, tr.height) == (176, 144)
    assert not tr.missing.any()
    kp = tr.keypoints
    assert (kp[:, I["nose"], 2] > 0.5).all()
    assert (kp[:, kpl.FACE_START :, 2] > 0).all()
    # He speaks: the inner lips open and close over the clip (mouth opening in units of mouth width).
    def dist(a, b):
        return np.linalg.norm(kp[:, I[a], :2] - kp[:, I[b], :2], axis=-1)

    opening = dist("face_lip_upper_inner", "face_lip_lower_inner")
    width = dist("face_lip_corner_left", "face_lip_corner_right")
    ratio = opening / width
    assert ratio.max() - ratio.min() > 0.3
    # The head moves little between consecutive frames (tracking, not re-detection noise).
    step = np.abs(np.diff(kp[:, I["nose"], :2], axis=0)).max()
    assert step < 0.08


def test_extractor_tracks_live_frames_and_single_image_mode_agree():
    img = read_image(assets.astronaut_path())
    still = extract_image_pose(img)
    with PoseExtractor(static_image_mode=False) as ex:
        live = [ex(img) for _ in range(3)]
        assert ex.frames_processed == 3
    for kp in live:
        assert person_present(kp)
        d = np.abs(kp[I["nose"], :2] - still[I["nose"], :2]).max()
        assert d < 0.02


def test_image_with_no_person():
    img = read_image(assets.coffee_path())
    assert not person_present(extract_image_pose(img))
    info = analyze_reference(img)
    assert not info.person_found and not info.face_visible
    assert info.framing == "portrait" and info.bbox == (0.0, 0.0, 1.0, 1.0)
    assert "No person found" in info.message and "portrait" in info.message
    kpl.validate_keypoints(info.keypoints)
    # The fallback keeps a usable portrait skeleton: face and shoulders inside the picture.
    assert info.keypoints[I["nose"], 2] > 0 and info.keypoints[I["left_shoulder"], 2] > 0


def test_analyze_reference_never_raises_on_odd_images():
    for img in (
        np.zeros((64, 64, 3), np.uint8),
        np.full((16, 300, 3), 255, np.uint8),
        np.random.default_rng(0).integers(0, 255, (40, 30, 4), dtype=np.uint8),
    ):
        info = analyze_reference(img)
        assert info.framing == "portrait" and not info.person_found
    with pytest.raises(ValueError, match="RGB uint8"):
        analyze_reference(np.zeros((64, 64), np.float32))


def test_video_with_no_person(tmp_path):
    t = np.arange(12)[:, None, None, None]
    frames = np.broadcast_to((t * 20 + np.arange(64)[None, None, :, None] * 3) % 255, (12, 48, 64, 3))
    path = tmp_path / "empty_room.mp4"
    write_video(path, np.ascontiguousarray(frames, dtype=np.uint8), 12)
    with pytest.raises(UserError, match="empty_room.mp4: no person found in any of its 12 frames"):
        extract_video_poses(path)
    # Real street footage without anyone in it, where MediaPipe's body model alone reports (and then
    # tracks) a phantom head a few pixels wide: no person.
    with pytest.raises(UserError, match="bikes.mp4: no person found in any of its 30 frames"):
        extract_video_poses(assets.bikes_path(), max_frames=30)


def test_truncated_and_non_media_video(tmp_path, carphone_track):
    data = assets.carphone_path().read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(MediaError, match="cut.mp4: video (file )?is truncated or damaged"):
        extract_video_poses(cut)
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n" * 20)
    with pytest.raises(MediaError, match="notes.mp4: not a video that ffmpeg can read"):
        extract_video_poses(text)
    with pytest.raises(MediaError, match="nothing.mp4: file not found"):
        extract_video_poses(tmp_path / "nothing.mp4")


def test_pose_file_roundtrip(tmp_path, carphone_track):
    tr = carphone_track
    tr.missing[3] = True
    path = save_pose_track(tr, tmp_path / "pose.npy")
    assert np.load(path).shape == tr.keypoints.shape  # a plain .npy
    back = load_pose_track(path)
    np.testing.assert_array_equal(back.keypoints, tr.keypoints)
    assert (back.fps, back.width, back.height) == (tr.fps, tr.width, tr.height)
    assert np.flatnonzero(back.missing).tolist() == [3]
    tr.missing[3] = False
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((4, 17, 2)))
    with pytest.raises(UserError, match="bad.npy: expected shape"):
        load_pose_track(bad)


def test_framing_rules():
    kp = portrait_template(1.0)
    assert classify_framing(kp) == "portrait"
    kp[I["left_hip"]] = (0.6, 0.8, 0.9)
    assert classify_framing(kp) == "half_body"
    kp[I["left_knee"]] = (0.6, 0.9, 0.9)
    kp[I["left_ankle"]] = (0.6, 0.98, 0.9)
    assert classify_framing(kp) == "full_body"
    kp[I["left_ankle"], 1] = 1.2  # below the picture: not a full body
    assert classify_framing(kp) == "half_body"


def test_extract_pose_cli_with_preview(tmp_path, capsys):
    from models.cli import main
    from models.media import read_video_frames

    out, preview, rt = tmp_path / "pose.npy", tmp_path / "preview.mp4", tmp_path / "rt.npy"
    rc = main([
        "extract-pose", str(assets.carphone_path()), "--out", str(out), "--max-frames", "8",
        "--reference", str(assets.astronaut_path()), "--retargeted-out", str(rt),
        "--preview", str(preview), "--quiet",
    ])
    assert rc == 0
    assert np.load(out).shape == (8, kpl.NUM_KEYPOINTS, 3)
    back = load_pose_track(rt)
    assert (back.width, back.height) == (512, 512) and back.keypoints.shape == (8, kpl.NUM_KEYPOINTS, 3)
    info, frames = read_video_frames(preview)
    frames = list(frames)
    assert len(frames) == 8 and info.height == 480
    # Two panels: the 176x144 video and the square reference, both at 480 px high.
    assert info.width == 586 + 480


def test_extract_pose_cli_errors(tmp_path, capsys):
    from models.cli import main

    bad = tmp_path / "holiday.mp4"
    bad.write_text("definitely not a video")
    assert main(["extract-pose", str(bad), "--out", str(tmp_path / "p.npy")]) == 2
    assert "holiday.mp4: not a video that ffmpeg can read" in capsys.readouterr().err
    assert main(["extract-pose", str(tmp_path / "gone.mp4"), "--out", str(tmp_path / "p.npy")]) == 2
    assert "gone.mp4: file not found" in capsys.readouterr().err
    assert main(["extract-pose", str(bad), "--out", str(tmp_path / "p.txt")]) == 2
    assert "pose files are .npy" in capsys.readouterr().err


def test_live_poses_of_a_video_standing_in_for_the_camera_are_smoothed_and_retargeted():
    """The live path without Qt: a frame source, the tracking extractor, the One-Euro smoother and the
    retargeter, frame by frame, as the capture thread and the live session chain them."""
    from models.conditions.retarget import Retargeter
    from models.conditions.smoothing import LivePoseSmoother
    from models.sources import VideoFileSource

    ref = analyze_reference(read_image(assets.astronaut_path()))
    smoother = LivePoseSmoother()
    raw, smooth, retargeted = [], [], []
    with VideoFileSource(assets.carphone_path(), realtime=False, drop_oldest=False) as source, \
            PoseExtractor(static_image_mode=False) as ex:
        for frame in source:
            kp = ex(frame.image)
            s, filled = smoother(kp, frame.timestamp)
            assert person_present(s) and not filled
            h, w = frame.image.shape[:2]
            retargeted.append(Retargeter(ref.keypoints, w / h, ref.aspect)(s))
            raw.append(kp)
            smooth.append(s)
            if len(raw) == 12:
                break
    for rt in retargeted:
        assert rt.shape == (kpl.NUM_KEYPOINTS, 3)
        np.testing.assert_allclose(rt[I["left_shoulder"], :2], ref.keypoints[I["left_shoulder"], :2], atol=0.15)
    # Smoothing takes out frame-to-frame jitter: the smoothed track moves less than the raw one.
    body = slice(0, kpl.NUM_BODY)
    jitter = lambda t: float(np.abs(np.diff(np.stack(t)[:, body, :2], axis=0)).mean())  # noqa: E731
    assert jitter(smooth) <= jitter(raw)


def test_unclosed_extractor_does_not_hang_interpreter_exit():
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import numpy as np\n"
        "from models.conditions.pose import PoseExtractor\n"
        "ex = PoseExtractor(static_image_mode=True)\n"
        "ex(np.zeros((64, 64, 3), np.uint8))\n"
        "print('done')\n"
    )
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "done" in proc.stdout
