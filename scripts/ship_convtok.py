"""Write the three shipped keys from one ConvTok training checkpoint: `vidtok` (mode intra),
`reftok` (mode ref) and `tivtok` (mode tiv) share every weight; each file is fp16 and names its
mode in its config, so a .vtk names exactly what decodes it.

    python scripts/ship_convtok.py RUN_DIR/model.safetensors OUT_DIR [--keys vidtok,reftok,tivtok]
    python scripts/ship_convtok.py RUN_DIR/best.safetensors models --keys convtok=tiv   # any key, a mode
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import torch

from vtcodec.models.registry import load_checkpoint, read_metadata, save_checkpoint

MODES = {"vidtok": "intra", "reftok": "ref", "tivtok": "tiv"}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint")
    p.add_argument("out")
    p.add_argument("--keys", default=",".join(MODES))
    a = p.parse_args(argv)
    model = load_checkpoint(a.checkpoint)
    if model.arch != "convtok":
        raise SystemExit(f"error: {a.checkpoint} is a {model.arch} checkpoint, not convtok")
    info = json.loads(read_metadata(a.checkpoint).get("info", "{}"))
    for item in a.keys.split(","):
        key, _, mode = item.partition("=")
        mode = mode or MODES.get(key)
        if mode not in MODES.values():
            raise SystemExit(f"error: {item!r}: name a mode (KEY=intra|ref|tiv) for a key other than {', '.join(MODES)}")
        model.config = dataclasses.replace(model.config, mode=mode)
        sha = save_checkpoint(model, Path(a.out) / f"{key}.safetensors", {**info, "source": Path(a.checkpoint).name},
                              dtype=torch.float16)
        print(f"{key}: mode {mode}, sha256 {sha[:16]}")


if __name__ == "__main__":
    main()
