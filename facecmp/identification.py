"""Faces against a gallery: every face of a photo named as an enrolled person, or unknown."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from facecmp.errors import FacecmpError
from facecmp.faces import AnalyzedFace, analyze
from facecmp.gallery import Gallery
from facecmp.images import ImageInput

if TYPE_CHECKING:
    from facecmp.api import FaceModel

UNKNOWN = "unknown"


@dataclass(frozen=True)
class Identification:
    """One face of a photo and who it is: the nearest person within the threshold, else unknown."""

    face: AnalyzedFace
    name: str  # UNKNOWN when no enrolled person is within the threshold
    distance: float | None  # cosine distance to the nearest person (None: an empty gallery)
    threshold: float
    candidates: list[tuple[str, float]]  # the top-k people and their distances, nearest first

    def to_json(self) -> dict[str, Any]:
        """As `facecmp identify --json` prints it: path, box, name, distance, candidates, mask, expression."""
        face = self.face.to_json()
        return {"path": face["path"], "box": face["box"], "name": self.name,
                "distance": None if self.distance is None else round(self.distance, 6),
                "candidates": [{"name": n, "distance": round(d, 6)} for n, d in self.candidates],
                "mask": face["mask"], "expression": face["expression"]}


def identify(gallery: Gallery, image: ImageInput, model: FaceModel | str | Path | None = None,
             top_k: int = 5, detector: str | None = None, threshold: float | None = None,
             search: str = "auto") -> list[Identification]:
    """Every face of a photo, most confident first, named as the nearest enrolled person when
    within the identity model's calibrated cosine threshold (or `threshold`), else unknown.

    A person's distance is 1 - the cosine similarity to the mean of their enrolled
    embeddings (gallery_index.RULE). An empty list when the photo has no face.
    """
    if top_k < 1:
        raise FacecmpError(f"top-k must be at least 1, got {top_k}")
    fm, _ = gallery.use_model(model)
    _, threshold = fm.meta.threshold_for("cosine", threshold)
    faces = analyze(image, fm, detector)
    if not faces:
        return []
    index = gallery.searcher(search)
    people, sims = index.search(np.stack([f.embedding for f in faces]), top_k)
    out = []
    for face, row_people, row_sims in zip(faces, people, sims):
        cands = [(index.snap.names[p], float(1.0 - s)) for p, s in zip(row_people, row_sims) if p >= 0]
        nearest = cands[0][1] if cands else None
        named = nearest is not None and nearest <= threshold
        out.append(Identification(face, cands[0][0] if named else UNKNOWN, nearest, threshold, cands))
    return out
