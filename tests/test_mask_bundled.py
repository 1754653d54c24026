"""The bundled face-mask model on whole photos, through the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import need_data
from PIL import Image

from facecmp.cli import main
from facecmp.zoo import ZOO_DIR

pytestmark = pytest.mark.skipif(not (ZOO_DIR / "mask" / "meta.json").is_file(),
                                reason="no bundled mask model in this checkout")


def _photo(crop_path, tmp_path, name: str):
    """A 640x480 'photo' with the face small and off-centre, not a crop."""
    canvas = np.full((480, 640, 3), (200, 190, 170), np.uint8)
    canvas[:, :320] = (60, 80, 60)
    face = np.asarray(Image.open(crop_path).convert("RGB").resize((180, 180)))
    canvas[200:380, 380:560] = face
    Image.fromarray(canvas).save(tmp_path / name, quality=92)
    return tmp_path / name


def test_whole_photos_get_the_right_labels(tmp_path):
    masked = _photo(need_data("facemask12k", "Test", "WithMask", "1174.jpg"), tmp_path, "masked.jpg")
    bare = need_data("lfw", "Abel_Pacheco", "Abel_Pacheco_0001.jpg")  # an ordinary photo
    res = CliRunner().invoke(main, ["mask", str(masked), str(bare), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output.strip().splitlines()[-1])
    assert [r["label"] for r in out] == ["WithMask", "WithoutMask"]
    assert all(abs(sum(r["probabilities"].values()) - 1) < 1e-6 for r in out)
    x1, y1, x2, y2 = out[0]["box"]
    assert 380 <= (x1 + x2) / 2 <= 560 and 200 <= (y1 + y2) / 2 <= 380
