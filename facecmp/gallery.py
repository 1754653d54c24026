"""A face gallery in one SQLite file: people, their enrolled photos and each photo's identity
embedding. This module owns the database; enrol.py fills it and identification.py searches it.

The database runs in WAL mode with a 30 s busy timeout, so several processes may enrol and
identify at once. Writers compute first (read, detect, embed) and then write in one short
transaction, so an interrupted enrolment loses at most the photo in hand and never leaves
half of one. Every write bumps a generation counter, which tells readers when what they
loaded is stale. The schema and the rules: docs/gallery.md.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from facecmp.errors import FacecmpError, ModelError

if TYPE_CHECKING:
    from facecmp.api import FaceModel
    from facecmp.gallery_index import Snapshot

SCHEMA_VERSION = "1"
BUSY_TIMEOUT_S = 30.0
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS models (model_key TEXT PRIMARY KEY, dimension INTEGER NOT NULL,
    added TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS people (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS images (id INTEGER PRIMARY KEY,
    person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    path TEXT NOT NULL, sha256 TEXT NOT NULL UNIQUE, box TEXT, faces INTEGER NOT NULL,
    added TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS images_person ON images(person_id);
CREATE TABLE IF NOT EXISTS embeddings (
    image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    model_key TEXT NOT NULL REFERENCES models(model_key) ON DELETE CASCADE,
    vector BLOB NOT NULL, PRIMARY KEY (image_id, model_key));
INSERT OR IGNORE INTO meta VALUES ('schema', '{SCHEMA_VERSION}'), ('generation', '0');
"""


_KEYS: dict[tuple, str] = {}  # what a key was computed from -> the key, so weights are read once


def model_key(model: FaceModel) -> str:
    """The identity model's name and a digest of what decides its vectors: the weights files,
    the crop convention and the flip. Vectors under one key are comparable; never across keys."""
    files = sorted(model.path.resolve().glob("*.pdparams"))
    convention = json.dumps([model.meta.image_convention(), model.embedder.flip], sort_keys=True)
    seen = (str(model.path.resolve()), convention,
            *((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files))
    if seen not in _KEYS:
        digest = hashlib.sha256()
        for weights in files:
            digest.update(weights.name.encode() + b"\0" + weights.read_bytes())
        digest.update(convention.encode())
        _KEYS[seen] = f"{model.path.resolve().name}-{digest.hexdigest()[:16]}"
    return _KEYS[seen]


def model_keys(model: FaceModel) -> tuple[str, str | None]:
    """The keys of an identity model and of its masked model (None where it names none)."""
    return model_key(model), (model_key(model.masked) if model.masked is not None else None)


def file_sha256(path: str | Path) -> str | None:
    """The SHA-256 of a file's bytes; None when it cannot be read (reading it says why)."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _blob(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype=np.float32).tobytes()


class Gallery:
    """An open gallery database (create=True makes a new one). One per thread or process."""

    def __init__(self, path: str | Path, create: bool = False) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise FacecmpError(f"{self.path} is a directory, not a gallery file")
        if not create and not self.path.is_file():
            raise FacecmpError(f"no gallery at {self.path} (enrol someone to make one)")
        self.index_path = self.path.with_name(self.path.name + ".faiss")
        self._searches: dict[str, Any] = {}
        self.db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        try:
            self._prepare_waiting(create)
        except sqlite3.DatabaseError as exc:
            self.db.close()
            raise FacecmpError(f"{self.path}: not a usable gallery ({exc})") from None
        except FacecmpError:
            self.db.close()
            raise

    def _prepare_waiting(self, create: bool) -> None:
        """_prepare, tried again while another process holds the lock. Switching a new file to
        WAL fails at once with "database is locked" while another process is making the same
        file (SQLite does not call the busy handler there), so the wait is done here."""
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            try:
                return self._prepare(create)
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _prepare(self, create: bool) -> None:
        """Settings of this connection, then the schema (made when new, checked when not)."""
        self.db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        self.db.execute("PRAGMA foreign_keys = ON")
        tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "meta" not in tables and (tables or not create):  # never touch another program's database
            raise FacecmpError(f"{self.path} is not a facecmp gallery")
        if self.db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            self.db.execute("PRAGMA journal_mode = WAL")
        if "meta" not in tables:
            with self.write() as db:  # IF NOT EXISTS: another process may be making it too
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
        if self._meta("schema") != SCHEMA_VERSION:
            raise FacecmpError(f"{self.path}: gallery schema {self._meta('schema')}; this facecmp "
                               f"reads {SCHEMA_VERSION}")

    def close(self) -> None:
        """Close the database connection."""
        self.db.close()

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at once (waiting up to the busy timeout): all or nothing."""
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise FacecmpError(f"{self.path}: cannot write ({exc})") from None
        try:
            yield self.db
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def _meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def _bump(self) -> None:
        self.db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")

    @property
    def generation(self) -> int:
        """How many writes the gallery has seen; any change means loaded vectors are stale."""
        return int(self._meta("generation") or 0)

    @property
    def model(self) -> str | None:
        """The key of the identity model whose vectors the gallery searches (None: none yet)."""
        return self._meta("model_key")

    @property
    def masked_model(self) -> str | None:
        """The key of that model's masked model (facecmp.masked), searched for faces in masks."""
        return self._meta("masked_key")

    # -- the identity model --------------------------------------------------------------------

    def use_model(self, model: FaceModel | str | Path | None = None) -> tuple[FaceModel, str]:
        """The identity model and its key, refused (ModelError) if the gallery holds another's
        vectors; the first model to enrol into a gallery becomes its model."""
        from facecmp.api import load_model

        fm = load_model(model, "identity")
        key, masked = model_keys(fm)
        if self.model == key and self.masked_model == masked:
            return fm, key
        with self.write():
            for current, wanted in ((self.model, key), (self.masked_model, masked)):
                if current is not None and current != wanted and self.count_vectors(current):
                    raise ModelError(self.mismatch(current, wanted or "none", fm))
            self.add_models(fm)
            self._set_models(key, masked)
        return fm, key

    def _set_models(self, key: str, masked: str | None) -> None:
        """Record the searched model and its masked model (inside a write)."""
        self.db.execute("INSERT OR REPLACE INTO meta VALUES ('model_key', ?)", (key,))
        if masked is None:
            self.db.execute("DELETE FROM meta WHERE key = 'masked_key'")
        else:
            self.db.execute("INSERT OR REPLACE INTO meta VALUES ('masked_key', ?)", (masked,))
        self._bump()

    def mismatch(self, current: str, key: str, fm: FaceModel) -> str:
        """The one line that refuses a model the gallery was not built with."""
        from facecmp.zoo import default_model

        bundled = fm.path.resolve() == default_model("identity").resolve()
        given = "" if bundled else f" --model {fm.path}"
        return (f"{self.path} holds embeddings of identity model {current}, not of {key}; run "
                f"`facecmp gallery reembed --gallery {self.path}{given}` to re-embed it with this model")

    def add_models(self, fm: FaceModel) -> None:
        """Record an identity model and its masked model, if any (inside a write)."""
        for model, key in zip((fm, fm.masked), model_keys(fm)):
            if key is not None:
                self.db.execute("INSERT OR IGNORE INTO models VALUES (?, ?, ?)",
                                (key, model.meta.embedding_size, _now()))

    def count_vectors(self, key: str) -> int:
        """How many photos have a vector of this model."""
        return self.db.execute("SELECT count(*) FROM embeddings WHERE model_key = ?", (key,)).fetchone()[0]

    def switch_model(self, key: str, masked: str | None = None) -> None:
        """Search with this model's vectors (and its masked model's) from now on and drop every
        other model's (one write)."""
        with self.write() as db:
            db.execute("DELETE FROM models WHERE model_key NOT IN (?, ?)", (key, masked or key))  # vectors cascade
            self._set_models(key, masked)

    # -- photos ----------------------------------------------------------------------------------

    def owner_of(self, sha256: str) -> str | None:
        """Who a photo of this content is enrolled as, if anyone."""
        row = self.db.execute("SELECT p.name FROM images i JOIN people p ON p.id = i.person_id "
                              "WHERE i.sha256 = ?", (sha256,)).fetchone()
        return row[0] if row else None

    def has_person(self, name: str) -> bool:
        """Whether a person of that name is enrolled."""
        return self.db.execute("SELECT 1 FROM people WHERE name = ?", (name,)).fetchone() is not None

    def add_image(self, name: str, path: str, sha256: str, box: list[float] | None, faces: int,
                  vector: np.ndarray, key: str, new_person: bool = False,
                  masked: tuple[str, np.ndarray] | None = None) -> bool:
        """Write one photo and its vector (and its masked model's: key, vector) in one
        transaction, and the person if new; False when a photo of the same content is there
        already. new_person refuses an existing name."""
        try:
            with self.write() as db:
                if self.model != key:  # re-embedded by another process since this one checked
                    raise ModelError(f"{self.path} is now searched with model {self.model}, not {key}")
                row = db.execute("SELECT id FROM people WHERE name = ?", (name,)).fetchone()
                if row is not None and new_person:
                    raise FacecmpError(f"{name} is already in {self.path} (--no-append refuses to add photos)")
                person = row[0] if row else db.execute("INSERT INTO people (name) VALUES (?)", (name,)).lastrowid
                image = db.execute("INSERT INTO images (person_id, path, sha256, box, faces, added) VALUES "
                                   "(?, ?, ?, ?, ?, ?)", (person, path, sha256, json.dumps(box), faces, _now()))
                db.execute("INSERT INTO embeddings VALUES (?, ?, ?)", (image.lastrowid, key, _blob(vector)))
                if masked is not None:
                    db.execute("INSERT INTO embeddings VALUES (?, ?, ?)", (image.lastrowid, masked[0],
                                                                          _blob(masked[1])))
                self._bump()
        except sqlite3.IntegrityError:  # the same content, enrolled meanwhile by another process
            return False
        return True

    def images_without(self, key: str) -> list[tuple[int, str, str, list[float] | None, str]]:
        """(id, path, sha256, box, person) of each photo with no vector of this model."""
        rows = self.db.execute("SELECT i.id, i.path, i.sha256, i.box, p.name FROM images i JOIN people p "
                               "ON p.id = i.person_id WHERE i.id NOT IN (SELECT image_id FROM embeddings "
                               "WHERE model_key = ?) ORDER BY i.id", (key,)).fetchall()
        return [(i, path, sha, json.loads(box) if box else None, name) for i, path, sha, box, name in rows]

    def set_vectors(self, image_id: int, vectors: dict[str, np.ndarray]) -> None:
        """Store a photo's vectors, one per model key (one write)."""
        with self.write() as db:
            for key, vector in vectors.items():
                db.execute("INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?)", (image_id, key, _blob(vector)))
            self._bump()

    def remove(self, name: str) -> int:
        """Remove a person with their photos and vectors; how many photos went."""
        with self.write() as db:
            row = db.execute("SELECT p.id, count(i.id) FROM people p LEFT JOIN images i "
                             "ON i.person_id = p.id WHERE p.name = ? GROUP BY p.id", (name,)).fetchone()
            if row is None:
                raise FacecmpError(f"no person named {name!r} in {self.path}")
            db.execute("DELETE FROM people WHERE id = ?", (row[0],))
            self._bump()
        return row[1]

    # -- reading -----------------------------------------------------------------------------------

    def people(self) -> list[tuple[str, int]]:
        """Each enrolled person and how many photos they have, by name."""
        return self.db.execute("SELECT p.name, count(i.id) FROM people p LEFT JOIN images i "
                               "ON i.person_id = p.id GROUP BY p.id ORDER BY p.name").fetchall()

    def stats(self) -> dict[str, Any]:
        """Counts, the identity model and the generation of the gallery."""
        def one(sql: str, *args: Any) -> Any:
            row = self.db.execute(sql, args).fetchone()
            return row[0] if row else None

        key, masked = self.model, self.masked_model
        return {"gallery": str(self.path), "people": one("SELECT count(*) FROM people"),
                "images": one("SELECT count(*) FROM images"),
                "images_with_several_faces": one("SELECT count(*) FROM images WHERE faces > 1"),
                "model": key, "dimension": one("SELECT dimension FROM models WHERE model_key = ?", key),
                "images_without_vector": len(self.images_without(key or "")),
                "masked_model": masked,
                "images_without_masked_vector": len(self.images_without(masked)) if masked else 0,
                "generation": self.generation}

    def snapshot(self, masked: bool = False) -> Snapshot:
        """The searched model's vectors (or its masked model's) as they are now, read in one
        transaction."""
        from facecmp.gallery_index import snapshot_of

        self.db.execute("BEGIN")  # one consistent read: the generation and the rows it names
        try:
            generation, key = self.generation, (self.masked_model if masked else self.model) or ""
            rows = self.db.execute("SELECT i.person_id, e.vector FROM embeddings e JOIN images i ON "
                                   "i.id = e.image_id WHERE e.model_key = ? ORDER BY i.person_id, i.id",
                                   (key,)).fetchall()
            names = dict(self.db.execute("SELECT id, name FROM people").fetchall())
        finally:
            self.db.execute("COMMIT")
        dim = len(rows[0][1]) // 4 if rows else 0
        vectors = np.frombuffer(b"".join(r[1] for r in rows), np.float32).reshape(len(rows), dim)
        return snapshot_of(vectors, np.array([r[0] for r in rows], dtype=np.int64), names, generation, key)

    def searcher(self, how: str = "auto", masked: bool = False):
        """The search over the current vectors (gallery_index) of the searched model, or of its
        masked model, reloaded only after a write."""
        from facecmp.gallery_index import searcher

        cached = self._searches.get((how, masked))
        if cached is None or cached.snap.generation != self.generation:
            path = self.path.with_name(self.path.name + ".masked.faiss") if masked else self.index_path
            cached = self._searches[(how, masked)] = searcher(self.snapshot(masked), path, how)
        return cached
