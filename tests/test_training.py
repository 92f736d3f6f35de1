import json
from pathlib import Path

import pytest
import torch

from models.errors import UserError
from models.training.plan import draw_conditions
from models.training.recipe import load_recipe, lr_at, parse_recipe

RECIPE = "resources/recipes/tiny-test.json"


def _recipe(**over):
    raw = json.loads(open(RECIPE).read())
    raw.update(over)
    return parse_recipe(raw, "test-recipe.json")


def test_stage_plan_ratios_over_many_draws():
    r = load_recipe(RECIPE)
    g = torch.Generator().manual_seed(0)
    n = 40000
    ok = torch.ones(n, dtype=torch.bool)
    stage1, stage2, stage3 = r.stages[1], r.stages[2], r.stages[3]
    d1 = draw_conditions(stage1, ok, ok, ok, g)
    assert not d1.audio.any() and not d1.pose.any()
    assert abs(d1.text.float().mean() - 0.9) < 0.01 and abs(d1.reference.float().mean() - 0.7) < 0.01
    d2 = draw_conditions(stage2, ok, ok, ok, g)
    assert not d2.pose.any() and abs(d2.audio.float().mean() - 0.5) < 0.01
    d3 = draw_conditions(stage3, ok, ok, ok, g)
    assert abs(d3.pose.float().mean() - 0.25) < 0.01
    assert not (d3.pose & ~d3.audio).any()  # pose only among audio-bearing samples
    # Failing flags remove only their own condition.
    bad = torch.zeros(n, dtype=torch.bool)
    d = draw_conditions(stage3, bad, ok, ok, g)
    assert not d.audio.any() and abs(d.pose.float().mean() - 0.25) < 0.01 and d.text.float().mean() > 0.85
    d = draw_conditions(stage3, ok, bad, ok, g)
    assert not d.pose.any() and abs(d.audio.float().mean() - 0.5) < 0.01
    d = draw_conditions(stage3, ok, ok, bad, g)  # no caption: no text
    assert not d.text.any()


def test_bad_recipe_names_the_key(tmp_path):
    raw = json.loads(open(RECIPE).read())
    cases = [
        ({"preset": "huge"}, "preset"),
        ({"bogus": 1}, "bogus"),
    ]
    for over, key in cases:
        with pytest.raises(UserError, match=key):
            parse_recipe({**raw, **over}, "r.json")
    st = json.loads(json.dumps(raw))
    st["stages"][2]["keep"]["audio"] = 1.5
    with pytest.raises(UserError, match=r"stages\[2\].*keep.audio"):
        parse_recipe(st, "r.json")
    st = json.loads(json.dumps(raw))
    del st["stages"][0]["lr"]
    with pytest.raises(UserError, match=r"stages\[0\].*'lr'"):
        parse_recipe(st, "r.json")
    (tmp_path / "x.json").write_text("{nope")
    with pytest.raises(UserError, match="x.json: not valid JSON"):
        load_recipe(tmp_path / "x.json")
    with pytest.raises(UserError, match="not found"):
        load_recipe(tmp_path / "missing.json")


def test_lr_is_a_pure_function_of_the_step():
    s = load_recipe(RECIPE).stages[1]
    assert lr_at(s, 0, 0.1) == pytest.approx(s.lr / s.warmup)
    assert lr_at(s, s.steps, 0.1) == pytest.approx(0.1 * s.lr)
    assert lr_at(s, 1, 0.1) == lr_at(s, 1, 0.1)


def _state(trainer):
    return {k: v.clone() for k, v in trainer.model.state_dict().items()}


def test_resume_is_exact(dataset, tmp_path):
    """N steps == N/2 steps, stop, resume, N/2 steps (model, EMA, optimizer, data, RNG)."""
    from models.training.trainer import Trainer

    r = load_recipe(RECIPE)
    total = r.total_steps
    straight = Trainer(r, [str(dataset)], tmp_path / "a", device="cpu", log=lambda s: None)
    straight.train()
    half = Trainer(r, [str(dataset)], tmp_path / "b", device="cpu", log=lambda s: None, max_steps=total // 2 + 1)
    half.train()
    resumed = Trainer(r, [str(dataset)], tmp_path / "b", device="cpu", resume=True, log=lambda s: None)
    assert resumed.step == total // 2 + 1
    resumed.train()
    a, b = _state(straight), _state(resumed)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    for k in straight.ema.shadow:
        assert torch.equal(straight.ema.shadow[k], resumed.ema.shadow[k]), k


def test_resume_refuses_wrong_dirs(dataset, tmp_path):
    from models.training.trainer import Trainer

    r = load_recipe(RECIPE)
    with pytest.raises(UserError, match="nothing to resume"):
        Trainer(r, [str(dataset)], tmp_path / "none", device="cpu", resume=True)
    t = Trainer(r, [str(dataset)], tmp_path / "run", device="cpu", log=lambda s: None, max_steps=1)
    t.train()
    with pytest.raises(UserError, match="--resume"):
        Trainer(r, [str(dataset)], tmp_path / "run", device="cpu")


def test_loss_falls_on_a_tiny_overfit_run(dataset, tmp_path):
    """A few clips, one stage of audio-conditioned transformer training: the loss drops."""
    from models.training.trainer import Trainer

    r = _recipe(log_every=1, stages=[
        {"name": "audio", "kind": "dit", "steps": 30, "lr": 3e-3, "warmup": 3, "batch_size": 2,
         "keep": {"text": 1.0, "reference": 1.0, "audio": 1.0}},
    ])
    losses = []
    t = Trainer(r, [str(dataset)], tmp_path / "o", device="cpu", log=lambda s: None)
    t.train()
    for line in (tmp_path / "o" / "log.jsonl").read_text().splitlines():
        losses.append(json.loads(line)["loss"])
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.8 * first, (first, last)


def test_train_cli_and_export(dataset, tmp_path):
    from models.checkpoint import load_model
    from models.cli import main

    assert main(["train", "--recipe", RECIPE, "--data", str(dataset), "--out", str(tmp_path / "r"),
                 "--export", str(tmp_path / "m")]) == 0
    m = load_model(tmp_path / "m")
    assert m.config.name == "tiny"
    assert "tiny" in (tmp_path / "m" / "MODEL_CARD.md").read_text()
    assert main(["train", "--recipe", RECIPE, "--data", str(tmp_path), "--out", str(tmp_path / "r2")]) == 2


def test_torchrun_two_processes(dataset, tmp_path):
    """The same script under torchrun: DDP over two CPU processes (gloo), ranks stay in sync."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "main.py", "train",
         "--recipe", RECIPE, "--data", str(dataset), "--out", str(tmp_path / "ddp"), "--max-steps", "7"],
        cwd=root, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 ranks hold identical weights after step 7" in proc.stderr
    state = json.loads((tmp_path / "ddp" / "checkpoint" / "state.json").read_text())
    assert state["step"] == 7


def test_scale_recipe_keeps_proportions_and_fills_the_budget():
    import dataclasses

    from models.training.fit import StageTiming, recipe_to_json, scale_recipe

    r = load_recipe(RECIPE)  # steps 4, 2, 2, 2
    timings = [StageTiming("vae", 0.5, 3), StageTiming("text", 0.1, 3), StageTiming("audio", 0.2, 3),
               StageTiming("pose", 0.25, 3)]
    planned = 4 * 0.5 + 2 * 0.1 + 2 * 0.2 + 2 * 0.25  # 3.1 s
    fitted = scale_recipe(r, timings, 310.0)  # 100x the time
    assert [s.steps for s in fitted.stages] == [400, 200, 200, 200]
    assert [s.warmup for s in fitted.stages] == [80, 40, 40, 40]  # scaled, at most a fifth of the stage
    seconds = sum(s.steps * t.seconds_per_step for s, t in zip(fitted.stages, timings, strict=True))
    assert seconds == pytest.approx(100 * planned) and seconds <= 310.0
    assert [s.keep for s in fitted.stages] == [s.keep for s in r.stages]
    # The written recipe reads back to the same plan.
    again = parse_recipe(json.loads(json.dumps(recipe_to_json(fitted, "fitted"))), "fitted.json")
    assert again == dataclasses.replace(fitted, name=again.name)
    tiny = scale_recipe(r, timings, 0.01)  # a tiny budget still runs every stage once
    assert all(s.steps == 1 for s in tiny.stages)


def test_fit_recipe_cli_times_real_steps(dataset, tmp_path):
    from models.cli import main

    out = tmp_path / "fitted.json"
    assert main(["fit-recipe", "--recipe", RECIPE, "--data", str(dataset), "--minutes", "0.05", "--out", str(out),
                 "--device", "cpu", "--timed-steps", "1"]) == 0
    fitted = load_recipe(out)
    assert "fitted to 0.05 min" in json.loads(out.read_text())["comment"]
    assert [s.name for s in fitted.stages] == ["vae", "text", "audio", "pose"]
    assert all(s.steps >= 1 for s in fitted.stages)
    assert main(["fit-recipe", "--recipe", RECIPE, "--data", str(dataset), "--minutes", "0", "--out", str(out)]) == 2


def test_time_limit_stops_with_a_resumable_checkpoint(dataset, tmp_path):
    from models.training.trainer import Trainer

    r = load_recipe(RECIPE)
    t = Trainer(r, [str(dataset)], tmp_path / "t", device="cpu", log=lambda s: None, max_minutes=0.0)
    t.train()  # the limit is reached after the first step
    assert t.step == 1
    again = Trainer(r, [str(dataset)], tmp_path / "t", device="cpu", resume=True, log=lambda s: None)
    assert again.step == 1


def test_fit_recipe_end_by_counts_the_timing(dataset, tmp_path):
    import time

    from models.cli import main

    out = tmp_path / "fitted.json"
    assert main(["fit-recipe", "--recipe", RECIPE, "--data", str(dataset), "--end-by", str(time.time() - 1),
                 "--out", str(out), "--device", "cpu", "--timed-steps", "1"]) == 2  # already past
    assert main(["fit-recipe", "--recipe", RECIPE, "--data", str(dataset), "--end-by", str(time.time() + 600),
                 "--out", str(out), "--device", "cpu", "--timed-steps", "1"]) == 0
    comment = json.loads(out.read_text())["comment"]
    minutes = float(comment.split("fitted to ")[1].split(" min")[0])
    assert 5.0 < minutes < 10.0  # the 10 minutes less the time the timing took (long on a busy machine)


@pytest.mark.parametrize("path", sorted([*Path("resources/recipes").glob("*.json"),
                                             *Path("docs/experiments/recipes").glob("*.json")]), ids=lambda p: p.stem)
def test_every_shipped_recipe_parses(path):
    r = load_recipe(str(path))
    assert r.total_steps > 0 and r.stages
