"""A model directory exported for use without facecmp: a Paddle inference model or an ONNX
graph, with a preprocessing.json that says how an image becomes its input.

Both formats hold the backbone (image -> embedding) and, for classifiers (mask,
expression), the head with a softmax (class probabilities). The mirror average facecmp
applies at test time (embed_flip for embeddings, predict_flip for classifiers) is built
into the graph, so a caller feeds each crop once and never flips it again.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facecmp.errors import FacecmpError, ModelError
from facecmp.meta import ModelMeta
from facecmp.modeldir import BACKBONE, open_model

FORMATS = ("paddle-inference", "onnx")
PREPROCESSING = "preprocessing.json"
CARD = "MODEL_CARD.md"
# every file an export may write: --force replaces these and leaves anything else alone
EXPORT_FILES = ("model.onnx", "model.json", "model.pdiparams", PREPROCESSING, CARD)
LANDMARKS = ["eye on the image's left", "eye on the image's right", "nose tip",
             "mouth corner on the image's left", "mouth corner on the image's right"]


@dataclass
class Exported:
    """What an export wrote."""

    out: Path
    format: str
    model_file: Path
    files: list[Path]
    flip_in_graph: bool


def is_classifier(meta: ModelMeta) -> bool:
    """Whether the export holds a head giving class probabilities."""
    return bool(meta.classes)


def _crop(meta: ModelMeta) -> dict[str, Any]:
    """The crop convention, spelt out for a reader without facecmp."""
    from facecmp.align import ARCFACE_TEMPLATE, template_points

    c, size = meta.crop, meta.input_size
    resize = f"resized to {size}x{size} (cv2.INTER_AREA when shrinking, else INTER_LINEAR)"
    if c.method == "align":
        return {"method": "align", "detector": c.detector, "landmarks": LANDMARKS,
                "template": [[round(v, 4) for v in p] for p in template_points(size).tolist()],
                "template_112": ARCFACE_TEMPLATE.tolist(),
                "how": f"the detector's five landmarks are mapped onto `template` (pixels of the "
                       f"{size}x{size} crop: the ArcFace 112x112 template times {size}/112) by the "
                       "least-squares similarity transform (rotation, uniform scale, shift; Umeyama, "
                       "never a reflection), warped with cv2.warpAffine, INTER_LINEAR, "
                       "BORDER_REPLICATE (facecmp.align.align_face)"}
    if c.method == "box":
        return {"method": "box", "detector": c.detector, "scale": c.scale,
                "how": f"the detector's box made square on its longer side, enlarged {c.scale}x about "
                       f"its centre, the border replicated where it leaves the image, {resize}"}
    if c.method == "center":
        return {"method": "center", "fraction": c.fraction,
                "how": f"the central square of side {c.fraction} x the shorter image side, {resize}"}
    return {"method": "none", "how": f"the image is the face crop already; {resize}"}


def _card(meta: ModelMeta, model_dir: Path) -> dict[str, Any]:
    """The model card facts a user of the export needs, from meta.json."""
    data = meta.training_data or {}
    card = {"task": meta.task, "arch": meta.arch, "activation": meta.activation,
            "embedding_size": meta.embedding_size, "source": str(model_dir),
            "source_weights_sha1": hashlib.sha1((model_dir / BACKBONE).read_bytes()).hexdigest(),
            "source_weights_dtype": meta.weights_dtype, "exported_weights_dtype": "float32",
            "epochs_trained": meta.epochs_trained,
            "training_data": {k: data[k] for k in ("roots", "images", "classes") if k in data}}
    if is_classifier(meta):
        card.update(head=meta.head, classes=meta.classes)
    else:
        card["training_head"] = f"{meta.head} (training only; not part of the export)"
    if meta.masked_model:
        other = os.path.normpath(model_dir / meta.masked_model)
        card["masked_model"] = (f"facecmp compares a pair in which its mask head sees a mask with "
                                f"another model, {other}, at that model's thresholds; this export "
                                "holds only this one (export that one too to do the same)")
    return card


def preprocessing(meta: ModelMeta, fmt: str, model_file: str, flip: bool, model_dir: Path) -> dict[str, Any]:
    """The preprocessing.json mapping: input, outputs, how to make the input, how to compare."""
    from facecmp import __version__
    from facecmp.onnx_resnet import EMBEDDING, INPUT, OPSET, PROBABILITIES

    size = meta.input_size
    # paddle.jit.save names the input after its InputSpec and numbers the outputs in order
    names = [EMBEDDING, PROBABILITIES] if fmt == "onnx" else ["fetch_name_0", "fetch_name_1"]
    outputs = [{"name": names[0], "shape": ["N", meta.embedding_size],
                "meaning": "the raw (not L2-normalised) embedding"}]
    if is_classifier(meta):
        outputs.append({"name": names[1], "shape": ["N", meta.num_classes],
                        "meaning": "softmax class probabilities, in the order of `classes`",
                        "classes": meta.classes})
    gray = "converted with cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), then that channel repeated three times"
    spec: dict[str, Any] = {
        "format": fmt, "model_file": model_file, "exported_by": f"facecmp {__version__}",
        "input": {"name": INPUT if fmt == "onnx" else "x", "shape": ["N", 3, size, size], "dtype": "float32", "layout": "NCHW"},
        "outputs": outputs,
        "input_size": size, "color": meta.color, "channel_order": "RGB",
        "color_conversion": gray if meta.color == "gray" else "none: 8-bit RGB",
        "scale": 1 / 255, "mean": meta.mean, "std": meta.std,
        "normalization": "x = (pixel / 255 - mean[c]) / std[c] per channel c",
        "layout": "NCHW", "detector": meta.crop.detector, "crop": _crop(meta),
        "embed_flip": meta.embed_flip,
        "flip_in_graph": flip,
        "flip": ("built into the graph: it runs each image and its left-right mirror and averages "
                 "the outputs; feed each crop once, unflipped" if flip else
                 "not applied: the graph runs each image as given"),
        "metric": meta.metric, "thresholds": meta.thresholds,
        "distance": {"cosine": "1 - cos(a, b) of the two embeddings; the same person when <= the threshold",
                     "euclid": "||a - b|| of the raw embeddings; the same person when <= the threshold"},
        "calibration": meta.calibration,
        "model": _card(meta, model_dir),
    }
    if fmt == "onnx":
        spec["opset"] = OPSET
    if is_classifier(meta):
        spec["test_time"] = {"predict_flip": meta.predict_flip, "predict_zoom": meta.predict_zoom,
                             "predict_crops": meta.predict_crops,
                             "how": "facecmp averages the probabilities of the central square of side "
                                    "predict_zoom x the crop (and, with 5 crops, of the four corner "
                                    "squares), each resized back to the input size; the caller does "
                                    "this zoom, the graph does the flip when flip_in_graph"}
    return spec


def _write_onnx(net: Any, meta: ModelMeta, stage: Path, flip: bool) -> Path:
    import onnx

    from facecmp.onnx_resnet import build_model

    model = build_model(net.backbone, net.head, meta.input_size, flip, f"facecmp_{meta.task}")
    path = stage / "model.onnx"
    onnx.save(model, str(path))
    return path


def _exportable(net: Any, meta: ModelMeta, flip: bool) -> Any:
    """The backbone (+ softmax head), with the flip average, as one Paddle layer."""
    from facecmp.runtime import import_paddle

    paddle = import_paddle()
    widths = [meta.embedding_size] + ([meta.num_classes] if net.head is not None else [])

    class Exportable(paddle.nn.Layer):
        def __init__(self) -> None:
            super().__init__()
            self.backbone, self.head = net.backbone, net.head

        def forward(self, x):  # noqa: D102
            if flip:
                x = paddle.concat([x, paddle.flip(x, [3])], axis=0)
            emb = self.backbone(x)
            outs = [emb] if self.head is None else [emb, paddle.nn.functional.softmax(self.head(emb), -1)]
            if flip:
                outs = [paddle.mean(paddle.reshape(o, [2, -1, w]), axis=0) for o, w in zip(outs, widths)]
            return outs[0] if len(outs) == 1 else tuple(outs)

    return Exportable()


def _write_paddle(net: Any, meta: ModelMeta, stage: Path, flip: bool) -> Path:
    from types import SimpleNamespace

    from facecmp.inference import _export_to

    # the same export facecmp's fast path uses (batch norms folded, LeakyReLU as max)
    _export_to(SimpleNamespace(backbone=_exportable(net, meta, flip), head=None), meta,
               stage / "paddle", with_head=False)
    for suffix in (".json", ".pdiparams"):
        os.replace(stage / "paddle" / f"backbone{suffix}", stage / f"model{suffix}")
    shutil.rmtree(stage / "paddle")
    return stage / "model.json"


WRITERS = {"paddle-inference": _write_paddle, "onnx": _write_onnx}


def check_out(out: Path, model_dir: Path, force: bool) -> None:
    """Refuse an --out that is a file, the model itself, or a non-empty folder without force."""
    if out.exists() and not out.is_dir():
        raise FacecmpError(f"--out {out} exists and is not a directory")
    if out.exists() and out.resolve() == model_dir.resolve():
        raise FacecmpError(f"--out {out} is the model directory; choose another")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise FacecmpError(f"--out {out} exists and is not empty; pass --force to replace an export there")


def export_model(model_dir: str | Path, fmt: str, out: str | Path, force: bool = False,
                 flip: bool | None = None) -> Exported:
    """Export model_dir as `fmt` (paddle-inference or onnx) into out, with preprocessing.json."""
    import json

    if fmt not in FORMATS:
        raise FacecmpError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    model_dir, out = Path(model_dir), Path(out)
    meta = open_model(model_dir)
    check_out(out, model_dir, force)
    if fmt == "onnx" and meta.arch != "resnet18":
        raise ModelError(f"onnx export supports resnet18 backbones, not {meta.arch}; use --format paddle-inference")
    if fmt == "onnx":
        try:
            import onnx  # noqa: F401
        except ImportError:
            raise FacecmpError("onnx export needs the onnx package: pip install \"facecmp[export]\"") from None
    if flip is None:
        flip = meta.predict_flip if is_classifier(meta) else meta.embed_flip
    from facecmp.modeldir import load_net

    net, meta = load_net(model_dir, with_head=is_classifier(meta))
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=".export-", dir=out.parent))
    except OSError as exc:
        raise FacecmpError(f"cannot write to {out.parent} ({exc.strerror or exc})") from None
    try:
        model_file = WRITERS[fmt](net, meta, stage, flip)
        spec = preprocessing(meta, fmt, model_file.name, flip, model_dir)
        (stage / PREPROCESSING).write_text(json.dumps(spec, indent=2) + "\n")
        if (model_dir / CARD).is_file():
            shutil.copyfile(model_dir / CARD, stage / CARD)
        names = sorted(p.name for p in stage.iterdir())
        if not out.exists():
            stage.chmod(0o755)  # mkdtemp makes it private; the export is as readable as the model
            os.replace(stage, out)
        else:  # --force: drop a previous export's files, keep anything else
            for name in EXPORT_FILES:
                (out / name).unlink(missing_ok=True)
            for name in names:
                os.replace(stage / name, out / name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return Exported(out, fmt, out / model_file.name, [out / n for n in names], flip)
