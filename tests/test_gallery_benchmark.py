"""tools/gallery_benchmark.py: its synthetic faces, its figures, and a run small enough for a test."""

from __future__ import annotations

import importlib
import json

import numpy as np
import pytest
from conftest import REPO

from facecmp.gallery_index import faiss_lists, faiss_probes


@pytest.fixture(scope="module")
def bench():
    import sys

    sys.path.insert(0, str(REPO / "tools"))
    try:
        yield importlib.import_module("gallery_benchmark")
    finally:
        sys.path.remove(str(REPO / "tools"))


def test_synthetic_gallery_and_queries(bench):
    syn = bench.synthetic(1000, 40, per_person=3, strangers=0.25, seed=1)
    assert syn.vectors.shape == (1000, bench.DIM) and syn.queries.shape == (40, bench.DIM)
    assert np.linalg.norm(syn.vectors, axis=1) == pytest.approx(np.ones(1000), abs=1e-5)
    assert np.bincount(syn.labels).tolist() == [3] * 333 + [1]  # 1000 photos, three a person
    assert (syn.truth == -1).sum() == 10 and syn.truth.max() <= syn.labels.max()
    again = bench.synthetic(1000, 40, per_person=3, strangers=0.25, seed=1)
    assert np.array_equal(again.queries, syn.queries)  # seeded


def test_synthetic_distances_resemble_the_bundled_models_on_lfw(bench):
    """The constants were fitted to LFW (same-person median 0.25, different people 0.65 +- 0.10)."""
    stats = bench.distance_stats(*bench._sample(0))
    assert 0.2 < stats["same_median"] < 0.3 and stats["same_p10"] < 0.16 and stats["same_p90"] > 0.4
    assert 0.6 < stats["different_mean"] < 0.7 and 0.08 < stats["different_sd"] < 0.16


def test_recall_and_accuracy_figures(bench):
    exact = [("3", 0.1, [("3", 0.1)]), ("unknown", 0.6, [("8", 0.6)]), ("unknown", 0.7, [("1", 0.7)])]
    approx = [("3", 0.1, [("3", 0.1)]), ("unknown", 0.6, [("9", 0.65)]), ("unknown", 0.7, [("1", 0.7)])]
    truth = np.array([3, 2, -1])
    assert bench.recall_at_1(exact, approx, truth) == {"all": 0.6667, "enrolled": 0.5, "strangers": 1.0}
    names = [str(i) for i in range(10)]
    assert bench.accuracy(exact, truth, names) == {"rank1": 0.5, "strangers_named": 0.0}
    assert bench.summary(np.array([0.001, 0.002, 0.003])) == {"p50_ms": 2.0, "p95_ms": 2.9, "mean_ms": 2.0,
                                                              "timed": 3}


def test_a_small_run_writes_json_csv_and_plot(bench, tmp_path, capsys):
    pytest.importorskip("faiss")
    out = tmp_path / "bench"
    assert bench.main(["--exact", "500", "3000", "--faiss", "3000", "--hnsw", "0", "--queries", "20",
                       "--sqlite", "60", "--scan", "0.5", "--sweep-queries", "10", "--seconds", "1",
                       "--out", str(out)]) == 0
    result = json.loads((out / "results.json").read_text())
    assert [(r["embeddings"], r["search"]) for r in result["tiers"]] == [(500, "exact"), (3000, "exact"),
                                                                      (3000, "faiss")]
    fast = result["tiers"][2]
    assert fast["index"].startswith("IVF-Flat") and 0.5 <= fast["recall_at_1"] <= 1
    assert fast["scan_sweep"][0]["nprobe"] == faiss_probes(faiss_lists(3000), 0.5)
    sqlite = result["sqlite"]
    assert sqlite["integrity_check"] == "ok" and sqlite["auto_picks"] == "ExactSearch"
    assert sqlite["people"] == 60 and sqlite["identify_exact"]["timed"] == 20
    assert (out / "results.csv").read_text().splitlines()[0].startswith("embeddings,rows,search")
    assert (out / "latency.png").stat().st_size > 10_000
    assert [p.name for p in out.iterdir()] != [] and not list(out.glob("tmp*"))  # the gallery file went
    assert bench.main(["--exact", "0", "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: sizes")
