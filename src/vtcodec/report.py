"""What is inside a .vtk file: header, unit sizes, and how close packing gets to the entropy.

Backs `vtcodec info`. Reads every unit (so it also verifies every CRC) but decodes no video.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from vtcodec.container import REFRESH_TILES, UNIT_NAMES, VtkReader
from vtcodec.packing import MAGIC3, entropy_bits, payload_layouts
from vtcodec.tokens import unit_streams


def describe(path: str | Path) -> dict:
    """Header, unit statistics, per-stream tokens / bits per token / entropy, bits per pixel."""
    with VtkReader(path) as r:
        header = dict(r.header)
        index = list(r.index)
        units: dict[str, list[int]] = defaultdict(list)
        by_stream: dict[str, list[np.ndarray]] = defaultdict(list)
        layouts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        payload_bits_by_kind: dict[str, int] = defaultdict(int)
        tokens_by_kind: dict[str, int] = defaultdict(int)
        refreshed = 0
        for u, streams in unit_streams(r):
            kind = UNIT_NAMES[u.type].lower()
            units[kind].append(len(u.payload))
            if streams is not None:
                segment = bytes(u.payload[:4]) == MAGIC3
                for name, (lay, _) in ({k: ("segment", None) for k in streams} if segment
                                       else payload_layouts(u.payload)).items():
                    layouts[name][lay] += 1
                for name, (idx, _) in streams.items():
                    if name == REFRESH_TILES:  # tile numbers of a partial refresh, not tokens
                        refreshed += idx.size
                        continue
                    by_stream[name].append(idx.ravel())
                    tokens_by_kind[kind] += idx.size
                payload_bits_by_kind[kind] += 8 * len(u.payload)
        size, header_bytes = r.file_size, r.header_bytes
    pixels = header["frame_count"] * header["width"] * header["height"]
    streams = {}
    for name, parts in by_stream.items():
        allidx = np.concatenate(parts)
        streams[name] = {"tokens": int(allidx.size), "entropy_bits": entropy_bits(allidx),
                         "distinct": int(np.unique(allidx).size), "layouts": dict(layouts[name])}
    total_tokens = sum(s["tokens"] for s in streams.values())
    payload_bits = sum(payload_bits_by_kind.values())
    return {
        "path": str(path), "file_bytes": size, "header": header,
        "chunks": len(index), "key_chunks": sum(e.key for e in index), "tile_refreshes": refreshed,
        "units": {k: {"count": len(v), "payload_bytes": sum(v), "max": max(v)} for k, v in units.items()},
        "streams": streams,
        "tokens": total_tokens,
        "bits_per_token_packed": payload_bits / total_tokens if total_tokens else None,
        "bits_per_token_file": 8 * size / total_tokens if total_tokens else None,
        "bits_per_token_by_unit": {k: payload_bits_by_kind[k] / tokens_by_kind[k] for k in tokens_by_kind if tokens_by_kind[k]},
        "entropy_bits_per_token": (sum(s["entropy_bits"] * s["tokens"] for s in streams.values()) / total_tokens
                                   if total_tokens else None),
        "bpp": 8 * size / pixels if pixels else None,
        "container_overhead_bytes": size - payload_bits // 8,
        "header_bytes": header_bytes,  # as stored; the JSON text is len(json.dumps(header, separators=(",", ":")))
    }
