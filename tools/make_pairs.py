"""Make a balanced verification pair list from a folder of identity folders.

Usage:
    python tools/make_pairs.py ROOT --same 100 --different 100 --seed 0 --out pairs.csv

ROOT holds one folder per person (``ROOT/<identity>/<image>``). The CSV lists image
paths relative to the CSV's own folder, so the two can be moved together.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

# Runnable from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from facecmp.errors import FacecmpError, one_line_errors  # noqa: E402
from facecmp.pairs import Pair, make_balanced_pairs, write_pairs_csv  # noqa: E402


def _relative_to(pairs: list[Pair], folder: Path) -> list[Pair]:
    """The same pairs with paths rewritten relative to folder (where the CSV lives)."""
    def rel(p: Path) -> Path:
        return Path(os.path.relpath(p.resolve(), folder.resolve()))

    return [Pair(rel(p.path_a), rel(p.path_b), p.same, p.fold, p.line) for p in pairs]


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    """Parse arguments, write the pair CSV and return the exit code."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path, help="folder of identity folders")
    ap.add_argument("--same", type=int, default=100, help="same-identity pairs (default 100)")
    ap.add_argument("--different", type=int, default=100,
                    help="different-identity pairs (default 100)")
    ap.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    ap.add_argument("--out", type=Path, default=Path("pairs.csv"),
                    help="output CSV (default pairs.csv)")
    args = ap.parse_args(argv)
    pairs = make_balanced_pairs(args.root, args.same, args.different, args.seed)
    out = args.out
    if not out.parent.is_dir():
        raise FacecmpError(f"{out.parent}: output folder does not exist")
    write_pairs_csv(_relative_to(pairs, out.parent), out)
    print(f"wrote {len(pairs)} pairs ({args.same} same, {args.different} different) to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
