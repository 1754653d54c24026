"""Face crops for recognition: five-point similarity alignment, or a square box crop."""

from __future__ import annotations

import math

import cv2
import numpy as np

from facecmp.errors import FacecmpError

# ArcFace (insightface) 112x112 template: left eye, right eye, nose, left and right mouth
# corner, in the order MTCNN gives its landmarks.
ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)


def template_points(size: int) -> np.ndarray:
    """The five-point template scaled to a size x size crop."""
    return ARCFACE_TEMPLATE * (size / 112.0)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares rotation + uniform scale + shift taking src points to dst (Umeyama), 2x3."""
    src = np.asarray(src, dtype=np.float64).reshape(-1, 2)
    dst = np.asarray(dst, dtype=np.float64).reshape(-1, 2)
    if src.shape != dst.shape or len(src) < 2:
        raise FacecmpError("similarity_transform needs two equal-length sets of >= 2 points")
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    src_var = (src_c ** 2).sum() / len(src)
    if src_var <= 1e-12:
        raise FacecmpError("landmarks are all at one point")
    u, s, vt = np.linalg.svd(dst_c.T @ src_c / len(src))
    # A reflection would fit better for mirrored points; a face crop must never flip.
    d = np.array([1.0, -1.0 if np.linalg.det(u) * np.linalg.det(vt) < 0 else 1.0])
    rotation = u @ np.diag(d) @ vt
    scale = float((s * d).sum() / src_var)
    shift = dst_mean - scale * rotation @ src_mean
    return np.hstack([scale * rotation, shift[:, None]])


def alignment_matrix(landmarks: np.ndarray, size: int) -> np.ndarray:
    """The 2x3 matrix align_face warps with: landmarks -> template for a size x size crop."""
    marks = np.asarray(landmarks, dtype=np.float64)
    if marks.shape != (5, 2) or not np.all(np.isfinite(marks)):
        raise FacecmpError(f"expected 5x2 finite landmarks, got shape {marks.shape}")
    return similarity_transform(marks, template_points(size))


def align_face(rgb: np.ndarray, landmarks: np.ndarray, size: int) -> np.ndarray:
    """Warp the face so its five landmarks sit on the ArcFace template; size x size x 3 uint8."""
    matrix = alignment_matrix(landmarks, size)
    image = np.ascontiguousarray(rgb)
    # Bilinear warping aliases when shrinking a lot (a big face in a large photo);
    # shrink with area averaging first so the warp itself scales by about 1/2 at most.
    scale = math.sqrt(abs(np.linalg.det(matrix[:, :2])))
    if scale < 0.5:
        factor = 2.0 * scale
        small = (max(1, round(image.shape[1] * factor)), max(1, round(image.shape[0] * factor)))
        fx, fy = small[0] / image.shape[1], small[1] / image.shape[0]
        image = cv2.resize(image, small, interpolation=cv2.INTER_AREA)
        # Same warp in the shrunken image's pixel-centre coordinates.
        to_orig = np.array([[1 / fx, 0, 0.5 / fx - 0.5], [0, 1 / fy, 0.5 / fy - 0.5], [0, 0, 1]])
        matrix = matrix @ to_orig
    out = cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)
    return np.ascontiguousarray(out, dtype=np.uint8)


def center_crop_face(rgb: np.ndarray, box: tuple[float, float, float, float], size: int,
                     scale: float = 1.0) -> np.ndarray:
    """Square crop around a detection box, enlarged by scale, resized to size x size x 3 uint8."""
    x1, y1, x2, y2 = (float(v) for v in box)
    side = max(x2 - x1, y2 - y1) * scale
    if not side > 0:
        raise FacecmpError(f"empty face box {box}")
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    left, top = int(round(cx - side / 2)), int(round(cy - side / 2))
    n = max(1, int(round(side)))
    h, w = rgb.shape[:2]
    # Replicate the border where the square runs off the image, as align_face does.
    pad = (max(0, -top), max(0, top + n - h), max(0, -left), max(0, left + n - w))
    image = np.ascontiguousarray(rgb)
    if any(pad):
        image = cv2.copyMakeBorder(image, *pad, cv2.BORDER_REPLICATE)
    crop = image[top + pad[0]: top + pad[0] + n, left + pad[2]: left + pad[2] + n]
    interp = cv2.INTER_AREA if n > size else cv2.INTER_LINEAR
    out = cv2.resize(np.ascontiguousarray(crop), (size, size), interpolation=interp)
    return np.ascontiguousarray(out, dtype=np.uint8)
