"""User-facing errors: one clear line for the user, a distinct exit code for scripts.

Every error that bad input can cause is a FacecmpError; the subclasses say which kind,
so a program can catch what it handles (e.g. NoFaceError) and let the rest through.
"""


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
