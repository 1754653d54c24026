"""Fine-tune MTCNN's O-Net on faces with synthetic masks: the last stage of the masked pass.

Usage:
    python tools/train_masked_onet.py [--data-root DIR] [--epochs 6] [--seed 0]
        [--work outputs/onet_masked] [--out facecmp/weights/mtcnn_onet_masked.onnx]

Training faces (none of them in LFW View 2, whose folds 1-5 are the test pairs and folds 6-10
the development set for detection): LFW people outside View 2 and outside the identity
model's calibration people (outputs/calib2, where present), and the CelebA crops of
celeba-faces. For each photo MTCNN finds the face on the unmasked original (box and five
landmarks: the targets); a mask is drawn on it (facecmp.masks, a seed of its own); P- and
R-Net at low score thresholds (0.3) propose candidate boxes on the masked copy and on the
unmasked original, and jittered copies of the true box are added. Candidates are labelled by
their overlap with the face as in the MTCNN paper (IoU >= 0.65 face, 0.4-0.65 part of a face,
< 0.3 with every face in the photo not a face); the net starts from the bundled O-Net and
learns face/not-face on faces and non-faces, the box on faces and parts, and the landmarks
(where the mouth is under the mask) on faces and parts. The nets' inputs are cut exactly as
facecmp.mtcnn cuts them at inference.

Writes the ONNX net (read by facecmp.mtcnn, like the bundled nets), and under --work the
samples (samples.npz), the training log (log.csv) and losses.png.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools"))

from convert_mtcnn import build_onnx  # noqa: E402

from facecmp.datasets import data_root  # noqa: E402
from facecmp.errors import FacecmpError, one_line_errors  # noqa: E402
from facecmp.images import load_rgb  # noqa: E402
from facecmp.masks import draw_mask  # noqa: E402
from facecmp.mtcnn import MTCNN, WEIGHTS_DIR, _crops, _integral  # noqa: E402
from facecmp.pairs import read_pairs  # noqa: E402

POS_IOU, PART_IOU, NEG_IOU = 0.65, 0.4, 0.3
JITTERS = 6  # jittered copies of the true box per photo version
KEEP = {1: 4, -1: 3, 0: 8}  # at most this many faces, parts and non-faces per photo version
MASK_SEED = 1000  # masks for training: a seed family the protocol's sets (0-2) do not use
CANDIDATES = (0.3, 0.3)  # P- and R-Net score thresholds of the candidates it learns from
LOSS_WEIGHTS = {"cls": 1.0, "box": 0.5, "marks": 1.0}  # the MTCNN paper's O-Net weights


def training_photos(root: Path, calib_dir: Path | None) -> list[Path]:
    """LFW photos of people outside View 2 (and the calibration people), then CelebA crops."""
    in_view2 = {p.path_a.parent.name for p in read_pairs(root / "lfw-pairs.txt", root / "lfw")}
    in_view2 |= {p.path_b.parent.name for p in read_pairs(root / "lfw-pairs.txt", root / "lfw")}
    held = set()
    for name in ("holdout.txt", "singletons.txt"):
        if calib_dir and (calib_dir / name).is_file():
            held |= set((calib_dir / name).read_text().split())
    lfw = [f for d in sorted((root / "lfw").iterdir()) if d.name not in in_view2 | held
           for f in sorted(d.glob("*.jpg"))]
    celeba = sorted((root / "celeba-faces").glob("*/*.jpg"))
    return lfw + celeba


def _iou(boxes: np.ndarray, box: np.ndarray) -> np.ndarray:
    x1, y1 = np.maximum(boxes[:, 0], box[0]), np.maximum(boxes[:, 1], box[1])
    x2, y2 = np.minimum(boxes[:, 2], box[2]), np.minimum(boxes[:, 3], box[3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + (box[2] - box[0]) * (box[3] - box[1]) - inter, 1e-9)


def _jittered(box: np.ndarray, rng: np.random.Generator, count: int) -> np.ndarray:
    """Square boxes around the face, shifted and scaled as P- and R-Net's candidates are."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    side = max(box[2] - box[0], box[3] - box[1]) * rng.uniform(0.8, 1.25, count)
    cx = cx + side * rng.uniform(-0.2, 0.2, count)
    cy = cy + side * rng.uniform(-0.2, 0.2, count)
    return np.stack([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], axis=1)


def _targets(boxes: np.ndarray, face_box: np.ndarray, marks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """O-Net's regression targets: box edge offsets and landmarks in units of the box size,
    the inverse of facecmp.mtcnn's _bbreg and _stage3 (+1 pixel widths)."""
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    reg = (face_box[None, :] - boxes[:, :4]) / np.stack([w, h, w, h], axis=1)
    mx = (marks[None, :, 0] - boxes[:, :1] + 1) / w[:, None]
    my = (marks[None, :, 1] - boxes[:, 1:2] + 1) / h[:, None]
    return reg.astype(np.float32), np.concatenate([mx, my], axis=1).astype(np.float32)


def photo_samples(mtcnn: MTCNN, rgb: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Labelled 48x48 O-Net inputs from one photo, masked and unmasked; empty without a face."""
    faces = mtcnn.detect(rgb)
    if not faces or max(rgb.shape[:2]) > mtcnn.max_side:
        return {}
    centre = np.array([rgb.shape[1] / 2, rgb.shape[0] / 2])
    face = min(faces, key=lambda f: np.hypot(*(np.asarray(f.box).reshape(2, 2).mean(0) - centre)))
    face_box, marks = np.asarray(face.box, np.float64), face.landmarks.astype(np.float64)
    others = [np.asarray(f.box) for f in faces]
    out: dict[str, list] = {"x": [], "label": [], "reg": [], "marks": []}
    for version in ("masked", "plain"):
        img = draw_mask(rgb, face.landmarks, rng) if version == "masked" else rgb
        img = np.stack([img] * 3, -1) if img.ndim == 2 else img[:, :, :3]
        sat = _integral(np.ascontiguousarray(img))
        cands = mtcnn._stage1(sat, CANDIDATES[0])
        if len(cands):
            cands = mtcnn._stage2(sat, cands, CANDIDATES[1])
        boxes = np.concatenate([cands[:, :4].reshape(-1, 4), _jittered(face_box, rng, JITTERS)])
        iou = _iou(boxes, face_box)
        near_any = np.max([_iou(boxes, b) for b in others], axis=0)
        label = np.full(len(boxes), -2)  # -2: ignored
        label[iou >= POS_IOU] = 1
        label[(iou >= PART_IOU) & (iou < POS_IOU)] = -1  # part: box and landmarks only
        label[near_any < NEG_IOU] = 0
        keep = np.concatenate([rng.permutation(np.flatnonzero(label == v))[:n]
                               for v, n in KEEP.items()])
        boxes, label = boxes[keep], label[keep]
        data, valid = _crops(sat, boxes, 48)
        boxes, label = boxes[valid], label[valid]
        reg, mk = _targets(boxes, face_box, marks)
        out["x"].append((data * 128 + 127.5).round().clip(0, 255).astype(np.uint8))
        out["label"].append(label.astype(np.int8))
        out["reg"].append(reg)
        out["marks"].append(mk)
    return {k: np.concatenate(v) for k, v in out.items()}


def make_samples(photos: list[Path], seed: int) -> dict[str, np.ndarray]:
    """Samples from every photo (the photo's name seeds its mask and jitter), with progress."""
    mtcnn, parts, skipped = MTCNN(), [], 0
    start = time.time()
    for i, path in enumerate(photos, 1):
        digest = int.from_bytes(hashlib.sha256(path.name.encode()).digest()[:8], "little")
        try:
            got = photo_samples(mtcnn, load_rgb(path), np.random.default_rng([MASK_SEED + seed, digest]))
        except FacecmpError:
            got = {}
        if got:
            parts.append(got)
        else:
            skipped += 1
        if i % 500 == 0 or i == len(photos):
            print(f"samples: {i}/{len(photos)} photos, {skipped} without a face, "
                  f"{time.time() - start:.0f} s", file=sys.stderr, flush=True)
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def paddle_onet(paddle):
    """O-Net as a Paddle layer with facenet-pytorch's layer names (so it maps onto the ONNX)."""
    nn = paddle.nn

    class ONet(nn.Layer):
        def __init__(self) -> None:
            super().__init__()
            self.conv1, self.prelu1 = nn.Conv2D(3, 32, 3), nn.PReLU(32)
            self.conv2, self.prelu2 = nn.Conv2D(32, 64, 3), nn.PReLU(64)
            self.conv3, self.prelu3 = nn.Conv2D(64, 64, 3), nn.PReLU(64)
            self.conv4, self.prelu4 = nn.Conv2D(64, 128, 2), nn.PReLU(128)
            self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
            self.dense6_1, self.dense6_2 = nn.Linear(256, 2), nn.Linear(256, 4)
            self.dense6_3 = nn.Linear(256, 10)

        def low(self, x):
            """The first two convolutions: generic edges, kept as the bundled net has them."""
            pool = nn.functional.max_pool2d
            x = pool(self.prelu1(self.conv1(x)), 3, 2, ceil_mode=True)
            return pool(self.prelu2(self.conv2(x)), 3, 2, ceil_mode=True)

        def forward(self, x):
            return self.top(self.low(x))

        def top(self, x):
            pool = nn.functional.max_pool2d
            x = pool(self.prelu3(self.conv3(x)), 2, 2, ceil_mode=True)
            x = self.prelu4(self.conv4(x)).transpose([0, 3, 2, 1]).flatten(1)
            x = self.prelu5(self.dense5(x))
            return self.dense6_1(x), self.dense6_2(x), self.dense6_3(x)

    return ONet()


def onnx_state(path: Path) -> dict[str, np.ndarray]:
    """A net's weights from its ONNX file, in facenet-pytorch's (torch) layout."""
    import onnx
    from onnx import numpy_helper

    return {t.name: numpy_helper.to_array(t).copy() for t in onnx.load(str(path)).graph.initializer}


def load_state(net, state: dict[str, np.ndarray]) -> None:
    """torch layout -> the Paddle layer (Linear weights transposed, PReLU slopes flattened)."""
    own = {}
    for name, param in net.state_dict().items():
        value = state[name.replace("._weight", ".weight")]  # Paddle's PReLU names its slopes _weight
        if name.startswith("dense") and name.endswith("weight"):
            value = value.T
        own[name] = value.reshape(param.shape).astype(np.float32)
    net.set_state_dict(own)


def torch_state(net) -> dict[str, np.ndarray]:
    """The Paddle layer's weights back in torch layout, for convert_mtcnn.build_onnx."""
    state = {}
    for name, param in net.state_dict().items():
        value = param.numpy()
        name = name.replace("._weight", ".weight")
        state[name] = value.T if name.startswith("dense") and name.endswith("weight") else value
    return state


def train(samples: dict[str, np.ndarray], epochs: int, seed: int, work: Path):
    """Fine-tune the bundled O-Net on the samples; the last epoch's net, and the log rows."""
    from facecmp.runtime import import_paddle

    paddle = import_paddle()
    paddle.seed(seed)
    net = paddle_onet(paddle)
    load_state(net, onnx_state(WEIGHTS_DIR / "mtcnn_onet.onnx"))
    for layer in (net.conv1, net.prelu1, net.conv2, net.prelu2):
        for param in layer.parameters():
            param.stop_gradient = True
    net.eval()
    with paddle.no_grad():  # the frozen layers' outputs, once (float16 halves the memory)
        feats = np.concatenate([net.low(paddle.to_tensor(
            (samples["x"][i:i + 1024].astype(np.float32) - 127.5) * 0.0078125)).numpy().astype(np.float16)
            for i in range(0, len(samples["x"]), 1024)])
    rng = np.random.default_rng(seed)
    n = len(samples["label"])
    order = rng.permutation(n)
    n_val = n // 20
    val, tr = order[:n_val], order[n_val:]
    batch, steps = 256, epochs * (len(tr) // 256)
    sched = paddle.optimizer.lr.CosineAnnealingDecay(1e-3, steps)
    trained = [p for p in net.parameters() if not p.stop_gradient]
    opt = paddle.optimizer.Adam(sched, parameters=trained, weight_decay=1e-5)
    rows = []

    def losses(idx):
        label = samples["label"][idx].astype(np.int64)
        logits, reg, marks = net.top(paddle.to_tensor(feats[idx].astype(np.float32)))
        cls_rows = np.flatnonzero(label >= 0)
        box_rows = np.flatnonzero(label != 0)
        out = {}
        out["cls"] = paddle.nn.functional.cross_entropy(
            paddle.gather(logits, paddle.to_tensor(cls_rows)), paddle.to_tensor(label[cls_rows]))
        for key, pred in (("box", reg), ("marks", marks)):
            target = paddle.to_tensor(samples["reg" if key == "box" else key][idx][box_rows])
            out[key] = ((paddle.gather(pred, paddle.to_tensor(box_rows)) - target) ** 2).sum(1).mean()
        prob = paddle.nn.functional.softmax(logits)[:, 1].numpy()
        right = ((prob > 0.5) == (label == 1))[cls_rows]
        return out, right

    for epoch in range(1, epochs + 1):
        start, net_losses = time.time(), []
        net.train()
        perm = rng.permutation(tr)
        for b in range(len(tr) // batch):
            out, _ = losses(perm[b * batch:(b + 1) * batch])
            total = sum(LOSS_WEIGHTS[k] * v for k, v in out.items())
            total.backward()
            opt.step()
            opt.clear_grad()
            sched.step()
            net_losses.append([float(v) for v in out.values()])
        net.eval()
        with paddle.no_grad():
            parts = [losses(val[i:i + 1024]) for i in range(0, len(val), 1024)]
        row = {"epoch": epoch, "seconds": round(time.time() - start, 1)}
        row.update({f"train_{k}": round(float(np.mean([l[i] for l in net_losses])), 5)
                    for i, k in enumerate(LOSS_WEIGHTS)})
        row.update({f"val_{k}": round(float(np.mean([float(p[0][k]) for p in parts])), 5)
                    for k in LOSS_WEIGHTS})
        row["val_face_acc"] = round(float(np.mean(np.concatenate([p[1] for p in parts]))), 4)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    return net, rows


def save_log(rows: list[dict], work: Path) -> None:
    """log.csv and losses.png (train and validation loss per term)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(work / "log.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.5))
    epochs = [r["epoch"] for r in rows]
    for ax, key in zip(axes, LOSS_WEIGHTS):
        ax.plot(epochs, [r[f"train_{key}"] for r in rows], label="train")
        ax.plot(epochs, [r[f"val_{key}"] for r in rows], label="validation")
        ax.set_title(f"{key} loss")
        ax.set_xlabel("epoch")
        ax.legend()
    fig.tight_layout()
    fig.savefig(work / "losses.png", dpi=100)
    plt.close(fig)


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=None)
    parser.add_argument("--calib", type=Path, default=REPO / "outputs" / "calib2",
                        help="folder with holdout.txt/singletons.txt: people to leave out")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=0, help="use only the first N photos")
    parser.add_argument("--work", type=Path, default=REPO / "outputs" / "onet_masked")
    parser.add_argument("--out", type=Path, default=WEIGHTS_DIR / "mtcnn_onet_masked.onnx")
    args = parser.parse_args(argv)
    root = args.data_root or data_root()
    args.work.mkdir(parents=True, exist_ok=True)
    cache = args.work / "samples.npz"
    if cache.is_file():
        samples = dict(np.load(cache))
    else:
        photos = training_photos(root, args.calib)
        if args.limit:
            photos = photos[:args.limit]
        samples = make_samples(photos, args.seed)
        np.savez(cache, **samples)
    counts = {name: int((samples["label"] == v).sum()) for name, v in
              (("faces", 1), ("parts", -1), ("non-faces", 0))}
    print(f"samples: {counts}", file=sys.stderr)
    net, rows = train(samples, args.epochs, args.seed, args.work)
    save_log(rows, args.work)
    import onnx

    onnx.save(build_onnx("onet", torch_state(net)), args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
