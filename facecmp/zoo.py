"""The bundled default models that ship inside the package."""

from __future__ import annotations

from pathlib import Path

from facecmp.errors import ModelError

ZOO_DIR = Path(__file__).parent / "zoo"


def default_model(task: str = "identity") -> Path:
    """The bundled model directory for a task; a clear error if this install has none."""
    path = ZOO_DIR / task
    if not (path / "meta.json").is_file():
        raise ModelError(f"no bundled {task} model in this install; pass --model DIR")
    return path


def resolve_model(model: str | Path | None, task: str = "identity") -> Path:
    """--model if given, else the bundled model for the task."""
    return Path(model) if model else default_model(task)
