"""Classifier inference: `facecmp mask` / `facecmp expression`, batching and detector fallbacks."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import need_data

from facecmp.cli import main


def _images(model: Path, n: int = 2) -> list[str]:
    test = model.parent.parent / "data" / "test"
    return [str(sorted((test / c).iterdir())[0]) for c in sorted(p.name for p in test.iterdir())][:n]


def test_mask_json_has_one_object_per_image_and_survives_a_bad_file(tiny_mask, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_text("not a JPEG")
    good = _images(tiny_mask)
    res = CliRunner().invoke(main, ["mask", *good, str(bad), "--model", str(tiny_mask),
                                    "--detector", "none", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert isinstance(out, list) and len(out) == 3
    assert [o["path"] for o in out] == [*good, str(bad)]
    classes = json.loads((tiny_mask / "meta.json").read_text())["classes"]
    for o in out[:2]:
        assert o["label"] in classes and set(o["probabilities"]) == set(classes)
        assert abs(sum(o["probabilities"].values()) - 1) < 1e-6
        assert o["label"] == max(o["probabilities"], key=o["probabilities"].get)
        assert o["box"] is None and "error" not in o
    assert "error" in out[2] and "not an image" in out[2]["error"] and "label" not in out[2]


def test_plain_output_and_exit_code_when_everything_fails(tiny_mask, tmp_path):
    good = _images(tiny_mask, 1)[0]
    res = CliRunner().invoke(main, ["mask", good, "--model", str(tiny_mask), "--detector", "none"])
    assert res.exit_code == 0, res.output
    line = res.stdout.strip()
    assert line.startswith(f"{good}: person_0") and line.endswith(")") and "(p=" in line
    res = CliRunner().invoke(main, ["mask", str(tmp_path / "missing.jpg"), "--model", str(tiny_mask)])
    assert res.exit_code != 0 and "no such file" in res.output and "Traceback" not in res.output


def test_wrong_task_and_identity_model_are_one_line_errors(tiny_mask, tiny_model):
    good = _images(tiny_mask, 1)
    for model, words in ((tiny_mask, "model of the mask task, not of the expression task"),
                         (tiny_model, "model of the identity task, not of the expression task")):
        res = CliRunner().invoke(main, ["expression", *good, "--model", str(model)])
        assert res.exit_code != 0 and words in res.output
        assert len(res.output.strip().splitlines()) == 1


def test_batches_give_the_same_answers_and_probabilities_sum_to_one(tiny_mask):
    from facecmp.classifier import Classifier

    test = tiny_mask.parent.parent / "data" / "test"
    files = sorted(test.rglob("*.png"))
    one = Classifier(tiny_mask, batch_size=64).predict_files(files, detector="none")
    small = Classifier(tiny_mask, batch_size=3).predict_files(files, detector="none", progress=True)
    assert len(one) == len(small) == len(files)
    for a, b in zip(one, small):
        assert a["label"] == b["label"]
        assert np.allclose(list(a["probabilities"].values()), list(b["probabilities"].values()), atol=1e-5)
        assert abs(sum(a["probabilities"].values()) - 1) < 1e-9


def test_flip_averages_the_face_and_its_mirror(tiny_mask, tmp_path):
    from facecmp.classifier import Classifier

    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, size=(5, 32, 32, 3), dtype=np.uint8)
    plain = Classifier(tiny_mask, flip=False)
    assert not plain.flip  # the tiny model's meta says nothing: no flip by default
    both = Classifier(tiny_mask, flip=True, batch_size=2).probabilities(crops)
    expected = (plain.probabilities(crops) + plain.probabilities(crops[:, :, ::-1].copy())) / 2
    assert np.allclose(both, expected, atol=1e-5) and np.allclose(both.sum(axis=1), 1, atol=1e-6)
    assert not np.allclose(both, plain.probabilities(crops), atol=1e-4)
    # the CLI's evaluate records whether it flipped
    result, metrics = _evaluate(tiny_mask, tiny_mask, tmp_path / "ev", "--flip")
    assert result.exit_code == 0, result.output
    assert metrics["flip"] is True


def _bundle(src: Path, dst: Path, *args: str) -> int:
    """tools/bundle_model.py's exit code for src -> dst with these options."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
    import bundle_model

    return bundle_model.main([str(src), str(dst), *args])


def _evaluate(model: Path, tiny_mask: Path, out: Path, *args: str):
    """`facecmp evaluate` of model on the tiny mask test split: the CLI result and its metrics.json."""
    test = tiny_mask.parent.parent / "data" / "test"
    result = CliRunner().invoke(main, ["evaluate", "--model", str(model), "--data", str(test),
                                       "--detector", "none", *args, "--out", str(out)])
    found = out / "metrics.json"
    return result, json.loads(found.read_text()) if result.exit_code == 0 and found.is_file() else None


def test_zoom_classifies_the_central_part_of_each_crop(tiny_mask, tmp_path):
    import cv2

    from facecmp.classifier import Classifier
    from facecmp.preprocess import zoom_views

    rng = np.random.default_rng(1)
    crops = rng.integers(0, 256, size=(5, 32, 32, 3), dtype=np.uint8)
    plain = Classifier(tiny_mask, flip=False)
    assert plain.zoom == 1.0 and zoom_views(crops, 1.0)[0] is crops
    zoomed = Classifier(tiny_mask, flip=False, zoom=0.75, batch_size=2).probabilities(crops)
    by_hand = np.stack([cv2.resize(c[4:28, 4:28], (32, 32), interpolation=cv2.INTER_LINEAR) for c in crops])
    assert np.allclose(zoomed, plain.probabilities(by_hand), atol=1e-5)
    assert not np.allclose(zoomed, plain.probabilities(crops), atol=1e-4)
    assert zoom_views(crops[..., :1], 0.75)[0].shape == (5, 32, 32, 1)  # gray crops keep their channel
    # a bundled model carries its zoom; evaluate records the one it used; out of range is refused
    assert _bundle(tiny_mask, tmp_path / "z", "--predict-zoom", "0.75") == 0
    assert Classifier(tmp_path / "z").zoom == 0.75
    assert _bundle(tiny_mask, tmp_path / "bad", "--predict-zoom", "0.2") == 2
    result, metrics = _evaluate(tmp_path / "z", tiny_mask, tmp_path / "ev")
    assert result.exit_code == 0, result.output
    assert metrics["zoom"] == 0.75
    refused, _ = _evaluate(tmp_path / "z", tiny_mask, tmp_path / "ev2", "--zoom", "0.3")
    assert refused.exit_code == 2 and "zoom must be between 0.5 and 1" in refused.output


def test_no_face_falls_back_to_haar_then_the_whole_image(tiny_mask, monkeypatch):
    from facecmp import detect
    from facecmp.classifier import Classifier

    clf = Classifier(tiny_mask)
    path = _images(tiny_mask, 1)[0]
    res = clf.predict_files([path], detector="mtcnn")[0]  # stripes: neither detector sees a face
    assert res["box"] is None and "whole image" in res["note"]
    assert abs(sum(res["probabilities"].values()) - 1) < 1e-9

    def fake(rgb, detector="mtcnn"):
        return [] if detector == "mtcnn" else [detect.Face((8.0, 8.0, 40.0, 40.0), 1.0)]

    monkeypatch.setattr(detect, "detect_faces", fake)
    res = clf.predict_files([path], detector="mtcnn")[0]
    assert res["box"] == [8.0, 8.0, 40.0, 40.0] and "used the haar box" in res["note"]
    # the model's box scale is for MTCNN boxes; Haar's smaller boxes are enlarged to match
    from facecmp.preprocess import _rescaled_for

    own = float(clf.meta.crop.scale)
    assert _rescaled_for(clf.meta, "haar").crop.scale == pytest.approx(own / 0.75)
    assert _rescaled_for(clf.meta, "mtcnn").crop.scale == own


@pytest.mark.slow
def test_expression_on_a_whole_lfw_photo(tiny_expr):
    lfw = need_data("lfw")
    photo = sorted((lfw / "Aaron_Eckhart").glob("*.jpg"))[0] if (lfw / "Aaron_Eckhart").is_dir() \
        else sorted(lfw.rglob("*.jpg"))[0]
    res = CliRunner().invoke(main, ["expression", str(photo), "--model", str(tiny_expr),
                                    "--detector", "mtcnn", "--json"])
    assert res.exit_code == 0, res.output
    (out,) = json.loads(res.stdout)
    assert abs(sum(out["probabilities"].values()) - 1) < 1e-6 and len(out["probabilities"]) == 3
    assert out["box"] is not None and out["note"] is None  # MTCNN finds the LFW face itself
    meta = json.loads((tiny_expr / "meta.json").read_text())
    assert (meta["arch"], meta["color"], meta["input_size"]) == ("attention_resnet", "gray", 48)


def test_five_crops_average_the_central_and_corner_squares(tiny_mask, tmp_path):
    import cv2

    from facecmp.classifier import Classifier
    from facecmp.errors import FacecmpError

    rng = np.random.default_rng(2)
    crops = rng.integers(0, 256, size=(3, 32, 32, 3), dtype=np.uint8)
    five = Classifier(tiny_mask, flip=True, zoom=0.75, crops=5, batch_size=2).probabilities(crops)
    plain = Classifier(tiny_mask, flip=False)
    views = [np.stack([cv2.resize(c[t : t + 24, l : l + 24], (32, 32), interpolation=cv2.INTER_LINEAR)
                       for c in crops]) for t, l in [(4, 4), (0, 0), (0, 8), (8, 0), (8, 8)]]
    views += [v[:, :, ::-1] for v in views]
    by_hand = np.mean([plain.probabilities(np.ascontiguousarray(v)) for v in views], axis=0)
    assert np.allclose(five, by_hand, atol=1e-5)
    assert np.allclose(five.sum(axis=1), 1.0)
    centre = Classifier(tiny_mask, flip=True, zoom=0.75, crops=1).probabilities(crops)
    assert not np.allclose(five, centre, atol=1e-4)
    with pytest.raises(FacecmpError, match="5 crops need a zoom below 1"):
        Classifier(tiny_mask, zoom=1.0, crops=5)
    # bundled default; evaluate records it; the CLI refuses 5 crops of a whole crop in one line
    assert _bundle(tiny_mask, tmp_path / "z", "--predict-zoom", "0.75", "--predict-crops", "5") == 0
    assert Classifier(tmp_path / "z").crops == 5
    assert _bundle(tiny_mask, tmp_path / "bad", "--predict-crops", "5") == 2
    result, metrics = _evaluate(tmp_path / "z", tiny_mask, tmp_path / "ev")
    assert result.exit_code == 0, result.output
    assert metrics["crops"] == 5
    refused, _ = _evaluate(tmp_path / "z", tiny_mask, tmp_path / "ev2", "--zoom", "1")
    assert refused.exit_code == 2 and "5 crops need a zoom below 1" in refused.output
    one, metrics = _evaluate(tmp_path / "z", tiny_mask, tmp_path / "ev3", "--zoom", "1", "--crops", "1")
    assert one.exit_code == 0, one.output
    assert metrics["crops"] == 1
