"""Training-time augmentation of uint8 face crops (never used at inference)."""

from __future__ import annotations

import cv2
import numpy as np


def augment(img: np.ndarray, cfg, rng: np.random.Generator) -> np.ndarray:
    """Randomly flip, shift/scale/rotate, change brightness and erase, per AugmentConfig."""
    out = img
    if cfg.hflip and rng.random() < 0.5:
        out = out[:, ::-1]
    if cfg.shift > 0 or cfg.scale > 0 or cfg.rotate > 0:
        out = _affine(out, cfg, rng)
    if cfg.brightness > 0:
        gain = 1.0 + rng.uniform(-cfg.brightness, cfg.brightness)
        bias = 255.0 * rng.uniform(-cfg.brightness, cfg.brightness) / 2
        out = np.clip(out.astype(np.float32) * gain + bias, 0, 255).astype(np.uint8)
    if cfg.erase > 0 and rng.random() < cfg.erase:
        out = _erase(out, rng)
    return np.ascontiguousarray(out)


def _affine(img: np.ndarray, cfg, rng: np.random.Generator) -> np.ndarray:
    h, w = img.shape[:2]
    angle = rng.uniform(-cfg.rotate, cfg.rotate)
    zoom = 1.0 + rng.uniform(-cfg.scale, cfg.scale)
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, zoom)
    m[:, 2] += rng.uniform(-cfg.shift, cfg.shift, size=2) * (w, h)
    out = cv2.warpAffine(np.ascontiguousarray(img), m, (w, h), borderMode=cv2.BORDER_REPLICATE)
    return out.reshape(img.shape)


def _erase(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = img.shape[:2]
    eh, ew = int(h * rng.uniform(0.1, 0.4)), int(w * rng.uniform(0.1, 0.4))
    top, left = rng.integers(0, h - eh + 1), rng.integers(0, w - ew + 1)
    out = img.copy()
    out[top : top + eh, left : left + ew] = rng.integers(0, 256, size=(eh, ew) + img.shape[2:])
    return out
