"""Face image folders (root/<class>/*.jpg, the VGGFace2 layout): scanning, splits and exclusions."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from facecmp.errors import FacecmpError
from facecmp.images import is_image_name
from facecmp.pairs import pair_identities


@dataclass
class FaceFolder:
    """Labelled image paths gathered from one or more class folders."""

    classes: list[str]
    paths: list[Path]
    labels: np.ndarray
    dropped_classes: dict[str, int] = field(default_factory=dict)  # name -> images it had

    def summary(self) -> dict[str, Any]:
        """Counts for reports and meta.json."""
        return {"classes": len(self.classes), "images": len(self.paths),
                "classes_dropped_too_few_images": len(self.dropped_classes)}


def data_root() -> Path:
    """The data root for tools and tests: $FACECMP_DATA, else ../shared/data from the working directory."""
    return Path(os.environ.get("FACECMP_DATA", "../shared/data"))


def _class_dirs(root: Path) -> list[Path]:
    if not root.exists():
        raise FacecmpError(f"data folder {root} does not exist")
    if not root.is_dir():
        raise FacecmpError(f"data folder {root} is not a directory")
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def scan_classes(roots: list[Path], min_images: int = 1, exclude: set[str] | None = None,
                 prefix_roots: bool | None = None) -> FaceFolder:
    """Collect root/<class>/<image> files; classes with fewer than min_images are dropped.

    With several roots, class names are prefixed by the root's name so that two
    data sets never merge their identities by accident.
    """
    exclude = exclude or set()
    prefix = len(roots) > 1 if prefix_roots is None else prefix_roots
    classes, paths, labels, dropped = [], [], [], {}
    for root in roots:
        for cdir in _class_dirs(Path(root)):
            if cdir.name in exclude:
                continue
            files = sorted(p for p in cdir.iterdir() if p.is_file() and is_image_name(p))
            name = f"{Path(root).name}/{cdir.name}" if prefix else cdir.name
            if len(files) < max(1, min_images):
                dropped[name] = len(files)
                continue
            paths += files
            labels += [len(classes)] * len(files)
            classes.append(name)
    shown = ", ".join(str(r) for r in roots)
    if not paths:
        raise FacecmpError(f"no class folders with images in {shown} "
                           f"(expected root/<class>/*.jpg, at least {min_images} per class)")
    if len(classes) < 2:
        raise FacecmpError(f"need at least 2 classes with {min_images}+ images in {shown}, "
                           f"found {len(classes)}")
    return FaceFolder(classes, paths, np.asarray(labels, dtype=np.int64), dropped)


def split_indices(labels: np.ndarray, how: str, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded train/val split: 'image' holds out images of every class, 'identity' whole classes."""
    rng = np.random.default_rng(seed)
    if fraction <= 0:
        return np.arange(len(labels)), np.zeros(0, dtype=np.int64)
    if how == "identity":
        classes = np.unique(labels)
        held = rng.permutation(classes)[: max(1, int(round(len(classes) * fraction)))]
        val = np.isin(labels, held)
    else:
        val = np.zeros(len(labels), dtype=bool)
        for c in np.unique(labels):
            idx = rng.permutation(np.flatnonzero(labels == c))
            # a class keeps at least one training image; singletons are never held out
            n_val = min(len(idx) - 1, int(round(len(idx) * fraction)))
            val[idx[:n_val]] = True
    return np.flatnonzero(~val), np.flatnonzero(val)


def read_identity_list(path: Path) -> set[str]:
    """Identity names, one per line (blank lines and # comments ignored)."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise FacecmpError(f"{path}: {exc.strerror or exc}") from None
    return {ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")}


def excluded_identities(lists: Iterable[Path] = (), pairs: Path | None = None,
                        folds: str | None = None) -> set[str]:
    """Identity names to leave out of training: those of every list file, plus the people of
    an LFW pairs file (only of its folds `folds`, e.g. "1-5", when given)."""
    names: set[str] = set()
    for path in lists:
        names |= read_identity_list(path)
    if pairs:
        names |= pair_identities(pairs, folds)
    return names
