"""Score an average of several models' embeddings on a pair file (cosine, no flip).

Each model embeds every distinct image once; the L2-normalised embeddings are averaged
and the pairs scored by cosine distance with `facecmp threshold-sweep`'s own pair
handling, folds and figures, plus, with --threshold, the figures at a threshold fixed
beforehand (accuracy, precision, recall).

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

from facecmp import metrics, scoring, sweep  # noqa: E402
from facecmp.embedder import Embedder, l2_normalize  # noqa: E402


class AveragedEmbedder:
    """Several model directories as one embedder: the mean of their unit embeddings."""

    def __init__(self, model_dirs: list[Path]) -> None:
        self.members = [Embedder(m, flip=False) for m in model_dirs]
        self.meta = self.members[0].meta
        for m in self.members[1:]:
            if any(getattr(m.meta, k) != getattr(self.meta, k) for k in ("input_size", "color", "crop", "mean", "std")):
                raise SystemExit(f"error: {m.model_dir} cuts its faces differently from {self.members[0].model_dir}")

    def embed_crops(self, crops: np.ndarray) -> np.ndarray:
        """uint8 crops -> the unit-length mean of each member's unit embeddings."""
        return l2_normalize(sum(l2_normalize(m.embed_crops(crops)) for m in self.members) / len(self.members))


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", type=Path)
    ap.add_argument("--pairs", type=Path, required=True)
    ap.add_argument("--lfw-folds", default=None)
    ap.add_argument("--threshold", type=float, default=None)
    args = ap.parse_args(argv)
    pairs = sweep.load_pairs(args.pairs, None, args.lfw_folds)
    pd = scoring.pair_distances(pairs, AveragedEmbedder(args.models), ["cosine"])
    d = pd.distances["cosine"]
    out = {"pairs": len(pd.pairs), "of": len(pairs),
           **metrics.summarize(d, pd.issame, metrics.default_grid(d), sweep.fold_ids(pd.pairs, 10))}
    if args.threshold is not None:  # laid out as threshold-sweep's at_calibrated_threshold
        out["at_threshold"] = {"threshold": args.threshold, **metrics.confusion(d, pd.issame, args.threshold)}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
