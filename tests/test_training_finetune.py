"""Fine-tuning pieces: face-centred VAE crops, the mouth-weighted VAE loss, ``train --init``."""

import json

import numpy as np
import pytest
import torch

from models.errors import UserError
from models.training.recipe import parse_recipe

RECIPE = "resources/recipes/tiny-test.json"


def _keypoints(b: int, t: int, cx: float, cy: float) -> torch.Tensor:
    from models.keypoints import FACE_START, NUM_KEYPOINTS

    kp = torch.zeros(b, t, NUM_KEYPOINTS, 3)
    angles = torch.linspace(0, 2 * np.pi, 11)[:10]
    kp[:, :, FACE_START : FACE_START + 10, 0] = cx + 0.03 * torch.cos(angles)
    kp[:, :, FACE_START : FACE_START + 10, 1] = cy + 0.01 * torch.sin(angles)
    kp[:, :, FACE_START : FACE_START + 10, 2] = 1.0
    return kp


def _trainer(dataset, tmp_path, raw=None):
    from models.training.trainer import Trainer

    raw = raw or json.loads(open(RECIPE).read())
    return Trainer(parse_recipe(raw, "r.json"), [str(dataset)], tmp_path, device="cpu", log=lambda s: None)


def test_face_crops_hold_the_lips_and_move_the_keypoints(dataset, tmp_path):
    from models.training.latent_cache import lip_pixels

    t = _trainer(dataset, tmp_path / "r")
    b, h, w = 16, 96, 128
    video = torch.arange(h * w, dtype=torch.float32).view(1, 1, 1, h, w).expand(b, 3, 5, h, w)
    kp = _keypoints(b, 5, cx=0.8, cy=0.25)
    crops, moved = t._crop(video, kp, 32, face_share=1.0)
    assert crops.shape == (b, 3, 5, 32, 32)
    lips = lip_pixels(moved, 32, 32)
    assert lips.flatten(1).any(1).all()  # every crop holds the lips
    # The moved keypoints point at the same pixels: the crop's top-left value names its offset.
    for i in range(b):
        y, x = divmod(int(crops[i, 0, 0, 0, 0]), w)
        assert torch.allclose(moved[i, 0, :, 0] * 32 + x, kp[i, 0, :, 0] * w, atol=1e-4)
        assert torch.allclose(moved[i, 0, :, 1] * 32 + y, kp[i, 0, :, 1] * h, atol=1e-4)
    # No face share: crops land anywhere, most of them away from a corner mouth.
    _, anywhere = t._crop(video, kp, 32, face_share=0.0)
    assert lip_pixels(anywhere, 32, 32).flatten(1).any(1).float().mean() < 0.6
    # Lips not visible: a face crop falls back to a random one (no error).
    kp[..., 2] = 0.0
    assert t._crop(video, kp, 32, face_share=1.0)[0].shape == (b, 3, 5, 32, 32)


def test_lip_pixels_grow_with_the_lips():
    from models.training.latent_cache import lip_pixels

    kp = _keypoints(1, 1, cx=0.5, cy=0.5)
    m = lip_pixels(kp, 100, 100)[0, 0]
    ys, xs = m.nonzero(as_tuple=True)
    # lips 6 x 2 px, grown by half of 6 plus 2 on every side -> 16 x 12 px
    assert 15 <= int(xs.max() - xs.min() + 1) <= 17 and 11 <= int(ys.max() - ys.min() + 1) <= 13
    kp[..., 2] = 0.0
    assert not lip_pixels(kp, 100, 100).any()


def test_vae_mouth_weight_changes_the_loss_and_not_its_scale(dataset, tmp_path):
    raw = json.loads(open(RECIPE).read())
    raw["stages"][0]["crop"] = 32
    raw["stages"][0]["face_crops"] = 1.0
    plain = _trainer(dataset, tmp_path / "p", raw)
    raw["stages"][0]["mouth_weight"] = 20.0
    weighted = _trainer(dataset, tmp_path / "w", raw)
    assert plain.recipe.mouth_weight_of(plain.recipe.stages[0]) == 0.0  # VAE stages: none by default
    assert weighted.recipe.mouth_weight_of(weighted.recipe.stages[0]) == 20.0
    assert weighted.recipe.mouth_weight_of(weighted.recipe.stages[1]) == weighted.recipe.mouth_weight
    from models.data.dataset import WindowDataset

    ds = WindowDataset([str(dataset)], num_frames=5, batch_size=2, seed=0, infinite=False)
    batch = ds.make_batch(ds.epoch_plan(0)[0], 0)
    weighted.model.load_state_dict(plain.model.state_dict())
    stage_p, stage_w = plain.recipe.stages[0], weighted.recipe.stages[0]
    plain._wrap(stage_p)
    weighted._wrap(stage_w)
    torch.manual_seed(0)
    a = plain.vae_step(stage_p, batch)
    torch.manual_seed(0)
    b = weighted.vae_step(stage_w, batch)
    assert a["psnr"] == pytest.approx(b["psnr"], abs=1e-6)  # same crops (same seed), same reconstruction
    assert a["loss"] != pytest.approx(b["loss"], rel=1e-4)
    assert 0.2 < b["loss"] / a["loss"] < 5.0


def test_bad_fine_tuning_keys_are_named():
    raw = json.loads(open(RECIPE).read())
    for key, value, match in [("face_crops", 1.5, "face_crops"), ("face_crops", 0.5, "needs 'crop'"),
                              ("mouth_weight", -1, "mouth_weight"), ("motion_noise", 0.2, "motion_noise.*dit"),
                              ("motion_noise", "x", "motion_noise")]:
        bad = json.loads(json.dumps(raw))
        bad["stages"][0][key] = value
        with pytest.raises(UserError, match=rf"stages\[0\].*{match}"):
            parse_recipe(bad, "r.json")


def test_init_starts_a_run_from_a_model_folder(dataset, tmp_path, tiny_model):
    from models.checkpoint import save_model
    from models.cli import main
    from models.training.trainer import Trainer

    save_model(tiny_model, tmp_path / "model")
    r = parse_recipe(json.loads(open(RECIPE).read()), "r.json")
    t = Trainer(r, [str(dataset)], tmp_path / "run", device="cpu", log=lambda s: None, init=tmp_path / "model")
    for k, v in tiny_model.state_dict().items():
        assert torch.equal(t.model.state_dict()[k], v.float()), k
    for k, v in t.ema.shadow.items():
        assert torch.equal(v, t.model.transformer.state_dict()[k].float()), k
    t.max_steps = 2
    t.train()
    assert Trainer(r, [str(dataset)], tmp_path / "run", device="cpu", resume=True, log=lambda s: None).init == str(
        tmp_path / "model")
    with pytest.raises(UserError, match="--init.*--resume|--resume.*--init"):
        Trainer(r, [str(dataset)], tmp_path / "run", device="cpu", resume=True, init=tmp_path / "model")
    # A model of another preset is refused, naming what differs.
    raw = json.loads(open(RECIPE).read())
    raw["preset"] = "toon-s"
    with pytest.raises(UserError, match=r"model.*dit\.\w+|vae\.\w+"):
        Trainer(parse_recipe(raw, "r.json"), [str(dataset)], tmp_path / "other", device="cpu", init=tmp_path / "model")
    # The command line: a folder that is no model is named.
    code = main(["train", "--recipe", RECIPE, "--data", str(dataset), "--out", str(tmp_path / "x"),
                 "--init", str(tmp_path / "nowhere")])
    assert code != 0


def test_eval_reports_the_vae_ceiling(tiny_model):
    from models.pipeline import to_uint8
    from models.training.evaluate import vae_round_trip

    rng = np.random.default_rng(0)
    frames = (rng.random((40, 32, 48, 3)) * 255).astype(np.uint8)
    seg = tiny_model.config.sampling.segment_frames
    frames = frames[: seg + 2]
    out = vae_round_trip(tiny_model, frames)
    assert out.shape == (seg + 1, 32, 48, 3)  # seg + 2 frames: the 2 left over are cut to 1 + 4 * 0
    assert out.dtype == np.uint8
    x = torch.from_numpy(frames[:seg]).permute(3, 0, 1, 2)[None].float() / 127.5 - 1.0
    with torch.no_grad():
        direct = tiny_model.vae.decode(tiny_model.vae.encode(x))
    direct = to_uint8(direct)
    assert np.abs(out[:seg].astype(int) - direct.astype(int)).max() <= 1


def test_transformer_crops_centre_on_the_lip_cells(dataset, tmp_path):
    from models.training.trainer import _crop_each

    t = _trainer(dataset, tmp_path / "r")
    cells = torch.zeros(6, 3, 16, 20, dtype=torch.bool)
    cells[:, :, 12:14, 15:17] = True  # lips near the bottom-right corner
    cells[5] = False  # no lips: a random crop
    ys, xs = t._latent_crop_offsets(cells, 6, face_share=1.0)
    cropped = _crop_each(cells, ys, xs, 6)
    assert cropped.shape == (6, 3, 6, 6)
    assert cropped[:5].flatten(1).any(1).all()
    # A pose map in pixels crops at 8x the latent offsets and size and stays aligned.
    pose = cells.float().repeat_interleave(8, -1).repeat_interleave(8, -2)
    pc = _crop_each(pose, [y * 8 for y in ys], [x * 8 for x in xs], 48)
    assert torch.equal(pc[..., ::8, ::8].bool(), cropped)


def test_a_streamed_transformer_stage_trains_on_crops(dataset, tmp_path):
    from models.training.trainer import Trainer

    raw = json.loads(open(RECIPE).read())
    raw["stages"] = [dict(s, crop=32, face_crops=1.0) for s in raw["stages"] if s["kind"] == "dit"][:1]
    raw["stages"][0]["steps"] = 2
    raw["mouth_weight"] = 3.0
    t = Trainer(parse_recipe(raw, "r.json"), [str(dataset)], tmp_path / "s", device="cpu", log=lambda s: None)
    t.train()
    assert t.step == 2


def test_noisy_motion_moves_each_sample_along_the_flow_path():
    import torch

    from models.training.trainer import noisy_motion

    m = torch.randn(6, 4, 2, 3, 3)
    a = noisy_motion(m, 0.5, torch.Generator().manual_seed(0))
    b = noisy_motion(m, 0.5, torch.Generator().manual_seed(0))
    assert torch.equal(a, b)  # the trainer's generator: resumable
    gen = torch.Generator().manual_seed(0)
    sigma = torch.rand(6, generator=gen) * 0.5
    noise = torch.randn(m.shape, generator=gen)
    want = (1 - sigma.view(-1, 1, 1, 1, 1)) * m + sigma.view(-1, 1, 1, 1, 1) * noise
    assert torch.allclose(a, want)
    assert (sigma <= 0.5).all() and len(set(sigma.tolist())) == 6  # one level per sample, within the bound
    assert torch.equal(noisy_motion(m, 0.0, torch.Generator().manual_seed(0)), m)


def test_a_stage_with_motion_noise_parses():
    raw = json.loads(open(RECIPE).read())
    stage = parse_recipe(raw, "r.json").stages[-1]
    assert stage.motion_prob > 0 and stage.motion_noise == pytest.approx(0.3)


def test_cell_pixels_cover_the_frames_each_latent_frame_encodes():
    from models.training.trainer import _cell_pixels

    cells = torch.zeros(1, 3, 4, 4, dtype=torch.bool)
    cells[0, 0, 1, 2] = True
    cells[0, 2, 3, 0] = True
    px = _cell_pixels(cells, 8)
    assert px.shape == (1, 9, 32, 32)
    assert px[0, 0, 8:16, 16:24].all() and int(px[0, 0].sum()) == 64  # frame 0: latent frame 0 alone
    assert not px[0, 1:5].any()  # latent frame 1 (video frames 1-4) marks nothing
    assert px[0, 5:9, 24:32, 0:8].all() and int(px[0, 5:9].sum()) == 4 * 64


def test_lip_pixel_loss_reaches_the_transformer_only(dataset, tmp_path):
    from models.training.trainer import LIP_DECODE_CELLS

    t = _trainer(dataset, tmp_path / "r")
    c = t.config.vae.latent_channels
    b, f, h, w = 3, 3, 8, 8
    gen = torch.Generator().manual_seed(0)
    x0 = torch.randn(b, c, f, h, w, generator=gen)
    noise = torch.randn(b, c, f, h, w, generator=gen)
    tt = torch.tensor([0.3, 0.6, 0.9])
    xt = (1 - tt.view(-1, 1, 1, 1, 1)) * x0 + tt.view(-1, 1, 1, 1, 1) * noise
    cells = torch.zeros(b, f, h, w, dtype=torch.bool)
    cells[:, :, 5:7, 1:3] = True
    heard = torch.tensor([True, True, False])
    # The true velocity implies the true clean latents: nothing to learn.
    exact = t.lip_pixel_loss(noise - x0, xt, tt, x0, cells, heard)
    assert float(exact) == pytest.approx(0.0, abs=1e-6)
    pred = (noise - x0 + 0.5 * torch.randn(b, c, f, h, w, generator=gen)).requires_grad_(True)
    loss = t.lip_pixel_loss(pred, xt, tt, x0, cells, heard)
    assert float(loss.detach()) > 1e-4
    loss.backward()
    g = pred.grad.abs().sum((1, 2))  # (b, h, w)
    assert g[2].sum() == 0  # a sample without its audio does not count
    assert g[:2].sum() > 0
    # Only latents inside the decoded square get a gradient: lips in columns 1-2 -> columns 0-5.
    assert LIP_DECODE_CELLS == 6
    assert g[:2, :, :6].sum() > 0 and g[:2, :, 6:].sum() == 0
    assert all(p.grad is None for p in t.model.vae.parameters())
    assert all(p.requires_grad for p in t.model.vae.parameters())  # the VAE's flags are restored
    # Nobody hears the audio, or no lips in the crop: no loss.
    assert t.lip_pixel_loss(pred, xt, tt, x0, cells, torch.zeros(b, dtype=torch.bool)) is None
    assert t.lip_pixel_loss(pred, xt, tt, x0, torch.zeros_like(cells), heard) is None


def test_a_stage_with_the_lip_pixel_loss_trains_and_logs_it(dataset, tmp_path):
    from models.training.trainer import Trainer

    raw = json.loads(open(RECIPE).read())
    raw["stages"] = [dict(s, crop=32, face_crops=1.0, lip_pixel_weight=5.0, steps=2, keep={"audio": 1.0})
                     for s in raw["stages"] if s["kind"] == "dit"][:1]
    raw["log_every"] = 1
    t = Trainer(parse_recipe(raw, "r.json"), [str(dataset)], tmp_path / "s", device="cpu", log=lambda s: None)
    t.train()
    logged = [json.loads(line) for line in (tmp_path / "s" / "log.jsonl").read_text().splitlines()]
    assert len(logged) == 2 and all(d["lip_px"] > 0 for d in logged)


@pytest.mark.parametrize("value, match", [(-1, "must be a number >= 0"), ("x", "must be a number >= 0"),
                                          (2.0, "dit' stages only")])
def test_bad_lip_pixel_weight_is_named(value, match):
    raw = json.loads(open(RECIPE).read())
    assert raw["stages"][0]["kind"] == "vae"
    raw["stages"][0]["lip_pixel_weight"] = value
    with pytest.raises(UserError, match=rf"stages\[0\].*lip_pixel_weight.*{match}"):
        parse_recipe(raw, "r.json")


def test_the_audio_path_trains_at_its_own_rate_and_resumes_exactly(dataset, tmp_path):
    """audio_lr_mult puts the audio path in its own optimiser group at lr x mult; the other weights keep
    the stage's rate; a run stopped and resumed in that stage ends where the straight run does."""
    from models.training.trainer import Trainer

    raw = json.loads(open(RECIPE).read())
    raw["stages"] = [dict(s, steps=4, audio_lr_mult=8.0, keep={"audio": 1.0})
                     for s in raw["stages"] if s["kind"] == "dit"][:1]
    r = parse_recipe(raw, "r.json")
    straight = Trainer(r, [str(dataset)], tmp_path / "a", device="cpu", log=lambda s: None)
    straight.train()
    groups = straight.optimizer.param_groups
    assert [g["lr_mult"] for g in groups] == [1.0, 8.0]
    assert groups[1]["lr"] == pytest.approx(8.0 * groups[0]["lr"])
    audio = {id(p) for p in straight.model.transformer.audio_path_parameters()}
    assert {id(p) for p in groups[1]["params"]} == audio
    assert not audio & {id(p) for p in groups[0]["params"]}
    named = dict(straight.model.transformer.named_parameters())
    assert {id(named[n]) for n in named if "audio" in n} == audio

    half = Trainer(r, [str(dataset)], tmp_path / "b", device="cpu", log=lambda s: None, max_steps=2)
    half.train()
    resumed = Trainer(r, [str(dataset)], tmp_path / "b", device="cpu", resume=True, log=lambda s: None)
    resumed.train()
    for k, v in straight.model.transformer.state_dict().items():
        assert torch.equal(v, resumed.model.transformer.state_dict()[k]), k


def test_without_a_multiplier_one_group_trains_everything(dataset, tmp_path):
    raw = json.loads(open(RECIPE).read())
    stage = [s for s in raw["stages"] if s["kind"] == "dit"][0]
    t = _trainer(dataset, tmp_path, raw)
    groups = t._param_groups(parse_recipe(dict(raw, stages=[stage]), "r.json").stages[0])
    assert len(groups) == 1 and groups[0]["lr_mult"] == 1.0
    assert len(groups[0]["params"]) == len(list(t.model.transformer.parameters()))


@pytest.mark.parametrize("kind, value, match", [("dit", 0, "factor in"), ("dit", "x", "factor in"),
                                                ("dit", 1000, "factor in"), ("vae", 4.0, "dit' stages only")])
def test_bad_audio_lr_mult_is_named(kind, value, match):
    raw = json.loads(open(RECIPE).read())
    i = next(i for i, s in enumerate(raw["stages"]) if s["kind"] == kind)
    raw["stages"][i]["audio_lr_mult"] = value
    with pytest.raises(UserError, match=rf"stages\[{i}\].*audio_lr_mult.*{match}"):
        parse_recipe(raw, "r.json")


def test_anchored_motion_moves_each_sample_toward_the_still():
    import torch

    from models.training.trainer import anchored_motion

    m, s = torch.randn(6, 4, 2, 3, 3), torch.randn(6, 4, 2, 3, 3)
    a = anchored_motion(m, s, 0.7, torch.Generator().manual_seed(0))
    assert torch.equal(a, anchored_motion(m, s, 0.7, torch.Generator().manual_seed(0)))  # resumable
    share = torch.rand(6, generator=torch.Generator().manual_seed(0)) * 0.7
    want = s + (1 - share.view(-1, 1, 1, 1, 1)) * (m - s)
    assert torch.allclose(a, want)
    assert (share <= 0.7).all() and len(set(share.tolist())) == 6  # one share per sample, within the bound
    assert torch.allclose(anchored_motion(m, s, 0.0, torch.Generator().manual_seed(0)), m, atol=1e-6)
