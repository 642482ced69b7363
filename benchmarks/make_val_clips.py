"""Write the validation split of the training media as lossless clips, for `vtcodec bench --data`.

    python benchmarks/make_val_clips.py media out/val

The split is the one training uses (vtcodec.train.data): the last 15 % of every video, which no
checkpoint was trained on. Grey sources are written as RGB.
"""

from __future__ import annotations

import sys
from pathlib import Path

from vtcodec.train.data import VAL_FRACTION
from vtcodec.video import VIDEO_EXT
from vtcodec.video import VideoWriter, probe, read_frames


def main(src: str, dst: str) -> None:
    out = Path(dst)
    out.mkdir(parents=True, exist_ok=True)
    for p in sorted(Path(src).rglob("*")):
        if p.suffix.lower() not in VIDEO_EXT:
            continue
        frames = read_frames(p)
        val = frames[int(len(frames) * (1 - VAL_FRACTION)):]
        target = out / f"{p.stem}_val.mkv"
        with VideoWriter(target, val.shape[2], val.shape[1], probe(p).fps, lossless=True, force=True) as w:
            w.write(val)
        print(f"{target}: {len(val)} frames {val.shape[2]}x{val.shape[1]}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
