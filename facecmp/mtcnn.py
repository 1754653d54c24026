"""MTCNN face detector (P-, R- and O-Net cascade) with five landmarks.

The nets and the detection pipeline follow facenet-pytorch 2.6.0
(facenet_pytorch/models/mtcnn.py and models/utils/detect_face.py) step by step, so the
converted nets (facecmp/weights/mtcnn_*.onnx, see tools/convert_mtcnn.py) behave as they
do there. The nets run in OpenCV's dnn module: they are tiny, and their inputs change
shape with every image (pyramid levels, candidate counts), where OpenCV is 5-50x faster
than a Paddle forward pass. Everything outside the nets runs in numpy.
"""

from __future__ import annotations

import functools
from pathlib import Path

import cv2
import numpy as np

from facecmp.detect import Face
from facecmp.errors import FacecmpError

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
NETS = {"pnet": ("reg", "prob"), "rnet": ("reg", "prob"), "onet": ("reg", "landmarks", "prob")}
# O-Net fine-tuned on faces in synthetic masks (tools/train_masked_onet.py): the last stage
# of the masked pass; same inputs and outputs as "onet".
MASKED_ONET = "onet_masked"
MIN_FACE_SIZE = 20
FACTOR = 0.709
THRESHOLDS = (0.6, 0.7, 0.7)


def _load_net(path: Path) -> cv2.dnn.Net:
    if not path.is_file():
        raise FacecmpError(f"MTCNN net not found at {path}; run tools/convert_mtcnn.py")
    try:
        net = cv2.dnn.readNetFromONNX(str(path))
    except cv2.error as exc:
        raise FacecmpError(f"cannot read the MTCNN net {path}: {str(exc).strip()[:200]}") from None
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    return net


def _integral(img: np.ndarray) -> np.ndarray:
    """Summed-area table with a zero first row and column; integer sums stay exact."""
    sat = np.zeros((img.shape[0] + 1, img.shape[1] + 1, img.shape[2]), np.int64)
    sat[1:, 1:] = img
    # In place: fresh multi-megabyte arrays cost more in page faults than the sums.
    np.cumsum(sat, axis=0, out=sat)
    np.cumsum(sat, axis=1, out=sat)
    return sat


def _cells(start: np.ndarray, length: np.ndarray, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    # torch's interpolate(mode="area"), which facenet-pytorch resizes with, is adaptive
    # average pooling: output i averages inputs floor(i*L/n) .. ceil((i+1)*L/n) - 1.
    i = np.arange(n_out)[None, :]
    lo = start[:, None] + (i * length[:, None]) // n_out
    hi = start[:, None] - ((-(i + 1) * length[:, None]) // n_out)
    return lo, hi


def _area_crops(sat: np.ndarray, boxes: np.ndarray, h_out: int, w_out: int) -> np.ndarray:
    """Area-resize integer boxes (x0, y0, x1, y1, end-exclusive) -> N x 3 x h x w net input."""
    ylo, yhi = _cells(boxes[:, 1], boxes[:, 3] - boxes[:, 1], h_out)
    xlo, xhi = _cells(boxes[:, 0], boxes[:, 2] - boxes[:, 0], w_out)
    if len(boxes) == 1:  # pyramid levels: two whole-axis takes beat 2-D fancy indexing
        rows = sat[yhi[0]] - sat[ylo[0]]
        sums = (rows[:, xhi[0]] - rows[:, xlo[0]])[None]
    else:
        flat, stride = sat.reshape(-1, sat.shape[2]), sat.shape[1]
        y0, y1 = ylo[:, :, None] * stride, yhi[:, :, None] * stride
        x0, x1 = xlo[:, None, :], xhi[:, None, :]
        take = functools.partial(np.take, flat, axis=0)  # much faster than 2-D fancy indexing
        sums = take(y1 + x1) - take(y0 + x1) - take(y1 + x0) + take(y0 + x0)
    mean = sums / ((yhi - ylo)[:, :, None] * (xhi - xlo)[:, None, :])[..., None]
    return ((mean - 127.5) * 0.0078125).astype(np.float32).transpose(0, 3, 1, 2)


def _nms(boxes: np.ndarray, scores: np.ndarray, threshold: float,
         use_min: bool = False) -> np.ndarray:
    # Two flavours, as in facenet-pytorch: torchvision's IoU (no +1) for stages 1-2,
    # its numpy "Min" overlap with +1 pixel areas for the last stage.
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    one = 1.0 if use_min else 0.0
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    area = (x2 - x1 + one) * (y2 - y1 + one)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        iw = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + one)
        ih = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + one)
        inter = iw * ih
        denom = np.minimum(area[i], area[rest]) if use_min else area[i] + area[rest] - inter
        order = rest[inter / np.maximum(denom, 1e-12) <= threshold]
    return np.asarray(keep, dtype=np.int64)


def _generate_boxes(reg: np.ndarray, prob: np.ndarray, scale: float, thresh: float) -> np.ndarray:
    """P-Net map cells over threshold -> rows (x1, y1, x2, y2, score, dx1, dy1, dx2, dy2)."""
    ys, xs = np.nonzero(prob >= thresh)
    cell = np.stack([xs, ys], axis=1).astype(np.float32)
    q1 = np.floor((2 * cell + 1) / scale)
    q2 = np.floor((2 * cell + 12) / scale)
    return np.concatenate([q1, q2, prob[ys, xs, None], reg[:, ys, xs].T], axis=1)


def _rerec(boxes: np.ndarray) -> np.ndarray:
    """Make boxes square around their centre, side = the longer side."""
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    boxes[:, 0] += w * 0.5 - side * 0.5
    boxes[:, 1] += h * 0.5 - side * 0.5
    boxes[:, 2] = boxes[:, 0] + side
    boxes[:, 3] = boxes[:, 1] + side
    return boxes


def _bbreg(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    """Apply R/O-Net box regression (offsets in units of box size, +1 pixel widths)."""
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    boxes[:, :4] += reg[:, :4] * np.stack([w, h, w, h], axis=1)
    return boxes


def _crops(sat: np.ndarray, boxes: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Crop each box, clipped to the image as the reference does, to size x size."""
    b = np.trunc(boxes[:, :4]).astype(np.int64)
    x, y = np.maximum(b[:, 0], 1) - 1, np.maximum(b[:, 1], 1) - 1
    ex, ey = np.minimum(b[:, 2], sat.shape[1] - 1), np.minimum(b[:, 3], sat.shape[0] - 1)
    valid = (ey > y) & (ex > x)
    rects = np.stack([x, y, ex, ey], axis=1)[valid]
    return np.ascontiguousarray(_area_crops(sat, rects, size, size)), valid


class MTCNN:
    """The three-stage MTCNN cascade: faces with scores and five landmarks."""

    def __init__(self, weights_dir: Path | None = None, max_side: int = 640) -> None:
        """Load mtcnn_{pnet,rnet,onet}.onnx from `weights_dir` (default: the bundled ones)."""
        self._folder = Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR
        self._nets = {kind: _load_net(self._folder / f"mtcnn_{kind}.onnx") for kind in NETS}
        self.max_side = max_side

    def detect(self, rgb: np.ndarray, thresholds: tuple[float, float, float] = THRESHOLDS,
               masked: bool = False) -> list[Face]:
        """All faces in an HxWx3 uint8 RGB image, most confident first; `thresholds` are the
        P-, R- and O-Net score cut-offs (lower finds more, and more false faces). masked: the
        last stage is the O-Net trained on faces in masks."""
        img, scale = self._prepare(rgb)
        sat = _integral(img)
        points = np.zeros((0, 5, 2), np.float32)
        boxes = self._stage1(sat, thresholds[0])
        if len(boxes):
            boxes = self._stage2(sat, boxes, thresholds[1])
        if len(boxes):
            boxes, points = self._stage3(sat, boxes, thresholds[2], MASKED_ONET if masked else "onet")
        faces = []
        for box, pts in zip(boxes, points):
            # Box edges scale directly; landmarks are pixel centres, so map them as such.
            edges = box[:4] / np.tile(scale, 2)
            marks = (pts + 0.5) / scale - 0.5
            faces.append(Face(tuple(float(v) for v in edges), float(box[4]),
                              marks.astype(np.float32)))
        return sorted(faces, key=lambda f: -f.score)

    def _prepare(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """RGB image shrunk to at most max_side, and its (x, y) scale factors."""
        rgb = np.asarray(rgb)
        if rgb.ndim == 2:
            rgb = np.stack([rgb] * 3, axis=-1)
        if rgb.ndim != 3 or rgb.shape[2] not in (3, 4):
            raise FacecmpError(f"expected an HxWx3 RGB image, got shape {rgb.shape}")
        rgb = rgb[:, :, :3]
        if rgb.dtype != np.uint8:
            rgb = np.clip(rgb, 0, 255).astype(np.uint8)
        height, width = rgb.shape[:2]
        scale = np.ones(2, np.float32)
        if self.max_side and max(height, width) > self.max_side:
            factor = self.max_side / max(height, width)
            size = (max(1, round(width * factor)), max(1, round(height * factor)))
            rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
            scale = np.array([size[0] / width, size[1] / height], np.float32)
        return rgb, scale

    def _run(self, kind: str, batch: np.ndarray) -> list[np.ndarray]:
        """One net's outputs, in the order of NETS[kind] (the masked O-Net's are O-Net's)."""
        if kind not in self._nets:  # the masked O-Net loads on first use
            self._nets[kind] = _load_net(self._folder / f"mtcnn_{kind}.onnx")
        net = self._nets[kind]
        net.setInput(np.ascontiguousarray(batch, dtype=np.float32))
        return list(net.forward(list(NETS["onet" if kind == MASKED_ONET else kind])))

    def _stage1(self, sat: np.ndarray, threshold: float) -> np.ndarray:
        """P-Net over the image pyramid -> square candidate boxes (x1, y1, x2, y2, score)."""
        h, w = sat.shape[0] - 1, sat.shape[1] - 1
        whole = np.array([[0, 0, w, h]])
        scale, smallest = 12.0 / MIN_FACE_SIZE, min(h, w) * 12.0 / MIN_FACE_SIZE
        found = [np.zeros((0, 9), np.float32)]
        while smallest >= 12:
            data = _area_crops(sat, whole, int(h * scale + 1), int(w * scale + 1))
            reg, prob = self._run("pnet", data)
            boxes = _generate_boxes(reg[0], prob[0, 1], scale, threshold)
            found.append(boxes[_nms(boxes[:, :4], boxes[:, 4], 0.5)])
            scale, smallest = scale * FACTOR, smallest * FACTOR
        boxes = np.concatenate(found)
        boxes = boxes[_nms(boxes[:, :4], boxes[:, 4], 0.7)]
        w_, h_ = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        shifted = boxes[:, :4] + boxes[:, 5:9] * np.stack([w_, h_, w_, h_], axis=1)
        return _rerec(np.concatenate([shifted, boxes[:, 4:5]], axis=1))

    def _stage2(self, sat: np.ndarray, boxes: np.ndarray, threshold: float) -> np.ndarray:
        """R-Net refinement of the candidates."""
        data, valid = _crops(sat, boxes, 24)
        boxes = boxes[valid]
        if not len(boxes):
            return boxes
        reg, prob = self._run("rnet", data)
        keep = prob[:, 1] > threshold
        boxes = np.concatenate([boxes[keep, :4], prob[keep, 1:2]], axis=1)
        pick = _nms(boxes[:, :4], boxes[:, 4], 0.7)
        return _rerec(_bbreg(boxes[pick], reg[keep][pick]))

    def _stage3(self, sat: np.ndarray, boxes: np.ndarray, threshold: float,
                net: str = "onet") -> tuple[np.ndarray, np.ndarray]:
        """O-Net: final boxes, scores and landmarks (N x 5 x 2, x then y)."""
        data, valid = _crops(sat, boxes, 48)
        boxes = boxes[valid]
        if not len(boxes):
            return boxes, np.zeros((0, 5, 2), np.float32)
        reg, marks, prob = self._run(net, data)
        keep = prob[:, 1] > threshold
        boxes = np.concatenate([boxes[keep, :4], prob[keep, 1:2]], axis=1)
        reg, marks = reg[keep], marks[keep]
        w = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
        h = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
        points = np.stack([w * marks[:, :5] + boxes[:, :1] - 1,
                           h * marks[:, 5:] + boxes[:, 1:2] - 1], axis=2)
        boxes = _bbreg(boxes, reg)
        pick = _nms(boxes[:, :4], boxes[:, 4], 0.7, use_min=True)
        return boxes[pick], points[pick]
