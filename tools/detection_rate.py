"""How often the face detector finds a face in the LFW images of some View 2 folds.

Usage:
    python tools/detection_rate.py --folds 1-5 [--pairs FILE] [--data-root DIR] [--out JSON]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from facecmp.detect import DETECTORS, detect_faces  # noqa: E402
from facecmp.errors import FacecmpError, one_line_errors  # noqa: E402
from facecmp.images import load_rgb  # noqa: E402
from facecmp.pairs import read_pairs, select_folds  # noqa: E402


def default_data_root() -> Path:
    """The data root as facecmp decides it ($FACECMP_DATA, else ../shared/data)."""
    from facecmp.datasets import data_root

    return data_root()


def fold_images(pairs_file: Path, folds: str, images_root: Path | None = None) -> list[Path]:
    """Distinct images used by the given folds of a pairs file, in order of first use."""
    pairs = select_folds(read_pairs(pairs_file, images_root), folds)
    return list(dict.fromkeys(path for pair in pairs for path in (pair.path_a, pair.path_b)))


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=None,
                        help="folder holding lfw/ and lfw-pairs.txt (default: $FACECMP_DATA)")
    parser.add_argument("--pairs", type=Path, default=None, help="default: DATA_ROOT/lfw-pairs.txt")
    parser.add_argument("--folds", default="1-5", help="e.g. 1-5 or 1,3 (default 1-5)")
    parser.add_argument("--detector", choices=DETECTORS, default="mtcnn")
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    root = args.data_root or default_data_root()
    images = fold_images(args.pairs or root / "lfw-pairs.txt", args.folds, root / "lfw")
    misses, times = [], []
    for i, path in enumerate(images, 1):
        try:
            rgb = load_rgb(path)
        except FacecmpError as exc:
            misses.append({"image": str(path), "reason": str(exc)})
            continue
        start = time.perf_counter()
        faces = detect_faces(rgb, args.detector)
        times.append((time.perf_counter() - start) * 1000)
        if not faces:
            misses.append({"image": str(path), "reason": "no face found"})
        if i % 500 == 0:
            print(f"  {i}/{len(images)} images, {len(misses)} misses", file=sys.stderr, flush=True)

    total = len(images)
    found = total - len(misses)
    median_ms = statistics.median(times) if times else float("nan")
    print(f"found a face in {found} of {total} images ({100 * found / max(total, 1):.2f}%)")
    print(f"median {median_ms:.1f} ms per image ({args.detector}, detection only)")
    for miss in misses:
        print(f"  miss: {miss['image']} ({miss['reason']})")
    if args.out:
        result = {"detector": args.detector, "folds": args.folds, "found": found, "total": total,
                  "rate": found / max(total, 1), "median_ms": median_ms, "misses": misses}
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
