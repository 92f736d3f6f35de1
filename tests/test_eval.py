import numpy as np
import pytest

from models.training import evaluate as ev


@pytest.fixture
def video(rng):
    return (rng.random((12, 32, 40, 3)) * 255).astype(np.uint8)


def test_identical_videos_score_perfectly(video):
    p, s = ev.video_psnr_ssim(video, video)
    assert p >= 99 and s == pytest.approx(1.0)
    noisy = np.clip(video.astype(int) + 20, 0, 255).astype(np.uint8)
    p2, s2 = ev.video_psnr_ssim(noisy, video)
    assert p2 < 40 and s2 < 1.0


def test_sync_score_drops_with_shifted_audio():
    rng = np.random.default_rng(1)
    n = 150
    env = np.convolve(rng.random(n), np.ones(3) / 3, mode="same")  # syllable-like envelope
    mouth = env + 0.05 * rng.standard_normal(n)
    conf, off = ev.sync_score(mouth, env)
    conf_shift, off_shift = ev.sync_score(mouth, np.roll(env, 8))
    assert off == 0 and conf > 0.5
    assert conf_shift < conf - 0.4 and off_shift == 8 or abs(off_shift) >= 4


def test_sync_score_of_a_clip_shorter_than_the_offsets():
    from models.training.evaluate import shifted_corr, sync_score

    rng = np.random.default_rng(0)
    x = rng.random(9)
    assert np.isnan(shifted_corr(x, x, 12)) and np.isnan(shifted_corr(x, x, -9))
    conf, _ = sync_score(x, x, max_offset=15)  # offsets 4..8 still overlap
    assert np.isfinite(conf) and conf > 0


def test_colour_shift_raises_drift(video):
    same = ev.drift(video[:4], video[:4], video[0])
    shifted = np.clip(video.astype(int) + 30, 0, 255).astype(np.uint8)
    d = ev.drift(video[:4], shifted[:4], video[0])
    assert same["colour_shift"] == 0 and d["colour_shift"] > 20
    assert d["appearance_reference"] > same["appearance_first"]


def test_mouth_openness_follows_a_drawn_mouth():
    import cv2

    from models import keypoints as kpl

    t, h, w = 6, 64, 64
    frames = np.full((t, h, w, 3), 200, np.uint8)
    kp = kpl.empty_keypoints(t)
    opening = np.array([0, 2, 6, 10, 4, 0])
    for i in range(t):
        cv2.ellipse(frames[i], (32, 40), (10, max(1, int(opening[i]))), 0, 0, 360, (30, 10, 10), -1)
        for name, (x, y) in {"face_lip_corner_left": (42, 40), "face_lip_corner_right": (22, 40),
                             "face_lip_upper_outer": (32, 38), "face_lip_lower_outer": (32, 42),
                             "face_lip_upper_inner": (32, 39), "face_lip_lower_inner": (32, 41)}.items():
            kp[i, kpl.INDEX[name]] = (x / w, y / h, 1.0)
    o = ev.mouth_openness(frames, ev.mouth_boxes(kp, h, w))
    assert np.corrcoef(o, opening)[0, 1] > 0.95


def test_keypoint_error_and_hand_metrics():
    from models import keypoints as kpl

    a = kpl.empty_keypoints(3)
    a[:, : kpl.NUM_BODY] = (0.5, 0.5, 1.0)
    b = a.copy()
    b[:, : kpl.NUM_BODY, 0] += 0.1
    assert ev.keypoint_error(a, a) == 0
    assert ev.keypoint_error(b, a) == pytest.approx(0.1 / np.sqrt(2))
    hkc, hkv = ev.hand_metrics(a)
    assert hkc == 0 and hkv == 0
    a[:, kpl.LEFT_HAND_START : kpl.RIGHT_HAND_START] = (0.3, 0.3, 1.0)
    a[1, kpl.LEFT_HAND_START : kpl.RIGHT_HAND_START, 0] = 0.4
    hkc, hkv = ev.hand_metrics(a)
    assert hkc == pytest.approx(0.5) and hkv > 0


@pytest.fixture(scope="module")
def held_out(tmp_path_factory):
    from models.cli import main

    out = tmp_path_factory.mktemp("held") / "ds"
    assert main(["synth", "--clips", "2", "--out", str(out), "--size", "toon-s", "--seed", "999",
                 "--workers", "1"]) == 0
    return out


def test_the_instant_engine_runs_through_the_same_benchmark(held_out):
    pytest.importorskip("mediapipe")
    from models.training.evaluate import format_table, run_benchmark

    table = run_benchmark("instant", str(held_out), clips=1, seconds=1.0, drift_seconds=0, use_mediapipe=False,
                          log=lambda s: None)
    for mode in ("audio", "pose", "combined"):
        s = table[mode]
        scored = np.isfinite(s["mouth_corr"]) or np.isfinite(s["kp_error"]) or np.isfinite(s["psnr"])
        assert scored or s["skipped"] == 1, (mode, s)
    assert np.isfinite(table["combined"]["psnr"]) or table["combined"]["skipped"] == 1
    assert "| combined |" in format_table(table)


def test_eval_cli_engine_and_model_are_checked(held_out):
    from models.cli import main

    assert main(["eval", "--engine", "instant", "--model", "toon-s", "--data", str(held_out)]) == 2
    assert main(["eval", "--data", str(held_out)]) == 2


def test_the_shifted_baseline_separates_a_synced_mouth_from_an_unsynced_one(held_out):
    from models.data.format import ClipStore
    from models.training.evaluate import ModeScores, score_clip

    clip = ClipStore(str(held_out)).clip(0)
    synced, reversed_ = ModeScores(), ModeScores()
    score_clip(clip.frames, clip, synced)
    # the same mouth shapes, played backwards: moves like speech, but not with this speech
    score_clip(clip.frames[::-1].copy(), clip, reversed_)
    a, b = synced.summary(), reversed_.summary()
    assert a["mouth_corr"] > a["mouth_corr_shifted"] + 0.3
    assert a["sync"] > a["sync_shifted"] + 0.15
    assert b["mouth_corr"] - b["mouth_corr_shifted"] < a["mouth_corr"] - a["mouth_corr_shifted"] - 0.3
    assert len(synced.sync_shifted) == 1 and np.isfinite(a["sync_shifted"])


def test_the_benchmark_samples_with_the_audio_guidance_asked_for(held_out, tiny_model, monkeypatch):
    import models.pipeline as pipeline
    from models.errors import UserError
    from models.training.evaluate import run_benchmark

    seen = []

    def fake_generate(model, inputs, settings, callbacks=None, keep_frames=True):
        seen.append((settings.cfg_audio, settings.anneal_strength))
        raise UserError("not generated in this test")

    monkeypatch.setattr(pipeline, "generate", fake_generate)
    table = run_benchmark(tiny_model, str(held_out), clips=1, seconds=0.5, drift_seconds=1.0, use_mediapipe=False,
                          log=lambda s: None, cfg_audio=15.0, anneal_strength=0.0)
    assert seen == [(15.0, 0.0)] * 4  # audio, pose, combined, and the long take
    assert table["audio"]["skipped"] == 1 and "drift" not in table


def test_tracked_mouth_boxes_follow_a_face_that_moves_on_its_own():
    rng = np.random.default_rng(3)
    h, w = 64, 64
    face = (rng.random((h + 20, w + 20)) * 200).astype(np.uint8)
    face = np.repeat(face[..., None], 3, axis=2)
    shifts = [(0, 0), (3, 0), (5, 2), (-4, 3), (2, -5)]
    frames = np.stack([face[10 - dy : 10 - dy + h, 10 - dx : 10 - dx + w] for dx, dy in shifts])
    box = (28, 36, 38, 46)
    boxes = ev.track_boxes(frames, frames[0], box)
    for (dx, dy), b in zip(shifts, boxes, strict=True):
        assert tuple(b) == (box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy)
    # a frame where the face is gone (flat grey) gives no box: scored NaN, not a guess
    gone = np.full_like(frames[:1], 128)
    assert (ev.track_boxes(gone, frames[0], box) == 0).all()
    assert np.isnan(ev.mouth_openness(gone, ev.track_boxes(gone, frames[0], box))).all()


def test_tracked_boxes_score_the_ground_truth_like_its_keypoint_boxes(held_out):
    from models.data.format import ClipStore
    from models.training.evaluate import ModeScores, score_clip

    clip = ClipStore(str(held_out)).clip(0)
    kp, tracked = ModeScores(), ModeScores()
    score_clip(clip.frames, clip, kp)
    score_clip(clip.frames, clip, tracked, track=True)
    a, b = kp.summary(), tracked.summary()
    assert b["mouth_tracked"] > 0.9
    assert b["mouth_corr_kp_boxes"] == pytest.approx(a["mouth_corr"])
    assert b["mouth_corr"] > 0.5 * a["mouth_corr"] and b["mouth_corr"] > b["mouth_corr_shifted"] + 0.2
