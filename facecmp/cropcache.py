"""The prepared-crop cache: every image decoded and cropped once, kept on disk by file
content and crop convention, in worker processes when face detection makes it slow."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
from pathlib import Path
import numpy as np

from facecmp.errors import FacecmpError
from facecmp.meta import ModelMeta
from facecmp.detect import fingerprint
from facecmp.preprocess import load_face
from facecmp.runtime import cache_dir


def _cache_key(paths: list[Path], meta: ModelMeta) -> str:
    # By content, not modification time: a data set copied or unpacked again keeps its
    # crops (hashing ~27k face images costs a few seconds; detecting them, minutes).
    h = hashlib.sha1()
    h.update(json.dumps(meta.image_convention(), sort_keys=True).encode())
    if meta.detects:
        h.update(fingerprint(meta.crop.detector).encode())
    for p in map(Path, paths):
        try:
            stamp = hashlib.sha1(p.read_bytes()).hexdigest()
        except OSError:  # a missing file is reported by its crop, not here
            stamp = "missing"
        h.update(f"{p.resolve()}|{stamp}\n".encode())
    return h.hexdigest()[:20]


def cache_path(paths: list[Path], meta: ModelMeta) -> Path:
    """The file prepare_crops keeps these images' crops in, under this crop convention."""
    return cache_dir() / f"crops-{_cache_key(paths, meta)}.npz"


def prepare_crops(paths: list[Path], meta: ModelMeta, progress: bool = True
                  ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Decode and crop every image once (cached on disk by file list and crop convention).

    Returns (crops uint8 N x S x S x C, ok mask, one-line problems). Files that cannot be
    read or hold no face are left out of the mask and reported, never fatal.
    """
    cached = cache_path(paths, meta)
    if cached.exists():
        with np.load(cached, allow_pickle=False) as z:
            return z["crops"], z["ok"], list(z["problems"])
    crops = np.zeros((len(paths), meta.input_size, meta.input_size, meta.channels), dtype=np.uint8)
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
    # a name of this process's own: processes on several hosts may share the cache folder
    tmp = cached.with_name(f"{cached.stem}.{socket.gethostname()}-{os.getpid()}.tmp.npz")
    np.savez(tmp, crops=crops, ok=ok, problems=np.asarray(problems, dtype=str))
    os.replace(tmp, cached)
    return crops, ok, problems


def _crop_chunk(paths: list[Path], meta: ModelMeta) -> list[tuple[np.ndarray | None, str | None]]:
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


def _map_chunks(paths: list[Path], meta: ModelMeta, chunks: list[list[int]]):
    """Crop chunks of images, in worker processes when a detector makes it worth it."""
    from facecmp.runtime import cpu_count

    jobs = [[paths[i] for i in idx] for idx in chunks]
    if meta.crop.method != "align" or cpu_count() < 2 or len(paths) < 256:
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
