"""tools/canvas_detection.py: face crops pasted into photo-like canvases, found by each detector."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from conftest import REPO, need_data


def _tool():
    spec = importlib.util.spec_from_file_location("canvas_detection", REPO / "tools" / "canvas_detection.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_crop_lands_where_the_box_says_and_iou_is_right():
    tool = _tool()
    face = np.full((100, 80, 3), 200, np.uint8)
    canvas, box = tool.on_canvas(face, np.zeros((250, 250, 3), np.uint8), np.random.default_rng(3))
    x1, y1, x2, y2 = map(int, box)
    assert canvas.shape[0] >= 2.5 * (y2 - y1) - 1 and canvas.shape[1] >= 2.5 * (x2 - x1) - 1
    assert (canvas[y1:y2, x1:x2] == 200).all() and (canvas == 200).sum() == (y2 - y1) * (x2 - x1) * 3
    assert tool.iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1 and tool.iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0
    assert tool.iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(1 / 3)


@pytest.mark.slow
def test_pasted_lfw_faces_are_found_and_a_report_is_written(tmp_path, capsys):
    faces = tmp_path / "faces"
    faces.mkdir()
    lfw = need_data("lfw")
    from PIL import Image

    for name in ("Abel_Pacheco/Abel_Pacheco_0001.jpg", "Aaron_Peirsol/Aaron_Peirsol_0001.jpg"):
        Image.open(lfw / name).crop((60, 50, 190, 200)).save(faces / name.split("/")[1])
    (tmp_path / "notes.txt").write_text("not an image")
    out = tmp_path / "r.json"
    assert _tool().main(["--faces", str(faces), "--detectors", "mtcnn", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["mtcnn"]["total"] == 2 and result["mtcnn"]["found"] == 2
    assert "mtcnn: found 2 of 2 pasted faces" in capsys.readouterr().out
    assert _tool().main(["--faces", str(tmp_path / "empty")]) == 2
