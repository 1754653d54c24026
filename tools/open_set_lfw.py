"""Open-set identification on LFW people the bundled identity model never trained on.

Usage:
    python tools/open_set_lfw.py [--pairs ../shared/data/lfw-pairs.txt] [--folds 1-5]
        [--masked outputs/masked] [--model DIR] --out outputs/open_set

The people of the chosen View 2 folds are split by how many photos LFW has of them:
- enrolled: everyone with 2 or more; the gallery (SQLite, `facecmp.enroll`) gets one photo
  each, the first by number that is not the probe;
- probes: another photo of each enrolled person, the first by number that the folds' pairs
  use (so the masked protocol has a masked copy of it), and the only photo of each person
  with a single one: strangers, who must come out `unknown`.
Every probe goes through `facecmp.identify` as a user's photo would (the most confident face).
With --masked (a folder of tools/mask_pairs.py for the same folds), the same probes are
identified again from their masked copies, each with its mask state.

Figures per probe set: rank-1 (the enrolled probes' nearest person is right), the
detection-and-identification rate at false-alarm rates of 1% and 10% (a threshold that
names that share of the strangers; a probe counts when its nearest person is right and within
it), and at the model's calibrated threshold the share named right and the strangers named.
Probes without a face count as not identified (and as strangers not named).

Writes OUT/probes.csv, OUT/summary.json and OUT/dir_far.png.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from facecmp.errors import FacecmpError, one_line_errors  # noqa: E402

FARS = (0.01, 0.1)


def protocol(pairs_file: Path, folds: str) -> tuple[dict[str, Path], list[tuple[str, Path, bool]]]:
    """(enrolled name -> gallery photo, probes as (name, photo, enrolled)) of the folds' people."""
    from facecmp.images import is_image_name
    from facecmp.pairs import read_pairs, select_folds

    used = set()
    for pair in select_folds(read_pairs(pairs_file), folds):
        used.update((pair.path_a, pair.path_b))
    gallery, probes = {}, []
    for name in sorted({p.parent.name for p in used}):
        folder = next(iter(p.parent for p in used if p.parent.name == name))
        photos = sorted(p for p in folder.iterdir() if is_image_name(p))
        if len(photos) == 1:
            probes.append((name, photos[0], False))
            continue
        probe = next(p for p in photos if p in used)
        gallery[name] = next(p for p in photos if p != probe)
        probes.append((name, probe, True))
    return gallery, probes


def identify_all(g, fm, photos: list[tuple[str, Path, bool]], progress: str) -> list[dict]:
    """One row per probe: its nearest person, distance, the model that searched and the mask."""
    from facecmp.identification import identify

    rows, started = [], time.time()
    for i, (name, path, enrolled) in enumerate(photos):
        row = {"name": name, "path": str(path), "enrolled": enrolled, "nearest": "", "distance": "",
               "threshold": "", "model": "", "p_masked": "", "error": ""}
        try:
            faces = identify(g, path, fm, top_k=1)
            if not faces:
                row["error"] = "no face found"
            else:
                best = faces[0]
                row.update(nearest=best.candidates[0][0] if best.candidates else "", distance=best.distance,
                           threshold=best.threshold, model=best.model,
                           p_masked=round(best.face.p_masked, 4) if best.face.p_masked is not None else "")
        except FacecmpError as exc:
            row["error"] = str(exc)
        rows.append(row)
        if (i + 1) % 50 == 0 or i + 1 == len(photos):
            print(f"\r{progress}: {i + 1}/{len(photos)} probes, {time.time() - started:.0f} s",
                  end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return rows


def figures(rows: list[dict]) -> dict:
    """Rank-1, DIR at each false-alarm rate, and the calibrated threshold's outcome."""
    known = [r for r in rows if r["enrolled"]]
    strangers = [r for r in rows if not r["enrolled"]]
    inf = float("inf")
    right = np.array([r["nearest"] == r["name"] for r in known])
    d_known = np.array([r["distance"] if r["distance"] != "" else inf for r in known], float)
    d_strange = np.sort([r["distance"] if r["distance"] != "" else inf for r in strangers])
    out = {"enrolled_probes": len(known), "strangers": len(strangers),
           "probes_without_face": sum(bool(r["error"]) for r in rows),
           "rank1": float(right.mean())}
    for far in FARS:
        k = int(np.floor(far * len(d_strange)))  # at most this many strangers within the threshold
        t = float(np.nextafter(d_strange[k], -inf)) if k < len(d_strange) else inf
        out[f"dir_at_far_{far:g}"] = float((right & (d_known <= t)).mean())
        out[f"threshold_at_far_{far:g}"] = t
    limit_k = np.array([r["threshold"] if r["threshold"] != "" else -inf for r in known], float)
    limit_s = np.array([r["threshold"] if r["threshold"] != "" else -inf for r in strangers], float)
    d_s = np.array([r["distance"] if r["distance"] != "" else inf for r in strangers], float)
    out["named_right_at_calibrated"] = float((right & (d_known <= limit_k)).mean())
    out["strangers_named_at_calibrated"] = int((d_s <= limit_s).sum())
    out["strangers_named_share_at_calibrated"] = float((d_s <= limit_s).mean())
    out["probes_by_model"] = dict(sorted(Counter(r["model"] for r in rows).items()))
    return out


def dir_far_curve(rows: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """DIR against the false-alarm rate, over every threshold."""
    known = [r for r in rows if r["enrolled"]]
    inf = float("inf")
    right = np.array([r["nearest"] == r["name"] for r in known])
    d_known = np.array([r["distance"] if r["distance"] != "" else inf for r in known], float)
    d_strange = np.sort([r["distance"] for r in rows if not r["enrolled"] and r["distance"] != ""])
    n_strange = sum(not r["enrolled"] for r in rows)
    far = np.arange(1, len(d_strange) + 1) / n_strange
    dir_ = np.array([(right & (d_known <= t)).mean() for t in d_strange])
    return far, dir_


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=Path, default=REPO.parent / "shared" / "data" / "lfw-pairs.txt")
    ap.add_argument("--folds", default="1-5")
    ap.add_argument("--masked", type=Path, help="a tools/mask_pairs.py folder of the same folds")
    ap.add_argument("--model", help="identity model (default: the bundled one)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    from facecmp.api import load_model
    from facecmp.enrol import enroll
    from facecmp.gallery import Gallery

    gallery, probes = protocol(args.pairs, args.folds)
    args.out.mkdir(parents=True, exist_ok=True)
    fm = load_model(args.model)
    g = Gallery(args.out / "gallery.db", create=True)
    started = time.time()
    for i, (name, photo) in enumerate(sorted(gallery.items())):
        enroll(g, name, [photo], fm)  # a rerun skips what is enrolled already
        if (i + 1) % 50 == 0 or i + 1 == len(gallery):
            print(f"\renrolling: {i + 1}/{len(gallery)} people, {time.time() - started:.0f} s",
                  end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    sets = {"unmasked": probes}
    if args.masked:
        sets["masked"] = [(n, args.masked / "images" / n / p.name, e) for n, p, e in probes]
    rows, summary = [], {"pairs": str(args.pairs), "folds": args.folds, "model": str(fm.path),
                         "people_enrolled": len(g.people()), "sets": {}}
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, photos in sets.items():
        mine = identify_all(g, fm, photos, label)
        summary["sets"][label] = figures(mine)
        print(label, json.dumps(summary["sets"][label]))
        far, dir_ = dir_far_curve(mine)
        ax.plot(far, 100 * dir_, label=f"{label} probes")
        rows += [{"set": label, **r} for r in mine]
    ax.set_xscale("log")
    ax.set_xlabel("false-alarm rate (strangers named)")
    ax.set_ylabel("detection and identification rate (%)")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out / "dir_far.png", dpi=120)
    with open(args.out / "probes.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
