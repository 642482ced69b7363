"""Atomic file writes: the one way vtcodec replaces a file.

A result is written to a temporary file beside its destination (same folder, so the rename is
atomic) and renamed onto it only when complete: a reader never sees half a file, and a failure or
an interruption (Ctrl-C, SIGTERM: see `errors.held_signals`) leaves the destination as it was.
Writers that stream into their temporary file (`video.VideoWriter`) take it from `temp_beside`
and rename it themselves; `container.VtkWriter` follows the same rule with a name of its own.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from vtcodec.errors import OutputError, held_signals


def temp_beside(path: Path) -> Path:
    """A new empty temporary file next to `path` (same folder, so os.replace is atomic), named
    `.NAME.XXXX.tmpSUFFIX`, with the permissions a plain new file would get (mkstemp's are private)."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
    os.close(fd)
    os.chmod(tmp, 0o666 & ~umask())
    return Path(tmp)


def replace_atomically(path: Path, write) -> None:
    """Call write(a temporary path beside `path`, same suffix), then rename it onto `path`: a
    reader never sees half a file, and a failure or an interruption leaves `path` as it was.
    OSError becomes OutputError."""
    tmp = None
    try:
        with held_signals():  # created and recorded as one step, for the finally to find
            tmp = temp_beside(path)
        write(tmp)
        os.replace(tmp, path)
    except OSError as e:
        raise OutputError(f"cannot write {os.fspath(path)!r}: {e.strerror or e}") from None
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it
    os.umask(mask)
    return mask


def place_file(tmp, dst, force: bool) -> None:
    """Move the finished temporary file `tmp` onto `dst`. With `force` it replaces `dst`; without,
    it lands only where nothing exists, atomically: a hard link cannot be made over an existing
    name, so of two writers racing for one output one wins and the other gets FileExistsError
    (a check-then-rename would let both "win", the second clobbering the first)."""
    if force:
        os.replace(tmp, dst)
        return
    try:
        os.link(tmp, dst)
    except FileExistsError:
        raise
    except OSError:  # a filesystem without hard links: check, then rename (a narrow race remains)
        if os.path.lexists(dst):
            raise FileExistsError(17, "exists", os.fspath(dst)) from None
        os.replace(tmp, dst)
        return
    os.unlink(tmp)
