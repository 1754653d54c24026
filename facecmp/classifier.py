"""Classifier heads (mask, expression) on images: a label and class probabilities each."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from facecmp.errors import FacecmpError, ModelError
from facecmp.images import ImageInput, describe
from facecmp.preprocess import FaceCrop, check_views, check_zoom, load_face, run_batches


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64, so each row sums to 1 to rounding."""
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


class Classifier:
    """A model directory with a classifier head, run on batches of face crops."""

    def __init__(self, model_dir: str | Path, task: str | None = None, batch_size: int = 64,
                 flip: bool | None = None, zoom: float | None = None, crops: int | None = None,
                 fast: bool = True) -> None:
        from facecmp.inference import ModelRunner
        from facecmp.modeldir import HEAD, open_model

        self.model_dir = Path(model_dir)
        self.meta = open_model(model_dir)
        if task is not None and self.meta.task != task:
            raise ModelError(f"{model_dir} is a model of the {self.meta.task} task, not of the {task} task")
        if not self.meta.classes:
            raise ModelError(f"{model_dir} is not a classifier model (no classes in its meta.json)")
        if not (self.model_dir / HEAD).is_file():
            raise ModelError(f"{model_dir} has no {HEAD}")
        self.classes: list[str] = list(self.meta.classes)
        self.batch_size = batch_size
        # test-time flip: average the probabilities of the face and its mirror (per model by default)
        self.flip = self.meta.predict_flip if flip is None else flip
        # test-time zoom: the central fraction of each crop (preprocess.zoom_views), per model by default
        self.zoom = check_zoom(self.meta.predict_zoom if zoom is None else zoom)
        # test-time crops: 1 (the central square) or 5 (and the four corner squares), per model by default
        self.crops = check_views(self.meta.predict_crops if crops is None else crops, self.zoom)
        self.runner = ModelRunner(self.model_dir, with_head=True, fast=fast)

    def probabilities(self, crops: np.ndarray) -> np.ndarray:
        """uint8 N x S x S x C crops -> N x classes softmax probabilities."""
        out = run_batches(lambda x: softmax(self.runner(x)), crops, self.meta, self.batch_size,
                          self.flip, self.zoom, self.crops)
        if not out:
            return np.zeros((0, len(self.classes)))
        return np.concatenate(out)

    def crop(self, image: ImageInput, detector: str | None = None, source: str | None = None) -> FaceCrop:
        """One image's face crop; with a detector, falls back from MTCNN to Haar to the whole image."""
        return load_face(image, self.meta, detector, source, fallback=True)

    def _result(self, path: str, face: FaceCrop, probs: np.ndarray) -> dict[str, Any]:
        return {"path": path, "label": self.classes[int(np.argmax(probs))],
                "probabilities": {c: float(p) for c, p in zip(self.classes, probs)},
                "box": face.box, "note": face.note}

    def iter_files(self, images: list[ImageInput], detector: str | None = None,
                   progress: bool | None = None) -> Iterator[tuple[dict[str, Any], np.ndarray | None]]:
        """(result, crop) per image in order, a batch at a time; failed images give {path, error}."""
        names = [describe(image, i) for i, image in enumerate(images)]
        progress = len(names) > 200 if progress is None else progress
        for start in range(0, len(names), self.batch_size):
            chunk = list(zip(images[start : start + self.batch_size], names[start : start + self.batch_size]))
            items: list[FaceCrop | str] = []
            for image, name in chunk:
                try:
                    items.append(self.crop(image, detector, name))
                except FacecmpError as exc:
                    items.append(str(exc))
            faces = [f for f in items if isinstance(f, FaceCrop)]
            probs = iter(self.probabilities(np.stack([f.pixels for f in faces])) if faces else [])
            for (_, name), item in zip(chunk, items):
                if isinstance(item, str):
                    yield {"path": name, "error": item}, None
                else:
                    yield self._result(name, item, next(probs)), item.pixels
            if progress:
                done = start + len(chunk)
                print(f"\rclassifying: {done}/{len(names)}", end="", file=sys.stderr, flush=True)
        if progress and names:
            print(file=sys.stderr)

    def predict_files(self, images: list[ImageInput], detector: str | None = None,
                      progress: bool | None = None) -> list[dict[str, Any]]:
        """Per image {path, label, probabilities, box, note}, or {path, error} if it failed."""
        return [result for result, _ in self.iter_files(images, detector, progress)]
