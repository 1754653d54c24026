"""Face image folders (root/<class>/*.jpg, the VGGFace2 layout) and their prepared crops."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from facecmp.errors import FacecmpError
from facecmp.images import is_image_name
from facecmp.pairs import pair_identities
from facecmp.preprocess import load_face


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


def crop_convention(crop: dict[str, Any]) -> dict[str, Any]:
    """Only the crop settings that matter for its method (others never invalidate a cache)."""
    used = {"none": (), "center": ("fraction",), "align": ("detector",), "box": ("detector", "scale")}
    method = crop.get("method", "none")
    return {"method": method, **{k: crop.get(k) for k in used.get(method, ())}}


def image_convention(meta: dict[str, Any]) -> dict[str, Any]:
    """What makes a model's network images: input size, colour mode and crop convention."""
    return {"input_size": meta["input_size"], "color": meta["color"], "crop": crop_convention(meta["crop"])}


def _cache_key(paths: list[Path], meta: dict[str, Any]) -> str:
    # By content, not modification time: a data set copied or unpacked again keeps its
    # crops (hashing ~27k face images costs a few seconds; detecting them, minutes).
    h = hashlib.sha1()
    h.update(json.dumps(image_convention(meta), sort_keys=True).encode())
    for p in map(Path, paths):
        try:
            stamp = hashlib.sha1(p.read_bytes()).hexdigest()
        except OSError:  # a missing file is reported by its crop, not here
            stamp = "missing"
        h.update(f"{p.resolve()}|{stamp}\n".encode())
    return h.hexdigest()[:20]


def cache_dir() -> Path:
    """Where prepared crops are cached: $FACECMP_CACHE or ~/.cache/facecmp."""
    return Path(os.environ.get("FACECMP_CACHE", Path.home() / ".cache" / "facecmp"))


def prepare_crops(paths: list[Path], meta: dict[str, Any], progress: bool = True
                  ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Decode and crop every image once (cached on disk by file list and crop convention).

    Returns (crops uint8 N x S x S x C, ok mask, one-line problems). Files that cannot be
    read or hold no face are left out of the mask and reported, never fatal.
    """
    key = _cache_key(paths, meta)
    cached = cache_dir() / f"crops-{key}.npz"
    if cached.exists():
        with np.load(cached, allow_pickle=False) as z:
            return z["crops"], z["ok"], list(z["problems"])
    size, chans = int(meta["input_size"]), 1 if meta.get("color") == "gray" else 3
    crops = np.zeros((len(paths), size, size, chans), dtype=np.uint8)
    ok = np.zeros(len(paths), dtype=bool)
    problems: list[str] = []
    chunks = [list(range(i, min(i + 64, len(paths)))) for i in range(0, len(paths), 64)]
    done = 0
    for idx, results in zip(chunks, _map_chunks(paths, meta, chunks)):
        for i, (pixels, problem) in zip(idx, results):
            if problem is None:
                crops[i], ok[i] = pixels, True
            else:
                problems.append(problem)
        done += len(idx)
        if progress:
            print(f"\rpreparing crops: {done}/{len(paths)}", end="", file=sys.stderr, flush=True)
    if progress:
        print(file=sys.stderr)
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(".tmp.npz")
    np.savez(tmp, crops=crops, ok=ok, problems=np.asarray(problems, dtype=str))
    os.replace(tmp, cached)
    return crops, ok, problems


def _crop_chunk(paths: list[Path], meta: dict[str, Any]) -> list[tuple[np.ndarray | None, str | None]]:
    out = []
    for path in paths:
        try:
            out.append((load_face(path, meta).pixels, None))
        except FacecmpError as exc:
            out.append((None, str(exc)))
    return out


def _worker_init() -> None:
    # each worker is one of several processes on the machine: one thread apiece
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"
    if sys.platform.startswith("linux"):  # die with the parent, however it ends (kill -9 too)
        import ctypes
        import signal

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    import cv2

    cv2.setNumThreads(1)


def _map_chunks(paths: list[Path], meta: dict[str, Any], chunks: list[list[int]]):
    """Crop chunks of images, in worker processes when a detector makes it worth it."""
    from facecmp.runtime import cpu_count

    jobs = [[paths[i] for i in idx] for idx in chunks]
    if meta["crop"].get("method") != "align" or cpu_count() < 2 or len(paths) < 256:
        return (_crop_chunk(job, meta) for job in jobs)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # spawn, not fork: the parent may already run Paddle's thread pools
    pool = ProcessPoolExecutor(cpu_count(), mp_context=multiprocessing.get_context("spawn"),
                               initializer=_worker_init)
    return _closing(pool, pool.map(_crop_chunk, jobs, [meta] * len(jobs)))


def _closing(pool, results):
    try:
        yield from results
    finally:
        pool.shutdown(cancel_futures=True)


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
