"""A model's own flip-averaged embeddings of the training pool: the target of `train.flip_teacher`.

For every image of the training pool (the same --data / --exclude-* options as `facecmp
train`, classes of 2+ images) the model's aligned crop is cut exactly as training cuts it
(the same cached crops), and the mean of the embeddings of the crop and its mirror is
written. Training a model towards these (facecmp/distill.py) teaches its single forward
pass what the average of the two sees, so inference can skip the mirror and halve its work.

The output .npz has the layout of tools/teacher_embeddings.py: `paths` (resolved image
paths), `emb` (N x 512, NaN where the image had no face) and a `teacher` note, plus the
model's image `convention` (JSON), which training checks against its own.

Usage:
    python tools/flip_teacher.py --model DIR --data DIR [--data DIR ...] [--exclude-pairs FILE
        --exclude-folds 1-5] [--exclude-list FILE] --out outputs/teacher/flip.npz
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from facecmp.errors import one_line_errors  # noqa: E402


def flip_averaged(model: Path, paths: list[Path], progress: bool = True) -> tuple[np.ndarray, dict]:
    """N x 512 flip-averaged embeddings of paths' aligned crops (NaN rows where no face was
    found), and the model's image convention."""
    from facecmp.cropstore import prepare_store
    from facecmp.embedder import Embedder

    emb = Embedder(model, flip=True)
    store = prepare_store(paths, emb.meta, progress=progress)  # read a batch at a time
    out = np.full((len(paths), emb.meta.embedding_size), np.nan, dtype=np.float32)
    step = 1024
    rows = np.flatnonzero(store.ok)
    for i in range(0, len(rows), step):
        out[rows[i : i + step]] = emb.embed_crops(store.take(rows[i : i + step]))
        if progress:
            print(f"\rembedded {min(i + step, len(rows))}/{len(rows)} crops", end="", file=sys.stderr, flush=True)
    if progress and len(rows):
        print(file=sys.stderr)
    return out, emb.meta.image_convention()


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    from teacher_embeddings import add_pool_arguments, pool_folder

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    add_pool_arguments(parser)
    args = parser.parse_args(argv)
    paths = pool_folder(args).paths
    if args.limit:
        paths = paths[: args.limit]
    emb, convention = flip_averaged(args.model, paths)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp.npz")
    np.savez(tmp, paths=np.asarray([os.path.realpath(p) for p in paths]), emb=emb,
             teacher=np.asarray(f"flip-averaged embeddings of {args.model}"),
             convention=np.asarray(json.dumps(convention, sort_keys=True)))
    os.replace(tmp, args.out)
    found = int(np.isfinite(emb[:, 0]).sum()) if len(emb) else 0
    print(f"{found}/{len(paths)} images embedded (no face in {len(paths) - found}); wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
