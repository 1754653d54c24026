"""Face image folders (root/<class>/*.jpg, the VGGFace2 layout): scanning, splits and exclusions."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

import numpy as np

from facecmp.errors import FacecmpError
from facecmp.images import is_image_name
from facecmp.pairs import pair_identities


class PathList(Sequence[Path]):
    """File paths packed into one byte string and their end offsets: about 80 bytes a path
    where a list of Path objects takes 600, so that millions of training images fit; item i
    is a Path made when it is asked for."""

    def __init__(self, paths: Iterable[str | os.PathLike] = ()) -> None:
        names = [os.fsencode(p) for p in paths]
        self._data = b"".join(names)
        self._ends = np.cumsum([len(n) for n in names], dtype=np.int64)

    @classmethod
    def concat(cls, lists: Iterable[PathList]) -> PathList:
        """One PathList of several, in order."""
        lists = list(lists)
        out = cls()
        out._data = b"".join(pl._data for pl in lists)
        shifts = np.cumsum([0] + [len(pl._data) for pl in lists[:-1]], dtype=np.int64)
        out._ends = np.concatenate([pl._ends + shift for pl, shift in zip(lists, shifts)] or [out._ends])
        return out

    def __len__(self) -> int:
        return len(self._ends)

    @overload
    def __getitem__(self, i: int) -> Path: ...

    @overload
    def __getitem__(self, i: slice) -> PathList: ...

    def __getitem__(self, i):
        if isinstance(i, slice):
            start, stop, step = i.indices(len(self))
            if step != 1 or stop <= start:
                return PathList(self[j] for j in range(start, stop, step))
            out, base = PathList(), int(self._ends[start - 1]) if start else 0
            out._data, out._ends = self._data[base : int(self._ends[stop - 1])], self._ends[start:stop] - base
            return out
        i = range(len(self))[i]  # negative indices; IndexError past the end
        start = int(self._ends[i - 1]) if i else 0
        return Path(os.fsdecode(self._data[start : int(self._ends[i])]))

    def __iter__(self) -> Iterator[Path]:
        return (self[i] for i in range(len(self)))

    def __add__(self, other: Iterable[str | os.PathLike]) -> PathList:
        return PathList.concat([self, other if isinstance(other, PathList) else PathList(other)])

    def __repr__(self) -> str:
        return f"PathList({len(self)} paths)"


@dataclass
class FaceFolder:
    """Labelled image paths gathered from one or more class folders."""

    classes: list[str]
    paths: PathList
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
    classes, paths, labels, dropped = [], [], [], {}  # paths: a PathList per class
    for root in roots:
        for cdir in _class_dirs(Path(root)):
            if cdir.name in exclude:
                continue
            files = sorted(p for p in cdir.iterdir() if p.is_file() and is_image_name(p))
            name = f"{Path(root).name}/{cdir.name}" if prefix else cdir.name
            if len(files) < max(1, min_images):
                dropped[name] = len(files)
                continue
            paths.append(PathList(files))
            labels.append(np.full(len(files), len(classes), dtype=np.int64))
            classes.append(name)
    shown = ", ".join(str(r) for r in roots)
    if not paths:
        raise FacecmpError(f"no class folders with images in {shown} "
                           f"(expected root/<class>/*.jpg, at least {min_images} per class)")
    if len(classes) < 2:
        raise FacecmpError(f"need at least 2 classes with {min_images}+ images in {shown}, "
                           f"found {len(classes)}")
    return FaceFolder(classes, PathList.concat(paths), np.concatenate(labels), dropped)


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
