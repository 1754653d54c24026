"""tools/ablation.py on a few real Face Mask 12K images: runs, tables, caching, bad specs."""

from __future__ import annotations

import csv
import importlib.util
import json

import pytest

from conftest import REPO, need_data


def _tool():
    spec = importlib.util.spec_from_file_location("ablation", REPO / "tools" / "ablation.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_two_variants_scored_and_cached(tmp_path):
    data = need_data("facemask12k")
    tool = _tool()
    out = tmp_path / "abl"
    argv = [str(REPO / "configs/ablations/mask-activation.yaml"), "--data", str(data), "--epochs", "1",
            "--seeds", "0", "--only", "relu", "prelu", "--train-subset", "12", "--val-subset", "4",
            "--test-subset", "10", "--batch-size", "8", "--out", str(out)]
    assert tool.main(argv) == 0
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["variant"] for r in rows] == ["relu", "prelu"]
    assert all(0.0 <= float(r["test_acc"]) <= 1.0 for r in rows)
    table = (out / "results.md").read_text()
    assert "| relu |" in table and "baseline" in table and "| prelu |" in table
    # both variants trained on the same 12 + 12 linked images
    assert len(list((out / "data" / "seed0-train12-val4" / "train").glob("*/*"))) == 24
    # a finished run is reused, not retrained
    stamp = (out / "runs" / "relu-seed0" / "test_acc.json").stat().st_mtime_ns
    assert tool.main(argv) == 0
    assert (out / "runs" / "relu-seed0" / "test_acc.json").stat().st_mtime_ns == stamp
    assert json.loads((out / "results.json").read_text())["spec"]["task"] == "mask"


def test_bad_spec_is_refused_before_training(tmp_path, capsys):
    tool = _tool()
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: mask\ndata: facemask12k\nvariants:\n  x: {model: {activaton: relu}}\n")
    assert tool.main([str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "activaton" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="unknown variant"):
        tool.main([str(REPO / "configs/ablations/mask-activation.yaml"), "--only", "swish",
                   "--data", str(tmp_path), "--out", str(tmp_path / "o")])
