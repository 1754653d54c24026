"""The masked pass of the detector: its O-Net's training (tools/train_masked_onet.py) and
its scoring on a masked set (tools/masked_detection.py)."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import need_data

from facecmp.mtcnn import WEIGHTS_DIR, _bbreg

REPO = Path(__file__).resolve().parents[1]


def load_tool(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_targets_invert_what_mtcnn_does_with_the_nets_outputs():
    tool = load_tool("train_masked_onet")
    boxes = np.array([[10.0, 20.0, 58.0, 68.0], [0.0, 5.0, 100.0, 105.0]])
    face = np.array([14.5, 18.0, 60.0, 75.5])
    marks = np.array([[25.0, 35.0], [45.0, 36.0], [35.0, 48.0], [27.0, 60.0], [44.0, 61.0]])
    reg, lmk = tool._targets(boxes, face, marks)
    # facecmp.mtcnn._bbreg applies the offsets; _stage3 maps landmarks as w * m + x1 - 1
    assert np.allclose(_bbreg(boxes.copy(), reg)[:, :4], face, atol=1e-4)
    w = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
    h = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
    points = np.stack([w * lmk[:, :5] + boxes[:, :1] - 1, h * lmk[:, 5:] + boxes[:, 1:2] - 1], axis=2)
    assert np.allclose(points, marks[None], atol=1e-4)


def test_the_paddle_onet_is_the_bundled_onet_and_round_trips_to_onnx(tmp_path):
    import cv2
    import onnx

    from facecmp.mtcnn import MTCNN
    from facecmp.runtime import import_paddle

    tool = load_tool("train_masked_onet")
    paddle = import_paddle()
    net = tool.paddle_onet(paddle)
    tool.load_state(net, tool.onnx_state(WEIGHTS_DIR / "mtcnn_onet.onnx"))
    net.eval()
    x = np.random.default_rng(0).uniform(-1, 1, (3, 3, 48, 48)).astype(np.float32)
    logits, reg, marks = (v.numpy() for v in net(paddle.to_tensor(x)))
    want_reg, want_marks, want_prob = MTCNN()._run("onet", x)
    prob = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert np.allclose(reg, want_reg, atol=1e-5) and np.allclose(marks, want_marks, atol=1e-5)
    assert np.allclose(prob, want_prob, atol=1e-5)
    path = tmp_path / "onet.onnx"
    onnx.save(tool.build_onnx("onet", tool.torch_state(net)), path)
    again = cv2.dnn.readNetFromONNX(str(path))
    again.setInput(x)
    assert np.allclose(again.forward("landmarks"), want_marks, atol=1e-6)


def test_photo_samples_label_faces_parts_and_background():
    from facecmp.images import load_rgb
    from facecmp.mtcnn import MTCNN

    tool = load_tool("train_masked_onet")
    rgb = load_rgb(need_data("lfw", "Aaron_Peirsol", "Aaron_Peirsol_0001.jpg"))
    got = tool.photo_samples(MTCNN(), rgb, np.random.default_rng(0))
    n = len(got["label"])
    assert got["x"].shape == (n, 3, 48, 48) and got["x"].dtype == np.uint8
    assert got["reg"].shape == (n, 4) and got["marks"].shape == (n, 10)
    counts = {v: int((got["label"] == v).sum()) for v in (1, -1, 0)}
    assert all(counts.values()), counts  # faces, parts and non-faces from both versions
    assert counts[1] <= 2 * tool.KEEP[1] and counts[0] <= 2 * tool.KEEP[0]
    faces = got["label"] == 1  # a face's landmarks fall inside its box, the eyes above the mouth
    assert ((got["marks"][faces] > 0) & (got["marks"][faces] < 1)).all()
    assert (got["marks"][faces][:, 5:7].max(1) < got["marks"][faces][:, 8:10].min(1)).all()


def test_scores_and_errors_are_what_they_say():
    tool = load_tool("masked_detection")
    assert tool.box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert tool.box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert tool.box_iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    truth = np.array([[0.0, 0.0], [10.0, 0.0], [5.0, 5.0], [2.0, 9.0], [8.0, 9.0]])
    assert tool.landmark_error(truth, truth) == 0.0
    assert tool.landmark_error(truth + [3.0, 4.0], truth) == pytest.approx(0.5)
    images = tool.non_face_images(8, [need_data("lfw", "Aaron_Peirsol", "Aaron_Peirsol_0001.jpg")], 0)
    assert len(images) == 8 and all(im.shape == (200, 200, 3) and im.dtype == np.uint8 for im in images)


def test_masked_detection_tool_on_a_small_masked_set(tmp_path, capsys):
    lfw = need_data("lfw")
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("1\t1\nAbel_Pacheco\t1\t4\nAbdel_Madi_Shabneh\t1\tDean_Barker\t1\n")
    masked = tmp_path / "masked"
    assert load_tool("mask_pairs").main(["--pairs", str(pairs), "--images", str(lfw), "--out",
                                         str(masked), "--examples", "0"]) == 0
    out = tmp_path / "det"
    tool = load_tool("masked_detection")
    argv = ["--masked", str(masked), "--every", "1", "--non-faces", "4", "--out", str(out),
            "--detectors", "mtcnn", "--passes", "0.3,0.3,0.7"]
    assert tool.main(argv) == 0
    assert "| mtcnn |" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())["detectors"]
    assert set(summary) == {"mtcnn", "masked pass 0.3,0.3,0.7"}
    for result in summary.values():
        unmasked = result["unmasked"]  # the truth is plain MTCNN's, rounded to 0.01 pixel
        assert unmasked["images"] == 4 and unmasked["found"] == unmasked["aligned"] == 100.0
        assert unmasked["median_landmark_error"] < 0.01
        assert result["masked"]["images"] == 4 and result["non_face_images"] == 4
    # the masked pass runs only where plain MTCNN finds nothing: it finds at least as much
    assert summary["masked pass 0.3,0.3,0.7"]["masked"]["found"] >= summary["mtcnn"]["masked"]["found"]
    rows = list(csv.DictReader(open(out / "images.csv")))
    assert len(rows) == 2 * 4 * 2 and (out / "landmark_error.png").stat().st_size > 1000
    assert tool.main(["--masked", str(tmp_path / "nowhere"), "--out", str(out)]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_merge_keeps_mtcnn_faces_and_adds_the_faces_only_the_masked_pass_found():
    from facecmp.detect import Face, merge_passes

    marks = np.zeros((5, 2), np.float32)
    plain = [Face((0, 0, 10, 10), 0.8, marks), Face((50, 50, 60, 60), 0.95, marks)]
    masked = [Face((1, 0, 11, 10), 0.999, marks + 1), Face((100, 100, 130, 130), 0.97, marks + 2)]
    merged = merge_passes(plain, masked)
    assert [f.box for f in merged] == [(0, 0, 10, 10), (100, 100, 130, 130), (50, 50, 60, 60)]
    assert merged[0].score == 0.999 and np.array_equal(merged[0].landmarks, marks)
    assert plain[0].score == 0.8  # the inputs are left as they were
    assert merge_passes([], masked) == sorted(masked, key=lambda f: -f.score)
    assert merge_passes(plain, []) != [] and merge_passes([], []) == []


def test_the_crop_cache_key_follows_the_masked_pass():
    from facecmp import detect

    assert detect.fingerprint("mtcnn") == "mtcnn"
    assert str(detect.MASKED_THRESHOLDS) in detect.fingerprint("mtcnn-masked")
    assert "missing" not in detect.fingerprint("mtcnn-masked")  # the masked O-Net ships
