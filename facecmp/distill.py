"""Embedding distillation: a teacher's face descriptors as an extra training target.

The teacher's descriptors are computed once, outside training (tools/teacher_embeddings.py
writes an .npz of resolved image paths and N x d vectors, NaN where it found no face).
Next to the usual classification loss, one of two teacher terms (`train.teacher_loss`):

- projection: a linear projection of the student's 512-d embedding is pulled towards the
  teacher's descriptor of the same image (cosine distance). The projection is training-only.
- similarity: the student's pairwise cosine similarities within a batch are made to follow
  the teacher's (in the spirit of similarity-preserving distillation, Tung & Mori 2019),
  scored by their correlation. This shapes the distances verification uses, not a
  read-out of them; there is nothing to project.

A third term needs no outside teacher (`train.flip_teacher`, tools/flip_teacher.py): a
model's own flip-averaged embeddings, computed once on the unaugmented crops. Each image's
single embedding is pulled towards that average (cosine distance, in the model's own
512-d space), so that one forward pass learns what the average of an image and its mirror
sees and inference can drop the mirror. The target is the same for an image and its mirror.

Whatever the terms, the saved model is the student's backbone: inference never sees a teacher.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from facecmp.errors import FacecmpError
from facecmp.models import EMBEDDING_SIZE
from facecmp.runtime import import_paddle

paddle = import_paddle()

nn = paddle.nn
F = paddle.nn.functional


def load_targets(path: str | Path, image_paths: list[Path],
                 maker: str = "tools/teacher_embeddings.py") -> tuple[np.ndarray, dict]:
    """The teacher's unit-length descriptor for each image (zeros where it has none), and a
    summary (with the image `convention` the file records, if any); maker is the tool that
    writes such files, for the error message."""
    path = Path(path)
    try:
        with np.load(path) as z:
            rows = {p: i for i, p in enumerate(z["paths"].tolist())}
            emb, note = z["emb"].astype(np.float32), str(z["teacher"]) if "teacher" in z else ""
            convention = json.loads(str(z["convention"])) if "convention" in z else None
    except (OSError, KeyError, ValueError) as exc:
        raise FacecmpError(f"teacher file {path}: cannot read ({type(exc).__name__}); "
                           f"make it with {maker}") from None
    targets = np.zeros((len(image_paths), emb.shape[1]), dtype=np.float32)
    for i, p in enumerate(image_paths):
        row = rows.get(os.path.realpath(p))
        if row is not None and np.isfinite(emb[row]).all():
            targets[i] = emb[row] / max(1e-12, float(np.linalg.norm(emb[row])))
    covered = int(np.any(targets != 0, axis=1).sum())
    if covered == 0:
        raise FacecmpError(f"teacher file {path} describes none of the {len(image_paths)} training images")
    summary = {"file": str(path), "teacher": note, "dim": int(emb.shape[1]), "images_with_target": covered}
    return targets, {**summary, "convention": convention} if convention else summary


class DistillNet(nn.Layer):
    """A FaceNet plus a training-only projection (none unless a projection term needs it);
    forward gives (logits, embedding, projected embedding), the last the embedding itself
    when there is no projection.

    It exposes the FaceNet's backbone, dropout and head, so saving and the per-epoch
    callbacks treat it as the FaceNet it wraps.
    """

    def __init__(self, net, teacher_dim: int = 0, project: bool = False) -> None:
        super().__init__()
        self.backbone, self.dropout, self.head = net.backbone, net.dropout, net.head
        self.projection = nn.Linear(EMBEDDING_SIZE, teacher_dim, bias_attr=False) if project else None

    def forward(self, x, label=None):  # noqa: D102
        emb = self.backbone(x)
        logits = self.head(emb if self.dropout is None else self.dropout(emb), label)
        return logits, emb, emb if self.projection is None else self.projection(emb)


def _has_target(target, keepdim: bool = False):
    """1.0 for the rows (images) with a teacher descriptor, 0.0 for the zero rows."""
    return (paddle.sum(paddle.abs(target), axis=1, keepdim=keepdim) > 0).astype("float32")


def similarity_gap(emb, target):
    """1 - the Pearson correlation between the student's and the teacher's cosine similarities
    of every pair of distinct images in the batch (images with a target only).

    Correlation, not equality: the teacher's similarities sit on another scale (dlib's raw
    descriptors: cosine 0.85 +- 0.04 between strangers), and what carries over is which faces
    it finds alike.
    """
    has = _has_target(target, keepdim=True)
    unit = F.normalize(emb, axis=1)
    mask = paddle.matmul(has, has, transpose_y=True) * (1.0 - paddle.eye(emb.shape[0]))
    n = paddle.clip(paddle.sum(mask), min=1.0)

    def centred(sim):
        return (sim - paddle.sum(sim * mask) / n) * mask

    s = centred(paddle.matmul(unit, unit, transpose_y=True))
    t = centred(paddle.matmul(target, target, transpose_y=True))
    return 1.0 - paddle.sum(s * t) / paddle.sqrt(paddle.sum(s * s) * paddle.sum(t * t) + 1e-12)


def cosine_gap(out, target):
    """Mean cosine distance of each row to its unit-length target (rows with a target only)."""
    has = _has_target(target)
    cos = paddle.sum(F.normalize(out, axis=1) * target, axis=1)
    return paddle.sum((1.0 - cos) * has) / paddle.clip(paddle.sum(has), min=1.0)


TERMS = ("projection", "similarity", "flip")  # the kinds of teacher term DistillLoss knows


class DistillLoss(nn.Layer):
    """The classification loss plus, per teacher target in the batch, weight x its term:
    projection (cosine distance of the projection to the teacher), similarity (the
    similarity gap) or flip (cosine distance of the embedding to its flip-averaged target)."""

    def __init__(self, base: nn.Layer, terms: list[tuple[str, float]]) -> None:
        super().__init__()
        unknown = [kind for kind, _ in terms if kind not in TERMS]
        if unknown:
            raise ValueError(f"unknown teacher term(s): {unknown}")
        self.base, self.terms = base, terms

    def forward(self, logits, emb, projected, label, *targets):  # noqa: D102
        total = self.base(logits, label)
        for (kind, weight), target in zip(self.terms, targets):
            if kind == "similarity":
                total = total + weight * similarity_gap(emb, target)
            else:
                total = total + weight * cosine_gap(projected if kind == "projection" else emb, target)
        return total


class HeadAccuracy(paddle.metric.Accuracy):
    """Accuracy of the logits when the network also returns embeddings and the batch targets."""

    def compute(self, logits, emb, projected, label, *targets):  # noqa: D102
        return super().compute(logits, label)
