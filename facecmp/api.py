"""The public Python API: load a model, compare two faces, embed faces, classify faces.

    import facecmp
    r = facecmp.compare("a.jpg", "b.jpg")
    print(r.same, r.distance, r.threshold)

Images may be paths, PIL images or HxWx3 uint8 RGB arrays. Bad input raises a
facecmp.FacecmpError subclass (ImageError, NoFaceError, ModelError) with a one-line
message; batch functions (embed, classify) record each failure and go on.
Models load once (the bundled ones on first use) and may be shared by threads.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facecmp import metrics
from facecmp.config import TASKS
from facecmp.enrol import enroll  # noqa: F401  (the gallery API, re-exported by facecmp)
from facecmp.errors import FacecmpError, ModelError
from facecmp.faces import AnalyzedFace, analyze  # noqa: F401
from facecmp.gallery import Gallery  # noqa: F401
from facecmp.identification import Identification, identify  # noqa: F401
from facecmp.images import ImageInput, describe, to_rgb
from facecmp.preprocess import FaceCrop, load_faces
from facecmp.video import VideoResult, identify_video  # noqa: F401


@dataclass(frozen=True)
class FaceInfo:
    """Where a face was found: its box (x1, y1, x2, y2) and five landmarks, in image pixels.

    Both are None when no detector ran (the image was the crop); `note` says what was
    unusual (several faces, a fallback detector)."""

    source: str
    box: list[float] | None = None
    landmarks: list[list[float]] | None = None
    note: str | None = None
    mask: float | None = None  # the mask head's P(masked), where compare asked it

    @classmethod
    def of(cls, crop: FaceCrop, source: str, mask: float | None = None) -> FaceInfo:
        """The FaceInfo of a prepared crop."""
        return cls(source, crop.box, crop.landmarks, crop.note, mask)

    def to_json(self) -> dict[str, Any]:
        """A plain dict: path, box, landmarks, note, and mask where it was asked."""
        out = {"path": self.source, "box": self.box, "landmarks": self.landmarks, "note": self.note}
        if self.mask is not None:
            out["mask"] = round(self.mask, 4)
        return out


@dataclass(frozen=True)
class Comparison:
    """The verdict on two faces: same when distance <= threshold."""

    same: bool
    distance: float
    threshold: float
    metric: str
    faces: tuple[FaceInfo, FaceInfo]
    masked: bool = False  # decided by the identity model's masked model (a face in a mask)

    @property
    def verdict(self) -> str:
        """'same' or 'different'."""
        return "same" if self.same else "different"

    def to_json(self) -> dict[str, Any]:
        """The result as `facecmp compare --json` prints it."""
        return {"path_a": self.faces[0].source, "path_b": self.faces[1].source, "metric": self.metric,
                "distance": round(self.distance, 6), "threshold": self.threshold,
                "verdict": self.verdict, "masked_model": self.masked, "faces": [f.to_json() for f in self.faces]}


@dataclass
class Embeddings:
    """N x D embeddings of N inputs; the rows of failed inputs are zero and `ok` is False there."""

    vectors: np.ndarray
    ok: np.ndarray
    errors: dict[int, str]  # input position -> why it failed
    faces: list[FaceInfo | None]
    sources: list[str]  # each input's path, or "<image i>"
    normalized: bool = False

    def save(self, path: str | Path) -> None:
        """An .npz of the embedded inputs' `paths` beside their `vectors`, and the `failed` paths."""
        np.savez(path, paths=np.asarray([s for s, k in zip(self.sources, self.ok) if k], dtype=str),
                 vectors=self.vectors[self.ok], normalized=self.normalized,
                 failed=np.asarray([self.sources[i] for i in sorted(self.errors)], dtype=str))


@dataclass(frozen=True)
class Classification:
    """A classifier's answer for one input: the label and every class's probability, or an error."""

    source: str
    label: str | None
    probabilities: dict[str, float]
    face: FaceInfo | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """As `facecmp mask --json` prints it: path, label, probabilities, box, note; or path, error."""
        if self.error is not None:
            return {"path": self.source, "error": self.error}
        return {"path": self.source, "label": self.label, "probabilities": self.probabilities,
                "box": self.face.box if self.face else None, "note": self.face.note if self.face else None}


class FaceModel:
    """A model directory, loaded once: any model embeds; mask and expression models classify.

    The networks are built on first use and are safe to share between threads.
    """

    def __init__(self, path: str | Path, flip: bool | None = None, zoom: float | None = None,
                 crops: int | None = None) -> None:
        from facecmp.modeldir import open_model

        self.path = Path(path)
        self.meta = open_model(self.path)
        self.task: str = self.meta.task
        self._options = {"flip": flip, "zoom": zoom, "crops": crops}
        self._lock = threading.Lock()
        self._embedder = self._classifier = self._masked = None

    def __repr__(self) -> str:
        return f"FaceModel({str(self.path)!r}, task={self.task!r})"

    @property
    def embedder(self):
        """The facecmp.embedder.Embedder of this model (built on first use)."""
        with self._lock:
            if self._embedder is None:
                from facecmp.embedder import Embedder

                self._embedder = Embedder(self.path, flip=self._options["flip"])
            return self._embedder

    @property
    def masked(self) -> FaceModel | None:
        """The identity model for pairs with a face in a mask (meta.masked_model), or None."""
        from facecmp.masked import masked_model_dir

        with self._lock:
            if self._masked is None and self.meta.masked_model:
                path = masked_model_dir(self.path, self.meta.masked_model)
                masked = FaceModel(path, **self._options)
                if masked.meta.image_convention() != self.meta.image_convention():
                    raise ModelError(f"{path} cuts faces unlike {self.path}; a masked model must share its crops")
                self._masked = masked
            return self._masked

    @property
    def classifier(self):
        """The facecmp.classifier.Classifier of this model (built on first use)."""
        with self._lock:
            if self._classifier is None:
                from facecmp.classifier import Classifier

                self._classifier = Classifier(self.path, self.task, **self._options)
            return self._classifier


_BUNDLED: dict[str, FaceModel] = {}
_BUNDLED_LOCK = threading.Lock()


def load_model(name_or_dir: str | Path | None = None, task: str = "identity", *,
               flip: bool | None = None, zoom: float | None = None, crops: int | None = None) -> FaceModel:
    """A model: a directory, a bundled model by task name ("identity", "mask", "expression"),
    or (None) the bundled model for `task`. Bundled models with default options are loaded once
    per process. flip/zoom/crops override the model's own test-time settings."""
    from facecmp.zoo import default_model

    if isinstance(name_or_dir, FaceModel):
        return name_or_dir
    if name_or_dir is not None and str(name_or_dir) in TASKS and not Path(name_or_dir).exists():
        task, name_or_dir = str(name_or_dir), None
    if name_or_dir is not None:
        if not isinstance(name_or_dir, (str, Path)):
            raise ModelError(f"a model is a FaceModel, a directory or a task name, not {type(name_or_dir).__name__}")
        return FaceModel(name_or_dir, flip, zoom, crops)
    if task not in TASKS:
        raise ModelError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    if (flip, zoom, crops) != (None, None, None):
        return FaceModel(default_model(task), flip, zoom, crops)
    with _BUNDLED_LOCK:
        if task not in _BUNDLED:
            _BUNDLED[task] = FaceModel(default_model(task))
        return _BUNDLED[task]


def _model(model: FaceModel | str | Path | None, task: str) -> FaceModel:
    found = load_model(model, task)
    if task != "identity" and found.task != task:
        raise ModelError(f"{found.path} is a model of the {found.task} task, not of the {task} task")
    return found


def _as_list(images: Sequence[ImageInput] | ImageInput) -> list[ImageInput]:
    """A batch of inputs as a list: one image alone, an N x H x W x C array, or a sequence."""
    if isinstance(images, np.ndarray):
        return list(images) if images.ndim == 4 else [images]
    if isinstance(images, (str, Path, bytes)) or not isinstance(images, Sequence):
        return [images]
    return list(images)


def compare(a: ImageInput, b: ImageInput, model: FaceModel | str | Path | None = None,
            metric: str | None = None, threshold: float | None = None,
            detector: str | None = None) -> Comparison:
    """Are the faces in a and b the same person? Uses the model's calibrated threshold unless given.

    detector overrides the model's crop convention: "mtcnn-masked" (the bundled models'
    default: MTCNN and a pass for faces in masks), "mtcnn", "haar", or "none" (inputs are crops).
    When the model names a masked model (the bundled one does), the mask head looks at both
    faces and a pair with a face in a mask is measured by the masked model, at its threshold.
    Raises ImageError, NoFaceError or ModelError (all FacecmpError) on bad input.
    """
    from facecmp.masked import mask_crop, mask_probabilities, masked_pairs
    from facecmp.preprocess import with_detector

    fm = _model(model, "identity")
    sources = [describe(im, i) for i, im in enumerate((a, b))]
    rgbs = [to_rgb(im, src) for im, src in zip((a, b), sources)]
    crops = list(load_faces(rgbs, fm.meta, detector, sources=sources))
    for crop in crops:
        if isinstance(crop, FacecmpError):
            raise crop
    chosen, masks = fm, [None, None]
    if fm.masked is not None:  # the mask head picks the model, from the same detections
        found_by = with_detector(fm.meta, detector).crop.detector
        cut = [mask_crop(rgb, c, found_by) for rgb, c in zip(rgbs, crops)]
        if all(c is not None for c in cut):
            probs = mask_probabilities(np.stack(cut))
            masks = [float(p) for p in probs]
            chosen = fm.masked if masked_pairs(probs[:1], probs[1:])[0] else fm
    metric, threshold = chosen.meta.threshold_for(metric, threshold)
    emb = chosen.embedder.embed_crops(np.stack([c.pixels for c in crops]))
    distance = float(metrics.DISTANCES[metric](emb[:1], emb[1:])[0])
    faces = tuple(FaceInfo.of(c, src, m) for c, src, m in zip(crops, sources, masks))
    return Comparison(distance <= threshold, distance, threshold, metric, faces, chosen is not fm)


def embed(images: Sequence[ImageInput], model: FaceModel | str | Path | None = None,
          detector: str | None = None, normalize: bool = False, progress: bool = False) -> Embeddings:
    """Embed the face of each image: an N x D array, zero rows where an input failed (see .errors)."""
    from facecmp.embedder import l2_normalize

    result = _model(model, "identity").embedder.embed_files(_as_list(images), detector, progress)
    vectors = l2_normalize(result.vectors) if normalize else result.vectors
    faces = [None if f is None else FaceInfo.of(f, s) for f, s in zip(result.faces, result.sources)]
    return Embeddings(vectors, result.ok, result.errors, faces, result.sources, normalize)


def classify(images: Sequence[ImageInput], task: str = "mask", model: FaceModel | str | Path | None = None,
             detector: str = "mtcnn-masked", progress: bool = False) -> list[Classification]:
    """The label and class probabilities of the face in each image (task "mask" or "expression").

    Faces are found with MTCNN, then Haar, then the whole image is used (a note says so);
    detector="none" classifies inputs that are face crops already. An input that cannot be
    read gives a Classification with .error, and the rest go on.
    """
    if task not in TASKS or task == "identity":
        raise ModelError(f"classify takes task 'mask' or 'expression', not {task!r}")
    clf = _model(model, task).classifier
    out = []
    for res in clf.predict_files(_as_list(images), detector, progress):
        if "error" in res:
            out.append(Classification(res["path"], None, {}, None, res["error"]))
        else:
            face = FaceInfo(res["path"], res["box"], res.get("landmarks"), res["note"])
            out.append(Classification(res["path"], res["label"], res["probabilities"], face))
    return out
