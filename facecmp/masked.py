"""Faces in masks: the mask head decides which identity model compares a pair.

An identity model whose metadata names a `masked_model` hands every pair in which the mask
head calls either face masked to that model (trained with synthetic masks, its threshold
calibrated on masked pairs); pairs of two bare faces stay with the model itself, whose
figures on them a masked model would lower (measured in the identity model card).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facecmp.detect import Face
from facecmp.errors import ModelError
from facecmp.preprocess import FaceCrop, crop_detected

MASKED_AT = 0.5  # the mask head's probability of "WithMask" from which a face counts as masked
MASK_CLASS = "WithMask"


def masked_model_dir(model_dir: Path, name: str | None) -> Path | None:
    """The directory a model's `masked_model` names (relative to the model), or None."""
    if not name:
        return None
    path = (Path(model_dir) / name).resolve()
    if not (path / "meta.json").is_file():
        raise ModelError(f"{model_dir}: its masked_model {name!r} is not a model directory")
    return path


def mask_head(model_dir: str | Path | None = None):
    """A mask model's classifier: the bundled one unless model_dir (loaded once per process)."""
    from facecmp.api import load_model

    return load_model(model_dir, "mask").classifier


def mask_probabilities(crops: np.ndarray, head=None) -> np.ndarray:
    """P(masked) of each face crop cut in the mask head's own convention (uint8 N x S x S x C);
    head: a mask_head() other than the bundled one."""
    head = head if head is not None else mask_head()
    if MASK_CLASS not in head.classes:
        raise ModelError(f"the mask head's classes {head.classes} have no {MASK_CLASS!r}")
    if not len(crops):
        return np.zeros(0)
    return head.probabilities(crops)[:, head.classes.index(MASK_CLASS)]


def mask_crop(rgb: np.ndarray, found: FaceCrop, detector: str) -> np.ndarray | None:
    """The mask head's crop of a face already found for the identity model (None when no
    detector ran, so there is no box to cut it from)."""
    if found.box is None:
        return None
    landmarks = None if found.landmarks is None else np.asarray(found.landmarks, np.float32)
    face = Face(tuple(found.box), 1.0, landmarks)
    return crop_detected(rgb, face, mask_head().meta, detector)


def masked_pairs(prob_a: np.ndarray, prob_b: np.ndarray) -> np.ndarray:
    """Which pairs go to the masked model: either face's P(masked) at or above MASKED_AT."""
    return (np.asarray(prob_a) >= MASKED_AT) | (np.asarray(prob_b) >= MASKED_AT)
