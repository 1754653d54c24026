"""Cropping many images, in worker processes when there are enough of them to pay for their
start: chunks of images in, each image's crop or one-line problem out, in order."""

from __future__ import annotations

import os
import sys
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Optional

import numpy as np

from facecmp.errors import FacecmpError
from facecmp.meta import ModelMeta
from facecmp.runtime import cpu_count

CHUNK = 64  # images a worker crops per task
DETECT_POOL_MIN = 256  # images from which a detector's crops go to worker processes
PLAIN_POOL_MIN = 4096  # the same without a detector (decoding alone: workers take ~2 s to start)

Result = tuple[Optional[np.ndarray], Optional[str]]  # (uint8 crop, None) or (None, problem)


def worker_count(images: int, meta: ModelMeta, sharing: int = 1) -> int:
    """Worker processes worth starting for this many images (1: crop in this process), when
    `sharing` processes of the host crop at the same time."""
    enough = images >= (DETECT_POOL_MIN if meta.detects else PLAIN_POOL_MIN)
    return max(1, cpu_count() // max(1, sharing)) if enough else 1


def crop_chunk(paths: list[Path], meta: ModelMeta) -> list[Result]:
    """Each image's crop under meta's convention, or why it has none."""
    from facecmp import preprocess

    out: list[Result] = []
    for path in paths:
        try:
            out.append((preprocess.load_face(path, meta).pixels, None))
        except FacecmpError as exc:
            out.append((None, str(exc)))
    return out


def crop_chunks(chunks: Iterable[list[Path]], meta: ModelMeta, workers: int = 1) -> Iterator[list[Result]]:
    """crop_chunk of each chunk, in order; with workers > 1, in that many processes, a few
    chunks ahead at most (so memory does not grow with the number of images)."""
    if workers < 2:
        yield from (crop_chunk(chunk, meta) for chunk in chunks)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # spawn, not fork: the parent may already run Paddle's thread pools
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_init)
    pending: deque = deque()
    try:
        for chunk in chunks:
            pending.append(pool.submit(crop_chunk, chunk, meta))
            while len(pending) > 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


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
