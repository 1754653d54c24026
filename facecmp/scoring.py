"""Pairs of images scored with one model: each distinct image embedded once, then every
pair's distance per metric, and the verdicts at a threshold (`facecmp compare --pairs`)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facecmp import metrics
from facecmp.cropcache import prepare_crops
from facecmp.pairs import Pair
from facecmp.preprocess import with_detector

RESULT_FIELDS = ["path_a", "path_b", "metric", "distance", "threshold", "verdict", "error"]


@dataclass
class PairDistances:
    """Distances of the pairs whose two images embedded, per metric."""

    pairs: list[Pair]
    issame: np.ndarray
    distances: dict[str, np.ndarray]
    index: np.ndarray  # position of each scored pair in the list that was asked for
    failed: list[tuple[int, Pair, str]]  # (position, pair, first error) of the others


def pair_distances(pairs: list[Pair], embedder, metric_names: list[str], detector: str | None = None,
                   progress: bool = True) -> PairDistances:
    """Embed each distinct image once and measure every pair under each metric.

    Face crops go through the crop cache, so sweeping several models (or the same model
    again) on one pairs file runs the detector only once.
    """
    unique = sorted({pair.path_a for pair in pairs} | {pair.path_b for pair in pairs})
    crops, ok, problems = prepare_crops(unique, with_detector(embedder.meta, detector), progress)
    errors = dict(zip((str(unique[i]) for i in np.flatnonzero(~ok)), problems))
    vectors = np.zeros((len(unique), embedder.meta.embedding_size), np.float32)
    vectors[ok] = embedder.embed_crops(crops[ok])
    index = {str(p): i for i, p in enumerate(unique)}
    kept, failed = [], []
    for pos, pair in enumerate(pairs):
        bad = [str(p) for p in (pair.path_a, pair.path_b) if not ok[index[str(p)]]]
        if bad:
            failed.append((pos, pair, errors[bad[0]]))
        else:
            kept.append(pos)
    keep = [pairs[i] for i in kept]
    a = vectors[[index[str(p.path_a)] for p in keep]]
    b = vectors[[index[str(p.path_b)] for p in keep]]
    dists = {m: metrics.DISTANCES[m](a, b) for m in metric_names}
    return PairDistances(keep, np.asarray([p.same for p in keep]), dists,
                         np.asarray(kept, dtype=np.int64), failed)


def verdict(distance: float, threshold: float) -> str:
    """'same' when the distance is at or below the threshold (the sweep's convention)."""
    return "same" if distance <= threshold else "different"


def compare_pairs(embedder, pairs: list[Pair], metric: str, threshold: float, out: Path,
                  detector: str | None = None, progress: bool = True) -> dict[str, int]:
    """Score every pair and write one CSV row each: its distance and verdict, or the error of
    its first failed image (the run goes on past it). Returns the count of each verdict."""
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
