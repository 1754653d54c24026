"""`facecmp evaluate`: metrics, confusion matrix and figures for a classifier on a test folder."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner

from facecmp.cli import main
from facecmp.errors import FacecmpError
from facecmp.evaluate import classification_metrics, confusion_matrix


def test_evaluate_writes_every_file_and_the_matrix_sums_to_n(tiny_mask, tmp_path):  # noqa: F811
    from facecmp.evaluate import evaluate

    test = tiny_mask.parent.parent / "data" / "test"
    n_images = len(list(test.rglob("*.png")))
    summary = evaluate(tiny_mask, test, tmp_path / "ev")
    for name in ("metrics.json", "confusion.csv", "confusion.png", "errors.png"):
        assert (tmp_path / "ev" / name).stat().st_size > 0, name
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["n"] == n_images == summary["n"] and metrics["failed"] == 0
    with open(tmp_path / "ev" / "confusion.csv") as f:
        rows = list(csv.reader(f))
    classes = rows[0][1:]
    cm = np.array([[int(v) for v in row[1:]] for row in rows[1:]])
    assert [row[0] for row in rows[1:]] == classes and cm.shape == (len(classes),) * 2
    assert cm.sum() == n_images
    assert metrics["accuracy"] == pytest.approx(np.trace(cm) / n_images, abs=1e-6)
    assert [metrics["per_class"][c]["support"] for c in classes] == list(cm.sum(axis=1))
    assert 0 <= metrics["macro_f1"] <= 1


def test_cli_reports_accuracy_and_skips_unreadable_files(tiny_mask, tmp_path):  # noqa: F811
    import shutil

    data = tmp_path / "test"
    shutil.copytree(tiny_mask.parent.parent / "data" / "test", data)
    (data / "person_00" / "broken.jpg").write_bytes(b"\xff\xd8\xff" + bytes(40))
    res = CliRunner().invoke(main, ["evaluate", "--model", str(tiny_mask), "--data", str(data),
                                    "--out", str(tmp_path / "ev"), "--detector", "none"])
    assert res.exit_code == 0, res.output
    assert "accuracy" in res.stdout and "confusion.png" in res.stdout and "skipped 1" in res.stderr
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["failed"] == 1 and metrics["n"] == 8 and "broken.jpg" in metrics["failures"][0]


def test_class_folders_must_match_the_model(tiny_mask, tmp_path):  # noqa: F811
    (tmp_path / "data" / "cats").mkdir(parents=True)
    res = CliRunner().invoke(main, ["evaluate", "--model", str(tiny_mask), "--data", str(tmp_path / "data"),
                                    "--out", str(tmp_path / "ev")])
    assert res.exit_code != 0 and "cats" in res.output and "person_00" in res.output
    assert len(res.output.strip().splitlines()) == 1
    res = CliRunner().invoke(main, ["evaluate", "--model", str(tiny_mask), "--data", str(tmp_path / "nope")])
    assert res.exit_code != 0 and "does not exist" in res.output


def test_metrics_on_a_known_matrix():
    true = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    pred = np.array([0, 0, 0, 1, 1, 0, 2, 2])
    cm = confusion_matrix(true, pred, 4)  # class 3 is absent from the data
    assert cm.tolist()[:3] == [[3, 1, 0, 0], [1, 1, 0, 0], [0, 0, 2, 0]] and cm.sum() == 8
    m = classification_metrics(cm, ["a", "b", "c", "d"])
    assert m["accuracy"] == pytest.approx(6 / 8)
    a = m["per_class"]["a"]
    assert (a["precision"], a["recall"], a["support"]) == (pytest.approx(0.75), pytest.approx(0.75), 4)
    assert m["per_class"]["b"]["f1"] == pytest.approx(0.5)
    assert m["macro_f1"] == pytest.approx((0.75 + 0.5 + 1.0) / 3)  # absent classes do not count
    assert m["per_class"]["d"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}


def test_empty_folder_is_an_error(tiny_mask, tmp_path):  # noqa: F811
    from facecmp.evaluate import scan_labelled

    (tmp_path / "person_00").mkdir()
    with pytest.raises(FacecmpError, match="no images"):
        scan_labelled(tmp_path, ["person_00", "person_01"])


def test_a_list_of_images_evaluates_only_those(tiny_mask, tmp_path):  # noqa: F811
    test = tiny_mask.parent.parent / "data" / "test"
    chosen = sorted(test.rglob("*.png"))[::2]
    (tmp_path / "list.txt").write_text("".join(f"{p}\n" for p in chosen) + "\n")
    res = CliRunner().invoke(main, ["evaluate", "--model", str(tiny_mask), "--data", str(tmp_path / "list.txt"),
                                    "--out", str(tmp_path / "ev"), "--detector", "none"])
    assert res.exit_code == 0, res.output
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["n"] == len(chosen) < len(list(test.rglob("*.png")))
    (tmp_path / "bad.txt").write_text(f"{tmp_path}/cats/a.png\n")
    res = CliRunner().invoke(main, ["evaluate", "--model", str(tiny_mask), "--data", str(tmp_path / "bad.txt")])
    assert res.exit_code != 0 and "cats" in res.output and len(res.output.strip().splitlines()) == 1
    (tmp_path / "empty.txt").write_text("\n")
    res = CliRunner().invoke(main, ["evaluate", "--model", str(tiny_mask), "--data", str(tmp_path / "empty.txt")])
    assert res.exit_code != 0 and "is empty" in res.output
