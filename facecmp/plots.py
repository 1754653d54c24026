"""Every figure facecmp saves, as PNG (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    _plt().close(fig)


def training_curves(rows: list[dict[str, Any]], path: Path) -> None:
    """Accuracy and loss against epoch, training and validation."""
    plt = _plt()
    epochs = [r["epoch"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, title in ((axes[0], "acc", "accuracy"), (axes[1], "loss", "loss")):
        ax.plot(epochs, [r[key] for r in rows], "o-", label="train")
        val = [r.get(f"val_{key}") for r in rows]
        if any(v not in (None, "") for v in val):
            ax.plot(epochs, [float("nan") if v in (None, "") else v for v in val], "s-",
                    label="validation")
        ax.set(xlabel="epoch", ylabel=title, title=f"{title} per epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    _save(fig, path)


def pr_curves(curves: dict[str, list[dict]], path: Path) -> None:
    """Precision against recall over the threshold sweep, one line per metric."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for metric, rows in curves.items():
        ax.plot([r["recall"] for r in rows], [r["precision"] for r in rows], ".-", label=metric)
    ax.set(xlabel="recall", ylabel="precision", title="precision-recall over thresholds",
           xlim=(0, 1.02), ylim=(0, 1.02))
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, path)


def accuracy_curves(curves: dict[str, list[dict]], best: dict[str, float], path: Path) -> None:
    """Accuracy against threshold, one panel per metric, best threshold marked."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(curves), figsize=(5.5 * len(curves), 4), squeeze=False)
    for ax, (metric, rows) in zip(axes[0], curves.items()):
        ax.plot([r["threshold"] for r in rows], [r["accuracy"] for r in rows], ".-")
        ax.axvline(best[metric], color="red", ls="--", label=f"best {best[metric]:.4g}")
        ax.set(xlabel=f"{metric} distance threshold", ylabel="accuracy", title=f"accuracy ({metric})")
        ax.grid(alpha=0.3)
        ax.legend()
    _save(fig, path)


def roc_curves(curves: dict[str, tuple[np.ndarray, np.ndarray, float]], path: Path) -> None:
    """ROC (TPR against FPR, log FPR axis) with AUC per metric."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for metric, (fpr, tpr, auc) in curves.items():
        ax.plot(np.maximum(fpr, 1e-4), tpr, label=f"{metric} (AUC {auc:.4f})")
    ax.set(xscale="log", xlabel="false accept rate", ylabel="true accept rate", title="ROC",
           xlim=(1e-4, 1), ylim=(0, 1.02))
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    _save(fig, path)


def distance_histograms(dists: dict[str, tuple[np.ndarray, np.ndarray]], best: dict[str, float],
                        path: Path) -> None:
    """Distances of same-identity and different-identity pairs, per metric."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(dists), figsize=(5.5 * len(dists), 4), squeeze=False)
    for ax, (metric, (d, same)) in zip(axes[0], dists.items()):
        bins = np.linspace(d.min(), d.max(), 50)
        ax.hist(d[same], bins, alpha=0.6, label="same person")
        ax.hist(d[~same], bins, alpha=0.6, label="different people")
        ax.axvline(best[metric], color="red", ls="--", label="best threshold")
        ax.set(xlabel=f"{metric} distance", ylabel="pairs", title=f"pair distances ({metric})")
        ax.legend()
    _save(fig, path)


def confusion_matrix(cm: np.ndarray, classes: list[str], path: Path, title: str = "") -> None:
    """Rows true, columns predicted: counts in the cells, colour by share of the true class."""
    plt = _plt()
    cm = np.asarray(cm)
    rows = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros(cm.shape), where=rows > 0)
    side = max(4.5, 0.8 * len(classes) + 2.5)
    fig, ax = plt.subplots(figsize=(side + 1, side))
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, f"{cm[i, j]}\n{share[i, j]:.0%}", ha="center", va="center", fontsize=8,
                    color="white" if share[i, j] > 0.5 else "black")
    ticks = np.arange(len(classes))
    ax.set_xticks(ticks, classes, rotation=45, ha="right")
    ax.set_yticks(ticks, classes)
    ax.set(xlabel="predicted", ylabel="true", title=title or "confusion matrix")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    _save(fig, path)


def error_sheet(items: list[tuple[np.ndarray, str, str, float]], path: Path, total: int | None = None,
                columns: int = 8) -> None:
    """A contact sheet of misclassified crops (pixels, true, predicted, p) with their labels."""
    plt = _plt()
    rows = max(1, -(-len(items) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(1.6 * columns, 1.9 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (pixels, true, pred, p) in zip(axes.flat, items):
        img = np.asarray(pixels)
        gray = img.ndim == 2 or img.shape[-1] == 1
        ax.imshow(img.reshape(img.shape[:2]) if gray else img, cmap="gray" if gray else None,
                  vmin=0, vmax=255)
        ax.set_title(f"true {true}\npred {pred} ({p:.2f})", fontsize=7)
    if not items:
        axes[0, 0].text(0, 0.5, "no misclassified images", fontsize=10)
    total = len(items) if total is None else total
    fig.suptitle(f"misclassified images: {len(items)} of {total} shown", fontsize=10)
    _save(fig, path)


def impostor_distances(table: list[list[float]], one_to_one: float, path: Path) -> None:
    """An open-set table (facecmp.openset): distance against false match rate, with the 1:1 threshold."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.semilogx([r[0] for r in table], [r[1] for r in table], marker="o", label="different people")
    ax.axhline(one_to_one, color="gray", ls="--", label=f"1:1 threshold {one_to_one:.3f}")
    ax.set_xlabel("false match rate (share of different-person comparisons within)")
    ax.set_ylabel("cosine distance")
    ax.legend()
    ax.grid(alpha=0.3)
    _save(fig, path)
