"""How well each face detector finds masked faces, and how many faces it finds that are not there.

Usage:
    python tools/masked_detection.py --masked outputs/masked_dev [--every 4]
        [--detectors mtcnn mtcnn-masked] [--passes 0.3,0.3,0.7 0.1,0.1,0.7 ...]
        [--non-faces 200] [--seed 0] --out outputs/masked_dev/detection

--masked is a folder made by tools/mask_pairs.py: its landmarks.json holds, for every
masked copy, the box and five landmarks of the face on the unmasked original, the truth here.
For each masked copy (every --every-th, in name order) and its unmasked original, a detector
is scored on the face it would hand to the aligner (detect.pick_face: the most confident):
- found: that face's box overlaps the true box by IoU >= 0.5 and it has landmarks;
- its landmark error: the mean distance of its five landmarks from the true ones, in eye
  distances (the aligner's unit); "aligned" counts errors <= 0.2.
False faces: --non-faces images with no face in them (seeded: half noise, flat colours,
gradients and stripes; half corners of LFW photos of the same folds, where the LFW-a
alignment leaves background), and the detector's count of images where it finds a face.

--passes adds variants of the masked pass (P-, R-, O-Net thresholds, with the masked
O-Net), run where plain MTCNN finds nothing, for choosing the thresholds.

Writes OUT/summary.json, OUT/images.csv (per image and detector) and OUT/landmark_error.png.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from facecmp.detect import DETECTORS, Face, box_iou, detect_faces, merge_passes, pick_face  # noqa: E402
from facecmp.errors import FacecmpError, NoFaceError, one_line_errors  # noqa: E402
from facecmp.images import load_rgb  # noqa: E402

FOUND_IOU = 0.5
ALIGNED_NME = 0.2
Detect = Callable[[np.ndarray], list[Face]]


def landmark_error(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean landmark distance in units of the true eye distance."""
    eyes = float(np.linalg.norm(truth[1] - truth[0]))
    return float(np.linalg.norm(found - truth, axis=1).mean() / max(eyes, 1e-6))


def score_image(detect: Detect, rgb: np.ndarray, box, marks: np.ndarray) -> dict:
    """found / landmark error of the face a detector hands on, against the truth."""
    try:
        face, _ = pick_face(detect(rgb))
    except NoFaceError:
        return {"found": False, "iou": 0.0, "nme": None}
    iou = box_iou(face.box, box)
    nme = landmark_error(face.landmarks, marks) if face.landmarks is not None else None
    return {"found": iou >= FOUND_IOU and nme is not None, "iou": round(iou, 3),
            "nme": None if nme is None else round(nme, 4)}


def non_face_images(count: int, backgrounds: list[Path], seed: int) -> list[np.ndarray]:
    """Images without a face: synthetic textures, then LFW photo corners, each 200x200."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count // 2):
        kind = i % 4
        if kind == 0:
            img = rng.integers(0, 256, (200, 200, 3), dtype=np.uint8)
        elif kind == 1:
            img = np.full((200, 200, 3), rng.integers(0, 256, 3), np.uint8)
        elif kind == 2:
            ramp = np.linspace(0, 1, 200)[None, :, None] * rng.integers(0, 256, 3)
            img = np.broadcast_to(ramp, (200, 200, 3)).astype(np.uint8)
        else:
            period = int(rng.integers(6, 40))
            img = np.zeros((200, 200, 3), np.uint8)
            img[(np.arange(200) // period) % 2 == 1] = rng.integers(0, 256, 3)
        out.append(np.ascontiguousarray(img))
    for i in range(count - count // 2):
        rgb = load_rgb(backgrounds[int(rng.integers(len(backgrounds)))])
        side, corner = 70, int(rng.integers(4))
        y = 0 if corner < 2 else rgb.shape[0] - side
        x = 0 if corner % 2 == 0 else rgb.shape[1] - side
        out.append(cv2.resize(np.ascontiguousarray(rgb[y:y + side, x:x + side]), (200, 200)))
    return out


def pass_detector(spec: str) -> tuple[str, Detect]:
    """'P,R,O' -> plain MTCNN, then where it finds nothing the masked pass at those thresholds;
    'alone:P,R,O' -> the masked pass alone; 'merge:P,R,O' -> both passes, merged as
    detect's "mtcnn-masked" merges them."""
    from facecmp.detect import _mtcnn

    mode, _, values = spec.rpartition(":")
    try:
        thresholds = tuple(float(v) for v in values.split(","))
    except ValueError:
        thresholds = ()
    if len(thresholds) != 3 or mode not in ("", "alone", "merge"):
        raise FacecmpError(f"--passes takes [alone:|merge:]P,R,O thresholds, got {spec!r}")

    def detect(rgb: np.ndarray) -> list[Face]:
        if mode == "alone":
            return _mtcnn().detect(rgb, thresholds, masked=True)
        plain = _mtcnn().detect(rgb)
        if mode == "merge":
            return merge_passes(plain, _mtcnn().detect(rgb, thresholds, masked=True))
        return plain or _mtcnn().detect(rgb, thresholds, masked=True)

    return f"masked pass{' ' + mode if mode else ''} {values}", detect


def evaluate(detectors: dict[str, Detect], items: list[tuple[str, dict]], masked_dir: Path,
             non_faces: list[np.ndarray]) -> tuple[dict, list[dict]]:
    """Summary per detector and rows per image."""
    rows, summary = [], {}
    for name, detect in detectors.items():
        start, per = time.time(), {"masked": [], "unmasked": []}
        for key, rec in items:
            marks, box = np.asarray(rec["landmarks"]), rec["box"]
            for version, path in (("masked", masked_dir / "images" / Path(key).with_suffix(".jpg")),
                                  ("unmasked", Path(rec["source"]))):
                got = score_image(detect, load_rgb(path), box, marks)
                per[version].append(got)
                rows.append({"detector": name, "image": key, "version": version, **got})
        false = sum(bool(detect(img)) for img in non_faces)
        summary[name] = {"seconds": round(time.time() - start, 1), "false_faces": false,
                         "non_face_images": len(non_faces)}
        for version, got in per.items():
            nmes = [g["nme"] for g in got if g["found"]]
            summary[name][version] = {
                "images": len(got), "found": round(100 * np.mean([g["found"] for g in got]), 2),
                "aligned": round(100 * np.mean([g["found"] and g["nme"] <= ALIGNED_NME for g in got]), 2),
                "median_landmark_error": round(float(np.median(nmes)), 4) if nmes else None}
        print(f"{name}: {json.dumps(summary[name])}", file=sys.stderr, flush=True)
    return summary, rows


def plot_errors(rows: list[dict], path: Path) -> None:
    """Cumulative landmark error on the masked copies, one line per detector."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name in dict.fromkeys(r["detector"] for r in rows):
        mine = [r for r in rows if r["detector"] == name and r["version"] == "masked"]
        errs = np.sort([r["nme"] if r["found"] else np.inf for r in mine])
        ax.plot(errs, np.arange(1, len(errs) + 1) / len(errs) * 100, label=name)
    ax.axvline(ALIGNED_NME, color="gray", lw=0.8, ls="--")
    ax.set_xlim(0, 0.5)
    ax.set_xlabel("landmark error (eye distances)")
    ax.set_ylabel("masked faces found within it (%)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--masked", type=Path, required=True)
    parser.add_argument("--every", type=int, default=4)
    parser.add_argument("--detectors", nargs="*", default=["mtcnn", "mtcnn-masked"], choices=DETECTORS)
    parser.add_argument("--passes", nargs="*", default=[])
    parser.add_argument("--non-faces", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        records = json.loads((args.masked / "landmarks.json").read_text())
    except (OSError, ValueError) as exc:
        raise FacecmpError(f"cannot read {args.masked / 'landmarks.json'}: {exc}") from None
    items = [(k, r) for k, r in sorted(records.items()) if r.get("landmarks")][::args.every]
    detectors = {d: (lambda rgb, d=d: detect_faces(rgb, d)) for d in args.detectors}
    detectors.update(pass_detector(spec) for spec in args.passes)
    backgrounds = [Path(r["source"]) for _, r in items]
    summary, rows = evaluate(detectors, items, args.masked, non_face_images(args.non_faces, backgrounds, args.seed))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(
        {"masked": str(args.masked), "every": args.every, "found_iou": FOUND_IOU,
         "aligned_landmark_error": ALIGNED_NME, "detectors": summary}, indent=2) + "\n")
    with open(args.out / "images.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plot_errors(rows, args.out / "landmark_error.png")
    print("| detector | masked found | masked aligned | unmasked found | false faces |")
    print("|---|---|---|---|---|")
    for name, s in summary.items():
        print(f"| {name} | {s['masked']['found']}% | {s['masked']['aligned']}% | "
              f"{s['unmasked']['found']}% | {s['false_faces']}/{s['non_face_images']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
