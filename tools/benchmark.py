"""Speed and memory of facecmp (ResNet18, 64x64, batch 64) against the same network in PyTorch.

Usage:
    python tools/benchmark.py [--quick] [--model DIR] [--data ROOT] [--out outputs/bench]

Writes OUT/bench.json (every number) and OUT/bench.md (the table it prints).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

BATCH = 64
PAPER = {"startup_s": 1.42, "compare_ms": 14.0}
SIZES = {  # warm-up and timed training steps, embedding images x repeats, facecmp/PyTorch
    # rounds (interleaved, so a machine whose speed drifts affects both sides alike), photos,
    # pairs, cold runs
    "full": dict(warm=3, steps=20, embed=1024, reps=2, rounds=3, photos=200, pairs=50, cold=5,
                 splits=3),
    "quick": dict(warm=1, steps=2, embed=128, reps=1, rounds=1, photos=5, pairs=3, cold=2,
                  splits=1),
}
NET_KEYS = ("train_random", "train_real", "embed_random", "embed_real")
# A cold `facecmp compare` done step by step, each step timed: run in a fresh interpreter.
SPLIT_SCRIPT = r"""
import json, sys, time
T, out = [time.perf_counter()], {}
def lap(key): T.append(time.perf_counter()); out[key] = T[-1] - T[-2]
model, a, b, det, metric = sys.argv[1:6]
det = None if det == "-" else det
import facecmp, facecmp.api, facecmp.cli
from facecmp import detect
lap("import_facecmp")
from facecmp.runtime import import_paddle
import_paddle(); lap("import_paddle")
fm = facecmp.load_model(model); fm.embedder; lap("model_load")
if det or fm.meta.detects:
    detect._mtcnn()
lap("detector_init")
facecmp.compare(a, b, fm, metric, detector=det); lap("compare")
print(json.dumps(out))
"""
# Runs a command and reports its wall time and peak RSS. The benchmark does not spawn the
# command itself: a child's ru_maxrss starts from its parent's RSS at fork, which is large here.
LAUNCHER = r"""
import json, os, subprocess, sys, time
t = time.perf_counter()
proc = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(proc.pid, 0)
proc.returncode = os.waitstatus_to_exitcode(status)
with open(sys.argv[1], "w") as f:
    json.dump([time.perf_counter() - t, usage.ru_maxrss / 1024], f)
sys.exit(proc.returncode)
"""


def torch_resnet18(classes: int = 0):
    """ResNet18 (BasicBlock [2,2,2,2]) in plain PyTorch: 512-d pooled output, linear head if classes."""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
            self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
            self.down = None
            if stride != 1 or cin != cout:
                self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            skip = x if self.down is None else self.down(x)
            return torch.relu(self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))) + skip)

    layers = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
    for cin, cout, stride in ((64, 64, 1), (64, 128, 2), (128, 256, 2), (256, 512, 2)):
        layers += [Block(cin, cout, stride), Block(cout, cout, 1)]
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()] + ([nn.Linear(512, classes)] if classes else [])
    return nn.Sequential(*layers)


def spread(items: list, n: int) -> list:
    """n items spread evenly over a list."""
    return items[:: max(1, len(items) // max(1, n))][:n]


def resolve_model(arg: Path | None, tmp: Path) -> tuple[Path, str]:
    """--model, else the bundled model, else a fresh untrained one in tmp; with which it was."""
    from facecmp.errors import FacecmpError
    from facecmp.zoo import default_model
    if arg:
        return arg, "given"
    try:
        return default_model(), "bundled"
    except FacecmpError:
        pass
    from facecmp.config import CropConfig, load_config
    from facecmp.meta import ModelMeta
    from facecmp.modeldir import save_model
    from facecmp.models import build_net
    cfg = load_config("identity")  # meta as the trainer writes it, with aligned crops
    meta = ModelMeta.from_config(cfg, num_classes=2, metric="euclid", thresholds={"euclid": 1.0})
    meta.crop = CropConfig(method="align", detector="mtcnn")
    save_model(tmp / "model", build_net(cfg.model, 2), meta, with_head=False)
    return tmp / "model", "untrained"


def embed_ips(embed: Callable[[np.ndarray], object], crops: np.ndarray, reps: int) -> float:
    """Images/s of embed(crops) after one warm-up batch (oneDNN builds its kernels there)."""
    embed(crops[:BATCH])
    t = time.perf_counter()
    for _ in range(reps):
        embed(crops)
    return reps * len(crops) / (time.perf_counter() - t)


def paddle_train_ips(crops: np.ndarray, labels: np.ndarray, classes: int, meta, n: dict) -> float:
    """Images/s of facecmp training through paddle.Model.fit, as facecmp.trainer sets it up."""
    from facecmp import onednn
    from facecmp.config import load_config
    from facecmp.models import build_net, paddle
    from facecmp.losses import make_loss
    from facecmp.trainer import CropDataset
    cfg, size, ends = load_config("identity"), meta.input_size, []
    paddle.seed(0)
    net = build_net(cfg.model, classes)
    spec = paddle.static.InputSpec
    label = spec([None, 1], "int64", "label")
    model = paddle.Model(net, inputs=[spec([None, 3, size, size], "float32", "image"), label], labels=[label])
    model.prepare(paddle.optimizer.Adam(cfg.train.lr, parameters=net.parameters()), make_loss(cfg),
                  paddle.metric.Accuracy())

    class Timer(paddle.callbacks.Callback):
        def on_train_batch_end(self, step, logs=None):
            ends.append(time.perf_counter())

    with warnings.catch_warnings(), onednn.convolutions(net, cfg.train.onednn):
        warnings.filterwarnings("ignore", message="To copy construct from a tensor")
        model.fit(CropDataset(crops, labels, meta), batch_size=BATCH, epochs=1, shuffle=True, verbose=0,
                  num_workers=0, callbacks=[Timer()])
    return n["steps"] * BATCH / (ends[-1] - ends[n["warm"] - 1])


def torch_train_ips(crops: np.ndarray, labels: np.ndarray, classes: int, meta: dict, n: dict) -> float:
    """Images/s of the same training in PyTorch: per-image preprocessing, Adam, cross-entropy, accuracy."""
    import torch
    from facecmp.preprocess import to_tensor_batch
    net, ends = torch_resnet18(classes).train(), []
    opt, loss_fn = torch.optim.Adam(net.parameters(), lr=1e-3), torch.nn.CrossEntropyLoss()
    order = np.random.default_rng(0).permutation(len(crops))
    for s in range(len(crops) // BATCH):
        idx = order[s * BATCH:(s + 1) * BATCH]
        x = torch.from_numpy(np.stack([to_tensor_batch(crops[i][None], meta)[0] for i in idx]))
        y = torch.from_numpy(labels[idx])
        logits = net(x)
        loss = loss_fn(logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss.item(), (logits.argmax(1) == y).float().mean().item()  # read back, as Model.fit does
        ends.append(time.perf_counter())
    return n["steps"] * BATCH / (ends[-1] - ends[n["warm"] - 1])


def torch_worker(path: Path) -> int:
    """The PyTorch half, in its own process so the two runtimes never share threads."""
    import torch

    from facecmp.meta import ModelMeta
    from facecmp.preprocess import to_tensor_batch
    from facecmp.runtime import cpu_count
    torch.set_num_threads(cpu_count())
    z = np.load(path)
    meta, n = ModelMeta.from_dict(json.loads(str(z["meta"]))), json.loads(str(z["plan"]))
    out = {"version": torch.__version__, "threads": torch.get_num_threads()}
    backbone = torch_resnet18().eval()
    embed = torch.inference_mode()(lambda crops: [backbone(torch.from_numpy(to_tensor_batch(
        crops[i:i + BATCH], meta))) for i in range(0, len(crops), BATCH)])
    for kind in ("random", "real"):
        out[f"train_{kind}"] = torch_train_ips(z[f"crops_{kind}"], z[f"labels_{kind}"], n["classes"], meta, n)
        out[f"embed_{kind}"] = embed_ips(embed, z[f"embed_{kind}"], n["reps"])
    print(json.dumps(out))
    return 0


def run_worker(flag: str, inputs: Path) -> dict:
    """One side's numbers from a fresh process (see measure_networks), or why there are none."""
    if flag == "--torch-worker" and importlib.util.find_spec("torch") is None:
        return {"error": "torch not installed"}
    proc = subprocess.run([sys.executable, __file__, flag, str(inputs)], capture_output=True, text=True)
    if proc.returncode:
        return {"error": f"{flag[2:]} failed: {proc.stderr.strip()[-300:]}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def train_worker(path: Path) -> int:
    """facecmp's training side, in a process of its own as `facecmp train` is."""
    from facecmp.meta import ModelMeta
    from facecmp.runtime import import_paddle
    import_paddle()
    z = np.load(path)
    meta, n = ModelMeta.from_dict(json.loads(str(z["meta"]))), json.loads(str(z["plan"]))
    print(json.dumps({f"train_{kind}": paddle_train_ips(z[f"crops_{kind}"], z[f"labels_{kind}"], n["classes"],
                                                         meta, n) for kind in ("random", "real")}))
    return 0


def measure_networks(model_dir: Path, data: Path, n: dict, tmp: Path) -> dict:
    """Training and embedding throughput, facecmp and PyTorch, on random images and LFW crops."""
    from facecmp.config import CropConfig, load_config
    from facecmp.embedder import Embedder
    from facecmp.meta import ModelMeta
    from facecmp.preprocess import load_face
    meta = ModelMeta.from_config(load_config("identity"))
    meta.crop = CropConfig(method="center", fraction=1.0)
    files = spread(sorted((data / "lfw").glob("*/*.jpg")), (n["warm"] + n["steps"]) * BATCH)
    names = sorted({p.parent.name for p in files})
    real = np.stack([load_face(p, meta).pixels for p in files])
    rng = np.random.default_rng(0)
    sets = {"crops_random": rng.integers(0, 256, real.shape, dtype=np.uint8), "crops_real": real,
            "labels_random": rng.integers(0, len(names), len(files)).astype(np.int64),
            "labels_real": np.asarray([names.index(p.parent.name) for p in files], np.int64)}
    for kind in ("random", "real"):
        sets[f"embed_{kind}"] = np.resize(sets[f"crops_{kind}"], (n["embed"],) + real.shape[1:])
    inputs = tmp / "inputs.npz"
    np.savez(inputs, meta=json.dumps(meta.to_dict()), plan=json.dumps({**n, "classes": len(names)}), **sets)
    embedder = Embedder(model_dir, flip=False)
    rounds = []
    for _ in range(n["rounds"]):
        # facecmp's training runs in a fresh process, like PyTorch's side: once a paddle.inference
        # predictor has run in a process, later training in it is slower (measured here: the
        # oneDNN path 73 -> 45-50 img/s, the plain one 38 -> 34), and `facecmp train` never embeds first
        ours = run_worker("--train-worker", inputs)
        if "error" in ours:
            raise SystemExit(f"facecmp training: {ours['error']}")
        for kind in ("random", "real"):
            ours[f"embed_{kind}"] = embed_ips(embedder.embed_crops, sets[f"embed_{kind}"], n["reps"])
        rounds.append({"facecmp": ours, "torch": run_worker("--torch-worker", inputs)})
    res = {"classes": len(names), "train_images": len(files), "embed_images": n["embed"],
           "fast_path": embedder.runner.predictor is not None, "rounds": rounds}
    res.update({k: statistics.median(r["facecmp"][k] for r in rounds) for k in NET_KEYS})
    failed = next((r["torch"] for r in rounds if "error" in r["torch"]), None)
    if failed:
        res["torch"] = failed
    else:
        res["torch"] = {**{k: rounds[0]["torch"][k] for k in ("version", "threads")},
                        **{k: statistics.median(r["torch"][k] for r in rounds) for k in NET_KEYS}}
        # the ratio of each round, then their median: both sides of a round ran minutes apart
        res["ratios"] = {k: statistics.median(r["facecmp"][k] / r["torch"][k] for r in rounds)
                         for k in NET_KEYS}
    return res


def detection_speed(paths: list[Path], size: int) -> dict:
    """MTCNN detection + five-point alignment of decoded photos: median ms and images/s."""
    from facecmp import align, detect
    from facecmp.images import load_rgb
    detect.detect_faces(load_rgb(paths[0]))  # builds the nets
    times, found = [], 0
    for path in paths:
        rgb = load_rgb(path)
        t = time.perf_counter()
        faces = detect.detect_faces(rgb, "mtcnn")
        if faces:
            align.align_face(rgb, detect.pick_face(faces)[0].landmarks, size)
            found += 1
        times.append(time.perf_counter() - t)
    return {"images": len(paths), "faces": found, "median_ms": 1000 * statistics.median(times),
            "images_per_s": len(paths) / sum(times)}


def timed_child(cmd: list[str], tmp: Path) -> tuple[float, float, str]:
    """Run cmd in a fresh process: wall seconds, its own peak RSS (MB) and its stdout."""
    proc = subprocess.run([sys.executable, "-c", LAUNCHER, str(tmp / "child.json")] + cmd,
                          capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd[:3])} ... failed: {proc.stderr.strip()[-400:]}")
    wall, rss = json.loads((tmp / "child.json").read_text())
    return wall, rss, proc.stdout


def warm_compare(fm, pairs: list, metric: str, det: str | None) -> dict:
    """Per-pair latency, model loaded: facecmp.compare (read + detect + align both, embed,
    distance), and its detection + alignment part alone."""
    import facecmp
    from facecmp.preprocess import load_faces
    laps = []
    warm = min(5, len(pairs))  # oneDNN settles over the first few passes
    for i, pair in enumerate(pairs[:warm] + pairs):  # the first ones warm up
        t = time.perf_counter()
        try:
            facecmp.compare(pair.path_a, pair.path_b, fm, metric, detector=det)
        except facecmp.FacecmpError:
            continue
        mid = time.perf_counter()
        list(load_faces([pair.path_a, pair.path_b], fm.meta, det))
        if i >= warm:
            laps.append((mid - t, time.perf_counter() - mid))
    ms = {"median_ms": [a for a, _ in laps], "detect_align_ms": [b for _, b in laps]}
    return {"pairs": len(laps), "failed": len(pairs) - len(laps),
            **{k: 1000 * statistics.median(v) if v else None for k, v in ms.items()}}


def cut_crops(fm, pairs: list, tmp: Path) -> list:
    """The pairs' faces detected and aligned once, saved as PNG crops (the paper's setting:
    a comparison of two face images that are already cut out)."""
    from types import SimpleNamespace

    from PIL import Image

    from facecmp.errors import FacecmpError
    from facecmp.preprocess import load_face
    out, folder = [], tmp / "crops"
    folder.mkdir(exist_ok=True)
    for i, pair in enumerate(pairs):
        try:
            files = []
            for side, path in (("a", pair.path_a), ("b", pair.path_b)):
                files.append(folder / f"{i}{side}.png")
                Image.fromarray(load_face(path, fm.meta).pixels.squeeze()).save(files[-1])
        except FacecmpError:
            continue
        out.append(SimpleNamespace(path_a=files[0], path_b=files[1]))
    return out


def measure_compare(model_dir: Path, data: Path, n: dict, tmp: Path) -> dict:
    """facecmp compare: cold CLI wall time and peak RSS, a cold-process split, warm per-pair latency."""
    import facecmp
    from facecmp.pairs import read_pairs
    pairs = read_pairs(data / "lfw-pairs.txt")
    fm = facecmp.load_model(model_dir)
    emb = fm.embedder  # exports the model, if needed, before any cold run
    try:
        metric, flags = fm.meta.threshold_for()[0], []
    except facecmp.FacecmpError:  # an uncalibrated model: any threshold times the same
        metric, flags = "euclid", ["--metric", "euclid", "--threshold", "1"]
    det = None if fm.meta.detects else "mtcnn"
    a, b = str(pairs[0].path_a), str(pairs[0].path_b)
    exe = Path(sys.executable).with_name("facecmp")
    cli = ([str(exe)] if exe.exists() else [sys.executable, "-m", "facecmp.cli"]) + \
        ["compare", a, b, "--model", str(model_dir)] + flags + (["--detector", det] if det else [])
    runs = [timed_child(cli, tmp) for _ in range(n["cold"] + 1)][1:]  # the first only warms the disk cache
    (tmp / "cold_split.py").write_text(SPLIT_SCRIPT)
    splits = []
    for _ in range(n["splits"]):
        wall, _, out = timed_child([sys.executable, str(tmp / "cold_split.py"), str(model_dir), a, b,
                                    det or "-", metric], tmp)
        part = json.loads(out.strip().splitlines()[-1])
        splits.append({**part, "python_start_exit": wall - sum(part.values())})
    walls = [r[0] for r in runs]
    warm_pairs = spread(pairs, n["pairs"])
    crops = cut_crops(fm, warm_pairs, tmp)
    return {"cli": cli, "cold_runs_s": walls, "cold_median_s": statistics.median(walls),
            "cold_peak_rss_mb": max(r[1] for r in runs), "detector": det or "model's own",
            "split_s": {k: statistics.median(s[k] for s in splits) for k in splits[0]},
            "warm": warm_compare(fm, warm_pairs, metric, det),
            "flip": emb.flip, "warm_crops": warm_compare(fm, crops, metric, "none"),
            # the model's other setting: with the test-time flip a pass holds 4 images, not 2
            "warm_crops_other_flip": warm_compare(facecmp.load_model(model_dir, flip=not emb.flip), crops,
                                                  metric, "none")}


def report(res: dict) -> str:
    """The result tables as markdown."""
    def table(header: list[str], rows: list[list[str]]) -> str:
        return "\n".join("| " + " | ".join(r) + " |" for r in [header, ["---"] * len(header)] + rows)

    net, tch, cmp = res["networks"], res["networks"]["torch"], res["compare"]
    rows = []
    for what, key in (("training", "train"), ("embedding", "embed")):
        for kind, label in (("random", "random images"), ("real", "LFW crops")):
            ours, theirs = net[f"{key}_{kind}"], tch.get(f"{key}_{kind}")
            theirs_s, ratio = ((f"{theirs:.1f}", f"{net['ratios'][f'{key}_{kind}']:.2f}") if theirs
                               else (tch["error"], "-"))
            rows.append([f"{what}, {label} (img/s)", f"{ours:.1f}", theirs_s, ratio])
    other = [[f"detect + align, {name} photos", f"{d['median_ms']:.1f} ms/img median, "
              f"{d['images_per_s']:.1f} img/s ({d['faces']}/{d['images']} faces)", ""]
             for name, d in res["detection"].items()]
    split = ", ".join(f"{k} {v:.2f}" for k, v in cmp["split_s"].items())
    w = cmp["warm"]
    warm = (f"{w['median_ms']:.1f} ms (of which detect + align {w['detect_align_ms']:.1f})"
            if w["pairs"] else "no faces found")
    warm_crops, warm_other = (f"{c['median_ms']:.1f} ms" if c["pairs"] else "no faces found"
                              for c in (cmp["warm_crops"], cmp["warm_crops_other_flip"]))
    setting = "flip-averaged" if cmp["flip"] else "one embedding per face"
    other_setting = "one embedding per face (no flip)" if cmp["flip"] else "flip-averaged (4 images a pass)"
    rss = f"{res['peak_rss_mb']:.0f} MB / {cmp['cold_peak_rss_mb']:.0f} MB"
    cold = f"{cmp['cold_median_s']:.2f} s"
    other += [["compare, cold CLI (median wall)", cold, f"paper {PAPER['startup_s']} s"],
              ["cold compare split (s)", split, ""],
              ["compare, warm per pair of photos (median)", warm, ""],
              [f"compare, warm per pair of face crops (median; {setting}, the model's setting)", warm_crops,
               f"paper {PAPER['compare_ms']:.0f} ms (GPU)"],
              [f"same, {other_setting}; not the model's setting", warm_other,
               f"paper {PAPER['compare_ms']:.0f} ms (GPU)"],
              ["peak RSS: benchmark / cold compare", rss, ""]]
    head = ["ResNet18 64x64, batch 64", "facecmp", "PyTorch CPU",
            f"facecmp / PyTorch (median of {len(net['rounds'])} rounds)"]
    return (table(head, rows) + "\n\n"
            + table(["measurement", "facecmp", "reference"], other) + "\n")


def main(argv: list[str] | None = None) -> int:
    """Run every measurement, print the tables, write bench.json and bench.md."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a few iterations only (smoke test)")
    ap.add_argument("--model", type=Path, help="model directory (default: bundled, else untrained)")
    ap.add_argument("--data", type=Path, help="data root holding lfw/ (default: $FACECMP_DATA)")
    ap.add_argument("--out", type=Path, default=Path("outputs/bench"), help="default: outputs/bench")
    ap.add_argument("--torch-worker", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--train-worker", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.torch_worker:
        return torch_worker(args.torch_worker)
    if args.train_worker:
        return train_worker(args.train_worker)
    data = args.data or __import__("facecmp.datasets").datasets.data_root()
    if not (data / "lfw").is_dir() or not (data / "lfw-pairs.txt").is_file():
        raise SystemExit(f"{data}: no lfw/ and lfw-pairs.txt (set --data or FACECMP_DATA)")
    n = SIZES["quick" if args.quick else "full"]
    from facecmp.runtime import cpu_count, import_paddle

    paddle = import_paddle()  # sets the thread and MKL defaults first, as every facecmp command does
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    with tempfile.TemporaryDirectory(prefix="facecmp-bench-") as tmp:
        model_dir, kind = resolve_model(args.model, Path(tmp))
        env = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "MKL_DEBUG_CPU_TYPE")}
        res = {"env": {"cpu": cpu, "cores": cpu_count(), "python": platform.python_version(),
                       "paddle": paddle.__version__, "model": str(model_dir), "model_kind": kind,
                       "quick": args.quick, "load_avg_start": os.getloadavg(), **env}, "sizes": n}
        res["networks"] = measure_networks(model_dir, data, n, Path(tmp))
        photos = {name: spread(sorted((data / folder).glob("*/*.jpg")), n["photos"])
                  for name, folder in (("LFW", "lfw"), ("CelebA", "celeba-faces"))}
        res["detection"] = {k: detection_speed(v, 64) for k, v in photos.items() if v}
        res["compare"] = measure_compare(model_dir, data, n, Path(tmp))
    res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    res["env"]["load_avg_end"] = os.getloadavg()
    table = report(res)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench.json").write_text(json.dumps(res, indent=1, default=str) + "\n")
    (args.out / "bench.md").write_text(table)
    print(f"wrote {args.out / 'bench.json'} and {args.out / 'bench.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
