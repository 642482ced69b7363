"""One exception family for everything a user can get wrong.

Library code raises these with a message that quotes the bad value; only the CLI turns them
into one-line messages and exit codes.
"""


import contextlib
import signal
import threading


@contextlib.contextmanager
def held_signals():
    """Hold Ctrl-C and SIGTERM while a temporary output is created and recorded, so whatever
    cleans up after an interruption knows the file it must remove (an interruption arriving in
    between would leave it behind); a held signal is delivered on leaving. A no-op where signals
    cannot be masked (Windows, threads other than the main one)."""
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


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
