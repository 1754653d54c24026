"""The one configuration schema: dataclass defaults, a YAML per task, overrides on top.

A user YAML may name a `base:` file (relative to its own folder; bases may have bases):
the chain is applied base first, nested mappings merged key by key, lists replaced.
Unknown keys are an error so that a typo never silently trains the wrong thing.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from facecmp.detect import DETECTORS
from facecmp.device import AMP_CHOICES, check_device
from facecmp.errors import FacecmpError

TASKS = ("identity", "mask", "expression")
TASK_CONFIG_DIR = Path(__file__).parent / "configs"


@dataclass
class CropConfig:
    """How a face crop is cut from an image: the convention recorded in meta.json."""

    method: str = "center"  # none | center | align | box
    fraction: float = 1.0  # center: crop side as a fraction of the image's shorter side
    detector: str = "mtcnn"  # align/box: the face detector
    scale: float = 1.0  # box: the detector's box is squared and enlarged by this much


@dataclass
class AugmentConfig:
    """Training-time augmentation; never applied at inference."""

    hflip: bool = True
    shift: float = 0.0  # max translation as a fraction of the input size
    scale: float = 0.0  # max relative zoom in or out
    rotate: float = 0.0  # max rotation in degrees
    brightness: float = 0.0  # max relative brightness/contrast change
    erase: float = 0.0  # probability of erasing a random rectangle
    crop_area: float = 0.0  # random resized crop keeping this much area at least (0: off)
    gamma: float = 0.0  # gamma drawn log-uniformly from [1/(1+g), 1+g]
    noise: float = 0.0  # max standard deviation of Gaussian pixel noise, as a fraction of 255
    mask: float = 0.0  # probability of a synthetic face mask (facecmp.masks); align crops only
    gray: float = 0.0  # probability of turning a colour crop gray (replicated to three channels)


@dataclass
class DataConfig:
    """Input geometry, colour, normalisation and how the training set is split."""

    input_size: int = 64
    color: str = "rgb"  # rgb | gray (gray is replicated to three channels)
    mean: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    std: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    crop: CropConfig = field(default_factory=CropConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    layout: str = "identities"  # identities: root/<class>/*; splits: root/<split>/<class>/*
    splits: list[str] = field(default_factory=lambda: ["train", "validation", "test"])
    val_into_train: float = 0.0  # splits layout: this fraction of each class's validation images trains too (1: all)
    min_images: int = 2
    split: str = "image"  # image: hold out images of every class; identity: hold out classes
    val_fraction: float = 0.1
    seed: int = 0


@dataclass
class ModelConfig:
    """Backbone and head."""

    arch: str = "resnet18"
    activation: str = "relu"  # relu | leaky_relu | prelu
    head: str = "linear"  # linear | arcface | cosface
    margin: float = 0.3
    scale: float = 32.0
    margin_warmup_epochs: int = 0
    dropout: float = 0.0
    init: str | None = None  # model directory whose backbone weights start training


@dataclass
class TrainConfig:
    """Optimiser, schedule and stopping."""

    epochs: int = 10
    batch_size: int = 64
    images_per_identity: int = 0  # K > 1: batches of batch_size / K people, K images each (facecmp/batches.py)
    lr: float = 1e-3
    weight_decay: float = 0.0
    lr_schedule: str = "cosine"  # cosine | constant
    patience: int = 5  # early stopping on validation accuracy; 0 disables
    loss: str = "ce"  # ce | focal
    label_smoothing: float = 0.0
    focal_gamma: float = 2.0
    num_workers: int = 0
    onednn: bool = True  # CPU: convolutions through oneDNN (facecmp/onednn.py; same results, faster)
    device: str = "auto"  # auto | cpu | gpu | gpu:N (facecmp/device.py); under the launcher, the launcher's
    amp: str = "none"  # none | float16 | bfloat16: mixed precision (AMP O1) on a GPU; ignored on CPU
    keep_epochs: bool = False  # also save each epoch's weights as a model directory RUN/epochs/NN
    teacher: str | None = None  # .npz of a teacher's descriptors (tools/teacher_embeddings.py)
    teacher_loss: str = "projection"  # projection | similarity (see facecmp/distill.py)
    teacher_weight: float = 10.0  # weight of the teacher term
    flip_teacher: str | None = None  # .npz of a model's flip-averaged embeddings (tools/flip_teacher.py)
    flip_teacher_weight: float = 10.0  # weight of the pull of each embedding towards it
    seed: int = 0


@dataclass
class Config:
    """Everything one training run needs."""

    task: str = "identity"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


_CHOICES = {
    ("data", "color"): ("rgb", "gray"),
    ("data", "layout"): ("identities", "splits"),
    ("data", "split"): ("image", "identity"),
    ("data", "crop", "method"): ("none", "center", "align", "box"),
    ("data", "crop", "detector"): DETECTORS,
    ("model", "arch"): ("resnet18", "attention_resnet"),
    ("model", "activation"): ("relu", "leaky_relu", "prelu"),
    ("model", "head"): ("linear", "arcface", "cosface"),
    ("train", "lr_schedule"): ("cosine", "constant"),
    ("train", "loss"): ("ce", "focal"),
    ("train", "teacher_loss"): ("projection", "similarity"),
    ("train", "amp"): AMP_CHOICES,
}


def _merge(obj: Any, values: dict, where: str, source: str = "config") -> Any:
    """Return a copy of dataclass obj with values applied; unknown keys raise.

    source starts each error message ("config" or "config FILE").
    """
    if not isinstance(values, dict):
        raise FacecmpError(f"{source} {where or 'root'}: expected a mapping, got {values!r}")
    known = {f.name: f for f in dataclasses.fields(obj)}
    changes = {}
    for key, value in values.items():
        if key not in known:
            raise FacecmpError(f"{source}: unknown key '{where}{key}' (known: {', '.join(known)})")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            changes[key] = _merge(current, value or {}, f"{where}{key}.", source)
        else:
            _check_type(known[key].type, value, f"{source}: {where}{key}")
            changes[key] = value
    return dataclasses.replace(obj, **changes)


_TYPES = {"int": ((int,), "a whole number"), "float": ((int, float), "a number"), "bool": ((bool,), "true or false"),
          "str": ((str,), "a string"), "list": ((list,), "a list")}


def _check_type(annotation: str, value: Any, where: str) -> None:
    """A one-line error when value is not of the field's declared type (None where it allows None)."""
    if value is None and "None" in annotation:
        return
    kinds, word = _TYPES[annotation.split("|")[0].split("[")[0].strip()]
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise FacecmpError(f"{where} must be {word}, got {value!r}")


def check_choice(path: tuple[str, ...], value: Any) -> str | None:
    """Why value is not allowed at a config path such as ("model", "arch"), or None if it is."""
    allowed = _CHOICES[path]
    if value in allowed:
        return None
    return f"{'.'.join(path)} must be one of {', '.join(allowed)}, got '{value}'"


def _check(cfg: Config) -> None:
    if cfg.task not in TASKS:
        raise FacecmpError(f"config: task must be one of {', '.join(TASKS)}, got '{cfg.task}'")
    for path in _CHOICES:
        value: Any = cfg
        for part in path:
            value = getattr(value, part)
        problem = check_choice(path, value)
        if problem:
            raise FacecmpError(f"config: {problem}")
    problem = check_device(cfg.train.device)
    if problem:
        raise FacecmpError(f"config: {problem}")
    if cfg.train.epochs < 1 or cfg.train.batch_size < 1:
        raise FacecmpError("config: train.epochs and train.batch_size must be at least 1")
    k = cfg.train.images_per_identity
    if k and not 2 <= k <= cfg.train.batch_size:
        raise FacecmpError(f"config: train.images_per_identity must be 0 (off) or 2 to the batch size, got {k}")
    for name in ("val_fraction", "val_into_train"):
        if not 0 <= getattr(cfg.data, name) <= 1:
            raise FacecmpError(f"config: data.{name} must be between 0 and 1")
    for name in ("mask", "gray"):
        value = getattr(cfg.data.augment, name)
        if not 0 <= value <= 1:  # a number: _merge checks each value's type
            raise FacecmpError(f"config: data.augment.{name} must be a probability between 0 and 1, got {value!r}")
    mask = cfg.data.augment.mask
    if mask and cfg.data.crop.method != "align":
        # the mask is drawn where the alignment template puts the nose and mouth
        raise FacecmpError(f"config: data.augment.mask needs data.crop.method 'align' (the mask is drawn "
                           f"at the template's landmarks), got '{cfg.data.crop.method}'")


def read_yaml(path: Path) -> dict:
    """Read a YAML mapping, with a one-line error for a missing or malformed file."""
    try:
        values = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as exc:
        raise FacecmpError(f"config {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise FacecmpError(f"config {path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(values, dict):
        raise FacecmpError(f"config {path}: expected a mapping at the top level")
    return values


def read_config_chain(path: Path) -> list[tuple[Path, dict]]:
    """The YAML at path and the files its `base:` keys name, as (file, mapping) pairs, base first.

    A base path is relative to the folder of the file that names it. The `base` key is
    removed from each mapping. A non-string base, a missing base file or a cycle is a
    one-line FacecmpError naming the file.
    """
    chain: list[tuple[Path, dict]] = []
    seen: list[Path] = []
    current = Path(path)
    while True:
        seen.append(current.resolve())
        values = read_yaml(current)
        chain.append((current, values))
        if "base" not in values:
            return chain[::-1]
        base = values.pop("base")
        if not isinstance(base, str) or not base.strip():
            raise FacecmpError(f"config {current}: base must be a file path, got {base!r}")
        parent = current.parent / base
        shown = Path(os.path.normpath(parent))  # for messages; '..' after a symlink differs
        if not parent.is_file():
            what = "is not a file" if parent.exists() else "does not exist"
            raise FacecmpError(f"config {current}: base {shown} {what}")
        if parent.resolve() in seen:
            cycle = " -> ".join([str(f) for f, _ in chain] + [str(shown)])
            raise FacecmpError(f"config {current}: base cycle ({cycle})")
        current = shown if shown.resolve() == parent.resolve() else parent


def declared_task(path: Path) -> str | None:
    """The task a config file (or its bases) names, if any; the nearest file wins."""
    tasks = [values["task"] for _, values in read_config_chain(path) if "task" in values]
    return tasks[-1] if tasks else None


def load_config(task: str | None, path: Path | None = None, overrides: dict | None = None) -> Config:
    """Resolve a config: schema defaults, the task's YAML, a user YAML (its bases first), overrides.

    A `task` key in the user YAML or its bases must name the task being resolved; with task
    None, the task is the one the file names, else identity.
    """
    if task is None:
        task = (declared_task(path) if path is not None else None) or "identity"
    if task not in TASKS:
        raise FacecmpError(f"unknown task '{task}' (choose {', '.join(TASKS)})")
    cfg = _merge(Config(), read_yaml(TASK_CONFIG_DIR / f"{task}.yaml"), "")
    cfg = dataclasses.replace(cfg, task=task)
    if path is not None:
        for file, values in read_config_chain(path):
            if values.get("task", task) != task:
                raise FacecmpError(f"config {file}: written for task '{values['task']}', not '{task}' "
                                   f"(choose it with --task)")
            cfg = _merge(cfg, values, "", f"config {file}")
    cfg = _merge(cfg, overrides or {}, "")
    _check(cfg)
    return cfg


def config_from_dict(values: dict) -> Config:
    """Rebuild a resolved config (as written beside a run) from its dict."""
    cfg = _merge(Config(), values, "")
    _check(cfg)
    return cfg


def save_config(cfg: Config, path: Path) -> None:
    """Write the resolved config as YAML."""
    Path(path).write_text(yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False))
