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
from facecmp.openset import DEFAULT_FAR, naming_threshold

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
    model: str = "identity"  # "masked": the face wears a mask and was searched by the masked model

    def to_json(self) -> dict[str, Any]:
        """As `facecmp identify --json` prints it: path, box, name, distance, threshold,
        candidates, mask, expression, model."""
        face = self.face.to_json()
        return {"path": face["path"], "box": face["box"], "name": self.name,
                "distance": None if self.distance is None else round(self.distance, 6),
                "threshold": round(self.threshold, 6),
                "candidates": [{"name": n, "distance": round(d, 6)} for n, d in self.candidates],
                "mask": face["mask"], "expression": face["expression"], "model": self.model}


def identify(gallery: Gallery, image: ImageInput, model: FaceModel | str | Path | None = None,
             top_k: int = 5, detector: str | None = None, threshold: float | None = None,
             search: str = "auto", far: float = DEFAULT_FAR) -> list[Identification]:
    """Every face of a photo, most confident first, named as the nearest enrolled person when
    within the gallery's threshold, else unknown: `threshold` if given, else the distance at
    which about `far` of strangers are named in a gallery of this size (facecmp.openset; the
    1:1 threshold for a model without an open-set table).

    A person's distance is 1 - the cosine similarity to the mean of their enrolled
    embeddings (gallery_index.RULE). A face the mask head calls masked (facecmp.masked) is
    searched among the masked model's vectors at its threshold, where the gallery has them.
    An empty list when the photo has no face.
    """
    if top_k < 1:
        raise FacecmpError(f"top-k must be at least 1, got {top_k}")
    fm, _ = gallery.use_model(model)
    faces = analyze(image, fm, detector, masked_embeddings=True)
    return search_faces(gallery, fm, faces, top_k, threshold, search, far)


def search_faces(gallery: Gallery, fm: FaceModel, faces: list[AnalyzedFace], top_k: int = 5,
                 threshold: float | None = None, search: str = "auto",
                 far: float = DEFAULT_FAR) -> list[Identification]:
    """Name faces already analysed by fm (see identify), each by the model its mask state picks
    (the masked model only for faces analysed with masked_embeddings)."""
    from facecmp.masked import MASKED_AT

    masked_ok = fm.masked is not None and gallery.masked_model is not None
    out: list[Identification | None] = [None] * len(faces)
    for masked in (False, True):
        mine = [i for i, f in enumerate(faces) if masked == (masked_ok and f.masked_embedding is not None
                                                             and f.p_masked is not None and f.p_masked >= MASKED_AT)]
        if not mine:
            continue
        model = fm.masked if masked else fm
        index = gallery.searcher(search, masked)
        limit = naming_threshold(model.meta, len(index.snap.names), threshold, far)
        vectors = np.stack([faces[i].masked_embedding if masked else faces[i].embedding for i in mine])
        for i, (name, nearest, cands) in zip(mine, name_vectors(index, vectors, top_k, limit)):
            out[i] = Identification(faces[i], name, nearest, limit, cands, "masked" if masked else "identity")
    return out


def name_vectors(index, vectors: np.ndarray, top_k: int, threshold: float) -> list[tuple]:
    """(name or UNKNOWN, distance to the nearest person, top-k (name, distance)) of each vector,
    searched in a gallery searcher (gallery_index)."""
    people, sims = index.search(vectors, top_k)
    out = []
    for row_people, row_sims in zip(people, sims):
        cands = [(index.snap.names[p], float(1.0 - s)) for p, s in zip(row_people, row_sims) if p >= 0]
        nearest = cands[0][1] if cands else None
        named = nearest is not None and nearest <= threshold
        out.append((cands[0][0] if named else UNKNOWN, nearest, cands))
    return out
