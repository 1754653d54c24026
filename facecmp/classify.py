"""Classifier heads (mask, expression) on image files: a label and class probabilities each."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from facecmp.detect import DETECTORS
from facecmp.errors import FacecmpError, NoFaceError
from facecmp.images import load_rgb
from facecmp.preprocess import FaceCrop, check_views, check_zoom, crop_face, run_batches

# Box side of each detector relative to MTCNN's on the same face (measured on Face Mask 12K
# and FER2013 crops: Haar boxes are about 0.75x). A model's box scale is chosen for its own
# detector, so a box from the other detector is rescaled to frame the face the same way.
BOX_SIDE = {"mtcnn": 1.0, "haar": 0.75}


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64, so each row sums to 1 to rounding."""
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def _join(*notes: str | None) -> str | None:
    text = "; ".join(n for n in notes if n)
    return text or None


class Classifier:
    """A model directory with a classifier head, run on batches of face crops."""

    def __init__(self, model_dir: str | Path, task: str | None = None, batch_size: int = 64,
                 flip: bool | None = None, zoom: float | None = None, crops: int | None = None,
                 fast: bool = True) -> None:
        from facecmp.inference import ModelRunner
        from facecmp.modeldir import HEAD, read_meta

        self.model_dir = Path(model_dir)
        self.meta = read_meta(model_dir)
        if not self.meta.get("classes"):
            raise FacecmpError(f"{model_dir} is not a classifier model (no classes in its meta.json)")
        if task is not None and self.meta.get("task") != task:
            raise FacecmpError(f"{model_dir} is a {self.meta.get('task')} model, not a {task} model")
        if not (self.model_dir / HEAD).is_file():
            raise FacecmpError(f"{model_dir} has no {HEAD}")
        self.classes: list[str] = list(self.meta["classes"])
        self.batch_size = batch_size
        # test-time flip: average the probabilities of the face and its mirror (per model by default)
        self.flip = bool(self.meta.get("predict_flip", False)) if flip is None else flip
        # test-time zoom: the central fraction of each crop (preprocess.zoom_views), per model by default
        self.zoom = check_zoom(float(self.meta.get("predict_zoom", 1.0)) if zoom is None else zoom)
        # test-time crops: 1 (the central square) or 5 (and the four corner squares), per model by default
        self.crops = check_views(int(self.meta.get("predict_crops", 1)) if crops is None else crops, self.zoom)
        self.runner = ModelRunner(self.model_dir, with_head=True, fast=fast)

    def probabilities(self, crops: np.ndarray) -> np.ndarray:
        """uint8 N x S x S x C crops -> N x classes softmax probabilities."""
        out = run_batches(lambda x: softmax(self.runner(x)), crops, self.meta, self.batch_size,
                          self.flip, self.zoom, self.crops)
        if not out:
            return np.zeros((0, len(self.classes)))
        return np.concatenate(out)

    def _chain(self, detector: str | None) -> list[str]:
        """Detectors to try in turn; empty when the image is used without detection."""
        crop = self.meta.get("crop") or {}
        if detector is None:
            if crop.get("method") not in ("align", "box"):
                return []
            detector = crop.get("detector", "mtcnn")
        if detector == "none":
            return []
        if detector not in DETECTORS:
            raise FacecmpError(f"unknown detector {detector!r}; choose mtcnn, haar or none")
        # MTCNN misses many masked faces (the mask hides nose and mouth); Haar often does not
        return ["mtcnn", "haar"] if detector == "mtcnn" else [detector]

    def _meta_for(self, detector: str) -> dict[str, Any]:
        crop = dict(self.meta.get("crop") or {})
        own = crop.get("detector", "mtcnn")
        if detector != own and crop.get("method") != "align":
            crop["scale"] = float(crop.get("scale", 1.0)) * BOX_SIDE[own] / BOX_SIDE[detector]
        return {**self.meta, "crop": crop}

    def crop(self, path: str | Path, detector: str | None = None) -> FaceCrop:
        """One file's face crop; with a detector, falls back from MTCNN to Haar to the whole image."""
        rgb = load_rgb(path)
        chain = self._chain(detector)
        if not chain:
            return crop_face(rgb, self.meta, str(path), detector)
        for i, name in enumerate(chain):
            try:
                face = crop_face(rgb, self._meta_for(name), str(path), name)
            except NoFaceError:
                continue
            if i:
                face.note = _join(f"no face found by {chain[0]}; used the {name} box", face.note)
            return face
        face = crop_face(rgb, self.meta, str(path), "none")
        face.note = f"no face found by {' or '.join(chain)}; classified the whole image"
        return face

    def _result(self, path: str, face: FaceCrop, probs: np.ndarray) -> dict[str, Any]:
        return {"path": path, "label": self.classes[int(np.argmax(probs))],
                "probabilities": {c: float(p) for c, p in zip(self.classes, probs)},
                "box": face.box, "note": face.note}

    def iter_files(self, paths: list[str | Path], detector: str | None = None,
                   progress: bool | None = None) -> Iterator[tuple[dict[str, Any], np.ndarray | None]]:
        """(result, crop) per file in order, a batch at a time; failed files give {path, error}."""
        names = [str(p) for p in paths]
        progress = len(names) > 200 if progress is None else progress
        for start in range(0, len(names), self.batch_size):
            chunk = names[start : start + self.batch_size]
            items: list[FaceCrop | str] = []
            for name in chunk:
                try:
                    items.append(self.crop(name, detector))
                except FacecmpError as exc:
                    items.append(str(exc))
            faces = [f for f in items if isinstance(f, FaceCrop)]
            probs = iter(self.probabilities(np.stack([f.pixels for f in faces])) if faces else [])
            for name, item in zip(chunk, items):
                if isinstance(item, str):
                    yield {"path": name, "error": item}, None
                else:
                    yield self._result(name, item, next(probs)), item.pixels
            if progress:
                done = start + len(chunk)
                print(f"\rclassifying: {done}/{len(names)}", end="", file=sys.stderr, flush=True)
        if progress and names:
            print(file=sys.stderr)

    def predict_files(self, paths: list[str | Path], detector: str | None = None,
                      progress: bool | None = None) -> list[dict[str, Any]]:
        """Per file {path, label, probabilities, box, note}, or {path, error} if it failed."""
        return [result for result, _ in self.iter_files(paths, detector, progress)]
