"""Test-set evaluation of a classifier head on a labelled folder data_dir/<class>/* or a list of its images."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from facecmp import plots
from facecmp.errors import FacecmpError, NothingDoneError
from facecmp.images import is_image_name

MAX_ERROR_IMAGES = 64


def read_image_list(list_file: Path, classes: list[str]) -> tuple[list[Path], np.ndarray]:
    """A text file of image paths, one a line, each labelled by its folder: .../<class>/<image>."""
    try:
        lines = list_file.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise FacecmpError(f"image list {list_file}: {getattr(exc, 'strerror', None) or exc}") from None
    paths = [Path(line.strip()) for line in lines if line.strip()]
    unknown = sorted({p.parent.name for p in paths} - set(classes))
    if unknown:
        raise FacecmpError(f"{list_file}: folder(s) {', '.join(unknown[:5])} are not classes of the model "
                           f"(each line .../<class>/<image>, class in {', '.join(classes)})")
    if not paths:
        raise FacecmpError(f"image list {list_file} is empty")
    return paths, np.asarray([classes.index(p.parent.name) for p in paths], dtype=np.int64)


def scan_labelled(data_dir: str | Path, classes: list[str]) -> tuple[list[Path], np.ndarray]:
    """Image files of data_dir/<class>/* (or of a list file) and their indices into the model's classes."""
    data_dir = Path(data_dir)
    if data_dir.is_file():
        return read_image_list(data_dir, classes)
    if not data_dir.is_dir():
        raise FacecmpError(f"data folder {data_dir} " + ("is not a directory" if data_dir.exists()
                                                         else "does not exist"))
    dirs = sorted(p for p in data_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    unknown = [d.name for d in dirs if d.name not in classes]
    if unknown:
        raise FacecmpError(f"{data_dir}: folder(s) {', '.join(unknown[:5])} are not classes of the "
                           f"model (expected {data_dir}/<class>/* with class in {', '.join(classes)})")
    paths: list[Path] = []
    labels: list[int] = []
    for d in dirs:
        files = sorted(p for p in d.iterdir() if p.is_file() and is_image_name(p))
        paths += files
        labels += [classes.index(d.name)] * len(files)
    if not paths:
        raise FacecmpError(f"no images in {data_dir}/<class>/* (classes: {', '.join(classes)})")
    return paths, np.asarray(labels, dtype=np.int64)


def confusion_matrix(true: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    """k x k counts, rows the true class and columns the predicted one."""
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (np.asarray(true, dtype=np.int64), np.asarray(pred, dtype=np.int64)), 1)
    return cm


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.divide(a, b, out=np.zeros(len(a)), where=b > 0)


def classification_metrics(cm: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """Accuracy, per-class precision/recall/F1/support and macro F1 from a confusion matrix.

    Macro F1 averages over the classes present in the data, so a test set without some
    class is not penalised for it.
    """
    tp = np.diag(cm).astype(float)
    support, predicted = cm.sum(axis=1), cm.sum(axis=0)
    precision, recall = _ratio(tp, predicted.astype(float)), _ratio(tp, support.astype(float))
    f1 = _ratio(2 * precision * recall, precision + recall)
    n = int(cm.sum())
    per_class = {c: {"precision": round(float(p), 6), "recall": round(float(r), 6),
                     "f1": round(float(f), 6), "support": int(s)}
                 for c, p, r, f, s in zip(classes, precision, recall, f1, support)}
    return {"accuracy": round(float(tp.sum() / n), 6) if n else 0.0,
            "macro_f1": round(float(f1[support > 0].mean()), 6) if n else 0.0,
            "n": n, "per_class": per_class}


def write_confusion_csv(cm: np.ndarray, classes: list[str], path: Path) -> None:
    """Counts with a header of predicted classes and one row per true class."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["true\\predicted", *classes])
        for name, row in zip(classes, cm):
            writer.writerow([name, *(int(v) for v in row)])


def _keep_sample(sample: list, item: Any, seen: int, rng: np.random.Generator) -> None:
    """Reservoir sampling: a uniform sample of the misclassified images in bounded memory."""
    if len(sample) < MAX_ERROR_IMAGES:
        sample.append(item)
    else:
        j = int(rng.integers(0, seen))
        if j < MAX_ERROR_IMAGES:
            sample[j] = item


def evaluate(model_dir: str | Path, data_dir: str | Path, out_dir: str | Path,
             detector: str | None = None, progress: bool | None = None,
             flip: bool | None = None, zoom: float | None = None,
             crops: int | None = None) -> dict[str, Any]:
    """Classify every image of data_dir/<class>/*, write metrics and figures to out_dir."""
    from facecmp.classifier import Classifier

    clf = Classifier(model_dir, flip=flip, zoom=zoom, crops=crops)
    paths, labels = scan_labelled(data_dir, clf.classes)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    true, pred, failed, wrong = [], [], [], []
    n_wrong, rng = 0, np.random.default_rng(0)
    for (res, crop), label in zip(clf.iter_files(paths, detector, progress), labels):
        if "error" in res:
            failed.append(res["error"])
            continue
        guess = clf.classes.index(res["label"])
        true.append(int(label))
        pred.append(guess)
        if guess != label:
            n_wrong += 1
            item = (crop, clf.classes[label], res["label"], res["probabilities"][res["label"]])
            _keep_sample(wrong, item, n_wrong, rng)
    if not true:
        raise NothingDoneError(f"none of the {len(paths)} images in {data_dir} could be classified "
                               f"(first: {failed[0]})")
    cm = confusion_matrix(np.asarray(true), np.asarray(pred), len(clf.classes))
    summary = {**classification_metrics(cm, clf.classes), "failed": len(failed),
               "failures": failed[:100], "model": str(model_dir), "data": str(data_dir),
               "detector": detector, "flip": clf.flip, "zoom": clf.zoom,
               "crops": clf.crops}
    (out_dir / "metrics.json").write_text(json.dumps(summary, indent=1) + "\n")
    write_confusion_csv(cm, clf.classes, out_dir / "confusion.csv")
    plots.confusion_matrix(cm, clf.classes, out_dir / "confusion.png",
                           f"{Path(data_dir).name}: accuracy {summary['accuracy']:.3f}, n={summary['n']}")
    plots.error_sheet(sorted(wrong, key=lambda w: (w[1], w[2])), out_dir / "errors.png", n_wrong)
    return summary
