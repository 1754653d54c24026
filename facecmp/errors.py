"""User-facing errors: one clear line for the user, a distinct exit code for scripts."""


class FacecmpError(Exception):
    """An error caused by the user's input; the CLI prints it as one line and exits."""

    exit_code = 2


class NoFaceError(FacecmpError):
    """No face was found in an image."""

    exit_code = 3


class NothingDoneError(FacecmpError):
    """A batch command could do none of its items (each failed on its own and was reported)."""

    exit_code = 1
