"""User-facing errors: one clear line for the user, a distinct exit code for scripts.

Every error that bad input can cause is a FacecmpError; the subclasses say which kind,
so a program can catch what it handles (e.g. NoFaceError) and let the rest through.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable


class FacecmpError(Exception):
    """An error caused by the user's input; the CLI prints it as one line and exits."""

    exit_code = 2


class ImageError(FacecmpError):
    """An image that cannot be read: missing, not an image, truncated, too large, ..."""


class ModelError(FacecmpError):
    """A model directory that cannot be used: missing, malformed, or the wrong kind."""


class NoFaceError(FacecmpError):
    """No face was found in an image."""

    exit_code = 3


class NothingDoneError(FacecmpError):
    """A batch command could do none of its items (each failed on its own and was reported)."""

    exit_code = 1


def one_line_errors(main: Callable[..., int]) -> Callable[..., int]:
    """Decorate a script's main(): a FacecmpError is printed as one `error:` line on stderr
    and its exit code returned (Ctrl-C: "interrupted", 130), never a traceback."""

    @functools.wraps(main)
    def guarded(*args, **kwargs) -> int:
        try:
            return main(*args, **kwargs)
        except FacecmpError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return exc.exit_code
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130

    return guarded
