"""Export a training run's EMA checkpoint for shipping: float16 weights, same arch/config/info.

    python scripts/export_checkpoint.py runs/tivtok/model.safetensors models/tivtok.safetensors
    # a part trained on its own (`vtcodec train --part intra`) replaces that part's weights:
    python scripts/export_checkpoint.py runs/reftok6/model.safetensors models/reftok.safetensors \
        --part intra=runs/intra1/model.safetensors

Both runs' training records go into the exported `info` (the part's under `parts`).
"""

import argparse
import json

import torch

from vtcodec.models.registry import load_checkpoint, read_metadata, save_checkpoint
from vtcodec.train.steps import PARTS, in_part, part_patterns

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("src")
ap.add_argument("dst")
ap.add_argument("--part", action="append", default=[], metavar="NAME=CHECKPOINT",
                help="take the part NAME's weights (train.steps.PARTS) from CHECKPOINT (same arch and config)")
args = ap.parse_args()

model = load_checkpoint(args.src)
# codec trains every tensor; post adds the detail pass (a config the source lacks) around frozen weights
WHOLE = ("codec", "post")
info = json.loads(read_metadata(args.src).get("info", "{}")) | {"exported_from": args.src, "stored_dtype": "float16"}
for spec in args.part:
    name, _, path = spec.partition("=")
    if name in WHOLE:  # the run's checkpoint is the whole model already: nothing to combine
        raise SystemExit(f"--part {spec}: a --part {name} run is a whole model; export {path or 'it'} directly")
    if (model.arch, name) not in PARTS or not path:
        raise SystemExit(f"--part {spec}: expected NAME=CHECKPOINT with NAME one of "
                         f"{[p for a, p in PARTS if a == model.arch and p not in WHOLE]} for {model.arch}")
    donor, donor_info = load_checkpoint(path), json.loads(read_metadata(path).get("info", "{}"))
    if donor.arch != model.arch or donor.config_dict() != model.config_dict():
        raise SystemExit(f"--part {spec}: {path} is not the same architecture and config as {args.src}")
    if donor_info.get("recipe", {}).get("part") != name:
        raise SystemExit(f"--part {spec}: {path} was not trained with --part {name}")
    theirs, patterns = donor.state_dict(), part_patterns(model, name)
    model.load_state_dict({k: v for k, v in theirs.items() if in_part(k, patterns)}, strict=False)
    info.setdefault("parts", {})[name] = {"from": path, **donor_info}
print(save_checkpoint(model, args.dst, info, dtype=torch.float16))
