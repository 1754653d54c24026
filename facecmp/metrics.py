"""Face-verification metrics over pair distances: confusion counts, threshold sweeps,
ROC AUC, EER, TAR@FAR and the LFW k-fold protocol.

Convention throughout: a pair is predicted "same" when its distance <= threshold,
so a pair lying exactly on the threshold counts as "same". ``issame`` is the
ground truth as a bool array aligned with ``distances``.

Rate conventions when a denominator is zero (documented so reports are stable):
precision = tp / (tp + fp), and 1.0 when nothing is predicted "same" (no false
claims were made); recall = tpr = tp / (tp + fn), and 0.0 when there are no
same-identity pairs; fpr = fp / (fp + tn), and 0.0 when there are no
different-identity pairs; f1 = 0.0 when precision + recall == 0.
"""

from __future__ import annotations

import math

import numpy as np

from facecmp.errors import FacecmpError

__all__ = ["DISTANCES", "best_threshold", "confusion", "cosine_distance", "default_grid",
           "equal_error_rate", "euclidean_distance", "kfold_accuracy", "parse_grid",
           "roc_auc", "summarize", "sweep", "tar_at_far"]


def euclidean_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise Euclidean distance between two (N, D) arrays."""
    a, b = _paired_rows(a, b)
    return np.sqrt(np.sum((a - b) ** 2, axis=1))


def cosine_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise 1 - cosine similarity; a zero vector has similarity 0 to anything."""
    a, b = _paired_rows(a, b)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    dots = np.sum(a * b, axis=1)
    safe = np.where(norms > 0, norms, 1.0)
    sim = np.where(norms > 0, dots / safe, 0.0)
    # Rounding can push |sim| a hair past 1; keep distances inside [0, 2].
    return 1.0 - np.clip(sim, -1.0, 1.0)


DISTANCES = {"euclid": euclidean_distance, "cosine": cosine_distance}
METRICS = tuple(DISTANCES)


def _paired_rows(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim == 1:
        a = a[None, :]
    if b.ndim == 1:
        b = b[None, :]
    if a.shape != b.shape or a.ndim != 2:
        raise FacecmpError(f"cannot compare embeddings of shapes {a.shape} and {b.shape}")
    return a, b


def _checked(distances: np.ndarray, issame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d = np.asarray(distances, dtype=np.float64).ravel()
    s = np.asarray(issame).astype(bool).ravel()
    if d.shape != s.shape:
        raise FacecmpError(f"{d.size} distances but {s.size} same/different labels")
    if d.size and not np.all(np.isfinite(d)):
        raise FacecmpError(f"{int(np.sum(~np.isfinite(d)))} distances are NaN or infinite")
    return d, s


def _counts(d: np.ndarray, s: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, ...]:
    """tp, fp, tn, fn for every threshold, via binary search on sorted distances."""
    pos = np.sort(d[s])
    neg = np.sort(d[~s])
    # side="right" makes a distance equal to the threshold count as "same".
    tp = np.searchsorted(pos, thresholds, side="right").astype(np.int64)
    fp = np.searchsorted(neg, thresholds, side="right").astype(np.int64)
    return tp, fp, neg.size - fp, pos.size - tp


def _rates(tp: np.ndarray, fp: np.ndarray, tn: np.ndarray, fn: np.ndarray) -> dict:
    tpf, fpf, tnf, fnf = (x.astype(np.float64) for x in (tp, fp, tn, fn))
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(tp + fp > 0, tpf / (tpf + fpf), 1.0)
        recall = np.where(tp + fn > 0, tpf / (tpf + fnf), 0.0)
        fpr = np.where(fp + tn > 0, fpf / (fpf + tnf), 0.0)
        pr = precision + recall
        f1 = np.where(pr > 0, 2 * precision * recall / pr, 0.0)
        total = tpf + fpf + tnf + fnf
        accuracy = np.where(total > 0, (tpf + tnf) / total, 0.0)
    return {"precision": precision, "recall": recall, "f1": f1,
            "accuracy": accuracy, "tpr": recall, "fpr": fpr}


def sweep(distances: np.ndarray, issame: np.ndarray, thresholds: np.ndarray) -> list[dict]:
    """One confusion() row, with its threshold, for every threshold given."""
    d, s = _checked(distances, issame)
    t = np.asarray(thresholds, dtype=np.float64).ravel()
    tp, fp, tn, fn = _counts(d, s, t)
    rates = _rates(tp, fp, tn, fn)
    rows = []
    for i in range(t.size):
        row = {"threshold": float(t[i]), "tp": int(tp[i]), "fp": int(fp[i]),
               "tn": int(tn[i]), "fn": int(fn[i])}
        row.update({k: float(v[i]) for k, v in rates.items()})
        rows.append(row)
    return rows


def confusion(distances: np.ndarray, issame: np.ndarray, threshold: float) -> dict:
    """Counts tp/fp/tn/fn and the rates derived from them at one threshold."""
    row = sweep(distances, issame, np.array([threshold], dtype=np.float64))[0]
    del row["threshold"]
    return row


def _best(d: np.ndarray, s: np.ndarray, thresholds: np.ndarray) -> tuple[float, float]:
    t = np.sort(np.asarray(thresholds, dtype=np.float64).ravel())
    if t.size == 0:
        raise FacecmpError("the threshold grid is empty")
    if d.size == 0:
        raise FacecmpError("no pairs to choose a threshold on")
    tp, _, tn, _ = _counts(d, s, t)
    correct = tp + tn  # integers, so ties compare exactly; argmax takes the first
    i = int(np.argmax(correct))
    return float(t[i]), float(correct[i]) / d.size


def best_threshold(distances: np.ndarray, issame: np.ndarray,
                   thresholds: np.ndarray) -> tuple[float, float]:
    """The threshold with the highest accuracy (smallest on ties) and that accuracy."""
    d, s = _checked(distances, issame)
    return _best(d, s, thresholds)


def roc_auc(distances: np.ndarray, issame: np.ndarray) -> float:
    """Area under the ROC curve with score = -distance; NaN if one class is absent."""
    d, s = _checked(distances, issame)
    if s.all() or not s.any():
        return float("nan")
    from sklearn.metrics import roc_auc_score  # scikit-learn costs ~2 s to import: only here

    return float(roc_auc_score(s, -d))


def roc_points(distances: np.ndarray, issame: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve points (FPR, TPR, and the negated distance thresholds), via scikit-learn."""
    from sklearn.metrics import roc_curve

    d, s = _checked(distances, issame)
    return roc_curve(s, -d, drop_intermediate=False)


def equal_error_rate(distances: np.ndarray, issame: np.ndarray) -> tuple[float, float]:
    """(EER, distance threshold) where FAR == FRR, interpolated on the ROC curve."""
    d, s = _checked(distances, issame)
    if s.all() or not s.any():
        return float("nan"), float("nan")
    fpr, tpr, score_thr = roc_points(d, s)
    gap = fpr - (1.0 - tpr)  # FAR - FRR: -1 at the strictest point, +1 at the loosest
    i = int(np.argmax(gap >= 0))
    if gap[i] == 0 or i == 0:
        return float(fpr[i]), float(-score_thr[i])
    # FAR and FRR are both linear along the segment, so they meet at the same fraction.
    frac = gap[i - 1] / (gap[i - 1] - gap[i])
    eer = fpr[i - 1] + frac * (fpr[i] - fpr[i - 1])
    lo, hi = -score_thr[i - 1], -score_thr[i]
    thr = hi if not np.isfinite(lo) else lo + frac * (hi - lo)
    return float(eer), float(thr)


def _needed_negatives(far: float) -> int:
    # Small tolerance so that e.g. 1/1e-3 counts as 1000, not 1000.0000000000001.
    return int(math.ceil(1.0 / far - 1e-9))


def tar_at_far(distances: np.ndarray, issame: np.ndarray,
               far: float) -> tuple[float, float] | None:
    """(TAR, threshold) at the largest observed-distance threshold with FAR <= far.

    None when there are fewer than 1/far different-identity pairs, since a FAR that
    small cannot be measured on them. If even the smallest distance breaks the FAR
    limit, the threshold is set just below it and the TAR is 0.
    """
    if not 0 < far < 1:
        raise FacecmpError(f"FAR must be between 0 and 1, got {far}")
    d, s = _checked(distances, issame)
    neg = np.sort(d[~s])
    if neg.size < _needed_negatives(far):
        return None
    allowed = int(math.floor(far * neg.size + 1e-9))
    # Any threshold >= neg[allowed] would accept allowed + 1 impostors.
    limit = neg[allowed]
    below = d[d < limit]
    thr = float(below.max()) if below.size else float(np.nextafter(limit, -np.inf))
    pos = d[s]
    tar = float(np.mean(pos <= thr)) if pos.size else 0.0
    return tar, thr


def _fold_ids(n: int, folds: np.ndarray | int) -> np.ndarray:
    if isinstance(folds, (int, np.integer)):
        k = int(folds)
        if k < 2:
            raise FacecmpError(f"k-fold needs at least 2 folds, got {k}")
        if k > n:
            raise FacecmpError(f"cannot split {n} pairs into {k} folds")
        # Contiguous blocks in file order, as the LFW protocol defines its folds.
        return np.arange(n) * k // n
    ids = np.asarray(folds).ravel()
    if ids.size != n:
        raise FacecmpError(f"{ids.size} fold ids for {n} pairs")
    if np.unique(ids).size < 2:
        raise FacecmpError("k-fold needs pairs from at least 2 different folds")
    return ids


def kfold_accuracy(distances: np.ndarray, issame: np.ndarray, thresholds: np.ndarray,
                   folds: np.ndarray | int = 10) -> dict:
    """LFW protocol: per fold, the best threshold on the other folds, scored on it.

    ``folds`` is a fold count k (contiguous blocks in file order, never shuffled) or
    one fold id per pair. ``std`` is the population std.
    """
    d, s = _checked(distances, issame)
    ids = _fold_ids(d.size, folds)
    accuracies, chosen = [], []
    for fold in np.unique(ids):
        test = ids == fold
        thr, _ = _best(d[~test], s[~test], thresholds)
        correct = np.sum((d[test] <= thr) == s[test])
        accuracies.append(float(correct) / int(test.sum()))
        chosen.append(thr)
    acc = np.array(accuracies)
    return {"mean": float(acc.mean()), "std": float(acc.std()),
            "accuracies": accuracies, "thresholds": chosen, "folds": len(accuracies)}


def default_grid(distances: np.ndarray, steps: int = 400) -> np.ndarray:
    """Thresholds from 0 (or just below the min) to just above the max, dense where pairs are.

    Half the points are evenly spaced, half at quantiles of the distances: a few outlying
    distances would otherwise stretch an even grid so far that no step falls where the
    same/different boundary is.
    """
    d = np.asarray(distances, dtype=np.float64).ravel()
    if d.size == 0:
        raise FacecmpError("no distances to build a threshold grid from")
    if steps < 2:
        raise FacecmpError(f"a threshold grid needs at least 2 steps, got {steps}")
    lo, hi = float(d.min()), float(d.max())
    margin = 0.01 * (hi - lo) if hi > lo else max(abs(hi) * 0.01, 1e-6)
    start = 0.0 if lo >= 0 else lo - margin
    even = np.linspace(start, hi + margin, steps - steps // 2)
    return np.unique(np.concatenate([even, np.quantile(d, np.linspace(0, 1, steps // 2))]))


def parse_grid(text: str) -> np.ndarray:
    """Parse "START:STOP:STEP" (STOP exclusive, like np.arange) into thresholds."""
    parts = text.strip().split(":")
    try:
        if len(parts) != 3:
            raise ValueError
        start, stop, step = (float(p) for p in parts)
    except ValueError:
        raise FacecmpError(f"bad threshold grid {text!r}: expected START:STOP:STEP, "
                           "e.g. 0:20:1") from None
    if not all(math.isfinite(x) for x in (start, stop, step)):
        raise FacecmpError(f"bad threshold grid {text!r}: values must be finite numbers")
    if step <= 0:
        raise FacecmpError(f"bad threshold grid {text!r}: STEP must be positive")
    # Counting steps explicitly avoids np.arange's float drift adding a stray STOP.
    n = int(math.ceil((stop - start) / step - 1e-9))
    if n <= 0:
        raise FacecmpError(f"bad threshold grid {text!r}: STOP must be above START")
    return start + step * np.arange(n, dtype=np.float64)


def _json_float(x: float) -> float | None:
    # JSON has no NaN; an undefined metric is reported as null.
    return None if math.isnan(x) else float(x)


def summarize(distances: np.ndarray, issame: np.ndarray, thresholds: np.ndarray,
              folds: np.ndarray | int) -> dict:
    """Every metric reported for one distance: JSON-ready plain floats and ints."""
    d, s = _checked(distances, issame)
    thr, acc = best_threshold(d, s, thresholds)
    at_best = confusion(d, s, thr)
    eer, eer_thr = equal_error_rate(d, s)
    n_diff = int((~s).sum())
    out = {
        "best_threshold": thr,
        "accuracy": acc,
        "precision": at_best["precision"],
        "recall": at_best["recall"],
        "f1": at_best["f1"],
        "roc_auc": _json_float(roc_auc(d, s)),
        "eer": _json_float(eer),
        "eer_threshold": _json_float(eer_thr),
    }
    for far, key in ((1e-3, "tar_at_far_1e-3"), (1e-2, "tar_at_far_1e-2")):
        hit = tar_at_far(d, s, far)
        if hit is None:
            out[key] = {"tar": None, "reason": f"needs at least {_needed_negatives(far)} "
                                               f"different-identity pairs, have {n_diff}"}
        else:
            out[key] = {"tar": hit[0], "threshold": hit[1]}
    out["kfold"] = kfold_accuracy(d, s, thresholds, folds)
    out.update({"n_pairs": int(d.size), "n_same": int(s.sum()), "n_different": n_diff})
    return out
