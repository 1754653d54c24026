"""Image -> network input, in exactly one place, driven by a model's metadata.

Training data preparation and every inference command call these functions, so the
crop, colour and normalisation used at inference are the ones the model was trained on.
The metadata read here (facecmp.meta.ModelMeta): input_size, color, mean, std, crop.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import cv2
import numpy as np

from facecmp.detect import DETECTORS
from facecmp.errors import FacecmpError, NoFaceError
from facecmp.images import ImageInput, describe, to_rgb

if TYPE_CHECKING:
    from facecmp.detect import Face
    from facecmp.meta import ModelMeta

DETECTOR_CHOICES = (*DETECTORS, "none")  # "none": the inputs are face crops already
# Box side of each detector relative to MTCNN's on the same face (measured on Face Mask 12K
# and FER2013 crops: Haar boxes are about 0.75x). A model's box scale is chosen for its own
# detector, so a box from the other detector is rescaled to frame the face the same way.
BOX_SIDE = {"mtcnn": 1.0, "haar": 0.75, "mtcnn-masked": 1.0}


@dataclass
class FaceCrop:
    """A face crop ready for the network, with where it came from."""

    pixels: np.ndarray  # input_size x input_size x channels, uint8
    box: list[float] | None = None
    landmarks: list[list[float]] | None = None
    note: str | None = None


def _resize(img: np.ndarray, size: int) -> np.ndarray:
    interp = cv2.INTER_AREA if min(img.shape[:2]) > size else cv2.INTER_LINEAR
    return cv2.resize(img, (size, size), interpolation=interp)


def center_crop(rgb: np.ndarray, fraction: float) -> np.ndarray:
    """The central square whose side is `fraction` of the image's shorter side."""
    h, w = rgb.shape[:2]
    side = max(2, int(round(min(h, w) * fraction)))
    top, left = max(0, (h - side) // 2), max(0, (w - side) // 2)
    return rgb[top : top + side, left : left + side]


def _detected_crop(rgb: np.ndarray, method: str, detector: str, scale: float, size: int,
                   source: str) -> FaceCrop:
    from facecmp import align, detect

    face, note = detect.pick_face(detect.detect_faces(rgb, detector), source)
    found = face.to_json()
    if method == "align" and face.landmarks is not None:
        pixels = align.align_face(rgb, face.landmarks, size)
    else:  # a box crop, or a landmark-less detector
        pixels = align.center_crop_face(rgb, face.box, size, scale)
    return FaceCrop(pixels, found["box"], found["landmarks"], note)


def with_detector(meta: ModelMeta, detector: str | None) -> ModelMeta:
    """meta with its crop convention overridden by a --detector choice.

    "none" treats inputs as crops (a center-crop model keeps its fixed crop); "mtcnn" or
    "haar" detect a face first: aligned for align models, a box crop otherwise.
    """
    if detector is None:
        return meta
    if detector not in DETECTOR_CHOICES:
        raise FacecmpError(f"unknown detector {detector!r}; choose one of {', '.join(DETECTOR_CHOICES)}")
    method = meta.crop.method
    if detector == "none":
        crop = replace(meta.crop, method="center" if method == "center" else "none")
    else:
        crop = replace(meta.crop, method="align" if method == "align" else "box", detector=detector)
    return replace(meta, crop=crop)


def crop_face(rgb: np.ndarray, meta: ModelMeta, source: str = "image",
              detector: str | None = None) -> FaceCrop:
    """Cut the face from an RGB image following the crop convention in meta.

    Conventions: none (the image is the crop), center (a fixed central square), align
    (detector landmarks onto the five-point template) and box (the detector's box, squared
    and enlarged by `scale`, for heads trained on loosely framed crops). `detector`
    overrides the convention (see with_detector).
    """
    meta = with_detector(meta, detector)
    crop, size = meta.crop, meta.input_size
    if meta.detects:
        face = _detected_crop(rgb, crop.method, crop.detector, float(crop.scale), size, source)
    elif crop.method == "center":
        face = FaceCrop(_resize(center_crop(rgb, float(crop.fraction)), size))
    else:
        face = FaceCrop(_resize(rgb, size))
    face.pixels = to_color(face.pixels, meta.color)
    return face


def _rescaled_for(meta: ModelMeta, detector: str) -> ModelMeta:
    """meta with its box scale adjusted so that `detector`'s box frames the face as its own did."""
    own = meta.crop.detector
    if detector == own or meta.crop.method == "align":
        return meta
    scale = float(meta.crop.scale) * BOX_SIDE[own] / BOX_SIDE[detector]
    return replace(meta, crop=replace(meta.crop, scale=scale))


def find_face(rgb: np.ndarray, meta: ModelMeta, source: str = "image",
              detector: str | None = None) -> FaceCrop:
    """crop_face with the fallback chain: MTCNN, then Haar, then the whole image, with a note.

    For classifier heads, which still say something useful about a loosely framed face (MTCNN
    misses many masked faces, the mask hiding nose and mouth; Haar often does not). Face
    comparison uses crop_face alone: a wrong crop there gives a confident wrong verdict.
    """
    chosen = with_detector(meta, detector)
    if not chosen.detects:
        return crop_face(rgb, chosen, source)
    first = chosen.crop.detector
    chain = [first, "haar"] if first != "haar" else [first]
    for i, name in enumerate(chain):
        try:
            face = crop_face(rgb, _rescaled_for(meta, name), source, name)
        except NoFaceError:
            continue
        if i:
            face.note = "; ".join(n for n in (f"no face found by {chain[0]}; used the {name} box",
                                              face.note) if n)
        return face
    face = crop_face(rgb, meta, source, "none")
    face.note = f"no face found by {' or '.join(chain)}; used the whole image"
    return face


def to_color(rgb: np.ndarray, color: str) -> np.ndarray:
    """Convert an RGB crop to the model's colour mode (gray keeps one channel)."""
    if color == "gray":
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)[:, :, None]
    return rgb


def load_face(image: ImageInput, meta: ModelMeta, detector: str | None = None,
              source: str | None = None, fallback: bool = False) -> FaceCrop:
    """Read an image (path, PIL image or array) and cut its face crop (with the fallback
    chain if asked: find_face); raises FacecmpError on bad input."""
    source = source or describe(image, 0)
    cut = find_face if fallback else crop_face
    return cut(to_rgb(image, source), meta, source, detector)


def _try_load(image: ImageInput, meta: ModelMeta, source: str,
              fallback: bool) -> FaceCrop | FacecmpError:
    try:
        return load_face(image, meta, None, source, fallback)
    except FacecmpError as exc:
        return exc


@functools.lru_cache(maxsize=1)
def _reader_pool() -> ThreadPoolExecutor:
    """The two reader threads, started on first use; each keeps its own detector."""
    return ThreadPoolExecutor(2, thread_name_prefix="facecmp-read")


def load_faces(images: list[ImageInput], meta: ModelMeta, detector: str | None = None,
               fallback: bool = False, sources: list[str] | None = None) -> Iterator[FaceCrop | FacecmpError]:
    """load_face over several images, in order, each a crop or the error it raised (named
    by `sources`, default: each path, or "<image i>").

    With a detector in the convention and more than one core, two images are read at a
    time in threads (OpenCV and numpy release the interpreter lock), each with its own
    detector: on two cores, detecting and aligning a pair of LFW photos took about a sixth
    less time than one after the other (noisy; 23-31 ms against 28-37 ms).
    """
    from facecmp.runtime import cpu_count

    meta = with_detector(meta, detector)
    sources = sources or [describe(image, i) for i, image in enumerate(images)]
    if not meta.detects or cpu_count() < 2 or len(images) < 2:
        yield from (_try_load(im, meta, src, fallback) for im, src in zip(images, sources))
        return
    n = len(images)
    yield from _reader_pool().map(_try_load, images, [meta] * n, sources, [fallback] * n)


def to_tensor_batch(crops: np.ndarray, meta: ModelMeta) -> np.ndarray:
    """uint8 N x H x W x C crops -> normalised float32 N x 3 x H x W network input."""
    x = crops.astype(np.float32) / 255.0
    if x.ndim == 3:
        x = x[..., None]
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    mean = np.asarray(meta.mean, dtype=np.float32)
    std = np.asarray(meta.std, dtype=np.float32)
    return np.ascontiguousarray(((x - mean) / std).transpose(0, 3, 1, 2))


def check_zoom(fraction: float) -> float:
    """A test-time zoom fraction, refused unless between 0.5 and 1."""
    if not 0.5 <= fraction <= 1.0:
        raise FacecmpError(f"zoom must be between 0.5 and 1, got {fraction}")
    return fraction


def check_views(views: int, zoom: float) -> int:
    """A test-time view count: 1 (the central square) or 5 (it and the four corner squares)."""
    if views not in (1, 5):
        raise FacecmpError(f"crops must be 1 or 5, got {views}")
    if views == 5 and zoom >= 1.0:
        raise FacecmpError("5 crops need a zoom below 1 (the corner squares of a whole crop are the "
                           "crop itself); use 1 crop with zoom 1")
    return views


def zoom_views(crops: np.ndarray, fraction: float, views: int = 1) -> list[np.ndarray]:
    """Squares of side `fraction` of each uint8 N x S x S x C crop, each resized back to S.

    views=1 gives the central square; views=5 the central and the four corner squares (the
    "ten-crop" test of image classifiers, with the flip). A test-time zoom for heads trained
    on random resized crops, which saw faces mostly closer than the whole crop; fraction 1
    with one view returns the crops unchanged.
    """
    if fraction >= 1.0 or len(crops) == 0:
        return [crops]
    size = crops.shape[1]
    side = max(2, int(round(size * fraction)))
    mid, far = (size - side) // 2, size - side
    corners = [(mid, mid)] + ([(0, 0), (0, far), (far, 0), (far, far)] if views == 5 else [])
    return [np.stack([cv2.resize(c[top : top + side, left : left + side], (size, size),
                                 interpolation=cv2.INTER_LINEAR) for c in crops]).reshape(crops.shape)
            for top, left in corners]


def run_batches(forward: Callable[[np.ndarray], np.ndarray], crops: np.ndarray, meta: ModelMeta,
                batch_size: int, flip: bool, zoom: float = 1.0, views: int = 1) -> list[np.ndarray]:
    """forward() over crops in batches of network input; one output array per batch.

    Test-time augmentation: zoom < 1 keeps that central fraction of each crop, and with
    views=5 also the four corner squares of that size (zoom_views); with flip, each view's
    mirror is added. All views of a batch go through one forward pass and their outputs
    are averaged.
    """
    out = []
    for i in range(0, len(crops), batch_size):
        xs = [to_tensor_batch(v, meta) for v in zoom_views(crops[i : i + batch_size], zoom, views)]
        if flip:
            xs += [x[..., ::-1] for x in xs]
        n = len(xs[0])
        y = forward(np.ascontiguousarray(np.concatenate(xs)) if len(xs) > 1 else xs[0])
        out.append(y.reshape(len(xs), n, *y.shape[1:]).mean(axis=0))
    return out


def crop_detected(rgb: np.ndarray, face: Face, meta: ModelMeta, detector: str = "mtcnn") -> np.ndarray:
    """The network crop of one given detected face in meta's own convention, colour converted.

    Align models warp the face's landmarks onto the template (its box where the detector gave
    none); every other model takes the box, squared and enlarged by its crop.scale (rescaled
    when `detector` frames faces differently from the model's own, see BOX_SIDE). So several
    models can share one detection of an image, each seeing the crop it was trained on.
    """
    from facecmp import align

    size = meta.input_size
    if meta.crop.method == "align" and face.landmarks is not None:
        pixels = align.align_face(rgb, face.landmarks, size)
    else:
        scale = float(_rescaled_for(meta, detector).crop.scale)
        pixels = align.center_crop_face(rgb, face.box, size, scale)
    return to_color(pixels, meta.color)
