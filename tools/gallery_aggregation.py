"""Which rule should score a gallery person over their enrolled images? Measures each rule of
facecmp.gallery_index (max, mean of the top two, similarity to the mean embedding) the way the
gallery uses it: enrol some images of each person, identify the rest and strangers.

Identity folders with at least --min-images images are the people: in each seeded split, ENROL
of each person's images are enrolled and the others are queries. Folders with a single image
are strangers, who should come back unknown. Per rule it prints rank-1 identification of the
people's queries (closed set), and at the model's calibrated cosine threshold: people named
correctly (DIR), strangers named as someone (FPIR), and their balanced accuracy
(DIR + 1 - FPIR) / 2; also DIR where 5% of strangers are let through (threshold-free).

    python tools/gallery_aggregation.py outputs/calib2/identities --enrol 2 3 --splits 20 \\
        --out outputs/gallery_rules
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from facecmp.errors import FacecmpError, one_line_errors


def _embeddings(root: Path, out: Path, model: str | None) -> tuple[np.ndarray, list[str]]:
    """Each image's embedding (as `facecmp embed`: its most confident face) and its identity;
    cached in out/embeddings.npz."""
    import facecmp
    from facecmp.images import is_image_name

    cache = out / "embeddings.npz"
    if cache.is_file():
        with np.load(cache) as f:
            return f["vectors"], list(f["names"])
    files = sorted(p for d in root.iterdir() if d.is_dir() for p in d.iterdir() if is_image_name(p))
    if not files:
        raise FacecmpError(f"no identity folders of images in {root}")
    emb = facecmp.embed(files, facecmp.load_model(model), normalize=True, progress=True)
    names = [files[i].parent.name for i in np.flatnonzero(emb.ok)]
    out.mkdir(parents=True, exist_ok=True)
    np.savez(cache, vectors=emb.vectors[emb.ok], names=np.asarray(names))
    return emb.vectors[emb.ok], names


def _split(names: list[str], enrol: int, min_images: int, rng: np.random.Generator):
    """(enrolled rows, their person positions, people names, query rows, query person or -1)."""
    by_name: dict[str, list[int]] = {}
    for i, n in enumerate(names):
        by_name.setdefault(n, []).append(i)
    people = sorted(n for n, rows in by_name.items() if len(rows) >= max(min_images, enrol + 1))
    enrolled, owners, queries, truth = [], [], [], []
    for p, name in enumerate(people):
        rows = list(rng.permutation(by_name[name]))
        enrolled += rows[:enrol]
        owners += [p] * enrol
        queries += rows[enrol:]
        truth += [p] * (len(rows) - enrol)
    for rows in by_name.values():
        if len(rows) == 1:
            queries.append(rows[0])
            truth.append(-1)
    return np.array(enrolled), np.array(owners), people, np.array(queries), np.array(truth)


def _figures(best: np.ndarray, sims: np.ndarray, truth: np.ndarray, threshold: float) -> dict:
    known, strangers = truth >= 0, truth < 0
    right = best[:, 0] == truth
    accepted = 1.0 - sims[:, 0] <= threshold
    dir_ = float((right & accepted)[known].mean())
    fpir = float(accepted[strangers].mean())
    cut = np.quantile(sims[strangers, 0], 0.95)  # similarity above which 5% of strangers pass
    return {"rank1": float(right[known].mean()), "dir": dir_, "fpir": fpir,
            "balanced": (dir_ + 1 - fpir) / 2, "dir_at_fpir5": float((right & (sims[:, 0] > cut))[known].mean())}


def measure(vectors: np.ndarray, names: list[str], enrol: int, splits: int, min_images: int,
            threshold: float, seed: int = 0) -> dict[str, dict[str, float]]:
    """Each rule's figures averaged over seeded splits."""
    from facecmp.gallery_index import RULES, ExactSearch, Snapshot

    rng = np.random.default_rng(seed)
    runs: dict[str, list[dict]] = {rule: [] for rule in RULES}
    for _ in range(splits):
        rows, owners, people, queries, truth = _split(names, enrol, min_images, rng)
        snap = Snapshot(0, "", vectors[rows], owners, people)
        for rule in RULES:
            best, sims = ExactSearch(snap, rule).search(vectors[queries], 1)
            runs[rule].append(_figures(best, sims, truth, threshold))
    n_known = int((truth >= 0).sum())
    return {rule: {**{k: float(np.mean([r[k] for r in rs])) for k in rs[0]},
                   "rank1_sd": float(np.std([r["rank1"] for r in rs])), "people": len(people),
                   "queries": n_known, "strangers": len(truth) - n_known}
            for rule, rs in runs.items()}


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("root", type=Path, help="identity folders root/<name>/*.jpg")
    ap.add_argument("--model", help="identity model directory (default: the bundled one)")
    ap.add_argument("--enrol", type=int, nargs="+", default=[2, 3], help="images enrolled per person")
    ap.add_argument("--min-images", type=int, default=4, help="people need this many images")
    ap.add_argument("--splits", type=int, default=20)
    ap.add_argument("--out", type=Path, default=Path("outputs/gallery_rules"))
    args = ap.parse_args(argv)
    import facecmp

    _, threshold = facecmp.load_model(args.model).meta.threshold_for("cosine")
    vectors, names = _embeddings(args.root, args.out, args.model)
    results = {}
    print(f"cosine threshold {threshold:.4f}; figures are means over {args.splits} splits")
    print("enrol  rule      rank-1 (sd)      DIR@t   FPIR@t  balanced  DIR@FPIR5%  people")
    for k in args.enrol:
        results[k] = measure(vectors, names, k, args.splits, args.min_images, threshold)
        for rule, f in results[k].items():
            print(f"{k:>5}  {rule:<8} {f['rank1']:7.2%} ({f['rank1_sd']:.2%}) {f['dir']:7.2%} {f['fpir']:7.2%} "
                  f"{f['balanced']:8.2%} {f['dir_at_fpir5']:9.2%}  {f['people']:>6}")
    print(f"{results[args.enrol[0]]['max']['strangers']} strangers")
    (args.out / "summary.json").write_text(json.dumps({"threshold": threshold, "results": results}, indent=2))
    print(f"wrote {args.out}/summary.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
