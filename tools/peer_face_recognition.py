"""Face verification by the peer library face_recognition (dlib), for comparison tables.

Scored as its users do: `load_image_file`, `face_locations` (HOG, upsample 1), `face_encodings`
of the face whose box centre is nearest the image centre, euclidean `face_distance`, "same" at
distance <= 0.6 (its default tolerance). A pair with an image without a face (or unreadable) is
an error pair: WRONG in every accuracy, left out of the ROC AUC and of the threshold search.
The k-fold threshold is the lowest one maximising accuracy on the other folds. Encodings are
cached per absolute image path across the pair files of one run. Runs in its own environment
(`pip install dlib-bin face_recognition_models numpy Pillow`, then
`pip install --no-deps face_recognition`); it imports nothing from facecmp.

Usage:
    /work/fr-env/bin/python tools/peer_face_recognition.py [--images LFW_ROOT] [--folds 1-5] \\
        PAIRS [PAIRS ...] --out DIR

PAIRS: an LFW pairs.txt (images ROOT/<name>/<name>_%04d.jpg, fold = block index) or a CSV
`path_a,path_b,same[,fold]` (relative paths from the CSV's folder). Writes DIR/<stem>.csv per
file (path_a,path_b,same,fold,distance,verdict,error) and DIR/summary.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import NamedTuple

import numpy as np

TOLERANCE = 0.6


class Pair(NamedTuple):
    path_a: Path
    path_b: Path
    same: bool
    fold: int


def read_pairs(path: Path, images: Path | None = None) -> list[Pair]:
    """Pairs of an LFW pairs.txt (images under `images`) or of a path_a,path_b,same[,fold] CSV."""
    lines = [ln for ln in Path(path).read_text(encoding="utf-8-sig").splitlines() if ln.strip()]
    head = lines[0].split()
    if head and len(head) <= 2 and all(f.isdigit() for f in head):
        n = int(head[-1])
        root = Path(images) if images is not None else Path(path).parent
        img = lambda name, num: root / name / f"{name}_{int(num):04d}.jpg"  # noqa: E731
        pairs = []
        for k, line in enumerate(lines[1:]):
            f = line.split()
            b = img(f[0], f[2]) if len(f) == 3 else img(f[2], f[3])
            pairs.append(Pair(img(f[0], f[1]), b, len(f) == 3, k // (2 * n) + 1))
        return pairs
    base = Path(path).resolve().parent
    rows = list(csv.DictReader(lines))
    resolve = lambda p: Path(p) if Path(p).is_absolute() else base / p  # noqa: E731
    return [Pair(resolve(r["path_a"].strip()), resolve(r["path_b"].strip()),
                 r["same"].strip().lower() in ("1", "true", "same", "yes"),
                 int(r["fold"]) if r.get("fold") not in (None, "") else 1) for r in rows]


def parse_folds(spec: str) -> set[int]:
    """Fold numbers of a spec such as "3", "1-5" or "1,3,7-8"."""
    folds: set[int] = set()
    for part in spec.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not m:
            raise ValueError(f"bad fold selection {spec!r}")
        folds.update(range(int(m[1]), int(m[2] or m[1]) + 1))
    return folds


def select_folds(pairs: list[Pair], folds: set[int] | None) -> list[Pair]:
    """The pairs whose fold is in `folds` (all of them for None)."""
    return [p for p in pairs if folds is None or p.fold in folds]


def accuracy(dist: np.ndarray, same: np.ndarray, threshold: float) -> float:
    """Share of pairs judged right ("same" when dist <= threshold); NaN distances count wrong."""
    ok = ~np.isnan(dist) & ((np.nan_to_num(dist, nan=np.inf) <= threshold) == same)
    return float(ok.mean()) if len(ok) else float("nan")


def best_threshold(dist: np.ndarray, same: np.ndarray) -> float:
    """The threshold (a midpoint between sorted distances) maximising accuracy on non-NaN pairs."""
    keep = ~np.isnan(dist)
    d, s = dist[keep], same[keep]
    u = np.unique(d)
    if not len(u):
        return TOLERANCE
    cands = np.concatenate([[u[0] - 1e-6], (u[:-1] + u[1:]) / 2, [u[-1] + 1e-6]])
    return float(max(cands, key=lambda t: accuracy(d, s, t)))


def kfold(dist: np.ndarray, same: np.ndarray, folds: np.ndarray) -> dict | None:
    """Per held-out fold: threshold from the other folds, accuracy on it (errors wrong)."""
    ids = sorted(set(folds.tolist()))
    if len(ids) < 2:
        return None
    ths, accs = [], []
    for f in ids:
        t = best_threshold(dist[folds != f], same[folds != f])
        ths.append(round(t, 4))
        accs.append(accuracy(dist[folds == f], same[folds == f], t))
    return {"mean_accuracy": float(np.mean(accs)), "fold_accuracy": dict(zip(map(str, ids), accs)),
            "thresholds": dict(zip(map(str, ids), ths))}


def roc_auc(dist: np.ndarray, same: np.ndarray) -> float | None:
    """ROC AUC of -distance for "same" over non-NaN pairs (ties count half); None if undefined."""
    keep = ~np.isnan(dist)
    d, s = dist[keep], same[keep].astype(bool)
    pos, neg = int(s.sum()), int((~s).sum())
    if not pos or not neg:
        return None
    _, inv, counts = np.unique(-d, return_inverse=True, return_counts=True)
    avg_rank = (np.cumsum(counts) - (counts - 1) / 2.0)[inv]
    return float((avg_rank[s].sum() - pos * (pos + 1) / 2) / (pos * neg))


class Encoder:
    """face_recognition encodings per absolute image path, cached; None with a reason when none."""

    def __init__(self) -> None:
        import face_recognition  # only here, so the module imports without it

        self.fr, self.cache, self.done = face_recognition, {}, 0

    def __call__(self, path: Path) -> tuple[np.ndarray | None, str]:
        key = str(Path(path).resolve())
        if key not in self.cache:
            try:
                img = self.fr.load_image_file(key)
                boxes = self.fr.face_locations(img)  # HOG, upsample 1
                if not boxes:
                    self.cache[key] = (None, "no face")
                else:
                    cy, cx = img.shape[0] / 2, img.shape[1] / 2  # box: top, right, bottom, left
                    box = min(boxes, key=lambda b: ((b[0] + b[2]) / 2 - cy) ** 2
                              + ((b[1] + b[3]) / 2 - cx) ** 2)
                    self.cache[key] = (self.fr.face_encodings(img, [box])[0], "")
            except Exception as exc:  # an unreadable image becomes an error pair
                msg = f"unreadable: {type(exc).__name__}: {exc}"
                self.cache[key] = (None, msg.replace("\n", " "))
            self.done += 1
            if self.done % 100 == 0:
                print(f"{self.done} images encoded", file=sys.stderr, flush=True)
        return self.cache[key]


def score_file(pairs: list[Pair], enc: Encoder, out_csv: Path) -> dict:
    """Score the pairs, write their CSV, and return the file's summary."""
    t0 = time.time()
    dist, reasons = np.full(len(pairs), np.nan), []
    for i, p in enumerate(pairs):
        (ea, ra), (eb, rb) = enc(p.path_a), enc(p.path_b)
        if ea is not None and eb is not None:
            dist[i] = float(enc.fr.face_distance([ea], eb)[0])
        reasons.append("; ".join(f"{side}: {r}" for side, r in (("a", ra), ("b", rb)) if r))
    same = np.array([p.same for p in pairs])
    folds = np.array([p.fold for p in pairs])
    with open(out_csv, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path_a", "path_b", "same", "fold", "distance", "verdict", "error"])
        for p, d, r in zip(pairs, dist, reasons):
            verdict = "error" if np.isnan(d) else ("same" if d <= TOLERANCE else "different")
            w.writerow([p.path_a, p.path_b, int(p.same), p.fold,
                        "" if np.isnan(d) else f"{d:.6f}", verdict, r])
    images = {str(Path(q).resolve()) for p in pairs for q in (p.path_a, p.path_b)}
    faceless = [k for k in images if enc.cache[k][0] is None]
    return {"pairs": len(pairs), "error_pairs": int(np.isnan(dist).sum()), "images": len(images),
            "images_without_face": sum(enc.cache[k][1] == "no face" for k in faceless),
            "images_unreadable": sum(enc.cache[k][1] != "no face" for k in faceless),
            "folds": sorted(set(folds.tolist())),
            f"accuracy_at_{TOLERANCE}": accuracy(dist, same, TOLERANCE),
            "kfold": kfold(dist, same, folds), "roc_auc": roc_auc(dist, same),
            "csv": str(out_csv), "seconds": round(time.time() - t0, 1)}


def versions() -> dict:
    """Installed versions of face_recognition, its models and dlib."""
    out = {"dlib": __import__("dlib").__version__}
    for name in ("face_recognition", "face_recognition_models", "dlib-bin"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pairs", nargs="+", type=Path, help="LFW pairs.txt or CSV pair files")
    ap.add_argument("--images", type=Path, help="image root of LFW-format pair files")
    ap.add_argument("--folds", help='folds to score, e.g. "1-5" (default: all)')
    ap.add_argument("--out", type=Path, required=True, help="output directory")
    args = ap.parse_args(argv)
    wanted = parse_folds(args.folds) if args.folds else None
    t0, enc = time.time(), Encoder()
    args.out.mkdir(parents=True, exist_ok=True)
    files: dict[str, dict] = {}
    stems = [p.stem for p in args.pairs]
    for i, path in enumerate(args.pairs):
        stem = path.stem if stems.count(path.stem) == 1 else f"{path.stem}_{i}"
        pairs = select_folds(read_pairs(path, args.images), wanted)
        if not pairs:
            ap.error(f"{path}: no pairs in folds {args.folds}")
        print(f"{path}: {len(pairs)} pairs", file=sys.stderr, flush=True)
        files[str(path)] = score_file(pairs, enc, args.out / f"{stem}.csv")
    summary = {"tolerance": TOLERANCE, "folds": args.folds or "all", "detector": "hog, upsample 1",
               "face_choice": "nearest the image centre", "errors": "counted as wrong",
               "versions": versions(), "files": files, "seconds": round(time.time() - t0, 1)}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
