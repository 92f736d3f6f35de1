import math

import pytest
import torch

from models.errors import GenerationCancelled
from models.flow import (
    Guidance,
    annealed_scale,
    combine_guidance,
    euler_sample,
    flow_loss,
    guided_velocity,
    interpolate,
    sample_timesteps,
    sampling_schedule,
    shift_for_tokens,
    shift_time,
    velocity_target,
)


def test_path_endpoints_and_target():
    x0, e = torch.randn(2, 3), torch.randn(2, 3)
    assert torch.allclose(interpolate(x0, e, torch.zeros(2)), x0)
    assert torch.allclose(interpolate(x0, e, torch.ones(2)), e)
    t = torch.tensor([0.3, 0.6])
    d = 1e-3
    fd = (interpolate(x0, e, t + d) - interpolate(x0, e, t)) / d
    assert torch.allclose(fd, velocity_target(x0, e), atol=1e-3)
    assert torch.allclose(flow_loss(velocity_target(x0, e), x0, e), torch.zeros(2))


def test_timestep_sampling_range_and_shift():
    g = torch.Generator().manual_seed(0)
    t1 = sample_timesteps(20000, 1.0, generator=g)
    assert 0 < t1.min() and t1.max() < 1 and abs(t1.mean() - 0.5) < 0.02
    t3 = sample_timesteps(20000, 3.0, generator=torch.Generator().manual_seed(0))
    assert t3.mean() > t1.mean() + 0.1  # shifted toward noise
    assert shift_for_tokens(100) < shift_for_tokens(2000) < shift_for_tokens(10**6) == 3.0
    assert shift_time(0.0, 3.0) == 0 and shift_time(1.0, 3.0) == 1


def test_schedule_monotone_from_one_to_zero():
    s = sampling_schedule(10, 2.0)
    assert s[0] == 1.0 and s[-1] == 0.0 and all(a > b for a, b in zip(s, s[1:], strict=False))


@pytest.mark.parametrize("schedule", ["none", "linear", "cosine"])
def test_annealing_endpoints(schedule):
    steps, start, strength = 20, 5.0, 0.75
    first = annealed_scale(start, strength, schedule, 0, steps)
    last = annealed_scale(start, strength, schedule, steps - 1, steps)
    assert first == pytest.approx(start)
    if schedule == "none":
        assert last == pytest.approx(start)
    else:
        assert last == pytest.approx(1 + (start - 1) * (1 - strength))
        vals = [annealed_scale(start, strength, schedule, i, steps) for i in range(steps)]
        assert all(a >= b for a, b in zip(vals, vals[1:], strict=False))
    with pytest.raises(ValueError, match="annealing"):
        annealed_scale(start, strength, "exp", 0, steps)


def _branch_model(x, t, branches):
    """A model whose three branches differ in known ways (text adds 1, audio adds 10*x)."""
    outs = []
    for xi, (txt, aud) in zip(x.chunk(len(branches)), branches, strict=True):
        outs.append(xi * 0.5 + (1.0 if txt else 0.0) + (10.0 * xi if aud else 0.0))
    return torch.cat(outs)


def test_guidance_equals_branches_combined_by_hand():
    x = torch.randn(2, 4)
    t = torch.full((2,), 0.5)
    u = _branch_model(x, t, [(False, False)])
    ct = _branch_model(x, t, [(True, False)])
    cta = _branch_model(x, t, [(True, True)])
    for st, sa in ((3.0, 4.5), (1.0, 4.5), (3.0, 1.0), (1.0, 1.0)):
        got = guided_velocity(_branch_model, x, t, st, sa, has_text=True, has_audio=True)
        assert torch.allclose(got, combine_guidance(u, ct, cta, st, sa), atol=1e-6), (st, sa)


def test_guidance_one_batched_call():
    calls = []

    def model(x, t, branches):
        calls.append(len(branches))
        return _branch_model(x, t, branches)

    guided_velocity(model, torch.randn(1, 4), torch.ones(1), 3.0, 4.0, True, True)
    assert calls == [3]
    calls.clear()
    guided_velocity(model, torch.randn(1, 4), torch.ones(1), 3.0, 4.0, False, True)  # no text
    assert calls == [2]


def test_euler_reproduces_closed_form_flow():
    """For data at a point mass x0, the exact velocity at x_t is (x_t - x0) / t; Euler on any
    schedule then lands exactly on x0 (the flow is straight)."""
    x0 = torch.tensor([[1.5, -2.0, 0.25]])

    def model(x, t, branches):
        return (x - x0.repeat(len(branches), 1)) / t[:, None]

    noise = torch.randn(1, 3, generator=torch.Generator().manual_seed(0))
    out = euler_sample(model, noise, steps=7, shift=3.0, guidance=Guidance(), has_text=False, has_audio=False)
    assert torch.allclose(out, x0, atol=1e-5)


def test_euler_gaussian_data_closed_form():
    """Data N(0, s^2): the exact velocity field is known; with many steps the sample variance
    matches s^2."""
    s = 0.5

    def model(x, t, branches):
        tt = t[:, None]
        var = (1 - tt) ** 2 * s**2 + tt**2
        # E[e - x0 | x_t] for Gaussian data, linear in x_t
        return x * (tt - (1 - tt) * s**2) / var

    noise = torch.randn(20000, 1, generator=torch.Generator().manual_seed(0))
    out = euler_sample(model, noise, steps=200, shift=1.0, guidance=Guidance(), has_text=False, has_audio=False)
    assert math.isclose(out.std().item(), s, rel_tol=0.03)


def test_cancel_within_one_step():
    steps_done = []
    calls = {"n": 0}

    def model(x, t, branches):
        calls["n"] += 1
        return torch.zeros_like(x)

    with pytest.raises(GenerationCancelled):
        euler_sample(model, torch.zeros(1, 2), steps=10, shift=1.0, guidance=Guidance(), has_text=False,
                     has_audio=False, on_step=lambda i, n: steps_done.append(i),
                     should_cancel=lambda: len(steps_done) >= 3)
    assert steps_done == [1, 2, 3] and calls["n"] == 3


def test_renoise_benchmark_integrates_from_t0_to_the_clean_latents():
    """benchmarks/audio_use.py --renoise starts the sampler at x_t0: with the exact velocity of the
    straight path the guided Euler sampler lands on x0 whatever t0, steps and guidance."""
    import importlib.util
    from pathlib import Path

    from models.flow import Guidance, euler_sample, interpolate

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "audio_use.py"
    spec = importlib.util.spec_from_file_location("audio_use", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    gen = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(1, 4, 3, 4, 4, generator=gen), torch.randn(1, 4, 3, 4, 4, generator=gen)
    seen = []

    def runner(x, t, branches):
        seen.extend(t.tolist())
        return (noise - x0).repeat(len(branches), 1, 1, 1, 1)

    for t0, steps in ((0.3, 3), (1.0, 10)):
        seen.clear()
        xt = interpolate(x0, noise, torch.tensor([t0]))
        out = euler_sample(mod._from_t0(runner, t0), xt, steps, 2.0, Guidance(text=3.0, audio=4.5), has_text=True,
                           has_audio=True)
        assert torch.allclose(out, x0, atol=1e-5)
        assert max(seen) == pytest.approx(t0) and min(seen) > 0  # the model sees the true times
