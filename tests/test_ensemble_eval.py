"""tools/ensemble_eval.py: an average of models scored with threshold-sweep's own figures."""

from __future__ import annotations

import importlib
import json
import shutil

import numpy as np
import pytest
from conftest import REPO

from facecmp import scoring, sweep
from facecmp.embedder import Embedder
from facecmp.pairs import make_balanced_pairs, write_pairs_csv


@pytest.fixture()
def tool(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "tools"))
    return importlib.import_module("ensemble_eval")


def test_a_model_averaged_with_itself_scores_as_the_model(tool, tiny_model, tiny_tree, tmp_path, capsys):
    pairs_file = tmp_path / "pairs.csv"
    write_pairs_csv(make_balanced_pairs(tiny_tree, 15, 15, seed=2), pairs_file)
    single = scoring.pair_distances(sweep.load_pairs(pairs_file, None, None), Embedder(tiny_model, flip=False), ["cosine"])
    d = single.distances["cosine"]
    t = float(np.median(d))
    assert tool.main(["--pairs", str(pairs_file), "--threshold", str(t), str(tiny_model), str(tiny_model)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["pairs"] == out["of"] == 30
    assert out["at_threshold"]["threshold"] == t
    assert out["at_threshold"]["accuracy"] == pytest.approx(np.mean((d <= t) == single.issame))
    assert out["kfold"]["folds"] == 10 and 0 <= out["roc_auc"] <= 1


def test_members_that_cut_faces_differently_are_refused(tool, tiny_model, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(tiny_model, other)
    meta = json.loads((other / "meta.json").read_text())
    meta["input_size"] = int(meta["input_size"]) // 2
    (other / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(SystemExit, match="cuts its faces differently"):
        tool.AveragedEmbedder([tiny_model, other])
