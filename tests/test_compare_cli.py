"""`facecmp compare`: verdicts, JSON, pairs mode, and every kind of bad input."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from facecmp.cli import main


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture()
def two_images(tiny_tree):
    return sorted((tiny_tree / "person_00").iterdir())[:2]


def test_json_verdict_uses_the_given_threshold(tiny_model, two_images):
    a, b = two_images
    res = _run("compare", a, b, "--model", tiny_model, "--detector", "none", "--metric", "euclid",
               "--threshold", "1e9", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["verdict"] == "same" and out["metric"] == "euclid" and out["distance"] >= 0
    res = _run("compare", a, b, "--model", tiny_model, "--detector", "none", "--metric", "euclid",
               "--threshold", "-1")
    assert res.exit_code == 0 and res.output.startswith("different: euclid distance")


def test_identical_images_are_the_same_person(tiny_model, two_images):
    a = two_images[0]
    res = _run("compare", a, a, "--model", tiny_model, "--detector", "none", "--metric", "cosine",
               "--threshold", "0.0001", "--json")
    assert json.loads(res.output)["verdict"] == "same"


def _one_line_error(res, code=None):
    assert res.exit_code != 0 and (code is None or res.exit_code == code), res.output
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1
    return res.output


def test_bad_files_give_one_line_errors(tiny_model, two_images, tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    data = two_images[0].read_bytes()
    Image.open(two_images[0]).save(tmp_path / "full.jpg")
    full = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(full[: len(full) // 3])
    for bad in (tmp_path / "notes.txt", tmp_path / "cut.jpg", tmp_path / "missing.jpg"):
        out = _one_line_error(_run("compare", two_images[0], bad, "--model", tiny_model,
                                   "--detector", "none", "--threshold", "1"))
        assert bad.name in out
    assert data  # the good image itself was readable
    _one_line_error(_run("compare", two_images[0], "--model", tiny_model))
    _one_line_error(_run("compare", *two_images, "--model", tmp_path / "nomodel"))


def test_no_face_has_its_own_exit_code(tiny_model, two_images, tmp_path):
    Image.fromarray(np.full((200, 200, 3), 128, np.uint8)).save(tmp_path / "wall.png")
    res = _run("compare", two_images[0], tmp_path / "wall.png", "--model", tiny_model,
               "--detector", "mtcnn", "--threshold", "1")
    out = _one_line_error(res, code=3)
    assert "no face" in out


def test_pairs_mode_keeps_going_past_bad_images(tiny_model, tiny_tree, tmp_path):
    imgs = sorted((tiny_tree / "person_01").iterdir())
    (tmp_path / "bad.jpg").write_text("nope")
    pairs = tmp_path / "p.csv"
    pairs.write_text(f"path_a,path_b,same\n{imgs[0]},{imgs[1]},1\n{imgs[0]},{tmp_path / 'bad.jpg'},0\n"
                     f"{tmp_path / 'gone.jpg'},{imgs[1]},0\n")
    res = _run("compare", "--pairs", pairs, "--out", tmp_path / "r.csv", "--model", tiny_model,
               "--detector", "none", "--metric", "euclid", "--threshold", "1e9")
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(open(tmp_path / "r.csv")))
    assert [r["verdict"] for r in rows] == ["same", "error", "error"] and "bad.jpg" in rows[1]["error"]
    assert "gone.jpg" in rows[2]["error"]
    assert list(rows[0])[:6] == ["path_a", "path_b", "metric", "distance", "threshold", "verdict"]
