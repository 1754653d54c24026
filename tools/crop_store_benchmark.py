"""Peak memory of a training epoch over the crop store at two data sizes, and a preparation
killed half-way and restarted.

Usage:
    python tools/crop_store_benchmark.py [--sizes 10000 100000] [--train-steps 30]
                                         [--out outputs/crop_store_benchmark]

For each size N it writes N synthetic face-like JPEGs (48x48, 50 per identity) under
--out/images-N (kept for later runs), then runs, each in a child process whose peak resident
memory (ru_maxrss) is recorded, with a cache (--out/cache) emptied at the start:
  prepare  the crop store of those images (32x32 center crops), as `facecmp train` would;
  epoch    one training epoch through facecmp.trainer.train on that store (identity task,
           ResNet18 at 32x32, batch 64, 2% validation). With --train-steps K > 0 the first
           K batches train; every later batch is still read from the store, augmented and
           collated by the same data loader, but skips the forward and backward pass (a
           full epoch of 100,000 images takes about half an hour on 2 CPU cores). 0 trains
           on every batch.
Then the largest size's preparation is started again in a cache of its own, killed with
SIGKILL once half of its shards exist, and restarted: the figures say how many finished
shards the restart kept (same inode and mtime) and how many it wrote.
Writes --out/crop_store_benchmark.json and --out/crop_store_benchmark.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

INPUT_SIZE, PER_CLASS, IMAGE_SIZE = 32, 50, 48


def make_images(root: Path, n: int, seed: int = 0) -> Path:
    """n face-like JPEGs in root/person_XXXXX/ folders of PER_CLASS: an identity is a skin
    tone, background, eye size and mouth width; each image moves the face and adds noise."""
    import cv2
    import numpy as np

    done = root / ".complete"
    if done.exists() and done.read_text() == str(n):
        return root
    rng = np.random.default_rng(seed)
    for c in range(-(-n // PER_CLASS)):
        folder = root / f"person_{c:05d}"
        folder.mkdir(parents=True, exist_ok=True)
        look = np.random.default_rng(c)
        background, skin = look.integers(0, 255, 3), look.integers(90, 230, 3).tolist()
        eye, mouth = int(look.integers(3, 7)), int(look.integers(4, 8))
        for i in range(min(PER_CLASS, n - c * PER_CLASS)):
            img = np.empty((IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
            img[:] = background
            cx, cy = (IMAGE_SIZE // 2 + rng.integers(-3, 4, 2)).tolist()
            cv2.ellipse(img, (cx, cy), (15, 19), 0, 0, 360, skin, -1)
            for dx in (-7, 7):
                cv2.circle(img, (cx + dx, cy - 5), eye, (30, 30, 30), -1)
            cv2.ellipse(img, (cx, cy + 9), (mouth, 3), 0, 0, 360, (60, 20, 120), -1)
            img = np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8)
            cv2.imwrite(str(folder / f"{i:03d}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    done.write_text(str(n))
    return root


def _config():
    from facecmp.config import load_config

    return load_config("identity", overrides={
        "data": {"input_size": INPUT_SIZE, "crop": {"method": "center"}, "val_fraction": 0.02},
        "train": {"epochs": 1, "batch_size": 64, "patience": 0}})


def _peak_mb(who: int = resource.RUSAGE_SELF) -> float:
    return round(resource.getrusage(who).ru_maxrss / 1024, 1)  # Linux reports KiB


def child_prepare(root: Path) -> dict:
    """Prepare the store of root's images as training would; its size, time and peak memory."""
    from facecmp.cropstore import prepare_store
    from facecmp.datasets import scan_classes
    from facecmp.meta import ModelMeta

    cfg = _config()
    start = time.perf_counter()
    paths = scan_classes([root], cfg.data.min_images).paths
    store = prepare_store(paths, ModelMeta.from_config(cfg), progress=False)
    return {"images": len(store), "shards": store.shards, "seconds": round(time.perf_counter() - start, 1),
            "store_mb": round(sum(f.stat().st_size for f in store.folder.iterdir()) / 2**20, 1),
            "peak_rss_mb": _peak_mb(), "workers_peak_rss_mb": _peak_mb(resource.RUSAGE_CHILDREN)}


def child_epoch(root: Path, run: Path, steps: int) -> dict:
    """One training epoch on root's (prepared) store; its batches, time and peak memory."""
    from facecmp.runtime import import_paddle
    from facecmp.trainer import train

    paddle = import_paddle()
    counts = {"trained": 0, "read_only": 0}

    class CapSteps(paddle.callbacks.Callback):
        """After `steps` trained batches, the later ones are loaded but not trained on."""

        def on_train_begin(self, logs=None):
            model, real, last = self.model, self.model.train_batch, []

            def train_batch(*args, **kwargs):
                if steps and counts["trained"] >= steps:
                    counts["read_only"] += 1
                    return last[0]
                counts["trained"] += 1
                last[:] = [real(*args, **kwargs)]
                return last[0]

            model.train_batch = train_batch

    start = time.perf_counter()
    train(_config(), [root], run, verbose=0, callbacks=[CapSteps()])
    return {**counts, "seconds": round(time.perf_counter() - start, 1), "peak_rss_mb": _peak_mb()}


def _child(args: list[str], env: dict | None = None) -> dict:
    """Run this tool in a child process and return the JSON it prints last."""
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, env=env)
    if out.returncode:
        raise SystemExit(f"child {' '.join(args)} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _shard_stamps(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.glob("shard-*")
            if not p.name.endswith(".tmp")}


def kill_and_resume(root: Path, cache: Path) -> dict:
    """Prepare root's store in a fresh cache, SIGKILL it once half the shards exist, restart it."""
    shutil.rmtree(cache, ignore_errors=True)
    env = {**os.environ, "FACECMP_CACHE": str(cache)}
    proc = subprocess.Popen([sys.executable, __file__, "--child", "prepare", str(root)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    start, total = time.perf_counter(), None
    while proc.poll() is None:
        stores = list(cache.glob("crops-*/manifest.json"))
        if stores and total is None:
            total = json.loads(stores[0].read_text())["shards"]
        if total and len(list(stores[0].parent.glob("shard-*.json"))) >= total // 2:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait()
    killed_after = round(time.perf_counter() - start, 1)
    if total is None:
        raise SystemExit("the preparation finished before it could be killed; use a larger size")
    folder = stores[0].parent
    before = _shard_stamps(folder)
    finished = sorted(n for n in before if n.endswith(".json"))
    resumed = _child(["--child", "prepare", str(root)], env)
    after = _shard_stamps(folder)
    npy = {n: n[: -len(".json")] + ".npy" for n in finished}
    kept = [n for n in finished if after.get(n) == before[n] and after.get(npy[n]) == before[npy[n]]]
    written = len([n for n in after if n.endswith(".json")]) - len(kept)
    return {"shards": total, "finished_when_killed": len(finished), "killed_after_seconds": killed_after,
            "kept_by_restart": len(kept), "written_by_restart": written,
            "restart_seconds": resumed["seconds"], "temporaries_left": len(list(folder.glob("*.tmp")))}


def plot(rows: list[dict], path: Path) -> None:
    """Peak memory of preparation and of the epoch against the image count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [r["images"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(sizes, [r["epoch"]["peak_rss_mb"] for r in rows], "o-", label="training epoch (peak RSS)")
    ax.plot(sizes, [r["prepare"]["peak_rss_mb"] for r in rows], "s-", label="preparation, parent (peak RSS)")
    ax.plot(sizes, [r["crops_in_memory_mb"] for r in rows], "x--", color="gray",
            label="the crops alone (the former cache held them all)")
    ax.set_xscale("log")
    ax.set_xlabel("images")
    ax.set_ylabel("MiB")
    ax.set_title(f"Crop store: memory against data size ({INPUT_SIZE}x{INPUT_SIZE} crops)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10000, 100000])
    parser.add_argument("--train-steps", type=int, default=30, help="trained batches per epoch (0: all)")
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "crop_store_benchmark")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, *rest = args.child
        result = child_prepare(Path(rest[0])) if kind == "prepare" else \
            child_epoch(Path(rest[0]), Path(rest[1]), int(rest[2]))
        print(json.dumps(result))
        return 0
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out / "cache", ignore_errors=True)  # every run prepares its stores afresh
    env = {**os.environ, "FACECMP_CACHE": str(out / "cache")}
    rows, began = [], time.perf_counter()
    load = [round(x, 2) for x in os.getloadavg()]
    for n in args.sizes:
        start = time.perf_counter()
        root = make_images(out / f"images-{n}", n)
        made = round(time.perf_counter() - start, 1)
        prepare = _child(["--child", "prepare", str(root)], env)
        run = out / f"run-{n}"
        subprocess.run(["rm", "-rf", str(run)], check=True)
        epoch = _child(["--child", "epoch", str(root), str(run), str(args.train_steps)], env)
        rows.append({"images": n, "images_seconds": made, "prepare": prepare, "epoch": epoch,
                     "crops_in_memory_mb": round(n * INPUT_SIZE * INPUT_SIZE * 3 / 2**20, 1)})
        print(json.dumps(rows[-1]), flush=True)
    resume = kill_and_resume(out / f"images-{max(args.sizes)}", out / "cache-kill")
    print(json.dumps({"kill_and_resume": resume}), flush=True)
    command = ["python", "tools/crop_store_benchmark.py", *(sys.argv[1:] if argv is None else argv)]
    report = {"command": " ".join(command),
              "input_size": INPUT_SIZE, "train_steps": args.train_steps, "rows": rows, "kill_and_resume": resume,
              "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                          "load_before": load, "load_after": [round(x, 2) for x in os.getloadavg()]},
              "seconds": round(time.perf_counter() - began, 1)}
    (out / "crop_store_benchmark.json").write_text(json.dumps(report, indent=1))
    plot(rows, out / "crop_store_benchmark.png")
    print(f"wrote {out / 'crop_store_benchmark.json'} and {out / 'crop_store_benchmark.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
