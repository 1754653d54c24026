"""Face crops -> embeddings with a model directory's backbone (the FC head is cut off)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facecmp.errors import FacecmpError
from facecmp.preprocess import FaceCrop, load_faces, run_batches


@dataclass
class Embedded:
    """Embeddings of some image files; rows of failed files are zero and listed in errors."""

    paths: list[str]
    vectors: np.ndarray  # N x 512 float32
    ok: np.ndarray  # N bool
    errors: dict[str, str]
    faces: dict[str, FaceCrop]


class Embedder:
    """Runs the backbone of a model directory on batches of crops."""

    def __init__(self, model_dir: str | Path, flip: bool | None = None, batch_size: int = 64,
                 fast: bool = True):
        from facecmp.inference import ModelRunner
        from facecmp.modeldir import read_meta

        self.model_dir = Path(model_dir)
        self.meta = read_meta(model_dir)
        self.flip = bool(self.meta.get("embed_flip", False)) if flip is None else flip
        self.batch_size = batch_size
        self.runner = ModelRunner(self.model_dir, fast=fast)

    def embed_crops(self, crops: np.ndarray) -> np.ndarray:
        """uint8 N x S x S x C crops -> N x 512 embeddings (flip-averaged if enabled)."""
        out = run_batches(self.runner, crops, self.meta, self.batch_size, self.flip)
        dim = int(self.meta["embedding_size"])
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, dim), np.float32)

    def embed_files(self, paths: list[str | Path], detector: str | None = None,
                    progress: bool = False) -> Embedded:
        """Read, crop and embed image files; unreadable or faceless files are reported, not fatal."""
        names = [str(p) for p in paths]
        size, chans = int(self.meta["input_size"]), 1 if self.meta.get("color") == "gray" else 3
        crops = np.zeros((len(names), size, size, chans), np.uint8)
        ok = np.zeros(len(names), bool)
        errors, faces = {}, {}
        for i, (name, face) in enumerate(zip(names, load_faces(names, self.meta, detector))):
            if isinstance(face, FacecmpError):
                errors[name] = str(face)
            else:
                crops[i], ok[i], faces[name] = face.pixels, True, face
            if progress and ((i + 1) % 200 == 0 or i + 1 == len(names)):
                print(f"\rreading faces: {i + 1}/{len(names)}", end="", file=sys.stderr, flush=True)
        if progress and names:
            print(file=sys.stderr)
        vectors = np.zeros((len(names), int(self.meta["embedding_size"])), np.float32)
        vectors[ok] = self.embed_crops(crops[ok])
        return Embedded(names, vectors, ok, errors, faces)


def l2_normalize(v: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    n = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.maximum(n, 1e-12)


def save_npz(result: Embedded, path: Path, meta: dict[str, Any], normalized: bool) -> None:
    """Write paths beside vectors (only the files that embedded), plus the errors."""
    np.savez(path, paths=np.asarray([p for p, k in zip(result.paths, result.ok) if k]),
             vectors=result.vectors[result.ok], normalized=normalized,
             failed=np.asarray(sorted(result.errors)), model_input_size=int(meta["input_size"]))
