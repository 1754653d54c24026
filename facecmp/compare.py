"""One verdict on two photos, or on every pair of a pairs file."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from facecmp import metrics
from facecmp.errors import FacecmpError
from facecmp.pairs import Pair
from facecmp.preprocess import load_faces

RESULT_FIELDS = ["path_a", "path_b", "metric", "distance", "threshold", "verdict", "error"]


def resolve_threshold(meta: dict[str, Any], metric: str | None, threshold: float | None) -> tuple[str, float]:
    """The metric and threshold to use: flags first, else the model's calibrated ones."""
    metric = metric or meta.get("metric") or "euclid"
    if threshold is not None:
        return metric, float(threshold)
    calibrated = (meta.get("thresholds") or {}).get(metric)
    if calibrated is None and metric == meta.get("metric"):
        calibrated = meta.get("threshold")
    if calibrated is None:
        raise FacecmpError(f"the model has no calibrated {metric} threshold; run "
                           "`facecmp threshold-sweep --save-threshold` or pass --threshold")
    return metric, float(calibrated)


def verdict(distance: float, threshold: float) -> str:
    """'same' when the distance is at or below the threshold (the sweep's convention)."""
    return "same" if distance <= threshold else "different"


def compare_two(embedder, path_a: Path, path_b: Path, metric: str, threshold: float,
                detector: str | None = None) -> dict[str, Any]:
    """Compare the faces of two image files; raises FacecmpError/NoFaceError on bad input."""
    faces = list(load_faces([path_a, path_b], embedder.meta, detector))
    for face in faces:
        if isinstance(face, FacecmpError):
            raise face
    emb = embedder.embed_crops(np.stack([f.pixels for f in faces]))
    distance = float(metrics.DISTANCES[metric](emb[:1], emb[1:])[0])
    return {"path_a": str(path_a), "path_b": str(path_b), "metric": metric,
            "distance": round(distance, 6), "threshold": threshold,
            "verdict": verdict(distance, threshold),
            "faces": [{"path": str(p), "box": f.box, "landmarks": f.landmarks, "note": f.note}
                      for p, f in zip((path_a, path_b), faces)]}


def compare_pairs(embedder, pairs: list[Pair], metric: str, threshold: float, out: Path,
                  detector: str | None = None, progress: bool = True) -> dict[str, int]:
    """Embed each distinct image once, write one row per pair; failed images give 'error' rows."""
    from facecmp.sweep import pair_distances

    scored = pair_distances(pairs, embedder, [metric], detector, progress)
    distances = dict(zip(scored.index.tolist(), scored.distances[metric].tolist()))
    errors = {pos: error for pos, _, error in scored.failed}
    counts = {"same": 0, "different": 0, "error": 0}
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, RESULT_FIELDS)
        writer.writeheader()
        for pos, pair in enumerate(pairs):
            row = {"path_a": str(pair.path_a), "path_b": str(pair.path_b), "metric": metric,
                   "threshold": threshold}
            if pos in errors:
                row.update(distance="", verdict="error", error=errors[pos])
            else:
                d = distances[pos]
                row.update(distance=round(d, 6), verdict=verdict(d, threshold), error="")
            counts[row["verdict"]] += 1
            writer.writerow(row)
    return counts
