"""The crop store: lazy reads, atomic shards, resuming a killed preparation, shares of the
shards among processes, and its key (names, sizes, mtimes; contents on request)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, make_class_tree
from PIL import Image

from facecmp import cropstore
from facecmp.cropstore import CropStore, prepare_store, store_dir
from facecmp.datasets import scan_classes
from facecmp.errors import FacecmpError
from facecmp.meta import ModelMeta
from facecmp.preprocess import load_face

META = ModelMeta.from_dict({"task": "identity", "arch": "resnet18", "activation": "relu", "input_size": 32,
                            "color": "rgb", "crop": {"method": "none"}, "mean": [0.5] * 3, "std": [0.5] * 3})


def _paths(tmp_path: Path, classes: int = 2, per_class: int = 5) -> list[Path]:
    return scan_classes([make_class_tree(tmp_path / "d", classes=classes, per_class=per_class)]).paths


def _stamps(folder: Path) -> dict[str, tuple[int, int]]:
    """(inode, mtime_ns) of every finished shard file: a rewritten file gets a new inode."""
    done = [p.with_suffix("") for p in folder.glob("shard-*.json")]
    return {f.name: (f.stat().st_ino, f.stat().st_mtime_ns) for d in done for f in (d.with_suffix(".npy"),
                                                                                  d.with_suffix(".json"))}


def test_crops_are_read_lazily_one_at_a_time(tmp_path):
    paths = _paths(tmp_path)
    store = prepare_store(paths, META, progress=False, shard_size=4)
    assert len(store) == 10 and store.shards == 3 and store.ok.all() and store.problems == []
    assert sorted(p.name for p in store.folder.iterdir()) == ["manifest.json"] + [
        f"shard-0000{k}.{ext}" for k in range(3) for ext in ("json", "npy")]
    # the reader holds no crops, and no files open between reads
    assert not any(isinstance(v, np.ndarray) and v.nbytes > 1000 for v in vars(store).values())
    open_files = len(os.listdir("/proc/self/fd"))
    for i in (9, 0, 5, 1, 8):
        crop = store[i]
        assert crop.shape == (32, 32, 3) and crop.dtype == np.uint8 and crop.flags.writeable
        assert np.array_equal(crop, load_face(paths[i], META).pixels)
    assert len(os.listdir("/proc/self/fd")) == open_files
    import pickle

    assert np.array_equal(pickle.loads(pickle.dumps(store))[3], store[3])  # as spawned workers get it
    assert np.array_equal(store.array(), store.take(range(10)))
    with pytest.raises(IndexError):
        store[10]


def test_a_dataset_indexes_the_store_without_copying_it(tmp_path):
    from facecmp.trainer import CropDataset

    paths = _paths(tmp_path)
    store = prepare_store(paths, META, progress=False, shard_size=4)
    index = np.asarray([7, 2, 9])
    ds = CropDataset(store, np.asarray([1, 0, 1]), META, index=index)
    assert ds.crops is store and len(ds) == 3
    x, y, _ = ds[2]
    assert x.shape == (3, 32, 32) and y.tolist() == [1]
    from facecmp.preprocess import to_tensor_batch

    assert np.allclose(x, to_tensor_batch(store[9][None], META)[0])


def test_bad_images_are_marked_and_reported_in_image_order(tmp_path):
    paths = _paths(tmp_path)
    paths[1].write_text("not a picture")
    paths[6].write_bytes(b"\xff\xd8\xff\xe0garbage")
    store = prepare_store(paths, META, progress=False, shard_size=4)
    assert np.flatnonzero(~store.ok).tolist() == [1, 6] and len(store.problems) == 2
    assert paths[1].name in store.problems[0] and paths[6].name in store.problems[1]
    assert not store[1].any()


def test_a_shard_without_its_record_is_redone_and_stale_temporaries_go(tmp_path, monkeypatch):
    paths = _paths(tmp_path)
    folder = prepare_store(paths, META, progress=False, shard_size=4).folder
    (folder / "shard-00001.json").unlink()  # killed between the shard's two renames
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    import socket

    stale = folder / f"shard-00002.npy.{socket.gethostname()}-{dead}-140.tmp"
    stale.write_bytes(b"half a shard")
    before = _stamps(folder)
    written = []
    real = cropstore._write_shard
    monkeypatch.setattr(cropstore, "_write_shard", lambda *a: written.append(a[1]) or real(*a))
    store = prepare_store(paths, META, progress=False)
    assert written == [1] and not stale.exists() and store.ok.all()
    after = _stamps(folder)
    assert all(after[name] == before[name] for name in before)  # shards 0 and 2 untouched


# A preparation in its own process, each image slowed so that the test can kill it half-way.
SLOW_PREPARE = """import sys, time
sys.path.insert(0, {tests!r})
import facecmp.preprocess as pre
real = pre.load_face
pre.load_face = lambda *a, **k: (time.sleep(0.15), real(*a, **k))[1]
from pathlib import Path
from facecmp import cropstore
from test_cropstore import META
paths = [Path(p) for p in sys.argv[1:]]
cropstore.prepare_store(paths, META, progress=False, shard_size=2)
"""


def test_a_killed_preparation_resumes_without_redoing_finished_shards(tmp_path, monkeypatch):
    paths = _paths(tmp_path, classes=2, per_class=8)  # 16 images, 8 shards of 2
    folder = store_dir(paths, META)
    proc = subprocess.Popen([sys.executable, "-c", SLOW_PREPARE.format(tests=str(REPO / "tests")),
                             *map(str, paths)])
    deadline = time.time() + 60
    while len(list(folder.glob("shard-*.json"))) < 3 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = _stamps(folder)
    finished = len(before) // 2
    assert 3 <= finished < 8, "the preparation was not killed half-way"
    written = []
    real = cropstore._write_shard
    monkeypatch.setattr(cropstore, "_write_shard", lambda *a: written.append(a[1]) or real(*a))
    store = prepare_store(paths, META, progress=False)
    assert store.shard_size == 2 and len(written) == 8 - finished  # only the unfinished shards
    after = _stamps(folder)
    assert all(after[name] == before[name] for name in before)
    assert not list(folder.glob("*.tmp"))
    assert all(np.array_equal(store[i], load_face(p, META).pixels) for i, p in enumerate(paths))


def test_worker_processes_prepare_the_shards(tmp_path, monkeypatch):
    paths = _paths(tmp_path, classes=2, per_class=6)
    from facecmp import cropworkers

    monkeypatch.setattr(cropworkers, "PLAIN_POOL_MIN", 0)
    monkeypatch.setattr(cropworkers, "cpu_count", lambda: 2)
    pools, real = [], cropstore.crop_chunks
    monkeypatch.setattr(cropstore, "crop_chunks", lambda c, m, n: pools.append(n) or real(c, m, n))
    store = prepare_store(paths, META, progress=False, shard_size=3)
    assert pools == [2]
    assert store.shards == 4 and store.ok.all()
    assert np.array_equal(store[11], load_face(paths[11], META).pixels)


def test_processes_share_out_the_shards_and_wait_for_each_others(tmp_path, monkeypatch):
    paths = _paths(tmp_path)
    written: list[tuple[int, str]] = []
    real = cropstore._write_shard
    monkeypatch.setattr(cropstore, "_write_shard",
                        lambda *a: written.append((a[1], threading.current_thread().name)) or real(*a))
    stores = {}

    def run(k: int) -> None:
        stores[k] = prepare_store(paths, META, False, (k, 2), 2, 0.02)

    threads = [threading.Thread(target=run, args=(k,), name=name) for k, name in ((0, "first"), (1, "second"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(stores) == [0, 1], "a share did not finish"
    store = stores[0]
    assert sorted(written) == [(0, "first"), (1, "second"), (2, "first"), (3, "second"), (4, "first")]
    assert store.ok.all() and len(store) == 10
    waiter = prepare_store(paths, META, False, None)  # prepares nothing, finds everything
    assert np.array_equal(waiter.array(), store.array())


def test_the_key_follows_names_sizes_and_mtimes_or_contents_on_request(tmp_path, monkeypatch):
    paths = _paths(tmp_path)
    first = store_dir(paths, META)
    assert store_dir(paths, META) == first
    os.utime(paths[0], ns=(10**18, 10**18))  # touched: same bytes, a new mtime
    touched = store_dir(paths, META)
    assert touched != first
    with open(paths[1], "ab") as f:  # one byte more
        f.write(b"\0")
    assert store_dir(paths, META) not in (first, touched)
    assert store_dir(list(reversed(paths)), META) != store_dir(paths, META)

    monkeypatch.setenv(cropstore.KEY_ENV, "content")
    by_content = store_dir(paths, META)
    assert by_content not in (first, touched)
    for p in paths:  # as after copying or unpacking the data again
        os.utime(p, (1e9, 1e9))
    assert store_dir(paths, META) == by_content
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(paths[0])  # new content
    assert store_dir(paths, META) != by_content
    monkeypatch.setenv(cropstore.KEY_ENV, "bytes")
    with pytest.raises(FacecmpError, match="FACECMP_CROP_KEY must be one of stat, content"):
        store_dir(paths, META)


def test_a_damaged_store_is_a_one_line_error(tmp_path):
    paths = _paths(tmp_path)
    store = prepare_store(paths, META, progress=False, shard_size=4)
    shard = store.folder / "shard-00001.npy"
    shard.write_bytes(shard.read_bytes()[:500])
    with pytest.raises(FacecmpError, match="is damaged .*delete the folder") as exc:
        CropStore(store.folder)[5]
    assert "\n" not in str(exc.value)
    (store.folder / "shard-00000.json").write_text("{")
    with pytest.raises(FacecmpError, match="cannot read shard-00000.json"):
        CropStore(store.folder)
