"""Pairs of images scored with one model: each distinct image embedded once, then every
pair's distance per metric, and the verdicts at a threshold (`facecmp compare --pairs`)."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facecmp import metrics
from facecmp.cropstore import prepare_crops
from facecmp.pairs import Pair
from facecmp.preprocess import with_detector

RESULT_FIELDS = ["path_a", "path_b", "metric", "distance", "threshold", "verdict", "error",
                 "mask_a", "mask_b", "model"]


@dataclass
class PairDistances:
    """Distances of the pairs whose two images embedded, per metric."""

    pairs: list[Pair]
    issame: np.ndarray
    distances: dict[str, np.ndarray]
    index: np.ndarray  # position of each scored pair in the list that was asked for
    failed: list[tuple[int, Pair, str]]  # (position, pair, first error) of the others
    masked: np.ndarray | None = None  # per scored pair: measured by the masked model
    mask_prob: dict[str, float] = field(default_factory=dict)  # image -> the mask head's P(masked)


def _mask_probabilities(unique: list[Path], meta, progress: bool, head=None) -> np.ndarray:
    """The mask head's P(masked) of each image's face, found by the identity model's detector
    (0 where the head could not cut it); head: a mask_head() other than the bundled one."""
    from facecmp.masked import mask_head, mask_probabilities

    head = head if head is not None else mask_head()
    head_meta = with_detector(head.meta, meta.crop.detector)
    crops, ok, _ = prepare_crops(unique, head_meta, progress)
    probs = np.zeros(len(unique))
    probs[ok] = mask_probabilities(crops[ok], head)
    return probs


def pair_distances(pairs: list[Pair], embedder, metric_names: list[str], detector: str | None = None,
                   progress: bool = True, masked_embedder=None) -> PairDistances:
    """Embed each distinct image once and measure every pair under each metric.

    Face crops go through the crop cache, so sweeping several models (or the same model
    again) on one pairs file runs the detector only once. With a masked_embedder (an identity
    model's masked model, facecmp.masked), pairs in which the mask head sees a mask are
    measured with it instead.
    """
    from facecmp.masked import masked_pairs

    meta = with_detector(embedder.meta, detector)
    unique = sorted({pair.path_a for pair in pairs} | {pair.path_b for pair in pairs})
    crops, ok, problems = prepare_crops(unique, meta, progress)
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
    ia = np.asarray([index[str(p.path_a)] for p in keep], dtype=np.int64)
    ib = np.asarray([index[str(p.path_b)] for p in keep], dtype=np.int64)
    a, b = vectors[ia], vectors[ib]
    routed, mask_prob = None, {}
    if masked_embedder is not None:
        probs = _mask_probabilities(unique, meta, progress)
        mask_prob = {str(p): float(v) for p, v, good in zip(unique, probs, ok) if good}
        routed = masked_pairs(probs[ia], probs[ib])
        needed = np.unique(np.concatenate([ia[routed], ib[routed]]))
        other = np.zeros_like(vectors)
        other[needed] = masked_embedder.embed_crops(crops[needed])
        a[routed], b[routed] = other[ia[routed]], other[ib[routed]]
    dists = {m: metrics.DISTANCES[m](a, b) for m in metric_names}
    return PairDistances(keep, np.asarray([p.same for p in keep]), dists,
                         np.asarray(kept, dtype=np.int64), failed, routed, mask_prob)


def verdict(distance: float, threshold: float) -> str:
    """'same' when the distance is at or below the threshold (the sweep's convention)."""
    return "same" if distance <= threshold else "different"


def compare_pairs(embedder, pairs: list[Pair], metric: str, threshold: float, out: Path,
                  detector: str | None = None, progress: bool = True,
                  masked: tuple[object, float] | None = None) -> dict[str, int]:
    """Score every pair and write one CSV row each: its distance and verdict, or the error of
    its first failed image (the run goes on past it). masked: (embedder, threshold) of the
    model for pairs with a face in a mask (facecmp.masked). Returns the count of each verdict,
    of verdicts that match the pair's label ("right") and of pairs the masked model measured."""
    scored = pair_distances(pairs, embedder, [metric], detector, progress,
                            masked[0] if masked else None)
    distances = dict(zip(scored.index.tolist(), scored.distances[metric].tolist()))
    routed = dict(zip(scored.index.tolist(), (scored.masked if scored.masked is not None
                                               else np.zeros(len(scored.index), bool)).tolist()))
    errors = {pos: error for pos, _, error in scored.failed}
    counts = {"same": 0, "different": 0, "error": 0, "right": 0, "masked": 0}
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, RESULT_FIELDS)
        writer.writeheader()
        for pos, pair in enumerate(pairs):
            limit = masked[1] if routed.get(pos) else threshold
            row = {"path_a": str(pair.path_a), "path_b": str(pair.path_b), "metric": metric,
                   "threshold": limit, "model": "masked" if routed.get(pos) else "",
                   "mask_a": _rounded(scored.mask_prob.get(str(pair.path_a))),
                   "mask_b": _rounded(scored.mask_prob.get(str(pair.path_b)))}
            if pos in errors:
                row.update(distance="", verdict="error", error=errors[pos])
            else:
                d = distances[pos]
                row.update(distance=round(d, 6), verdict=verdict(d, limit), error="")
            counts[row["verdict"]] += 1
            counts["right"] += row["verdict"] == ("same" if pair.same else "different")
            counts["masked"] += bool(row["model"])
            writer.writerow(row)
    return counts


def _rounded(value: float | None) -> float | str:
    return "" if value is None else round(value, 4)
