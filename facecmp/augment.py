"""Training-time augmentation of uint8 face crops (never used at inference)."""

from __future__ import annotations

import cv2
import numpy as np

from facecmp.masks import draw_mask_on_crop


def augment(img: np.ndarray, cfg, rng: np.random.Generator) -> np.ndarray:
    """Randomly mask, turn gray, flip, crop, shift/scale/rotate, change brightness/gamma, add
    noise and erase."""
    out = img
    # First, while the face's landmarks are still the alignment template's (aligned crops
    # only; config checks it). No draw at mask 0, so other configs keep their random stream.
    # Distillation stays right: teacher targets are per image, from the unmasked original.
    if cfg.mask > 0 and rng.random() < cfg.mask:
        out = draw_mask_on_crop(out, rng)
    if cfg.gray > 0 and rng.random() < cfg.gray and out.ndim == 3 and out.shape[2] == 3:
        # photos in black and white (all of LFW) must not look like a colour model's other class
        out = np.repeat(cv2.cvtColor(np.ascontiguousarray(out), cv2.COLOR_RGB2GRAY)[:, :, None], 3, axis=2)
    if cfg.hflip and rng.random() < 0.5:
        out = out[:, ::-1]
    if 0 < cfg.crop_area < 1:
        out = _resized_crop(out, cfg.crop_area, rng)
    if cfg.shift > 0 or cfg.scale > 0 or cfg.rotate > 0:
        out = _affine(out, cfg, rng)
    if cfg.brightness > 0:
        gain = 1.0 + rng.uniform(-cfg.brightness, cfg.brightness)
        bias = 255.0 * rng.uniform(-cfg.brightness, cfg.brightness) / 2
        out = np.clip(out.astype(np.float32) * gain + bias, 0, 255).astype(np.uint8)
    if cfg.gamma > 0:
        out = _gamma(out, (1.0 + cfg.gamma) ** rng.uniform(-1, 1))
    if cfg.noise > 0:
        sigma = 255.0 * rng.uniform(0, cfg.noise)
        out = np.clip(out + rng.normal(0, sigma, out.shape), 0, 255).astype(np.uint8)
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


def _resized_crop(img: np.ndarray, min_area: float, rng: np.random.Generator) -> np.ndarray:
    """A random crop of min_area..100% of the image (aspect 3:4..4:3), resized back."""
    h, w = img.shape[:2]
    area = h * w * rng.uniform(min_area, 1.0)
    aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
    ch = int(round(min(h, np.sqrt(area / aspect))))
    cw = int(round(min(w, np.sqrt(area * aspect))))
    top, left = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
    crop = np.ascontiguousarray(img[top : top + ch, left : left + cw])
    out = cv2.resize(crop, (w, h), interpolation=cv2.INTER_LINEAR)
    return out.reshape(img.shape)


def _gamma(img: np.ndarray, gamma: float) -> np.ndarray:
    table = (255.0 * (np.arange(256) / 255.0) ** gamma).round().astype(np.uint8)
    return table[img]
