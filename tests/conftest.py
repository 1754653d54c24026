"""Shared fixtures: where the real data is, and skipping cleanly where it is not."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


# tests may run from any directory: the default data root is the one beside the repository
os.environ.setdefault("FACECMP_DATA", str(REPO.parent / "shared" / "data"))


def data_root() -> Path:
    """The data root (facecmp.datasets.data_root, the one place it is decided)."""
    from facecmp.datasets import data_root as root

    return root()


def need_data(*parts: str) -> Path:
    """The path under the data root, or skip the test saying what is missing."""
    path = data_root().joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not found at {path} (set FACECMP_DATA to the shared data root)")
    return path


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Keep each test session's crop cache out of the user's home."""
    monkeypatch.setenv("FACECMP_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def make_class_tree(root: Path, classes: int = 4, per_class: int = 6, size: int = 48) -> Path:
    """A root/<class>/*.png tree whose classes differ by colour and stripe pattern."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(classes):
        d = root / f"person_{c:02d}"
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = np.full((size, size, 3), 40 + 50 * (c % 4), dtype=np.uint8)
            img[:, :, c % 3] = 200
            img[(c * 5) % size : (c * 5) % size + 8] = 255
            img = np.clip(img + rng.integers(-20, 20, img.shape), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(d / f"{i:03d}.png")
    return root


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A model directory trained for one epoch on a synthetic class tree (seconds)."""
    from facecmp.config import load_config
    from facecmp.trainer import train

    base = tmp_path_factory.mktemp("tiny")
    root = make_class_tree(base / "data", classes=4, per_class=8)
    cfg = load_config("identity", overrides={"train": {"epochs": 1, "batch_size": 16}})
    train(cfg, [root], base / "run", verbose=0)
    return base / "run" / "model"


@pytest.fixture(scope="session")
def tiny_tree(tiny_model) -> Path:
    """The synthetic class tree the tiny model was trained on."""
    return tiny_model.parent.parent / "data"


def train_tiny(base: Path, task: str, classes: int = 2, size: int = 48,
               data: dict | None = None) -> Path:
    """Train a classifier for one epoch on a synthetic root/<split>/<class>/* tree; its model dir."""
    from facecmp.config import load_config
    from facecmp.trainer import train

    root = base / "data"
    for split, n in (("train", 8), ("validation", 3), ("test", 4)):
        make_class_tree(root / split, classes=classes, per_class=n, size=size)
    cfg = load_config(task, overrides={"data": data or {},
                                       "train": {"epochs": 1, "batch_size": 8, "patience": 0}})
    train(cfg, [root], base / "run", verbose=0)
    return base / "run" / "model"


@pytest.fixture(scope="session")
def tiny_mask(tmp_path_factory) -> Path:
    """A two-class 'mask' model at 32x32 (seconds to train)."""
    return train_tiny(tmp_path_factory.mktemp("mask"), "mask", data={"input_size": 32})


@pytest.fixture(scope="session")
def tiny_expr(tmp_path_factory) -> Path:
    """A three-class 'expression' model with the task's own recipe (attention ResNet, gray 48x48)."""
    return train_tiny(tmp_path_factory.mktemp("expr"), "expression", classes=3)
