"""Generate examples/pan_astronaut.mp4, the small clip bundled with vtcodec for demos and smoke tests.

A virtual camera pans smoothly across the scikit-image "astronaut" photograph (NASA, public
domain) while slowly zooming in, and a drawn ball crosses the frame on its own path, so the clip
has both global motion and an independently moving object. All positions are sub-pixel
(bilinear sampling), which is what makes it a fair test of a codec's motion handling.

    python examples/make_example.py                      # image from skimage.data.astronaut()
    python examples/make_example.py --image astronaut.png --out /tmp/clip.mp4 --force
"""

from __future__ import annotations

import argparse
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from vtcodec.errors import VtcodecError
from vtcodec.video import VideoWriter

SIZE = 256  # output is SIZE x SIZE
FRAMES = 48
FPS = Fraction(24)
CRF = 14


def load_image(path: str | None) -> np.ndarray:
    """(H, W, 3) uint8 RGB: from `path`, else scikit-image's bundled astronaut."""
    if path is not None:
        with av.open(path) as c:
            return next(iter(c.decode(video=0))).to_ndarray(format="rgb24")
    try:
        from skimage import data
    except ImportError:
        sys.exit("scikit-image is not installed: pip install scikit-image, or pass --image astronaut.png")
    return np.ascontiguousarray(data.astronaut()[..., :3])


def ease(t: np.ndarray | float) -> np.ndarray | float:
    """Smoothstep 0..1: the camera starts and stops gently instead of jerking."""
    return t * t * (3 - 2 * t)


def sample(image: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Bilinear lookup of `image` at float coordinates (ys, xs); edges are clamped."""
    h, w = image.shape[:2]
    ys = np.clip(ys, 0, h - 1.001)
    xs = np.clip(xs, 0, w - 1.001)
    y0, x0 = ys.astype(int), xs.astype(int)
    fy, fx = (ys - y0)[..., None], (xs - x0)[..., None]
    img = image.astype(np.float32)
    top = img[y0, x0] * (1 - fx) + img[y0, x0 + 1] * fx
    bottom = img[y0 + 1, x0] * (1 - fx) + img[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def ball(frame: np.ndarray, cy: float, cx: float, radius: float) -> None:
    """Paint an anti-aliased shaded blue ball centred at a sub-pixel position, in place (float RGB)."""
    yy, xx = np.mgrid[0 : frame.shape[0], 0 : frame.shape[1]].astype(np.float32)
    dist = np.hypot(yy - cy, xx - cx)
    coverage = np.clip(radius + 0.5 - dist, 0, 1)[..., None]  # 1 px soft edge
    # A highlight up and to the left makes the ball read as 3-D and gives it texture to track.
    light = np.clip(1 - np.hypot(yy - (cy - radius / 3), xx - (cx - radius / 3)) / (1.4 * radius), 0, 1)[..., None]
    colour = np.array([40, 110, 230], np.float32) * (0.55 + 0.45 * light) + 60 * light**4
    frame *= 1 - coverage
    frame += coverage * colour


def render(image: np.ndarray) -> np.ndarray:
    """(FRAMES, SIZE, SIZE, 3) uint8: camera pan + zoom over `image`, with the ball on top."""
    h, w = image.shape[:2]
    grid = np.arange(SIZE, dtype=np.float32) - (SIZE - 1) / 2
    out = np.empty((FRAMES, SIZE, SIZE, 3), np.uint8)
    for i in range(FRAMES):
        t = ease(i / (FRAMES - 1))
        # Window shrinks from 0.72 to 0.55 of the image (slow zoom in) while its centre pans
        # from the upper left to the lower right, staying inside the picture.
        window = min(h, w) * (0.72 - 0.17 * t)
        cy = window / 2 + (h - window) * (0.15 + 0.6 * t)
        cx = window / 2 + (w - window) * (0.2 + 0.65 * t)
        step = window / SIZE
        frame = sample(image, cy + grid[:, None] * step, cx + grid[None, :] * step)
        u = i / (FRAMES - 1)
        ball(frame, SIZE * (0.75 - 0.45 * u + 0.12 * np.sin(2 * np.pi * u)), SIZE * (0.1 + 0.8 * u), 14.0)
        out[i] = np.clip(frame + 0.5, 0, 255).astype(np.uint8)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", help="source photograph (default: skimage.data.astronaut())")
    parser.add_argument("--out", default=str(Path(__file__).with_name("pan_astronaut.mp4")))
    parser.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    args = parser.parse_args()
    try:
        # Opened before rendering so an existing --out is refused at once.
        with VideoWriter(args.out, SIZE, SIZE, FPS, crf=CRF, force=args.force) as writer:
            writer.write(render(load_image(args.image)))
    except VtcodecError as e:
        sys.exit(f"error: {e}")
    print(f"wrote {args.out}: {FRAMES} frames {SIZE}x{SIZE} at {FPS} fps, {Path(args.out).stat().st_size} bytes")


if __name__ == "__main__":
    main()
