"""Does a .vtk written on one device decode the same on another? Decode FILE here (CPU) and compare
with FRAMES (an .npz of `frames`, the decode on the other device, e.g. a GPU's from
scripts/device_codec_check.sh); also encode SOURCE here with the file's checkpoint and compare sizes.

    python benchmarks/cross_device.py out/r11/gpu_codec/ex_tivtok.vtk out/r11/gpu_codec/ex_tivtok_cuda.npz examples/pan_astronaut.mp4

Tokens are range-coded without any model, so they read back exactly anywhere; only the
decoder's float arithmetic differs between devices.
"""

from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np

from vtcodec.bench.metrics import psnr_rgb
from vtcodec.codec import decode_frames, encode_file, load_tokenizer
from vtcodec.container import VtkReader
from vtcodec.models.registry import find_by_sha
from vtcodec.video import read_frames


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("vtk")
    ap.add_argument("frames")
    ap.add_argument("source")
    a = ap.parse_args()
    there = np.load(a.frames)["frames"]
    here = decode_frames(a.vtk, device="cpu")
    src = read_frames(a.source)[: len(here)]
    d = np.abs(there.astype(int) - here.astype(int))
    with VtkReader(a.vtk) as r:
        key, sha = r.header["model"], r.header["checkpoint_sha256"]
    model = load_tokenizer(find_by_sha(key, sha), "cpu")  # the very checkpoint the file names, superseded or not,
    model.key = key  # under the name the file gives it (a superseded file's stem would lengthen the header)
    with tempfile.TemporaryDirectory() as t:
        encode_file(a.source, f"{t}/here.vtk", model=model, device="cpu")
        size_here = os.path.getsize(f"{t}/here.vtk")
    print(f"{a.vtk} ({key}): decoded here vs there: max |diff| {d.max()}, mean {d.mean():.4f}, "
          f"pixels differing {np.mean(d > 0):.2%}; PSNR to the source {psnr_rgb(src, there):.2f} there, "
          f"{psnr_rgb(src, here):.2f} here; encoded here {size_here} B, there {os.path.getsize(a.vtk)} B")


if __name__ == "__main__":
    main()
