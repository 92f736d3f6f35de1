"""Small people in a wide shot: detected, tracked, chosen, landmarked on a crop and mapped back."""

from __future__ import annotations

import json

import numpy as np
import pytest

from models import keypoints as kpl
from models.cli import main
from models.conditions.people import Box, PersonTrack, crop_frame, crop_window, link_tracks, map_to_frame
from models.conditions.pose import PoseExtractor, extract_video_poses, person_present
from models.errors import UserError
from tests import media_assets as assets

W, H = 768, 576
FRAMES = 16
BIG, SMALL = 85, 62  # the people's heights in pixels: too small for the landmarker in a 768x576 frame
HIPS = [kpl.INDEX["left_hip"], kpl.INDEX["right_hip"]]


def _figure(height: int) -> np.ndarray:
    """The cyclist of the ``bikes.mp4`` test clip (a real person, head to feet), ``height`` px tall."""
    import cv2

    person = np.ascontiguousarray(assets.video_frame(assets.bikes_path(), 125)[:, 330:510])
    s = height / person.shape[0]
    return cv2.resize(person, (round(person.shape[1] * s), height), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def wide_shot(tmp_path_factory):
    """A 768x576 street-like shot: a person 85 px tall walking right, another 62 px tall standing
    at the top left. Returns the video path and each frame's box (x0, y0, w, h) of both."""
    from models.media import write_video

    rng = np.random.default_rng(0)
    bg = np.broadcast_to(np.linspace(90, 160, W)[None, :, None], (H, W, 3))
    bg = np.clip(bg + rng.normal(0, 6, bg.shape), 0, 255).astype(np.uint8)
    big, small = _figure(BIG), _figure(SMALL)
    frames, boxes = [], []
    for i in range(FRAMES):
        f = bg.copy()
        x0, y0 = 420 + 3 * i, 300
        f[y0:y0 + BIG, x0:x0 + big.shape[1]] = big
        f[150:150 + SMALL, 120:120 + small.shape[1]] = small
        frames.append(f)
        boxes.append(((x0, y0, big.shape[1], BIG), (120, 150, small.shape[1], SMALL)))
    path = tmp_path_factory.mktemp("wide") / "wide.mp4"
    write_video(path, np.stack(frames), 25.0)
    return path, boxes, frames[0]


def _inside(kp: np.ndarray, box, slack: float = 0.15) -> bool:
    x0, y0, w, h = box
    hip = kp[HIPS, :2].mean(0) * [W, H]
    return (x0 - slack * w <= hip[0] <= x0 + (1 + slack) * w) and (y0 <= hip[1] <= y0 + h)


def test_the_landmarker_alone_misses_them(wide_shot):
    _, _, first = wide_shot
    with PoseExtractor(static_image_mode=True) as ex:
        assert not person_present(ex(first))


def test_small_person_found_tracked_and_mapped_back(wide_shot):
    path, boxes, _ = wide_shot
    track = extract_video_poses(path)
    assert track.meta["person"] == 1 and track.meta["people"] == 2
    assert "person 1 of 2" in track.meta["person_message"]
    assert abs(track.meta["person_height_px"] - BIG) < 0.25 * BIG
    assert track.missing.sum() <= 2
    for i in range(FRAMES):  # landmarks in full-frame coordinates, on the walking person
        if not track.missing[i]:
            assert _inside(track.keypoints[i], boxes[i][0]), i
    hips_x = track.keypoints[:, HIPS, 0].mean(1) * W
    assert hips_x[-1] - hips_x[0] > 0.5 * 3 * (FRAMES - 1)  # follows them as they walk


def test_person_n_picks_another_from_the_cli(wide_shot, tmp_path, capsys):
    path, boxes, _ = wide_shot
    out = tmp_path / "p2.npy"
    assert main(["extract-pose", str(path), "--out", str(out), "--person", "2"]) == 0
    assert "person 2 of 2" in capsys.readouterr().err
    kp = np.load(out)
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["person"] == 2 and len(kp) == FRAMES
    found = person_present(kp) & ~np.isin(np.arange(FRAMES), meta["missing_frames"])
    assert found.sum() >= FRAMES - 2 and all(_inside(kp[i], boxes[i][1]) for i in np.flatnonzero(found))
    with pytest.raises(UserError, match="person 3 was asked for, but the people detector found 2"):
        extract_video_poses(path, person=3)
    assert main(["extract-pose", str(path), "--out", str(tmp_path / "x.npy"), "--person", "0"]) == 2


# ------------------------------------------------------------------------------------------------
# The parts, without video


def test_tracks_ranked_largest_and_most_persistent_first():
    dets = {0: [Box(100, 100, 30, 60), Box(500, 300, 50, 100)],
            8: [Box(104, 100, 30, 60), Box(510, 300, 50, 100), Box(300, 50, 20, 40)],  # a one-off false hit
            16: [Box(108, 100, 30, 60)],  # the big one missed once
            24: [Box(112, 100, 30, 60), Box(530, 300, 50, 100)]}
    tracks = link_tracks(dets)
    assert len(tracks) == 2  # the one-off is dropped
    big, small = tracks
    assert sorted(big.boxes) == [0, 8, 24] and sorted(small.boxes) == [0, 8, 16, 24]
    assert big.weight > small.weight
    b = big.box_at(16)  # interpolated over the missed frame
    assert b.cx == pytest.approx(520) and big.box_at(-5).cx == 500 and big.box_at(99).cx == 530


def test_crop_and_map_back_round_trip():
    frame = np.zeros((H, W, 3), np.uint8)
    frame[290:310, 395:405] = 255  # a bright mark at (400, 300)
    window = crop_window(Box(400, 300, 40, 100))
    crop = crop_frame(frame, window)
    ys, xs = np.nonzero(crop[..., 0] > 128)
    kp = np.zeros((kpl.NUM_KEYPOINTS, 3), np.float32)
    kp[0] = (xs.mean() / crop.shape[1], ys.mean() / crop.shape[0], 0.9)
    back = map_to_frame(kp, window, W, H)
    assert back[0, 0] * W == pytest.approx(400, abs=2) and back[0, 1] * H == pytest.approx(300, abs=2)
    assert back[0, 2] == pytest.approx(0.9) and not back[1:].any()  # absent points stay absent
    edge = crop_window(Box(5, 5, 40, 100))  # past the frame's edge: black, no error
    assert crop_frame(frame, edge).shape == crop.shape


def test_person_track_needs_no_video():
    t = PersonTrack({3: Box(10, 20, 5, 10)})
    assert t.box_at(0) == t.box_at(10) and t.height == 10


def test_detector_on_frames_smaller_than_its_window():
    from models.conditions.people import PeopleDetector

    det = PeopleDetector()
    for shape in ((30, 40, 3), (48, 64, 3), (60, 20, 3)):  # OpenCV alone segfaults on these
        assert det(np.zeros(shape, np.uint8)) == []


def test_generate_pose_video_uses_the_small_person(wide_shot, tmp_path, capsys):
    from models import media

    path, _, _ = wide_shot
    ref = tmp_path / "ref.png"
    media.write_image(ref, np.full((64, 48, 3), 128, np.uint8))
    assert main(["generate", "--image", str(ref), "--pose-video", str(path), "--person", "2", "--random-init", "tiny",
                 "--steps", "1", "--out", str(tmp_path / "o.mp4")]) == 0
    err = capsys.readouterr().err
    assert "person 2 of 2" in err and "mode pose" in err
