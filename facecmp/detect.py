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

# "mtcnn-masked": MTCNN, then, where it finds nothing, a second pass at lower score thresholds
# that finds most faces behind a mask, and some faces that are not there (measured in
# docs/masked-protocol.md); opt-in, so the default never reports a false face.
DETECTORS = ("mtcnn", "haar", "mtcnn-masked")
PERMISSIVE_THRESHOLDS = (0.3, 0.3, 0.3)


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


def detect_faces(rgb: np.ndarray, detector: str = "mtcnn") -> list[Face]:
    """All faces in an RGB image with the chosen detector, most confident first."""
    if detector == "mtcnn":
        return _mtcnn().detect(rgb)
    if detector == "mtcnn-masked":
        return _mtcnn().detect(rgb) or _mtcnn().detect(rgb, PERMISSIVE_THRESHOLDS)
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
