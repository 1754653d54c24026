"""The bundled identity model, through the CLI, on real photos."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import need_data
from PIL import Image

from facecmp.cli import main
from facecmp.zoo import ZOO_DIR

pytestmark = pytest.mark.skipif(not (ZOO_DIR / "identity" / "meta.json").is_file(),
                                reason="no bundled identity model in this checkout")


def _compare(*args):
    return CliRunner().invoke(main, ["compare", *map(str, args)])


def test_meta_has_a_calibrated_threshold():
    meta = json.loads((ZOO_DIR / "identity" / "meta.json").read_text())
    assert meta["metric"] in ("euclid", "cosine") and meta["thresholds"][meta["metric"]] > 0
    assert "threshold" not in meta  # one calibrated threshold per metric, stored once
    assert meta["crop"]["method"] == "align" and meta["input_size"] == 64


# Pairs of LFW View 2 fold 1 (test identities) showing each verdict through the CLI. The
# model is wrong on some pairs (the first two different pairs of fold 1 come out "same"):
# test_fold_1_accuracy below is the measurement, these are illustrations.
@pytest.mark.parametrize(("a", "b", "expected"), [
    ("Abel_Pacheco/Abel_Pacheco_0001.jpg", "Abel_Pacheco/Abel_Pacheco_0004.jpg", "same"),
    ("Akhmed_Zakayev/Akhmed_Zakayev_0001.jpg", "Akhmed_Zakayev/Akhmed_Zakayev_0003.jpg", "same"),
    ("Abdel_Madi_Shabneh/Abdel_Madi_Shabneh_0001.jpg", "Mikhail_Gorbachev/Mikhail_Gorbachev_0001.jpg",
     "different"),
    ("Abdul_Rahman/Abdul_Rahman_0001.jpg", "Portia_de_Rossi/Portia_de_Rossi_0001.jpg", "different"),
])
def test_lfw_verdicts(a, b, expected):
    lfw = need_data("lfw")
    res = _compare(lfw / a, lfw / b)
    assert res.exit_code == 0, res.output
    assert res.output.startswith(expected + ":"), res.output
    res = _compare(lfw / a, lfw / b, "--json")
    assert json.loads(res.output)["verdict"] == expected


def test_fold_1_accuracy(tmp_path):
    """The first 20 same and 20 different pairs of fold 1, at the calibrated threshold."""
    lines = need_data("lfw-pairs.txt").read_text().splitlines()
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("\n".join(["1\t20", *lines[1:21], *lines[301:321]]) + "\n")
    out = tmp_path / "r.csv"
    res = CliRunner().invoke(main, ["compare", "--pairs", str(pairs), "--images", str(need_data("lfw")),
                                    "--out", str(out)])
    assert res.exit_code == 0, res.output
    verdicts = [row.split(",")[5] for row in out.read_text().splitlines()[1:]]
    correct = sum(v == t for v, t in zip(verdicts, ["same"] * 20 + ["different"] * 20))
    assert correct >= 30  # 75%; the model card's figure on 3,000 pairs is about 81%


def test_large_colour_photo_with_an_off_centre_face(tmp_path):
    face_dir = need_data("celeba-faces")
    src = sorted(sorted(face_dir.iterdir())[0].iterdir())[0]
    canvas = np.full((900, 1400, 3), (90, 120, 150), np.uint8)
    face = np.asarray(Image.open(src).convert("RGB").resize((384, 384)))
    canvas[60:444, 950:1334] = face
    Image.fromarray(canvas).save(tmp_path / "photo.jpg", quality=92)
    res = _compare(tmp_path / "photo.jpg", src, "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    x1, y1, x2, y2 = out["faces"][0]["box"]
    assert 950 <= (x1 + x2) / 2 <= 1334 and 60 <= (y1 + y2) / 2 <= 444
    assert len(out["faces"][0]["landmarks"]) == 5
    assert out["verdict"] == "same"  # the same face, scaled and re-encoded
