"""gallery_index on seeded synthetic vectors: snapshots from labelled vectors, centroids, the
faiss index against exact search, when its file is trusted, and a directory it cannot write."""

from __future__ import annotations

import tempfile

import numpy as np
import pytest

from facecmp import gallery_index
from facecmp.errors import FacecmpError
from facecmp.gallery_index import (ExactSearch, faiss_lists, faiss_probes, normalized, person_matrix,
                                   searcher, snapshot_of)


def _people(n_people: int, per_person: int, dim: int = 64, noise: float = 0.35, seed: int = 0):
    """Clustered vectors: per_person noisy copies of each of n_people random centres, shuffled,
    and one fresh copy of each person as queries."""
    rng = np.random.default_rng(seed)
    centres = normalized(rng.standard_normal((n_people, dim)))
    labels = rng.permutation(np.repeat(np.arange(n_people), per_person))
    vectors = centres[labels] + noise / np.sqrt(dim) * rng.standard_normal((len(labels), dim))
    queries = centres + noise / np.sqrt(dim) * rng.standard_normal((n_people, dim))
    return vectors.astype(np.float32), labels, queries.astype(np.float32)


def test_snapshot_of_groups_rows_by_person_and_names_them():
    snap = snapshot_of(np.array([[0, 2], [3, 0], [0, 5]], np.float32), ["b", "a", "b"])
    assert snap.names == ["a", "b"] and snap.owners.tolist() == [0, 1, 1]
    assert snap.vectors.tolist() == [[1, 0], [0, 1], [0, 1]]
    named = snapshot_of(np.eye(2), np.array([7, 3]), names={3: "Ann", 7: "Bo"}, generation=4, model_key="k")
    assert (named.names, named.generation, named.model_key) == (["Ann", "Bo"], 4, "k")
    with pytest.raises(FacecmpError, match="3 vectors but 2 labels"):
        snapshot_of(np.eye(3), [1, 2])


def test_centroids_are_each_persons_normalised_mean():
    vectors, labels, _ = _people(50, 3)
    labels[:10] = 50 + np.arange(10)  # ten people with a single photo among those with several
    snap = snapshot_of(vectors, labels)
    want = normalized(np.stack([normalized(vectors)[labels == p].mean(0) for p in np.unique(labels)]))
    assert person_matrix(snap, "centroid") == pytest.approx(want, abs=1e-5)
    single = snapshot_of(vectors[:5], np.arange(5))
    assert person_matrix(single, "centroid") is single.vectors  # one photo each: nothing to average


def test_lists_and_probes_follow_the_size():
    assert faiss_lists(1_000_000) == 1000 and faiss_lists(100_000) == 316
    assert faiss_lists(100) == 2 and faiss_lists(10) == 1  # at least 39 training rows a list
    assert faiss_probes(1000) == int(np.ceil(1000 * gallery_index.FAISS_SCAN)) and faiss_probes(1) == 1
    assert faiss_probes(100, 0.5) == 50 and faiss_probes(100, 0.01) == gallery_index.FAISS_MIN_PROBES


def test_faiss_finds_exact_searchs_person_on_a_seeded_set(tmp_path):
    pytest.importorskip("faiss")
    vectors, labels, queries = _people(3000, 2)
    snap = snapshot_of(vectors, labels)
    index = searcher(snap, tmp_path / "g.faiss", "faiss")
    assert isinstance(index, gallery_index.FaissSearch)
    assert index.index.nlist == faiss_lists(3000) and index.index.nprobe < index.index.nlist  # not a full scan
    exact, fast = ExactSearch(snap).search(queries, 3), index.search(queries, 3)
    assert (fast[0][:, 0] == exact[0][:, 0]).mean() >= 0.97
    assert (exact[0][:, 0] == np.arange(3000)).mean() >= 0.97  # the set is one exact search gets right
    found = fast[0][:, 0] == exact[0][:, 0]
    assert fast[1][found, 0] == pytest.approx(exact[1][found, 0], abs=1e-5)


def test_an_index_file_of_other_rows_is_rebuilt_not_trusted(tmp_path):
    """A colleague's gallery copied in place of one's own may carry the same generation and
    model: the index file must answer for the rows it was built from, not for those numbers."""
    pytest.importorskip("faiss")
    path = tmp_path / "people.db.faiss"
    a, la, _ = _people(800, 1, seed=1)
    b, lb, queries = _people(800, 1, seed=2)
    mine = snapshot_of(a, la, generation=5, model_key="m")
    theirs = snapshot_of(b, lb, generation=5, model_key="m")
    gallery_index.FaissSearch(mine, path)
    stamp = path.stat().st_mtime_ns
    fast = gallery_index.FaissSearch(theirs, path).search(queries, 1)
    assert (fast[0][:, 0] == ExactSearch(theirs).search(queries, 1)[0][:, 0]).mean() >= 0.97
    assert path.stat().st_mtime_ns != stamp
    path.write_bytes(b"not an index")  # damaged: rebuilt too
    assert gallery_index.FaissSearch(theirs, path).index.ntotal == 800


def test_an_unwritable_directory_keeps_the_index_in_memory(tmp_path, monkeypatch):
    pytest.importorskip("faiss")

    def refused(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path))

    monkeypatch.setattr(tempfile, "mkstemp", refused)
    vectors, labels, queries = _people(400, 1)
    index = gallery_index.FaissSearch(snapshot_of(vectors, labels), tmp_path / "g.faiss")
    assert index.search(queries[:5], 2)[0].shape == (5, 2)
    assert list(tmp_path.iterdir()) == []


def test_auto_uses_faiss_from_faiss_min_rows(tmp_path, monkeypatch):
    pytest.importorskip("faiss")
    monkeypatch.setattr(gallery_index, "FAISS_MIN_ROWS", 100)
    vectors, labels, _ = _people(100, 2)
    snap = snapshot_of(vectors, labels)
    assert isinstance(searcher(snap, tmp_path / "g.faiss"), gallery_index.FaissSearch)
    assert isinstance(searcher(snap, tmp_path / "g.faiss", rule="top2"), ExactSearch)
    assert isinstance(searcher(snapshot_of(vectors[:99], labels[:99] * 0 + np.arange(99)), tmp_path / "h.faiss"),
                      ExactSearch)
