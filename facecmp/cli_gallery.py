"""The gallery commands (enroll, identify, gallery list|stats|remove|reembed), thin over
facecmp.gallery, facecmp.enrol and facecmp.identification; registered on the main group by cli.py."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import click

from facecmp.cli import DETECTOR_OPT, MODEL_OPT, _image_files, friendly, main
from facecmp.errors import FacecmpError, ImageError, NoFaceError
from facecmp.openset import DEFAULT_FAR

GALLERY_OPT = click.option("--gallery", "db", required=True, type=click.Path(path_type=Path),
                           help="The gallery database file (SQLite).")
JSON_OPT = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def _open(db: Path, create: bool = False):
    from facecmp.gallery import Gallery

    return Gallery(db, create=create)


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _report(outcomes, db: Path) -> None:
    """One stderr line per photo not added (or added with a note), then the summary; exit 1 when
    nothing was added and something failed."""
    for o in outcomes:
        if o.status != "added" or o.note:
            text = o.note if o.path in (o.note or "") else f"{o.path}: {o.note}"
            click.echo(f"{'note' if o.status == 'added' else o.status}: {text}", err=True)
    counts = Counter(o.status for o in outcomes)
    people = len({o.name for o in outcomes if o.status == "added"})
    click.echo(f"enrolled {_plural(counts['added'], 'photo', 'photos')} of "
               f"{_plural(people, 'person', 'people')} into {db} "
               f"({counts['skipped']} skipped, {counts['failed']} failed)")
    if not counts["added"] and counts["failed"]:
        sys.exit(1)


@main.command()
@GALLERY_OPT
@click.argument("name", required=False)
@click.argument("images", nargs=-1)
@click.option("--bulk", type=click.Path(path_type=Path),
              help="Enrol each identity folder of this folder under its folder name.")
@click.option("--no-append", is_flag=True, help="Refuse a name that is already enrolled.")
@click.option("--video", metavar="FILE_OR_CAMERA",
              help="Enrol NAME from frames of a video file or a camera index (0, 1, ...).")
@click.option("--frames", type=click.IntRange(1), default=5, show_default=True,
              help="--video: photos to keep (frames with one face, unlike each other).")
@click.option("--every", type=click.IntRange(1), help="--video: analyse every Nth frame "
              "(default: a file sampled evenly, a camera every 5th).")
@click.option("--max-frames", type=click.IntRange(1), help="--video: read at most this many frames.")
@MODEL_OPT
@DETECTOR_OPT
@friendly
def enroll(db, name, images, bulk, no_append, video, frames, every, max_frames, model, detector) -> None:
    """Enrol photos of a person (NAME IMAGE_OR_DIR...), of many people (--bulk DIR), or frames
    of a video or camera (NAME --video FILE_OR_CAMERA)."""
    from facecmp import enrol

    if bulk is not None and (name is not None or video is not None):
        raise FacecmpError("--bulk DIR takes no NAME, images or --video")
    if video is not None:
        if name is None or images:
            raise FacecmpError("--video takes NAME and no images")
        _enroll_video(db, name, video, frames, every, max_frames, not no_append, model, detector)
        return
    if every is not None or max_frames is not None:
        raise FacecmpError("--every and --max-frames go with --video")
    if bulk is None and (name is None or not images):
        raise FacecmpError("give NAME and at least one image or folder, --bulk DIR, or NAME --video FILE_OR_CAMERA")
    files = [] if bulk is not None else _image_files(images)
    with _open(db, create=True) as gallery:
        if bulk is not None:
            outcomes = enrol.enroll_folders(gallery, bulk, model, not no_append, detector, progress=True)
        else:
            outcomes = enrol.enroll(gallery, name, files, model, not no_append, detector)
    _report(outcomes, db)


def _enroll_video(db, name, video, frames, every, max_frames, append, model, detector) -> None:
    """enroll --video: the library's capture, a line on what it read and kept, then the report."""
    from facecmp.capture import enroll_video

    with _open(db, create=True) as gallery:
        outcomes, found = enroll_video(gallery, name, video, model, frames, every, max_frames, append,
                                       detector, progress=True)
    click.echo(found.summary(), err=True)
    if found.stopped:
        click.echo(f"note: {found.stopped}", err=True)
    _report(outcomes, db)
    if not outcomes:
        sys.exit(3 if found.frames_analysed and found.no_face == found.frames_analysed else 1)


def _face_line(r) -> str:
    """One face's identification as a line of text."""
    box = "" if r.face.box is None else " [" + ", ".join(f"{v:.0f}" for v in r.face.box) + "]"
    if r.distance is None:
        who = "unknown (the gallery is empty)"
    else:
        who = f"{r.name} (distance {r.distance:.4f} {'<=' if r.distance <= r.threshold else '>'} {r.threshold:.4f})"
    attrs = "".join(f", {label.label} {label.probability:.2f}" for label in (r.face.mask, r.face.expression))
    cands = "; ".join(f"{n} {d:.4f}" for n, d in r.candidates)
    return f"{r.face.source}{box}: {who}{attrs}" + (f"; candidates: {cands}" if cands else "")


@main.command()
@GALLERY_OPT
@click.argument("images", nargs=-1)
@click.option("--top-k", type=click.IntRange(1), default=5, show_default=True, help="Candidates per face.")
@click.option("--threshold", type=float, help="Cosine distance to name a face (default: set by --far and the gallery's size).")
@click.option("--far", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=DEFAULT_FAR,
              show_default=True, help="Share of strangers the gallery may name; sets the threshold by its size.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON list, an object per face (--video: one object).")
@click.option("--video", metavar="FILE_OR_CAMERA", help="A video file, or a camera index (0, 1, ...), instead of photos.")
@click.option("--out", type=click.Path(path_type=Path), help="--video: write the annotated video (.mp4 or .avi).")
@click.option("--csv", "csv_path", type=click.Path(path_type=Path), help="--video: write a CSV of detections.")
@click.option("--every", type=click.IntRange(1), default=1, show_default=True,
              help="--video: analyse every Nth frame (the others are written with the last boxes).")
@click.option("--max-frames", type=click.IntRange(1), help="--video: read at most this many frames.")
@MODEL_OPT
@DETECTOR_OPT
@friendly
def identify(db, images, top_k, threshold, far, as_json, video, out, csv_path, every, max_frames, model,
             detector) -> None:
    """Name every face of each photo (or of a --video) as an enrolled person, or unknown; with mask
    and expression."""
    from facecmp.api import load_model
    from facecmp.identification import identify as identify_faces

    if video is not None:
        if images:
            raise FacecmpError("give photos or --video, not both")
        _identify_video(db, video, out, csv_path, every, max_frames, top_k, threshold, far, as_json, model,
                        detector)
        return
    if out or csv_path or every != 1 or max_frames:
        raise FacecmpError("--out, --csv, --every and --max-frames go with --video")
    if not images:
        raise FacecmpError("give photos to identify, or --video FILE_OR_CAMERA_INDEX")
    files = _image_files(images)
    results, problems = [], []
    with _open(db) as gallery:
        fm = load_model(model)  # once, not per photo
        for path in files:
            try:
                found = identify_faces(gallery, path, fm, top_k, detector, threshold, far=far)
            except ImageError as exc:  # this photo only; a bad model or option stops the command
                click.echo(f"error: {exc}", err=True)
                problems.append(exc)
                continue
            if not found:
                click.echo(f"note: no face found in {path}", err=True)
                problems.append(NoFaceError(str(path)))
            results += found
            if not as_json:
                for r in found:
                    click.echo(_face_line(r))
    if as_json:
        click.echo(json.dumps([r.to_json() for r in results]))
    if len(problems) == len(files):
        sys.exit(3 if all(isinstance(p, NoFaceError) for p in problems) else 1)


def _track_line(t) -> str:
    """One track of a video as a line of text."""
    if t.distance is None:
        who = "unknown (the gallery is empty)"
    else:
        by = ", masked model" if t.model == "masked" else ""
        who = (f"{t.name} (distance {t.distance:.4f} {'<=' if t.distance <= t.threshold else '>'} "
               f"{t.threshold:.4f}{by})")
    summary = t.to_json()
    labels = "".join(f", {summary[k]}" for k in ("mask", "expression") if summary[k])
    cands = "; ".join(f"{n} {d:.4f}" for n, d in t.candidates)
    return (f"track {t.id}: {who}, frames {t.first_frame}-{t.last_frame} ({t.first_time:.2f}-"
            f"{t.last_time:.2f} s, {_plural(t.detections, 'detection', 'detections')}){labels}"
            + (f"; candidates: {cands}" if cands else ""))


def _identify_video(db, video, out, csv_path, every, max_frames, top_k, threshold, far, as_json, model,
                    detector) -> None:
    """identify --video: the library loop, then the tracks, the speed and the exit code."""
    from facecmp.video import identify_video

    with _open(db) as g:
        r = identify_video(g, video, model, out=out, csv_path=csv_path, every=every, max_frames=max_frames,
                           top_k=top_k, detector=detector, threshold=threshold, far=far, progress=True)
    if as_json:
        click.echo(json.dumps(r.to_json()))
    else:
        for t in r.tracks.values():
            click.echo(_track_line(t))
    if r.stopped:
        click.echo(f"{'note' if r.interrupted else 'error'}: {r.stopped}; kept what was read", err=True)
    wrote = ", ".join(str(p) for p in (out, csv_path) if p)
    read = f"; {r.frames_read / r.seconds:.1f} frames/s read" if every > 1 and r.seconds > 0 else ""
    click.echo(f"processed {r.frames_processed} of {r.frames_read} frames in {r.seconds:.1f} s "
               f"({r.fps:.1f} fps{read}); {_plural(len(r.tracks), 'track', 'tracks')}, "
               f"{_plural(len(r.detections), 'detection', 'detections')}" + (f"; wrote {wrote}" if wrote else ""),
               err=as_json)
    if not r.detections:
        click.echo(f"note: no face found in {r.source}", err=True)
        sys.exit(3)


@main.group()
def gallery() -> None:
    """Look after a gallery: list, stats, remove NAME, reembed."""


@gallery.command("list")
@GALLERY_OPT
@JSON_OPT
@friendly
def list_people(db, as_json) -> None:
    """The enrolled people and how many photos each has."""
    with _open(db) as g:
        people = g.people()
    if as_json:
        click.echo(json.dumps([{"name": n, "images": k} for n, k in people]))
        return
    for name, k in people:
        click.echo(f"{name}\t{k}")


@gallery.command()
@GALLERY_OPT
@JSON_OPT
@friendly
def stats(db, as_json) -> None:
    """People, photos, the identity model and the generation of a gallery."""
    with _open(db) as g:
        figures = g.stats()
    if as_json:
        click.echo(json.dumps(figures))
        return
    for key, value in figures.items():
        click.echo(f"{key}: {value}")


@gallery.command()
@GALLERY_OPT
@click.argument("name")
@friendly
def remove(db, name) -> None:
    """Remove a person and all their photos (and the gallery's own copies: DB.photos/)."""
    from facecmp.photostore import remove_person

    with _open(db) as g:
        n = remove_person(g, name)
    click.echo(f"removed {name} ({_plural(n, 'photo', 'photos')}) from {db}")


@gallery.command()
@GALLERY_OPT
@MODEL_OPT
@DETECTOR_OPT
@friendly
def reembed(db, model, detector) -> None:
    """Embed every enrolled photo again with an identity model (--model), and search with it."""
    from facecmp import enrol

    with _open(db) as g:
        outcomes = enrol.reembed(g, model, detector, progress=True)
        key = g.model
    for o in outcomes:
        if o.status != "added":
            click.echo(f"{o.status}: {o.note}", err=True)
    done = sum(o.status == "added" for o in outcomes)
    click.echo(f"re-embedded {done} of {len(outcomes)} photos; {db} now searches with {key}")
    if outcomes and not done:
        sys.exit(1)
