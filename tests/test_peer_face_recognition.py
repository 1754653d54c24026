"""tools/peer_face_recognition.py: pair files, folds and scoring, without face_recognition itself."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

TOOL = Path(__file__).resolve().parents[1] / "tools" / "peer_face_recognition.py"


@pytest.fixture(scope="module")
def peer():
    had = "face_recognition" in sys.modules
    spec = importlib.util.spec_from_file_location("peer_face_recognition", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert had or "face_recognition" not in sys.modules, "face_recognition imported at module level"
    return module


def test_lfw_pairs_and_folds(peer, tmp_path):
    text = "2\t2\nAl\t1\t2\nBo\t1\t3\nAl\t1\tBo\t2\nBo\t3\tCy\t1\n" \
           "Cy\t1\t2\nDi\t2\t4\nAl\t2\tDi\t1\nBo\t1\tCy\t2\n"
    (tmp_path / "pairs.txt").write_text(text)
    pairs = peer.read_pairs(tmp_path / "pairs.txt", Path("/lfw"))
    assert [p.same for p in pairs] == [True, True, False, False] * 2
    assert [p.fold for p in pairs] == [1] * 4 + [2] * 4
    assert pairs[0].path_a == Path("/lfw/Al/Al_0001.jpg")
    assert pairs[0].path_b == Path("/lfw/Al/Al_0002.jpg")
    assert pairs[3].path_b == Path("/lfw/Cy/Cy_0001.jpg")
    second = peer.select_folds(pairs, peer.parse_folds("2"))
    assert second == pairs[4:]
    assert peer.select_folds(pairs, None) == pairs


def test_csv_pairs_paths_relative_to_the_csv(peer, tmp_path):
    (tmp_path / "sub").mkdir()
    csv_path = tmp_path / "sub" / "p.csv"
    csv_path.write_text("path_a,path_b,same,fold\n/abs/a.jpg,images/b.jpg,1,1\n"
                        "x.jpg,y.jpg,0,3\n")
    pairs = peer.read_pairs(csv_path)
    assert pairs[0].path_a == Path("/abs/a.jpg")
    assert pairs[0].path_b == tmp_path / "sub" / "images" / "b.jpg"
    assert (pairs[0].same, pairs[1].same) == (True, False)
    assert [p.fold for p in pairs] == [1, 3]
    assert peer.select_folds(pairs, peer.parse_folds("1-2")) == pairs[:1]
    (tmp_path / "nofold.csv").write_text("path_a,path_b,same\na.jpg,b.jpg,true\n")
    assert peer.read_pairs(tmp_path / "nofold.csv")[0].fold == 1


def test_parse_folds(peer):
    assert peer.parse_folds("1-3,5") == {1, 2, 3, 5}
    assert peer.parse_folds("4") == {4}
    with pytest.raises(ValueError):
        peer.parse_folds("one")


def test_errors_count_as_wrong(peer):
    dist = np.array([0.2, np.nan, 0.9, np.nan])
    same = np.array([True, True, False, False])
    assert peer.accuracy(dist, same, 0.6) == 0.5


def test_kfold_threshold_from_other_folds(peer):
    nan = np.nan
    dist = np.array([0.2, 0.3, 0.8, nan, 0.4, nan, 0.9, 0.7])
    same = np.array([True, True, False, False] * 2)
    folds = np.array([1] * 4 + [2] * 4)
    # fold 2 alone (errors left out) is separated best at 0.55, the midpoint of 0.4 and 0.7
    assert peer.best_threshold(dist[4:], same[4:]) == pytest.approx(0.55)
    result = peer.kfold(dist, same, folds)
    assert result["thresholds"] == {"1": 0.55, "2": 0.55}
    # every non-error pair right, the one error pair of each fold wrong
    assert result["fold_accuracy"] == {"1": 0.75, "2": 0.75}
    assert result["mean_accuracy"] == 0.75
    assert peer.kfold(dist, same, np.ones(8, int)) is None


def test_roc_auc_skips_errors_and_halves_ties(peer):
    dist = np.array([0.1, 0.5, 0.5, 0.9, np.nan])
    same = np.array([True, True, False, False, True])
    assert peer.roc_auc(dist, same) == pytest.approx(0.875)
    assert peer.roc_auc(dist[:2], same[:2]) is None
