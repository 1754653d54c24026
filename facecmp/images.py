"""Reading images (files, PIL images, arrays) into 8-bit RGB arrays, refusing what cannot be read."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from facecmp.errors import ImageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".pgm", ".ppm", ".bmp", ".webp", ".tif", ".tiff", ".gif")
# The largest image read, in pixels: FACECMP_MAX_PIXELS, else this. A 100-megapixel RGB image
# is 300 MB decoded; a small PNG can claim billions of pixels (a decompression bomb).
DEFAULT_MAX_PIXELS = 100_000_000

ImageInput = Union[str, Path, Image.Image, np.ndarray]


def is_image_name(path: str | Path) -> bool:
    """True when the file name has an image suffix we read."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def max_pixels() -> int:
    """The pixel limit in force: FACECMP_MAX_PIXELS (a positive whole number) or the default."""
    value = os.environ.get("FACECMP_MAX_PIXELS", "").strip()
    if not value:
        return DEFAULT_MAX_PIXELS
    if not value.isdigit() or int(value) < 1:
        raise ImageError(f"FACECMP_MAX_PIXELS must be a positive whole number, got {value!r}")
    return int(value)


def _check_size(width: int, height: int, source: str, limit: int | None = None) -> None:
    limit = limit or max_pixels()
    if width * height > limit:
        raise ImageError(f"{source}: image too large ({width}x{height} = {width * height / 1e6:.0f} "
                         f"megapixels; the limit is {limit / 1e6:g}, set by FACECMP_MAX_PIXELS)")
    if width < 2 or height < 2:
        raise ImageError(f"{source}: image too small ({width}x{height})")


def _to_8bit(img: Image.Image) -> Image.Image:
    """Scale 16-bit and 32-bit integer/float images down to 8-bit grayscale."""
    arr = np.asarray(img, dtype=np.float64)
    lo, hi = float(arr.min()), float(arr.max())
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    return Image.fromarray(((arr - lo) * scale).astype(np.uint8), mode="L")


def _pil_to_rgb(img: Image.Image) -> np.ndarray:
    """A loaded PIL image as upright HxWx3 uint8: grayscale replicated, alpha composited on
    white, 16-bit scaled to 8-bit, CMYK and palettes converted; animations give their first frame."""
    img = ImageOps.exif_transpose(img)
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        img = _to_8bit(img)
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def load_rgb(path: str | Path) -> np.ndarray:
    """Read an image file as an HxWx3 uint8 RGB array, upright per its EXIF orientation.

    Raises ImageError with a one-line reason for anything unreadable, too small or over
    the pixel limit (max_pixels), checked from the header before any pixel is decoded.
    """
    if not str(path):
        raise ImageError("an empty path is not an image")
    path = Path(path)
    if not path.exists():
        raise ImageError(f"{path}: no such file")
    if not path.is_file():
        raise ImageError(f"{path}: not a file")
    limit = max_pixels()
    if Image.MAX_IMAGE_PIXELS is not None and limit > Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = limit  # PIL refuses twice its own limit before facecmp could look
    try:
        with warnings.catch_warnings():
            # facecmp's own limit applies; Paddle's users should not see PIL's warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                _check_size(img.width, img.height, str(path), limit)
                img.load()
                rgb = _pil_to_rgb(img)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image file") from None
    except Image.DecompressionBombError:
        raise ImageError(f"{path}: image too large (a decompression bomb by PIL's own limit)") from None
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError) as exc:
        raise ImageError(f"{path}: unreadable image ({_one_line(exc)})") from None
    return rgb


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200] or type(exc).__name__


def array_to_rgb(arr: np.ndarray, source: str = "array") -> np.ndarray:
    """An HxW, HxWx1, HxWx3 (RGB) or HxWx4 (RGBA) uint8 array as HxWx3 uint8 RGB."""
    if not isinstance(arr, np.ndarray) or arr.dtype != np.uint8:
        kind = arr.dtype if isinstance(arr, np.ndarray) else type(arr).__name__
        raise ImageError(f"{source}: expected a uint8 array, got {kind}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))):
        raise ImageError(f"{source}: expected an HxW, HxWx3 or HxWx4 array, got shape {arr.shape}")
    _check_size(arr.shape[1], arr.shape[0], source)
    if arr.ndim == 2:
        return np.repeat(arr[:, :, None], 3, axis=2)
    if arr.shape[2] == 4:
        return _pil_to_rgb(Image.fromarray(arr, "RGBA"))
    return np.ascontiguousarray(arr)


def to_rgb(image: ImageInput, source: str | None = None) -> np.ndarray:
    """A path, PIL image or uint8 array as HxWx3 uint8 RGB; ImageError if it cannot be one."""
    if isinstance(image, (str, Path)):
        return load_rgb(image)
    source = source or f"<{type(image).__name__}>"
    if isinstance(image, Image.Image):
        _check_size(image.width, image.height, source)
        try:
            image.load()
            return _pil_to_rgb(image)
        except (OSError, ValueError, SyntaxError, EOFError) as exc:
            raise ImageError(f"{source}: unreadable image ({_one_line(exc)})") from None
    if isinstance(image, np.ndarray):
        return array_to_rgb(image, source)
    raise ImageError(f"{source}: not an image (give a path, a PIL image or an HxWx3 uint8 array)")


def describe(image: ImageInput, index: int) -> str:
    """How an input is named in messages and results: its path, else its position."""
    return str(image) if isinstance(image, (str, Path)) else f"<image {index}>"
