"""Hold some identities out of training for threshold calibration.

Picks N identities (seeded) with at least K images from a class-folder root, skipping those
named in the given pairs folds (the test identities), writes their names to a list for
`facecmp train --exclude-list`, and links them into a folder that `tools/make_pairs.py` can
draw calibration pairs from. Training, calibration and test identities stay disjoint.

With --singletons M, M people photographed only once (never trained on: training needs 2+
images) are linked beside them and listed in singletons.txt. They enter only the
different-identity pairs, as in LFW View 2, where most faces of the mismatched pairs are
of such people. The N identities do not depend on M.

    python tools/holdout_identities.py $FACECMP_DATA/lfw --pairs $FACECMP_DATA/lfw-pairs.txt \\
        --folds 1-5 -n 80 --min-images 4 --singletons 200 --out outputs/calib2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from facecmp.errors import FacecmpError, one_line_errors
from facecmp.images import is_image_name
from facecmp.pairs import pair_identities


def _image_counts(root: Path, exclude: set[str]) -> dict[str, int]:
    """Images per identity folder of root, for the folders not named in exclude."""
    return {d.name: sum(is_image_name(p) for p in d.iterdir())
            for d in sorted(root.iterdir()) if d.is_dir() and d.name not in exclude}


def holdout(root: Path, n: int, min_images: int, exclude: set[str], seed: int) -> list[str]:
    """N seeded identity names with at least min_images images, none of them in exclude."""
    eligible = [name for name, k in _image_counts(root, exclude).items() if k >= min_images]
    if len(eligible) < n:
        raise FacecmpError(f"only {len(eligible)} identities in {root} have {min_images}+ images")
    picked = np.random.default_rng(seed).choice(eligible, n, replace=False)
    return sorted(str(x) for x in picked)


def singletons(root: Path, m: int, exclude: set[str], seed: int) -> list[str]:
    """M seeded names of identities with exactly one image, none of them in exclude."""
    eligible = [name for name, k in _image_counts(root, exclude).items() if k == 1]
    if len(eligible) < m:
        raise FacecmpError(f"only {len(eligible)} identities in {root} have exactly one image")
    picked = np.random.default_rng([seed, 1]).choice(eligible, m, replace=False)
    return sorted(str(x) for x in picked)


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path)
    ap.add_argument("--pairs", type=Path, help="pairs file whose identities are never picked")
    ap.add_argument("--folds", help="only these folds of --pairs, e.g. 1-5")
    ap.add_argument("-n", type=int, default=80)
    ap.add_argument("--min-images", type=int, default=4)
    ap.add_argument("--singletons", type=int, default=0,
                    help="also link this many one-image people (different pairs only)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    exclude = pair_identities(args.pairs, args.folds) if args.pairs else set()
    names = holdout(args.root, args.n, args.min_images, exclude, args.seed)
    once = singletons(args.root, args.singletons, exclude, args.seed) if args.singletons else []
    linked = args.out / "identities"
    linked.mkdir(parents=True, exist_ok=True)
    for name in names + once:
        link = linked / name
        if not link.exists():
            link.symlink_to(args.root.resolve() / name, target_is_directory=True)
    (args.out / "holdout.txt").write_text("\n".join(names) + "\n")
    if once:
        (args.out / "singletons.txt").write_text("\n".join(once) + "\n")
    print(f"held out {len(names)} identities: {args.out / 'holdout.txt'}"
          + (f", and {len(once)} one-image people: {args.out / 'singletons.txt'}" if once else "")
          + f"; linked under {linked}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
