"""The crop store: every image decoded and cropped once, written to disk in shards and read
back one crop at a time, so that memory does not grow with the number of images.

A store is a folder `cache_dir()/crops-<key>/`: `manifest.json` (what the key was made of,
the image count, shard size and crop shape) and, per shard of `shard_size` images,
`shard-NNNNN.npy` (uint8 n x S x S x C, NumPy's own format) and `shard-NNNNN.json` (the
images of the shard that could not be cropped, and why). Every file is written under a
temporary name of its own process and renamed, the .json last, so a shard whose .json exists
is complete and a preparation that is killed resumes at the shards it had not finished.

The key is built from the images' paths, sizes and modification times, the crop convention
and the detector; FACECMP_CROP_KEY=content keys by the files' bytes instead (a data set
copied or unpacked again then keeps its crops, at the cost of reading every file).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import socket
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from facecmp.cropworkers import CHUNK, crop_chunks, worker_count
from facecmp.detect import fingerprint
from facecmp.errors import FacecmpError
from facecmp.meta import ModelMeta
from facecmp.runtime import cache_dir

SHARD_SIZE = 1024  # images per shard: 12 MB of 64x64 colour crops
KEY_ENV = "FACECMP_CROP_KEY"  # "content": key by the files' bytes; "stat" (the default): by name, size, mtime
KEY_MODES = ("stat", "content")
_FORMAT = 2  # part of the key: stores of an older layout are never read
_HEADERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def key_mode() -> str:
    """How store keys see a file: by its name, size and mtime ("stat"), or by its bytes ("content")."""
    mode = os.environ.get(KEY_ENV, "").strip().lower() or "stat"
    if mode not in KEY_MODES:
        raise FacecmpError(f"{KEY_ENV} must be one of {', '.join(KEY_MODES)}, got '{mode}'")
    return mode


def _file_stamp(name: str, mode: str) -> str:
    try:
        if mode == "content":
            return hashlib.sha1(Path(name).read_bytes()).hexdigest()
        st = os.stat(name)
        return f"{st.st_size}:{st.st_mtime_ns}"
    except OSError:  # a missing file is reported by its crop, not here
        return "missing"


def store_key(paths: Sequence[Path | str], meta: ModelMeta, mode: str | None = None) -> str:
    """The key of these images' crops under meta's crop convention (see the module's docstring)."""
    mode = mode or key_mode()
    h = hashlib.sha1(json.dumps({"format": _FORMAT, "key": mode, "convention": meta.image_convention()},
                                sort_keys=True).encode())
    if meta.detects:
        h.update(fingerprint(meta.crop.detector).encode())
    for p in paths:
        name = os.path.abspath(p)
        h.update(f"{name}|{_file_stamp(name, mode)}\n".encode())
    return h.hexdigest()[:20]


def store_dir(paths: Sequence[Path | str], meta: ModelMeta, mode: str | None = None) -> Path:
    """The folder that holds (or will hold) these images' crops."""
    return cache_dir() / f"crops-{store_key(paths, meta, mode)}"


def _shard_name(k: int) -> str:
    return f"shard-{k:05d}"


def _is_done(folder: Path, k: int) -> bool:
    return (folder / f"{_shard_name(k)}.json").exists()


class CropStore:
    """A complete store's crops, read lazily: store[i] reads crop i from its shard file.

    `ok[i]` says whether image i was cropped (a failed one reads as zeros); `problems` holds
    one line per failed image, in image order. Safe to share between threads and with forked
    or spawned data workers.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        manifest = _read_json(self.folder / "manifest.json")
        self.count, self.shard_size = int(manifest["count"]), int(manifest["shard_size"])
        self.shape = tuple(manifest["shape"])
        self.shards = int(manifest["shards"])
        self._item = int(np.prod(self.shape))
        self.ok = np.ones(self.count, dtype=bool)
        self.problems: list[str] = []
        for k in range(self.shards):
            failed = _read_json(self.folder / f"{_shard_name(k)}.json")["failed"]
            for j, problem in failed:
                self.ok[k * self.shard_size + j] = False
                self.problems.append(problem)
        self._offsets: dict[int, int] = {}  # shard -> where its data starts, once its header is checked

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> np.ndarray:
        """Crop i, uint8 S x S x C, read from disk."""
        i = int(i)
        if not 0 <= i < self.count:
            raise IndexError(f"crop {i} of a store of {self.count}")
        k, j = divmod(i, self.shard_size)
        path = self.folder / f"{_shard_name(k)}.npy"
        offset = self._offsets.get(k) or self._check_header(k, path)
        # a file opened per read: nothing to share between threads or forked data workers,
        # and no limit on open files however many shards there are (~10 us a crop)
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            raise self._damaged(f"{path.name}: {exc.strerror}") from None
        try:
            data = os.pread(fd, self._item, offset + j * self._item)
        finally:
            os.close(fd)
        if len(data) != self._item:
            raise self._damaged(f"{path.name} is short")
        return np.frombuffer(bytearray(data), dtype=np.uint8).reshape(self.shape)

    def take(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """The crops at these indices as one array (for sets that fit in memory)."""
        out = np.empty((len(indices), *self.shape), dtype=np.uint8)
        for n, i in enumerate(indices):
            out[n] = self[i]
        return out

    def array(self) -> np.ndarray:
        """Every crop as one N x S x S x C array, shard by shard."""
        out = np.empty((self.count, *self.shape), dtype=np.uint8)
        for k in range(self.shards):
            start = k * self.shard_size
            out[start : start + self.shard_size] = np.load(self.folder / f"{_shard_name(k)}.npy")
        return out

    def _check_header(self, k: int, path: Path) -> int:
        """Where shard k's crops start in its file, after checking that it holds what it should."""
        try:
            with open(path, "rb") as f:
                shape, fortran, dtype = _HEADERS[np.lib.format.read_magic(f)](f)
                offset = f.tell()
        except (OSError, ValueError, KeyError) as exc:
            raise self._damaged(f"{path.name}: {exc}") from None
        rows = min(self.shard_size, self.count - k * self.shard_size)
        if shape != (rows, *self.shape) or dtype != np.uint8 or fortran:
            raise self._damaged(f"{path.name} holds {dtype} {shape}, not uint8 {(rows, *self.shape)}")
        self._offsets[k] = offset
        return offset

    def _damaged(self, why: str) -> FacecmpError:
        return FacecmpError(f"crop store {self.folder} is damaged ({why}); delete the folder to prepare it again")


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise FacecmpError(f"crop store {path.parent}: cannot read {path.name} ({exc}); "
                           f"delete the folder to prepare it again") from None


def _temp_name(path: Path) -> Path:
    # a name of this thread's own: processes on several hosts may share the cache folder
    return path.with_name(f"{path.name}.{socket.gethostname()}-{os.getpid()}-{threading.get_ident()}.tmp")


def _write_atomically(path: Path, write) -> None:
    """write(file) into a temporary file, flushed to disk, then renamed to path."""
    tmp = _temp_name(path)
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _sweep_temps(folder: Path) -> None:
    """Remove the temporary files that dead processes of this host left behind."""
    host = socket.gethostname()
    for tmp in folder.glob("*.tmp"):
        owner = tmp.name.rsplit(".", 2)[-2].rsplit("-", 2)  # <host>-<pid>-<thread>
        if len(owner) == 3 and owner[0] == host and owner[1].isdigit() and not _alive(int(owner[1])):
            tmp.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _shape(meta: ModelMeta) -> tuple[int, int, int]:
    return meta.input_size, meta.input_size, meta.channels


def _manifest(folder: Path, count: int, meta: ModelMeta, mode: str, shard_size: int) -> dict:
    """The store's manifest: the existing one (its shard size wins), else a new one written."""
    path = folder / "manifest.json"
    if path.exists():
        manifest = _read_json(path)
        if manifest.get("count") != count:
            raise FacecmpError(f"crop store {folder} was made for {manifest.get('count')} images, not "
                               f"{count}; delete the folder to prepare it again")
        return manifest
    manifest = {"format": _FORMAT, "key": mode, "convention": meta.image_convention(),
                "detector": fingerprint(meta.crop.detector) if meta.detects else None,
                "count": count, "shard_size": shard_size, "shards": math.ceil(count / shard_size),
                "shape": list(_shape(meta))}
    folder.mkdir(parents=True, exist_ok=True)
    _write_atomically(path, lambda f: f.write(json.dumps(manifest, indent=1).encode()))
    return manifest


def prepare_store(paths: Sequence[Path], meta: ModelMeta, progress: bool = True,
                  part: tuple[int, int] | None = (0, 1), shard_size: int = SHARD_SIZE,
                  poll: float = 1.0) -> CropStore:
    """Crop every image into the store once (skipping the shards already there) and open it.

    part (k, n): this process prepares every nth shard from the kth, then waits for the
    shards other processes prepare (None: it prepares none and only waits). Unreadable
    images and images without a face are marked in `ok` and reported, never fatal.
    """
    mode = key_mode()
    folder = store_dir(paths, meta, mode)
    manifest = _manifest(folder, len(paths), meta, mode, shard_size)
    shards = int(manifest["shards"])
    _sweep_temps(folder)
    todo = [k for k in range(shards) if part is not None and k % part[1] == part[0] and not _is_done(folder, k)]
    if todo:
        if progress and len(todo) < shards:
            print(f"crop store {folder.name}: {shards - len(todo)} of {shards} shards already prepared",
                  file=sys.stderr)
        _prepare_shards(folder, paths, meta, todo, int(manifest["shard_size"]), part[1], progress)
    while not all(_is_done(folder, k) for k in range(shards)):  # the other processes' shards
        time.sleep(poll)
    return CropStore(folder)


def prepare_crops(paths: Sequence[Path], meta: ModelMeta, progress: bool = True
                  ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Every image's crop as one array, through the store: (crops uint8 N x S x S x C, ok mask,
    one-line problems). For sets that fit in memory; training reads a CropStore lazily."""
    store = prepare_store(paths, meta, progress)
    return store.array(), store.ok, store.problems


def _prepare_shards(folder: Path, paths: Sequence[Path], meta: ModelMeta, todo: list[int], size: int,
                    sharing: int, progress: bool) -> None:
    """Crop the images of the shards in todo and write each shard once its last crop is in."""
    plan = [(k, lo, min(lo + CHUNK, (k + 1) * size, len(paths)))
            for k in todo for lo in range(k * size, min((k + 1) * size, len(paths)), CHUNK)]
    total = sum(hi - lo for _, lo, hi in plan)
    workers = worker_count(total, meta, sharing)
    results = crop_chunks((list(paths[lo:hi]) for _, lo, hi in plan), meta, workers)
    crops, failed, done = None, [], 0
    for (k, lo, hi), chunk in zip(plan, results):
        start, end = k * size, min((k + 1) * size, len(paths))
        if lo == start:
            crops, failed = np.zeros((end - start, *_shape(meta)), dtype=np.uint8), []
        for i, (pixels, problem) in enumerate(chunk, lo - start):
            if problem is None:
                crops[i] = pixels
            else:
                failed.append([i, problem])
        if hi == end and not _is_done(folder, k):  # else another process finished it meanwhile
            _write_shard(folder, k, crops, failed)
        done += hi - lo
        if progress:
            print(f"\rpreparing crops: {done}/{total}", end="", file=sys.stderr, flush=True)
    if progress:
        print(file=sys.stderr)


def _write_shard(folder: Path, k: int, crops: np.ndarray, failed: list[list]) -> None:
    """Shard k's crops, then its record: the record's presence says the shard is complete."""
    name = _shard_name(k)
    _write_atomically(folder / f"{name}.npy", lambda f: np.save(f, crops, allow_pickle=False))
    record = json.dumps({"count": len(crops), "failed": failed}).encode()
    _write_atomically(folder / f"{name}.json", lambda f: f.write(record))
