"""Synthetic face masks (facecmp/masks.py) and the masked pair set (tools/mask_pairs.py)."""

from __future__ import annotations

import importlib.util
import itertools
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import need_data

from facecmp.align import template_points
from facecmp.errors import FacecmpError
from facecmp.masks import MASK_FILLS, MASK_STYLES, draw_mask, draw_mask_on_crop, mask_polygon
from facecmp.pairs import read_pairs

REPO = Path(__file__).resolve().parents[1]
COMBOS = list(itertools.product(MASK_STYLES, MASK_FILLS))


def face_image(size: int = 200, gray: bool = False, seed: int = 0) -> np.ndarray:
    """A textured image (every pixel differs from its neighbours), so any change shows."""
    rng = np.random.default_rng(seed)
    img = rng.integers(60, 200, (size, size, 1 if gray else 3), dtype=np.uint8)
    return np.repeat(img, 3, axis=2) if gray else img


def landmarks(size: int = 200, angle: float = 0.0, shift: tuple[float, float] = (0, 0)) -> np.ndarray:
    """The 112-pixel template scaled to about half the image, rotated about its centre."""
    marks = template_points(112) * (size / 224) + size / 4
    centre = marks.mean(axis=0)
    t = np.deg2rad(angle)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    return (marks - centre) @ rot.T + centre + np.asarray(shift)


def changed(a: np.ndarray, b: np.ndarray, point: np.ndarray, radius: int = 1) -> np.ndarray:
    """Per pixel of the (2r+1)^2 square around point: did any channel change?"""
    x, y = (int(round(v)) for v in point)
    sl = (slice(y - radius, y + radius + 1), slice(x - radius, x + radius + 1))
    diff = a[sl].astype(int) - b[sl].astype(int)
    return np.abs(diff).reshape(diff.shape[0], diff.shape[1], -1).max(axis=2) > 0


def check_covers_nose_and_mouth(img: np.ndarray, outs: list[np.ndarray], marks: np.ndarray) -> None:
    """outs: the same mask in several fills. A masked pixel may by chance keep its value in
    one fill (more so in one channel), never in both a light and a dark one."""
    for point in marks[2:]:  # nose and both mouth corners: every pixel around them is masked
        assert np.logical_or.reduce([changed(img, out, point) for out in outs]).all(), point
    for out, point in itertools.product(outs, marks[:2]):  # the eyes: not a pixel near them touched
        assert not changed(img, out, point, radius=2).any(), point


@pytest.mark.parametrize("style", MASK_STYLES)
def test_mask_covers_nose_and_mouth_and_leaves_eyes(style):
    img, marks = face_image(), landmarks()
    for seed in range(6):  # the place varies with the seed; the rule holds for each
        outs = [draw_mask(img, marks, np.random.default_rng(seed), style, fill) for fill in MASK_FILLS]
        assert all(out.shape == img.shape and out.dtype == np.uint8 for out in outs)
        check_covers_nose_and_mouth(img, outs, marks)


@pytest.mark.parametrize("angle", [-35, 20, 90])
def test_mask_follows_a_rotated_face(angle):
    img = face_image(300)
    marks = landmarks(300, angle)
    for style in MASK_STYLES:
        outs = [draw_mask(img, marks, np.random.default_rng(1), style, fill) for fill in ("light", "dark")]
        check_covers_nose_and_mouth(img, outs, marks)
        poly = mask_polygon(marks, np.random.default_rng(1), style).astype(np.float32)
        nose_depth = cv2.pointPolygonTest(poly, tuple(float(v) for v in marks[2]), True)
        assert nose_depth > 0.1 * np.linalg.norm(marks[1] - marks[0])


def test_polygon_is_under_the_eyes_over_the_chin_and_about_the_face_wide():
    marks = landmarks(400)
    eye_dist = float(np.linalg.norm(marks[1] - marks[0]))
    mouth_y = marks[3:, 1].mean()
    for style, seed in itertools.product(MASK_STYLES, range(20)):
        poly = mask_polygon(marks, np.random.default_rng(seed), style)
        top, bottom = poly[:, 1].min(), poly[:, 1].max()
        width = poly[:, 0].max() - poly[:, 0].min()
        assert marks[:2, 1].max() + 0.1 * eye_dist < top < marks[2, 1]
        assert mouth_y + 0.4 * eye_dist < bottom < mouth_y + 1.0 * eye_dist
        assert 1.6 * eye_dist < width < 2.4 * eye_dist


def test_same_seed_same_mask_other_seed_other_mask():
    img, marks = face_image(), landmarks()
    first = draw_mask(img, marks, np.random.default_rng(7))
    assert np.array_equal(first, draw_mask(img, marks, np.random.default_rng(7)))
    assert not np.array_equal(first, draw_mask(img, marks, np.random.default_rng(8)))
    crop = face_image(64)
    assert np.array_equal(draw_mask_on_crop(crop, np.random.default_rng(3)),
                          draw_mask_on_crop(crop, np.random.default_rng(3)))
    assert not np.array_equal(img, first)


def test_styles_and_fills_give_different_pixels():
    img, marks = face_image(), landmarks()
    outs = {combo: draw_mask(img, marks, np.random.default_rng(0), *combo) for combo in COMBOS}
    for a, b in itertools.combinations(COMBOS, 2):
        assert np.abs(outs[a].astype(int) - outs[b]).max() > 30, (a, b)
    shapes = {s: mask_polygon(marks, np.random.default_rng(0), s) for s in MASK_STYLES}
    for a, b in itertools.combinations(MASK_STYLES, 2):
        assert not np.allclose(shapes[a], shapes[b])
    light = outs["cloth", "light"][110:130, 90:110].mean()
    dark = outs["cloth", "dark"][110:130, 90:110].mean()
    assert light > 150 > 100 > dark


def test_gray_image_gets_a_gray_mask_colour_image_a_coloured_one():
    marks = landmarks()
    gray = draw_mask(face_image(gray=True), marks, np.random.default_rng(0), "cloth", "pattern")
    assert np.array_equal(gray[..., 0], gray[..., 1]) and np.array_equal(gray[..., 1], gray[..., 2])
    img = face_image()
    colour = [draw_mask(img, marks, np.random.default_rng(s), "cloth", "light") for s in range(8)]
    nose = [tuple(c[int(marks[2, 1]) + 5, int(marks[2, 0])]) for c in colour]
    assert any(max(px) - min(px) > 20 for px in nose)  # some light masks are light blue
    assert draw_mask(face_image()[..., 0], marks, np.random.default_rng(0)).shape == (200, 200, 3)


@pytest.mark.parametrize("shape", [(64, 64), (64, 64, 1), (64, 64, 3), (112, 96, 3)])
def test_mask_on_crop_keeps_shape_and_covers_the_template_face(shape):
    rng = np.random.default_rng(0)
    crop = rng.integers(60, 200, shape, dtype=np.uint8)
    h, w = shape[:2]
    marks = template_points(w) * np.array([1.0, h / w])
    for style, seed in itertools.product(MASK_STYLES, range(4)):
        outs = [draw_mask_on_crop(crop, np.random.default_rng(seed), style, fill)
                for fill in ("light", "dark")]
        assert all(out.shape == crop.shape and out.dtype == np.uint8 for out in outs)
        check_covers_nose_and_mouth(crop[..., None] if crop.ndim == 2 else crop,
                                    [o[..., None] if o.ndim == 2 else o for o in outs], marks)
    assert draw_mask_on_crop(crop, np.random.default_rng(0)).shape == crop.shape


def test_mask_near_or_past_the_border_is_clipped():
    img = face_image(120)
    for shift in [(-60, -30), (70, 50), (-20, 80), (0, -75)]:
        marks = landmarks(120, 10, shift)
        for style in MASK_STYLES:
            out = draw_mask(img, marks, np.random.default_rng(0), style)
            assert out.shape == img.shape
            assert mask_polygon(marks, np.random.default_rng(0), style).shape[1] == 2
    far = landmarks(120, 0, (1e4, -1e4))  # the whole mask outside: the image comes back unchanged
    assert np.array_equal(draw_mask(img, far, np.random.default_rng(0)), img)
    tiny = face_image(8)  # a mask larger than the whole image
    assert draw_mask(tiny, landmarks(40, 0, (-12, -20)), np.random.default_rng(0)).shape == (8, 8, 3)


def test_bad_arguments_are_facecmp_errors():
    img, rng = face_image(), np.random.default_rng(0)
    with pytest.raises(FacecmpError, match="5x2"):
        draw_mask(img, np.zeros((4, 2)), rng)
    with pytest.raises(FacecmpError, match="5x2"):
        draw_mask(img, np.full((5, 2), np.nan), rng)
    with pytest.raises(FacecmpError, match="too close"):
        draw_mask(img, np.ones((5, 2)), rng)
    with pytest.raises(FacecmpError, match="style"):
        draw_mask(img, landmarks(), rng, style="balaclava")
    with pytest.raises(FacecmpError, match="fill"):
        draw_mask(img, landmarks(), rng, fill="neon")
    with pytest.raises(FacecmpError, match="uint8"):
        draw_mask_on_crop(np.zeros((64, 64, 3), np.float32), rng)
    with pytest.raises(FacecmpError, match="crop"):
        draw_mask_on_crop(np.zeros((64, 64, 4), np.uint8), rng)


# -- tools/mask_pairs.py on real LFW images -------------------------------------------

def load_tool():
    spec = importlib.util.spec_from_file_location("mask_pairs", REPO / "tools" / "mask_pairs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TINY_LFW = """2\t1
Abel_Pacheco\t1\t4
Abdel_Madi_Shabneh\t1\tDean_Barker\t1
Abdullah_Gul\t13\t14
Abdoulaye_Wade\t4\tElton_John\t4
"""


def test_mask_pairs_tool_on_lfw(tmp_path, capsys):
    lfw = need_data("lfw")
    pairs_file = tmp_path / "pairs.txt"
    pairs_file.write_text(TINY_LFW)
    out = tmp_path / "masked"
    tool = load_tool()
    argv = ["--pairs", str(pairs_file), "--images", str(lfw), "--out", str(out), "--examples", "4"]
    assert tool.main(argv) == 0
    assert "8 images: 8 masked" in capsys.readouterr().out
    for name in ("one_side.csv", "both.csv", "landmarks.json", "protocol.json", "examples.png"):
        assert (out / name).is_file(), name

    one_side, both = read_pairs(out / "one_side.csv"), read_pairs(out / "both.csv")
    source = read_pairs(pairs_file, lfw)
    assert [p.fold for p in one_side] == [p.fold for p in both] == [1, 1, 2, 2]
    assert [p.same for p in one_side] == [p.same for p in both] == [True, False, True, False]
    for mine, theirs, masked in zip(one_side, source, both):
        assert mine.path_a == theirs.path_a.resolve()  # the unmasked original, where it is
        assert mine.path_b == masked.path_b == out / "images" / theirs.path_b.parent.name / theirs.path_b.name
        assert masked.path_a == out / "images" / theirs.path_a.parent.name / theirs.path_a.name
        assert mine.path_b.is_file() and masked.path_a.is_file()
    assert "images/Abel_Pacheco/Abel_Pacheco_0004.jpg" in (out / "one_side.csv").read_text()

    marks = json.loads((out / "landmarks.json").read_text())
    assert len(marks) == 8
    for key, record in marks.items():
        original = cv2.imread(str(lfw / key), cv2.IMREAD_GRAYSCALE).astype(int)
        masked = cv2.imread(str(out / "images" / key), cv2.IMREAD_GRAYSCALE).astype(int)
        points = np.asarray(record["landmarks"])
        assert points.shape == (5, 2) and record["style"] in MASK_STYLES and record["fill"] in MASK_FILLS
        x, y = points[2].round().astype(int)  # the lower face changed; the eyes did not
        assert (np.abs(masked[y:y + 20, x - 10:x + 10] - original[y:y + 20, x - 10:x + 10]) > 3).mean() > 0.8
        for ex, ey in points[:2].round().astype(int):
            eye = (slice(ey - 2, ey + 3), slice(ex - 2, ex + 3))
            assert np.abs(masked[eye] - original[eye]).mean() < 4

    protocol = json.loads((out / "protocol.json").read_text())
    assert protocol["seed"] == 0 and protocol["pairs"] == 4 and protocol["images"] == 8
    assert protocol["masked"] == 8 and protocol["no_face"] == 0
    assert sum(protocol["styles"].values()) == sum(protocol["fills"].values()) == 8
    assert protocol["tool"].startswith("tools/mask_pairs.py")

    # The same seed gives the same masks whatever else the run holds: one fold alone.
    again = tmp_path / "again"
    assert tool.main(argv[:4] + ["--out", str(again), "--folds", "2", "--examples", "0"]) == 0
    for key in json.loads((again / "landmarks.json").read_text()):
        assert (again / "images" / key).read_bytes() == (out / "images" / key).read_bytes()
    assert not (again / "examples.png").exists()


def test_mask_pairs_tool_refuses_bad_input(tmp_path, capsys):
    tool = load_tool()
    assert tool.main(["--pairs", str(tmp_path / "none.txt"), "--out", str(tmp_path / "o")]) == 2
    assert "not found" in capsys.readouterr().err
    pairs_file = tmp_path / "pairs.csv"
    pairs_file.write_text("a/x.jpg,b/y.jpg,1\n")
    assert tool.main(["--pairs", str(pairs_file), "--out", str(tmp_path / "o")]) == 1
    assert "none of the 2 images" in capsys.readouterr().err
    assert tool.main(["--pairs", str(pairs_file), "--out", str(tmp_path / "o"), "--seed", "-1"]) == 2
    assert "--seed" in capsys.readouterr().err


@pytest.mark.slow
def test_the_masked_detector_finds_a_face_mtcnn_misses_and_compare_takes_it(tmp_path):
    """mtcnn-masked (the bundled identity model's detector): MTCNN and a pass for faces in masks."""
    from click.testing import CliRunner
    from PIL import Image

    from facecmp.cli import main
    from facecmp.detect import detect_faces, pick_face
    from facecmp.images import load_rgb

    photo = need_data("lfw", "Aaron_Peirsol", "Aaron_Peirsol_0001.jpg")
    rgb = load_rgb(photo)
    marks = pick_face(detect_faces(rgb))[0].landmarks
    masked = draw_mask(rgb, marks, np.random.default_rng(0), "cloth", "light")
    assert detect_faces(masked, "mtcnn") == []
    found = pick_face(detect_faces(masked, "mtcnn-masked"))[0].landmarks
    eyes = np.linalg.norm(marks[1] - marks[0])
    assert np.linalg.norm(found - marks, axis=1).max() < 0.25 * eyes  # mouth corners under the mask too
    plain, both = pick_face(detect_faces(rgb, "mtcnn"))[0], pick_face(detect_faces(rgb, "mtcnn-masked"))[0]
    assert plain.box == both.box and np.array_equal(plain.landmarks, both.landmarks)  # a bare face: MTCNN's
    path = tmp_path / "masked.png"
    Image.fromarray(masked).save(path)
    res = CliRunner().invoke(main, ["compare", str(photo), str(path), "--detector", "mtcnn"])
    assert res.exit_code == 3 and "no face found" in res.output
    res = CliRunner().invoke(main, ["compare", str(photo), str(path)])
    assert res.exit_code == 0 and res.output.split(":")[0] == "same"
