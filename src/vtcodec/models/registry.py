"""The one registry of tokenizer architectures, and safetensors checkpoints.

Architectures are keyed by stable strings (`tivtok`, `tivtok2`, `reftok`, `vidtok`), never by position. A
checkpoint is one `.safetensors` file whose metadata holds `arch` and the JSON `config`; it loads
with strict keys, and the sha256 of the file is what a `.vtk` header names. No pickle anywhere.

Installed checkpoints are found in `$VTCODEC_MODELS` (if set), then the package's own `_models/`
(in a checkout a link to the repository's `models/`; in an installed package the shipped
checkpoints, copied there as package data), then `./models`. A checkpoint's *key* is its file name
without `.safetensors` (e.g. `tivtok`, `vidtok-256`). A retrained checkpoint replaces the file
under its key; the one it replaces leaves the tree (git history keeps it). Decoding searches every
models folder and its `superseded/` subfolder by sha256, so a .vtk written by a replaced checkpoint
decodes wherever that file is put back.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import json
import math
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save

from vtcodec.atomic import replace_atomically
from vtcodec.checkpoint_index import PACKAGE_MODELS, CheckpointInfo, model_dirs, paired_as  # noqa: F401  (kept torch-free there)
from vtcodec.errors import ModelError
from vtcodec.models.base import Tokenizer
from vtcodec.models.convtok import ConvTok
from vtcodec.models.reftok import RefTok
from vtcodec.models.tivtok import TivTok
from vtcodec.models.tivtok2 import TivTok2
from vtcodec.models.vidtok import VidTok

ARCHS: dict[str, type[Tokenizer]] = {m.arch: m for m in (TivTok, TivTok2, RefTok, VidTok, ConvTok)}
SUPERSEDED = "superseded"  # DIR/superseded/ of a models folder: replaced checkpoints, searched by sha256 only


def build_from_metadata(meta: dict[str, str], path: str | Path, overrides: dict | None = None,
                        arch: str | None = None) -> Tokenizer:
    """The model a checkpoint's metadata describes (config fields it predates take the arch's
    LEGACY values), updated by `overrides`; any problem with it is a ModelError. `arch`: build
    that architecture instead, from the stored config (it must list the stored one in WARM_FROM)."""
    if "arch" not in meta or "config" not in meta:
        raise ModelError(f"{path}: checkpoint metadata lacks 'arch'/'config' (not a vtcodec checkpoint)")
    if arch is not None and arch != meta["arch"] and meta["arch"] not in getattr(ARCHS.get(arch), "WARM_FROM", ()):
        raise ModelError(f"{path} is a {meta['arch']} checkpoint, not {arch}, and {arch} cannot start from it; "
                         f"pass --model {meta['arch']}")
    try:
        stored = json.loads(meta["config"])
        legacy = ARCHS[meta["arch"]].LEGACY if meta["arch"] in ARCHS else {}
        return build(arch or meta["arch"], {**legacy, **stored, **(overrides or {})})
    except (json.JSONDecodeError, TypeError, ValueError) as e:
        raise ModelError(f"{path}: bad model config in checkpoint metadata ({e})") from None


def build(arch: str, overrides: dict | None = None) -> Tokenizer:
    """A freshly initialised model of `arch` with its default config, updated by `overrides`."""
    if arch not in ARCHS:
        raise ModelError(f"unknown architecture {arch!r}; known: {', '.join(ARCHS)}")
    cls = ARCHS[arch]
    config = make_config(cls, overrides or {})
    try:
        return cls(config)
    except ValueError as e:
        raise ModelError(f"{arch}: invalid config ({e})") from None


def make_config(cls: type[Tokenizer], values: dict):
    fields = {f.name: f for f in dataclasses.fields(cls.Config)}
    unknown = set(values) - set(fields)
    if unknown:
        raise ModelError(f"{cls.arch}: unknown config keys {sorted(unknown)}; known: {sorted(fields)}")
    # JSON has no tuples: restore them so configs stay hashable and compare equal
    clean = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return cls.Config(**clean)


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def unwrap(model: torch.nn.Module) -> Tokenizer:
    """Strip DDP (`.module`) and torch.compile (`._orig_mod`) wrappers before saving."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, torch.nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model


def save_checkpoint(model: torch.nn.Module, path: str | Path, info: dict | None = None,
                    dtype: torch.dtype = torch.float32) -> str:
    """Write weights + arch + config (+ free-form training info) atomically; returns sha256.

    Shipped checkpoints are stored as float16 (half the size; loading casts back to float32).
    """
    model = unwrap(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"arch": model.arch, "config": json.dumps(model.config_dict()), "info": json.dumps(info or {})}
    tensors = {k: v.detach().to(dtype).contiguous().cpu() for k, v in model.state_dict().items()}
    header, data = canonical_header(save(tensors, metadata=meta))

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            f.write(header)
            f.write(data)

    replace_atomically(path, write)
    return sha256_file(path)


def canonical_header(blob: bytes) -> tuple[bytes, memoryview]:
    """A safetensors file (its length-prefixed header, and its data uncopied) with the
    `__metadata__` keys in sorted order.

    safetensors writes the metadata map in an order that changes from process to process (two saves
    of the same weights and info had different sha256s), and the sha256 of the file
    is what a .vtk names; sorted, the same weights and metadata always make the same bytes. Tensor
    entries and data are untouched (their offsets are relative to the end of the header); the
    header is padded with spaces to a multiple of 8 bytes, as safetensors pads it.
    """
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + n])
    if "__metadata__" in header:
        header = {"__metadata__": dict(sorted(header.pop("__metadata__").items()))} | header
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text, memoryview(blob)[8 + n:]


def read_metadata(path: str | Path) -> dict[str, str]:
    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelError(f"{path}: not a readable safetensors checkpoint ({e})") from None


MAX_CONFIG_BYTES = 1 << 16     # a config is a few hundred bytes of JSON
MAX_CONFIG_INT = 1 << 16       # any int in a config: widths, depths, tiles, levels
MAX_PARAMS = 1 << 28           # 1 GiB of float32 weights: far above any vtcodec model


def check_checkpoint(path: str | Path, meta: dict[str, str]) -> None:
    """A checkpoint is untrusted input (issue 23): before any weight is allocated, its config is
    checked like a .vtk header (size, nesting depth, every field's type against the arch's Config
    and its range), the model is built on the meta device (shapes without memory), and its
    parameter count and every tensor's shape are compared with what the file declares. Any
    problem is a ModelError naming it."""
    from vtcodec.limits import json_depth, parse_float

    if not isinstance(meta.get("arch"), str) or meta.get("arch") not in ARCHS:
        return  # build_from_metadata says what is wrong with the arch
    text = meta.get("config", "")
    if not isinstance(text, str) or len(text) > MAX_CONFIG_BYTES or json_depth(text.encode()) > 4:
        raise ModelError(f"{path}: checkpoint config is not a small flat JSON object")
    try:
        stored = json.loads(text, parse_float=parse_float)
    except (ValueError, RecursionError) as e:
        raise ModelError(f"{path}: bad model config in checkpoint metadata ({str(e)[:200]})") from None
    if not isinstance(stored, dict):
        raise ModelError(f"{path}: checkpoint config must be a JSON object, got {type(stored).__name__}")
    cls = ARCHS[meta["arch"]]
    defaults = {f.name: f.default for f in dataclasses.fields(cls.Config)}
    for key, value in stored.items():
        if key not in defaults:
            continue  # make_config names unknown keys
        want = defaults[key]
        bad = type(value) is not type(want) and not (isinstance(want, tuple) and isinstance(value, list)) \
            and not (type(want) is float and type(value) is int) and want is not None
        ints = [value] if type(value) is int else value if isinstance(value, list) else []
        if bad or any(type(v) is not int or not 0 <= v <= MAX_CONFIG_INT for v in ints) \
                or isinstance(value, list) and (len(value) > 64 or (isinstance(want, tuple) and not ints and value)):
            raise ModelError(f"{path}: config {key!r} = {str(value)[:60]} is not a {type(want).__name__} "
                             f"in range (ints 0..{MAX_CONFIG_INT})")
    try:
        with torch.device("meta"):  # shapes only: nothing is allocated
            model = build_from_metadata(meta, path)
        # what the codec asks of every tokenizer, evaluated here rather than mid-encode
        tile, frames, tokens, grids = model.tile, model.chunk_frames, model.tokens_per_chunk(True), model.stream_grids
    except ModelError:
        raise
    except Exception as e:  # noqa: BLE001 - a constructor refusing a config, in whatever words
        raise ModelError(f"{path}: the config cannot build a {meta['arch']} model ({type(e).__name__}: "
                         f"{str(e)[:160]})") from None
    cfg = dataclasses.asdict(model.config) if dataclasses.is_dataclass(getattr(model, "config", None)) else {}
    patches = {k: v for k, v in cfg.items() if "patch" in k and type(v) is int}
    whole_frame = tile == 0  # ConvTok's convention: whole frames, no tiles (its codec path is under way)
    if not (whole_frame or 8 <= tile <= 1024) or frames < 1 or any(v < 1 or tile % v for v in patches.values()) \
            or any(n < 1 or math.prod(grids.get(k, (n,))) != n for k, n in tokens.items()):
        raise ModelError(f"{path}: config gives tile {tile} (patches {patches}), {frames} frames per chunk and "
                         f"tokens {tokens} in grids {grids}: not a model the codec can run")
    params = sum(t.numel() for t in (*model.parameters(), *model.buffers()))  # non-persistent buffers too
    if params > MAX_PARAMS:
        raise ModelError(f"{path}: config describes {params} weights and buffers, more than the {MAX_PARAMS} allowed")
    want_shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    try:
        with safe_open(str(path), framework="pt") as f:
            have = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelError(f"{path}: not a readable safetensors checkpoint ({e})") from None
    if set(have) != set(want_shapes):
        missing, unexpected = sorted(set(want_shapes) - set(have)), sorted(set(have) - set(want_shapes))
        raise ModelError(f"{path}: checkpoint keys do not match {meta['arch']}: missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]}")
    bad = [k for k in want_shapes if want_shapes[k] != have[k]]
    if bad:
        raise ModelError(f"{path}: shape mismatch for {bad[0]}: {have[bad[0]]} vs {want_shapes[bad[0]]}")


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> Tokenizer:
    """Build the model named in the metadata and load its weights with strict keys."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"checkpoint not found: {path}")
    meta = read_metadata(path)
    check_checkpoint(path, meta)
    model = build_from_metadata(meta, path)
    state = load_file(str(path))
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        raise ModelError(f"{path}: checkpoint keys do not match {meta['arch']}: missing {missing[:3]}, unexpected {unexpected[:3]}")
    bad = [k for k in own if own[k].shape != state[k].shape]
    if bad:
        raise ModelError(f"{path}: shape mismatch for {bad[0]}: {tuple(state[bad[0]].shape)} vs {tuple(own[bad[0]].shape)}")
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    return model.to(device).eval()


def grown(old: torch.Tensor, fresh: torch.Tensor) -> torch.Tensor:
    """`old` in the leading corner of a copy of `fresh` (a tensor grown along its first two
    dimensions, output and input units): the columns of new inputs in the old rows are zeroed, new
    rows keep `fresh`'s values. A layer stack widened this way computes what it computed before."""
    out = fresh.clone()
    if old.ndim > 1:
        out[:old.shape[0]] = 0  # old units ignore new inputs
    out[tuple(slice(0, n) for n in old.shape)] = old
    return out


def warm_start(path: str | Path, overrides: dict | None = None, arch: str | None = None) -> tuple[Tokenizer, list[str]]:
    """A model for training from a checkpoint's weights: its config updated by `overrides`; `arch`
    another architecture built on the same modules (one whose WARM_FROM lists the stored arch).

    Tensors whose name and shape match are copied; the rest (modules an override adds, e.g.
    RefTok's ref_path 2 skip) keep their fresh initialisation and are returned by name.

    A tensor matching one of the model's GROWABLE patterns may have grown along its first two
    dimensions (output and input units; the rest, e.g. kernel sizes, equal): the stored block is
    copied into its leading corner, the columns of new inputs in the old rows are zeroed, and new
    rows keep their fresh initialisation. Old units then never see new ones, so a layer stack
    widened this way (a pixel head given more channels) computes exactly what it computed before
    and the new channels start to matter as training moves their outgoing weights off zero. Grown
    tensors are reported as "name[o:]" / "name[:, i:]", the parts that start fresh.

    A tensor the checkpoint lacks whose name starts with one of the model's DERIVED prefixes is
    copied from the stored tensor under the source prefix (a duplicated module starts as the
    original), and is not reported.
    """
    model = build_from_metadata(read_metadata(path), path, overrides, arch)
    state = {k: v.float() for k, v in load_file(str(path)).items()}
    own = model.state_dict()
    growable = type(model).GROWABLE
    load, fresh = {}, []
    for k, t in own.items():
        old = state.get(k)
        if old is None:
            old = next((state.get(src + k[len(new):]) for new, src in type(model).DERIVED.items() if k.startswith(new)), None)
        if old is not None and old.shape == t.shape:
            load[k] = old
        elif (old is not None and any(fnmatch.fnmatchcase(k, pat) for pat in growable) and old.ndim == t.ndim
              and old.shape[2:] == t.shape[2:] and all(a <= b for a, b in zip(old.shape[:2], t.shape[:2]))):
            load[k] = grown(old, t)
            o = old.shape[0]
            if o < t.shape[0]:
                fresh.append(f"{k}[{o}:]")
            if old.ndim > 1 and old.shape[1] < t.shape[1]:
                fresh.append(f"{k}[:, {old.shape[1]}:]")
        else:
            fresh.append(k)
    model.load_state_dict(load, strict=False)
    return model, sorted(fresh)


def list_models() -> list[CheckpointInfo]:
    """Every installed checkpoint (first directory wins on a duplicate key)."""
    found: dict[str, CheckpointInfo] = {}
    for d in model_dirs():
        for p in sorted(d.glob("*.safetensors")):
            if p.stem in found:
                continue
            meta = read_metadata(p)
            model = build_from_metadata(meta, p)
            found[p.stem] = CheckpointInfo(p.stem, p, model.arch, model.pixels_per_token, model.params,
                                           sha256_file(p), p.stat().st_size, paired_as(model.arch, meta["config"]))
    return list(found.values())


def resolve_model(name: str | Path) -> Path:
    """A checkpoint key (`tivtok`) or a path to a `.safetensors` file -> its path."""
    p = Path(name)
    if p.suffix == ".safetensors" or p.is_file():
        if not p.is_file():
            raise ModelError(f"checkpoint not found: {p}")
        return p
    for d in model_dirs():
        if (d / f"{name}.safetensors").is_file():
            return d / f"{name}.safetensors"
    known = ", ".join(m.key for m in list_models()) or "none installed"
    raise ModelError(f"no checkpoint named {str(name)!r} in {[str(d) for d in model_dirs()]} (installed: {known})")


def find_by_sha(key: str, sha256: str) -> Path:
    """The installed checkpoint with this key and hash, or a ModelError naming what is needed."""
    for d in model_dirs():
        p = d / f"{key}.safetensors"
        if p.is_file() and sha256_file(p) == sha256:
            return p
    for d in model_dirs():  # renamed, or superseded by a retrained one: hash files, build no models
        for p in sorted(d.glob("*.safetensors")) + sorted(d.glob(f"{SUPERSEDED}/*.safetensors")):
            if p != d / f"{key}.safetensors" and sha256_file(p) == sha256:
                return p
    searched = ", ".join(str(d) for d in model_dirs()) or "none exists"
    raise ModelError(f"this .vtk needs checkpoint {key!r} with sha256 {sha256}, which is not installed: put that file, "
                     f"as {key}.safetensors, in the folder $VTCODEC_MODELS names (searched: {searched})")
