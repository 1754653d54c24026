"""How often each face detector finds face crops pasted into larger, photo-like canvases.

Face Mask 12K's images are face crops; `facecmp mask` meets faces inside photos. Each crop is
pasted at a seeded random place and size into a canvas cut from a seeded random LFW photo
(blurred, so its own face rarely competes), and a detector counts as finding it when one of
its boxes overlaps the pasted crop by an intersection-over-union of at least 0.3.

Usage:
    python tools/canvas_detection.py --faces $FACECMP_DATA/facemask12k/Test/WithMask \\
        [--backgrounds $FACECMP_DATA/lfw] [--detectors mtcnn mtcnn-masked haar] [--seed 0] [--out JSON]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from facecmp.datasets import data_root  # noqa: E402
from facecmp.detect import DETECTORS, detect_faces  # noqa: E402
from facecmp.errors import FacecmpError, one_line_errors  # noqa: E402
from facecmp.images import is_image_name, load_rgb  # noqa: E402


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def on_canvas(face: np.ndarray, background: np.ndarray, rng: np.random.Generator
              ) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """The face crop pasted into a canvas 2.5-4x its size cut from a blurred background photo,
    and where it was pasted."""
    side = int(rng.integers(80, 161))  # the pasted face's width in pixels
    h = max(2, round(face.shape[0] * side / face.shape[1]))
    face = cv2.resize(face, (side, h), interpolation=cv2.INTER_AREA if side < face.shape[1] else cv2.INTER_LINEAR)
    cw, ch = int(side * rng.uniform(2.5, 4.0)), int(h * rng.uniform(2.5, 4.0))
    canvas = cv2.GaussianBlur(cv2.resize(background, (cw, ch)), (0, 0), 6)
    x, y = int(rng.integers(0, cw - side + 1)), int(rng.integers(0, ch - h + 1))
    canvas[y : y + h, x : x + side] = face
    return canvas, (float(x), float(y), float(x + side), float(y + h))


def measure(faces: list[Path], backgrounds: list[Path], detectors: list[str], seed: int) -> dict:
    """Per detector: crops found, and the list of those it missed."""
    rng = np.random.default_rng(seed)
    found = {d: [] for d in detectors}
    for i, path in enumerate(faces):
        face = load_rgb(path)
        canvas, box = on_canvas(face, load_rgb(backgrounds[int(rng.integers(len(backgrounds)))]), rng)
        for d in detectors:
            found[d].append(any(iou(f.box, box) >= 0.3 for f in detect_faces(canvas, d)))
        if (i + 1) % 100 == 0:
            print(f"  {i + 1}/{len(faces)}", file=sys.stderr, flush=True)
    return {d: {"found": int(sum(v)), "total": len(v), "rate": sum(v) / max(len(v), 1),
                "missed": [str(p) for p, ok in zip(faces, v) if not ok]} for d, v in found.items()}


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faces", type=Path, required=True, help="folder of face crops")
    ap.add_argument("--backgrounds", type=Path, default=None, help="photos to cut canvases from (default: LFW)")
    ap.add_argument("--detectors", nargs="+", choices=DETECTORS, default=list(DETECTORS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = ap.parse_args(argv)
    faces = sorted(p for p in args.faces.rglob("*") if p.is_file() and is_image_name(p))
    backgrounds = sorted((args.backgrounds or data_root() / "lfw").rglob("*.jpg"))[::7]
    if not faces or not backgrounds:
        raise FacecmpError(f"no face crops in {args.faces}" if not faces else "no background photos found")
    result = measure(faces, backgrounds, args.detectors, args.seed)
    for d, r in result.items():
        print(f"{d}: found {r['found']} of {r['total']} pasted faces ({100 * r['rate']:.1f}%)")
    if args.out:
        args.out.write_text(json.dumps({"faces": str(args.faces), "seed": args.seed, **result}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
