"""Dataset format, synthetic determinism, and the training WindowDataset (flags, buckets, resume)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.data.dataset import WindowDataset
from models.data.format import Clip, ClipStore, DatasetWriter
from models.data.synth import SynthConfig, build_synthetic_dataset
from models.keypoints import NUM_KEYPOINTS

FPS = 25.0


def _fake_clip(i: int, t: int, hw: tuple[int, int], lipsync_ok=True, pose_ok=True, mouth=True) -> Clip:
    rng = np.random.default_rng(i)
    h, w = hw
    frames = np.zeros((t, h, w, 3), np.uint8)
    frames[:] = (np.arange(t) * 7 % 256)[:, None, None, None]  # frame index readable from pixels
    frames[..., 1] = i
    audio = np.repeat(np.arange(t, dtype=np.float32) / 1000.0, 640)  # sample value = frame / 1000
    kp = rng.random((t, NUM_KEYPOINTS, 3)).astype(np.float32)
    kp[:, 0, 0] = np.arange(t) / 1000.0
    m = np.tile(np.arange(t, dtype=np.float32)[:, None] / 1000.0, (1, 4)) if mouth else None
    return Clip(f"c{i}", frames, audio, kp, f"caption {i}", FPS, lipsync_ok, pose_ok, m)


@pytest.fixture(scope="module")
def fake_ds(tmp_path_factory):
    root = tmp_path_factory.mktemp("fake")
    with DatasetWriter(root, FPS, shard_bytes=40_000) as w:
        for i in range(12):
            hw = (32, 32) if i % 2 == 0 else (32, 48)
            w.add(_fake_clip(i, 30 + 3 * i, hw, lipsync_ok=i % 3 != 0, pose_ok=i % 4 != 1, mouth=i != 5))
    return root


def test_store_reads_aligned_windows(fake_ds):
    store = ClipStore(fake_ds)
    assert len(store) == 12 and len(store.shards) > 1
    d = store.read(3, start=10, num_frames=9)
    assert d["frames"].shape == (9, 32, 48, 3)
    got = d["frames"][:, 0, 0, 0].astype(int)
    assert np.abs(got - [(10 + k) * 7 % 256 for k in range(9)]).max() <= 2  # JPEG
    assert d["audio"].shape == (9 * 640,)
    np.testing.assert_allclose(d["audio"][::640], (10 + np.arange(9)) / 1000.0, atol=1e-4)
    np.testing.assert_allclose(d["keypoints"][:, 0, 0], (10 + np.arange(9)) / 1000.0)
    np.testing.assert_allclose(d["mouth"][:, 0], (10 + np.arange(9)) / 1000.0)
    assert store.read(5)["mouth"] is None


def test_batches_have_one_resolution_and_aligned_fields(fake_ds):
    ds = WindowDataset(fake_ds, num_frames=9, batch_size=3, seed=1, infinite=False)
    n = 0
    for b in ds:
        n += 1
        v = b["video"]
        assert v.dtype == torch.float32 and v.shape[:3] == (3, 3, 9) and v.min() >= -1 and v.max() <= 1
        assert tuple(v.shape[3:]) in ((32, 32), (32, 48))
        assert b["reference"].shape == (3, 3, *v.shape[3:])
        assert b["audio"].shape == (3, 9 * 640) and b["keypoints"].shape == (3, 9, NUM_KEYPOINTS, 3)
        assert b["mouth"].shape == (3, 9, 4)
        for j in range(3):
            start = int(b["start"][j])
            np.testing.assert_allclose(b["keypoints"][j, :, 0, 0].numpy(), (start + np.arange(9)) / 1000.0)
            np.testing.assert_allclose(b["audio"][j, ::640].numpy(), (start + np.arange(9)) / 1000.0, atol=1e-4)
    assert n == len(ds) > 0


def test_flags_are_honoured(fake_ds):
    store = ClipStore(fake_ds)
    by_id = {r["id"]: r for r in store.records}
    ds = WindowDataset(fake_ds, num_frames=9, batch_size=2, seed=0, infinite=False)
    seen = set()
    for b in ds:
        for j, cid in enumerate(b["clip_id"]):
            rec = by_id[cid]
            assert bool(b["audio_ok"][j]) == rec["lipsync_ok"]
            assert bool(b["pose_ok"][j]) == rec["pose_ok"]
            assert bool(b["has_mouth"][j]) == (cid != "c5")
            seen.add(cid)
    assert any(not by_id[c]["lipsync_ok"] for c in seen)  # failing clips still train weaker conditions
    strict = WindowDataset(fake_ds, num_frames=9, batch_size=1, require_lipsync=True, require_pose=True,
                           infinite=False)
    kept = {cid for b in strict for cid in b["clip_id"]}
    assert kept and all(by_id[c]["lipsync_ok"] and by_id[c]["pose_ok"] for c in kept)
    assert strict.skipped_flags == sum(1 for r in store.records if not (r["lipsync_ok"] and r["pose_ok"]))


def _ids(batches):
    return [(tuple(b["clip_id"]), tuple(b["start"].tolist())) for b in batches]


def test_resume_at_an_exact_position(fake_ds):
    ds = WindowDataset(fake_ds, num_frames=9, batch_size=2, seed=4)
    per_epoch = len(ds)
    it = iter(ds)
    run = [next(it) for _ in range(per_epoch + 5)]  # crosses an epoch boundary
    k = per_epoch - 2
    state = {"epoch": int(run[k - 1]["position"][0]), "batch": int(run[k - 1]["position"][1]), "seed": 4}
    resumed = WindowDataset(fake_ds, num_frames=9, batch_size=2, seed=4)
    resumed.load_state_dict(state)
    it2 = iter(resumed)
    again = [next(it2) for _ in range(len(run) - k)]
    assert _ids(again) == _ids(run[k:])
    assert torch.equal(again[0]["video"], run[k]["video"]) and torch.equal(again[0]["audio"], run[k]["audio"])
    assert ds.state_dict()["epoch"] == 1  # in-process iteration tracks its own position
    assert _ids(run[:per_epoch]) != _ids(run[per_epoch: 2 * per_epoch]) or per_epoch < 2  # epochs reshuffle


def test_workers_and_ranks_preserve_the_order(fake_ds):
    single = WindowDataset(fake_ds, num_frames=9, batch_size=2, seed=2, infinite=False)
    want = _ids(single)
    loader = torch.utils.data.DataLoader(
        WindowDataset(fake_ds, num_frames=9, batch_size=2, seed=2, infinite=False), batch_size=None,
        num_workers=2)
    assert _ids(loader) == want
    ranks = [WindowDataset(fake_ds, num_frames=9, batch_size=2, seed=2, rank=r, world_size=2, infinite=False)
             for r in range(2)]
    parts = [_ids(r) for r in ranks]
    assert len(parts[0]) == len(parts[1]) and not set(parts[0]) & set(parts[1])


def test_same_seed_gives_byte_identical_synthetic_dataset(tmp_path):
    cfg = SynthConfig(area=48 * 48, seed=9, max_seconds=2.2)
    build_synthetic_dataset(tmp_path / "a", 3, cfg, workers=1)
    build_synthetic_dataset(tmp_path / "b", 3, cfg, workers=2)
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "b").iterdir())
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    build_synthetic_dataset(tmp_path / "c", 3, SynthConfig(area=48 * 48, seed=10, max_seconds=2.2))
    assert (tmp_path / "c" / "shard-00000.bin").read_bytes() != (tmp_path / "a" / "shard-00000.bin").read_bytes()
    store = ClipStore(tmp_path / "a")
    clip = store.clip(0)
    assert clip.mouth is not None and clip.mouth.shape == (clip.num_frames, 4)
    assert clip.caption and clip.keypoints.shape == (clip.num_frames, NUM_KEYPOINTS, 3)


def test_real_poses_drive_a_character(fake_ds):
    """A prepared dataset's keypoints can drive toon characters (mode "driven")."""
    from models.data.synth import synth_clip

    cfg = SynthConfig(area=48 * 48, seed=1, drive=str(fake_ds), mode="driven", max_seconds=2.0)
    clip = synth_clip(cfg, 0)
    assert clip.meta["mode"] == "driven" and "real person" in clip.caption
    assert clip.frames.shape[0] == clip.keypoints.shape[0] >= 25


def test_repeat_and_uint8_video(fake_ds):
    base = WindowDataset(fake_ds, num_frames=9, batch_size=1, infinite=False)
    doubled = WindowDataset(fake_ds, num_frames=9, batch_size=1, infinite=False, repeat=(2,), video_uint8=True)
    assert len(doubled) == 2 * len(base)
    b = next(iter(doubled))
    assert b["video"].dtype == torch.uint8 and b["reference"].dtype == torch.uint8
