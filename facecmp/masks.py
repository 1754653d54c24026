"""Synthetic face masks drawn from five landmarks, for masked-face verification protocols
and as a cheap training augmentation.

The mask is laid out in a face-aligned frame: origin at the centre of the eyes, x along
the eye line, y down the face, one unit = the eye distance. Its top crosses the nose
bridge, its sides sit a little outside the cheeks and its bottom runs under the chin; the
exact place, the style (shape) and the fill (colours) come from the random generator, so
a given generator state always draws the same mask.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from facecmp.align import template_points
from facecmp.errors import FacecmpError

MASK_STYLES = ("surgical", "cloth", "n95")
MASK_FILLS = ("light", "dark", "pattern")
MASK_VERSION = "1"  # changes whenever the same generator state would draw a different mask

_PALETTE = {  # RGB
    "light": ((238, 240, 240), (176, 207, 232), (204, 207, 211)),  # white, light blue, light grey
    "dark": ((30, 30, 33), (31, 41, 78), (72, 74, 78)),  # black, navy, dark grey
}
_PATTERN_PAIRS = (((30, 41, 78), (232, 232, 228)), ((28, 28, 30), (225, 225, 225)),
                  ((170, 35, 45), (236, 230, 222)), ((40, 92, 60), (222, 210, 180)),
                  ((176, 207, 232), (31, 41, 78)), ((110, 112, 118), (30, 30, 33)))
_PATTERNS = ("stripes", "checks", "dots")
_SUBPIXEL = 4  # fractional bits of the coordinates given to OpenCV's drawing
_LUMA = np.float32([0.299, 0.587, 0.114])
# Fixed sample positions: the outline is dense near the sides, where it bends most.
_A_OUTLINE = np.sin(np.linspace(-np.pi / 2, np.pi / 2, 24))
_A_LINE = np.linspace(-0.97, 0.97, 13)
_STEPS = 128  # a lookup table from the mask's top (t = 0) to its bottom (t = 1)
_T_GRID = np.linspace(0.0, 1.0, _STEPS + 1)
_T_CURVE = np.linspace(0.0, 1.0, 8)
_BEZIER = np.stack([(1 - _T_CURVE) ** 2, 2 * _T_CURVE * (1 - _T_CURVE), _T_CURVE ** 2], axis=1)
_PLEATS = {2: np.array([0.36, 0.66]), 3: np.array([0.3, 0.51, 0.72])}  # fractions of the height


@dataclass
class _Layout:
    """A mask in the face frame: its shape parameters, outline and the lines drawn on it."""

    style: str
    origin: np.ndarray  # centre of the eyes, pixels
    rot: np.ndarray  # rows: unit vector along the eye line, unit vector down the face
    unit: float  # eye distance, pixels
    cx: float  # face centre line
    half: tuple[float, float]  # half widths to the left and right of cx (narrower on a far cheek)
    top: float  # top edge at the centre line
    drop: float  # how far the top edge falls from the centre to the sides
    bottom: float  # bottom edge at the centre line
    side: float  # bottom edge at the sides (surgical) or where the sides start to round
    power: float  # top-edge exponent: 1 (pointed), 1.5 or 2 (rounded)
    roundness: float = 2.0  # bottom-edge exponent of cloth and n95 masks: 2 (elliptic) or 3
    narrow: float = 1.0  # bottom width / top width
    pleats: np.ndarray = field(default_factory=lambda: np.zeros(0))
    lines: np.ndarray = field(default_factory=lambda: np.zeros((0, 2, 2)))  # folds on the mask
    straps: np.ndarray = field(default_factory=lambda: np.zeros((0, 2, 2)))  # ear loops or straps

    def edges(self, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Top and bottom edge heights at a = (x - cx) / half width, for |a| <= 1."""
        a = np.minimum(np.abs(a), 1.0)  # the exponents are 1, 1.5, 2 or 3: no slow general power
        rise = a if self.power == 1 else a * a if self.power == 2 else a * np.sqrt(a)
        if self.style == "surgical":
            return self.top + self.drop * rise, self.bottom - (self.bottom - self.side) * (a * a)
        rim = np.sqrt(1 - a * a) if self.roundness == 2 else np.cbrt(1 - a * a * a)
        return self.top + self.drop * rise, self.side + (self.bottom - self.side) * rim

    def outline(self) -> np.ndarray:
        """The closed outline, local coordinates, clockwise from the left end of the top edge."""
        a = _A_OUTLINE
        top, bottom = self.edges(a)
        x = self.cx + a * self.widths(a)
        upper = np.stack([x, top], axis=1)
        lower = np.stack([self.cx + (x - self.cx) * self.narrow, bottom], axis=1)[::-1]
        return np.concatenate([upper, lower])

    def widths(self, a: np.ndarray) -> np.ndarray:
        """The half width on a's side of the centre line."""
        return np.where(a < 0, self.half[0], self.half[1])

    def to_image(self, pts: np.ndarray) -> np.ndarray:
        """Local face-frame points -> image pixels."""
        return self.origin + (np.asarray(pts) * self.unit) @ self.rot


def _frame(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
    """Origin, rotation, eye distance and the landmarks in the face frame."""
    marks = np.asarray(landmarks, dtype=np.float64)
    if marks.shape != (5, 2) or not np.all(np.isfinite(marks)):
        raise FacecmpError(f"expected 5x2 finite landmarks, got shape {marks.shape}")
    (lx, ly), (rx, ry) = marks[:2].tolist()
    unit = math.hypot(rx - lx, ry - ly)
    if unit < 2.0:
        raise FacecmpError(f"the eyes are {unit:.1f} pixels apart; too close to draw a mask")
    ux, uy = (rx - lx) / unit, (ry - ly) / unit
    rot = np.array([[ux, uy], [-uy, ux]])  # y points down the face, as image y does
    origin = np.array([(lx + rx) / 2, (ly + ry) / 2])
    return origin, rot, unit, (marks - origin) @ rot.T / unit


def _layout(landmarks: np.ndarray, rng: np.random.Generator, style: str) -> _Layout:
    """Place a mask of the style on the face (all sizes in eye distances)."""
    origin, rot, unit, loc = _frame(landmarks)
    (nose_x, nose_y), (left_x, left_y), (right_x, right_y) = loc[2:].tolist()
    mouth_x, mouth_y = (left_x + right_x) / 2, (left_y + right_y) / 2
    nose_y = max(nose_y, 0.25)  # guards against landmarks in odd places
    mouth_y = max(mouth_y, nose_y + 0.2)
    u = rng.random(14)  # one draw: faster than many
    top = (0.35 + 0.2 * u[0]) * nose_y  # on the nose bridge
    half = 0.9 + 0.2 * u[1]  # a little outside the cheeks
    bottom = mouth_y + (1.0 + 0.4 * u[2]) * (mouth_y - nose_y)  # under the chin
    # A small shift and scale of the width and the bottom; the top edge stays on the bridge.
    scale, dx, dy = 0.95 + 0.1 * u[3], 0.06 * u[4] - 0.03, 0.06 * u[5] - 0.03
    # On a turned face the nose moves towards the far cheek, which looks narrower.
    yaw = 1.5 * min(max(nose_x, -0.25), 0.25)
    cx, half = (nose_x + mouth_x) / 2 + dx, (half * scale * (1 + yaw), half * scale * (1 - yaw))
    bottom = nose_y + (bottom - nose_y) * scale + dy
    if style == "surgical":
        side = bottom - (bottom - mouth_y) * (0.55 + 0.25 * u[6])
        lay = _Layout(style, origin, rot, unit, cx, half, top, 0.12 + 0.1 * u[7], bottom, side,
                      1.5 if u[8] < 0.5 else 2.0, narrow=0.88 + 0.07 * u[9])
        count = 2 + int(u[10] < 0.5)
        lay.pleats = _PLEATS[count] + 0.06 * u[11:11 + count] - 0.03
    elif style == "cloth":
        drop = 0.15 + 0.1 * u[7]
        lay = _Layout(style, origin, rot, unit, cx, half, top, drop, bottom,
                      top + drop + 0.2 + 0.15 * u[6], 2.0, 2.0 if u[8] < 0.5 else 3.0)
    else:  # n95: a cup, its top pointed or rounded over the nose
        drop = 0.22 + 0.1 * u[7]
        lay = _Layout(style, origin, rot, unit, cx, (half[0] * 0.96, half[1] * 0.96), top, drop,
                      bottom, top + drop + 0.08 + 0.1 * u[6], 1.0 if u[8] < 0.5 else 1.5)
    _add_lines(lay)
    return lay


def _add_lines(lay: _Layout) -> None:
    """Pleats, seam or ridge on the mask; ear loops or head straps beside it."""
    if lay.style == "surgical":
        top, bottom = lay.edges(_A_LINE)
        t = lay.pleats[:, None]
        x = lay.cx + _A_LINE * lay.widths(_A_LINE) * (1 - t + t * lay.narrow)
        lay.lines = np.stack([x, (1 - t) * top + t * bottom], axis=2)
    else:  # a centre seam (cloth) or ridge (n95)
        t = _T_CURVE
        x, y = lay.cx + 0.02 * np.sin(np.pi * t), lay.top + t * (lay.bottom - lay.top)
        lay.lines = np.stack([x, y], axis=1)[None]
    upper = lay.top + lay.drop  # the top edge at the sides
    if lay.style == "surgical":
        low, lower = 1.0, lay.side
    else:  # the straps hold the cloth and n95 where their bottom starts to round off
        low, rim = 0.9, (1 - 0.9 ** lay.roundness) ** (1 / lay.roundness)
        lower = lay.side + (lay.bottom - lay.side) * rim
    ends = []  # quadratic Bezier curves: start, control, end
    for s, half in zip((-1, 1), lay.half):
        if half < 0.85 * max(lay.half):
            continue  # the far side of a turned face: the straps are behind the cheek
        corner, ear = lay.cx + s * half, lay.cx + s * (half + 0.2)
        low_corner = lay.cx + s * half * lay.narrow * low
        if lay.style == "n95":  # head straps, above and below the ear
            ends += [((corner, upper + 0.04), (ear - s * 0.1, upper - 0.05), (ear, upper - 0.3)),
                     ((low_corner, lower), (ear - s * 0.1, lower - 0.04), (ear, lower - 0.1))]
        else:  # ear loops, meeting at the ear
            ends += [((corner, upper + 0.03), (ear - s * 0.1, upper - 0.04), (ear, upper - 0.04)),
                     ((low_corner, lower - 0.03), (ear + s * 0.04, lower - 0.2), (ear, upper + 0.12))]
    lay.straps = _BEZIER @ np.array(ends)  # curves x 8 points x xy


def mask_polygon(landmarks: np.ndarray, rng: np.random.Generator, style: str) -> np.ndarray:
    """The outline (K x 2, image pixels, possibly outside the image) of a mask of this style on
    these landmarks: from the same generator state, draw_mask(..., style, fill) draws this one."""
    if style not in MASK_STYLES:
        raise FacecmpError(f"unknown mask style {style!r}; choose one of {', '.join(MASK_STYLES)}")
    lay = _layout(landmarks, rng, style)
    return lay.to_image(lay.outline())


@dataclass(frozen=True)
class _Paint:
    """How the mask is coloured: a base colour, and a pattern in a second colour."""

    base: np.ndarray
    ink: np.ndarray | None = None
    pattern: str | None = None
    period: float = 0.2  # eye distances
    angle: float = 0.0  # degrees

    def scaled(self, gain: np.float32) -> _Paint:
        """The same paint, its colours times gain."""
        ink = None if self.ink is None else self.ink * gain
        return _Paint(self.base * gain, ink, self.pattern, self.period, self.angle)

    def gray(self) -> _Paint:
        """The same paint in gray levels, for a grayscale photo."""
        ink = None if self.ink is None else np.atleast_1d(np.float32(self.ink @ _LUMA))
        base = np.atleast_1d(np.float32(self.base @ _LUMA))
        return _Paint(base, ink, self.pattern, self.period, self.angle)


def _paint(rng: np.random.Generator, fill: str) -> _Paint:
    u = rng.random(6).tolist()
    pick = lambda options, v: options[min(int(v * len(options)), len(options) - 1)]  # noqa: E731
    if fill in _PALETTE:
        jitter = [round(12 * v) - 6 for v in u[1:4]]  # -6..6 per channel
        return _Paint(np.float32(pick(_PALETTE[fill], u[0])) + np.float32(jitter))
    base, ink = (np.float32(c) for c in pick(_PATTERN_PAIRS, u[0]))
    if u[1] < 0.5:
        base, ink = ink, base
    pattern = pick(_PATTERNS, u[2])
    angles = (0.0, 90.0, 45.0, -45.0) if pattern == "stripes" else (0.0, 45.0)
    return _Paint(base, ink, pattern, 0.14 + 0.12 * u[3], pick(angles, u[4]))


def _texture(paint: _Paint, lx: np.ndarray, ly: np.ndarray, unit: float) -> np.ndarray:
    """H x W x C float colours of the fabric at face-frame coordinates lx, ly."""
    if paint.pattern is None:
        return paint.base
    theta = np.deg2rad(paint.angle)
    c, s = np.float32(np.cos(theta) / paint.period), np.float32(np.sin(theta) / paint.period)
    u, v = lx * c + ly * s, ly * c - lx * s
    px = paint.period * unit  # the pattern's period in pixels
    if paint.pattern == "dots":
        ink = np.clip(0.28 * px + 0.5 - np.hypot(u - np.round(u), v - np.round(v)) * px, 0, 1)
    else:  # edges about a pixel wide whatever the scale: anti-aliased by construction
        wave = np.sin(2 * np.pi * u)
        if paint.pattern == "checks":
            wave *= np.sin(2 * np.pi * v)
        ink = np.clip(0.5 + wave * (px / (2 * np.pi)), 0, 1)
    return paint.base + (paint.ink - paint.base) * ink[..., None]


# Brightness from the top (t = 0) to the bottom (t = 1) of the mask, on _T_GRID: lit from
# above; cups and cloth bulge; a pleat darkens just above its fold and catches the light below.
_DOWN = {style: (0.08 * (0.5 - _T_GRID) - bulge * (2 * _T_GRID - 1) ** 2).astype(np.float32)
         for style, bulge in (("surgical", 0.0), ("cloth", 0.05), ("n95", 0.1))}
_PLEAT = np.linspace(-1.0, 1.0, 2 * _STEPS + 1)  # one pleat's shading, centred on index _STEPS
_PLEAT = (0.04 * np.exp(-(((_PLEAT - 0.08) / 0.05) ** 2))
          - 0.08 * np.exp(-((_PLEAT / 0.035) ** 2))).astype(np.float32)


def _down_shading(lay: _Layout) -> np.ndarray:
    """The mask's brightness from top to bottom, a table on _T_GRID."""
    down = _DOWN[lay.style]
    for pleat in lay.pleats.tolist():
        k = min(max(round(pleat * _STEPS), 0), _STEPS)
        down = down + _PLEAT[_STEPS - k: 2 * _STEPS + 1 - k]
    return down


def _lookup(table: np.ndarray, t: np.ndarray) -> np.ndarray:
    """A table sampled on _T_GRID at t (clipped to 0..1), nearest sample."""
    return np.take(table, (t * np.float32(_STEPS) + np.float32(0.5)).astype(np.intp), mode="clip")


def _coverage(shape: tuple[int, int], polys: np.ndarray, width: float | None = None) -> np.ndarray:
    """Anti-aliased coverage (0..1) of filled polygons, or of polylines `width` pixels wide
    (polys: N x K x 2 pixel coordinates in the canvas)."""
    canvas = np.zeros(shape, np.uint8)
    pts = list(np.rint(polys * (1 << _SUBPIXEL)).astype(np.int32))
    if width is None:
        cv2.fillPoly(canvas, pts, 255, cv2.LINE_AA, shift=_SUBPIXEL)
        return canvas.astype(np.float32) * np.float32(1 / 255)
    thick = max(1, int(round(width)))
    cv2.polylines(canvas, pts, False, 255, thick, cv2.LINE_AA, shift=_SUBPIXEL)
    return canvas.astype(np.float32) * np.float32(min(1.0, width / thick) / 255)


_WIDTHS = {"surgical": (0.03, 0.025), "cloth": (0.025, 0.05), "n95": (0.035, 0.035)}  # fold, strap


def _pick(rng: np.random.Generator, style: str | None, fill: str | None) -> tuple[str, str]:
    style = MASK_STYLES[rng.integers(len(MASK_STYLES))] if style is None else style
    fill = MASK_FILLS[rng.integers(len(MASK_FILLS))] if fill is None else fill
    if style not in MASK_STYLES:
        raise FacecmpError(f"unknown mask style {style!r}; choose one of {', '.join(MASK_STYLES)}")
    if fill not in MASK_FILLS:
        raise FacecmpError(f"unknown mask fill {fill!r}; choose one of {', '.join(MASK_FILLS)}")
    return style, fill


def _box(pts: np.ndarray, margin: float, w: int, h: int) -> tuple[int, int, int, int]:
    """The pixel box around points plus a margin, clipped to the image: x0, y0, x1, y1."""
    x, y, bw, bh = cv2.boundingRect(pts.astype(np.float32))
    m = math.ceil(margin)
    return (min(max(x - m, 0), w), min(max(y - m, 0), h),
            min(max(x + bw + m, 0), w), min(max(y + bh + m, 0), h))


def _render(img: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator, style: str | None,
            fill: str | None) -> np.ndarray:
    """A copy of the H x W x C (C = 1 or 3) uint8 image with a mask drawn on it."""
    style, fill = _pick(rng, style, fill)
    lay = _layout(landmarks, rng, style)
    paint = _paint(rng, fill)
    light, side, grain = rng.random(3).tolist()
    # Clipped far outside any image, so that fixed-point coordinates cannot overflow.
    outline, straps = (np.clip(lay.to_image(p), -1e5, 1e5) for p in (lay.outline(), lay.straps))
    out = img.copy()
    h, w = img.shape[:2]
    sigma = max(0.7, 0.04 * lay.unit)  # the softness of the mask's shadow
    x0, y0, x1, y1 = _box(np.concatenate([outline, straps.reshape(-1, 2)]), 3 * sigma + 2, w, h)
    if x1 <= x0 or y1 <= y0:
        return out
    offset = np.array([x0, y0], np.float64)
    pixels = out[y0:y1, x0:x1]
    if pixels.shape[2] == 1 or (np.array_equal(pixels[..., 0], pixels[..., 1])
                                and np.array_equal(pixels[..., 1], pixels[..., 2])):
        paint = paint.gray()
    # A white mask in a dim photo is dimmer: follow the photo's exposure a little.
    mean = sum(cv2.sumElems(pixels)[: pixels.shape[2]]) / pixels.size
    paint = paint.scaled(np.float32(min(max(0.7 + 0.3 * mean / 140, 0.7), 1.05)))
    region = pixels.astype(np.float32)
    cover = _coverage(region.shape[:2], (outline - offset)[None])
    # Lit from above, the mask's shadow falls a little down the face, not over the eyes.
    shadow = _coverage(region.shape[:2], (outline - offset + 1.5 * sigma * lay.rot[1])[None])
    region *= (1 - 0.3 * cv2.GaussianBlur(shadow, (0, 0), sigma) * (1 - cover))[..., None]
    px0, py0, px1, py1 = _box(outline, 1, w, h)  # the fabric itself: only inside the outline's box
    if px1 > px0 and py1 > py0:
        grain = rng.standard_normal((py1 - py0, px1 - px0), np.float32) * np.float32((1 + 2 * grain) / 200)
        lighting = (0.16 * light - 0.08, 1.0 if side < 0.5 else -1.0, grain)
        inner = (slice(py0 - y0, py1 - y0), slice(px0 - x0, px1 - x0))
        patch = region[inner]
        patch += (_fabric(lay, paint, (px0, py0), lighting) - patch) * cover[inner][..., None]
    strap = np.minimum(paint.base * 0.9 + 12, 245)
    strap_cover = _coverage(region.shape[:2], straps - offset, _WIDTHS[style][1] * lay.unit)
    region += (strap - region) * strap_cover[..., None]
    out[y0:y1, x0:x1] = np.clip(region + 0.5, 0, 255).astype(np.uint8)
    return out


def _fabric(lay: _Layout, paint: _Paint, corner: tuple[int, int],
            lighting: tuple[float, float, np.ndarray]) -> np.ndarray:
    """The shaded, patterned mask with its folds, over the pixels from corner (x0, y0) on, as many
    as the grain has. lighting: the side-to-side slope of the light, the lit side of an n95's
    ridge (+1 right, -1 left), the fabric's grain."""
    light, side, grain = lighting
    (x0, y0), (h, w) = corner, grain.shape
    (r00, r01), (r10, r11) = (lay.rot / lay.unit).astype(np.float32)
    xs = np.arange(x0, x0 + w, dtype=np.float32)[None, :] - np.float32(lay.origin[0])
    ys = np.arange(y0, y0 + h, dtype=np.float32)[:, None] - np.float32(lay.origin[1])
    lx, ly = xs * r00 + ys * r01, xs * r10 + ys * r11  # face-frame coordinates of each pixel
    a = lx - np.float32(lay.cx)  # -1 .. 1 from the left side to the right
    left, right = lay.half
    a *= (np.float32(2 / (left + right)) if abs(left - right) < 0.01
          else np.where(a < 0, np.float32(1 / left), np.float32(1 / right)))
    a = np.clip(a, -1, 1, out=a)
    top, bottom = lay.edges(a)
    t = (ly - top) / np.maximum(bottom - top, np.float32(1e-3))  # 0 at the top edge, 1 at the bottom
    # Darker where the fabric turns away at the sides; an n95's ridge splits the light.
    shade = (1 + grain) - (0.2 * a - np.float32(light)) * a
    if lay.style == "n95":
        shade += np.clip(a * np.float32(10 * side * 0.07), -0.07, 0.07)
    shade += _lookup(_down_shading(lay), t)
    tex = _texture(paint, lx, ly, lay.unit) * shade[..., None]
    dark = sum(paint.base.tolist()) < 90 * len(paint.base)
    fold = paint.base + 35 if dark else paint.base * 0.7  # seams and pleats: lighter on dark cloth
    lines = lay.to_image(lay.lines) - np.array([x0, y0], np.float64)
    folds = _coverage((h, w), lines, _WIDTHS[lay.style][0] * lay.unit)[..., None]
    return tex + (fold - tex) * (0.7 * folds)


def draw_mask(rgb: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator,
              style: str | None = None, fill: str | None = None) -> np.ndarray:
    """A new H x W x 3 uint8 image with a mask drawn over the nose and mouth.

    landmarks: 5 x 2 pixel (x, y) in MTCNN's order (left eye, right eye, nose, left and right
    mouth corner; left as seen in the image). style (MASK_STYLES) and fill (MASK_FILLS) are
    drawn from rng when None. A grayscale image (equal channels) gets a gray mask.
    """
    from facecmp.images import array_to_rgb

    return _render(array_to_rgb(rgb, "image"), landmarks, rng, style, fill)


def draw_mask_on_crop(crop: np.ndarray, rng: np.random.Generator, style: str | None = None,
                      fill: str | None = None) -> np.ndarray:
    """draw_mask on an aligned face crop (H x W, H x W x 1 or H x W x 3 uint8), whose
    landmarks are the alignment template's (facecmp.align); the result has the crop's shape."""
    if not isinstance(crop, np.ndarray) or crop.dtype != np.uint8 or crop.ndim not in (2, 3) \
            or (crop.ndim == 3 and crop.shape[2] not in (1, 3)):
        kind = (f"{crop.dtype} array of shape {crop.shape}" if isinstance(crop, np.ndarray)
                else type(crop).__name__)
        raise FacecmpError(f"expected an H x W, H x W x 1 or H x W x 3 uint8 crop, got {kind}")
    h, w = crop.shape[:2]
    marks = template_points(w) * np.array([1.0, h / w])
    img = crop[:, :, None] if crop.ndim == 2 else crop
    out = _render(img, marks, rng, style, fill)
    return out[:, :, 0] if crop.ndim == 2 else out
