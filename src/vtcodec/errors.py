"""One exception family for everything a user can get wrong.

Library code raises these with a message that quotes the bad value; only the CLI turns them
into one-line messages and exit codes.
"""


from __future__ import annotations

import contextlib
import numbers
import threading

_held = 0                                   # depth of held_signals() sections
_pending: BaseException | None = None       # an interruption that arrived inside one


@contextlib.contextmanager
def held_signals():
    """Hold interruptions (Ctrl-C, SIGTERM) while a temporary output is created and recorded, so
    whatever cleans up after one knows the file it must remove; a held interruption is raised on
    leaving. It holds what the CLI's handlers route through `interrupt` (vtcodec.cli.main installs
    them); a library caller keeps Python's own Ctrl-C, and its writers' cleanup backstops instead.
    (Masking the signals cannot do this: another thread of the process may take the signal, and
    Python then runs the handler in the main thread at once.)"""
    global _held, _pending
    if threading.current_thread() is not threading.main_thread():  # handlers run on the main thread only
        yield
        return
    _held += 1
    try:
        yield
    except BaseException as error:
        _held -= 1
        if not _held and _pending is not None:  # the interruption wins (its exit status), the error as its context
            exc, _pending = _pending, None
            if exc is not error:
                raise exc from error
        raise
    _held -= 1
    if not _held and _pending is not None:
        exc, _pending = _pending, None
        raise exc


def interrupt(exc: BaseException) -> None:
    """For signal handlers: raise `exc` now, or on leaving the held_signals() section it arrived in."""
    global _pending
    if _held:
        _pending = _pending or exc
    else:
        raise exc


def whole_number_problem(name: str, value, minimum: int = 1) -> str | None:
    """What is wrong with `value` as a whole number >= minimum (None when nothing); bools are not
    numbers here, numpy integers are."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        return f"{name} must be a whole number >= {minimum}, got {value!r}"
    if value < minimum:
        return f"{name} must be a whole number >= {minimum}, got {int(value)}"  # np.int64(0) shows as 0
    return None


class VtcodecWarning(UserWarning):
    """Something vtcodec did that the user may not expect (a variable frame rate made constant);
    the CLI prints it as one line."""


class VtcodecError(Exception):
    """Base class: a problem with the user's input, files or environment."""


class VideoError(VtcodecError):
    """The input video cannot be read, or is of a kind vtcodec refuses."""


class FormatError(VtcodecError):
    """A .vtk file is malformed, corrupted, truncated or of an unknown version."""


class ModelError(VtcodecError):
    """A tokenizer checkpoint is missing, mismatched or malformed."""


class OutputError(VtcodecError):
    """The output path is unusable (exists without --force, equals the input, ...)."""
