"""Write benchmark results as strict JSON.

Lives in ``vtcodec.bench``. JSON has no infinity, and a PSNR of identical frames is infinite,
so every infinite float is written as the string ``"inf"`` (``"-inf"``) and read back as a
float; ``null`` always means "not measured" (e.g. VMAF without imageio-ffmpeg), never infinity.
NaN is written as null. Fractions (frame rates) are written as "num/den" strings.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from fractions import Fraction
from pathlib import Path

import numpy as np

from vtcodec.atomic import replace_atomically


def to_jsonable(obj):
    """A copy of ``obj`` made only of JSON types, with the conventions above."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(dataclasses.asdict(obj))
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        if math.isnan(v):
            return None
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return v
    if isinstance(obj, Fraction):
        return f"{obj.numerator}/{obj.denominator}"
    if isinstance(obj, (Path, os.PathLike)):
        return os.fspath(obj)
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if obj is None or isinstance(obj, str):
        return obj
    return str(obj)


def _restore(obj):
    if isinstance(obj, dict):
        return {k: _restore(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_restore(v) for v in obj]
    if obj == "inf":
        return math.inf
    if obj == "-inf":
        return -math.inf
    return obj


def write_results(results: dict, path: str | os.PathLike) -> None:
    """Write the results file atomically (a temporary file beside it, then renamed)."""
    text = json.dumps(to_jsonable(results), indent=2, allow_nan=False) + "\n"
    replace_atomically(Path(path), lambda tmp: tmp.write_text(text))


def read_results(path: str | os.PathLike) -> dict:
    """Load a results file, turning "inf" strings back into floats."""
    return _restore(json.loads(Path(path).read_text()))
