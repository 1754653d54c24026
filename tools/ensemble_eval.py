"""Score an average of several models' embeddings on a pair file (cosine, no flip).

Each model embeds every distinct image once; the L2-normalised embeddings are averaged
and the pairs scored by cosine distance: 10-fold accuracy, ROC AUC, the best threshold,
and, with --threshold, the accuracy at a threshold fixed beforehand.

    python tools/ensemble_eval.py --pairs outputs/calib3/pairs.csv MODEL_DIR [MODEL_DIR ...]
        [--lfw-folds 1-5] [--threshold T]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from facecmp import metrics  # noqa: E402
from facecmp.embedder import Embedder, l2_normalize  # noqa: E402
from facecmp.pairs import read_pairs, select_folds  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", type=Path)
    ap.add_argument("--pairs", type=Path, required=True)
    ap.add_argument("--lfw-folds", default=None)
    ap.add_argument("--threshold", type=float, default=None)
    args = ap.parse_args(argv)
    pairs = read_pairs(args.pairs)
    if args.lfw_folds:
        pairs = select_folds(pairs, args.lfw_folds)
    images = sorted({str(p) for pair in pairs for p in (pair.path_a, pair.path_b)})
    index = {p: i for i, p in enumerate(images)}
    total, ok = 0.0, np.ones(len(images), bool)
    for model in args.models:
        result = Embedder(model, flip=False).embed_files(images, progress=True)
        total, ok = total + l2_normalize(result.vectors), ok & result.ok
    emb = l2_normalize(total / len(args.models))
    keep = [p for p in pairs if ok[index[str(p.path_a)]] and ok[index[str(p.path_b)]]]
    a = emb[[index[str(p.path_a)] for p in keep]]
    b = emb[[index[str(p.path_b)] for p in keep]]
    d, s = metrics.cosine_distance(a, b), np.array([p.same for p in keep])
    grid = metrics.default_grid(d, 2000)
    best_thr, best_acc = metrics.best_threshold(d, s, grid)
    folds = np.array([p.fold for p in keep]) if args.lfw_folds else 10
    kf = metrics.kfold_accuracy(d, s, grid, folds)
    out = {"pairs": len(keep), "of": len(pairs), "kfold": kf["mean"], "kfold_std": kf["std"],
           "auc": metrics.roc_auc(d, s), "best_threshold": best_thr, "best_accuracy": best_acc}
    if args.threshold is not None:
        out["accuracy_at_threshold"] = float(np.mean((d <= args.threshold) == s))
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
