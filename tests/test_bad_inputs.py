"""Bad and odd inputs through the API and every command that reads images.

Each kind of input is a real file made here (no downloads). A bad one must give a one-line
error naming it, the documented exit code, and never a traceback; a batch command must go
on past it. An odd but valid one (CMYK, 16-bit, palette with transparency, animated GIF,
EXIF rotation, a non-ASCII path, several faces) must work.
"""

from __future__ import annotations

import csv
import json
import shutil
import struct
import traceback
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import need_data
from PIL import Image, ImageOps

import facecmp
from facecmp.cli import main

# kind -> (exit code, what its one-line error says); "noface" is an error only where a face
# is compared or embedded: the classifiers fall back to the whole image and say so.
ERRORS = {
    "empty": (2, "not an image"),
    "text": (2, "not an image"),
    "truncated": (2, "unreadable image"),
    "bomb": (2, "too large"),
    "tiny": (2, "too small"),
    "directory": (2, "not a file"),
    "missing": (2, "no such file"),
    "noface": (3, "no face"),
}
# odd but valid: each holds the face of GOOD (several: it and another person's)
WORKS = ("cmyk", "png16", "palette_alpha", "gif", "exif", "non_ascii", "several")
KINDS = (*ERRORS, *WORKS)
UNREADABLE = [k for k in ERRORS if k != "noface"]
# the command line expands a directory into its images (this one holds none), so it is not an item
ITEMS = [k for k in KINDS if k != "directory"]

GOOD = "Abel_Pacheco/Abel_Pacheco_0001.jpg"
OTHER = "Abdullah_Gul/Abdullah_Gul_0001.jpg"


def _png_bomb(path: Path, side: int = 14142) -> None:
    """A 1-bit PNG claiming side x side pixels (200 megapixels) in a few kilobytes."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    rows = (b"\x00" + bytes((side + 7) // 8)) * side
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows, 9))
                     + chunk(b"IEND", b""))


def _palette_with_transparency(face: Image.Image, path: Path) -> None:
    """The face in a 255-colour palette, framed by a border of a transparent 256th colour."""
    p = face.convert("P", palette=Image.Palette.ADAPTIVE, colors=255)
    palette = (p.getpalette() + [0] * 768)[:765] + [0, 255, 0]
    framed = Image.new("P", (face.width + 40, face.height + 40), 255)
    framed.putpalette(palette)
    framed.paste(p, (20, 20))
    framed.save(path, transparency=255)


def _make_inputs(root: Path, lfw: Path) -> dict[str, Path]:
    good = lfw / GOOD
    face = Image.open(good).convert("RGB")
    paths = {k: root / name for k, name in {
        "empty": "empty.jpg", "text": "notes.jpg", "truncated": "truncated.jpg", "bomb": "bomb.png",
        "tiny": "tiny.png", "directory": "folder.jpg", "missing": "missing.jpg", "noface": "flat.png",
        "cmyk": "cmyk.jpg", "png16": "gray16.png", "palette_alpha": "palette.png", "gif": "animated.gif",
        "exif": "rotated.jpg", "non_ascii": "Zoë_Ørsted/日本.jpg", "several": "two_people.jpg"}.items()}
    paths["empty"].write_bytes(b"")
    paths["text"].write_text("this is a note, not a photo\n")
    data = good.read_bytes()
    paths["truncated"].write_bytes(data[: len(data) // 3])
    _png_bomb(paths["bomb"])
    Image.new("RGB", (1, 1), (200, 150, 120)).save(paths["tiny"])
    paths["directory"].mkdir()
    Image.new("RGB", (250, 250), (128, 128, 128)).save(paths["noface"])
    face.convert("CMYK").save(paths["cmyk"], quality=95)
    gray16 = np.asarray(face.convert("L"), dtype=np.uint16) * 257
    Image.fromarray(gray16).save(paths["png16"])
    _palette_with_transparency(face, paths["palette_alpha"])
    frames = [face.convert("P"), Image.new("RGB", face.size, (30, 60, 90)).convert("P")]
    frames[0].save(paths["gif"], save_all=True, append_images=frames[1:], duration=200, loop=0)
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated 90 degrees clockwise, so store it 90 degrees anticlockwise
    face.transpose(Image.Transpose.ROTATE_90).save(paths["exif"], exif=exif.tobytes(), quality=95)
    paths["non_ascii"].parent.mkdir()
    shutil.copy(good, paths["non_ascii"])
    two = Image.new("RGB", (2 * face.width, face.height))
    two.paste(face, (0, 0))
    two.paste(Image.open(lfw / OTHER).convert("RGB"), (face.width, 0))
    two.save(paths["several"], quality=95)
    return {"good": good, "other": lfw / OTHER, **paths}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """Every kind of input by name, plus the LFW photos `good` and `other`."""
    return _make_inputs(tmp_path_factory.mktemp("bad_inputs"), need_data("lfw"))


def _run(*args, env=None):
    """A CLI run that must not end in an exception other than a clean exit."""
    res = CliRunner().invoke(main, [str(a) for a in args], env=env)
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        pytest.fail("".join(traceback.format_exception(*res.exc_info)))
    assert "Traceback" not in res.output, res.output
    return res


def _one_line(message: str, path: Path, words: str) -> None:
    assert len(message.strip().splitlines()) == 1, message
    assert str(path) in message and words in message, message


def test_the_inputs_are_what_they_claim(inputs):
    assert Image.open(inputs["cmyk"]).mode == "CMYK"
    assert Image.open(inputs["png16"]).mode.startswith("I")
    palette = Image.open(inputs["palette_alpha"])
    assert palette.mode == "P" and "transparency" in palette.info
    assert getattr(Image.open(inputs["gif"]), "n_frames", 1) == 2
    assert inputs["bomb"].stat().st_size < 100_000
    stored = Image.open(inputs["exif"])
    upright = np.asarray(ImageOps.exif_transpose(stored).convert("L"), dtype=float)
    original = np.asarray(Image.open(inputs["good"]).convert("L"), dtype=float)
    assert np.abs(upright - original).mean() < 5 < np.abs(np.asarray(stored.convert("L")) - original).mean()


# ---- Python API ----

@pytest.mark.parametrize("kind", KINDS)
def test_api_compare(inputs, kind):
    if kind in ERRORS:
        code, words = ERRORS[kind]
        with pytest.raises(facecmp.FacecmpError) as err:
            facecmp.compare(inputs["good"], inputs[kind])
        assert err.value.exit_code == code
        assert isinstance(err.value, facecmp.NoFaceError if kind == "noface" else facecmp.ImageError)
        _one_line(str(err.value), inputs[kind], words)
        return
    result = facecmp.compare(inputs["good"], inputs[kind])
    if kind == "several":
        assert "2 faces found" in result.faces[1].note
    else:  # the same photo, read another way
        assert result.same, (kind, result.distance, result.threshold)


def test_api_embed_and_classify_record_each_bad_input(inputs):
    images = [inputs["good"], *(inputs[k] for k in KINDS)]
    emb = facecmp.embed(images)
    assert emb.vectors.shape == (len(images), 512)
    failed = {images[i] for i in emb.errors}
    assert failed == {inputs[k] for k in ERRORS}
    for i, message in emb.errors.items():
        _one_line(message, images[i], "")
    assert np.all(np.linalg.norm(emb.vectors[emb.ok], axis=1) > 0)
    for task in ("mask", "expression"):
        results = facecmp.classify(images, task=task)
        errors = {Path(r.source): r.error for r in results if r.error}
        assert set(errors) == {inputs[k] for k in UNREADABLE}, task
        for path, message in errors.items():
            _one_line(message, path, "")
        assert all(r.label for r in results if not r.error)


# ---- facecmp compare A B ----

@pytest.mark.parametrize("kind", KINDS)
def test_compare_two(inputs, kind):
    res = _run("compare", inputs["good"], inputs[kind])
    if kind in ERRORS:
        code, words = ERRORS[kind]
        assert res.exit_code == code, res.output
        _one_line(res.output, inputs[kind], words)
        return
    assert res.exit_code == 0, res.output
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(("same:", "different:")), res.output
    if kind == "several":
        assert "note:" in res.stderr and "2 faces found" in res.stderr and str(inputs[kind]) in res.stderr
    else:
        assert lines[0].startswith("same:"), res.output


@pytest.mark.parametrize("limit, words", [("10000", "too large"), ("lots", "FACECMP_MAX_PIXELS must be")])
def test_pixel_limit_is_the_users(inputs, limit, words):
    res = _run("compare", inputs["good"], inputs["other"], env={"FACECMP_MAX_PIXELS": limit})
    assert res.exit_code == 2, res.output
    assert len(res.output.strip().splitlines()) == 1 and words in res.output, res.output


@pytest.mark.parametrize("image", [np.zeros((64, 64, 3), np.float32), np.zeros((64, 64, 5), np.uint8),
                                   np.zeros((1, 1, 3), np.uint8), None, "", 7])
def test_api_refuses_what_is_not_an_image(inputs, image):
    with pytest.raises(facecmp.ImageError) as err:
        facecmp.compare(inputs["good"], image)
    assert len(str(err.value).splitlines()) == 1
    emb = facecmp.embed([inputs["good"], image])
    assert list(emb.errors) == [1] and emb.ok[0]


# ---- batch commands: every good item done, every bad one reported ----

def _pairs_csv(path: Path, rows) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["path_a", "path_b", "same"])
        writer.writerows([str(a), str(b), int(s)] for a, b, s in rows)
    return path


def test_compare_pairs(inputs, tmp_path):
    rows = [(inputs["good"], inputs["other"], 0)] + [(inputs["good"], inputs[k], 1) for k in KINDS]
    out = tmp_path / "results.csv"
    res = _run("compare", "--pairs", _pairs_csv(tmp_path / "pairs.csv", rows), "--out", out)
    assert res.exit_code == 0, res.output
    assert f"{len(ERRORS)} errors;" in res.output, res.output
    with open(out, newline="", encoding="utf-8") as f:
        got = list(csv.DictReader(f))
    assert [r["path_b"] for r in got] == [str(b) for _, b, _ in rows]
    assert got[0]["verdict"] == "different"
    for kind, row in zip(KINDS, got[1:]):
        if kind in ERRORS:
            assert row["verdict"] == "error" and row["distance"] == "", row
            _one_line(row["error"], inputs[kind], ERRORS[kind][1])
        else:
            assert row["verdict"] in ("same", "different") and not row["error"], row
            assert float(row["distance"]) >= 0


def test_compare_pairs_with_no_scorable_pair_exits_1(inputs, tmp_path):
    rows = [(inputs["good"], inputs[k], 1) for k in ("empty", "missing", "noface")]
    res = _run("compare", "--pairs", _pairs_csv(tmp_path / "pairs.csv", rows), "--out", tmp_path / "r.csv")
    assert res.exit_code == 1, res.output
    assert len(res.output.strip().splitlines()) == 1 and "3 errors" in res.output


def test_embed(inputs, tmp_path):
    out = tmp_path / "emb.npz"
    res = _run("embed", inputs["good"], *(inputs[k] for k in KINDS), "--out", out)
    assert res.exit_code == 0, res.output
    with np.load(out) as z:
        paths, failed, vectors = list(z["paths"]), list(z["failed"]), z["vectors"]
    assert paths == [str(inputs["good"])] + [str(inputs[k]) for k in WORKS]
    assert vectors.shape == (len(paths), 512) and np.all(np.linalg.norm(vectors, axis=1) > 0)
    bad = [k for k in ITEMS if k in ERRORS]
    assert failed == [str(inputs[k]) for k in bad]
    skipped = [line for line in res.stderr.splitlines() if line.startswith("skipped:")]
    assert len(skipped) == len(bad)
    for kind, line in zip(bad, skipped):
        _one_line(line, inputs[kind], ERRORS[kind][1])
    assert f"embedded {len(paths)} of {len(paths) + len(bad)} images" in res.stdout


def test_embed_with_nothing_embeddable_exits_1(inputs, tmp_path):
    res = _run("embed", inputs["empty"], inputs["noface"], "--out", tmp_path / "e.npz")
    assert res.exit_code == 1 and "embedded 0 of 2" in res.output, res.output


def test_mask_json(inputs):
    res = _run("mask", "--json", inputs["good"], *(inputs[k] for k in KINDS))
    assert res.exit_code == 0, res.output
    got = json.loads(res.stdout)
    assert [Path(r["path"]) for r in got] == [inputs["good"]] + [inputs[k] for k in ITEMS]
    for kind, r in zip(ITEMS, got[1:]):
        if kind in UNREADABLE:
            assert set(r) == {"path", "error"}, r
            _one_line(r["error"], inputs[kind], ERRORS[kind][1])
        else:
            assert r["label"] in ("WithMask", "WithoutMask"), r
    by_kind = dict(zip(ITEMS, got[1:]))
    assert "whole image" in by_kind["noface"]["note"] and "2 faces found" in by_kind["several"]["note"]


def test_expression_lines(inputs):
    res = _run("expression", inputs["good"], *(inputs[k] for k in KINDS))
    assert res.exit_code == 0, res.output
    bad = [k for k in ITEMS if k in UNREADABLE]
    labelled = [line for line in res.stdout.splitlines() if "(p=" in line]
    assert len(labelled) == 1 + len(ITEMS) - len(bad)
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == len(bad)
    for kind, line in zip(bad, errors):
        _one_line(line, inputs[kind], ERRORS[kind][1])


def test_classifier_with_nothing_readable_exits_1(inputs):
    res = _run("mask", inputs["empty"], inputs["missing"])
    assert res.exit_code == 1, res.output
    assert len(res.output.strip().splitlines()) == 2


def test_evaluate_labelled_folder(inputs, tmp_path):
    data = tmp_path / "data"
    placed = {}
    for i, kind in enumerate(k for k in KINDS if k != "missing"):
        src = inputs[kind]
        dst = data / ("WithMask" if i % 2 else "WithoutMask") / src.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            dst.mkdir()  # a folder named like an image inside a class folder: not an image file
        else:
            shutil.copy(src, dst)
            placed[kind] = dst
    model = Path(facecmp.__file__).parent / "zoo" / "mask"
    res = _run("evaluate", "--model", model, "--data", data, "--out", tmp_path / "eval")
    assert res.exit_code == 0, res.output
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    bad = [k for k in placed if k in UNREADABLE]
    assert metrics["n"] == len(placed) - len(bad) and metrics["failed"] == len(bad)
    for kind in bad:
        [message] = [m for m in metrics["failures"] if str(placed[kind]) in m]
        _one_line(message, placed[kind], ERRORS[kind][1])
    assert f"skipped {len(bad)} unreadable images" in res.stderr


def test_evaluate_with_nothing_readable_exits_1(inputs, tmp_path):
    data = tmp_path / "data" / "WithMask"
    data.mkdir(parents=True)
    for kind in ("empty", "truncated"):
        shutil.copy(inputs[kind], data / inputs[kind].name)
    model = Path(facecmp.__file__).parent / "zoo" / "mask"
    res = _run("evaluate", "--model", model, "--data", data.parent, "--out", tmp_path / "eval")
    assert res.exit_code == 1, res.output
    _one_line(res.output, data.parent, "none of the 2 images")


def _sweep_rows(lfw: Path) -> list[tuple[Path, Path, int]]:
    """Same and different pairs of real LFW photos."""
    def img(name: str, n: int) -> Path:
        return lfw / name / f"{name}_{n:04d}.jpg"

    people = ("Abel_Pacheco", "Abdullah_Gul", "Adam_Sandler")
    same = [(img(p, a), img(p, b), 1) for p in people for a, b in ((1, 2), (3, 4))]
    diff = [(img(p, a), img(q, b), 0) for (p, q), (a, b) in zip(
        ((people[0], people[1]), (people[1], people[2]), (people[2], people[0])) * 2,
        ((1, 1), (2, 3), (4, 2), (3, 4), (1, 2), (2, 1)))]
    return same + diff


def test_threshold_sweep_goes_on_past_bad_pairs(inputs, tmp_path):
    good = _sweep_rows(need_data("lfw"))
    bad = [(inputs["good"], inputs[k], 0) for k in ERRORS]
    odd = [(inputs["good"], inputs[k], 1) for k in WORKS]
    pairs = _pairs_csv(tmp_path / "pairs.csv", good + bad + odd)
    out = tmp_path / "sweep"
    res = _run("threshold-sweep", "--pairs", pairs, "--metric", "cosine", "--out", out)
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["cosine"]["n_pairs"] == len(good) + len(odd)
    failed = {f["line"]: f["error"] for f in summary["failed_pairs"]}
    first_bad = len(good) + 2  # the header is line 1
    assert sorted(failed) == list(range(first_bad, first_bad + len(bad)))
    for (kind, (_, words)), line in zip(ERRORS.items(), sorted(failed)):
        _one_line(failed[line], inputs[kind], words)
    told = [line for line in res.output.splitlines() if f"{len(bad)} pairs" in line]
    assert len(told) == 1 and "summary.json" in told[0], res.output


def test_threshold_sweep_refuses_a_wrong_images_root(tmp_path):
    lfw = need_data("lfw")
    rows = [(a.relative_to(lfw), b.relative_to(lfw), s) for a, b, s in _sweep_rows(lfw)]
    pairs = _pairs_csv(tmp_path / "pairs.csv", rows)
    res = _run("threshold-sweep", "--pairs", pairs, "--images", tmp_path, "--out", tmp_path / "s")
    assert res.exit_code == 2, res.output
    assert len(res.output.strip().splitlines()) == 1
    assert f"{len(rows)} pairs name missing images" in res.output and "fix --images" in res.output


def test_threshold_sweep_with_no_scorable_pair_exits_1(inputs, tmp_path):
    rows = [(inputs["good"], inputs["noface"], 1), (inputs["other"], inputs["empty"], 0)]
    pairs = _pairs_csv(tmp_path / "pairs.csv", rows)
    res = _run("threshold-sweep", "--pairs", pairs, "--out", tmp_path / "s")
    assert res.exit_code == 1, res.output
    [error] = [line for line in res.output.splitlines() if line.startswith("error:")]  # after the progress
    _one_line(error, inputs["noface"], "none of the 2 pairs")


# ---- facecmp train ----

@pytest.mark.slow
def test_train_skips_bad_files(inputs, tmp_path):
    orl = need_data("orl")
    data = tmp_path / "orl"
    for person in ("s1", "s2", "s3", "s4"):  # a few people: the check is the skipping, not the model
        shutil.copytree(orl / person, data / person)
    bad = [k for k in UNREADABLE if inputs[k].is_file()]
    for kind in bad:
        shutil.copy(inputs[kind], data / "s1" / inputs[kind].name)
    out = tmp_path / "run"
    res = _run("train", "--data", data, "--epochs", "1", "--batch-size", "16", "--out", out)
    assert res.exit_code == 0, res.output
    report = json.loads((out / "data_report.json").read_text())
    assert report["unreadable_or_no_face"] >= len(bad)
    for kind in bad:
        assert any(str(data / "s1" / inputs[kind].name) in p for p in report["problems"]), kind
    assert (out / "model" / "meta.json").is_file()
