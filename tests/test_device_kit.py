"""scripts/device_train.sh, the one-call GPU training of the bundled model, dry-run on this CPU at the
tiny size: a lent GPU has minutes, so the script must already work when one is drawn."""

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "device_train.sh"


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    from models.data.speech import build_speech_bank

    if not shutil.which("bash"):
        pytest.skip("needs bash")
    try:
        root = tmp_path_factory.mktemp("kit")
        build_speech_bank(root / "bank", 4, seed=1)
    except Exception as e:  # no espeak-ng: the bank cannot be built here
        pytest.skip(f"speech bank: {e}")
    return root


def test_run_then_collect_gives_a_loadable_model(kit, tmp_path):
    from models.checkpoint import load_model

    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "OMNI_KIT": str(kit), "OMNI_SIZE": "tiny", "OMNI_RECIPE": "tiny-test",
           "OMNI_CLIPS": "4", "OMNI_WORKERS": "1", "OMNI_DEVICE": "cpu", "OMNI_WORK": str(tmp_path / "work"),
           "OMNI_RESERVE": "5", "OMNI_MIN_TRAIN": "5"}
    proc = subprocess.run(["bash", str(SCRIPT), "run", "0.6"], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    names = sorted(p.name for p in out.iterdir())
    for want in ("MODEL_CARD.md", "config.json", "log.jsonl", "model.safetensors.part0", "model.sha256",
                 "recipe.fitted.json", "run.log"):
        assert want in names, names
    assert "fitted to" in (out / "recipe.fitted.json").read_text()
    dest = tmp_path / "model"
    proc = subprocess.run(["bash", str(SCRIPT), "collect", str(out), str(dest)], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert load_model(dest).config.name == "tiny"
    digest = hashlib.sha256((dest / "model.safetensors").read_bytes()).hexdigest()
    assert digest == (out / "model.sha256").read_text().strip()
    # A damaged piece is refused, and nothing is overwritten.
    part = out / "model.safetensors.part0"
    part.write_bytes(part.read_bytes()[:-10])
    proc = subprocess.run(["bash", str(SCRIPT), "collect", str(out), str(tmp_path / "model2")], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "checksum mismatch" in proc.stderr
    assert not (tmp_path / "model2").exists()


def test_missing_speech_bank_is_reported(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path / "out"), "OMNI_KIT": str(tmp_path / "nokit"),
           "OMNI_WORK": str(tmp_path / "work")}
    proc = subprocess.run(["bash", str(SCRIPT), "run", "1"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3 and "no speech bank" in proc.stdout + proc.stderr


def test_two_recipes_side_by_side_from_a_carried_model(kit, tmp_path):
    """OMNI_INIT_FROM at prepare puts a model in the kit that every run starts from; OMNI_RECIPE=a,b
    trains both on the one device, each into its own folder of $OUT."""
    from models.checkpoint import load_model, random_model, save_model

    init = tmp_path / "init-model"
    save_model(random_model("tiny", seed=5), init)
    kit2 = tmp_path / "kit"
    shutil.copytree(kit, kit2)
    recipe = ('{{"preset": "tiny", "seed": 0, "num_workers": 0, "log_every": 1, "checkpoint_every": 2, '
              '"architecture": {{"dit": {{"ref_concat": {}}}}}, "stages": [{{"name": "audio", "kind": "dit", '
              '"steps": 3, "lr": 0.001, "warmup": 1, "batch_size": 2, "cache_windows": 4}}]}}')
    plain, concat = tmp_path / "tiny-plain.json", tmp_path / "tiny-concat.json"
    plain.write_text(recipe.format("false"))
    concat.write_text(recipe.format("true"))
    env = {**os.environ, "OMNI_KIT": str(kit2), "OMNI_INIT_FROM": str(init), "OMNI_ASIDE": str(tmp_path / "aside"),
           "OMNI_BANK_COUNT": "4"}
    # prepare here would also set the tree's bundled checkpoints aside: run only its kit part.
    proc = subprocess.run(["bash", "-c", f'source <(sed -n "/^prepare()/,/^}}/p" "{SCRIPT}"); KIT="{kit2}"; '
                           f'ROOT="{tmp_path / "no-tree"}"; ASIDE="{tmp_path / "aside"}"; say() {{ echo "$*"; }}; '
                           'prepare'], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (kit2 / "init" / "model.safetensors").is_file()
    out = tmp_path / "out"
    env.update({"OUT": str(out), "OMNI_SIZE": "tiny", "OMNI_RECIPE": f"{plain},{concat}", "OMNI_CLIPS": "4",
                "OMNI_WORKERS": "1", "OMNI_DEVICE": "cpu", "OMNI_WORK": str(tmp_path / "work"), "OMNI_RESERVE": "5",
                "OMNI_MIN_TRAIN": "5"})
    proc = subprocess.run(["bash", str(SCRIPT), "run", "1.0"], env=env, capture_output=True, text=True, timeout=300)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, "\n".join(ln for ln in log.splitlines() if "step" not in ln)[-3000:]
    assert log.count("initialised from") == 2 and "switched on dit.ref_concat" in log
    for name in ("tiny-plain", "tiny-concat"):
        names = sorted(p.name for p in (out / name).iterdir())
        assert "model.sha256" in names and "recipe.fitted.json" in names, names
        dest = tmp_path / f"model-{name}"
        proc = subprocess.run(["bash", str(SCRIPT), "collect", str(out / name), str(dest)], env=env,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
    assert load_model(tmp_path / "model-tiny-concat").config.dit.ref_concat
    assert not load_model(tmp_path / "model-tiny-plain").config.dit.ref_concat
