"""The bundled facial-expression model: whole photos through the CLI, and FER2013 test accuracy."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import need_data
from PIL import Image

from facecmp.cli import main
from facecmp.zoo import ZOO_DIR

pytestmark = pytest.mark.skipif(not (ZOO_DIR / "expression" / "meta.json").is_file(),
                                reason="no bundled expression model in this checkout")


def test_whole_photo_gets_a_label_and_probabilities_summing_to_one(tmp_path):
    photo = need_data("lfw", "Abel_Pacheco", "Abel_Pacheco_0001.jpg")  # an ordinary photo
    # the same face small and off-centre on a larger colour canvas: the detector must find it
    canvas = np.full((600, 800, 3), (180, 200, 220), np.uint8)
    canvas[250:500, 450:700] = np.asarray(Image.open(photo).convert("RGB"))
    Image.fromarray(canvas).save(tmp_path / "photo.jpg", quality=92)
    res = CliRunner().invoke(main, ["expression", str(photo), str(tmp_path / "photo.jpg"), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output.strip().splitlines()[-1])
    classes = {"angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"}
    for r in out:
        assert r["label"] in classes and set(r["probabilities"]) == classes
        assert abs(sum(r["probabilities"].values()) - 1) < 1e-5
        assert r["label"] == max(r["probabilities"], key=r["probabilities"].get)
    x1, y1, x2, y2 = out[1]["box"]
    assert 450 <= (x1 + x2) / 2 <= 700 and 250 <= (y1 + y2) / 2 <= 500


def test_fer2013_happy_and_surprise_are_recognised():
    test = need_data("fer2013", "test")
    files = {c: sorted((test / c).iterdir())[:50] for c in ("happy", "surprise")}
    args = [str(p) for c in files for p in files[c]]
    res = CliRunner().invoke(main, ["expression", *args, "--json", "--detector", "none"])
    assert res.exit_code == 0, res.output
    labels = [r["label"] for r in json.loads(res.output.strip().splitlines()[-1])]
    correct = sum(lab == c for lab, c in zip(labels, [c for c in files for _ in files[c]]))
    # of 100; chance is 1 in 7. The two easiest classes (recall 0.84 and 0.72 on the whole
    # PrivateTest for the bundled model); its overall test accuracy is on its card.
    assert correct >= 60
