"""Faces of a video named against a gallery.

Frames come from OpenCV (a file, or a camera by its index); every Nth frame is analysed
(faces, identity embedding, mask, expression: facecmp.faces.analyze), its faces are followed
by facecmp.tracking, and each track is named from the mean of its embeddings so far. The CSV
of detections and the annotated copy are written as the frames go, so a video that ends early
(or a camera stopped with Ctrl-C) keeps everything read until then. Rules: docs/gallery.md.
"""

from __future__ import annotations

import csv
import functools
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from facecmp.errors import FacecmpError, ImageError
from facecmp.faces import Label, analyze
from facecmp.gallery import Gallery
from facecmp.identification import UNKNOWN, name_vectors
from facecmp.openset import DEFAULT_FAR, naming_threshold
from facecmp.tracking import Track, Tracker

if TYPE_CHECKING:
    from facecmp.api import FaceModel

# ffmpeg prints lines of its own ("moov atom not found") unless told not to; OpenCV reads this
# when it first opens a video file
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

FOURCC = {".mp4": "mp4v", ".avi": "MJPG"}  # the codecs opencv-python-headless writes
CSV_COLUMNS = ("frame", "time_s", "track", "x1", "y1", "x2", "y2", "name", "distance",
               "mask", "mask_probability", "expression", "expression_probability", "model")
CAMERA_FPS = 30.0  # the annotated video's rate when the source does not say its own


class VideoError(ImageError):
    """A video or camera that cannot be opened or read, or an output that cannot be written."""


def _commonest(counts: Counter) -> str | None:
    return counts.most_common(1)[0][0] if counts else None


@dataclass(frozen=True)
class Detection:
    """One face in one processed frame, with its track's name and distance at that frame."""

    frame: int
    time: float  # seconds from the start of the video
    track: int
    box: list[float]
    name: str
    distance: float | None  # the track's mean embedding to the named (or nearest) person
    mask: Label | None
    expression: Label | None
    model: str = "identity"  # "masked": the face wore a mask and its track was named by the masked model

    def row(self) -> list[Any]:
        """The CSV row (CSV_COLUMNS)."""
        labels = [v for lab in (self.mask, self.expression)
                  for v in ((lab.label, f"{lab.probability:.4f}") if lab else ("", ""))]
        return [self.frame, f"{self.time:.3f}", self.track, *(f"{v:.1f}" for v in self.box), self.name,
                "" if self.distance is None else f"{self.distance:.4f}", *labels, self.model]

    def to_json(self) -> dict[str, Any]:
        """frame, time, track, box, name, distance, mask and expression ({label, probability}), model."""
        return {"frame": self.frame, "time": round(self.time, 3), "track": self.track, "box": self.box,
                "name": self.name, "distance": None if self.distance is None else round(self.distance, 6),
                "mask": self.mask and self.mask.to_json(),
                "expression": self.expression and self.expression.to_json(), "model": self.model}


@dataclass
class TrackSummary:
    """A face followed over frames: its latest name, when it was seen, its commonest labels."""

    id: int
    name: str = UNKNOWN
    distance: float | None = None
    threshold: float = 0.0  # the naming distance of the model that named it
    model: str = "identity"
    candidates: list[tuple[str, float]] = field(default_factory=list)
    first_frame: int = 0
    last_frame: int = 0
    first_time: float = 0.0
    last_time: float = 0.0
    detections: int = 0
    masks: Counter = field(default_factory=Counter, repr=False)
    expressions: Counter = field(default_factory=Counter, repr=False)

    def to_json(self) -> dict[str, Any]:
        """id, name, distance, threshold, model, candidates, frames and times seen, detections,
        mask, expression."""
        return {"track": self.id, "name": self.name,
                "distance": None if self.distance is None else round(self.distance, 6),
                "threshold": round(self.threshold, 6), "model": self.model,
                "candidates": [{"name": n, "distance": round(d, 6)} for n, d in self.candidates],
                "first_frame": self.first_frame, "last_frame": self.last_frame,
                "first_time": round(self.first_time, 3), "last_time": round(self.last_time, 3),
                "detections": self.detections, "mask": _commonest(self.masks),
                "expression": _commonest(self.expressions)}


@dataclass
class VideoResult:
    """What identify_video found: every detection, every track, and how fast it went."""

    source: str
    video_fps: float  # the source's frame rate (0: not known)
    threshold: float  # the identity model's naming distance
    masked_threshold: float | None = None  # the masked model's (None: no masked vectors to search)
    frames_read: int = 0
    frames_processed: int = 0
    seconds: float = 0.0  # wall-clock time of the loop
    detections: list[Detection] = field(default_factory=list)
    tracks: dict[int, TrackSummary] = field(default_factory=dict)
    stopped: str | None = None  # why reading stopped before the end (None: the end, or max_frames)
    interrupted: bool = False  # stopped by Ctrl-C (the way to end a camera)

    @property
    def fps(self) -> float:
        """Processed frames per second of wall-clock time."""
        return self.frames_processed / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        """The summary, the tracks and the detections as one object."""
        return {"source": self.source, "video_fps": self.video_fps, "threshold": round(self.threshold, 6),
                "masked_threshold": None if self.masked_threshold is None else round(self.masked_threshold, 6),
                "frames_read": self.frames_read, "frames_processed": self.frames_processed,
                "seconds": round(self.seconds, 3), "fps": round(self.fps, 2), "stopped": self.stopped,
                "tracks": [t.to_json() for t in self.tracks.values()],
                "detections": [d.to_json() for d in self.detections]}


def open_video(source: str | Path | int) -> tuple[cv2.VideoCapture, str, bool]:
    """An opened capture, its name in messages, and whether it is a camera; VideoError if it
    cannot be opened. An int, or digits that name no file, is a camera index."""
    text = str(source)
    camera = isinstance(source, int) or (text.isdigit() and not Path(text).exists())
    if not camera and not Path(text).is_file():
        raise VideoError(f"{text}: no such file" if not Path(text).exists() else f"{text}: not a file")
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # its warnings are our one line
    try:
        cap = cv2.VideoCapture(int(text)) if camera else cv2.VideoCapture(text)
    finally:
        cv2.utils.logging.setLogLevel(level)
    if not cap.isOpened():
        cap.release()
        raise VideoError(f"cannot open camera {int(text)} (no camera with that index, or it is busy)"
                         if camera else f"{text}: cannot be read as a video (not a video, or damaged)")
    return cap, f"camera {int(text)}" if camera else text, camera


def draw(bgr: np.ndarray, detections: list[Detection]) -> None:
    """Draw each detection's box, track, name, distance, mask and expression on a BGR frame."""
    scale = max(0.35, min(bgr.shape[:2]) / 700)
    thick = max(1, round(scale * 2))
    for d in detections:
        colour = (60, 60, 230) if d.name == UNKNOWN else (60, 200, 60)
        x1, y1, x2, y2 = (int(round(v)) for v in d.box)
        cv2.rectangle(bgr, (x1, y1), (x2, y2), colour, thick)
        dist = "" if d.distance is None else f" {d.distance:.2f}"
        lines = [f"#{d.track} {d.name}{dist}", " ".join(lab.label for lab in (d.mask, d.expression) if lab)]
        height = int(22 * scale) + 4
        y = y1 - height * len(lines) if y1 >= height * len(lines) else y2
        for line in filter(None, lines):
            w = cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)[0][0]
            x = max(0, min(x1, bgr.shape[1] - w - 4))  # inside the frame
            cv2.rectangle(bgr, (x, y), (x + w + 4, y + height), colour, -1)
            cv2.putText(bgr, line, (x + 2, y + height - 4), cv2.FONT_HERSHEY_SIMPLEX, scale,
                        (255, 255, 255), thick, cv2.LINE_AA)
            y += height


class _Outputs:
    """The CSV of detections and the annotated video, written as the frames go."""

    def __init__(self, out: Path | None, csv_path: Path | None, fps: float) -> None:
        self.out, self.fps, self.writer = out, fps, None
        try:
            self.file = open(csv_path, "w", newline="") if csv_path is not None else None
        except OSError as exc:
            raise VideoError(f"{csv_path}: cannot write ({exc.strerror})") from None
        self.csv = csv.writer(self.file) if self.file else None
        if self.csv:
            self.csv.writerow(CSV_COLUMNS)

    def rows(self, detections: list[Detection]) -> None:
        """Append detections to the CSV (flushed, so a killed run keeps them)."""
        if self.csv:
            self.csv.writerows(d.row() for d in detections)
            self.file.flush()

    def frame(self, bgr: np.ndarray, detections: list[Detection]) -> None:
        """Write one frame, annotated, to the video (opened at the first frame's size)."""
        if self.out is None:
            return
        if self.writer is None:
            fourcc = cv2.VideoWriter_fourcc(*FOURCC[self.out.suffix.lower()])
            self.writer = cv2.VideoWriter(str(self.out), fourcc, self.fps, (bgr.shape[1], bgr.shape[0]))
            if not self.writer.isOpened():
                raise VideoError(f"{self.out}: cannot write a video there")
        draw(bgr, detections)
        self.writer.write(bgr)

    def close(self) -> None:
        """Finish both files (an .mp4 is unreadable until its writer is released)."""
        if self.writer is not None:
            self.writer.release()
        if self.file is not None:
            self.file.close()


def _name_tracks(gallery: Gallery, tracks: list[Track], top_k: int, result: VideoResult) -> list[tuple]:
    """(name, distance, candidates, threshold, model) of each track: from the mean of its
    embeddings, or, while it wears a mask and the gallery holds masked vectors, from the mean of
    the masked model's embeddings of its masked frames."""
    out: list[tuple | None] = [None] * len(tracks)
    for masked in (False, True):
        mine = [i for i, t in enumerate(tracks)
                if masked == (result.masked_threshold is not None and t.masked and t.masked_mean is not None)]
        if not mine:
            continue
        limit = result.masked_threshold if masked else result.threshold
        vectors = np.stack([tracks[i].masked_mean if masked else tracks[i].mean for i in mine])
        for i, named in zip(mine, name_vectors(gallery.searcher(masked=masked), vectors, top_k, limit)):
            out[i] = (*named, limit, "masked" if masked else "identity")
    return out  # type: ignore[return-value]


def _progress(result: VideoResult, total: int, started: float, last: float) -> float:
    """A progress line on stderr at most once a second; when it was last printed."""
    now = time.monotonic()
    if now - last < 1.0:
        return last
    of = f"/{total} ({100 * result.frames_read / total:.0f}%)" if total > 0 else ""
    rate = result.frames_processed / max(now - started, 1e-9)
    print(f"\rvideo: frame {result.frames_read}{of}, {rate:.1f} fps", end="", file=sys.stderr, flush=True)
    return now


def identify_video(gallery: Gallery, source: str | Path | int, model: FaceModel | str | Path | None = None,
                   *, out: str | Path | None = None, csv_path: str | Path | None = None, every: int = 1,
                   max_frames: int | None = None, top_k: int = 5, detector: str | None = None,
                   threshold: float | None = None, far: float = DEFAULT_FAR,
                   progress: bool = False) -> VideoResult:
    """Name the faces of a video file or camera (an int index) against a gallery, following each
    face over frames; optionally write the annotated video (.mp4/.avi) and a CSV of detections.

    Every `every`th frame is analysed, and at most `max_frames` are read. A track is named from
    the mean of its embeddings (docs/gallery.md, "Video"), at `threshold` if given, else at the
    gallery's open-set threshold for `far` (openset.naming_threshold). A video that cannot be
    opened, or gives no frame, raises VideoError; one that ends early, or Ctrl-C, stops the loop with
    `stopped` set, and everything read until then is in the result and the files.
    """
    if every < 1 or top_k < 1 or (max_frames is not None and max_frames < 1):
        raise FacecmpError("--every, --top-k and --max-frames must be at least 1")
    if detector == "none":
        raise FacecmpError("a video needs a face detector, not --detector none")
    out, csv_path = (None if p is None else Path(p) for p in (out, csv_path))
    if out is not None and out.suffix.lower() not in FOURCC:
        raise VideoError(f"{out}: the annotated video must end in {' or '.join(FOURCC)}")
    if out is not None and csv_path is not None and out.resolve() == csv_path.resolve():
        raise VideoError(f"{out}: the video and the CSV cannot be one file")
    cap, label, camera = open_video(source)  # a bad source fails before any model loads
    outputs = None
    try:
        fm, _ = gallery.use_model(model)
        people = len(gallery.searcher().snap.names)
        masked_threshold = (naming_threshold(fm.masked.meta, people, threshold, far)
                            if fm.masked is not None and gallery.masked_model is not None else None)
        threshold = naming_threshold(fm.meta, people, threshold, far)
        tracker = Tracker(max_distance=fm.meta.threshold_for("cosine")[1])  # the 1:1 rule, whatever names
        result = VideoResult(label, 0.0 if camera else max(0.0, cap.get(cv2.CAP_PROP_FPS)), threshold,
                             masked_threshold)
        outputs = _Outputs(out, csv_path, result.video_fps or cap.get(cv2.CAP_PROP_FPS) or CAMERA_FPS)
        step = functools.partial(_process, gallery, fm, tracker, top_k=top_k, detector=detector)
        _read(cap, camera, result, outputs, step, every, max_frames, progress)
    finally:
        if outputs is not None:
            outputs.close()
        cap.release()
    if not result.frames_read:
        raise VideoError(f"{label}: no frame could be read (not a video, or damaged)")
    return result


def _read(cap: cv2.VideoCapture, camera: bool, result: VideoResult, outputs: _Outputs,
          step: Callable[..., list[Detection]], every: int, max_frames: int | None, progress: bool) -> None:
    """The loop: read each frame, analyse every Nth, write; until the end, max_frames or Ctrl-C."""
    total = -1 if camera else int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    started = shown = time.monotonic()
    current: list[Detection] = []
    try:
        while max_frames is None or result.frames_read < max_frames:
            ok, bgr = cap.read()
            n = result.frames_read
            if not ok:
                if camera or total > n:
                    result.stopped = (f"{result.source} gave no frame after frame {n}" if camera else
                                      f"{result.source} could not be read after frame {n} of the {total} "
                                      "it declares (truncated or damaged)")
                break
            if result.video_fps:
                when = n / result.video_fps
            else:
                when = time.monotonic() - started if camera else cap.get(cv2.CAP_PROP_POS_MSEC) / 1000
            if n % every == 0:
                current = step(bgr, result, when)
                outputs.rows(current)
            outputs.frame(bgr, current)
            result.frames_read += 1
            if progress:
                shown = _progress(result, total, started, shown)
    except KeyboardInterrupt:
        result.stopped, result.interrupted = f"stopped by Ctrl-C after {result.frames_read} frames", True
    finally:
        result.seconds = time.monotonic() - started
        if shown != started:
            print(file=sys.stderr)


def _process(gallery: Gallery, fm: FaceModel, tracker: Tracker, bgr: np.ndarray, result: VideoResult,
             when: float, *, top_k: int, detector: str | None) -> list[Detection]:
    """Analyse one frame, follow and name its faces, record them in result; its detections."""
    frame = result.frames_read
    searched = result.masked_threshold is not None
    # the masked model's embedding comes only with the faces the mask head calls masked
    faces = analyze(np.ascontiguousarray(bgr[:, :, ::-1]), fm, detector, masked_embeddings=searched)
    result.frames_processed += 1
    masked = [f.masked_embedding for f in faces]
    tracks = tracker.update(frame, np.array([f.box for f in faces]).reshape(-1, 4),
                            np.array([f.embedding for f in faces]), masked)
    detections = []
    for face, track, (name, dist, cands, limit, model) in zip(faces, tracks,
                                                              _name_tracks(gallery, tracks, top_k, result)):
        d = Detection(frame, when, track.id, face.box, name, dist, face.mask, face.expression, model)
        s = result.tracks.setdefault(track.id, TrackSummary(track.id, first_frame=frame, first_time=when))
        s.name, s.distance, s.candidates, s.last_frame, s.last_time = name, dist, cands, frame, when
        s.threshold, s.model = limit, model
        s.detections += 1
        s.masks.update([face.mask.label] if face.mask else [])
        s.expressions.update([face.expression.label] if face.expression else [])
        detections.append(d)
    result.detections += detections
    return detections
