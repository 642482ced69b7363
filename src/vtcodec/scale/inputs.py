"""What `vtcodec tokenize SRC...` means by its sources: files, folders, globs and manifests.

A folder contributes its videos (by suffix, vtcodec.video.VIDEO_EXT), recursively; a glob its
matches; a manifest (.csv, .jsonl, .parquet) the paths in its `path` column (relative paths are
taken from the manifest's folder); any other file is an input as it is, so a corrupt or
misnamed video is tried and lands in errors.jsonl rather than being skipped in silence.
The result is absolute, sorted within each source and free of repeats: a clip's identity in the
shards (and so resuming) rests on it.
"""

from __future__ import annotations

import csv
import glob
import json
import os
from pathlib import Path

from vtcodec.errors import VtcodecError
from vtcodec.video import VIDEO_EXT

MANIFEST_EXT = {".csv", ".jsonl", ".parquet"}
PATH_COLUMN = "path"


def expand_sources(sources: list[str | os.PathLike]) -> list[str]:
    """Every input path the sources name, absolute, in order, each once."""
    found: list[Path] = []
    for s in sources:
        text = os.fspath(s)
        p = Path(text)
        if p.is_dir():
            found += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in VIDEO_EXT)
        elif p.is_file() and p.suffix.lower() in MANIFEST_EXT:
            found += _manifest(p)
        elif p.is_file():
            found.append(p)
        elif glob.has_magic(text):
            matches = sorted(Path(m) for m in glob.glob(text, recursive=True) if Path(m).is_file())
            if not matches:
                raise VtcodecError(f"source {text!r} matches no files")
            found += matches
        else:
            raise VtcodecError(f"source {text!r} is not a file, folder, glob or manifest")
    return list(dict.fromkeys(str(f.resolve()) for f in found))


def _manifest(p: Path) -> list[Path]:
    suffix = p.suffix.lower()
    try:
        if suffix == ".csv":
            with open(p, newline="") as f:
                rows = list(csv.DictReader(f))
            paths = [r.get(PATH_COLUMN) for r in rows] if rows and PATH_COLUMN in rows[0] else None
        elif suffix == ".jsonl":
            with open(p) as f:
                rows = [json.loads(line) for line in f if line.strip()]
            paths = [r.get(PATH_COLUMN) if isinstance(r, dict) else None for r in rows]
        else:
            from vtcodec.scale.shards import _pa

            _, pq = _pa()
            t = pq.read_table(p)
            paths = t.column(PATH_COLUMN).to_pylist() if PATH_COLUMN in t.column_names else None
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise VtcodecError(f"manifest {str(p)!r} cannot be read: {e}") from None
    if paths is None or any(not isinstance(x, str) or not x for x in paths):
        raise VtcodecError(f"manifest {str(p)!r} needs a {PATH_COLUMN!r} column with a path in every row")
    return [q if q.is_absolute() else p.parent / q for q in map(Path, paths)]
