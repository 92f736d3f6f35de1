import pytest
import torch

from models.conditions.text import tokenize
from models.dit import Conditions, OmniHumanTransformer, audio_window_indices, pool_to_latent_frames
from tests.conftest import randomize_


@pytest.fixture
def setup(tiny_config):
    torch.manual_seed(0)
    cfg = tiny_config.dit
    tr = OmniHumanTransformer(cfg).eval()
    b, frames, h, w = 2, 3, 8, 6
    tv = 1 + 4 * (frames - 1)
    tok, mask = tokenize(["a toon waves", ""], cfg.text_max_len)
    cond = Conditions(
        reference=torch.randn(b, cfg.latent_channels, 1, h, w),
        motion=torch.randn(b, cfg.latent_channels, 2, h, w),
        text_tokens=tok, text_mask=mask,
        audio=torch.randn(b, tv, cfg.audio_feature_dim),
        pose=torch.rand(b, cfg.pose_in_channels, tv, 8 * h, 8 * w),
    )
    x = torch.randn(b, cfg.latent_channels, frames, h, w)
    t = torch.tensor([0.3, 0.8])
    return tr, cond, x, t, frames


@torch.no_grad()
def test_shapes_and_zero_init_output(setup):
    tr, cond, x, t, frames = setup
    out = tr(x, t, tr.prepare(cond, frames))
    assert out.shape == x.shape
    assert torch.count_nonzero(out) == 0  # adaLN-Zero + zero final layer: starts at exactly zero


@torch.no_grad()
def test_every_condition_may_be_absent(setup):
    tr, cond, x, t, frames = setup
    randomize_(tr)
    bare = Conditions(reference=cond.reference)
    out = tr(x, t, tr.prepare(bare, frames))
    assert out.shape == x.shape and torch.isfinite(out).all()
    full = tr(x, t, tr.prepare(cond, frames))
    assert not torch.allclose(out, full)


@torch.no_grad()
def test_zero_initialised_pose_and_audio_paths_leave_output_unchanged(setup):
    tr, cond, x, t, frames = setup
    randomize_(tr, skip=tuple(tr.zero_initialised()))
    base = tr(x, t, tr.prepare(cond, frames))
    assert base.abs().mean() > 1e-3  # not trivially zero
    other = Conditions(**{**cond.__dict__, "audio": torch.randn_like(cond.audio), "pose": torch.rand_like(cond.pose)})
    assert torch.allclose(tr(x, t, tr.prepare(other, frames)), base, atol=1e-5)
    # ...and once those layers are trained (non-zero), audio and pose matter.
    randomize_(tr, seed=1)
    a = tr(x, t, tr.prepare(cond, frames))
    b = tr(x, t, tr.prepare(other, frames))
    assert not torch.allclose(a, b, atol=1e-4)


def test_audio_window_indices():
    idx = audio_window_indices(frames=3, video_frames=9, context=2)
    assert idx.shape == (3, 8)
    assert sorted(int(i) for i in idx[0] if i >= 0) == [0, 1, 2]
    assert sorted(int(i) for i in idx[1] if i >= 0) == [0, 1, 2, 3, 4, 5, 6]  # frames 1-4 +- 2
    assert sorted(int(i) for i in idx[2] if i >= 0) == [3, 4, 5, 6, 7, 8]  # frames 5-8 +- 2, clipped


@torch.no_grad()
def test_audio_locality_in_cross_attention(setup):
    """Changing the audio of video frame j changes a block's audio cross-attention output only for
    the latent frames whose window contains j."""
    tr, cond, x, t, frames = setup
    randomize_(tr)
    block = tr.blocks[0]
    tv = cond.audio.shape[1]
    idx = audio_window_indices(frames, tv, tr.cfg.audio_context)
    q = torch.randn(2, frames, 12, tr.cfg.width)
    base = block.audio_attn(q, tr.prepare(cond, frames).audio)
    for j in range(tv):
        audio = cond.audio.clone()
        audio[:, j] += 3.0
        out = block.audio_attn(q, tr.prepare(Conditions(**{**cond.__dict__, "audio": audio}), frames).audio)
        changed = (out - base).abs().amax(dim=(0, 2, 3)) > 1e-6
        expected = torch.tensor([bool((idx[f] == j).any()) for f in range(frames)])
        assert torch.equal(changed, expected), (j, changed, expected)


@torch.no_grad()
def test_per_sample_switches(setup):
    """audio_keep / text_keep / pose_keep switch a condition off for one sample only."""
    tr, cond, x, t, frames = setup
    randomize_(tr)
    on = tr(x, t, tr.prepare(cond, frames))
    keep = torch.tensor([True, False])
    for name in ("audio_keep", "pose_keep", "text_keep"):
        c = Conditions(**{**cond.__dict__, name: keep})
        out = tr(x, t, tr.prepare(c, frames))
        assert torch.allclose(out[0], on[0], atol=1e-5), name
        if name != "text_keep":  # sample 1 has no text anyway
            assert not torch.allclose(out[1], on[1], atol=1e-5), name


def test_pose_pooling_grouping():
    x = torch.arange(9.0).view(1, 1, 9, 1, 1)
    assert pool_to_latent_frames(x).flatten().tolist() == [0.0, 2.5, 6.5]


def test_gradient_checkpointing_matches(setup):
    tr, cond, x, t, frames = setup
    randomize_(tr)
    tr.train()
    out1 = tr(x, t, tr.prepare(cond, frames))
    g1 = torch.autograd.grad(out1.pow(2).sum(), tr.blocks[0].vis.qkv.weight)[0]
    tr.gradient_checkpointing = True
    out2 = tr(x, t, tr.prepare(cond, frames))
    g2 = torch.autograd.grad(out2.pow(2).sum(), tr.blocks[0].vis.qkv.weight)[0]
    assert torch.allclose(out1, out2, atol=1e-5) and torch.allclose(g1, g2, atol=1e-4)


@torch.no_grad()
def test_any_aspect_ratio(setup):
    tr, cond, x, t, frames = setup
    randomize_(tr)
    for h, w in ((4, 10), (10, 4)):
        c = Conditions(reference=torch.randn(1, tr.cfg.latent_channels, 1, h, w))
        out = tr(torch.randn(1, tr.cfg.latent_channels, 2, h, w), torch.tensor([0.5]), tr.prepare(c, 2))
        assert out.shape == (1, tr.cfg.latent_channels, 2, h, w)
