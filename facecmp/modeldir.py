"""A model directory: weights plus meta.json, which holds everything inference needs."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any
from facecmp.errors import ModelError
from facecmp.meta import META, WEIGHT_DTYPES, ModelMeta, read_meta, write_meta
from facecmp.runtime import import_paddle

BACKBONE = "backbone.pdparams"
HEAD = "head.pdparams"


def open_model(model_dir: str | Path) -> ModelMeta:
    """The metadata of a usable model directory: its meta.json, checked, and its weights there."""
    meta = read_meta(model_dir)
    if not (Path(model_dir) / BACKBONE).is_file():
        raise ModelError(f"{model_dir} has no {BACKBONE}")
    return meta


def _store(state: dict, dtype: str) -> dict:
    """A state dict as saved in a given weights dtype (int8/int4: see facecmp.quantize)."""
    from facecmp import quantize

    state = {k: v.numpy() for k, v in state.items()}
    if dtype.startswith("int"):
        return quantize.pack_state(state, bits=int(dtype[3:]))
    return {k: (v.astype(dtype) if v.dtype.kind == "f" else v) for k, v in state.items()}


def save_model(model_dir: str | Path, net, meta: ModelMeta, with_head: bool,
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
    write_meta(model_dir, dataclasses.replace(meta, weights_dtype=dtype))


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
    meta = open_model(model_dir)
    if meta.arch != backbone.arch:
        raise ModelError(f"--init {model_dir}: its arch is {meta.arch}, this run's is {backbone.arch}")
    own = backbone.state_dict()
    matched = {k: v for k, v in _read_state(Path(model_dir) / BACKBONE).items()
               if k in own and list(v.shape) == list(own[k].shape)}
    if not matched:
        raise ModelError(f"--init {model_dir}: no weights match this backbone")
    backbone.set_state_dict(matched)
    return len(matched)


def init_head(head, model_dir: str | Path, meta: ModelMeta) -> bool:
    """Start a classifier head from another model's, when both are the same head over the
    same classes in the same order (a warm restart); returns whether it was loaded."""
    init = open_model(model_dir)
    path = Path(model_dir) / HEAD
    same = (init.classes, init.head, init.task) == (meta.classes, meta.head, meta.task)
    if not (same and meta.classes and path.is_file()):
        return False
    _load_state(head, path)
    return True


def load_net(model_dir: str | Path, with_head: bool = False) -> tuple[Any, ModelMeta]:
    """Rebuild the network from a model directory, in eval mode; returns (net, meta)."""
    from facecmp import models

    meta = open_model(model_dir)
    head = models.build_head(meta.head, meta.num_classes) if with_head else None
    net = models.FaceNet(models.Backbone(meta.arch, meta.activation), head, 0.0)
    _load_state(net.backbone, Path(model_dir) / BACKBONE)
    if with_head:
        if not (Path(model_dir) / HEAD).is_file():
            raise ModelError(f"{model_dir} has no {HEAD} (is it an identity model?)")
        _load_state(net.head, Path(model_dir) / HEAD)
    net.eval()
    return net, meta
