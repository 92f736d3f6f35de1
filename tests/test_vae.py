import pytest
import torch

from models.config import get_preset
from models.vae import CausalCache, CausalVAE


@pytest.fixture(scope="module")
def vae():
    torch.manual_seed(0)
    return CausalVAE(get_preset("tiny").vae).eval()


@torch.no_grad()
def test_shapes(vae):
    x = torch.randn(2, 3, 9, 32, 48)
    z = vae.encode(x)
    assert z.shape == (2, 4, 3, 4, 6)
    assert vae.decode(z).shape == (2, 3, 9, 32, 48)
    assert vae.encode(x[:, :, :1]).shape == (2, 4, 1, 4, 6)


@torch.no_grad()
def test_causal(vae):
    """Changing frame j leaves every latent frame before j's latent frame unchanged."""
    x = torch.randn(1, 3, 17, 32, 32)
    z = vae.encode(x)
    for j in (0, 1, 4, 5, 9, 16):
        x2 = x.clone()
        x2[:, :, j] += 1.0
        z2 = vae.encode(x2)
        lat = 0 if j == 0 else (j + 3) // 4
        assert torch.allclose(z2[:, :, :lat], z[:, :, :lat], atol=1e-5), j
        assert not torch.allclose(z2[:, :, lat], z[:, :, lat], atol=1e-4), j


@torch.no_grad()
def test_decoder_causal(vae):
    z = torch.randn(1, 4, 4, 4, 4)
    v = vae.decode(z)
    z2 = z.clone()
    z2[:, :, 2] += 1
    v2 = vae.decode(z2)
    assert torch.allclose(v[:, :, :5], v2[:, :, :5], atol=1e-5)  # frames of latents 0 and 1
    assert not torch.allclose(v[:, :, 5:9], v2[:, :, 5:9], atol=1e-4)


@torch.no_grad()
def test_chunked_equals_whole(vae):
    x = torch.randn(1, 3, 21, 32, 32)
    whole = vae.encode(x, chunk_latents=100)
    for n in (1, 2, 3):
        assert torch.allclose(vae.encode(x, chunk_latents=n), whole, atol=1e-5), n
    dec_whole = vae.decode(whole, chunk_latents=100)
    for n in (1, 2):
        assert torch.allclose(vae.decode(whole, chunk_latents=n), dec_whole, atol=1e-5), n
    streamed = torch.cat(list(vae.iter_decode(whole, chunk_latents=2)), dim=2)
    assert torch.allclose(streamed, dec_whole, atol=1e-5)


@torch.no_grad()
def test_cache_is_explicit(vae):
    """Two interleaved streams through one module do not disturb each other."""
    a, b = torch.randn(1, 3, 9, 16, 16), torch.randn(1, 3, 9, 16, 16)
    ca, cb = CausalCache(), CausalCache()
    parts_a, parts_b = [], []
    for sl in (slice(0, 1), slice(1, 5), slice(5, 9)):
        parts_a.append(vae.encode_moments(a[:, :, sl], ca)[0])
        parts_b.append(vae.encode_moments(b[:, :, sl], cb)[0])
    assert torch.allclose(torch.cat(parts_a, 2), vae.encode_moments(a)[0], atol=1e-5)
    assert torch.allclose(torch.cat(parts_b, 2), vae.encode_moments(b)[0], atol=1e-5)


def test_tiling_blends_to_the_whole_for_a_local_op():
    """Overlapping tiles, blended, reproduce a per-pixel operation exactly (partition of unity)."""
    from models.vae import _tiled

    z = torch.randn(1, 4, 2, 13, 21)
    up = lambda t: torch.nn.functional.interpolate(t.flatten(1, 2), scale_factor=8.0).unflatten(1, (4, 2))  # noqa: E731
    out = _tiled(z, tile=6, overlap=2, unit=1, scale=8, fn=up)
    assert torch.allclose(out, up(z), atol=1e-5)


@torch.no_grad()
def test_tiled_vae_shapes(vae):
    z = vae.encode(torch.randn(1, 3, 5, 96, 160), tile=64, overlap=16)
    assert z.shape == (1, 4, 2, 12, 20)
    assert vae.decode(z, tile=8, overlap=2).shape == (1, 3, 5, 96, 160)


def test_rejects_bad_frame_count(vae):
    with pytest.raises(ValueError, match="1 \\+ 4k"):
        vae.encode(torch.randn(1, 3, 6, 16, 16))


def test_training_forward_has_gradients(vae):
    x = torch.randn(1, 3, 5, 16, 16)
    rec, mean, logvar = vae(x)
    assert rec.shape == x.shape and mean.shape == (1, 4, 2, 2, 2)
    (rec.pow(2).mean() + mean.pow(2).mean()).backward()
    assert vae.encoder.conv_in.conv.weight.grad is not None


def test_causal_conv_skips_the_zero_padding_exactly():
    """The first chunk's zero frames are never multiplied, and the result is the zero-padded conv."""
    from models.vae import CausalCache, CausalConv3d

    torch.manual_seed(0)
    conv = CausalConv3d(4, 6)
    for t in (1, 2, 3, 5):
        x = torch.randn(2, 4, t, 7, 9)
        padded = conv.conv(torch.cat([x.new_zeros(2, 4, 2, 7, 9), x], dim=2))
        assert torch.allclose(conv(x, None), padded, atol=1e-6)
        cache = CausalCache()
        nxt = torch.randn(2, 4, 4, 7, 9)
        chunked = torch.cat([conv(x, cache), conv(nxt, cache)], dim=2)
        whole = conv.conv(torch.cat([x.new_zeros(2, 4, 2, 7, 9), x, nxt], dim=2))
        assert torch.allclose(chunked, whole, atol=1e-6)


def test_first_and_later_latent_frames_have_their_own_statistics():
    torch.manual_seed(0)
    vae = CausalVAE(get_preset("tiny").vae).eval()
    vae.latent_mean.fill_(0.5)
    vae.latent_std.fill_(2.0)
    vae.later_mean.fill_(-1.0)
    vae.later_std.fill_(0.25)
    z = torch.randn(1, vae.cfg.latent_channels, 3, 4, 4)
    n = vae.normalize(z)
    assert torch.allclose(n[:, :, 0], (z[:, :, 0] - 0.5) / 2.0)
    assert torch.allclose(n[:, :, 1:], (z[:, :, 1:] + 1.0) / 0.25)
    assert torch.allclose(vae.denormalize(n), z, atol=1e-6)


def test_models_saved_with_one_set_of_statistics_still_load():
    vae = CausalVAE(get_preset("tiny").vae)
    state = {k: v for k, v in vae.state_dict().items() if not k.startswith("later_")}
    state["latent_std"] = torch.full_like(state["latent_std"], 3.0)
    fresh = CausalVAE(get_preset("tiny").vae)
    fresh.load_state_dict(state, strict=True)
    assert torch.equal(fresh.later_std, fresh.latent_std) and float(fresh.later_std[0]) == 3.0
