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
    assert meta["metric"] in ("euclid", "cosine") and meta["threshold"] is not None
    assert meta["crop"]["method"] == "align" and meta["input_size"] == 64


# the first two same and the first two different pairs of LFW View 2 fold 1 (test identities)
@pytest.mark.parametrize(("a", "b", "expected"), [
    ("Abel_Pacheco/Abel_Pacheco_0001.jpg", "Abel_Pacheco/Abel_Pacheco_0004.jpg", "same"),
    ("Akhmed_Zakayev/Akhmed_Zakayev_0001.jpg", "Akhmed_Zakayev/Akhmed_Zakayev_0003.jpg", "same"),
    ("Abdel_Madi_Shabneh/Abdel_Madi_Shabneh_0001.jpg", "Dean_Barker/Dean_Barker_0001.jpg", "different"),
    ("Abdel_Madi_Shabneh/Abdel_Madi_Shabneh_0001.jpg",
     "Giancarlo_Fisichella/Giancarlo_Fisichella_0001.jpg", "different"),
])
def test_lfw_verdicts(a, b, expected):
    lfw = need_data("lfw")
    res = _compare(lfw / a, lfw / b)
    assert res.exit_code == 0, res.output
    assert res.output.startswith(expected + ":"), res.output
    res = _compare(lfw / a, lfw / b, "--json")
    assert json.loads(res.output)["verdict"] == expected


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
