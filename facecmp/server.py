"""The HTTP API and page of `facecmp serve`: FastAPI over facecmp.api, the models loaded once.

Answers are JSON as the CLI's --json prints them; errors are {"error": "..."} with a status
code and never a traceback. The face work runs on a fixed pool of threads (one per CPU by
default), so requests overlap where facecmp lets them (detection runs per thread; a network
pass holds only its own model's lock) while the event loop stays free for /api/health.
Uploads live in memory or Starlette's temporary files and are gone after the response,
except enrolled photos, kept in DB.photos/ beside the gallery. Reference: docs/serve.md.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import io
import logging
import os
import threading
import warnings
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, List, Optional

import numpy as np
from fastapi import Depends, FastAPI, File, Form, Header, Query, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from PIL import Image, UnidentifiedImageError
from starlette.exceptions import HTTPException

import facecmp
from facecmp.errors import FacecmpError, ImageError, ModelError, NoFaceError
from facecmp.gallery import Gallery
from facecmp.images import max_pixels, to_rgb
from facecmp.photostore import enroll_photo, remove_person

WEB = Path(__file__).with_name("web")
FORMATS = {"JPEG": ".jpg", "PNG": ".png", "PPM": ".ppm", "BMP": ".bmp", "WEBP": ".webp",
           "TIFF": ".tif", "GIF": ".gif"}  # what facecmp reads; never EPS, PDF and the like
# the page may load nothing but its own files; the camera and chosen photos are blob: URLs
CSP = ("default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob: mediastream:; "
       "object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
STATUS = {NoFaceError: 422, ImageError: 422, ModelError: 409}  # any other FacecmpError: 400
log = logging.getLogger("facecmp.server")


class UploadLimit:
    """ASGI middleware: a request body over `limit` bytes is refused with 413, from its
    Content-Length before anything is read, or as soon as a streamed body passes the limit."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit
        self.message = f"request body over the {limit / 2**20:g} MB upload limit"

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length", b"0")
        if not length.isdigit() or int(length) > self.limit:
            return await _error(413, self.message)(scope, receive, send)
        seen = 0

        async def counted() -> dict:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:  # FastAPI passes an HTTPException from the body through
                raise HTTPException(413, self.message)
            return message

        await self.app(scope, counted, send)


def _error(status: int, message: str, headers: Optional[dict] = None, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status, headers=headers)


def _renamed(exc: FacecmpError, names: dict[str, str]) -> FacecmpError:
    """The same error with each image placeholder replaced by the uploaded file's name."""
    text = str(exc)
    for old, new in names.items():
        text = text.replace(old, new)
    return type(exc)(text)


def decode(upload: UploadFile) -> tuple[np.ndarray, bytes, str, str]:
    """An uploaded photo as (RGB array, bytes, file name, PIL format), judged by decoding it:
    415 for anything but an image, 413 for one over the pixel limit (a decompression bomb)."""
    name = Path(upload.filename or "upload").name[:120] or "upload"
    data = upload.file.read()
    if not data:
        raise HTTPException(400, f"{name}: empty upload")
    limit = max_pixels()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the limit below applies
            img = Image.open(io.BytesIO(data), formats=list(FORMATS))
            if img.width * img.height > limit:
                raise HTTPException(413, f"{name}: image too large ({img.width}x{img.height}; the limit "
                                         f"is {limit / 1e6:g} megapixels)")
            rgb = to_rgb(img, name)
    except UnidentifiedImageError:
        raise HTTPException(415, f"{name}: not an image facecmp reads (JPEG, PNG, PPM, BMP, WebP, "
                                 "TIFF or GIF)") from None
    except Image.DecompressionBombError:
        raise HTTPException(413, f"{name}: image too large (a decompression bomb)") from None
    return rgb, data, name, img.format or "JPEG"


class Galleries:
    """The configured gallery, opened once per worker thread (a SQLite connection is one thread's)."""

    def __init__(self, path: Optional[Path]) -> None:
        self.path = None if path is None else Path(path).resolve()
        self._local = threading.local()
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            Gallery(self.path, create=True).close()  # a bad path fails at start, not per request

    def need(self) -> None:
        """404 when the server has no gallery."""
        if self.path is None:
            raise HTTPException(404, "no gallery: start the server with --gallery DB")

    def get(self) -> Gallery:
        """This thread's open gallery; 404 when the server has none."""
        self.need()
        if getattr(self._local, "gallery", None) is None:
            self._local.gallery = Gallery(self.path, create=True)
        return self._local.gallery


def create_app(gallery: Optional[str | Path] = None, token: Optional[str] = None,
               max_upload_mb: float = 10.0, threads: Optional[int] = None) -> FastAPI:
    """The FastAPI app: the JSON API under /api, the page at /. Enrolment and removal need
    `token` (else 403); `threads` run the face work (default: one per CPU)."""
    pool: dict[str, ThreadPoolExecutor] = {}

    async def work(fn: Callable[..., Any], *args: Any) -> Any:
        """Run CPU work on the face threads, so the event loop (and /api/health) stays free."""
        if "face" not in pool:
            pool["face"] = ThreadPoolExecutor(threads or os.cpu_count() or 1, thread_name_prefix="facecmp")
        return await asyncio.get_running_loop().run_in_executor(pool["face"], functools.partial(fn, *args))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        if "face" in pool:
            pool.pop("face").shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="facecmp", version="1", docs_url=None, redoc_url=None,  # their pages use a CDN
                  description="Compare, analyse and identify faces. Reference: docs/serve.md.",
                  lifespan=lifespan)
    galleries = Galleries(gallery)
    app.add_middleware(UploadLimit, limit=int(max_upload_mb * 2**20))
    secret = token.encode() if token else None

    @app.exception_handler(HTTPException)
    async def _http(request: Any, exc: HTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Any, exc: RequestValidationError) -> JSONResponse:
        what = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:]) or 'body'}: {e['msg']}" for e in exc.errors())
        return _error(422, what)

    @app.exception_handler(FacecmpError)
    async def _facecmp(request: Any, exc: FacecmpError) -> JSONResponse:
        return _error(next((s for k, s in STATUS.items() if isinstance(exc, k)), 400), str(exc))

    @app.exception_handler(Exception)
    async def _bug(request: Any, exc: Exception) -> JSONResponse:
        log.exception("internal error on %s", request.url.path)  # the traceback goes to the log only
        return _error(500, f"internal error ({type(exc).__name__}); the server log has the details")

    async def authorized(authorization: Optional[str] = Header(None)) -> None:
        """Require `Authorization: Bearer TOKEN`: 403 with no token configured or a wrong one, 401 without."""
        if secret is None:
            raise HTTPException(403, "enrolment is off: start the server with --token-file FILE")
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise HTTPException(401, "this needs Authorization: Bearer TOKEN", {"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(given.strip().encode(), secret):
            raise HTTPException(403, "wrong token")

    @app.get("/api/health")
    async def health() -> dict:
        """Whether the server answers, has a gallery and takes enrolments."""
        return {"status": "ok", "gallery": galleries.path is not None, "enroll": secret is not None,
                "max_upload_mb": max_upload_mb}

    def _compare(a: UploadFile, b: UploadFile) -> dict:
        (rgb_a, _, name_a, _), (rgb_b, _, name_b, _) = decode(a), decode(b)
        try:
            result = facecmp.compare(rgb_a, rgb_b)
        except FacecmpError as exc:
            raise _renamed(exc, {"<image 0>": name_a, "<image 1>": name_b}) from None
        out = result.to_json()
        out.update(path_a=name_a, path_b=name_b, same=result.same)
        for face, name in zip(out["faces"], (name_a, name_b)):
            face["path"] = name
        return out

    @app.post("/api/compare")
    async def compare(a: UploadFile = File(...), b: UploadFile = File(...)) -> dict:
        """Are the faces of photos a and b the same person? As `facecmp compare --json`, plus `same`."""
        return await work(_compare, a, b)

    def _faces(image: UploadFile, top_k: Optional[int] = None) -> dict:
        rgb, _, name, _ = decode(image)
        found = facecmp.analyze(rgb) if top_k is None else facecmp.identify(galleries.get(), rgb, top_k=top_k)
        return {"image": name, "width": rgb.shape[1], "height": rgb.shape[0],
                "faces": [dict(f.to_json(), path=name) for f in found]}

    @app.post("/api/analyze")
    async def analyze(image: UploadFile = File(...)) -> dict:
        """Every face of a photo: box, landmarks, score, mask and expression (most confident first)."""
        return await work(_faces, image)

    @app.post("/api/identify")
    async def identify(image: UploadFile = File(...), top_k: int = Query(5, ge=1, le=100)) -> dict:
        """Every face of a photo named as an enrolled person or unknown, as `facecmp identify --json`."""
        galleries.need()  # 404 before any work
        return await work(_faces, image, top_k)

    def _enroll(name: str, images: list[UploadFile]) -> Any:
        if not name.strip():
            raise HTTPException(400, "a person's name cannot be empty")
        g = galleries.get()
        photos = [decode(f) for f in images]  # every upload judged before any is stored
        outcomes = []
        for _, data, filename, fmt in photos:
            o = enroll_photo(g, name, data, FORMATS.get(fmt, ".img"))
            note = o.note.replace(o.path, filename) if o.note else None
            outcomes.append({"file": filename, "status": o.status, "note": note})
        added = sum(o["status"] == "added" for o in outcomes)
        failed = [o for o in outcomes if o["status"] == "failed"]
        if not added and failed:
            return _error(422, failed[0]["note"], name=name.strip(), photos=outcomes)
        return {"name": name.strip(), "added": added, "photos": outcomes}

    @app.post("/api/enroll", dependencies=[Depends(authorized)])
    async def enroll(name: str = Form(..., max_length=200), images: List[UploadFile] = File(...)) -> Any:
        """Enrol photos of a person; each kept in DB.photos/ when added. 422 when none could be."""
        galleries.need()
        return await work(_enroll, name, images)

    @app.get("/api/gallery")
    async def people() -> dict:
        """The enrolled people and how many photos each has, as `facecmp gallery list --json`."""
        galleries.need()
        found = await work(lambda: galleries.get().people())
        return {"people": [{"name": n, "images": k} for n, k in found]}

    def _remove(name: str) -> dict:
        g = galleries.get()
        if not g.has_person(name):
            raise HTTPException(404, f"no person named {name!r} in the gallery")
        return {"removed": name, "images": remove_person(g, name)}

    @app.delete("/api/gallery/{name}", dependencies=[Depends(authorized)])
    async def remove(name: str) -> dict:
        """Remove a person, their photos and vectors, and the photos this server kept of them."""
        galleries.need()
        return await work(_remove, name)

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def page() -> FileResponse:
        """The page: compare, analyse and identify, enrol."""
        return FileResponse(WEB / "index.html", headers={"Content-Security-Policy": CSP,
                                                         "X-Content-Type-Options": "nosniff"})

    app.mount("/web", StaticFiles(directory=WEB), name="web")
    return app
