"""Photos into a gallery: enrol people (one photo per transaction), and re-embed a gallery
with another identity model. Each photo is read, detected and embedded before its write."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from facecmp.detect import box_iou
from facecmp.errors import FacecmpError, ModelError
from facecmp.faces import AnalyzedFace, analyze
from facecmp.gallery import Gallery, file_sha256

if TYPE_CHECKING:
    from facecmp.api import FaceModel


@dataclass(frozen=True)
class Outcome:
    """What became of one photo: added, skipped (already there, or its person refused) or failed."""

    path: str
    status: str
    name: str | None = None
    note: str | None = None


def _faces(path: str, fm: FaceModel, detector: str | None) -> list[AnalyzedFace] | str:
    """The faces of a photo file, most confident first, or why there are none."""
    try:
        faces = analyze(path, fm, detector, attributes=False, masked_embeddings=True)
    except FacecmpError as exc:
        return str(exc)
    return faces or f"no face found in {path}"


def _enroll_one(gallery: Gallery, name: str, path: str, fm: FaceModel, key: str,
                detector: str | None, new_person: bool) -> Outcome:
    sha = file_sha256(path)
    owner = gallery.owner_of(sha) if sha else None
    if owner is not None:
        return Outcome(path, "skipped", owner, f"already enrolled as {owner}")
    faces = _faces(path, fm, detector)
    if isinstance(faces, str):
        return Outcome(path, "failed", name, faces)
    masked = gallery.masked_model
    extra = (masked, faces[0].masked_embedding) if masked and faces[0].masked_embedding is not None else None
    if not gallery.add_image(name, os.path.abspath(path), sha, faces[0].box, len(faces),
                             faces[0].embedding, key, new_person, extra):
        owner = gallery.owner_of(sha)
        return Outcome(path, "skipped", owner, f"already enrolled as {owner}")
    note = f"{len(faces)} faces found; enrolled the most confident" if len(faces) > 1 else None
    return Outcome(path, "added", name, note)


def enroll(gallery: Gallery, name: str, images: list[str | Path],
           model: FaceModel | str | Path | None = None, append: bool = True,
           detector: str | None = None) -> list[Outcome]:
    """Enrol photos of one person, each in its own transaction; one Outcome per photo.

    A photo whose content is in the gallery already is skipped; one that cannot be read or
    has no face fails and the rest go on; of several faces the most confident is enrolled
    (the count is recorded). append=False refuses a name already enrolled (FacecmpError).
    """
    name = name.strip()
    if not name:
        raise FacecmpError("a person's name cannot be empty")
    if not append and gallery.has_person(name):
        raise FacecmpError(f"{name} is already in {gallery.path} (--no-append refuses to add photos)")
    fm, key = gallery.use_model(model)
    out: list[Outcome] = []
    for image in images:
        new_person = not append and not any(o.status == "added" for o in out)
        out.append(_enroll_one(gallery, name, str(image), fm, key, detector, new_person))
    return out


def enroll_folders(gallery: Gallery, root: str | Path, model: FaceModel | str | Path | None = None,
                   append: bool = True, detector: str | None = None,
                   progress: bool = False) -> list[Outcome]:
    """Enrol each identity folder of root under its folder name (see enroll); a person refused
    by append=False is one skipped Outcome and the others go on. Progress on stderr."""
    from facecmp.images import is_image_name

    root = Path(root)
    if not root.is_dir():
        raise FacecmpError(f"{root} is not a folder of identity folders")
    folders = sorted(d for d in root.iterdir() if d.is_dir())
    if not folders:
        raise FacecmpError(f"{root} has no identity folders")
    fm, _ = gallery.use_model(model)
    out: list[Outcome] = []
    for i, folder in enumerate(folders):
        files = sorted(p for p in folder.rglob("*") if p.is_file() and is_image_name(p))
        if not files:
            out.append(Outcome(str(folder), "skipped", folder.name, "no photos in this folder"))
        try:
            out += enroll(gallery, folder.name, files, fm, append, detector)
        except ModelError:
            raise
        except FacecmpError as exc:
            out.append(Outcome(str(folder), "skipped", folder.name, str(exc)))
        if progress:
            print(f"\renrolling: {i + 1}/{len(folders)} people", end="", file=sys.stderr, flush=True)
    if progress:
        print(file=sys.stderr)
    return out


def _overlap(a: list[float] | None, b: list[float] | None) -> float:
    """Intersection over union of two boxes (0 when either is missing)."""
    return box_iou(a, b) if a and b else 0.0


def reembed(gallery: Gallery, model: FaceModel | str | Path | None = None,
            detector: str | None = None, progress: bool = False) -> list[Outcome]:
    """Embed every enrolled photo again with an identity model, then search with that model.

    Where the model names a masked model, each photo gets that model's vector too. Photos are
    read from their enrolled paths, each written in its own transaction, so an
    interrupted run continues where it stopped; of several faces the one at the enrolled box
    is taken. A photo that is gone or changed fails and has no vector of the new model (see
    Gallery.stats). The switch, which drops the old model's vectors, is one write at the end.
    """
    from facecmp.api import load_model
    from facecmp.gallery import model_keys

    fm = load_model(model, "identity")
    key, masked = model_keys(fm)
    with gallery.write():
        gallery.add_models(fm)
    todo = {row[0]: row for row in gallery.images_without(key)}
    if masked is not None:
        todo.update((row[0], row) for row in gallery.images_without(masked))
    todo = [todo[i] for i in sorted(todo)]
    out = []
    for n, (image_id, path, sha, box, name) in enumerate(todo):
        if file_sha256(path) != sha:
            why = "changed since it was enrolled" if Path(path).is_file() else "gone"
            out.append(Outcome(path, "failed", name, f"{path}: {why}; remove {name} and enrol again"))
        else:
            faces = _faces(path, fm, detector)
            if isinstance(faces, str):
                out.append(Outcome(path, "failed", name, faces))
            else:
                face = max(faces, key=lambda f: _overlap(f.box, box))  # ties: the most confident
                vectors = {key: face.embedding}
                if masked is not None:
                    vectors[masked] = face.masked_embedding
                gallery.set_vectors(image_id, vectors)
                out.append(Outcome(path, "added", name))
        if progress:
            print(f"\rre-embedding: {n + 1}/{len(todo)} photos", end="", file=sys.stderr, flush=True)
    if progress and todo:
        print(file=sys.stderr)
    gallery.switch_model(key, masked)
    return out
