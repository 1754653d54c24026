"""The serve command: facecmp.server's API and page under uvicorn; registered on the main group by cli.py."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import click

from facecmp.cli import friendly, main
from facecmp.errors import FacecmpError


def read_token(path: Path) -> str:
    """The token in a file (surrounding whitespace dropped), read once; refused when empty."""
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise FacecmpError(f"cannot read the token file {path} ({exc})") from None
    if not token or any(c.isspace() for c in token):
        raise FacecmpError(f"{path} must hold one token: non-empty, without spaces")
    return token


def warm() -> None:
    """Load the bundled models now, so the first request does not wait for them."""
    import facecmp

    identity = facecmp.load_model()
    for model in (identity, identity.masked):
        if model is not None:
            model.embedder  # noqa: B018  (builds the network)
    for task in ("mask", "expression"):
        facecmp.load_model(task).classifier  # noqa: B018


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; anything but loopback lets other machines in.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--gallery", "db", type=click.Path(path_type=Path),
              help="Gallery database for identify and enrol (made if absent; enrolled photos go to DB.photos/).")
@click.option("--token-file", type=click.Path(path_type=Path),
              help="File holding the bearer token that enrolment and removal need (without it they are refused).")
@click.option("--max-upload-mb", type=click.FloatRange(0, min_open=True), default=10.0, show_default=True,
              help="Largest request body, all photos together; more is refused with 413.")
@click.option("--threads", type=click.IntRange(1), default=None,
              help="Threads that run the face work; more overlap more requests and hold more memory "
                   "(default: one per CPU).")
@friendly
def serve(host, port, db, token_file, max_upload_mb, threads) -> None:
    """An HTTP API (compare, analyze, identify, enroll, gallery) and a page at / on top of it."""
    try:
        import uvicorn

        from facecmp.server import create_app
    except ImportError as exc:
        raise FacecmpError(f"facecmp serve needs the serve extra: pip install 'facecmp[serve]' ({exc})") from None
    token = read_token(token_file) if token_file is not None else None
    app = create_app(db, token, max_upload_mb, threads)
    if not _loopback(host):
        click.echo(f"note: listening on {host}: other machines can reach this server"
                   + ("" if token else "; enrolment stays off without --token-file"), err=True)
    click.echo("loading models...", err=True)
    warm()
    uvicorn.run(app, host=host, port=port, log_level="info", server_header=False)
