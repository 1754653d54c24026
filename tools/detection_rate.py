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
from facecmp.errors import FacecmpError  # noqa: E402
from facecmp.images import load_rgb  # noqa: E402


def default_data_root() -> Path:
    """The data root as facecmp decides it ($FACECMP_DATA, else ../shared/data)."""
    from facecmp.datasets import data_root

    return data_root()


def parse_folds(text: str) -> list[int]:
    """'1-5', '2' or '1,3,7' -> sorted fold numbers (1-based)."""
    folds: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.strip().partition("-")
        folds.update(range(int(lo), int(hi or lo) + 1))
    return sorted(folds)


def fold_images(pairs_file: Path, folds: list[int]) -> list[tuple[str, int]]:
    """Distinct (name, number) images used by the given folds of an LFW pairs file."""
    lines = pairs_file.read_text().split("\n")
    n_folds, per_fold = (int(v) for v in lines[0].split()[:2])
    rows = [line.split() for line in lines[1:] if line.strip()]
    images: dict[tuple[str, int], None] = {}
    for fold in folds:
        if not 1 <= fold <= n_folds:
            raise SystemExit(f"fold {fold} is outside 1-{n_folds}")
        for row in rows[(fold - 1) * 2 * per_fold: fold * 2 * per_fold]:
            if len(row) == 3:
                images[(row[0], int(row[1]))] = None
                images[(row[0], int(row[2]))] = None
            else:
                images[(row[0], int(row[1]))] = None
                images[(row[2], int(row[3]))] = None
    return list(images)


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
    pairs = args.pairs or root / "lfw-pairs.txt"
    if not pairs.is_file():
        raise SystemExit(f"{pairs}: no such file (set --data-root or FACECMP_DATA)")

    images = fold_images(pairs, parse_folds(args.folds))
    misses, times = [], []
    for i, (name, num) in enumerate(images, 1):
        path = root / "lfw" / name / f"{name}_{num:04d}.jpg"
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
