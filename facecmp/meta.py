"""A model's meta.json: every key, its default and its check, read and written here only.

meta.json holds everything inference needs besides the weights: the network, how an image
becomes its input (size, colour, mean/std, crop convention), the classes of a classifier,
the calibrated threshold of each metric, the test-time settings, and where it came from.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from facecmp.config import TASKS, Config, CropConfig, check_choice
from facecmp.errors import FacecmpError, ModelError
from facecmp.metrics import METRICS

META = "meta.json"
WEIGHT_DTYPES = ("float32", "float16", "int8", "int4")


@dataclass
class ModelMeta:
    """The contents of meta.json. Unknown keys are an error, so a typo never goes unnoticed."""

    task: str
    arch: str
    activation: str
    input_size: int
    color: str
    mean: list[float]
    std: list[float]
    crop: CropConfig
    embedding_size: int = 512
    head: str = "linear"
    num_classes: int = 1
    classes: list[str] | None = None  # classifier tasks: the label of each output, in order
    metric: str | None = None  # the metric `compare` uses by default (the better calibrated one)
    thresholds: dict[str, float] = field(default_factory=dict)  # calibrated, one per metric
    calibration: dict[str, dict[str, Any]] = field(default_factory=dict)  # where each came from
    # identity: per metric, [[false match rate, distance], ...] of held-out people (facecmp.openset)
    open_set: dict[str, list[list[float]]] = field(default_factory=dict)
    embed_flip: bool = False  # embeddings average each face with its mirror
    predict_flip: bool = False  # classifiers: probabilities averaged with the mirror's
    predict_zoom: float = 1.0  # classifiers: the central fraction of each crop is classified
    predict_crops: int = 1  # classifiers: 1 central square, or 5 (and the four corners)
    weights_dtype: str = "float32"
    epochs_trained: int | None = None
    training_data: dict[str, Any] = field(default_factory=dict)
    initialized_from: dict[str, Any] | None = None
    distilled_from: dict[str, Any] | None = None
    flip_distilled_from: dict[str, Any] | None = None
    weight_average_of: list[str] | None = None
    # identity: the model directory (relative to this one) that compares pairs in which the
    # mask head sees a mask (facecmp.masked); its thresholds are calibrated on masked pairs
    masked_model: str | None = None

    @classmethod
    def from_config(cls, cfg: Config, **values: Any) -> ModelMeta:
        """The metadata of a model trained with cfg (what the config fixes), plus `values`."""
        d, m = cfg.data, cfg.model
        return cls(task=cfg.task, arch=m.arch, activation=m.activation, head=m.head,
                   input_size=d.input_size, color=d.color, mean=list(d.mean), std=list(d.std),
                   crop=dataclasses.replace(d.crop), **values)

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = META) -> ModelMeta:
        """Build and check from a parsed meta.json; a one-line ModelError for anything wrong."""
        values = dict(values)
        legacy = values.pop("threshold", None)  # older files stored the default metric's twice
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ModelError(f"{where}: unknown keys {', '.join(unknown)}")
        missing = [f.name for f in dataclasses.fields(cls)
                   if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
                   and f.name not in values]
        if missing:
            raise ModelError(f"{where}: missing keys {', '.join(missing)}")
        crop = values["crop"]
        if not isinstance(crop, dict) or set(crop) - {f.name for f in dataclasses.fields(CropConfig)}:
            raise ModelError(f"{where}: crop must be a mapping of {', '.join(f.name for f in dataclasses.fields(CropConfig))}")
        values["crop"] = CropConfig(**crop)
        values["thresholds"] = dict(values.get("thresholds") or {})
        if legacy is not None and values.get("metric") and values["metric"] not in values["thresholds"]:
            values["thresholds"][values["metric"]] = legacy
        try:
            meta = cls(**values)
            meta.check()
        except ModelError as exc:
            raise ModelError(f"{where}: {exc}") from None
        except (TypeError, ValueError) as exc:
            raise ModelError(f"{where}: malformed ({exc})") from None
        return meta

    def check(self) -> None:
        """Raise ModelError when a value is out of its range or not one of its choices."""
        for name, allowed in (("task", TASKS), ("weights_dtype", WEIGHT_DTYPES)):
            if getattr(self, name) not in allowed:
                raise ModelError(f"{name} must be one of {', '.join(allowed)}, not {getattr(self, name)!r}")
        for path in (("model", "arch"), ("model", "activation"), ("model", "head"), ("data", "color"),
                     ("data", "crop", "method"), ("data", "crop", "detector")):
            value = getattr(self.crop, path[-1]) if path[1] == "crop" else getattr(self, path[-1])
            problem = check_choice(path, value)
            if problem:
                raise ModelError(problem)
        for name in ("input_size", "embedding_size", "num_classes"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ModelError(f"{name} must be a positive whole number")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ModelError("mean and std need three values each, std positive")
        if self.classes is not None and len(self.classes) != self.num_classes:
            raise ModelError(f"{len(self.classes)} classes but num_classes {self.num_classes}")
        if self.metric is not None and self.metric not in METRICS:
            raise ModelError(f"metric must be one of {', '.join(METRICS)}, not {self.metric!r}")
        if set(self.thresholds) - set(METRICS):
            raise ModelError(f"thresholds are per metric ({', '.join(METRICS)})")
        self.thresholds = {k: float(v) for k, v in self.thresholds.items()}
        if set(self.open_set) - set(METRICS) or not all(
                isinstance(rows, list) and all(isinstance(r, list) and len(r) == 2 for r in rows)
                for rows in self.open_set.values()):
            raise ModelError("open_set must map a metric to [[false match rate, distance], ...]")
        from facecmp.preprocess import check_views, check_zoom

        try:
            check_views(self.predict_crops, check_zoom(self.predict_zoom))
        except FacecmpError as exc:
            raise ModelError(f"predict_zoom/predict_crops: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        """The meta.json mapping; keys whose value is None are left out."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    @property
    def channels(self) -> int:
        """Channels of a prepared crop: 1 for gray models, 3 for RGB."""
        return 1 if self.color == "gray" else 3

    @property
    def detects(self) -> bool:
        """Whether the crop convention runs a face detector."""
        return self.crop.method in ("align", "box")

    def image_convention(self) -> dict[str, Any]:
        """What makes this model's network images: input size, colour mode and the crop
        settings its method uses (two models with equal conventions see the same crops)."""
        used = {"none": (), "center": ("fraction",), "align": ("detector",), "box": ("detector", "scale")}
        crop = {"method": self.crop.method, **{k: getattr(self.crop, k) for k in used[self.crop.method]}}
        return {"input_size": self.input_size, "color": self.color, "crop": crop}

    def threshold_for(self, metric: str | None = None, threshold: float | None = None) -> tuple[str, float]:
        """The metric and threshold a comparison uses: those given, else the model's calibrated ones."""
        metric = metric or self.metric or "euclid"
        if metric not in METRICS:
            raise ModelError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
        if threshold is not None:
            try:
                return metric, float(threshold)
            except (TypeError, ValueError):
                raise FacecmpError(f"threshold must be a number, got {threshold!r}") from None
        if metric not in self.thresholds:
            raise ModelError(f"the model has no calibrated {metric} threshold; run "
                             "`facecmp threshold-sweep --save-threshold` or pass --threshold")
        return metric, self.thresholds[metric]


def read_meta(model_dir: str | Path) -> ModelMeta:
    """Read and check a model directory's meta.json; one-line errors for bad directories."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelError(f"model directory {model_dir} does not exist")
    path = model_dir / META
    try:
        values = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelError(f"{model_dir} is not a facecmp model (no {META})") from None
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path}: unreadable ({exc})") from None
    if not isinstance(values, dict):
        raise ModelError(f"{path}: not a JSON object")
    return ModelMeta.from_dict(values, str(path))


def write_meta(model_dir: str | Path, meta: ModelMeta) -> None:
    """Write meta.json atomically, so an interrupted write never leaves a broken model."""
    meta.check()
    path = Path(model_dir) / META
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(meta.to_dict(), indent=2) + "\n")
    os.replace(tmp, path)


def update_meta(model_dir: str | Path, **changes: Any) -> ModelMeta:
    """Change some meta.json fields in place (e.g. the calibrated thresholds)."""
    meta = dataclasses.replace(read_meta(model_dir), **changes)
    write_meta(model_dir, meta)
    return meta
