"""Reading image files of any ordinary kind into 8-bit RGB arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from facecmp.errors import FacecmpError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".pgm", ".ppm", ".bmp", ".webp", ".tif", ".tiff")


def is_image_name(path: str | Path) -> bool:
    """True when the file name has an image suffix we read."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def _to_8bit(img: Image.Image) -> Image.Image:
    """Scale 16-bit and 32-bit integer/float images down to 8-bit grayscale."""
    arr = np.asarray(img, dtype=np.float64)
    lo, hi = float(arr.min()), float(arr.max())
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    return Image.fromarray(((arr - lo) * scale).astype(np.uint8), mode="L")


def load_rgb(path: str | Path) -> np.ndarray:
    """Read an image as an HxWx3 uint8 RGB array, upright per its EXIF orientation.

    Grayscale is replicated, alpha is composited on white, 16-bit is scaled to 8-bit.
    Raises FacecmpError with a one-line reason for anything unreadable.
    """
    path = Path(path)
    if not path.is_file():
        raise FacecmpError(f"{path}: no such file")
    try:
        with Image.open(path) as img:
            img.load()
            img = ImageOps.exif_transpose(img)
            if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
                img = _to_8bit(img)
            if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                rgba = img.convert("RGBA")
                white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                img = Image.alpha_composite(white, rgba)
            rgb = np.asarray(img.convert("RGB"), dtype=np.uint8)
    except UnidentifiedImageError:
        raise FacecmpError(f"{path}: not an image file") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise FacecmpError(f"{path}: unreadable image ({exc})") from None
    if rgb.shape[0] < 2 or rgb.shape[1] < 2:
        raise FacecmpError(f"{path}: image too small ({rgb.shape[1]}x{rgb.shape[0]})")
    return rgb
