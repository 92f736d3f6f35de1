import torch

from models.dit import visual_positions
from models.rope import apply_rope, axis_dims, rope_frequencies


def test_axis_dims_sum():
    for d in (16, 32, 64, 128):
        t, h, w = axis_dims(d)
        assert t + h + w == d and t % 2 == h % 2 == w % 2 == 0


def test_reference_tokens_temporal_identity_and_shared_spatial():
    hp, wp, head_dim = 3, 4, 32
    pos = visual_positions(n_motion=2, frames=3, hp=hp, wp=wp, reserved_motion=2)
    per = hp * wp
    ref, noisy = pos[:per], pos[3 * per : 4 * per]  # reference, then the first noisy frame
    assert (ref[:, 0] == 0).all()
    assert (ref[:, 1:] == noisy[:, 1:]).all()
    assert (pos[per : 3 * per, 0] > 0).all()  # motion frames never at the reference's index
    fr_ref = rope_frequencies(ref, head_dim)
    fr_noisy = rope_frequencies(noisy, head_dim)
    dt, _, _ = axis_dims(head_dim)
    # temporal band of the reference: cos 1, sin 0 (identity)
    assert torch.allclose(fr_ref[:, : dt // 2, 0], torch.ones(per, dt // 2))
    assert torch.allclose(fr_ref[:, : dt // 2, 1], torch.zeros(per, dt // 2))
    # spatial bands equal those of video tokens at the same (h, w)
    assert torch.allclose(fr_ref[:, dt // 2 :], fr_noisy[:, dt // 2 :])
    # and the temporal band of the video tokens is not the identity
    assert not torch.allclose(fr_noisy[:, : dt // 2, 0], torch.ones(per, dt // 2))


def test_noisy_positions_do_not_depend_on_motion_presence():
    a = visual_positions(n_motion=0, frames=2, hp=2, wp=2, reserved_motion=2)
    b = visual_positions(n_motion=2, frames=2, hp=2, wp=2, reserved_motion=2)
    assert torch.equal(a[4:], b[12:])


def test_rope_is_relative():
    """q.k after rotation depends only on the position difference."""
    torch.manual_seed(0)
    q, k = torch.randn(1, 1, 1, 32), torch.randn(1, 1, 1, 32)

    def dot(pq, pk):
        fq = rope_frequencies(torch.tensor([pq]), 32)[None]
        fk = rope_frequencies(torch.tensor([pk]), 32)[None]
        return (apply_rope(q, fq) * apply_rope(k, fk)).sum()

    assert torch.allclose(dot([3, 1, 2], [1, 0, 0]), dot([5, 4, 7], [3, 3, 5]), atol=1e-5)
    assert not torch.allclose(dot([3, 1, 2], [1, 0, 0]), dot([3, 1, 2], [1, 1, 0]), atol=1e-3)
