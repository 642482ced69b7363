"""Encode and decode fps at 1280x720 and 1920x1080 on a GPU in one short run, for when one is lent.

    python scripts/device_speed.py [--model KEY] [--device cuda] [--frames 32] [--json OUT]
    python scripts/device_speed.py --smoke      # CPU, 128x72, 4 frames (tests/test_speed_bench.py)

One process: the model is loaded once (timed apart: imports, CUDA's start, weights), then per
size a one-chunk warm-up encode and decode (cuDNN's autotuning and the allocator's growth happen
there, not in the timing) and the timed real path, `vtcodec.encode_file` (video file -> .vtk) and
`decode_file` (.vtk -> raw .y4m) with the loaded model passed in. Reported per size: encode and
decode fps, bpp, the peak GPU memory of each (torch.cuda.max_memory_allocated) and the process's
peak RSS so far. The clips are benchmarks/speed.py's (a pan over a photograph where scikit-image
is installed, else synthetic motion). On CPU the same run is benchmarks/speed.py's in-process
counterpart, without the CLI's start; use that script for CPU figures.

Needs PyAV and zstandard. On a lent machine without them, carry their wheels as
scripts/device_codec_check.sh does (`pip install --no-index --target /tmp/site devgpu/whl/*.whl`,
then `PYTHONPATH=/tmp/site:src`), and run with `timeout` well inside the call's limit, e.g.
`timeout 300 python scripts/device_speed.py --json $OUT/speed_cuda.json`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # runs from a plain checkout too (the lent machine installs nothing)


def _speed_script():
    spec = importlib.util.spec_from_file_location("speed", ROOT / "benchmarks" / "speed.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tivtok", help="checkpoint key or path (default: %(default)s)")
    ap.add_argument("--device", default="auto", help="auto | cuda | cpu (default: %(default)s)")
    ap.add_argument("--sizes", nargs="+", default=["1280x720", "1920x1080"])
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--content", choices=("pan", "synthetic"), default="pan")
    ap.add_argument("--smoke", action="store_true", help="CPU, 128x72, 4 frames: checks the script, measures nothing")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    if a.smoke:
        a.device, a.sizes, a.frames = "cpu", ["128x72"], 4
    speed = _speed_script()
    sizes = [speed.parse_size(s) for s in a.sizes]

    t0 = time.perf_counter()
    import torch

    from vtcodec.bench.machine import machine_info
    from vtcodec.codec import decode_file, encode_file, load_tokenizer, resolve_device

    t1 = time.perf_counter()
    device = str(resolve_device(a.device))
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.init()
    tok = load_tokenizer(a.model, device)
    t2 = time.perf_counter()
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    result = {"model": tok.key, "arch": tok.arch, "sha256": tok.sha256, "device": device, "frames": a.frames,
              "import_s": t1 - t0, "load_s": t2 - t1, "machine": machine_info(device), "sizes": []}
    m = result["machine"]
    print(f"{tok.key} ({tok.arch}) on {device} ({m.get('gpu') or m['cpu_model']}): imports {t1 - t0:.2f} s, "
          f"CUDA start and model load {t2 - t1:.2f} s")
    print(f"  {'size':<11}{'frames':>7}{'enc fps':>9}{'dec fps':>9}{'bpp':>9}{'enc GPU MB':>12}{'dec GPU MB':>12}"
          f"{'RSS MB':>8}")

    def timed(fn) -> tuple[float, float]:
        """(seconds, peak GPU MiB) of one call."""
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        sync()
        start = time.perf_counter()
        fn()
        sync()
        return time.perf_counter() - start, torch.cuda.max_memory_allocated() / 2**20 if cuda else 0.0

    with tempfile.TemporaryDirectory(prefix="vtc-devspeed-") as tmp:
        for w, h in sizes:
            d = Path(tmp) / f"{w}x{h}"
            d.mkdir()
            warm, clip = d / "warm.mp4", d / "clip.mp4"
            speed.make_clip(warm, w, h, tok.chunk_frames, a.content)
            content = speed.make_clip(clip, w, h, a.frames, a.content)
            encode_file(warm, d / "warm.vtk", model=tok, device=device, force=True)
            decode_file(d / "warm.vtk", d / "warm.y4m", model=tok, device=device, force=True)
            vtk, y4m = d / "clip.vtk", d / "clip.y4m"
            enc_s, enc_mb = timed(lambda: encode_file(clip, vtk, model=tok, device=device, force=True))
            dec_s, dec_mb = timed(lambda: decode_file(vtk, y4m, model=tok, device=device, force=True))
            row = {"size": f"{w}x{h}", "frames": a.frames, "content": content, "enc_s": enc_s, "dec_s": dec_s,
                   "enc_fps": a.frames / enc_s, "dec_fps": a.frames / dec_s,
                   "bpp": 8 * vtk.stat().st_size / (a.frames * w * h),
                   "enc_gpu_mb": enc_mb, "dec_gpu_mb": dec_mb, "peak_rss_mb": peak_rss_mb()}
            result["sizes"].append(row)
            print(f"  {row['size']:<11}{a.frames:>7}{row['enc_fps']:>9.2f}{row['dec_fps']:>9.2f}{row['bpp']:>9.4f}"
                  f"{enc_mb:>12.0f}{dec_mb:>12.0f}{row['peak_rss_mb']:>8.0f}")
    if a.json:
        a.json.write_text(json.dumps(result, indent=2, default=str))
        print(f"wrote {a.json}")
    return result


if __name__ == "__main__":
    main()
