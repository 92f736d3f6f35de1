"""CPU-recipe helpers: VAE crops, the latent cache, the mouth-weighted loss."""

import json

import pytest
import torch

from models.errors import UserError
from models.training.recipe import parse_recipe

RECIPE = "resources/recipes/tiny-test.json"


def _cached_recipe():
    raw = json.loads(open(RECIPE).read())
    raw["mouth_weight"] = 4.0
    raw["stages"][0]["crop"] = 32
    for s in raw["stages"][1:]:
        s["cache_windows"] = 6
        s["segment_frames"] = 5
        s["crop"] = 32  # the transformer on latent crops, half of them on the lips
        s["face_crops"] = 0.5
    return parse_recipe(raw, "cached.json")


def test_resume_is_exact_with_latent_cache(dataset, tmp_path):
    """Cropped VAE stage, cached DiT stages, mouth-weighted loss: N steps == N/2, stop, resume, N/2."""
    from models.training.trainer import Trainer

    r = _cached_recipe()
    total = r.total_steps
    straight = Trainer(r, [str(dataset)], tmp_path / "a", device="cpu", log=lambda s: None)
    straight.train()
    caches = list((tmp_path / "a" / "latents").glob("*.pt"))
    assert len(caches) == 1  # the DiT stages agree on window length and count: one shared cache
    half = Trainer(r, [str(dataset)], tmp_path / "b", device="cpu", log=lambda s: None, max_steps=total // 2 + 2)
    half.train()
    resumed = Trainer(r, [str(dataset)], tmp_path / "b", device="cpu", resume=True, log=lambda s: None)
    resumed.train()
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    for k in straight.ema.shadow:
        assert torch.equal(straight.ema.shadow[k], resumed.ema.shadow[k]), k


def test_cached_windows_match_the_streaming_encoding(dataset, tmp_path):
    """A cached window holds what the streaming path computes for the same window."""
    from models.data.dataset import WindowDataset
    from models.training.latent_cache import LatentWindows, build_cache
    from models.training.trainer import MOTION_FRAMES, Trainer

    r = _cached_recipe()
    t = Trainer(r, [str(dataset)], tmp_path / "c", device="cpu", log=lambda s: None)
    seg = 5
    buckets = build_cache([str(dataset)], seg, MOTION_FRAMES, 4, 0, lambda b: t.encode_cache_batch(b, seg),
                          log=lambda s: None)
    assert sum(len(b["caption"]) for b in buckets) == 4
    ds = WindowDataset([str(dataset)], num_frames=MOTION_FRAMES + seg, batch_size=4, seed=0, infinite=False,
                       drop_last=False)
    first = ds.make_batch(ds.epoch_plan(0)[0], 0)
    lat = t.encode_windows(first, seg, MOTION_FRAMES, motion=True)
    b0 = buckets[[tuple(b["heat"].shape[-2:]) for b in buckets].index(tuple(first["video"].shape[-2:]))]
    i = b0["caption"].index(first["caption"][0])
    assert torch.allclose(b0["x0"][i].float(), lat["x0"][0], atol=2e-2)
    assert torch.allclose(b0["motion"][i].float(), lat["motion"][0], atol=2e-2)
    assert torch.allclose(b0["mel"][i].float(), t.window_mel(first, seg, MOTION_FRAMES)[0], atol=2e-2)
    # Batches come in a resumable order: a new iterator at batch k continues like the old one.
    windows = LatentWindows(buckets, batch_size=2, seed=1)
    it = iter(windows)
    b1 = next(it)
    rest = next(it)
    again = LatentWindows(buckets, batch_size=2, seed=1)
    again.load_state_dict({"epoch": int(b1["position"][0]), "batch": int(b1["position"][1])})
    assert torch.equal(next(iter(again))["x0"], rest["x0"])
    with pytest.raises(ValueError, match="full batch"):
        LatentWindows(buckets, batch_size=64, seed=1)


def test_cache_built_by_loader_processes_is_the_same(dataset, tmp_path):
    """Loader processes (the GPU path) decode the same windows in the same order as the main process."""
    from models.training.latent_cache import build_cache
    from models.training.trainer import MOTION_FRAMES, Trainer

    t = Trainer(_cached_recipe(), [str(dataset)], tmp_path / "w", device="cpu", log=lambda s: None)
    seg = 5
    args = ([str(dataset)], seg, MOTION_FRAMES, 5, 0, lambda b: t.encode_cache_batch(b, seg))
    serial = build_cache(*args, batch_size=2, log=lambda s: None)
    parallel = build_cache(*args, batch_size=2, log=lambda s: None, num_workers=2)
    assert [b["caption"] for b in serial] == [b["caption"] for b in parallel]
    assert sum(len(b["caption"]) for b in serial) == 5
    for a, b in zip(serial, parallel, strict=True):
        for k in ("x0", "motion", "ref", "mel", "heat", "mouth", "audio_ok", "pose_ok"):
            assert torch.equal(a[k], b[k]), k


def test_mouth_cells_cover_the_lips_per_latent_frame():
    from models.keypoints import FACE_START, NUM_KEYPOINTS
    from models.training.latent_cache import mouth_cells

    kp = torch.zeros(1, 5, NUM_KEYPOINTS, 3)
    # Lips at x 0.5..0.6, y 0.8125 of the frame in frames 0-3; frame 4 has none visible.
    kp[0, :4, FACE_START : FACE_START + 10] = torch.tensor([0.5, 0.8125, 1.0])
    kp[0, :4, FACE_START, 0] = 0.6
    cells = mouth_cells(kp, 8, 8, margin=0.0)
    assert cells.shape == (1, 2, 8, 8)
    assert cells[0, 0, 6, 4] and not cells[0, 0, 0, 0]
    assert cells[0, 0].sum() == 1  # x 4.0..4.8 and y 6.5 hold only the centre of cell (6, 4)
    grown = mouth_cells(kp, 8, 8, margin=1.0)
    assert grown[0, 0].sum() == 9  # x 3.0..5.8, y 5.5..7.5: the centres of rows 5-7 x cols 3-5
    assert torch.equal(cells[0, 1], cells[0, 0])  # latent 1 = union of frames 1..4
    assert not mouth_cells(torch.zeros(1, 1, NUM_KEYPOINTS, 3), 8, 8).any()  # no lips, no cells


def test_weighted_flow_loss():
    from models.flow import flow_loss

    g = torch.Generator().manual_seed(0)
    x0, noise, pred = (torch.randn(2, 4, 2, 3, 3, generator=g) for _ in range(3))
    plain = flow_loss(pred, x0, noise)
    assert torch.allclose(flow_loss(pred, x0, noise, weight_map=torch.ones(2, 2, 3, 3)), plain)
    # All weight on one cell: the loss of that cell alone.
    wm = torch.zeros(2, 2, 3, 3)
    wm[:, 1, 2, 0] = 1.0
    err = (pred - (noise - x0)).pow(2)[:, :, 1, 2, 0].mean(1)
    assert torch.allclose(flow_loss(pred, x0, noise, weight_map=wm), err)


def test_bad_cpu_recipe_keys_are_named():
    raw = json.loads(open(RECIPE).read())
    for where, key, value, match in [
        (0, "crop", 30, "crop"),
        (1, "crop", 24, "multiple of 16"),
        (1, "face_crops", 0.5, "needs 'crop'"),
        (1, "cache_windows", -1, "cache_windows"),
        (0, "cache_windows", 8, "'dit' stages only"),
    ]:
        bad = json.loads(json.dumps(raw))
        bad["stages"][where][key] = value
        with pytest.raises(UserError, match=rf"stages\[{where}\].*{match}"):
            parse_recipe(bad, "r.json")
    with pytest.raises(UserError, match="mouth_weight"):
        parse_recipe({**raw, "mouth_weight": -1}, "r.json")


def test_ema_warm_up_counts_transformer_steps_only(dataset, tmp_path):
    """After the VAE stages the EMA warms up from the first transformer step."""
    from models.training.trainer import Trainer

    r = _cached_recipe()
    t = Trainer(r, [str(dataset)], tmp_path / "e", device="cpu", log=lambda s: None,
                max_steps=r.stages[0].steps + 1)
    assert t.first_dit_step == r.stages[0].steps
    init = {k: v.clone() for k, v in t.ema.shadow.items()}
    t.train()
    # First transformer step: decay (1 + 0) / (10 + 0), whatever the VAE stages' step count.
    for k, v in t.model.transformer.state_dict().items():
        if k in t.ema.shadow:
            assert torch.allclose(t.ema.shadow[k], 0.1 * init[k] + 0.9 * v.float(), atol=1e-6), k


def test_decoder_only_stage_keeps_the_latents(dataset, tmp_path):
    """A decoder-only VAE stage after the transformer's: encoder and latent statistics stay as they were."""
    from models.training.trainer import Trainer

    raw = json.loads(open(RECIPE).read())
    raw["stages"] = raw["stages"][:2] + [{"name": "decoder", "kind": "vae", "steps": 2, "lr": 1e-3, "batch_size": 2,
                                          "segment_frames": 9, "crop": 32, "decoder_only": True}]
    r = parse_recipe(raw, "decoder.json")
    t = Trainer(r, [str(dataset)], tmp_path / "d", device="cpu", log=lambda s: None,
                max_steps=r.stages[0].steps + r.stages[1].steps)
    t.train()
    before = {k: v.clone() for k, v in t.model.vae.state_dict().items()}
    t2 = Trainer(r, [str(dataset)], tmp_path / "d", device="cpu", resume=True, log=lambda s: None)
    t2.train()
    after = t2.model.vae.state_dict()
    for k, v in before.items():
        same = torch.equal(v, after[k])
        assert same == (not k.startswith("decoder.")), k
    with pytest.raises(UserError, match="decoder_only"):
        bad = json.loads(json.dumps(raw))
        bad["stages"][1]["decoder_only"] = True
        parse_recipe(bad, "r.json")
