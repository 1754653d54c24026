"""Photos a gallery keeps itself, in DB.photos/ beside the database: uploads enrolled through
`facecmp serve` and frames enrolled from a video or camera. A file is named by the SHA-256 of
its bytes and written atomically; it is deleted when no gallery row names it any more."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from facecmp.enrol import Outcome, enroll
from facecmp.gallery import Gallery

if TYPE_CHECKING:
    from facecmp.api import FaceModel


def photos_dir(gallery_path: str | Path) -> Path:
    """The folder of a gallery's own photos: DB.photos beside DB."""
    path = Path(gallery_path).resolve()
    return path.with_name(path.name + ".photos")


def store_photo(folder: Path, data: bytes, suffix: str) -> tuple[Path, bool]:
    """Keep a photo as folder/<sha256><suffix>; whether this call created the file."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (hashlib.sha256(data).hexdigest() + suffix)
    fd, part = tempfile.mkstemp(dir=folder, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.link(part, path)  # atomic: a concurrent writer of the same bytes sees all or nothing
        return path, True
    except FileExistsError:
        return path, False
    finally:
        os.unlink(part)


def drop_photo(gallery: Gallery, path: Path) -> None:
    """Delete one of the gallery's own photos that no gallery row names (nothing else)."""
    row = gallery.db.execute("SELECT 1 FROM images WHERE path = ?", (str(path),)).fetchone()
    if row is None and path.parent == photos_dir(gallery.path):
        path.unlink(missing_ok=True)


def remove_person(gallery: Gallery, name: str) -> int:
    """Remove a person (Gallery.remove) and the gallery's own photos of them; the photo count."""
    paths = [Path(r[0]) for r in gallery.db.execute(
        "SELECT i.path FROM images i JOIN people p ON p.id = i.person_id WHERE p.name = ?", (name,))]
    removed = gallery.remove(name)
    for path in paths:
        drop_photo(gallery, path)
    return removed


def enroll_photo(gallery: Gallery, name: str, data: bytes, suffix: str,
                 model: FaceModel | str | Path | None = None, detector: str | None = None) -> Outcome:
    """Keep a photo's bytes in DB.photos/ and enrol them under name (enrol.enroll, appending);
    the file stays only if this photo was added."""
    path, created = store_photo(photos_dir(gallery.path), data, suffix)
    outcome = None
    try:
        outcome = enroll(gallery, name, [path], model, True, detector)[0]
    finally:  # a photo not enrolled (or an error) leaves nothing behind
        if created and (outcome is None or outcome.status != "added"):
            drop_photo(gallery, path)
    return outcome
