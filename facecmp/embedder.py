"""Face crops -> embeddings with a model directory's backbone (the FC head is cut off)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facecmp.errors import FacecmpError
from facecmp.images import ImageInput, describe
from facecmp.preprocess import FaceCrop, load_faces, run_batches


@dataclass
class Embedded:
    """Embeddings of some images; rows of failed images are zero, their errors listed by position."""

    sources: list[str]  # each image's path, or "<image i>" for an in-memory image
    vectors: np.ndarray  # N x 512 float32
    ok: np.ndarray  # N bool
    errors: dict[int, str]  # position -> one-line reason
    faces: list[FaceCrop | None]


class Embedder:
    """Runs the backbone of a model directory on batches of crops."""

    def __init__(self, model_dir: str | Path, flip: bool | None = None, batch_size: int = 64,
                 fast: bool = True):
        from facecmp.inference import ModelRunner
        from facecmp.modeldir import open_model

        self.model_dir = Path(model_dir)
        self.meta = open_model(model_dir)
        self.flip = self.meta.embed_flip if flip is None else flip
        self.batch_size = batch_size
        self.runner = ModelRunner(self.model_dir, fast=fast)

    def embed_crops(self, crops: np.ndarray) -> np.ndarray:
        """uint8 N x S x S x C crops -> N x 512 embeddings (flip-averaged if enabled)."""
        out = run_batches(self.runner, crops, self.meta, self.batch_size, self.flip)
        dim = self.meta.embedding_size
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, dim), np.float32)

    def embed_files(self, images: list[ImageInput], detector: str | None = None,
                    progress: bool = False) -> Embedded:
        """Read, crop and embed images; unreadable or faceless ones are reported, not fatal."""
        sources = [describe(image, i) for i, image in enumerate(images)]
        size = self.meta.input_size
        crops = np.zeros((len(images), size, size, self.meta.channels), np.uint8)
        ok = np.zeros(len(images), bool)
        errors: dict[int, str] = {}
        faces: list[FaceCrop | None] = [None] * len(images)
        for i, face in enumerate(load_faces(images, self.meta, detector)):
            if isinstance(face, FacecmpError):
                errors[i] = str(face)
            else:
                crops[i], ok[i], faces[i] = face.pixels, True, face
            if progress and ((i + 1) % 200 == 0 or i + 1 == len(images)):
                print(f"\rreading faces: {i + 1}/{len(images)}", end="", file=sys.stderr, flush=True)
        if progress and images:
            print(file=sys.stderr)
        vectors = np.zeros((len(images), self.meta.embedding_size), np.float32)
        vectors[ok] = self.embed_crops(crops[ok])
        return Embedded(sources, vectors, ok, errors, faces)


def l2_normalize(v: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    n = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.maximum(n, 1e-12)
