"""The threshold sweep: embed every image of a pairs file once, then score every threshold."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from facecmp import metrics, plots
from facecmp.errors import FacecmpError, NothingDoneError
from facecmp.pairs import Pair, missing_images, read_pairs, select_folds
from facecmp.scoring import PairDistances

SWEEP_FIELDS = ["metric", "threshold", "tp", "fp", "tn", "fn", "precision", "recall", "f1",
                "accuracy", "tpr", "fpr"]


def load_pairs(pairs_file: Path, images_root: Path | None, folds: str | None) -> list[Pair]:
    """Read a pairs file and restrict it to some folds; refuse it when most images are missing.

    A few missing images only fail their pairs (reported like unreadable ones), but when more
    than half the images are missing the --images root is almost surely wrong, and scoring
    what is left would silently shift the folds.
    """
    pairs = read_pairs(pairs_file, images_root)
    if folds:
        pairs = select_folds(pairs, folds)
    missing = missing_images(pairs)
    named = {path for pair in pairs for path in (pair.path_a, pair.path_b)}
    if 2 * len({path for _, path in missing}) > len(named):
        n_pairs = len({p.line for p, _ in missing})
        first = ", ".join(f"line {p.line}: {path}" for p, path in missing[:3])
        raise FacecmpError(f"{n_pairs} pairs name missing images ({first}{', ...' if len(missing) > 3 else ''});"
                           " fix --images or the pairs file")
    return pairs


def fold_ids(pairs: list[Pair], k: int, seed: int = 0) -> np.ndarray:
    """The file's own folds when it has several (LFW), else k seeded folds balanced by label."""
    ids = np.asarray([p.fold for p in pairs])
    if len(np.unique(ids)) > 1:
        return ids
    rng = np.random.default_rng(seed)
    out = np.zeros(len(pairs), dtype=int)
    for label in (True, False):
        idx = rng.permutation(np.flatnonzero([p.same == label for p in pairs]))  # ints even if none
        out[idx] = np.arange(len(idx)) % k + 1
    return out


def run_sweep(pd: PairDistances, grid: str | None, folds: np.ndarray, out: Path,
              calibrated: dict[str, float] | None = None) -> dict[str, Any]:
    """Sweep thresholds per metric; write sweep.csv, summary.json and the plots into out.

    `calibrated` (metric -> threshold, from the model's meta.json) adds the figures at the
    model's own threshold: the number a user of `compare` actually gets.
    """
    if len(pd.pairs) == 0 and pd.failed:
        _, pair, error = pd.failed[0]
        raise NothingDoneError(f"none of the {len(pd.failed)} pairs could be scored "
                               f"(first: line {pair.line}: {error})")
    if len(pd.pairs) == 0 or pd.issame.all() or not pd.issame.any():
        raise FacecmpError("the sweep needs both same and different pairs with readable faces")
    out.mkdir(parents=True, exist_ok=True)
    curves, summary, best, rocs, hists = {}, {}, {}, {}, {}
    for metric, d in pd.distances.items():
        thresholds = metrics.parse_grid(grid) if grid else metrics.default_grid(d)
        curves[metric] = metrics.sweep(d, pd.issame, thresholds)
        summary[metric] = metrics.summarize(d, pd.issame, thresholds, folds)
        if calibrated and metric in calibrated:
            summary[metric]["at_calibrated_threshold"] = {
                "threshold": calibrated[metric], **metrics.confusion(d, pd.issame, calibrated[metric])}
        best[metric] = summary[metric]["best_threshold"]
        fpr, tpr, _ = metrics.roc_points(d, pd.issame)
        rocs[metric] = (fpr, tpr, summary[metric]["roc_auc"] or float("nan"))
        hists[metric] = (d, pd.issame)
    with open(out / "sweep.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, SWEEP_FIELDS)
        writer.writeheader()
        for metric, rows in curves.items():
            writer.writerows({"metric": metric, **r} for r in rows)
    summary["failed_pairs"] = [{"line": p.line, "error": e} for _, p, e in pd.failed]
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    plots.pr_curves(curves, out / "pr_curve.png")
    plots.accuracy_curves(curves, best, out / "accuracy_curve.png")
    plots.roc_curves(rocs, out / "roc.png")
    plots.distance_histograms(hists, best, out / "distances.png")
    return summary


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """One readable line per metric for the terminal."""
    lines = []
    for metric, s in summary.items():
        if metric == "failed_pairs":
            continue
        k = s["kfold"]
        tar = s["tar_at_far_1e-2"]["tar"]
        cal = s.get("at_calibrated_threshold")
        if cal:
            lines.append(f"{metric}: at the model's calibrated threshold: accuracy {cal['accuracy']:.4f} "
                         f"(precision {cal['precision']:.3f} recall {cal['recall']:.3f})")
        lines.append(f"{metric}: best threshold {s['best_threshold']:.4g} accuracy {s['accuracy']:.4f} "
                     f"(precision {s['precision']:.3f} recall {s['recall']:.3f}); "
                     f"{k['folds']}-fold accuracy {k['mean']:.4f} ± {k['std']:.4f}; AUC {s['roc_auc']:.4f}; "
                     f"EER {s['eer']:.4f}; TAR@FAR=1e-2 {'n/a' if tar is None else f'{tar:.4f}'}")
    if summary.get("failed_pairs"):
        lines.append(f"{len(summary['failed_pairs'])} pairs had a missing or unreadable image or no face "
                     "(listed in summary.json) and were not scored")
    return lines


def save_calibration(model_dir: Path, summary: dict[str, Any], flip: bool, source: Path) -> dict:
    """Store each metric's best threshold in meta.json; the default metric is the better one."""
    from facecmp.meta import read_meta, update_meta

    swept = {m: s for m, s in summary.items() if m != "failed_pairs"}
    thresholds = dict(read_meta(model_dir).thresholds)
    thresholds.update({m: s["best_threshold"] for m, s in swept.items()})
    metric = max(swept, key=lambda m: swept[m]["kfold"]["mean"])
    calibration = {m: {"pairs": str(source), "kfold_accuracy": s["kfold"]["mean"], "n_pairs": s["n_pairs"]}
                   for m, s in swept.items()}
    update_meta(model_dir, metric=metric, thresholds=thresholds,
                embed_flip=flip, calibration=calibration)
    return {"metric": metric, "threshold": thresholds[metric]}
