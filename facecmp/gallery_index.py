"""Searching a gallery's people: a person's score over their enrolled images (the rule), exact
cosine search on an in-memory matrix, and an optional faiss index file for large galleries.
snapshot_of makes a searchable Snapshot from any labelled vectors; Gallery.snapshot reads one
from the database.

Similarities are cosines of L2-normalised embeddings; the gallery answers in cosine distance
(1 - similarity), the metric the identity model's threshold is calibrated in.
"""

from __future__ import annotations

import hashlib
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
# "auto" uses faiss from this many searched rows on, where installed: below it exact search
# answers a query within 50 ms on two cores (docs/gallery.md, Scale)
FAISS_MIN_ROWS = 200_000
FAISS_SCAN = 0.25  # share of the inverted lists searched per query: recall against speed (Scale)
FAISS_MIN_PROBES = 16  # and never fewer lists than this: a small index is searched (almost) whole
FAISS_TRAIN_PER_LIST = 64  # k-means sample per list: stable lists, and quick to train on 2 cores
FAISS_TRAIN_ITERATIONS = 10


def normalized(vectors: np.ndarray) -> np.ndarray:
    """Rows of an n x d array scaled to unit length, as a new float32 array (zero rows stay zero)."""
    v = np.array(vectors, dtype=np.float32)  # a copy, divided in place: one array, not three
    v /= np.maximum(np.sqrt(np.einsum("ij,ij->i", v, v)), 1e-12)[:, None]
    return v


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


def snapshot_of(vectors: np.ndarray, labels: np.ndarray | list, names: dict | None = None,
                generation: int = 0, model_key: str = "") -> Snapshot:
    """A Snapshot of vectors with one person label per row, in any order: rows grouped by
    person (people in label order), normalised; names maps a label to its name (else str)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if len(vectors) != len(labels):
        raise FacecmpError(f"{len(vectors)} vectors but {len(labels)} labels")
    people, owners = np.unique(np.asarray(labels), return_inverse=True)
    owners = owners.reshape(-1)
    if not np.all(owners[1:] >= owners[:-1]):
        order = np.argsort(owners, kind="stable")
        vectors, owners = vectors[order], owners[order]
    named = [names[p] if names is not None else str(p) for p in people.tolist()]
    return Snapshot(generation, model_key, normalized(vectors), owners, named)


def person_matrix(snap: Snapshot, rule: str = RULE) -> np.ndarray:
    """The rows a query is compared with: each image (max, top2) or each person's centroid."""
    if rule != "centroid" or len(snap.names) == len(snap.vectors):  # one photo each: its own centroid
        return snap.vectors
    from scipy.sparse import csr_matrix  # sums by person in a second; np.add.reduceat takes half a minute at 1M

    rows = len(snap.vectors)
    members = csr_matrix((np.ones(rows, np.float32), (snap.owners, np.arange(rows))), shape=(len(snap.names), rows))
    return normalized(members @ snap.vectors)


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


def faiss_lists(rows: int) -> int:
    """The inverted lists of an index over this many rows: about sqrt(rows), with at least
    39 rows to train each (faiss's minimum)."""
    return max(1, min(int(round(np.sqrt(rows))), rows // 39))


def faiss_probes(lists: int, scan: float | None = None) -> int:
    """The inverted lists searched per query: a `scan` share of them (FAISS_SCAN), but at least
    FAISS_MIN_PROBES and at most all."""
    share = int(np.ceil(lists * (FAISS_SCAN if scan is None else scan)))
    return min(lists, max(FAISS_MIN_PROBES, share))


def fingerprint(matrix: np.ndarray) -> str:
    """What an index file was built from: its kind and a digest of the rows it holds."""
    digest = hashlib.sha256(f"ivfflat-ip {faiss_lists(len(matrix))} {matrix.shape}".encode())
    digest.update(np.ascontiguousarray(matrix, dtype=np.float32).data)
    return digest.hexdigest()


class FaissSearch:
    """An inverted-file index (IVF-Flat, inner product) over the same rows as ExactSearch
    (centroids, or images for max), kept in a file beside the database and rebuilt when the
    file was not built from exactly these rows (a digest of them is stored with it). A query
    searches the FAISS_SCAN share of the lists nearest it: a true best person may be missed
    (docs/gallery.md, Scale, measures how often)."""

    def __init__(self, snap: Snapshot, path: Path, rule: str = RULE) -> None:
        if rule not in ("centroid", "max"):  # top2 needs every image of a person
            raise FacecmpError(f"the faiss index serves the centroid and max rules, not {rule!r}")
        self.snap, self.path = snap, Path(path)
        matrix = person_matrix(snap, rule)
        self.rows = len(matrix)
        self.row_owner = np.arange(len(snap.names)) if rule == "centroid" else snap.owners
        digest = fingerprint(matrix)
        self.index = self._load(digest) or self._build(matrix, digest)
        self.index.nprobe = faiss_probes(self.index.nlist)

    def _load(self, digest: str):
        try:
            with np.load(self.path, allow_pickle=False) as f:
                if str(f["fingerprint"]) != digest:
                    return None
                index = _faiss().deserialize_index(f["index"])
        except (OSError, ValueError, KeyError, RuntimeError):
            return None  # missing, stale, damaged or of an older facecmp: rebuilt from the rows
        return index if index.ntotal == self.rows else None

    def _build(self, matrix: np.ndarray, digest: str):
        faiss = _faiss()
        lists = faiss_lists(len(matrix))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(matrix.shape[1]), matrix.shape[1], lists,
                                   faiss.METRIC_INNER_PRODUCT)
        index.cp.niter = FAISS_TRAIN_ITERATIONS
        sample = min(len(matrix), FAISS_TRAIN_PER_LIST * lists)
        rows = np.sort(np.random.default_rng(0).choice(len(matrix), sample, replace=False))
        index.train(np.ascontiguousarray(matrix[rows]))
        index.add(np.ascontiguousarray(matrix))
        self._save(faiss.serialize_index(index), digest)
        return index

    def _save(self, data: np.ndarray, digest: str) -> None:
        """Write the index file whole or not at all: a directory that cannot be written (a
        colleague's gallery, a full disk) leaves the index in memory only."""
        tmp = None
        try:
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name, suffix=".tmp")
            with os.fdopen(fd, "wb") as out:
                np.savez(out, index=data, fingerprint=digest)
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.path)  # readers see the old file or the new one, never half
        except OSError:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k best people of each query (person -1 where fewer were among the nearest rows)."""
        wanted = k if len(self.row_owner) == len(self.snap.names) else 8 * k
        sims, rows = self.index.search(normalized(queries), min(self.rows, wanted))
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
