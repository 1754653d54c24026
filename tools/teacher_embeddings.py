"""Face descriptors from dlib's published ResNet (CC0), the teacher for distillation.

For every image of the training pool (the same --data / --exclude-* options as `facecmp
train`, classes of 2+ images), the face is found with facecmp's own detector (MTCNN, the
most confident face, the one the student's crop is cut around), dlib's 5-point shape
predictor places its landmarks in that box, and dlib's face recognition ResNet gives a
128-d descriptor. The result is one .npz: `paths` (resolved image paths), `emb` (N x 128,
NaN where no face was found) and a `teacher` note. Runs in worker processes, shows progress,
and resumes from its partial file after an interruption.

dlib and its model files are training-time only (`pip install -e ".[distill]"`); facecmp's
runtime never needs them.

Usage:
    python tools/teacher_embeddings.py --data DIR [--data DIR ...] [--exclude-pairs FILE
        --exclude-folds 1-5] [--exclude-list FILE] [--workers 2] --out outputs/teacher/dlib.npz
"""

from __future__ import annotations

import argparse
import importlib.util
import multiprocessing
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from facecmp.datasets import excluded_identities, scan_classes  # noqa: E402
from facecmp.errors import FacecmpError, one_line_errors  # noqa: E402

TEACHER = "dlib_face_recognition_resnet_model_v1 (face_recognition_models 0.3.0), 5-point landmarks in the MTCNN box"
DIM = 128
HOG_BOX = (-0.037, 0.135, 1.095, 0.995)  # left, top, right, bottom in MTCNN box units
CHUNK = 64


def model_files() -> tuple[Path, Path]:
    """dlib's 5-point shape predictor and recognition ResNet, from the face_recognition_models package."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("face_recognition_models is not installed (pip install -e \".[distill]\")")
    models = Path(next(iter(spec.submodule_search_locations))) / "models"
    files = (models / "shape_predictor_5_face_landmarks.dat", models / "dlib_face_recognition_resnet_model_v1.dat")
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise SystemExit(f"missing dlib model file(s): {', '.join(missing)}")
    return files


_NETS: dict = {}


def _init_worker() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import dlib

    shape_file, rec_file = model_files()
    _NETS.update(dlib=dlib, shape=dlib.shape_predictor(str(shape_file)),
                 rec=dlib.face_recognition_model_v1(str(rec_file)))


def describe(path: str) -> np.ndarray:
    """The teacher's 128-d descriptor of the most confident face in the image (NaN if none)."""
    from facecmp.detect import detect_faces, pick_face
    from facecmp.images import load_rgb

    try:
        rgb = np.ascontiguousarray(load_rgb(path))
        face, _ = pick_face(detect_faces(rgb, "mtcnn"))
    except FacecmpError:
        return np.full(DIM, np.nan, dtype=np.float32)
    x1, y1, x2, y2 = face.box
    w, h = x2 - x1, y2 - y1
    # dlib's shape predictor was trained on its HOG detector's boxes: on 127 LFW images
    # the median HOG box is this MTCNN box with its top 13.5% lower and 6% wider
    box = [x1 + HOG_BOX[0] * w, y1 + HOG_BOX[1] * h, x1 + HOG_BOX[2] * w, y1 + HOG_BOX[3] * h]
    shape = _NETS["shape"](rgb, _NETS["dlib"].rectangle(*(round(v) for v in box)))
    return np.asarray(_NETS["rec"].compute_face_descriptor(rgb, shape), dtype=np.float32)


def _describe_chunk(paths: list[str]) -> np.ndarray:
    return np.stack([describe(p) for p in paths])


def add_pool_arguments(parser: argparse.ArgumentParser) -> None:
    """The training pool's options, as `facecmp train` takes them, plus --limit and --out."""
    parser.add_argument("--data", type=Path, action="append", required=True)
    parser.add_argument("--exclude-pairs", type=Path)
    parser.add_argument("--exclude-folds")
    parser.add_argument("--exclude-list", type=Path, action="append", default=[])
    parser.add_argument("--min-images", type=int, default=2,
                        help="smallest class kept, as the training config's data.min_images (default 2)")
    parser.add_argument("--limit", type=int, default=0, help="first N images only (for a quick check)")
    parser.add_argument("--out", type=Path, required=True)


def pool_folder(args):
    """The training pool, as `facecmp train` gathers it from the same options (--min-images per class)."""
    exclude = excluded_identities(args.exclude_list, args.exclude_pairs, args.exclude_folds)
    return scan_classes(args.data, min_images=args.min_images, exclude=exclude)


def training_paths(args) -> list[str]:
    """Resolved paths of the training pool."""
    return [os.path.realpath(p) for p in pool_folder(args).paths]


def _save(out: Path, paths: list[str], emb: np.ndarray) -> None:
    tmp = out.with_name(out.name + ".tmp.npz")
    np.savez(tmp, paths=np.asarray(paths), emb=emb, teacher=np.asarray(TEACHER))
    os.replace(tmp, out)


def run(paths: list[str], out: Path, workers: int, progress: bool = True) -> np.ndarray:
    """Describe every path (resuming from out's partial file) and write out; returns the embeddings."""
    partial = out.with_name(out.name + ".partial.npz")
    done: dict[str, np.ndarray] = {}
    if partial.exists():
        with np.load(partial) as z:
            done = dict(zip(z["paths"].tolist(), z["emb"]))
    todo = [p for p in paths if p not in done]
    chunks = [todo[i : i + CHUNK] for i in range(0, len(todo), CHUNK)]
    start, last_save = time.monotonic(), time.monotonic()
    if chunks:
        with multiprocessing.get_context("spawn").Pool(workers, initializer=_init_worker) as pool:
            for chunk, emb in zip(chunks, pool.imap(_describe_chunk, chunks)):
                done.update(zip(chunk, emb))
                n = len(done)
                if progress:
                    rate = (n - (len(paths) - len(todo))) / max(1e-6, time.monotonic() - start)
                    print(f"\r{n}/{len(paths)} images, {rate:.1f}/s", end="", file=sys.stderr, flush=True)
                if time.monotonic() - last_save > 60:
                    _save(partial, list(done), np.stack(list(done.values())))
                    last_save = time.monotonic()
        if progress:
            print(file=sys.stderr)
    emb = np.stack([done[p] for p in paths]) if paths else np.zeros((0, DIM), np.float32)
    _save(out, paths, emb)
    partial.unlink(missing_ok=True)
    return emb


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_pool_arguments(parser)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    model_files()
    paths = training_paths(args)
    if args.limit:
        paths = paths[: args.limit]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    emb = run(paths, args.out, max(1, args.workers))
    found = int(np.isfinite(emb[:, 0]).sum()) if len(emb) else 0
    print(f"{found}/{len(paths)} images described (no face in {len(paths) - found}); wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
