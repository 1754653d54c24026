"""From which P(masked) should `compare` hand a pair to the masked model? Measured per pairs file.

Usage:
    python tools/mask_routing.py --model facecmp/zoo/identity \
        --pairs outputs/calib3/pairs.csv outputs/masked_calib/one_side.csv \
        [--at 0.5 0.7 0.9 0.95 0.98 0.99 0.995 0.999] [--mask-model DIR] --out outputs/mask_routing

For every pairs file, each image is embedded once by the identity model and once by its
masked model (meta `masked_model`), and the mask head (the bundled one, or --mask-model) gives each face P(masked). Then, for
each routing point t, a pair goes to the masked model when either face has P(masked) >= t,
and its verdict is taken at that model's calibrated threshold (facecmp compare's rule).
Accuracy counts pairs without a face as wrong.

Writes OUT/routing.csv (file, t, accuracy, pairs routed), OUT/summary.json (also the
distribution of P(masked) per file) and OUT/routing.png.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from facecmp.errors import ModelError, one_line_errors  # noqa: E402

AT = [0.5, 0.7, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999]


def accuracy_at(issame: np.ndarray, plain: np.ndarray, masked: np.ndarray, routed: np.ndarray,
                thresholds: tuple[float, float], n_failed: int) -> float:
    """Share of all pairs (failed ones counted wrong) right when routed pairs use the masked model."""
    dist = np.where(routed, masked, plain)
    limit = np.where(routed, thresholds[1], thresholds[0])
    right = int(((dist <= limit) == issame).sum())
    return right / (len(issame) + n_failed)


def score_file(path: Path, fm, head=None) -> dict:
    """Both models' distances, the pairs' largest P(masked), and the failures of one pairs file."""
    from facecmp.pairs import read_pairs
    from facecmp.scoring import _mask_probabilities, pair_distances

    pairs = read_pairs(path)
    plain = pair_distances(pairs, fm.embedder, ["cosine"])
    masked = pair_distances(pairs, fm.masked.embedder, ["cosine"])
    unique = sorted({p.path_a for p in pairs} | {p.path_b for p in pairs})
    probs = dict(zip(map(str, unique), _mask_probabilities(unique, fm.meta, True, head)))
    keep = plain.pairs
    pa = np.asarray([probs[str(p.path_a)] for p in keep])
    pb = np.asarray([probs[str(p.path_b)] for p in keep])
    assert np.array_equal(plain.index, masked.index), "the two models failed on different images"
    return {"issame": plain.issame, "plain": plain.distances["cosine"],
            "masked": masked.distances["cosine"], "pmax": np.maximum(pa, pb),
            "n_failed": len(plain.failed), "probs": np.asarray(list(probs.values()))}


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="facecmp/zoo/identity")
    ap.add_argument("--pairs", nargs="+", type=Path, required=True)
    ap.add_argument("--at", nargs="+", type=float, default=AT)
    ap.add_argument("--mask-model", type=Path, help="a mask model directory other than the bundled one")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    from facecmp.api import load_model
    from facecmp.masked import mask_head

    head = mask_head(args.mask_model) if args.mask_model else None

    fm = load_model(args.model)
    if fm.masked is None:
        raise ModelError(f"{args.model} names no masked_model")
    thresholds = (fm.meta.threshold_for("cosine")[1], fm.masked.meta.threshold_for("cosine")[1])
    args.out.mkdir(parents=True, exist_ok=True)
    rows, summary = [], {"model": str(args.model), "mask_model": str(args.mask_model or "bundled"),
                         "thresholds": thresholds,
                         "files": {}}
    for path in args.pairs:
        s = score_file(path, fm, head)
        n = len(s["issame"]) + s["n_failed"]
        summary["files"][str(path)] = {
            "pairs": n, "without_face": s["n_failed"],
            "identity_model_alone": accuracy_at(s["issame"], s["plain"], s["masked"],
                                                np.zeros(len(s["issame"]), bool), thresholds, s["n_failed"]),
            "masked_model_alone": accuracy_at(s["issame"], s["plain"], s["masked"],
                                              np.ones(len(s["issame"]), bool), thresholds, s["n_failed"]),
            "images_p_masked_quantiles": {q: float(np.quantile(s["probs"], q))
                                          for q in (0.05, 0.25, 0.5, 0.75, 0.95)}}
        for t in args.at:
            routed = s["pmax"] >= t
            rows.append({"pairs": str(path), "at": t, "routed": int(routed.sum()),
                         "accuracy": round(accuracy_at(s["issame"], s["plain"], s["masked"], routed,
                                                       thresholds, s["n_failed"]), 6)})
            print(f"{path}: at {t}: {rows[-1]['accuracy']:.4f} ({rows[-1]['routed']} routed)")
    with open(args.out / "routing.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    _plot(rows, args.out / "routing.png")
    return 0


def _plot(rows: list[dict], out: Path) -> None:
    """Accuracy of each pairs file against the routing point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name in dict.fromkeys(r["pairs"] for r in rows):
        mine = [r for r in rows if r["pairs"] == name]
        ax.plot(range(len(mine)), [100 * r["accuracy"] for r in mine], marker="o", label=Path(name).parent.name)
        ax.set_xticks(range(len(mine)), [str(r["at"]) for r in mine])
    ax.set_xlabel("routing point: P(masked) of either face at least")
    ax.set_ylabel("accuracy, pairs without a face wrong (%)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
