"""Enrolment from a video file or a camera: frames of one person chosen, kept as photos in the
gallery's own folder (facecmp.photostore), and enrolled one at a time.

The rule for a frame to be kept: it shows exactly one face; that face is within the identity
model's 1:1 threshold (cosine) of the mean of the faces kept so far, so a second person who
walks in is not enrolled under the name; and it is at least MIN_SPREAD (cosine distance) from
every face kept so far, so a person who sits still gives one photo, not a run of copies.
Reading stops when `count` frames are kept, at the end of a file, after max_frames, or at
Ctrl-C; what was enrolled by then stays enrolled.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from facecmp.enrol import Outcome
from facecmp.errors import FacecmpError
from facecmp.faces import analyze
from facecmp.gallery_index import normalized
from facecmp.photostore import enroll_photo
from facecmp.video import VideoError, open_video

if TYPE_CHECKING:
    from facecmp.api import FaceModel
    from facecmp.gallery import Gallery

# Frames of one still photo drifting a few pixels lie 0.001-0.06 apart for the bundled model,
# two photos of one person typically 0.2-0.4 (docs/gallery.md, enrolment from a video).
MIN_SPREAD = 0.1
CANDIDATES_PER_PHOTO = 10  # a file is sampled evenly at about this many analysed frames per photo wanted
CAMERA_EVERY = 5


@dataclass
class Capture:
    """What reading a video for enrolment found: frames read and analysed, the frames kept,
    and why the others were passed over."""

    source: str
    frames_read: int = 0
    frames_analysed: int = 0
    kept: list[int] = field(default_factory=list)
    no_face: int = 0
    several_faces: int = 0
    other_person: int = 0
    too_alike: int = 0
    stopped: str | None = None

    def summary(self) -> str:
        """One line: read, analysed, kept, passed over and why."""
        why = [f"{n} {what}" for n, what in ((self.no_face, "without a face"),
                                             (self.several_faces, "with several faces"),
                                             (self.other_person, "of another person"),
                                             (self.too_alike, "too like a kept one")) if n]
        kept = ", ".join(map(str, self.kept)) or "none"
        return (f"{self.source}: read {self.frames_read} frames, analysed {self.frames_analysed}, kept "
                f"{len(self.kept)} (frames {kept})" + (f"; passed over {', '.join(why)}" if why else ""))


def enroll_video(gallery: Gallery, name: str, source: str | Path | int, model: FaceModel | str | Path | None = None,
                 count: int = 5, every: int | None = None, max_frames: int | None = None,
                 append: bool = True, detector: str | None = None,
                 progress: bool = False) -> tuple[list[Outcome], Capture]:
    """Enrol up to `count` frames of one person from a video file or camera index (see the module
    for which frames); each kept frame is stored as a PNG in DB.photos/ and enrolled in its own
    transaction. `every`: analyse every Nth frame (default: a file sampled evenly, about
    CANDIDATES_PER_PHOTO analysed frames per photo wanted; a camera every CAMERA_EVERY-th).
    append=False refuses a name already enrolled. VideoError when the source cannot be read."""
    name = name.strip()
    if not name:
        raise FacecmpError("a person's name cannot be empty")
    if count < 1:
        raise FacecmpError(f"--frames must be at least 1, got {count}")
    if not append and gallery.has_person(name):
        raise FacecmpError(f"{name} is already in {gallery.path} (--no-append refuses to add photos)")
    fm, _ = gallery.use_model(model)
    _, limit = fm.meta.threshold_for("cosine")
    cap, label, camera = open_video(source)
    total = -1 if camera else int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    if every is None:
        every = CAMERA_EVERY if camera or total <= 0 else max(1, total // (count * CANDIDATES_PER_PHOTO))
    found = Capture(label)
    outcomes: list[Outcome] = []
    kept: list[np.ndarray] = []
    started = time.monotonic()
    try:
        while len(kept) < count and (max_frames is None or found.frames_read < max_frames):
            ok, bgr = cap.read()
            if not ok:
                if camera or total > found.frames_read:
                    found.stopped = f"{label} gave no frame after frame {found.frames_read}"
                break
            frame, found.frames_read = found.frames_read, found.frames_read + 1
            if frame % every:
                continue
            found.frames_analysed += 1
            faces = analyze(np.ascontiguousarray(bgr[:, :, ::-1]), fm, detector, attributes=False)
            if len(faces) != 1:
                found.no_face += not faces
                found.several_faces += len(faces) > 1
                continue
            v = normalized(faces[0].embedding[None])[0]
            if kept and 1.0 - float(v @ normalized(np.mean(kept, axis=0)[None])[0]) > limit:
                found.other_person += 1
                continue
            if kept and max(float(v @ k) for k in kept) > 1.0 - MIN_SPREAD:
                found.too_alike += 1
                continue
            ok, png = cv2.imencode(".png", bgr)
            if not ok:
                raise VideoError(f"{label}: frame {frame} could not be encoded as PNG")
            outcome = enroll_photo(gallery, name, png.tobytes(), ".png", fm, detector)
            outcomes.append(Outcome(outcome.path, outcome.status, outcome.name,
                                    f"frame {frame}: {outcome.note}" if outcome.note else None))
            if outcome.name == name and outcome.status != "failed":  # added, or by an earlier run
                kept.append(v)
                found.kept.append(frame)
            if progress:
                print(f"\rvideo: frame {frame + 1}, {len(kept)} of {count} photos kept "
                      f"({time.monotonic() - started:.0f} s)", end="", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        found.stopped = f"stopped by Ctrl-C after {found.frames_read} frames"
    finally:
        cap.release()
        if progress and found.kept:
            print(file=sys.stderr)
    if found.frames_read == 0:
        raise VideoError(f"{label}: no frame could be read (not a video, or damaged)")
    return outcomes, found
