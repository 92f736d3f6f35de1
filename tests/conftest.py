import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def tiny_config():
    from models.config import get_preset

    return get_preset("tiny")


@pytest.fixture
def tiny_model():
    from models.checkpoint import random_model

    return random_model("tiny", seed=0)


def randomize_(module: torch.nn.Module, skip: tuple[torch.nn.Module, ...] = (), seed: int = 0) -> None:
    """Overwrite every parameter of ``module`` with noise, except those of ``skip``."""
    g = torch.Generator().manual_seed(seed)
    skip_ids = {id(p) for m in skip for p in m.parameters()}
    with torch.no_grad():
        for p in module.parameters():
            if id(p) not in skip_ids:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)


@pytest.fixture(scope="session")
def dataset(tmp_path_factory):
    """Four tiny synthetic clips (the training tests' data)."""
    from models.cli import main

    out = tmp_path_factory.mktemp("data") / "ds"
    assert main(["synth", "--clips", "4", "--out", str(out), "--size", "tiny", "--seed", "3", "--workers", "1"]) == 0
    return out


@pytest.fixture(scope="session")
def face_data(tmp_path_factory):
    """Four tiny-face clips of faces and portraits (the face-s framings), made once per test session."""
    from models.cli import main

    out = tmp_path_factory.mktemp("face") / "ds"
    assert main(["synth", "--clips", "4", "--out", str(out), "--size", "tiny-face", "--seed", "5", "--workers", "1",
                 "--framings", "face=0.6,portrait=0.4"]) == 0
    return out
