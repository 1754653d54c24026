"""Faces followed across the frames of a video: plain numpy, no model.

The rule (docs/gallery.md, "Video"): a face of a processed frame continues the track whose
last box overlaps it most (IoU >= iou_min), provided its embedding is within max_distance
(cosine) of the mean of the track's embeddings so far; pairs are taken greedily, highest IoU
first. A face that continues no track starts one; a track not seen for more than max_missed
processed frames ends. A track is named from the mean of all its embeddings (while it wears a
mask: of the masked model's embeddings of its masked frames), so one blurred
or turned frame does not rename it, and a different person stepping into the same place
(a cut) fails the distance check and starts a new track instead of inheriting the name.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def _area(boxes: np.ndarray) -> np.ndarray:
    return np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box of a (n x 4, x1 y1 x2 y2) with every box of b (m x 4)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    w = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    h = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = w * h
    union = _area(a)[:, None] + _area(b)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, np.float32)
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


@dataclass
class Track:
    """One face followed over frames: its last box and the sum of its unit embeddings."""

    id: int
    box: np.ndarray
    total: np.ndarray = field(repr=False)  # sum of the L2-normalised embeddings seen
    first_frame: int
    last_frame: int
    hits: int = 1  # processed frames the face was seen in
    missed: int = 0  # processed frames since it was last seen
    masked_total: np.ndarray | None = field(default=None, repr=False)  # sum of the masked model's
    masked_hits: int = 0  # unit embeddings, over the frames the face wore a mask
    masked: bool = False  # the face wore a mask when it was last seen

    @property
    def mean(self) -> np.ndarray:
        """The unit mean of the track's embeddings: what it is identified by."""
        return _unit(self.total)

    @property
    def masked_mean(self) -> np.ndarray | None:
        """The unit mean of the masked model's embeddings of its masked frames (None: none)."""
        return None if self.masked_total is None else _unit(self.masked_total)

    def _add_masked(self, vector: np.ndarray | None) -> None:
        self.masked = vector is not None
        if vector is not None:
            unit = _unit(vector)
            self.masked_total = unit if self.masked_total is None else self.masked_total + unit
            self.masked_hits += 1


class Tracker:
    """Assigns each face of a processed frame a track id (see the module docstring for the rule)."""

    def __init__(self, iou_min: float = 0.3, max_distance: float = 0.5, max_missed: int = 5) -> None:
        self.iou_min, self.max_distance, self.max_missed = iou_min, max_distance, max_missed
        self.active: list[Track] = []
        self.next_id = 1

    def update(self, frame: int, boxes: np.ndarray, embeddings: np.ndarray,
               masked: list[np.ndarray | None] | None = None) -> list[Track]:
        """The track of each face (n boxes x 4, n embeddings x d) of frame, in the faces' order.
        masked: per face, the masked model's embedding where the face wears a mask, else None
        (pooled apart, to name a track while it wears one)."""
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        masked = masked if masked is not None else [None] * len(boxes)
        units = _unit(np.asarray(embeddings).reshape(len(boxes), -1)) if len(boxes) else np.zeros((0, 0))
        chosen: list[Track | None] = [None] * len(boxes)
        if self.active and len(boxes):
            ious = iou_matrix(np.stack([t.box for t in self.active]), boxes)
            dists = 1.0 - np.stack([t.mean for t in self.active]) @ units.T
            ok = (ious >= self.iou_min) & (dists <= self.max_distance)
            used: set[int] = set()
            for flat in np.argsort(-ious, axis=None, kind="stable"):
                t, f = np.unravel_index(flat, ious.shape)
                if ok[t, f] and t not in used and chosen[f] is None:
                    used.add(int(t))
                    chosen[f] = self._extend(self.active[t], frame, boxes[f], units[f])
        for track in self.active:
            if track.last_frame != frame:
                track.missed += 1
        self.active = [t for t in self.active if t.missed <= self.max_missed]
        for f, track in enumerate(chosen):
            if track is None:
                chosen[f] = track = Track(self.next_id, boxes[f], units[f].copy(), frame, frame)
                self.next_id += 1
                self.active.append(track)
            track._add_masked(masked[f])
        return chosen  # type: ignore[return-value]

    @staticmethod
    def _extend(track: Track, frame: int, box: np.ndarray, unit: np.ndarray) -> Track:
        track.box, track.total = box, track.total + unit
        track.last_frame, track.hits, track.missed = frame, track.hits + 1, 0
        return track
