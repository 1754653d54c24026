"""Masked-face verification pairs: draw a synthetic mask on every image of some folds of a
pairs file, then write pair files that compare masked faces with unmasked ones.

Usage:
    python tools/mask_pairs.py --pairs $FACECMP_DATA/lfw-pairs.txt --folds 1-5 --out outputs/masked
        [--seed 0] [--images ROOT] [--examples 24] [--workers 2]

OUT receives images/<Name>/<Name>_NNNN.jpg (the masked copies), landmarks.json, one_side.csv
(the first image unmasked, the second masked), both.csv (both masked), protocol.json and
examples.png. The protocol is described in docs/masked-protocol.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from facecmp import __version__  # noqa: E402
from facecmp.detect import Face, detect_faces  # noqa: E402
from facecmp.errors import FacecmpError, NothingDoneError, one_line_errors  # noqa: E402
from facecmp.images import load_rgb  # noqa: E402
from facecmp.masks import MASK_FILLS, MASK_STYLES, MASK_VERSION, draw_mask  # noqa: E402
from facecmp.pairs import Pair, read_pairs, select_folds, write_pairs_csv  # noqa: E402

TOOL_VERSION = f"tools/mask_pairs.py 1 (facecmp {__version__}, masks {MASK_VERSION})"
PROGRESS_EVERY = 200
Records = dict[str, dict[str, Any]]  # image key -> what mask_image found and drew


def image_key(path: Path) -> str:
    """How an image is named in the protocol: <identity folder>/<file name>."""
    return f"{path.parent.name}/{path.name}"


def masked_path(key: str) -> Path:
    """Where the masked copy of an image goes, relative to OUT (always a .jpg)."""
    return Path("images") / Path(key).with_suffix(".jpg")


def image_rng(seed: int, key: str) -> np.random.Generator:
    """The generator of one image's mask: from the run's seed and the image's key only, so an
    image gets the same mask whatever else the run holds and in whatever order it runs."""
    digest = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "little")
    return np.random.default_rng([seed, digest])


def _save_jpeg(rgb: np.ndarray, path: Path) -> None:
    from PIL import Image

    gray = np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2])
    image = Image.fromarray(rgb[..., 0] if gray else rgb, "L" if gray else "RGB")
    image.save(path, "JPEG", quality=95)


def mask_image(source: Path, out_dir: Path, seed: int) -> dict[str, Any]:
    """Find the face of one image, draw its mask and write the masked copy; the image's record.

    No face: the image is copied unmasked (landmarks null, with the reason). An image that
    cannot be read or written gives a record with an `error`, and no copy.
    """
    key = image_key(source)
    target = out_dir / masked_path(key)
    record: dict[str, Any] = {"source": str(source), "masked": masked_path(key).as_posix()}
    try:
        rgb = load_rgb(source)
        faces = detect_faces(rgb)
        target.parent.mkdir(parents=True, exist_ok=True)
        if not faces:
            if source.suffix.lower() in (".jpg", ".jpeg"):
                shutil.copyfile(source, target)
            else:
                _save_jpeg(rgb, target)
            return {**record, "landmarks": None, "reason": f"no face found in {source}"}
        face = central_face(faces, rgb.shape)
        rng = image_rng(seed, key)
        style = MASK_STYLES[rng.integers(len(MASK_STYLES))]
        fill = MASK_FILLS[rng.integers(len(MASK_FILLS))]
        _save_jpeg(draw_mask(rgb, face.landmarks, rng, style, fill), target)
    except FacecmpError as exc:
        return {**record, "masked": None, "error": str(exc)}
    except OSError as exc:
        return {**record, "masked": None, "error": f"{target}: cannot write ({exc.strerror or exc})"}
    found = face.to_json()
    return {**record, "landmarks": found["landmarks"], "box": found["box"], "score": found["score"],
            "faces": len(faces), "most_confident": face is max(faces, key=lambda f: f.score),
            "style": style, "fill": fill}


def central_face(faces: list[Face], shape: tuple[int, ...]) -> Face:
    """The face whose box centre is nearest the image centre: in LFW, the named person (a
    bystander can be more confident than the subject)."""
    def dist(f: Face) -> float:
        return float(np.hypot((f.box[0] + f.box[2] - shape[1]) / 2, (f.box[1] + f.box[3] - shape[0]) / 2))

    return min(faces, key=dist)


def mask_images(images: list[Path], out_dir: Path, seed: int, workers: int) -> Records:
    """mask_image over every image, `workers` at a time (each thread keeps its own detector),
    with progress on stderr; key -> record, in the order given."""
    start, records = time.perf_counter(), {}
    no_face = failed = 0
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="mask") as pool:
        for i, record in enumerate(pool.map(mask_image, images, [out_dir] * len(images),
                                            [seed] * len(images)), 1):
            records[image_key(images[i - 1])] = record
            no_face += "reason" in record
            failed += "error" in record
            if i % PROGRESS_EVERY == 0 or i == len(images):
                print(f"  {i}/{len(images)} images, {no_face} without a face, {failed} failed, "
                      f"{time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    return records


def _distinct_images(pairs: list[Pair]) -> list[Path]:
    """Every image the pairs use, in order of first use; two images with one key are refused."""
    images = list(dict.fromkeys(p for pair in pairs for p in (pair.path_a, pair.path_b)))
    seen: dict[str, Path] = {}
    for path in images:
        other = seen.setdefault(image_key(path), path)
        if other != path:
            raise FacecmpError(f"{other} and {path} would both be masked as {image_key(path)}; "
                               "the pairs must name each <folder>/<file> once")
    return images


def _original(path: Path, out_dir: Path) -> Path:
    """An unmasked image as the CSVs name it: relative to OUT inside it, else absolute (so the
    folder can move while the originals stay where they are)."""
    path = path.resolve()
    try:
        return path.relative_to(out_dir.resolve())
    except ValueError:
        return path


def write_pair_files(pairs: list[Pair], out_dir: Path) -> None:
    """one_side.csv (first image unmasked, second masked) and both.csv, with each pair's fold."""
    def masked(p: Path) -> Path:
        return masked_path(image_key(p))

    one_side = [Pair(_original(p.path_a, out_dir), masked(p.path_b), p.same, p.fold, p.line) for p in pairs]
    both = [Pair(masked(p.path_a), masked(p.path_b), p.same, p.fold, p.line) for p in pairs]
    write_pairs_csv(one_side, out_dir / "one_side.csv", folds=True)
    write_pairs_csv(both, out_dir / "both.csv", folds=True)


def write_landmarks(records: Records, path: Path) -> None:
    """landmarks.json: per image key, one line of its source, the unmasked original's landmarks
    and box (null + reason without a face, error if unreadable), how many faces MTCNN found and
    whether the one masked (the central face) was also the most confident, and the mask's style and fill."""
    fields = ("source", "landmarks", "box", "faces", "most_confident", "style", "fill", "reason", "error")
    lines = [f"{json.dumps(k)}: {json.dumps({n: r[n] for n in fields if n in r})}"
             for k, r in records.items()]
    path.write_text("{\n" + ",\n".join(lines) + "\n}\n", encoding="utf-8")


def protocol(args: argparse.Namespace, pairs: list[Pair], records: Records) -> dict[str, Any]:
    """What protocol.json records: how the set was made and what it holds."""
    done = [r for r in records.values() if r.get("style")]
    return {
        "tool": TOOL_VERSION, "seed": args.seed, "folds": args.folds,
        "pairs_file": str(args.pairs.resolve()),
        "images_root": str(args.images.resolve()) if args.images else None,
        "detector": "mtcnn (the face nearest the image centre)",
        "masked_side": {"one_side.csv": "path_b only", "both.csv": "path_a and path_b"},
        "pairs": len(pairs), "same": sum(p.same for p in pairs), "different": sum(not p.same for p in pairs),
        "images": len(records), "masked": len(done),
        "no_face": sum("reason" in r for r in records.values()),
        "failed": sum("error" in r for r in records.values()),
        "several_faces": sum(r["faces"] > 1 for r in done),
        "central_face_not_most_confident": sum(not r["most_confident"] for r in done),
        "styles": {s: sum(r["style"] == s for r in done) for s in MASK_STYLES},
        "fills": {f: sum(r["fill"] == f for r in done) for f in MASK_FILLS},
        "style_fill": dict(sorted(Counter(f"{r['style']}/{r['fill']}" for r in done).items())),
        "no_face_images": sorted(k for k, r in records.items() if "reason" in r),
        "failed_images": {k: r["error"] for k, r in records.items() if "error" in r},
    }


def contact_sheet(records: Records, out_dir: Path, count: int, path: Path) -> int:
    """A grid of `count` masked faces, every style/fill first, labelled; the number shown."""
    import cv2

    from facecmp.align import center_crop_face

    groups: dict[tuple[str, str], list[dict[str, Any]]] = {(s, f): [] for s in MASK_STYLES
                                                           for f in MASK_FILLS}
    for record in records.values():
        if record.get("style"):
            groups[record["style"], record["fill"]].append(record)
    # Round robin: the first image of each style/fill, then the second of each, ...
    order = [g[i] for i in range(max(map(len, groups.values()))) for g in groups.values() if i < len(g)]
    tiles = []
    for record in order[:count]:
        masked = load_rgb(out_dir / record["masked"])
        tile = center_crop_face(masked, record["box"], 160, 1.5)
        cv2.putText(tile, f"{record['style']} {record['fill']}", (4, 154), cv2.FONT_HERSHEY_SIMPLEX,
                    0.45, (255, 255, 0), 1, cv2.LINE_AA)
        tiles.append(tile)
    if not tiles:
        return 0
    cols = min(6, len(tiles))
    tiles += [np.zeros_like(tiles[0])] * (-len(tiles) % cols)
    sheet = np.vstack([np.hstack(tiles[i:i + cols]) for i in range(0, len(tiles), cols)])
    cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    return len(order[:count])


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    """Parse arguments, build the masked set and return the exit code."""
    from facecmp.runtime import cpu_count

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=Path, required=True, help="LFW pairs file or pair CSV")
    ap.add_argument("--folds", default=None, help="only these folds, e.g. 1-5 (default: all)")
    ap.add_argument("--out", type=Path, required=True, help="output folder")
    ap.add_argument("--seed", type=int, default=0, help="random seed, >= 0 (default 0)")
    ap.add_argument("--images", type=Path, default=None, help="images root (default: as read_pairs)")
    ap.add_argument("--examples", type=int, default=24, help="faces on examples.png (0: none)")
    ap.add_argument("--workers", type=int, default=min(2, cpu_count()), help="reader threads")
    args = ap.parse_args(argv)
    if args.seed < 0:
        raise FacecmpError(f"--seed must be >= 0, got {args.seed}")
    start = time.perf_counter()
    pairs = read_pairs(args.pairs, args.images)
    if args.folds:
        pairs = select_folds(pairs, args.folds)
    images = _distinct_images(pairs)
    out = args.out
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FacecmpError(f"{out}: cannot create the output folder ({exc.strerror or exc})") from None
    records = mask_images(images, out, args.seed, args.workers)
    if len(records) == sum("error" in r for r in records.values()):
        raise NothingDoneError(f"none of the {len(records)} images could be read; see --images")
    write_landmarks(records, out / "landmarks.json")
    write_pair_files(pairs, out)
    summary = protocol(args, pairs, records)
    (out / "protocol.json").write_text(json.dumps(summary, indent=2) + "\n")
    shown = contact_sheet(records, out, args.examples, out / "examples.png") if args.examples > 0 else 0
    print(f"{summary['images']} images: {summary['masked']} masked, {summary['no_face']} without a face "
          f"(copied unmasked), {summary['failed']} failed; {summary['pairs']} pairs in "
          f"{out / 'one_side.csv'} and {out / 'both.csv'}; {time.perf_counter() - start:.0f} s")
    print("styles " + ", ".join(f"{k} {v}" for k, v in summary["styles"].items())
          + "; fills " + ", ".join(f"{k} {v}" for k, v in summary["fills"].items()))
    if shown:
        print(f"{shown} examples in {out / 'examples.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
