"""facecmp serve's HTTP API through FastAPI's TestClient on real LFW photos: compare, analyze,
enrol behind a token, identify, the gallery, and what a server must refuse without falling
over (oversized bodies, non-images, decompression bombs, internal errors)."""

from __future__ import annotations

import io
import re
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import need_data

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install '.[serve]'")
pytest.importorskip("python_multipart", reason="python-multipart is not installed: pip install '.[serve]'")
with warnings.catch_warnings():  # Starlette asks for httpx2; httpx still works
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from facecmp.server import WEB, create_app  # noqa: E402

TOKEN = "correct-horse-battery-staple"


def _lfw(name: str, n: int) -> Path:
    return need_data("lfw", name, f"{name}_{n:04d}.jpg")


def _upload(path: Path) -> tuple[str, bytes, str]:
    return path.name, path.read_bytes(), "image/jpeg"


def _png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG that declares width x height pixels: a decompression bomb's header."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1024)) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def gallery_db(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("serve") / "people.db"


@pytest.fixture(scope="module")
def client(gallery_db):
    with TestClient(create_app(gallery_db, TOKEN, max_upload_mb=10)) as c:
        yield c


def _healthy(client) -> None:
    r = client.get("/api/health")
    assert r.status_code == 200 and r.json()["status"] == "ok"


def _compare(client, a: Path, b: Path):
    return client.post("/api/compare", files={"a": _upload(a), "b": _upload(b)})


def test_compare_one_person_and_two_people(client):
    a, b = _lfw("Abel_Pacheco", 1), _lfw("Abel_Pacheco", 4)
    same = _compare(client, a, b)
    assert same.status_code == 200, same.text
    body = same.json()
    assert body["same"] is True and body["verdict"] == "same" and body["distance"] <= body["threshold"]
    assert (body["path_a"], body["path_b"]) == (a.name, b.name)
    assert body["metric"] == "cosine" and 0.3 < body["threshold"] < 0.7
    for face in body["faces"]:
        x1, y1, x2, y2 = face["box"]
        assert 0 <= x1 < x2 <= 250 and 0 <= y1 < y2 <= 250 and len(face["landmarks"]) == 5
        assert 0.0 <= face["mask"] <= 1.0
    other = _compare(client, a, _lfw("Colin_Powell", 5)).json()
    assert other["same"] is False and other["verdict"] == "different" and other["distance"] > other["threshold"]
    _healthy(client)


def test_analyze_gives_every_face(client, tmp_path):
    left, right = (np.asarray(Image.open(p)) for p in (_lfw("Colin_Powell", 5), _lfw("Abel_Pacheco", 4)))
    buf = io.BytesIO()
    Image.fromarray(np.concatenate([left, right], axis=1)).save(buf, "PNG")
    r = client.post("/api/analyze", files={"image": ("two.png", buf.getvalue(), "image/png")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["image"], body["width"], body["height"]) == ("two.png", 500, 250)
    assert len(body["faces"]) == 2
    assert sorted(f["box"][0] < 250 for f in body["faces"]) == [False, True]  # one face on each side
    for face in body["faces"]:
        assert len(face["landmarks"]) == 5 and face["mask"]["label"] and face["expression"]["label"]
    _healthy(client)


def test_enrol_needs_the_token_then_identify_names_the_person(client, gallery_db):
    enrol = {"data": {"name": "Abel Pacheco"}, "files": {"images": _upload(_lfw("Abel_Pacheco", 1))}}
    missing = client.post("/api/enroll", **enrol)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    wrong = client.post("/api/enroll", headers={"Authorization": "Bearer " + TOKEN[:-1]}, **enrol)
    assert wrong.status_code == 403 and wrong.json() == {"error": "wrong token"}
    assert client.get("/api/gallery").json() == {"people": []}
    ok = client.post("/api/enroll", headers={"Authorization": "Bearer " + TOKEN}, **enrol)
    assert ok.status_code == 200, ok.text
    assert ok.json()["added"] == 1 and ok.json()["photos"][0]["status"] == "added"
    again = client.post("/api/enroll", headers={"Authorization": "Bearer " + TOKEN}, **enrol)
    assert again.json()["photos"][0]["status"] == "skipped"  # the same bytes are not enrolled twice
    kept = list(gallery_db.with_name(gallery_db.name + ".photos").iterdir())
    assert len(kept) == 1 and kept[0].suffix == ".jpg"  # the enrolled photo, kept beside the gallery

    found = client.post("/api/identify", files={"image": _upload(_lfw("Abel_Pacheco", 4))}).json()
    assert [f["name"] for f in found["faces"]] == ["Abel Pacheco"]
    stranger = client.post("/api/identify", files={"image": _upload(_lfw("Colin_Powell", 5))}).json()
    assert stranger["faces"][0]["candidates"][0]["name"] == "Abel Pacheco"
    assert client.get("/api/gallery").json() == {"people": [{"name": "Abel Pacheco", "images": 1}]}
    _healthy(client)


def test_a_photo_without_a_face_is_not_kept(client, gallery_db):
    blank = io.BytesIO()
    Image.new("RGB", (120, 120), (200, 180, 160)).save(blank, "JPEG")
    r = client.post("/api/enroll", headers={"Authorization": "Bearer " + TOKEN},
                    data={"name": "Nobody"}, files={"images": ("wall.jpg", blank.getvalue(), "image/jpeg")})
    assert r.status_code == 422 and r.json()["error"] == "no face found in wall.jpg"  # no server path
    unnamed = client.post("/api/enroll", headers={"Authorization": "Bearer " + TOKEN}, data={"name": "  "},
                          files={"images": _upload(_lfw("Colin_Powell", 5))})
    assert unnamed.status_code == 400 and "name" in unnamed.json()["error"]
    photos = gallery_db.with_name(gallery_db.name + ".photos")
    assert all(p.suffix == ".jpg" for p in photos.iterdir()) and len(list(photos.iterdir())) <= 1


def test_gallery_remove_needs_the_token_and_deletes_the_kept_photos(client, gallery_db):
    auth = {"Authorization": "Bearer " + TOKEN}
    client.post("/api/enroll", headers=auth, data={"name": "Colin Powell"},
                files=[("images", _upload(_lfw("Colin_Powell", n))) for n in (1, 2)])
    assert {"name": "Colin Powell", "images": 2} in client.get("/api/gallery").json()["people"]
    assert client.delete("/api/gallery/Colin Powell").status_code == 401
    assert client.delete("/api/gallery/Colin Powell", headers={"Authorization": "Bearer x"}).status_code == 403
    gone = client.delete("/api/gallery/Colin Powell", headers=auth)
    assert gone.status_code == 200 and gone.json() == {"removed": "Colin Powell", "images": 2}
    assert client.delete("/api/gallery/Colin Powell", headers=auth).status_code == 404
    names = [p["name"] for p in client.get("/api/gallery").json()["people"]]
    assert "Colin Powell" not in names
    assert len(list(gallery_db.with_name(gallery_db.name + ".photos").iterdir())) == len(names)
    _healthy(client)


def test_without_token_or_gallery_the_server_says_so(tmp_path):
    with TestClient(create_app()) as c:
        r = c.post("/api/enroll", data={"name": "x"}, files={"images": _upload(_lfw("Abel_Pacheco", 1))},
                   headers={"Authorization": "Bearer anything"})
        assert r.status_code == 403 and "token" in r.json()["error"]
        r = c.post("/api/identify", files={"image": _upload(_lfw("Abel_Pacheco", 1))})
        assert r.status_code == 404 and "--gallery" in r.json()["error"]
        assert c.get("/api/gallery").status_code == 404
        assert c.get("/api/health").json() == {"status": "ok", "gallery": False, "enroll": False,
                                               "max_upload_mb": 10.0}


def test_oversized_bodies_are_refused_with_413(client):
    face = _upload(_lfw("Abel_Pacheco", 1))
    big = client.post("/api/compare", files={"a": ("big.jpg", b"\xff" * (50 * 2**20), "image/jpeg"), "b": face})
    assert big.status_code == 413 and "10 MB" in big.json()["error"]
    _healthy(client)

    def streamed():  # no Content-Length: the limit holds while the body arrives
        yield b'--x\r\nContent-Disposition: form-data; name="a"; filename="a.jpg"\r\n\r\n'
        for _ in range(12):
            yield b"\0" * 2**20

    r = client.post("/api/compare", content=streamed(), headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert r.status_code == 413, r.text
    _healthy(client)


def test_non_images_and_bombs_are_refused(client):
    face = _upload(_lfw("Abel_Pacheco", 1))
    text = client.post("/api/compare", files={"a": ("notes.jpg", b"just some text\n" * 50, "image/jpeg"), "b": face})
    assert text.status_code == 415 and text.json()["error"].startswith("notes.jpg: not an image")
    _healthy(client)
    bomb = client.post("/api/analyze", files={"image": ("bomb.png", _png_header_only(30000, 30000), "image/png")})
    assert bomb.status_code == 413 and "too large" in bomb.json()["error"]
    _healthy(client)
    over = client.post("/api/analyze", files={"image": ("big.png", _png_header_only(11000, 11000), "image/png")})
    assert over.status_code == 413 and "megapixels" in over.json()["error"]
    cut = client.post("/api/compare", files={"a": ("cut.jpg", face[1][:2000], "image/jpeg"), "b": face})
    assert cut.status_code == 422 and cut.json()["error"].startswith("cut.jpg: unreadable image")
    missing = client.post("/api/compare", files={"a": face})
    assert missing.status_code == 422 and missing.json() == {"error": "b: Field required"}
    _healthy(client)


def test_an_internal_error_is_json_without_a_traceback(monkeypatch):
    import facecmp

    def broken(*args, **kwargs):
        raise RuntimeError("secret detail in /srv/models")

    monkeypatch.setattr(facecmp, "compare", broken)
    face = _upload(_lfw("Abel_Pacheco", 1))
    with TestClient(create_app(), raise_server_exceptions=False) as c:
        r = c.post("/api/compare", files={"a": face, "b": face})
        assert r.status_code == 500 and r.headers["content-type"] == "application/json"
        assert "Traceback" not in r.text and "secret" not in r.text and r.json()["error"].startswith("internal error")
        assert c.get("/nowhere").json() == {"error": "Not Found"}
        _healthy(c)


def test_openapi_and_a_page_that_fetches_nothing_from_elsewhere(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/compare", "/api/analyze", "/api/identify", "/api/enroll", "/api/gallery"} <= set(paths)
    assert client.get("/docs").status_code == 404  # Swagger UI would come from a CDN
    page = client.get("/")
    assert page.status_code == 200 and "default-src 'self'" in page.headers["content-security-policy"]
    for name in ("index.html", "app.js", "style.css"):
        assert client.get(f"/web/{name}").status_code == 200
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", (WEB / name).read_text()), name
