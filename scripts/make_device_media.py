"""Shrink the training media to fit a device machine's 64-MiB transfer: what the shipped models' GPU runs trained on.

    python scripts/make_device_media.py media devgpu/media

The training split only (the held-out photographs are left out; every video goes whole, since
`load_sources` cuts each one's last 15 % as validation itself). Three changes, all lossy and all
small next to what the codec loses (15-24 dB):
- the two lossless FFV1 ViSP videos (24.7 and 10.4 MB) become x264 CRF 12, yuv444p;
- the mvtb_campus PNG photographs (8 MB) become JPEG quality 95, 4:4:4;
- everything else is copied as it is.
About 28 MB in all, from 68.
"""

import argparse
import shutil
from fractions import Fraction
from pathlib import Path

import av
from PIL import Image

from vtcodec.train.data import VAL_PHOTOS
from vtcodec.video import read_frames

REENCODE = {"visp_mbt-cube_640x480_gray.mkv", "visp_mire-2_384x288_gray.mkv"}


def x264(src: Path, dst: Path, crf: int = 12) -> None:
    v = read_frames(src)
    with av.open(str(dst), "w") as c:
        s = c.add_stream("libx264", rate=Fraction(25))
        s.width, s.height, s.pix_fmt = v.shape[2], v.shape[1], "yuv444p"
        s.options = {"crf": str(crf), "preset": "medium"}
        for f in v:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("media", type=Path)
    ap.add_argument("out", type=Path)
    a = ap.parse_args()
    for p in sorted(q for q in (a.media / "video").glob("*") if q.is_file()):
        (a.out / "video").mkdir(parents=True, exist_ok=True)
        if p.name in REENCODE:
            x264(p, a.out / "video" / (p.stem + ".mp4"))
        else:
            shutil.copy(p, a.out / "video" / p.name)
    for p in sorted(q for q in (a.media / "images").rglob("*") if q.is_file() and q.stem not in VAL_PHOTOS):
        d = a.out / "images" / p.parent.name
        d.mkdir(parents=True, exist_ok=True)
        if p.parent.name == "mvtb_campus":
            Image.open(p).convert("RGB").save(d / (p.stem + ".jpg"), quality=95, subsampling=0)
        elif p.suffix.lower() != ".txt":
            shutil.copy(p, d / p.name)
    print(f"{a.out}: {sum(f.stat().st_size for f in a.out.rglob('*') if f.is_file()) / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
