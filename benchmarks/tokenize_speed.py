"""Clips per second of `vtcodec tokenize` (Ray Data, local) against a serial `vtcodec encode` loop.

    python benchmarks/tokenize_speed.py [--clips 40] [--frames 16] [--size 128] [--model vidtok-256] [--cpus 2]

Makes `--clips` short synthetic clips (a drifting gradient with a moving square, lossless .mkv),
then times (1) one `vtcodec encode` process per clip, one after another -- what a shell loop
does, paying process start, torch import and model load every time -- and (2) one
`vtcodec tokenize` over the folder with local Ray on `--cpus` CPUs. Peak memory is the largest
summed resident set of the process tree (Ray's head processes and workers included), sampled
every 0.1 s from /proc (Linux). Wall clock includes Ray's start-up and shut-down.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

from vtcodec.video import VideoWriter

VTCODEC = [sys.executable, "-m", "vtcodec"]


def clip(n: int, size: int, seed: int) -> np.ndarray:
    """uint8 (n, size, size, 3): a gradient drifting with time and a white square moving across it."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    out = np.empty((n, size, size, 3), np.uint8)
    side = size // 4
    for t in range(n):
        f = np.stack([255 * xx / (size - 1), 255 * yy / (size - 1), np.full_like(xx, (40 * seed + 6 * t) % 256)], -1)
        x0, y0 = (3 * t + 7 * seed) % (size - side), (2 * t + 5 * seed) % (size - side)
        f[y0:y0 + side, x0:x0 + side] = 255
        out[t] = f.astype(np.uint8)
    return out


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(d))
    return kids


def tree_rss(pid: int) -> int:
    """Bytes resident in `pid` and all its descendants."""
    kids, todo, total = _children(), [pid], 0
    while todo:
        p = todo.pop()
        todo += kids.get(p, [])
        try:
            with open(f"/proc/{p}/status") as f:
                total += next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
        except (OSError, StopIteration):
            pass
    return total


def run(cmd: list[str]) -> tuple[float, int, str]:
    """(seconds, peak tree RSS in bytes, stdout) of a command; exits on failure."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0

    def sample() -> None:
        nonlocal peak
        while p.poll() is None:
            peak = max(peak, tree_rss(p.pid))
            time.sleep(0.1)

    th = threading.Thread(target=sample)
    th.start()
    out, err = p.communicate()
    th.join()
    if p.returncode:
        sys.exit(f"{' '.join(cmd)} failed ({p.returncode}):\n{err[-3000:]}")
    return time.perf_counter() - t0, peak, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=40)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--model", default="vidtok-256")
    ap.add_argument("--cpus", type=int, default=2)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="vtcodec-tokbench-") as tmp:
        src, vtk = Path(tmp) / "clips", Path(tmp) / "vtk"
        src.mkdir()
        vtk.mkdir()
        for i in range(a.clips):
            with VideoWriter(src / f"clip{i:03d}.mkv", a.size, a.size, Fraction(25), lossless=True) as w:
                w.write(clip(a.frames, a.size, i))
        print(f"{a.clips} clips of {a.frames} frames {a.size}x{a.size}, model {a.model}, {a.cpus} CPUs "
              f"({os.cpu_count()} on this machine)")

        serial, serial_peak = 0.0, 0
        for f in sorted(src.iterdir()):
            s, peak, _ = run([*VTCODEC, "encode", str(f), "-o", str(vtk / f"{f.stem}.vtk"), "--model", a.model,
                              "--device", "cpu"])
            serial, serial_peak = serial + s, max(serial_peak, peak)
        print(f"serial encode loop: {serial:.1f} s, {a.clips / serial:.2f} clips/s, peak memory {serial_peak / 2**20:.0f} MiB")

        s, peak, out = run([*VTCODEC, "tokenize", str(src), "--out", str(Path(tmp) / "shards"), "--model", a.model,
                            "--num-cpus", str(a.cpus)])
        print(f"vtcodec tokenize:   {s:.1f} s, {a.clips / s:.2f} clips/s, peak memory {peak / 2**20:.0f} MiB "
              f"(all Ray processes)")
        print(f"  {out.strip().splitlines()[-1]}")
        print(f"speed-up: {serial / s:.2f}x")


if __name__ == "__main__":
    main()
