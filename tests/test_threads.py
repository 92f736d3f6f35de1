"""The CPU thread policy: threads = free cores, passive OpenMP waiting, set before torch loads."""

import subprocess
import sys
from pathlib import Path

import pytest

from models.threads import CpuLoadMeter, ThreadGovernor, threads_for

ROOT = Path(__file__).resolve().parent.parent


def test_threads_for_free_cores():
    assert threads_for(2, 0.0) == 2
    assert threads_for(2, None) == 2  # unknown load: all cores
    assert threads_for(2, 0.2) == 2  # a browser idling takes no core
    assert threads_for(2, 0.6) == 1  # a busy loop sharing our threads' cores shows as ~0.5-1
    assert threads_for(2, 1.0) == 1
    assert threads_for(2, 2.0) == 1  # never below one
    assert threads_for(8, 3.0) == 5
    assert threads_for(2, 0.0, reserve=1) == 1  # the app keeps a core for its UI and live preview
    assert threads_for(16, 1.0, reserve=1) == 14


def test_main_keeps_openmps_own_wait_policy_and_imports_no_torch_first():
    code = ("import os, sys\nimport main\ntry:\n    main.main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(os.environ.get('OMP_WAIT_POLICY'))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={k: v for k, v in __import__("os").environ.items() if k != "OMP_WAIT_POLICY"})
    assert out.stdout.strip().splitlines()[-1] == "None"  # passive waits measured slower alone (threads.py)
    assert "import torch" not in (ROOT / "main.py").read_text().split("def main")[0]


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def _stat(path, busy_ticks, idle_ticks=0):
    # user nice system idle iowait irq softirq steal; 100 ticks per second
    path.write_text(f"cpu  {busy_ticks} 0 0 {idle_ticks} 0 0 0 0 0 0\ncpu0 0 0 0 0\n")


def test_meter_counts_other_processes_only(tmp_path):
    stat = tmp_path / "stat"
    clock, own = FakeClock(), {"cpu": 0.0}
    _stat(stat, 0)
    m = CpuLoadMeter(str(stat), own_cpu=lambda: own["cpu"], clock=clock)
    m.tick = 100.0
    clock.t, own["cpu"] = 1.0, 1.0  # one second: we used one core, the machine two
    _stat(stat, 200)
    assert m.sample() == pytest.approx(1.0)
    clock.t, own["cpu"] = 2.0, 2.0  # we used a core, nobody else did
    _stat(stat, 300)
    assert m.sample() == pytest.approx(0.0)
    assert CpuLoadMeter(str(tmp_path / "missing")).sample() is None


def test_governor_follows_a_competitor_that_comes_and_goes(tmp_path):
    stat = tmp_path / "stat"
    clock, own, busy = FakeClock(), {"cpu": 0.0}, {"ticks": 0}
    _stat(stat, 0)
    meter = CpuLoadMeter(str(stat), own_cpu=lambda: own["cpu"], clock=clock)
    meter.tick = 100.0
    set_to, logs = [], []
    gov = ThreadGovernor(cores=2, meter=meter, set_threads=set_to.append, log=logs.append, interval=1.0)

    def advance(seconds, own_cores, other_cores):
        clock.t += seconds
        own["cpu"] += seconds * own_cores
        busy["ticks"] += round(100 * seconds * (own_cores + other_cores))
        _stat(stat, busy["ticks"])

    advance(1.0, 1.0, 0.0)  # model loading, alone
    assert gov.apply() == 2 and set_to == [2]
    advance(0.5, 2.0, 0.0)
    assert gov.tick() == 2 and len(gov.history) == 1  # within the interval: no new decision
    advance(1.0, 1.4, 0.6)  # a busy loop starts; it gets ~0.6 of a core beside our two threads
    assert gov.tick() == 1 and set_to == [2, 1]
    advance(2.0, 1.0, 1.0)
    assert gov.tick() == 1 and set_to == [2, 1]
    advance(1.5, 1.0, 0.0)  # it stopped
    assert gov.tick() == 2 and set_to == [2, 1, 2]
    # the second decision averaged the busy loop's 0.6 over the 1.5 s since the first: 0.4
    assert logs[0].startswith("cpu: 2 threads for 2 cores") and "other processes use 0.4" in logs[1]


def test_governor_sets_torch_threads_and_the_app_reserves_a_core():
    import torch

    before = torch.get_num_threads()
    try:
        gov = ThreadGovernor(reserve=1, cores=2)
        assert gov.apply() == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_benchmark_runs_at_a_tiny_size(capsys):
    from benchmarks import threads

    assert threads.main(["--random-init", "tiny", "--segments", "1", "--steps", "1", "--policies", "governor",
                         "--busy-nice", "19"]) == 0
    out = capsys.readouterr().out
    assert "busy/alone" in out and "governor" in out and "random tiny" in out


def test_native_bf16_is_read_from_the_cpu_flags(tmp_path):
    from models.threads import cpu_has_native_bf16

    avx2 = tmp_path / "avx2"
    avx2.write_text("processor\t: 0\nflags\t\t: fpu sse sse2 avx avx2 fma f16c\n")
    zen4 = tmp_path / "zen4"
    zen4.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16\n")
    assert not cpu_has_native_bf16(str(avx2))
    assert cpu_has_native_bf16(str(zen4))
    assert not cpu_has_native_bf16(str(tmp_path / "missing"))


def test_a_bf16_recipe_trains_in_float32_on_a_cpu_without_bf16(monkeypatch, tmp_path):
    import json

    from models.training import trainer as tr
    from models.training.recipe import parse_recipe

    raw = json.loads(open("resources/recipes/tiny-test.json").read())
    raw["precision"] = "bf16"
    recipe = parse_recipe(raw, "bf16.json")
    said = []
    monkeypatch.setattr(tr, "cpu_has_native_bf16", lambda: False)
    assert not tr.Trainer(recipe, [], tmp_path / "a", device="cpu", log=said.append).amp
    assert any("float32" in s for s in said)
    monkeypatch.setattr(tr, "cpu_has_native_bf16", lambda: True)
    assert tr.Trainer(recipe, [], tmp_path / "b", device="cpu", log=said.append).amp
