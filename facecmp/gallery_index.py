"""Searching a gallery's people: a person's score over their enrolled images (the rule), exact
cosine search on an in-memory matrix, and an optional faiss index file for large galleries.

Similarities are cosines of L2-normalised embeddings; the gallery answers in cosine distance
(1 - similarity), the metric the identity model's threshold is calibrated in.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facecmp.errors import FacecmpError

# How a person's enrolled images make one score for a query face (docs/gallery.md measures them):
#   max: the best image's similarity; top2: the mean of the best two (one image: its own);
#   centroid: the similarity to the normalised mean of the person's embeddings.
RULES = ("max", "top2", "centroid")
RULE = "centroid"
SEARCHES = ("auto", "exact", "faiss")
FAISS_MIN_ROWS = 50_000  # "auto" uses faiss from this many searched rows on, where installed
FAISS_EF_SEARCH = 128  # HNSW candidates kept while searching (recall against speed)


def normalized(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length as float32 (zero rows stay zero)."""
    v = np.asarray(vectors, dtype=np.float32)
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


@dataclass
class Snapshot:
    """A gallery's embeddings as loaded at one generation: rows grouped by person, in order."""

    generation: int
    model_key: str
    vectors: np.ndarray  # n x d, L2-normalised
    owners: np.ndarray  # n person positions, non-decreasing
    names: list[str]  # the name of each person position

    @property
    def starts(self) -> np.ndarray:
        """The first row of each person."""
        return np.searchsorted(self.owners, np.arange(len(self.names)))


def person_matrix(snap: Snapshot, rule: str = RULE) -> np.ndarray:
    """The rows a query is compared with: each image (max, top2) or each person's centroid."""
    if rule != "centroid" or not len(snap.names):
        return snap.vectors
    sums = np.add.reduceat(snap.vectors, snap.starts, axis=0)
    return normalized(sums)


def person_scores(sims: np.ndarray, snap: Snapshot, rule: str = RULE) -> np.ndarray:
    """f x rows similarities (against person_matrix) -> f x people scores under the rule."""
    if rule not in RULES:
        raise FacecmpError(f"unknown aggregation rule {rule!r}; choose one of {', '.join(RULES)}")
    if rule == "centroid" or not len(snap.names):
        return sims
    starts = snap.starts
    if rule == "max":
        return np.maximum.reduceat(sims, starts, axis=1)
    # top2: sort each row within persons (by person, then by descending similarity)
    order = np.lexsort((-sims, np.broadcast_to(snap.owners, sims.shape)), axis=-1)
    ranked = np.take_along_axis(sims, order, axis=1)
    counts = np.diff(np.append(starts, len(snap.owners)))
    second = np.where(counts > 1, starts + 1, starts)
    return (ranked[:, starts] + ranked[:, second]) / 2


def top_people(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best person positions of each row and their scores, best first."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k else np.zeros((len(scores), 0), int)
    best = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-best, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1), np.take_along_axis(best, order, axis=1)


class ExactSearch:
    """Cosine search of every row of the matrix: exact, for galleries of any size in memory."""

    def __init__(self, snap: Snapshot, rule: str = RULE) -> None:
        self.snap, self.rule = snap, rule
        self.matrix = person_matrix(snap, rule)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k best people of each query and their similarities (none from an empty gallery)."""
        if not len(self.snap.names):
            return np.zeros((len(queries), 0), int), np.zeros((len(queries), 0), np.float32)
        scores = person_scores(normalized(queries) @ self.matrix.T, self.snap, self.rule)
        return top_people(scores, k)


def _faiss():
    try:
        import faiss
    except ImportError:
        raise FacecmpError("faiss is not installed: pip install 'facecmp[faiss]'") from None
    return faiss


class FaissSearch:
    """An HNSW inner-product index over the same rows as ExactSearch (centroids, or images for
    max), kept in a file beside the database and rebuilt from it when the file's generation or
    model is not the gallery's. Approximate: a true best person may now and then be missed."""

    def __init__(self, snap: Snapshot, path: Path, rule: str = RULE) -> None:
        if rule not in ("centroid", "max"):  # top2 needs every image of a person
            raise FacecmpError(f"the faiss index serves the centroid and max rules, not {rule!r}")
        self.snap, self.path = snap, Path(path)
        self.matrix = person_matrix(snap, rule)
        self.row_owner = np.arange(len(snap.names)) if rule == "centroid" else snap.owners
        self.index = self._load() or self._build()

    def _load(self):
        try:
            with np.load(self.path, allow_pickle=False) as f:
                if int(f["generation"]) != self.snap.generation or str(f["model_key"]) != self.snap.model_key:
                    return None
                index = _faiss().deserialize_index(f["index"])
        except (OSError, ValueError, KeyError, RuntimeError):
            return None  # missing, stale or damaged: rebuilt from the database
        return index if index.ntotal == len(self.matrix) else None

    def _build(self):
        faiss = _faiss()
        index = faiss.IndexHNSWFlat(self.matrix.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
        index.add(np.ascontiguousarray(self.matrix))
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                np.savez(out, index=faiss.serialize_index(index), generation=self.snap.generation,
                         model_key=self.snap.model_key)
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.path)  # readers see the old file or the new one, never half
        except OSError:
            Path(tmp).unlink(missing_ok=True)  # e.g. a full disk: the index lives in memory only
        return index

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k best people of each query (person -1 where fewer were among the nearest rows)."""
        wanted = k if len(self.row_owner) == len(self.snap.names) else 8 * k
        self.index.hnsw.efSearch = max(FAISS_EF_SEARCH, wanted)
        sims, rows = self.index.search(normalized(queries), min(len(self.matrix), wanted))
        people = np.full((len(queries), k), -1)
        best = np.full((len(queries), k), -np.inf, dtype=np.float32)
        for q in range(len(queries)):
            seen: list[int] = []
            for sim, row in zip(sims[q], rows[q]):
                owner = int(self.row_owner[row]) if row >= 0 else -1
                if owner >= 0 and owner not in seen:  # rows come best first: a person's first is their max
                    people[q, len(seen)], best[q, len(seen)] = owner, sim
                    seen.append(owner)
                    if len(seen) == k:
                        break
        return people, best


def searcher(snap: Snapshot, index_path: Path, how: str = "auto", rule: str = RULE):
    """ExactSearch, or FaissSearch ("faiss", or "auto" from FAISS_MIN_ROWS rows with faiss installed)."""
    if how not in SEARCHES:
        raise FacecmpError(f"unknown search {how!r}; choose one of {', '.join(SEARCHES)}")
    if how == "auto":
        import importlib.util

        rows = len(snap.names) if rule == "centroid" else len(snap.vectors)
        big = rows >= FAISS_MIN_ROWS and rule != "top2"
        how = "faiss" if big and importlib.util.find_spec("faiss") else "exact"
    if how == "faiss" and len(snap.vectors):
        return FaissSearch(snap, index_path, rule)
    return ExactSearch(snap, rule)
