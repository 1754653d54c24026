"""Face detection front end: MTCNN (boxes + five landmarks) or OpenCV Haar (boxes only)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from facecmp.errors import FacecmpError, NoFaceError

if TYPE_CHECKING:
    from facecmp.mtcnn import MTCNN

# "mtcnn-masked": MTCNN, and a second pass for faces behind a mask: P- and R-Net at low score
# thresholds, then an O-Net trained on faces in masks (tools/train_masked_onet.py). Faces
# both passes find keep MTCNN's box and landmarks with the higher score; the rest of the
# second pass's faces are added. Thresholds chosen on the development set (docs/masked-protocol.md).
DETECTORS = ("mtcnn", "haar", "mtcnn-masked")
MASKED_THRESHOLDS = (0.1, 0.1, 0.9)
SAME_FACE_IOU = 0.5


@dataclass(eq=False)  # landmark arrays make field-wise == ambiguous; compare by identity
class Face:
    """One detected face, in the pixel coordinates of the image it was found in."""

    box: tuple[float, float, float, float]  # x1, y1, x2, y2
    score: float
    # 5x2: left eye, right eye, nose, left and right mouth corner; left = as seen in the image
    landmarks: np.ndarray | None = None

    @property
    def area(self) -> float:
        """Box area in square pixels."""
        return max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1])

    def to_json(self) -> dict:
        """Plain lists and floats, ready for json.dumps."""
        marks = None
        if self.landmarks is not None:
            marks = np.asarray(self.landmarks, dtype=float).round(2).tolist()
        return {
            "box": [round(float(v), 2) for v in self.box],
            "score": round(float(self.score), 4),
            "landmarks": marks,
        }


_PER_THREAD = threading.local()  # an OpenCV net or cascade must not run in two threads at once


def _mtcnn() -> MTCNN:
    # Reading the three nets costs a few tens of milliseconds; do it once per thread.
    if not hasattr(_PER_THREAD, "mtcnn"):
        from facecmp.mtcnn import MTCNN

        _PER_THREAD.mtcnn = MTCNN()
    return _PER_THREAD.mtcnn


def _haar() -> cv2.CascadeClassifier:
    if not hasattr(_PER_THREAD, "haar"):
        path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
        cascade = cv2.CascadeClassifier(path)
        if cascade.empty():
            raise FacecmpError(f"cannot load OpenCV's Haar cascade from {path}")
        _PER_THREAD.haar = cascade
    return _PER_THREAD.haar


def _detect_haar(rgb: np.ndarray) -> list[Face]:
    """Haar frontal-face boxes; the score is OpenCV's level weight where it gives one."""
    gray = rgb if rgb.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(rgb[:, :, :3]),
                                                  cv2.COLOR_RGB2GRAY)
    gray = np.ascontiguousarray(gray, dtype=np.uint8)
    side = min(gray.shape[:2])
    found = _haar().detectMultiScale3(
        gray, scaleFactor=1.1, minNeighbors=5, minSize=(max(20, side // 10),) * 2,
        outputRejectLevels=True,
    )
    rects, weights = np.asarray(found[0]).reshape(-1, 4), np.asarray(found[2]).reshape(-1)
    faces = []
    for (x, y, w, h), weight in zip(rects, weights):
        faces.append(Face((float(x), float(y), float(x + w), float(y + h)), float(weight), None))
    return sorted(faces, key=lambda f: -f.score)


def fingerprint(detector: str) -> str:
    """What a detector's results depend on beyond its name (for caches of its crops)."""
    if detector != "mtcnn-masked":
        return detector
    import hashlib

    from facecmp.mtcnn import MASKED_ONET, WEIGHTS_DIR

    try:
        digest = hashlib.sha1((WEIGHTS_DIR / f"mtcnn_{MASKED_ONET}.onnx").read_bytes()).hexdigest()[:12]
    except OSError:
        digest = "missing"
    return f"{detector} {MASKED_THRESHOLDS} {SAME_FACE_IOU} {digest}"


def box_iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Intersection over union of two x1, y1, x2, y2 boxes."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def merge_passes(plain: list[Face], masked: list[Face]) -> list[Face]:
    """The faces of both passes, most confident first: a face both found keeps the plain
    pass's box and landmarks with the higher of its two scores."""
    merged = [Face(f.box, f.score, f.landmarks) for f in plain]
    for face in masked:
        same = [f for f in merged[:len(plain)] if box_iou(f.box, face.box) >= SAME_FACE_IOU]
        if same:
            best = max(same, key=lambda f: box_iou(f.box, face.box))
            best.score = max(best.score, face.score)
        else:
            merged.append(face)
    return sorted(merged, key=lambda f: -f.score)


def detect_faces(rgb: np.ndarray, detector: str = "mtcnn") -> list[Face]:
    """All faces in an RGB image with the chosen detector, most confident first."""
    if detector == "mtcnn":
        return _mtcnn().detect(rgb)
    if detector == "mtcnn-masked":
        return merge_passes(_mtcnn().detect(rgb), _mtcnn().detect(rgb, MASKED_THRESHOLDS, masked=True))
    if detector == "haar":
        return _detect_haar(rgb)
    raise FacecmpError(f"unknown detector {detector!r}; choose one of {', '.join(DETECTORS)}")


def pick_face(faces: list[Face], source: str = "the image") -> tuple[Face, str | None]:
    """The most confident face (then the largest), with a note when there were several."""
    if not faces:
        raise NoFaceError(f"no face found in {source}")
    best = max(faces, key=lambda f: (round(f.score, 4), f.area))
    note = None
    if len(faces) > 1:
        note = f"{len(faces)} faces found in {source}; used the most confident"
    return best, note
