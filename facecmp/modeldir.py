"""A model directory: weights plus meta.json, which holds everything inference needs."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from facecmp.errors import ModelError
from facecmp.runtime import import_paddle

META = "meta.json"
BACKBONE = "backbone.pdparams"
HEAD = "head.pdparams"
REQUIRED_META = ("task", "arch", "activation", "input_size", "color", "crop", "mean", "std",
                 "embedding_size")


def read_meta(model_dir: str | Path) -> dict[str, Any]:
    """Read and check a model directory's meta.json; one-line errors for bad directories."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelError(f"model directory {model_dir} does not exist")
    path = model_dir / META
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelError(f"{model_dir} is not a facecmp model (no {META})") from None
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path}: unreadable ({exc})") from None
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise ModelError(f"{path}: missing keys {', '.join(missing)}")
    if not (model_dir / BACKBONE).is_file():
        raise ModelError(f"{model_dir} has no {BACKBONE}")
    return meta


def write_meta(model_dir: str | Path, meta: dict[str, Any]) -> None:
    """Write meta.json atomically, so an interrupted write never leaves a broken model."""
    path = Path(model_dir) / META
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(meta, indent=2) + "\n")
    os.replace(tmp, path)


def update_meta(model_dir: str | Path, **changes: Any) -> dict[str, Any]:
    """Change some meta.json fields in place (e.g. a calibrated threshold)."""
    meta = read_meta(model_dir)
    meta.update(changes)
    write_meta(model_dir, meta)
    return meta


def resolve_threshold(meta: dict[str, Any], metric: str | None, threshold: float | None) -> tuple[str, float]:
    """The metric and threshold to use: flags first, else the model's calibrated ones."""
    metric = metric or meta.get("metric") or "euclid"
    if threshold is not None:
        return metric, float(threshold)
    calibrated = (meta.get("thresholds") or {}).get(metric)
    if calibrated is None and metric == meta.get("metric"):
        calibrated = meta.get("threshold")
    if calibrated is None:
        raise ModelError(f"the model has no calibrated {metric} threshold; run "
                           "`facecmp threshold-sweep --save-threshold` or pass --threshold")
    return metric, float(calibrated)


WEIGHT_DTYPES = ("float32", "float16", "int8", "int4")


def _store(state: dict, dtype: str) -> dict:
    """A state dict as saved in a given weights dtype (int8/int4: see facecmp.quantize)."""
    from facecmp import quantize

    state = {k: v.numpy() for k, v in state.items()}
    if dtype.startswith("int"):
        return quantize.pack_state(state, bits=int(dtype[3:]))
    return {k: (v.astype(dtype) if v.dtype.kind == "f" else v) for k, v in state.items()}


def save_model(model_dir: str | Path, net, meta: dict[str, Any], with_head: bool,
               dtype: str = "float32") -> None:
    """Save a FaceNet's backbone (and head) weights and meta.json into model_dir.

    dtype is one of WEIGHT_DTYPES; weights are always float32 again once loaded.
    """
    paddle = import_paddle()

    if dtype not in WEIGHT_DTYPES:
        raise ModelError(f"weights dtype must be one of {', '.join(WEIGHT_DTYPES)}, not {dtype}")
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    paddle.save(_store(net.backbone.state_dict(), dtype), str(model_dir / BACKBONE))
    if with_head:
        paddle.save(_store(net.head.state_dict(), dtype), str(model_dir / HEAD))
    write_meta(model_dir, {**meta, "weights_dtype": dtype})


def _read_state(path: Path) -> dict:
    """A weights file as float32 arrays; one-line error for a corrupt file."""
    paddle = import_paddle()

    from facecmp import quantize

    try:
        return quantize.unpack_state(paddle.load(str(path), return_numpy=True))
    except Exception as exc:  # paddle raises many types for a corrupt file
        raise ModelError(f"{path}: cannot load weights ({type(exc).__name__})") from None


def _load_state(layer, path: Path) -> None:
    state = _read_state(path)
    expected = layer.state_dict()
    if set(state) != set(expected) or any(list(state[k].shape) != list(expected[k].shape)
                                          for k in expected):
        raise ModelError(f"{path}: weights do not match the architecture in {META}")
    layer.set_state_dict(state)


def init_backbone(backbone, model_dir: str | Path) -> int:
    """Start a backbone from another model's weights (transfer); returns tensors loaded.

    Tensors are matched by name and shape, so a ReLU model can start a PReLU one (the PReLU
    slopes keep their defaults); a different architecture is an error.
    """
    meta = read_meta(model_dir)
    if meta["arch"] != backbone.arch:
        raise ModelError(f"--init {model_dir}: its arch is {meta['arch']}, this run's is {backbone.arch}")
    own = backbone.state_dict()
    matched = {k: v for k, v in _read_state(Path(model_dir) / BACKBONE).items()
               if k in own and list(v.shape) == list(own[k].shape)}
    if not matched:
        raise ModelError(f"--init {model_dir}: no weights match this backbone")
    backbone.set_state_dict(matched)
    return len(matched)


def init_head(head, model_dir: str | Path, meta: dict[str, Any]) -> bool:
    """Start a classifier head from another model's, when both are the same head over the
    same classes in the same order (a warm restart); returns whether it was loaded."""
    init = read_meta(model_dir)
    path = Path(model_dir) / HEAD
    same = (init.get("classes") == meta.get("classes") and init.get("head") == meta.get("head")
            and init.get("task") == meta.get("task"))
    if not (same and meta.get("classes") and path.is_file()):
        return False
    _load_state(head, path)
    return True


def load_net(model_dir: str | Path, with_head: bool = False):
    """Rebuild the network from a model directory, in eval mode; returns (net, meta)."""
    from facecmp import models

    meta = read_meta(model_dir)
    classes = int(meta.get("num_classes") or 1)
    head = models.build_head(meta.get("head", "linear"), classes) if with_head else None
    net = models.FaceNet(models.Backbone(meta["arch"], meta["activation"]), head, 0.0)
    _load_state(net.backbone, Path(model_dir) / BACKBONE)
    if with_head:
        if not (Path(model_dir) / HEAD).is_file():
            raise ModelError(f"{model_dir} has no {HEAD} (is it an identity model?)")
        _load_state(net.head, Path(model_dir) / HEAD)
    net.eval()
    return net, meta
