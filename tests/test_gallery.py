"""The face gallery: every face of a photo analysed, enrolment and identification through the
CLI on real LFW photos, and what must survive: duplicates, --no-append, a model the gallery
was not built with, bad photos, a bulk enrolment killed part-way, two enrolments at once."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import facecmp
from facecmp.cli import main
from facecmp.gallery_index import ExactSearch, Snapshot, normalized, person_matrix, person_scores

from conftest import need_data

# the installed command where there is one, else the same CLI through the interpreter
_SCRIPT = Path(sys.executable).with_name("facecmp")
FACECMP = [str(_SCRIPT)] if _SCRIPT.is_file() else [sys.executable, "-m", "facecmp.cli"]


def _lfw(name: str, n: int) -> str:
    return str(need_data("lfw", name, f"{name}_{n:04d}.jpg"))


def _run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def _copy_db(src: Path, dst: Path) -> Path:
    """A consistent copy of a gallery through SQLite's backup (the WAL included)."""
    with sqlite3.connect(src) as a, sqlite3.connect(dst) as b:
        a.backup(b)
    return dst


def _threshold() -> float:
    return facecmp.load_model().meta.threshold_for("cosine")[1]


def _failed_names(stderr: str) -> set[str]:
    """The identity folders whose photo had no face, from enroll's `failed:` lines."""
    return {Path(line.split("no face found in ")[1]).parent.name
            for line in stderr.splitlines() if line.startswith("failed: no face found in ")}


def _pair_photo(tmp_path: Path) -> Path:
    """Two LFW photos side by side: a photo with two faces."""
    left, right = (np.asarray(Image.open(p)) for p in (_lfw("Colin_Powell", 5), _lfw("Abel_Pacheco", 4)))
    path = tmp_path / "two.png"
    Image.fromarray(np.concatenate([left, right], axis=1)).save(path)
    return path


# -- aggregation and search, on hand-made vectors --------------------------------------------


def _snap(vectors, owners, names) -> Snapshot:
    return Snapshot(1, "m", normalized(np.asarray(vectors, np.float32)), np.asarray(owners), names)


def test_person_scores_by_rule():
    snap = _snap([[1, 0], [0, 1], [1, 1], [-1, 0]], [0, 0, 0, 1], ["a", "b"])
    q = normalized(np.array([[1.0, 0.0]], np.float32))
    s = 1 / np.sqrt(2)
    sims = q @ person_matrix(snap, "max").T  # per image: 1, 0, s, -1
    assert person_scores(sims, snap, "max") == pytest.approx(np.array([[1.0, -1.0]]))
    assert person_scores(sims, snap, "top2") == pytest.approx(np.array([[(1 + s) / 2, -1.0]]))
    centroid = q @ person_matrix(snap, "centroid").T  # a's mean (1 + s, 1 + s) / 3: at 45 degrees
    assert centroid == pytest.approx(np.array([[s, -1.0]]), abs=1e-6)
    people, best = ExactSearch(snap, "max").search(q, 5)
    assert people.tolist() == [[0, 1]] and best[0, 0] == pytest.approx(1.0)
    empty = ExactSearch(_snap(np.zeros((0, 2)), [], []), "centroid").search(q, 5)
    assert empty[0].shape == (1, 0)


def test_faiss_index_agrees_with_exact_search_and_is_rebuilt_when_its_rows_change(tmp_path):
    pytest.importorskip("faiss")
    from facecmp.gallery_index import FaissSearch

    rng = np.random.default_rng(0)
    owners = np.sort(rng.integers(0, 300, 1500))
    owners = np.unique(owners, return_inverse=True)[1]
    snap = _snap(rng.normal(size=(1500, 32)), owners, [f"p{i}" for i in range(owners.max() + 1)])
    queries = snap.vectors[::50] + 0.1 * rng.normal(size=(30, 32)).astype(np.float32)
    path = tmp_path / "g.db.faiss"
    for rule in ("centroid", "max"):
        exact, fast = ExactSearch(snap, rule).search(queries, 3), FaissSearch(snap, path, rule).search(queries, 3)
        assert (exact[0][:, 0] == fast[0][:, 0]).mean() >= 0.9
    stamp = path.stat().st_mtime_ns
    snap.generation += 1  # a write that left these rows as they were: read back, not rebuilt
    FaissSearch(snap, path, "max")
    assert path.stat().st_mtime_ns == stamp
    snap.vectors[0] = snap.vectors[1]
    FaissSearch(snap, path, "max")
    assert path.stat().st_mtime_ns != stamp


# -- every face of a photo ------------------------------------------------------------------


@pytest.mark.slow
def test_analyze_finds_every_face_with_the_crops_of_each_model(tmp_path):
    a = _lfw("Abel_Pacheco", 1)
    (face,) = facecmp.analyze(a)
    assert face.embedding == pytest.approx(facecmp.embed([a]).vectors[0], abs=1e-6)
    for task, label in (("mask", face.mask), ("expression", face.expression)):
        (c,) = facecmp.classify([a], task)
        assert (label.label, label.probability) == (c.label, pytest.approx(c.probabilities[c.label]))
    assert set(face.to_json()) == {"path", "box", "landmarks", "score", "mask", "expression"}
    two = facecmp.analyze(_pair_photo(tmp_path))
    assert len(two) == 2 and two[0].score >= two[1].score
    assert sorted(f.box[0] < 250 for f in two) == [False, True]  # one face in each half
    (whole,) = facecmp.analyze(a, detector="none", attributes=False)
    assert whole.box is None and whole.mask is None
    assert facecmp.analyze(np.full((120, 120, 3), 128, np.uint8)) == []
    with pytest.raises(facecmp.ModelError, match="not of the mask task"):
        facecmp.analyze(a, mask_model="expression")


# -- enrolment and identification through the CLI ------------------------------------------

PEOPLE = {"Colin_Powell": (1, 2, 3), "Abel_Pacheco": (1, 2), "Serena_Williams": (1, 2, 3)}


@pytest.fixture(scope="module")
def gallery(tmp_path_factory) -> Path:
    """A gallery of three LFW people, enrolled through the CLI."""
    db = tmp_path_factory.mktemp("gallery") / "people.db"
    for name, ns in PEOPLE.items():
        res = _run("enroll", "--gallery", db, name, *[_lfw(name, n) for n in ns])
        assert res.exit_code == 0, res.output
    return db


@pytest.mark.slow
def test_enrolled_people_are_named_and_strangers_are_unknown(gallery, tmp_path):
    known, stranger = _lfw("Serena_Williams", 4), _lfw("Aaron_Peirsol", 1)
    res = _run("identify", "--gallery", gallery, known, stranger, "--json", "--top-k", "2")
    assert res.exit_code == 0, res.output
    faces = json.loads(res.stdout)
    assert [f["name"] for f in faces] == ["Serena_Williams", "unknown"]
    for f in faces:
        assert set(f) == {"path", "box", "name", "distance", "threshold", "candidates", "mask",
                          "expression", "model"}
        assert len(f["candidates"]) == 2 and f["mask"]["label"] in ("WithMask", "WithoutMask")
    assert faces[0]["distance"] == faces[0]["candidates"][0]["distance"] <= _threshold() < faces[1]["distance"]
    assert faces[0]["distance"] <= faces[0]["threshold"] < faces[1]["distance"]
    res = _run("identify", "--gallery", gallery, _pair_photo(tmp_path), "--json")
    assert sorted(f["name"] for f in json.loads(res.stdout)) == ["Abel_Pacheco", "Colin_Powell"]
    text = _run("identify", "--gallery", gallery, known).output
    assert text.startswith(f"{known} [") and ": Serena_Williams (distance " in text


@pytest.mark.slow
def test_list_stats_and_remove(gallery, tmp_path):
    db = _copy_db(gallery, tmp_path / "copy.db")
    listed = json.loads(_run("gallery", "list", "--gallery", db, "--json").stdout)
    assert listed == [{"name": n, "images": len(ns)} for n, ns in sorted(PEOPLE.items())]
    stats = json.loads(_run("gallery", "stats", "--gallery", db, "--json").stdout)
    assert (stats["people"], stats["images"], stats["dimension"]) == (3, 8, 512)
    with facecmp.Gallery(db) as g:
        before = facecmp.identify(g, _lfw("Abel_Pacheco", 4))[0].name
        res = _run("gallery", "remove", "--gallery", db, "Abel_Pacheco")  # another connection writes
        assert res.exit_code == 0 and "2 photos" in res.output
        after = facecmp.identify(g, _lfw("Abel_Pacheco", 4))[0]  # the same Gallery sees it
    assert before == "Abel_Pacheco" and "Abel_Pacheco" not in [n for n, _ in after.candidates]
    res = _run("gallery", "remove", "--gallery", db, "Abel_Pacheco")
    assert res.exit_code == 2 and res.output.strip() == f"error: no person named 'Abel_Pacheco' in {db}"


@pytest.mark.slow
def test_duplicates_are_skipped_and_no_append_refuses_a_known_name(gallery, tmp_path):
    db = tmp_path / "g.db"
    photo = _lfw("Colin_Powell", 1)
    twin = tmp_path / "renamed.jpg"
    shutil.copy(photo, twin)
    assert _run("enroll", "--gallery", db, "--no-append", "Colin_Powell", photo).exit_code == 0
    res = _run("enroll", "--gallery", db, "Someone_Else", twin, photo)
    assert res.exit_code == 0 and "enrolled 0 photos of 0 people" in res.stdout
    assert res.stderr.count("already enrolled as Colin_Powell") == 2
    res = _run("enroll", "--gallery", db, "--no-append", "Colin_Powell", _lfw("Colin_Powell", 2))
    assert res.exit_code == 2
    assert res.output == f"error: Colin_Powell is already in {db} (--no-append refuses to add photos)\n"
    assert _run("enroll", "--gallery", db, "Colin_Powell", _lfw("Colin_Powell", 2)).exit_code == 0
    assert json.loads(_run("gallery", "list", "--gallery", db, "--json").stdout) == [
        {"name": "Colin_Powell", "images": 2}]


@pytest.mark.slow
def test_bad_and_faceless_photos_are_reported_and_the_rest_go_on(tmp_path):
    db = tmp_path / "g.db"
    (tmp_path / "notes.jpg").write_text("not a photo")
    Image.fromarray(np.full((120, 120, 3), 128, np.uint8)).save(tmp_path / "blank.png")
    good = _lfw("Abel_Pacheco", 1)
    res = _run("enroll", "--gallery", db, "Abel", tmp_path / "notes.jpg", tmp_path / "blank.png", good)
    assert res.exit_code == 0, res.output
    assert res.stderr.splitlines() == [f"failed: {tmp_path / 'notes.jpg'}: not an image file",
                                       f"failed: no face found in {tmp_path / 'blank.png'}"]
    assert res.stdout.startswith("enrolled 1 photo of 1 person")
    res = _run("enroll", "--gallery", db, "Nobody", tmp_path / "blank.png", tmp_path / "missing.jpg")
    assert res.exit_code == 1 and "Traceback" not in res.output
    res = _run("identify", "--gallery", db, tmp_path / "blank.png")
    assert res.exit_code == 3 and res.stderr.startswith("note: no face found in")
    res = _run("identify", "--gallery", db, tmp_path / "missing.jpg", _lfw("Abel_Pacheco", 2))
    assert res.exit_code == 0 and "error: " in res.stderr and ": Abel (distance" in res.stdout
    (tmp_path / "other.db").write_text("not a database")
    with sqlite3.connect(tmp_path / "theirs.db") as con:
        con.execute("CREATE TABLE t (x)")
    for args, message in ((("gallery", "list", "--gallery", tmp_path / "none.db"), "no gallery at"),
                          (("gallery", "stats", "--gallery", tmp_path / "other.db"), "not a usable gallery"),
                          (("enroll", "--gallery", tmp_path / "theirs.db", "X", good), "not a facecmp gallery"),
                          (("enroll", "--gallery", tmp_path, "X", good), "is a directory")):
        res = _run(*args)
        assert res.exit_code == 2 and message in res.output and len(res.output.splitlines()) == 1
    with sqlite3.connect(tmp_path / "theirs.db") as con:  # left as it was
        assert con.execute("PRAGMA journal_mode").fetchone() == ("delete",)


@pytest.mark.slow
def test_a_gallery_refuses_another_model_until_reembedded(gallery, tmp_path):
    db = _copy_db(gallery, tmp_path / "g.db")
    other = tmp_path / "other-identity"  # the same weights under another name: another model key
    zoo = Path(facecmp.__file__).parent / "zoo"
    shutil.copytree(zoo / "identity", other)
    shutil.copytree(zoo / "identity-masked", tmp_path / "identity-masked")  # its masked_model
    photo = _lfw("Serena_Williams", 4)
    for args in (("identify", "--gallery", db, photo), ("enroll", "--gallery", db, "X", _lfw("Abel_Pacheco", 3))):
        res = _run(*args, "--model", other)
        assert res.exit_code == 2 and len(res.output.splitlines()) == 1
        assert f"run `facecmp gallery reembed --gallery {db} --model {other}`" in res.output
    res = _run("gallery", "reembed", "--gallery", db, "--model", other)
    assert res.exit_code == 0 and res.stdout.startswith("re-embedded 8 of 8 photos")
    res = _run("identify", "--gallery", db, photo, "--model", other, "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)[0]["name"] == "Serena_Williams"
    res = _run("identify", "--gallery", db, photo)  # now the bundled model is the other one
    assert res.exit_code == 2 and f"run `facecmp gallery reembed --gallery {db}` to" in res.output
    with sqlite3.connect(db) as con:
        # the other model's vectors and its masked model's, which it shares with the bundled one
        assert con.execute("SELECT count(DISTINCT model_key) FROM embeddings").fetchone() == (2,)
        assert con.execute("SELECT count(*) FROM embeddings").fetchone() == (16,)
    moved = tmp_path / "moved.jpg"  # a photo gone since its enrolment fails and is counted
    shutil.copy(_lfw("Abel_Pacheco", 3), moved)
    assert _run("enroll", "--gallery", db, "Abel_Pacheco", moved, "--model", other).exit_code == 0
    moved.unlink()
    res = _run("gallery", "reembed", "--gallery", db)
    assert res.exit_code == 0 and res.stdout.startswith("re-embedded 8 of 9 photos")
    assert res.stderr.splitlines()[-1] == f"failed: {moved}: gone; remove Abel_Pacheco and enrol again"
    stats = json.loads(_run("gallery", "stats", "--gallery", db, "--json").stdout)
    assert (stats["images"], stats["images_without_vector"]) == (9, 1)


# -- durability: a bulk enrolment killed part-way, two enrolments at once -------------------


@pytest.fixture(scope="module")
def identities(tmp_path_factory) -> Path:
    """~500 identity folders of one small photo each (the centre of an LFW photo at 100 px)."""
    lfw = need_data("lfw")
    root = tmp_path_factory.mktemp("bulk") / "people"
    for name in sorted(os.listdir(lfw))[:500]:
        first = sorted((lfw / name).iterdir())[0]
        (root / name).mkdir(parents=True)
        Image.open(first).crop((45, 45, 205, 205)).resize((100, 100)).save(root / name / "1.jpg", quality=90)
    return root


def _counts(db: Path) -> tuple[int, int, int]:
    with sqlite3.connect(db, timeout=30) as con:
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return con.execute("SELECT (SELECT count(*) FROM people), (SELECT count(*) FROM images), "
                           "(SELECT count(DISTINCT sha256) FROM images)").fetchone()


def _people_so_far(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
            return con.execute("SELECT count(*) FROM people").fetchone()[0]
    except sqlite3.Error:
        return 0  # not made yet


@pytest.mark.slow
def test_a_bulk_enrolment_killed_part_way_resumes_without_loss_or_duplicates(identities, tmp_path):
    db = tmp_path / "bulk.db"
    cmd = [*FACECMP, "enroll", "--gallery", str(db), "--bulk", str(identities)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while _people_so_far(db) < 60 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    people, images, distinct = _counts(db)
    assert 60 <= people < 500 and people == images == distinct
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    failed = _failed_names(done.stderr)
    people, images, distinct = _counts(db)
    with sqlite3.connect(db) as con:
        names = [r[0] for r in con.execute("SELECT name FROM people")]
    assert len(names) == len(set(names)) == people == images == distinct
    assert set(names) | failed == {d.name for d in identities.iterdir()} and not set(names) & failed
    assert len(failed) < 25  # a few small photos have no face MTCNN finds


@pytest.mark.slow
def _open_new_galleries(paths: list[str], barrier, results) -> None:
    from facecmp.errors import FacecmpError
    from facecmp.gallery import Gallery

    for path in paths:
        barrier.wait()  # every process opens the same new file at the same moment
        try:
            Gallery(path, create=True).close()
        except FacecmpError as exc:
            results.put(str(exc))


def test_processes_making_one_new_gallery_at_once_all_open_it(tmp_path):
    # switching a new file to WAL fails at once while another process makes it; CI once lost an
    # enrolment to that
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    paths = [str(tmp_path / f"g{i}.db") for i in range(30)]
    barrier, results = ctx.Barrier(6), ctx.Queue()
    procs = [ctx.Process(target=_open_new_galleries, args=(paths, barrier, results)) for _ in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    errors = []
    while not results.empty():
        errors.append(results.get())
    assert [p.exitcode for p in procs] == [0] * 6
    assert errors == []


def test_two_processes_enrolling_into_one_gallery_at_once_both_succeed(identities, tmp_path):
    db = tmp_path / "shared.db"
    names = sorted(d.name for d in identities.iterdir())
    parts = []
    for i, chosen in enumerate((names[:30], names[25:55])):  # five people in both
        part = tmp_path / f"part{i}"
        part.mkdir()
        for name in chosen:
            (part / name).symlink_to(identities / name)
        parts.append(part)
    procs = [subprocess.Popen([*FACECMP, "enroll", "--gallery", str(db), "--bulk", str(p)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for p in parts]
    results = [p.communicate(timeout=600) + (p.returncode,) for p in procs]
    assert [r[2] for r in results] == [0, 0], [r[1][-500:] for r in results]
    people, images, distinct = _counts(db)
    with sqlite3.connect(db) as con:
        enrolled = {r[0] for r in con.execute("SELECT name FROM people")}
    failed = _failed_names(results[0][1]) | _failed_names(results[1][1])
    assert people == images == distinct == len(enrolled)
    assert enrolled | failed == set(names[:55]) and not enrolled & failed
