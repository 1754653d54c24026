"""Face detection (MTCNN, Haar) and five-point alignment."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from facecmp.align import (  # noqa: E402
    ARCFACE_TEMPLATE,
    align_face,
    alignment_matrix,
    center_crop_face,
    similarity_transform,
)
from facecmp.detect import Face, detect_faces, pick_face  # noqa: E402
from facecmp.errors import FacecmpError, NoFaceError  # noqa: E402
from facecmp.images import load_rgb  # noqa: E402

DATA = Path(os.environ.get("FACECMP_DATA", REPO.parent / "shared" / "data"))
# Single-person LFW images (250x250, face centred by the LFW-a alignment).
LFW_SAMPLES = ["AJ_Cook_0001", "Aaron_Eckhart_0001", "Aaron_Peirsol_0002",
               "Abbas_Kiarostami_0001", "Abdel_Madi_Shabneh_0001", "Abdullah_0001"]

def lfw_image(stem: str) -> np.ndarray:
    name = stem.rsplit("_", 1)[0]
    path = DATA / "lfw" / name / f"{stem}.jpg"
    if not path.is_file():
        pytest.skip(f"LFW image {path} not found (set FACECMP_DATA to the shared data folder)")
    return load_rgb(path)


def colour_photo() -> np.ndarray:
    folder = DATA / "celeba-faces"
    files = sorted(folder.glob("*/*.jpg"))[:1] if folder.is_dir() else []
    if not files:
        pytest.skip(f"no CelebA crops under {folder} (set FACECMP_DATA to the shared data folder)")
    return load_rgb(files[0])


def centre(box) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])


def assert_plausible_landmarks(marks: np.ndarray) -> None:
    left_eye, right_eye, nose, mouth_l, mouth_r = marks
    assert left_eye[0] < right_eye[0] and mouth_l[0] < mouth_r[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_l[1], mouth_r[1])


def test_bundled_nets_give_each_stage_its_outputs():
    from facecmp.mtcnn import MTCNN

    mtcnn = MTCNN()
    rng = np.random.default_rng(0)
    reg, prob = mtcnn._run("pnet", rng.uniform(-1, 1, (1, 3, 30, 40)).astype(np.float32))
    assert reg.shape == (1, 4, 10, 15) and prob.shape == (1, 2, 10, 15)
    np.testing.assert_allclose(prob.sum(axis=1), 1.0, atol=1e-5)
    reg, prob = mtcnn._run("rnet", rng.uniform(-1, 1, (3, 3, 24, 24)).astype(np.float32))
    assert reg.shape == (3, 4) and prob.shape == (3, 2)
    reg, marks, prob = mtcnn._run("onet", rng.uniform(-1, 1, (2, 3, 48, 48)).astype(np.float32))
    assert reg.shape == (2, 4) and marks.shape == (2, 10) and prob.shape == (2, 2)


def test_missing_or_broken_net_file_is_a_clear_error(tmp_path):
    from facecmp.mtcnn import MTCNN

    with pytest.raises(FacecmpError, match="not found"):
        MTCNN(tmp_path)
    for kind in ("pnet", "rnet", "onet"):
        (tmp_path / f"mtcnn_{kind}.onnx").write_bytes(b"not an onnx file")
    with pytest.raises(FacecmpError, match="cannot read"):
        MTCNN(tmp_path)


@pytest.mark.parametrize("stem", LFW_SAMPLES)
def test_mtcnn_finds_one_centred_face_with_ordered_landmarks(stem):
    rgb = lfw_image(stem)
    faces = detect_faces(rgb)
    assert len(faces) == 1
    face = faces[0]
    assert face.score > 0.9
    assert np.linalg.norm(centre(face.box) - [125, 125]) < 30
    assert 60 < face.box[2] - face.box[0] < 160
    assert face.landmarks.shape == (5, 2)
    assert_plausible_landmarks(face.landmarks)
    doc = face.to_json()
    assert json.loads(json.dumps(doc))["landmarks"][0] == pytest.approx(face.landmarks[0], abs=0.01)


def test_large_off_centre_colour_photo_maps_back_to_original_pixels():
    photo = colour_photo()
    small = detect_faces(photo)
    assert small, "no face in the reference CelebA crop"
    ref = small[0]
    canvas = np.full((300, 420, 3), 90, np.uint8)
    off_x, off_y = 260, 150
    canvas[off_y:off_y + photo.shape[0], off_x:off_x + photo.shape[1]] = photo
    k = 3.0  # 1260 x 900: shrunk for detection, results must come back in these pixels
    big = cv2.resize(canvas, None, fx=k, fy=k, interpolation=cv2.INTER_LINEAR)
    faces = detect_faces(big)
    assert faces
    face = max(faces, key=lambda f: f.score)
    expected = (np.array(ref.box) + [off_x, off_y, off_x, off_y]) * k
    side = expected[2] - expected[0]
    assert np.abs(np.array(face.box) - expected).max() < 0.15 * side
    expected_marks = (ref.landmarks + [off_x, off_y] + 0.5) * k - 0.5
    assert np.abs(face.landmarks - expected_marks).max() < 0.08 * side
    assert_plausible_landmarks(face.landmarks)


def test_blank_image_has_no_face():
    grey = np.full((250, 250, 3), 128, np.uint8)
    faces = detect_faces(grey)
    assert faces == []
    with pytest.raises(NoFaceError, match="no face found in grey.png"):
        pick_face(faces, "grey.png")


def test_haar_finds_lfw_face():
    rgb = lfw_image(LFW_SAMPLES[1])
    faces = detect_faces(rgb, "haar")
    assert faces
    best, _ = pick_face(faces, "lfw")
    assert best.landmarks is None
    assert np.linalg.norm(centre(best.box) - [125, 125]) < 35


def test_unknown_detector_is_a_user_error():
    with pytest.raises(FacecmpError, match="unknown detector"):
        detect_faces(np.zeros((50, 50, 3), np.uint8), "yolo")


def test_pick_face_prefers_confidence_then_size():
    small_sure = Face((0, 0, 10, 10), 0.99, None)
    big_sure = Face((0, 0, 50, 50), 0.99, None)
    unsure = Face((0, 0, 100, 100), 0.8, None)
    face, note = pick_face([unsure, small_sure, big_sure], "x.jpg")
    assert face is big_sure
    assert note.startswith("3 faces found")
    assert pick_face([unsure], "x.jpg") == (unsure, None)


def rotated_template(angle_deg: float, scale: float, shift) -> np.ndarray:
    a = math.radians(angle_deg)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    centred = ARCFACE_TEMPLATE - ARCFACE_TEMPLATE.mean(axis=0)
    return centred @ rot.T * scale + np.asarray(shift, float)


@pytest.mark.parametrize("angle,scale,size", [(25, 2.0, 112), (-40, 0.7, 160), (10, 9.0, 112)])
def test_align_face_puts_landmarks_on_template(angle, scale, size):
    marks = rotated_template(angle, scale, (320, 260))
    matrix = alignment_matrix(marks, size)
    mapped = marks @ matrix[:, :2].T + matrix[:, 2]
    assert np.abs(mapped - ARCFACE_TEMPLATE * size / 112).max() < 2.0

    # The pixels follow the matrix: bright discs at the landmarks land on the template.
    img = np.zeros((600, 700, 3), np.uint8)
    for x, y in marks:
        cv2.circle(img, (round(x), round(y)), max(2, round(2.5 * scale)), (255, 255, 255), -1)
    out = align_face(img, marks, size)
    assert out.shape == (size, size, 3) and out.dtype == np.uint8
    for x, y in ARCFACE_TEMPLATE * size / 112:
        assert out[round(y), round(x)].mean() > 100
    assert out[2, 2].mean() < 10


def test_similarity_transform_recovers_known_transform_and_never_mirrors():
    src = ARCFACE_TEMPLATE
    dst = rotated_template(30, 1.5, (10, 20))
    m = similarity_transform(src, dst)
    assert np.abs(src @ m[:, :2].T + m[:, 2] - dst).max() < 1e-6
    mirrored = dst * [-1, 1]
    assert np.linalg.det(similarity_transform(src, mirrored)[:, :2]) > 0


def test_center_crop_face_replicates_borders():
    img = np.zeros((100, 100, 3), np.uint8)
    img[:, :50] = 200
    crop = center_crop_face(img, (-20, 10, 40, 70), 64, scale=1.5)
    assert crop.shape == (64, 64, 3)
    assert crop[32, 0].mean() == 200  # replicated left edge, not black
    assert crop[32, -1].mean() == 0


def test_load_faces_in_threads_matches_one_at_a_time_and_keeps_errors_in_place(tmp_path):
    from facecmp.preprocess import load_face, load_faces

    paths = []
    for stem in LFW_SAMPLES[:4]:
        lfw_image(stem)  # skips without the data
        paths.append(DATA / "lfw" / stem.rsplit("_", 1)[0] / f"{stem}.jpg")
    junk = tmp_path / "not_an_image.jpg"
    junk.write_text("plain text")
    paths.insert(2, junk)
    from facecmp.meta import ModelMeta

    meta = ModelMeta.from_dict({"task": "identity", "arch": "resnet18", "activation": "relu",
                                "input_size": 64, "color": "gray", "mean": [0.5] * 3, "std": [0.5] * 3,
                                "crop": {"method": "align", "detector": "mtcnn"}})
    threads = cv2.getNumThreads()
    got = list(load_faces(paths, meta))
    assert cv2.getNumThreads() == threads  # OpenCV's own thread count is left as it was
    assert isinstance(got[2], FacecmpError) and "not_an_image.jpg" in str(got[2])
    for path, face in zip(paths[:2] + paths[3:], got[:2] + got[3:]):
        alone = load_face(path, meta)
        assert np.array_equal(face.pixels, alone.pixels)
        assert face.box == alone.box
