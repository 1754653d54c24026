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
@MODEL_OPT
@DETECTOR_OPT
@friendly
def enroll(db, name, images, bulk, no_append, model, detector) -> None:
    """Enrol photos of a person (NAME IMAGE_OR_DIR...), or of many people (--bulk DIR)."""
    from facecmp import enrol

    if bulk is not None and name is not None:
        raise FacecmpError("--bulk DIR takes no NAME or images")
    if bulk is None and (name is None or not images):
        raise FacecmpError("give NAME and at least one image or folder, or --bulk DIR")
    files = [] if bulk is not None else _image_files(images)
    with _open(db, create=True) as gallery:
        if bulk is not None:
            outcomes = enrol.enroll_folders(gallery, bulk, model, not no_append, detector, progress=True)
        else:
            outcomes = enrol.enroll(gallery, name, files, model, not no_append, detector)
    _report(outcomes, db)


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
@click.argument("images", nargs=-1, required=True)
@click.option("--top-k", type=click.IntRange(1), default=5, show_default=True, help="Candidates per face.")
@click.option("--threshold", type=float, help="Cosine distance to name a face (default: the model's calibrated one).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON list, an object per face.")
@MODEL_OPT
@DETECTOR_OPT
@friendly
def identify(db, images, top_k, threshold, as_json, model, detector) -> None:
    """Name every face of each photo as an enrolled person, or unknown; with mask and expression."""
    from facecmp.api import load_model
    from facecmp.identification import identify as identify_faces

    files = _image_files(images)
    results, problems = [], []
    with _open(db) as gallery:
        fm = load_model(model)  # once, not per photo
        for path in files:
            try:
                found = identify_faces(gallery, path, fm, top_k, detector, threshold)
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
    """Remove a person and all their photos."""
    with _open(db) as g:
        n = g.remove(name)
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
