"""`facecmp embed` and `facecmp threshold-sweep` end to end, and their bad-input paths."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import need_data

from facecmp.cli import main
from facecmp.pairs import make_balanced_pairs, write_pairs_csv


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_embed_writes_paths_beside_vectors(tiny_model, tiny_tree, tmp_path):
    (tmp_path / "junk.jpg").write_text("not an image")
    res = _run("embed", "--model", tiny_model, "--detector", "none", tiny_tree / "person_00",
               tmp_path / "junk.jpg", "--out", tmp_path / "e.npz", "--normalize")
    assert res.exit_code == 0, res.output
    z = np.load(tmp_path / "e.npz")
    assert z["vectors"].shape == (8, 512) and len(z["paths"]) == 8
    assert np.allclose(np.linalg.norm(z["vectors"], axis=1), 1, atol=1e-5)
    assert list(z["failed"]) == [str(tmp_path / "junk.jpg")]


def test_sweep_writes_all_outputs_and_saves_threshold(tiny_model, tiny_tree, tmp_path):
    pairs = tmp_path / "pairs.csv"
    write_pairs_csv(make_balanced_pairs(tiny_tree, 20, 20, seed=1), pairs)
    out = tmp_path / "sweep"
    res = _run("threshold-sweep", "--model", tiny_model, "--pairs", pairs, "--metric", "both",
               "--folds", "4", "--out", out, "--save-threshold")
    assert res.exit_code == 0, res.output
    for name in ("sweep.csv", "summary.json", "pr_curve.png", "accuracy_curve.png", "roc.png",
                 "distances.png"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    for metric in ("euclid", "cosine"):
        s = summary[metric]
        assert s["n_pairs"] == 40 and s["kfold"]["folds"] == 4 and 0 <= s["roc_auc"] <= 1
        assert s["tar_at_far_1e-3"]["tar"] is None and "needs at least" in s["tar_at_far_1e-3"]["reason"]
    meta = json.loads((tiny_model / "meta.json").read_text())
    threshold = meta["thresholds"][meta["metric"]]
    assert meta["metric"] in ("euclid", "cosine") and threshold == summary[meta["metric"]]["best_threshold"]
    assert "threshold" not in meta  # stored once, in thresholds
    res = _run("threshold-sweep", "--model", tiny_model, "--pairs", pairs, "--out", out)
    again = json.loads((out / "summary.json").read_text())[meta["metric"]]
    assert again["at_calibrated_threshold"]["threshold"] == threshold
    assert again["at_calibrated_threshold"]["accuracy"] == again["accuracy"]  # same pairs, same threshold
    assert "calibrated threshold" in res.output


def test_paper_grid_is_one_flag_away(tiny_model, tiny_tree, tmp_path):
    pairs = tmp_path / "pairs.csv"
    write_pairs_csv(make_balanced_pairs(tiny_tree, 10, 10, seed=2), pairs)
    res = _run("threshold-sweep", "--model", tiny_model, "--pairs", pairs, "--metric", "euclid",
               "--thresholds", "0:20:1", "--out", tmp_path / "s")
    assert res.exit_code == 0, res.output
    rows = (tmp_path / "s" / "sweep.csv").read_text().splitlines()
    assert len(rows) == 21 and rows[1].startswith("euclid,0.0,")


def test_malformed_and_missing_pairs_are_reported(tiny_model, tiny_tree, tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("1\t1\nAlice\t1\t2\nAlice\tone\tBob\t2\n")
    res = _run("threshold-sweep", "--model", tiny_model, "--pairs", bad, "--out", tmp_path / "s")
    assert res.exit_code != 0 and "bad.txt:3" in res.output and "Traceback" not in res.output
    csv = tmp_path / "missing.csv"
    img = next((tiny_tree / "person_00").iterdir())
    # most images missing: a wrong --images root, refused (a few only fail their pairs)
    csv.write_text(f"path_a,path_b,same\n{img},{tmp_path / 'gone.png'},1\n{tmp_path / 'gone2.png'},{img},0\n")
    res = _run("threshold-sweep", "--model", tiny_model, "--pairs", csv, "--out", tmp_path / "s")
    assert res.exit_code != 0 and "2 pairs name missing images" in res.output and "line 2" in res.output


def test_bad_grid_and_bad_model_fail_fast(tiny_tree, tmp_path):
    pairs = tmp_path / "pairs.csv"
    write_pairs_csv(make_balanced_pairs(tiny_tree, 5, 5), pairs)
    res = _run("threshold-sweep", "--model", tmp_path, "--pairs", pairs, "--thresholds", "1:0:1")
    assert res.exit_code != 0 and "STOP must be above START" in res.output
    res = _run("threshold-sweep", "--model", tmp_path, "--pairs", pairs)
    assert res.exit_code != 0 and "not a facecmp model" in res.output


@pytest.mark.slow
def test_lfw_folds_are_the_kfold_protocol(tiny_model, tmp_path):
    pairs = need_data("lfw-pairs.txt")
    res = _run("threshold-sweep", "--model", tiny_model, "--pairs", pairs, "--lfw-folds", "1-2",
               "--detector", "none", "--metric", "cosine", "--out", tmp_path / "s")
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert summary["cosine"]["n_pairs"] == 1200 and summary["cosine"]["kfold"]["folds"] == 2
