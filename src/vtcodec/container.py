"""The `.vtk` container, format version 3 (readers also read versions 1 and 2).

This docstring is the normative specification of the container (docs/FORMAT.md carries the
same text plus the token payload format). The format version is independent of the vtcodec
package version; it changes only when an older reader could misread a new file.

Version history:
  1  the first release.
  2  the same bytes and rules; a non-key chunk may now start with a SHARED unit (a partial
     refresh: key streams for some tiles, see docs/FORMAT.md). A version-1 decoder would skip it
     and decode those tiles against stale state, so version-2 files are refused there by
     version number instead of misread.
  3  the header JSON is stored compressed: raw DEFLATE (RFC 1951) with the preset dictionary
     HEADER_DICT below. The plain JSON (444-491 bytes for the shipped models) was the largest
     part of the container; compressed it takes 108-109 (`vtcodec info` prints both).

Conventions
-----------
All integers are unsigned little-endian: u8, u16, u32, u64. CRC32 is the ISO-HDLC CRC-32
(polynomial 0x04C11DB7, reflected, init and xorout 0xFFFFFFFF), i.e. Python's `zlib.crc32`,
stored as a u32. A file is::

    preamble | header | header CRC | unit* | INDEX unit | trailer

Preamble and header
-------------------
::

    offset  size  field
    0       8     magic b"\\x89VTK\\r\\n\\x1a\\n"
    8       2     u16 format_version = 3 (1 or 2 in older files)
    10      4     u32 header_len, 2 <= header_len <= 1 MiB (1048576)
    14      n     header (header_len bytes): versions 1-2, UTF-8 JSON text of one object;
                  version 3, that text compressed as one raw DEFLATE stream (RFC 1951, no zlib
                  or gzip wrapper) with the preset dictionary HEADER_DICT, at most 1 MiB
                  inflated, ending exactly at the end of the field
    14+n    4     u32 CRC32 of bytes [0, 14+n): magic, version, length and stored header

HEADER_DICT is these 718 ASCII bytes (shown cut into lines of 88; no line breaks in it), frozen with version 3 (Python: `container.HEADER_DICT`;
zlib: `deflateSetDictionary` / `inflateSetDictionary`, or `zdict=` in Python's zlib). It only
makes typical headers small; any JSON header round-trips::

    {"arch":"tivtok","checkpoint_sha256":"","chunk_frames":16,"fps":"25/1","frame_count":,"h
    eight":,"key_streams":[],"key_streams":["tiv"],"key_streams":["intra"],"model":"vidtok-2
    56","model":"reftok","overlap":0,"overlap":16,"pad_box":[0,0,,],"pixels_per_token":1024,
    "refresh_db":null,"refresh_db":1.0,"segment_chunks":8,"stream_grids":{"latent":[4,8,8]},
    "stream_grids":{"latent":[4,16,16]},"stream_grids":{"tiv":[16,1,10],"tv":[16,1,6]},"stre
    am_grids":{"intra":[1,16,16],"target":[4,8,8]},"stream_levels":{"latent":[8,8,8,5,5,5]},
    "stream_levels":{"tiv":[8,8,8,5,5,5],"tv":[8,8,8,5,5,5]},"stream_levels":{"intra":[8,8,8
    ,5,5,5],"target":[8,8,8,5,5,5]},"tile":128,"tile_batch":8,"tiles":,"vtcodec_version":"0.
    1.0","width":}

The magic's first byte has its high bit set and it holds CR LF, ^Z and LF (PNG's trick), so
7-bit channels and text-mode newline conversion corrupt it visibly. A reader checks the magic,
then the version (before the CRC, so a future file gets a version message, not a CRC one).

The header JSON must be an object without duplicate keys, NaN or Infinity. Writers emit it
with sorted keys and no whitespace (`json.dumps(h, sort_keys=True, separators=(",", ":"),
ensure_ascii=False)`); readers accept any formatting. The caller owns its content; the
container requires these keys:

    model              non-empty string
    checkpoint_sha256  64 lowercase hex digits
    width, height      int >= 1 (original frame size)
    fps                string "num/den", both decimal ints >= 1 without leading zeros
    frame_count        int >= 0; must equal the sum of the index's n_frames
    chunk_frames       int >= 1

"int" means a JSON number without fraction or exponent (not true/false). Other keys are free.

Units
-----
After the header CRC comes a sequence of units, each::

    1     u8 type
    4     u32 payload_len, at most 256 MiB (268435456)
    n     payload
    4     u32 CRC32 of the type byte, the length field and the payload

Unit types in versions 1-3 (any other value is an error):

    1 SEGMENT  starts a random-access point (key chunk); small codec-defined payload
    2 SHARED   side data used by the following chunks (a reference, time-invariant tokens)
    3 TOKENS   one chunk's tokens
    4 INDEX    the seek index; exactly once, as the last unit

Units are grouped into chunks. A chunk is the run of units from its index entry's offset up to
the next entry's offset (the last chunk: up to the INDEX unit). Every chunk has >= 1 unit. The
first unit of a key chunk is a SEGMENT, and SEGMENT appears nowhere else; so a decoder that
starts at a key chunk has everything it needs. SHARED and TOKENS payloads are normally packed
token payloads (docs/FORMAT.md); the container does not interpret any payload but INDEX.

INDEX payload, version 4: canonical uvarints (unsigned LEB128, at most 5 bytes each, as in the
packed-token payloads)::

    var   n_entries
    then n_entries entries, in chunk order, each:
          var  offset step   (not in the first entry) offset minus the previous entry's offset
          var  chunk step    chunk number minus (the previous entry's + 1); the first: the chunk number
          var  frames_key    n_frames * 2 + key (1: starts with SEGMENT)

The first entry's offset is data_start; first_frame is the sum of the n_frames before it. The
payload ends exactly after the last entry. (2-4 bytes an entry where versions 1-3 took 25: a
visible share of a small file of 4-frame chunks.)

INDEX payload, versions 1-3::

    4     u32 n_entries
    25*n  entries, in chunk order, each:
          8  u64 offset       file offset of the chunk's first unit
          4  u32 chunk        chunk number
          8  u64 first_frame  first frame the chunk decodes to
          4  u32 n_frames     frames it decodes to
          1  u8 flags         bit 0: key (starts with SEGMENT); other bits must be 0

payload_len must be exactly 4 + 25 * n_entries.

Trailer
-------
The last 20 bytes of the file::

    8     u64 index_offset   file offset of the INDEX unit
    4     u32 CRC32 of the 8 index_offset bytes
    8     end magic b"VTKEND\\x00\\x00"

A file ends exactly after the trailer, so truncation anywhere or appended bytes leave
something other than a valid trailer in the last 20 bytes.

What a reader must validate
---------------------------
* magic; format_version in READ_VERSIONS (else report the version found and those supported);
  header_len in range and not past the end of the file; header CRC; in version 3, one complete
  raw DEFLATE stream ending exactly at the field's end and inflating to at most 1 MiB; header
  JSON and keys.
* trailer end magic and CRC; data_start <= index_offset where data_start = 18 + header_len;
  the INDEX unit has type 4, a valid CRC and ends exactly at the trailer.
* index entries: offsets strictly increasing, the first equal to data_start and all below
  index_offset; chunk numbers strictly increasing; first_frame of entry 0 is 0 and each next
  entry starts where the previous ended (first_frame + n_frames); 1 <= n_frames <= the header's
  chunk_frames; entry 0 is a
  key chunk; the sum of n_frames equals the header's frame_count. No entries means no units:
  index_offset == data_start and frame_count == 0.
* when reading units: every length <= 256 MiB and not past the end of its chunk (checked before
  reading the payload), every CRC, no unknown type, no INDEX unit before the index, units that
  exactly tile each chunk (a unit may not cross a chunk boundary), the SEGMENT rule above.

Reader limits
-------------
A file is untrusted input. Beyond the rules above, the reference reader checks the codec's header
keys whenever present (types, ranges, and cross-checks such as `tiles` against the frame size and
tile; vtcodec.limits) and refuses what exceeds its limits before allocating anything: header
JSON nested more than 8 deep, numbers that parse to infinity, frames over 4096 x 2304 pixels
(or a side over 16384), more than 2**23 frames, chunks over 256 frames, more than 4096 tiles.
The limits are the reader's, not the format's: VTCODEC_MAX_PIXELS / VTCODEC_MAX_FRAMES or
`VtkReader(path, limits=...)` change them.

Random access
-------------
To decode frames [t0, t1): find the entry covering t0 (first_frame <= t0 < first_frame +
n_frames), step back to the nearest key entry at or before it, and read units from its offset
until the end of the entry covering t1 - 1. Decoding output before t0 is discarded.

Writing
-------
`VtkWriter` streams units to `<dst>.<random>.tmp` in dst's directory, keeping only the index
in memory; `close()` appends INDEX and trailer, fsyncs and renames onto dst, so dst is either
absent/untouched or complete. An exception inside ``with VtkWriter(...)`` deletes the temp file.
"""

from __future__ import annotations

import bisect
import io
import json
import operator
import os
import re
import secrets
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from vtcodec import limits as _limits
from vtcodec.atomic import place_file
from vtcodec.errors import FormatError, OutputError, VtcodecError, held_signals
from vtcodec.wire import Cursor, uvarint

__all__ = [
    "FORMAT_VERSION",
    "READ_VERSIONS",
    "MAGIC",
    "END_MAGIC",
    "SEGMENT",
    "SHARED",
    "TOKENS",
    "INDEX",
    "REFRESH_TILES",
    "UNIT_NAMES",
    "REQUIRED_HEADER_KEYS",
    "MAX_HEADER_LEN",
    "MAX_UNIT_PAYLOAD",
    "Unit",
    "ChunkEntry",
    "VtkWriter",
    "VtkReader",
]

FORMAT_VERSION = 4          # what the writer writes
READ_VERSIONS = (1, 2, 3, 4)   # what the reader reads
# The preset dictionary of version-3 headers. Frozen: changing one byte makes every version-3
# file unreadable. Typical header text: keys in sorted order, the codec's usual values.
HEADER_DICT = (
    b'{"arch":"tivtok","checkpoint_sha256":"","chunk_frames":16,"fps":"25/1","frame_count":,'
    b'"height":,"key_streams":[],"key_streams":["tiv"],"key_streams":["intra"],"model":"vidtok-256",'
    b'"model":"reftok","overlap":0,"overlap":16,"pad_box":[0,0,,],"pixels_per_token":1024,'
    b'"refresh_db":null,"refresh_db":1.0,"segment_chunks":8,'
    b'"stream_grids":{"latent":[4,8,8]},"stream_grids":{"latent":[4,16,16]},'
    b'"stream_grids":{"tiv":[16,1,10],"tv":[16,1,6]},"stream_grids":{"intra":[1,16,16],"target":[4,8,8]},'
    b'"stream_levels":{"latent":[8,8,8,5,5,5]},"stream_levels":{"tiv":[8,8,8,5,5,5],"tv":[8,8,8,5,5,5]},'
    b'"stream_levels":{"intra":[8,8,8,5,5,5],"target":[8,8,8,5,5,5]},"tile":128,"tile_batch":8,'
    b'"tiles":,"vtcodec_version":"0.1.0","width":}'
)
MAGIC = b"\x89VTK\r\n\x1a\n"
END_MAGIC = b"VTKEND\x00\x00"
SEGMENT, SHARED, TOKENS, INDEX = 1, 2, 3, 4
# The one stream name the codec layer reserves (docs/FORMAT.md, "Units per chunk"): in a non-key
# chunk's SHARED unit, the tiles a partial refresh restarts. The container itself never reads it.
REFRESH_TILES = "refresh_tiles"
UNIT_NAMES = {SEGMENT: "SEGMENT", SHARED: "SHARED", TOKENS: "TOKENS", INDEX: "INDEX"}
_DATA_TYPES = (SEGMENT, SHARED, TOKENS)
REQUIRED_HEADER_KEYS = ("model", "checkpoint_sha256", "width", "height", "fps", "frame_count", "chunk_frames")

MAX_HEADER_LEN = 1 << 20
MAX_UNIT_PAYLOAD = 256 << 20

_PREAMBLE = struct.Struct("<8sHI")  # magic, format_version, header_len
_UNIT_HEAD = struct.Struct("<BI")  # type, payload_len
_CRC = struct.Struct("<I")
_ENTRY = struct.Struct("<QIQIB")  # offset, chunk, first_frame, n_frames, flags
_COUNT = struct.Struct("<I")
_TRAILER = struct.Struct("<QI8s")  # index_offset, crc32(index_offset), END_MAGIC
_UNIT_OVERHEAD = _UNIT_HEAD.size + _CRC.size
_MIN_INDEX_UNIT = _UNIT_OVERHEAD + 1  # version 4's empty index (versions 1-3: 4 bytes)

_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_FPS_RE = re.compile(r"[1-9][0-9]*/[1-9][0-9]*")


@dataclass(frozen=True)
class Unit:
    type: int
    payload: bytes
    chunk: int  # chunk number of the index entry the unit belongs to


@dataclass(frozen=True)
class ChunkEntry:
    offset: int
    chunk: int
    first_frame: int
    n_frames: int
    key: bool


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _as_int(x):
    """x as a Python int if it is an integer (numpy integers included, bools not), else None."""
    if isinstance(x, bool) or getattr(x, "dtype", None) is not None and x.dtype.kind == "b":
        return None
    try:
        return operator.index(x)
    except TypeError:
        return None


def _as_bool(x):
    """x as a Python bool if it is a bool (numpy bool included), else None."""
    if isinstance(x, bool) or getattr(x, "dtype", None) is not None and x.dtype.kind == "b" and x.ndim == 0:
        return bool(x)
    return None


def _header_problem(header) -> str | None:
    """Why `header` breaks the spec's required keys, or None if it does not."""
    if not isinstance(header, dict):
        return f"header must be a JSON object, got {type(header).__name__}"
    missing = [k for k in REQUIRED_HEADER_KEYS if k not in header]
    if missing:
        return f"header lacks required keys {missing}"
    if not isinstance(header["model"], str) or not header["model"]:
        return f"header 'model' must be a non-empty string, got {header['model']!r}"
    sha = header["checkpoint_sha256"]
    if not isinstance(sha, str) or not _SHA256_RE.fullmatch(sha):
        return f"header 'checkpoint_sha256' must be 64 lowercase hex digits, got {sha!r}"
    for key, low in (("width", 1), ("height", 1), ("frame_count", 0), ("chunk_frames", 1)):
        if not _is_int(header[key]) or header[key] < low:
            return f"header {key!r} must be an int >= {low}, got {header[key]!r}"
    if not isinstance(header["fps"], str) or not _FPS_RE.fullmatch(header["fps"]):
        return f"header 'fps' must be a string 'num/den' of positive ints, got {header['fps']!r}"
    return None


def parse_header(text: bytes, lim: _limits.Limits) -> dict:
    """The header JSON -> a dict that satisfies the container's keys and the codec's header model
    (vtcodec.limits) within `lim`; FormatError naming the field otherwise. Nesting depth is
    checked before parsing (json.loads recurses), numbers that parse to infinity are refused."""
    depth = _limits.json_depth(text)
    if depth > _limits.MAX_JSON_DEPTH:
        raise FormatError(f"invalid .vtk header: JSON nested {depth} deep (limit {_limits.MAX_JSON_DEPTH})")
    try:
        header = json.loads(
            text.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_reject_constant,
            parse_float=_limits.parse_float,
        )
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise FormatError(f"corrupt .vtk header: not UTF-8 JSON ({str(e)[:200]})") from None
    problem = _header_problem(header) or _limits.header_problem(header, lim)
    if problem:
        raise FormatError(f"invalid .vtk header: {problem}")
    return header


def _read_bytes(fp: BinaryIO, n: int, what: str) -> bytes:
    """Read exactly n bytes or fail naming what was being read (cf. numpy.lib.format)."""
    data = fp.read(n)
    if len(data) != n:
        raise FormatError(f"truncated .vtk: reading {what}, expected {n} bytes, got {len(data)}")
    return data


def _no_duplicates(pairs):
    seen = {}
    for k, v in pairs:
        if k in seen:
            # Two readers could pick different values for a duplicated key; refuse instead.
            raise FormatError(f"corrupt .vtk header: duplicate key {k!r}")
        seen[k] = v
    return seen


def _reject_constant(name):
    raise FormatError(f"corrupt .vtk header: {name} is not valid JSON")


def pack_header(text: bytes) -> bytes:
    """A version-3 stored header: raw DEFLATE of the JSON text with HEADER_DICT preset."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, zdict=HEADER_DICT)
    return c.compress(text) + c.flush()


def unpack_header(stored: bytes) -> bytes:
    """Inverse of pack_header; FormatError unless it is one complete stream of <= 1 MiB."""
    d = zlib.decompressobj(-15, zdict=HEADER_DICT)
    try:
        text = d.decompress(stored, MAX_HEADER_LEN + 1)
    except zlib.error as e:
        raise FormatError(f"corrupt .vtk header: not a DEFLATE stream ({e})") from None
    if len(text) > MAX_HEADER_LEN:
        raise FormatError(f"corrupt .vtk header: inflates past {MAX_HEADER_LEN} bytes")
    if not d.eof or d.unused_data:
        raise FormatError("corrupt .vtk header: the DEFLATE stream does not end exactly at the header's end")
    return text


def _encode_unit(unit_type: int, payload) -> tuple[bytes, int]:
    """(unit head, crc) for a payload; the payload itself is written separately, uncopied."""
    head = _UNIT_HEAD.pack(unit_type, len(payload))
    return head, zlib.crc32(payload, zlib.crc32(head))


class VtkWriter:
    """Streams a `.vtk` file to a temp file next to `path` and renames it into place on close.

    Use as a context manager. Call ``begin_chunk`` before each chunk's units; the first unit of
    a key chunk must be SEGMENT. The header's frame_count must equal the frames of all chunks.
    Misuse raises VtcodecError; I/O failures raise OutputError. Either way the temp is removed.
    """

    def __init__(self, path, header: dict, *, force: bool = False, version: int = FORMAT_VERSION):
        """`version`: the format version to write, one of READ_VERSIONS (an older one only for tests
        and tools that must produce older files; the caller keeps to that version's rules)."""
        if version not in READ_VERSIONS:
            raise VtcodecError(f"cannot write .vtk format version {version}; this vtcodec writes {READ_VERSIONS}")
        self.version = version
        self.path = os.fspath(path)
        self.bytes_written = 0
        self.unit_sizes: list[tuple[int, int]] = []  # (type, payload bytes), INDEX included on close
        self._index: list[ChunkEntry] = []
        self._units_in_chunk = 0
        self._next_frame = 0
        self._closed = False
        self._fp = None
        self._tmp = None

        problem = _header_problem(header)
        if problem:
            raise VtcodecError(f"cannot write {self.path!r}: {problem}")
        if any(not isinstance(k, str) for k in _walk_keys(header)):
            raise VtcodecError(f"cannot write {self.path!r}: header keys must all be strings")
        try:
            text = json.dumps(
                header, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
            )
        except (TypeError, ValueError) as e:
            raise VtcodecError(f"cannot write {self.path!r}: header is not JSON-serialisable ({e})") from None
        blob = text.encode("utf-8")
        if len(blob) > MAX_HEADER_LEN:
            raise VtcodecError(f"header is {len(blob)} bytes of JSON, more than the {MAX_HEADER_LEN} allowed")
        self._frame_count = header["frame_count"]

        if os.path.isdir(self.path):
            raise OutputError(f"output path {self.path!r} is a directory")
        if os.path.lexists(self.path) and not force:
            raise OutputError(f"output file {self.path!r} exists (use force to overwrite)")
        parent = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(parent):
            raise OutputError(f"output directory {parent!r} does not exist")
        self._force = force
        try:  # until the caller's `with` holds the writer, its temp file is ours to remove
            self._open_temp()
            if self.version >= 3:
                blob = pack_header(blob)
            pre = _PREAMBLE.pack(MAGIC, self.version, len(blob)) + blob
            self._write(pre + _CRC.pack(zlib.crc32(pre)))
        except BaseException:
            self.abort()
            raise
        self._data_start = self.bytes_written

    def _open_temp(self) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
        for _ in range(16):
            tmp = f"{self.path}.{secrets.token_hex(6)}.tmp"
            with held_signals():  # created and recorded as one step, for abort() to find
                try:
                    # os.open rather than mkstemp: mode 0o666 lets the umask decide, as for any new file.
                    fd = os.open(tmp, flags, 0o666)
                except FileExistsError:
                    continue
                except OSError as e:
                    raise OutputError(f"cannot create a temp file next to {self.path!r}: {e.strerror}") from None
                self._tmp = tmp
                self._fp = os.fdopen(fd, "wb")
            return
        raise OutputError(f"cannot create a temp file next to {self.path!r}: names keep colliding")

    def _write(self, data) -> None:
        try:
            self._fp.write(data)
        except OSError as e:
            self.abort()
            raise OutputError(f"cannot write {self.path!r}: {e.strerror or e}") from None
        self.bytes_written += len(data)

    def _fail(self, message: str):
        self.abort()
        raise VtcodecError(message)

    def begin_chunk(self, chunk: int, first_frame: int, n_frames: int, key: bool) -> None:
        """Start a chunk: its index entry points at the current end of the file."""
        if self._closed:
            raise VtcodecError("begin_chunk on a closed VtkWriter")
        args = (_as_int(chunk), _as_int(first_frame), _as_int(n_frames), _as_bool(key))
        if None in args:
            self._fail(
                "begin_chunk wants (int, int, int, bool), "
                f"got {chunk!r}, {first_frame!r}, {n_frames!r}, {key!r}"
            )
        chunk, first_frame, n_frames, key = args
        if self._index:
            prev = self._index[-1]
            if self._units_in_chunk == 0:
                self._fail(f"chunk {prev.chunk} has no units")
            if chunk <= prev.chunk:
                self._fail(f"chunk numbers must increase: {chunk} after {prev.chunk}")
        elif not key:
            self._fail(f"the first chunk must be a key chunk, chunk {chunk} is not")
        if not 0 <= chunk < 1 << 32 or not 1 <= n_frames < 1 << 32:
            self._fail(
                f"chunk {chunk} / n_frames {n_frames} out of range "
                "(chunk in [0, 2**32), n_frames in [1, 2**32))"
            )
        if first_frame != self._next_frame:
            self._fail(
                f"chunk {chunk} starts at frame {first_frame}, expected {self._next_frame} "
                "(chunks must be contiguous)"
            )
        self._index.append(ChunkEntry(self.bytes_written, chunk, first_frame, n_frames, key))
        self._next_frame = first_frame + n_frames
        self._units_in_chunk = 0

    def write_unit(self, unit_type: int, payload: bytes) -> None:
        """Append one unit (SEGMENT, SHARED or TOKENS) to the current chunk, straight to disk."""
        if self._closed:
            raise VtcodecError("write_unit on a closed VtkWriter")
        if _as_int(unit_type) not in _DATA_TYPES:
            self._fail(f"unit type must be SEGMENT, SHARED or TOKENS (1-3), got {unit_type!r}")
        unit_type = _as_int(unit_type)
        if not self._index:
            self._fail("write_unit before begin_chunk")
        try:
            view = memoryview(payload).cast("B")
        except TypeError:
            self._fail(f"payload must be bytes-like, got {type(payload).__name__}")
        if view.nbytes > MAX_UNIT_PAYLOAD:
            self._fail(f"unit payload of {view.nbytes} bytes exceeds the {MAX_UNIT_PAYLOAD}-byte limit")
        entry = self._index[-1]
        if self._units_in_chunk == 0 and entry.key and unit_type != SEGMENT:
            self._fail(f"key chunk {entry.chunk} must start with a SEGMENT unit, got {UNIT_NAMES[unit_type]}")
        if unit_type == SEGMENT and (self._units_in_chunk or not entry.key):
            self._fail(f"SEGMENT is only allowed as the first unit of a key chunk (chunk {entry.chunk})")
        head, crc = _encode_unit(unit_type, view)
        self._write(head)
        self._write(view)
        self._write(_CRC.pack(crc))
        self._units_in_chunk += 1
        self.unit_sizes.append((unit_type, view.nbytes))

    def close(self) -> None:
        """Write the INDEX unit and trailer, fsync, and rename the temp file onto the path."""
        if self._closed:
            return
        if self._index and self._units_in_chunk == 0:
            self._fail(f"chunk {self._index[-1].chunk} has no units")
        if self._next_frame != self._frame_count:
            self._fail(
                f"header frame_count is {self._frame_count} but the chunks hold {self._next_frame} frames"
            )
        index_offset = self.bytes_written
        payload = _pack_index(self._index, self.version)
        if len(payload) > MAX_UNIT_PAYLOAD:
            self._fail(f"index of {len(self._index)} chunks exceeds the unit size limit")
        head, crc = _encode_unit(INDEX, payload)
        self._write(head + payload + _CRC.pack(crc))
        self.unit_sizes.append((INDEX, len(payload)))
        off = struct.pack("<Q", index_offset)
        self._write(_TRAILER.pack(index_offset, zlib.crc32(off), END_MAGIC))
        try:
            self._fp.flush()
            os.fsync(self._fp.fileno())
            self._fp.close()
            # Someone may have created it while we were writing: still never clobber without force.
            place_file(self._tmp, self.path, self._force)
        except FileExistsError:
            self.abort()
            raise OutputError(f"cannot write {self.path!r}: it appeared while writing (another writer?); "
                              "use force to overwrite") from None
        except OSError as e:
            self.abort()
            raise OutputError(f"cannot write {self.path!r}: {e.strerror or e}") from None
        self._tmp = None
        self._closed = True
        _fsync_dir(os.path.dirname(os.path.abspath(self.path)))

    def abort(self) -> None:
        """Discard everything written so far: close and delete the temp file (idempotent)."""
        self._closed = True
        if self._fp is not None:
            try:
                self._fp.close()
            except OSError:
                pass
        if self._tmp is not None:
            try:
                os.unlink(self._tmp)
            except OSError:
                pass
            self._tmp = None

    def __enter__(self) -> VtkWriter:
        return self

    def __del__(self) -> None:
        # The backstop for a writer dropped unclosed, e.g. interrupted between its constructor
        # and `with` taking hold of it: its temp file goes.
        if not getattr(self, "_closed", True):
            self.abort()

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _walk_keys(obj):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield k
            yield from _walk_keys(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _walk_keys(v)


def _fsync_dir(path: str) -> None:
    # Makes the rename itself durable on POSIX; not possible (nor needed) everywhere.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _pack_index(index: list[ChunkEntry], version: int) -> bytes:
    """The INDEX payload of `version`: 25-byte entries (1-3) or varints (4, see the docstring)."""
    if version < 4:
        return _COUNT.pack(len(index)) + b"".join(
            _ENTRY.pack(e.offset, e.chunk, e.first_frame, e.n_frames, int(e.key)) for e in index)
    out, prev = bytearray(uvarint(len(index))), None
    for e in index:
        if prev is not None:
            out += uvarint(e.offset - prev.offset)
        out += uvarint(e.chunk - (prev.chunk + 1 if prev else 0)) + uvarint(e.n_frames << 1 | int(e.key))
        prev = e
    return bytes(out)


def _unpack_index(payload: bytes, version: int, data_start: int) -> list[tuple[int, int, int, int, int]]:
    """An INDEX payload of `version` -> (offset, chunk, first_frame, n_frames, flags) rows, unchecked
    (VtkReader._parse_index checks them against the file)."""
    if version < 4:
        if len(payload) < _COUNT.size:
            raise FormatError(f"corrupt .vtk index: {len(payload)} bytes, shorter than its entry count")
        (n,) = _COUNT.unpack_from(payload)
        if len(payload) != _COUNT.size + n * _ENTRY.size:
            raise FormatError(f"corrupt .vtk index: {n} entries need {_COUNT.size + n * _ENTRY.size} bytes, "
                              f"unit has {len(payload)}")
        return list(_ENTRY.iter_unpack(payload[_COUNT.size:]))
    cur = Cursor(memoryview(payload), ".vtk index")
    (n,) = cur.uvarints(1, "entry count")
    if 2 * n > len(payload):  # every entry takes at least 2 bytes: a forged count allocates nothing
        raise FormatError(f"corrupt .vtk index: {n} entries cannot fit in {len(payload)} bytes")
    rows, offset, chunk, first = [], data_start, -1, 0
    for i in range(n):
        if i:
            offset += cur.uvarints(1, f"entry {i} offset step")[0]
        chunk += 1 + cur.uvarints(1, f"entry {i} chunk step")[0]
        (frames_key,) = cur.uvarints(1, f"entry {i} frames")
        rows.append((offset, chunk, first, frames_key >> 1, frames_key & 1))
        first += frames_key >> 1
    if cur.pos != len(payload):
        raise FormatError(f"corrupt .vtk index: {len(payload) - cur.pos} bytes after its {n} entries")
    return rows


# The unit sequences a chunk may hold (docs/FORMAT.md, codec layer): key chunks, then non-key ones.
_CHUNK_LAYOUTS = {1: [(SEGMENT, SHARED, TOKENS), (SEGMENT, TOKENS), (TOKENS,)]}
_CHUNK_LAYOUTS[2] = _CHUNK_LAYOUTS[1] + [(SHARED, TOKENS)]  # version 2: partial refresh
_CHUNK_LAYOUTS[3] = _CHUNK_LAYOUTS[4] = _CHUNK_LAYOUTS[2]


def check_chunk_units(kinds: list[int], chunk: int | None, version: int, complete: bool = False) -> None:
    """`kinds` (a chunk's unit types so far, or all of them when `complete`) fits a chunk layout."""
    if chunk is None:
        return
    seq = tuple(kinds)
    ok = any(seq == lay for lay in _CHUNK_LAYOUTS[version]) if complete else \
        any(seq == lay[:len(seq)] for lay in _CHUNK_LAYOUTS[version])
    if not ok:
        names = "+".join(UNIT_NAMES[k] for k in seq)
        raise FormatError(f"chunk {chunk}: units {names} are not a valid version-{version} chunk")


class VtkReader:
    """Opens a `.vtk` file (a path, or a seekable binary file object, left open on close).

    The constructor validates the preamble, header, trailer and index (reading only the start
    and the end of the file). Unit payloads are read and CRC-checked by `units` and `verify`.
    `bytes_read` counts the bytes read so far, to show how little a seek reads.
    """

    def __init__(self, path, *, limits: _limits.Limits | None = None):
        self.bytes_read = 0
        self.limits = _limits.current() if limits is None else limits
        if hasattr(path, "read"):
            self._fp, self._owned, self.path = path, False, getattr(path, "name", "<file>")
        else:
            self.path = os.fspath(path)
            try:
                self._fp = open(self.path, "rb")
            except OSError as e:
                raise VtcodecError(f"cannot open {self.path!r}: {e.strerror or e}") from None
            self._owned = True
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    def _read(self, n: int, what: str) -> bytes:
        data = _read_bytes(self._fp, n, what)
        self.bytes_read += n
        return data

    def _open(self) -> None:
        fp = self._fp
        self.file_size = fp.seek(0, io.SEEK_END)
        fp.seek(0)
        pre = fp.read(_PREAMBLE.size)
        self.bytes_read += len(pre)
        if pre[:8] != MAGIC[: len(pre[:8])] or not pre:
            raise FormatError(f"not a .vtk file: starts with {pre[:8]!r}, expected {MAGIC!r}")
        if len(pre) < _PREAMBLE.size:
            raise FormatError(
                f"truncated .vtk: reading preamble, expected {_PREAMBLE.size} bytes, got {len(pre)}"
            )
        _, version, header_len = _PREAMBLE.unpack(pre)
        if version not in READ_VERSIONS:
            raise FormatError(
                f"unsupported .vtk format version {version} (this vtcodec reads versions "
                f"{', '.join(map(str, READ_VERSIONS))})"
            )
        self.version = version
        room = self.file_size - _PREAMBLE.size - _CRC.size - _MIN_INDEX_UNIT - _TRAILER.size
        if header_len > MAX_HEADER_LEN or header_len < 2:
            raise FormatError(f"corrupt .vtk: header length {header_len} outside [2, {MAX_HEADER_LEN}]")
        if header_len > room:
            raise FormatError(
                f"truncated .vtk: header length {header_len} but the {self.file_size}-byte file "
                f"has room for {max(room, 0)}"
            )
        blob = self._read(header_len, "header")
        (crc,) = _CRC.unpack(self._read(_CRC.size, "header CRC"))
        if zlib.crc32(blob, zlib.crc32(pre)) != crc:
            raise FormatError("corrupt .vtk: header CRC mismatch")
        if version >= 3:
            blob = unpack_header(blob)
        self.header: dict = parse_header(blob, self.limits)
        self.header_bytes = header_len  # as stored (compressed in version 3)
        self._data_start = _PREAMBLE.size + header_len + _CRC.size

        trailer_at = self.file_size - _TRAILER.size
        fp.seek(trailer_at)
        index_offset, off_crc, end = _TRAILER.unpack(self._read(_TRAILER.size, "trailer"))
        if end != END_MAGIC:
            raise FormatError(
                f"corrupt .vtk: the last {_TRAILER.size} bytes end in {end!r}, not {END_MAGIC!r} "
                "(truncated file, or bytes appended after the trailer)"
            )
        if zlib.crc32(struct.pack("<Q", index_offset)) != off_crc:
            raise FormatError("corrupt .vtk: trailer CRC mismatch")
        if not self._data_start <= index_offset <= trailer_at - _MIN_INDEX_UNIT:
            raise FormatError(
                f"corrupt .vtk: index offset {index_offset} "
                f"outside [{self._data_start}, {trailer_at - _MIN_INDEX_UNIT}]"
            )
        self._index_offset = index_offset
        utype, payload, pos = self._read_unit(index_offset, trailer_at)
        if utype != INDEX:
            raise FormatError(
                f"corrupt .vtk: unit at index offset {index_offset} has type {utype}, not INDEX ({INDEX})"
            )
        if pos != trailer_at:
            raise FormatError(
                f"corrupt .vtk: {trailer_at - pos} stray bytes between the INDEX unit and the trailer"
            )
        self.index: list[ChunkEntry] = self._parse_index(payload)
        self._first_frames = [e.first_frame for e in self.index]

    def _parse_index(self, payload: bytes) -> list[ChunkEntry]:
        entries = []
        next_frame = 0
        for i, (offset, chunk, first, nf, flags) in enumerate(_unpack_index(payload, self.version, self._data_start)):
            where = f"corrupt .vtk index entry {i} (chunk {chunk})"
            if flags & ~1:
                raise FormatError(f"{where}: unknown flags 0x{flags:02x}")
            if i == 0 and offset != self._data_start:
                raise FormatError(f"{where}: offset {offset}, but units start at {self._data_start}")
            if i and (offset <= entries[-1].offset or chunk <= entries[-1].chunk):
                raise FormatError(f"{where}: offset {offset} / chunk number not after the previous entry's")
            if offset >= self._index_offset:
                raise FormatError(f"{where}: offset {offset} is not before the index at {self._index_offset}")
            if nf > self.header["chunk_frames"]:
                raise FormatError(f"{where}: {nf} frames in a chunk of at most {self.header['chunk_frames']}")
            if first != next_frame or nf < 1:
                raise FormatError(
                    f"{where}: frames [{first}, {first + nf}) do not continue from frame {next_frame}"
                )
            if i == 0 and not flags & 1:
                raise FormatError(f"{where}: the first chunk is not a key chunk")
            entries.append(ChunkEntry(offset, chunk, first, nf, bool(flags & 1)))
            next_frame = first + nf
        if next_frame != self.header["frame_count"]:
            raise FormatError(
                f"corrupt .vtk: index covers {next_frame} frames, header frame_count is "
                f"{self.header['frame_count']}"
            )
        if not entries and self._index_offset != self._data_start:
            raise FormatError(
                f"corrupt .vtk: {self._index_offset - self._data_start} bytes of units but an empty index"
            )
        return entries

    def _read_unit(self, pos: int, end: int) -> tuple[int, bytes, int]:
        """Read the unit at pos, which must end by `end`; return (type, payload, next pos)."""
        if end - pos < _UNIT_OVERHEAD:
            raise FormatError(
                f"corrupt .vtk: {end - pos} bytes at offset {pos} are too few for a unit "
                f"(need {_UNIT_OVERHEAD})"
            )
        self._fp.seek(pos)
        head = self._read(_UNIT_HEAD.size, f"unit header at offset {pos}")
        utype, length = _UNIT_HEAD.unpack(head)
        # Both checks before reading, so a forged length never sizes an allocation.
        if length > MAX_UNIT_PAYLOAD:
            raise FormatError(
                f"corrupt .vtk: unit at offset {pos} claims {length} payload bytes (limit {MAX_UNIT_PAYLOAD})"
            )
        if pos + _UNIT_OVERHEAD + length > end:
            raise FormatError(
                f"corrupt .vtk: unit at offset {pos} claims {length} payload bytes, only "
                f"{end - pos - _UNIT_OVERHEAD} remain before offset {end}"
            )
        payload = self._read(length, f"unit payload at offset {pos}")
        (crc,) = _CRC.unpack(self._read(_CRC.size, f"unit CRC at offset {pos}"))
        if zlib.crc32(payload, zlib.crc32(head)) != crc:
            raise FormatError(f"corrupt .vtk: CRC mismatch in unit at offset {pos}")
        return utype, payload, pos + _UNIT_OVERHEAD + length

    def units(self, start_frame: int = 0, stop_frame: int | None = None) -> Iterator[Unit]:
        """Units needed to decode frames [start_frame, stop_frame), from the key chunk at or
        before start_frame through the chunk holding stop_frame - 1, CRC-checked as read."""
        total = self.header["frame_count"]
        start = _as_int(start_frame)
        stop = total if stop_frame is None else _as_int(stop_frame)
        if start is None or stop is None or not 0 <= start <= stop <= total:
            raise VtcodecError(f"frame range [{start_frame!r}, {stop_frame!r}) is not within [0, {total}]")
        start_frame = start
        if start_frame == stop:
            return iter(())
        first = bisect.bisect_right(self._first_frames, start_frame) - 1
        while not self.index[first].key:
            first -= 1
        last = bisect.bisect_right(self._first_frames, stop - 1) - 1
        return self._iter_chunks(first, last)

    def _iter_chunks(self, first: int, last: int) -> Iterator[Unit]:
        for i in range(first, last + 1):
            entry = self.index[i]
            end = self.index[i + 1].offset if i + 1 < len(self.index) else self._index_offset
            pos = entry.offset
            n = 0
            while pos < end:
                utype, payload, nxt = self._read_unit(pos, end)
                if utype not in UNIT_NAMES:
                    raise FormatError(
                        f"corrupt .vtk: unknown unit type {utype} at offset {pos} (versions 1-3 define 1-4)"
                    )
                if utype == INDEX:
                    raise FormatError(
                        f"corrupt .vtk: INDEX unit at offset {pos}, before the index at {self._index_offset}"
                    )
                if n == 0 and entry.key and utype != SEGMENT:
                    raise FormatError(
                        f"corrupt .vtk: key chunk {entry.chunk} starts with {UNIT_NAMES[utype]}, not SEGMENT"
                    )
                if utype == SEGMENT and (n or not entry.key):
                    raise FormatError(
                        f"corrupt .vtk: SEGMENT unit at offset {pos} inside chunk {entry.chunk}, "
                        "not at a key chunk start"
                    )
                n += 1
                pos = nxt
                # Reading one unit at a time: a consumer that stops early reads no further.
                yield Unit(utype, payload, entry.chunk)

    def verify(self) -> None:
        """Read every unit, checking CRCs, types and that units exactly tile the index's chunks."""
        for _ in self.units():
            pass

    def close(self) -> None:
        if self._owned and not self._fp.closed:
            self._fp.close()

    def __enter__(self) -> VtkReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
