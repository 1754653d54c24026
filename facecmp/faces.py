"""Every face of an image at once: where it is, who it looks like (the identity embedding),
whether it wears a mask and what expression it shows.

The image is read and searched for faces once; each model then cuts its own crop of each
face from that detection (preprocess.crop_detected), and each network runs once over all
the faces of the image.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from facecmp.errors import ModelError
from facecmp.images import ImageInput, describe, to_rgb
from facecmp.preprocess import crop_detected, crop_face, with_detector

if TYPE_CHECKING:
    from facecmp.api import FaceModel
    from facecmp.detect import Face


@dataclass(frozen=True)
class Label:
    """A classifier's answer for one face: the most probable class and its probability."""

    label: str
    probability: float

    def to_json(self) -> dict[str, Any]:
        """{label, probability}."""
        return {"label": self.label, "probability": round(self.probability, 4)}


@dataclass(frozen=True)
class AnalyzedFace:
    """One face of an image: box (x1, y1, x2, y2), five landmarks and detection score (all None
    when the image was taken as the face crop), its identity embedding, mask and expression."""

    source: str
    box: list[float] | None
    landmarks: list[list[float]] | None
    score: float | None
    embedding: np.ndarray = field(repr=False, compare=False)
    mask: Label | None = None
    expression: Label | None = None
    # the embedding by the identity model's masked model (facecmp.masked), where it names one
    masked_embedding: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def p_masked(self) -> float | None:
        """The mask head's probability that the face wears a mask (None: not asked)."""
        return None if self.mask is None else _p_masked(self.mask)

    def to_json(self) -> dict[str, Any]:
        """path, box, landmarks, score, mask and expression ({label, probability}); no embedding."""
        return {"path": self.source, "box": self.box, "landmarks": self.landmarks, "score": self.score,
                "mask": self.mask.to_json() if self.mask else None,
                "expression": self.expression.to_json() if self.expression else None}


def _confidence(face: Face) -> tuple[float, float]:
    """The order detect.pick_face chooses by: score, then area."""
    return round(face.score, 4), face.area


def _labels(model: FaceModel, crops: list[np.ndarray]) -> list[Label]:
    clf = model.classifier
    probs = clf.probabilities(np.stack(crops))
    return [Label(clf.classes[int(np.argmax(p))], float(np.max(p))) for p in probs]


def _p_masked(label: Label) -> float:
    """The probability of a mask in the mask head's answer."""
    from facecmp.masked import MASK_CLASS

    return label.probability if label.label == MASK_CLASS else 1.0 - label.probability


def _wears_mask(label: Label) -> bool:
    """Whether the mask head's answer reaches the point where the masked model takes over."""
    from facecmp.masked import MASKED_AT

    return _p_masked(label) >= MASKED_AT


def analyze(image: ImageInput, model: FaceModel | str | Path | None = None,
            detector: str | None = None, *, mask_model: FaceModel | str | Path | None = None,
            expression_model: FaceModel | str | Path | None = None,
            attributes: bool = True, masked_embeddings: bool = False) -> list[AnalyzedFace]:
    """Every face in an image, most confident first (an empty list when there is none).

    model is the identity model (default: the bundled one); mask and expression come from
    the bundled heads unless given, and are left out (None) with attributes=False. With
    masked_embeddings, where the identity model names a masked model, faces have that model's
    embedding too (the gallery stores and searches it): every face with attributes=False, only
    those the mask head calls masked (facecmp.masked.MASKED_AT) otherwise. detector:
    "mtcnn" (default: the identity model's), "mtcnn-masked", "haar", or "none" (the image is
    one face crop). Raises ImageError for an image that cannot be read.
    """
    from facecmp.api import load_model

    identity = load_model(model, "identity")
    heads = [load_model(mask_model, "mask"), load_model(expression_model, "expression")] if attributes else []
    for head, task in zip(heads, ("mask", "expression")):
        if head.task != task:
            raise ModelError(f"{head.path} is a model of the {head.task} task, not of the {task} task")
    source = describe(image, 0)
    rgb = to_rgb(image, source)
    metas = [identity.meta] + [h.meta for h in heads]
    detector = detector or (identity.meta.crop.detector if identity.meta.detects else "mtcnn")
    with_detector(identity.meta, detector)  # an unknown detector is a one-line error
    if detector == "none":
        found: list[Face | None] = [None]
        crops = [[crop_face(rgb, meta, source, "none").pixels] for meta in metas]
    else:
        from facecmp.detect import detect_faces

        found = sorted(detect_faces(rgb, detector), key=_confidence, reverse=True)
        crops = [[crop_detected(rgb, f, meta, detector) for f in found] for meta in metas]
    if not found:
        return []
    vectors = identity.embedder.embed_crops(np.stack(crops[0]))
    labels = [_labels(h, c) for h, c in zip(heads, crops[1:])] or [[None] * len(found)] * 2
    masked: list[np.ndarray | None] = [None] * len(found)
    if masked_embeddings and identity.masked is not None:
        wanted = [i for i in range(len(found)) if not attributes or _wears_mask(labels[0][i])]
        if wanted:
            got = identity.masked.embedder.embed_crops(np.stack([crops[0][i] for i in wanted]))
            for i, vector in zip(wanted, got):
                masked[i] = vector
    out = []
    for i, face in enumerate(found):
        where = face.to_json() if face is not None else {"box": None, "landmarks": None, "score": None}
        out.append(AnalyzedFace(source, where["box"], where["landmarks"], where["score"], vectors[i],
                                labels[0][i], labels[1][i], masked[i]))
    return out
