"""Verification metrics checked against hand-worked cases and brute force."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest


from facecmp.errors import FacecmpError
from facecmp.metrics import (
    DISTANCES,
    best_threshold,
    confusion,
    cosine_distance,
    default_grid,
    equal_error_rate,
    euclidean_distance,
    kfold_accuracy,
    parse_grid,
    roc_auc,
    summarize,
    sweep,
    tar_at_far,
)


def random_scores(n: int = 400, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    issame = rng.random(n) < 0.5
    # Overlapping classes so every metric is somewhere strictly between extremes.
    d = np.where(issame, rng.normal(0.8, 0.3, n), rng.normal(1.4, 0.3, n)).clip(0)
    return np.round(d, 2), issame  # rounding creates ties on purpose


# -- distances -----------------------------------------------------------------------

def test_euclidean_distance_rowwise():
    a = np.array([[0.0, 0.0], [1.0, 1.0]])
    b = np.array([[3.0, 4.0], [1.0, 1.0]])
    np.testing.assert_allclose(euclidean_distance(a, b), [5.0, 0.0])


def test_cosine_distance_cases_and_zero_vector():
    a = np.array([[1.0, 0.0], [1.0, 0.0], [2.0, 2.0], [0.0, 0.0]])
    b = np.array([[5.0, 0.0], [-1.0, 0.0], [0.0, 3.0], [1.0, 2.0]])
    d = cosine_distance(a, b)
    np.testing.assert_allclose(d, [0.0, 2.0, 1 - np.sqrt(0.5), 1.0], atol=1e-12)
    assert np.all(np.isfinite(d))
    assert set(DISTANCES) == {"euclid", "cosine"}


def test_distance_shape_mismatch_is_user_error():
    with pytest.raises(FacecmpError):
        euclidean_distance(np.zeros((2, 3)), np.zeros((2, 4)))


# -- confusion -----------------------------------------------------------------------

def test_confusion_hand_worked():
    d = np.array([0.1, 0.4, 0.5, 0.6, 0.9, 0.3])
    s = np.array([True, True, False, True, False, False])
    c = confusion(d, s, 0.5)
    # <= 0.5 predicted same: 0.1 T, 0.4 T, 0.5 F, 0.3 F; others: 0.6 T, 0.9 F.
    assert (c["tp"], c["fp"], c["tn"], c["fn"]) == (2, 2, 1, 1)
    assert c["precision"] == pytest.approx(0.5)
    assert c["recall"] == pytest.approx(2 / 3)
    assert c["tpr"] == pytest.approx(2 / 3)
    assert c["fpr"] == pytest.approx(2 / 3)
    assert c["f1"] == pytest.approx(4 / 7)
    assert c["accuracy"] == pytest.approx(0.5)
    assert all(isinstance(c[k], int) for k in ("tp", "fp", "tn", "fn"))


def test_tie_at_threshold_counts_as_same():
    d = np.array([0.5, 0.5])
    s = np.array([True, False])
    c = confusion(d, s, 0.5)
    assert (c["tp"], c["fp"], c["tn"], c["fn"]) == (1, 1, 0, 0)
    c = confusion(d, s, np.nextafter(0.5, 0))
    assert (c["tp"], c["fp"], c["tn"], c["fn"]) == (0, 0, 1, 1)


def test_all_pairs_same_conventions():
    d = np.array([0.2, 0.4])
    s = np.array([True, True])
    strict = confusion(d, s, 0.1)  # nothing predicted same, no negatives at all
    assert (strict["tp"], strict["fp"], strict["tn"], strict["fn"]) == (0, 0, 0, 2)
    assert strict["precision"] == 1.0
    assert strict["recall"] == 0.0
    assert strict["f1"] == 0.0
    assert strict["fpr"] == 0.0
    assert strict["accuracy"] == 0.0
    loose = confusion(d, s, 0.5)
    assert loose["precision"] == loose["recall"] == loose["accuracy"] == 1.0
    assert np.isnan(roc_auc(d, s))
    assert tar_at_far(d, s, 0.1) is None


def test_no_positive_pairs_recall_is_zero():
    c = confusion(np.array([0.1, 0.9]), np.array([False, False]), 0.5)
    assert c["recall"] == 0.0 and c["tpr"] == 0.0
    assert c["fpr"] == 0.5


# -- sweep / best threshold ----------------------------------------------------------

def test_sweep_matches_confusion_row_by_row():
    d, s = random_scores()
    grid = np.concatenate([np.linspace(0, 2.5, 60), d[:20]])  # include exact ties
    rows = sweep(d, s, grid)
    assert len(rows) == grid.size
    for t, row in zip(grid, rows):
        assert row["threshold"] == t
        ref = confusion(d, s, t)
        brute_tp = int(np.sum((d <= t) & s))
        brute_fp = int(np.sum((d <= t) & ~s))
        assert (row["tp"], row["fp"]) == (brute_tp, brute_fp)
        for key, value in ref.items():
            assert row[key] == pytest.approx(value), key


def test_sweep_is_fast_on_lfw_size():
    rng = np.random.default_rng(0)
    d = rng.random(6000) * 2
    s = rng.random(6000) < 0.5
    grid = np.linspace(0, 2, 1000)
    start = time.perf_counter()
    rows = sweep(d, s, grid)
    assert time.perf_counter() - start < 1.0
    assert len(rows) == 1000


def test_perfect_separation():
    d = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    s = np.array([True, True, True, False, False, False])
    thr, acc = best_threshold(d, s, np.array([1.0, 0.0, 0.25, 0.3, 0.5, 0.7]))
    assert (thr, acc) == (0.3, 1.0)  # smallest of the perfect thresholds 0.3 and 0.5
    assert roc_auc(d, s) == 1.0
    eer, eer_thr = equal_error_rate(d, s)
    assert eer == 0.0
    assert 0.3 <= eer_thr < 0.7


def test_best_threshold_ties_take_smallest():
    d = np.array([0.1, 0.9])
    s = np.array([True, False])
    # Every threshold in [0.1, 0.9) is perfect.
    assert best_threshold(d, s, np.array([0.8, 0.2, 0.5])) == (0.2, 1.0)


def test_best_threshold_empty_grid_errors():
    with pytest.raises(FacecmpError, match="empty"):
        best_threshold(np.array([0.1]), np.array([True]), np.array([]))


# -- ROC / EER / TAR@FAR -------------------------------------------------------------

def test_roc_auc_hand_worked():
    # Same: 0.1, 0.4; different: 0.3, 0.6. Of 4 (same, different) orderings,
    # 3 have the same pair closer -> AUC 0.75.
    d = np.array([0.1, 0.4, 0.3, 0.6])
    s = np.array([True, True, False, False])
    assert roc_auc(d, s) == pytest.approx(0.75)


def test_equal_error_rate_agrees_with_brute_force():
    d, s = random_scores(2000, seed=3)
    eer, thr = equal_error_rate(d, s)
    grid = np.linspace(0, 3, 3001)
    tp = np.array([np.sum((d <= t) & s) for t in grid])
    fp = np.array([np.sum((d <= t) & ~s) for t in grid])
    far, frr = fp / (~s).sum(), 1 - tp / s.sum()
    i = int(np.argmin(np.abs(far - frr)))
    assert eer == pytest.approx((far[i] + frr[i]) / 2, abs=0.01)
    assert thr == pytest.approx(grid[i], abs=0.05)


def test_tar_at_far_hand_worked():
    neg = np.array([0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3])
    pos = np.array([0.1, 0.2, 0.45, 0.55])
    d = np.concatenate([pos, neg])
    s = np.concatenate([np.ones(4, bool), np.zeros(10, bool)])
    # FAR <= 0.1 allows one impostor (0.3); 0.5 would be a second, so the largest
    # usable observed distance is 0.45.
    tar, thr = tar_at_far(d, s, 0.1)
    assert thr == 0.45
    assert tar == pytest.approx(0.75)


def test_tar_at_far_none_when_too_few_negatives():
    d, s = random_scores(200)
    n_neg = int((~s).sum())
    assert n_neg < 1000
    assert tar_at_far(d, s, 1e-3) is None
    assert tar_at_far(d, s, 1.0 / n_neg) is not None


def test_tar_at_far_when_smallest_distance_is_an_impostor():
    d = np.array([0.1] + [0.5] * 9 + [0.2])
    s = np.array([False] * 10 + [True])
    tar, thr = tar_at_far(d, s, 0.1)  # one impostor allowed (0.1), next impostors at 0.5
    assert (tar, thr) == (1.0, 0.2)
    s = np.array([False] * 20 + [True])
    tar, thr = tar_at_far(np.array([0.1] * 20 + [0.2]), s, 0.05)  # 0.1 ties break FAR
    assert tar == 0.0 and thr < 0.1


# -- k-fold --------------------------------------------------------------------------

def test_kfold_hand_worked():
    d = np.array([0.1, 0.9, 0.2, 0.3])
    s = np.array([True, False, True, False])
    grid = np.array([0.15, 0.25, 0.5, 1.0])
    r = kfold_accuracy(d, s, grid, folds=2)
    # Fold 1 held out: fold 2 picks 0.25 -> fold 1 all right. Fold 2 held out:
    # fold 1 picks 0.15 (smallest perfect) -> 0.2 same pair missed.
    assert r["thresholds"] == [0.25, 0.15]
    assert r["accuracies"] == [1.0, 0.5]
    assert r["mean"] == pytest.approx(0.75)
    assert r["std"] == pytest.approx(0.25)
    assert r["folds"] == 2


def test_kfold_int_equals_contiguous_fold_ids():
    d, s = random_scores(600)
    grid = np.linspace(0, 2.5, 100)
    by_k = kfold_accuracy(d, s, grid, folds=10)
    by_ids = kfold_accuracy(d, s, grid, folds=np.repeat(np.arange(1, 11), 60))
    assert by_k == by_ids
    assert by_k["folds"] == 10 and len(by_k["accuracies"]) == 10


def test_kfold_explicit_ids_follow_the_ids_not_the_order():
    d, s = random_scores(600)
    grid = np.linspace(0, 2.5, 100)
    interleaved = np.arange(600) % 3
    r = kfold_accuracy(d, s, grid, folds=interleaved)
    for fold, (acc, thr) in enumerate(zip(r["accuracies"], r["thresholds"])):
        test = interleaved == fold
        assert thr == best_threshold(d[~test], s[~test], grid)[0]
        assert acc == pytest.approx(np.mean((d[test] <= thr) == s[test]))


def test_kfold_rejects_single_fold():
    with pytest.raises(FacecmpError):
        kfold_accuracy(np.array([0.1, 0.2]), np.array([True, False]), np.array([0.5]), folds=1)
    with pytest.raises(FacecmpError):
        kfold_accuracy(np.array([0.1, 0.2]), np.array([True, False]), np.array([0.5]),
                       folds=np.array([3, 3]))


# -- grids ---------------------------------------------------------------------------

def test_parse_grid_paper_grid():
    g = parse_grid("0:20:1")
    assert g.size == 20
    np.testing.assert_array_equal(g, np.arange(20))


def test_parse_grid_float_step_has_no_stray_stop():
    g = parse_grid("0:1:0.1")
    assert g.size == 10 and g[-1] == pytest.approx(0.9)


@pytest.mark.parametrize("text", ["a:b", "0:1:0", "0:1:-0.5", "0:1", "1:0:0.1", "0:x:1", ""])
def test_parse_grid_errors(text):
    with pytest.raises(FacecmpError) as exc:
        parse_grid(text)
    assert "\n" not in str(exc.value)


def test_default_grid_covers_range():
    d = np.array([0.3, 1.7, 0.9])
    g = default_grid(d, steps=50)
    assert 25 <= g.size <= 50
    assert g[0] == 0.0 and g[-1] > 1.7
    assert np.all(np.diff(g) > 0)
    neg = default_grid(np.array([-0.5, 0.5]))
    assert neg[0] < -0.5 and neg[-1] > 0.5


def test_default_grid_resolves_the_boundary_despite_outliers():
    rng = np.random.default_rng(3)
    same = rng.normal(8, 1, 300)
    diff = rng.normal(12, 1, 300)
    d = np.concatenate([same, diff, [4000.0]])
    s = np.concatenate([np.ones(300, bool), np.zeros(301, bool)])
    _, acc_grid = best_threshold(d, s, default_grid(d))
    _, acc_exact = best_threshold(d, s, np.unique(d))
    assert acc_grid >= acc_exact - 0.01 and acc_grid > 0.9


# -- summary -------------------------------------------------------------------------

def test_summarize_is_json_ready():
    d, s = random_scores(600)
    out = summarize(d, s, np.linspace(0, 2.5, 200), folds=10)
    text = json.dumps(out, allow_nan=False)
    assert json.loads(text) == out
    for key in ("best_threshold", "accuracy", "precision", "recall", "f1", "roc_auc",
                "eer", "eer_threshold", "kfold", "n_pairs", "n_same", "n_different"):
        assert key in out, key
    assert out["n_pairs"] == 600 and out["n_same"] + out["n_different"] == 600
    assert out["tar_at_far_1e-3"]["tar"] is None
    assert out["tar_at_far_1e-3"]["reason"] == (
        f"needs at least 1000 different-identity pairs, have {out['n_different']}")
    assert set(out["tar_at_far_1e-2"]) == {"tar", "threshold"}
    assert 0.5 < out["roc_auc"] < 1.0
    assert out["kfold"]["folds"] == 10
