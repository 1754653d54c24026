"""Wall time of `facecmp embed` on LFW images against a PyTorch CPU script doing the same work.

Usage:
    python tools/embed_vs_torch.py [--n 2000] [--quick] [--model DIR] [--data ROOT]

Each side is one whole process, timed from outside: read the images, centre-crop and resize
them as the model's metadata says, normalise, run ResNet18 in batches of 64, write an .npz.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchmark import resolve_model, spread, torch_resnet18  # noqa: E402

# The PyTorch side; torch_resnet18's source is placed above it, so the script stands alone.
TORCH_MAIN = r'''
import json, os, sys
import cv2
import numpy as np
import torch
from PIL import Image, ImageOps


def load(path, size, fraction, gray):
    """Decode, centre-crop (fraction of the shorter side, None: whole image), resize: uint8 HxWx3."""
    with Image.open(path) as img:
        rgb = np.asarray(ImageOps.exif_transpose(img).convert("RGB"))
    if fraction is not None:
        h, w = rgb.shape[:2]
        side = max(2, int(round(min(h, w) * fraction)))
        top, left = max(0, (h - side) // 2), max(0, (w - side) // 2)
        rgb = rgb[top:top + side, left:left + side]
    interp = cv2.INTER_AREA if min(rgb.shape[:2]) > size else cv2.INTER_LINEAR
    rgb = cv2.resize(rgb, (size, size), interpolation=interp)
    return np.repeat(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)[:, :, None], 3, 2) if gray else rgb


def main():
    files = open(sys.argv[1]).read().split("\n")
    cfg = json.loads(sys.argv[3])
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    net = torch_resnet18().eval()
    mean, std = np.float32(cfg["mean"]), np.float32(cfg["std"])
    crops = np.stack([load(p, cfg["size"], cfg["fraction"], cfg["gray"]) for p in files])
    out = []
    with torch.inference_mode():
        for i in range(0, len(crops), 64):
            x = ((crops[i:i + 64].astype(np.float32) / 255.0 - mean) / std).transpose(0, 3, 1, 2)
            x = torch.from_numpy(np.ascontiguousarray(x))
            v = net(x)
            out.append(((v + net(x.flip(3))) / 2 if cfg["flip"] else v).numpy())
    np.savez(sys.argv[2], paths=np.asarray(files), vectors=np.concatenate(out))
    print(f"embedded {len(files)} images -> {sys.argv[2]}")


main()
'''


def torch_script() -> str:
    """The standalone PyTorch embedding script."""
    return "\n".join(["from __future__ import annotations", inspect.getsource(torch_resnet18), TORCH_MAIN])


def preprocessing(model_dir: Path) -> dict:
    """What `facecmp embed --detector none` does to an image for this model, for the PyTorch side."""
    from facecmp.modeldir import open_model

    meta = open_model(model_dir)
    fraction = float(meta.crop.fraction) if meta.crop.method == "center" else None
    return {"size": meta.input_size, "fraction": fraction, "gray": meta.color == "gray",
            "mean": meta.mean, "std": meta.std, "flip": meta.embed_flip}


def wall(cmd: list[str]) -> float:
    """Seconds one command takes as a whole process; its output is shown only on failure."""
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t
    if proc.returncode:
        raise SystemExit(f"{Path(cmd[0]).name} failed:\n{proc.stderr.strip()[-800:]}")
    return seconds


def commands(model_dir: Path, files: list[Path], tmp: Path, tag: str) -> tuple[list[str], list[str]]:
    """The facecmp and the PyTorch command lines for one set of files."""
    exe = Path(sys.executable).with_name("facecmp")
    facecmp = [str(exe)] if exe.exists() else [sys.executable, "-m", "facecmp.cli"]
    facecmp += ["embed", "--detector", "none", "--model", str(model_dir), *map(str, files),
                "--out", str(tmp / f"facecmp-{tag}.npz")]
    (tmp / f"files-{tag}.txt").write_text("\n".join(map(str, files)))
    torch_cmd = [sys.executable, str(tmp / "torch_embed.py"), str(tmp / f"files-{tag}.txt"),
                 str(tmp / f"torch-{tag}.npz"), json.dumps(preprocessing(model_dir))]
    return facecmp, torch_cmd


def main(argv: list[str] | None = None) -> int:
    """Time both sides on the same LFW images and print the two times and their ratio."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="LFW images to embed (default 2000)")
    ap.add_argument("--quick", action="store_true", help="100 images (smoke test)")
    ap.add_argument("--model", type=Path, help="model directory (default: bundled, else untrained)")
    ap.add_argument("--data", type=Path, help="data root holding lfw/ (default: $FACECMP_DATA)")
    args = ap.parse_args(argv)
    data = args.data or __import__("facecmp.datasets").datasets.data_root()
    files = spread(sorted((data / "lfw").glob("*/*.jpg")), 100 if args.quick else args.n)
    if not files:
        raise SystemExit(f"{data / 'lfw'}: no images (set --data or FACECMP_DATA)")
    with tempfile.TemporaryDirectory(prefix="facecmp-embed-") as tmp:
        tmp = Path(tmp)
        model_dir, kind = resolve_model(args.model, tmp)
        (tmp / "torch_embed.py").write_text(torch_script())
        sides = ["facecmp", "torch"] if importlib.util.find_spec("torch") else ["facecmp"]
        for cmd in commands(model_dir, files[:64], tmp, "warm")[:len(sides)]:  # export and disk caches
            wall(cmd)
        times = [wall(cmd) for cmd in commands(model_dir, files, tmp, "timed")[:len(sides)]]
        shapes = [np.load(tmp / f"{side}-timed.npz")["vectors"].shape for side in sides]
    print(f"{len(files)} LFW images, model {model_dir} ({kind}), batch 64, "
          f"{len(os.sched_getaffinity(0))} cores; output shapes {', '.join(map(str, shapes))}")
    print(f"facecmp embed:  {times[0]:7.2f} s  ({len(files) / times[0]:6.1f} img/s)")
    if len(times) < 2:
        print("PyTorch script: torch not installed")
        return 0
    print(f"PyTorch script: {times[1]:7.2f} s  ({len(files) / times[1]:6.1f} img/s)")
    print(f"facecmp / PyTorch time: {times[0] / times[1]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
