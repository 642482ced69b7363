"""Export a training run's EMA checkpoint for shipping: float16 weights, same arch/config/info.

    python scripts/export_checkpoint.py runs/tivtok/model.safetensors models/tivtok.safetensors
"""

import json
import sys

import torch

from vtcodec.models.registry import load_checkpoint, read_metadata, save_checkpoint

src, dst = sys.argv[1:3]
info = json.loads(read_metadata(src).get("info", "{}"))
print(save_checkpoint(load_checkpoint(src), dst, info | {"exported_from": src, "stored_dtype": "float16"},
                      dtype=torch.float16))
