"""The installed checkpoints as `vtcodec models` lists them, without importing torch.

Beside the registry (vtcodec.models.registry), which builds models and loads weights: this
module only answers "what is installed", so that `vtcodec models` starts in well under a second
(importing torch alone takes 1.4 s of CPU on the 2-core development machine).

A checkpoint's key, architecture and size come from the file itself: its name, the
`__metadata__` of its safetensors header (8-byte little-endian length, then JSON; only the
header is read) and its size. What only a built model knows (pixels per token, parameter count)
and the file's sha256 are cached in `$XDG_CACHE_HOME/vtcodec/checkpoints.json` (default
`~/.cache/vtcodec/`), keyed by the file's resolved path, size and modification time; a
checkpoint not in the cache, or changed since, is built the registry's way (torch imported then)
and cached. The cache is a convenience: unreadable, it is rebuilt; unwritable, it is skipped.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from vtcodec.errors import ModelError

PACKAGE_MODELS = (Path(__file__).resolve().parent / "_models").resolve()  # the shipped checkpoints (package data)
MAX_HEADER = 100_000_000  # safetensors' own cap on a header's length
CACHE_VERSION = 1


@dataclass(frozen=True)
class CheckpointInfo:
    key: str
    path: Path
    arch: str
    pixels_per_token: int
    params: int
    sha256: str
    size_bytes: int
    paired_as: str | None = None  # the paper model it stands for (tivtok, reftok, vidtok), from paired_as()


# earlier designs of a paper's tokenizer, and ConvTok's modes, paired as that paper's model (bench --suite paper)
ARCH_PAIRED_AS = {"tivtok": "tivtok", "tivtok2": "tivtok", "reftok": "reftok", "vidtok": "vidtok"}
CONVTOK_PAIRED_AS = {"tiv": "tivtok", "ref": "reftok", "intra": "vidtok"}


def paired_as(arch: str, config: str | dict) -> str | None:
    """Which paper's tokenizer a checkpoint stands for, from its metadata alone (no torch)."""
    if arch == "convtok":
        cfg = json.loads(config) if isinstance(config, str) else config
        return CONVTOK_PAIRED_AS.get(cfg.get("mode", "ref"))
    return ARCH_PAIRED_AS.get(arch)


def model_dirs() -> list[Path]:
    """Where checkpoints are looked for, first wins: $VTCODEC_MODELS, the shipped models (package
    data), ./models. Here rather than in vtcodec.models.registry (which imports it) so that
    listing checkpoints needs no torch."""
    dirs = []
    if os.environ.get("VTCODEC_MODELS"):
        dirs.append(Path(os.environ["VTCODEC_MODELS"]))
    dirs += [PACKAGE_MODELS, Path.cwd() / "models"]
    seen, out = set(), []
    for d in dirs:
        r = d.resolve()
        if r not in seen and r.is_dir():
            seen.add(r)
            out.append(r)
    return out


def read_header(path: str | Path) -> dict:
    """The JSON header of a safetensors file (tensor entries and `__metadata__`), reading only it."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            n = int.from_bytes(head, "little") if len(head) == 8 else -1
            if not 0 < n <= MAX_HEADER:
                raise ModelError(f"{path}: not a safetensors checkpoint (header length {n})")
            text = f.read(n)
    except OSError as e:
        raise ModelError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        header = json.loads(text) if len(text) == n else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        header = None
    if not isinstance(header, dict):
        raise ModelError(f"{path}: not a safetensors checkpoint (truncated or malformed header)")
    return header


def cache_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "vtcodec" / "checkpoints.json"


def _load_cache() -> dict:
    try:
        data = json.loads(cache_path().read_text())
    except (OSError, ValueError):
        return {}
    ok = isinstance(data, dict) and data.get("version") == CACHE_VERSION and isinstance(data.get("files"), dict)
    return data["files"] if ok else {}


def _save_cache(files: dict) -> None:
    """Write the cache atomically; entries of files that no longer exist are dropped."""
    p = cache_path()
    files = {k: v for k, v in files.items() if Path(k).is_file()}
    tmp = p.with_name(f"{p.name}.{os.getpid()}.tmp")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps({"version": CACHE_VERSION, "files": files}, indent=1, sort_keys=True))
        os.replace(tmp, p)
    except OSError:
        tmp.unlink(missing_ok=True)


def _built(path: Path, meta: dict) -> dict:
    """What needs the model class: built from the metadata as the registry builds it (torch)."""
    from vtcodec.models.registry import build_from_metadata, sha256_file

    model = build_from_metadata(meta, path)
    return {"pixels_per_token": model.pixels_per_token, "params": model.params, "sha256": sha256_file(path)}


def list_checkpoints() -> list[CheckpointInfo]:
    """Every installed checkpoint, first directory wins on a duplicate key (registry.list_models'
    rows, from headers and the cache)."""
    cache = _load_cache()
    changed = any(not Path(k).is_file() for k in cache)  # a removed checkpoint: drop its entry
    found: dict[str, CheckpointInfo] = {}
    for d in model_dirs():
        for p in sorted(d.glob("*.safetensors")):
            if p.stem in found:
                continue
            meta = read_header(p).get("__metadata__") or {}
            if "arch" not in meta or "config" not in meta:
                raise ModelError(f"{p}: checkpoint metadata lacks 'arch'/'config' (not a vtcodec checkpoint)")
            st = p.stat()
            stamp = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "arch": meta["arch"], "config": meta["config"]}
            entry = cache.get(str(p))
            if not (isinstance(entry, dict) and all(entry.get(k) == v for k, v in stamp.items())):
                entry = cache[str(p)] = {**stamp, **_built(p, meta)}
                changed = True
            found[p.stem] = CheckpointInfo(p.stem, p, meta["arch"], entry["pixels_per_token"], entry["params"],
                                           entry["sha256"], st.st_size, paired_as(meta["arch"], meta["config"]))
    if changed:
        _save_cache(cache)
    return list(found.values())
