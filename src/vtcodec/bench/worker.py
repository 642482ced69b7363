"""Time one tokenizer model on one prepared clip, ideally in a fresh child process.

Lives in ``vtcodec.bench``; the runner starts ``python -m vtcodec.bench.worker JOB.json`` once
per model so that peak resident memory (the kernel's VmHWM high-water mark, which only ever
grows over a process's life) belongs to that model alone: interpreter + torch + weights +
activations. Run in-process instead (``measure`` called directly), peak RSS is the highest
VmRSS seen by a 5 ms sampling thread during the model's runs, which can miss short spikes and
includes whatever the process already held; the result says which method was used.

Timing: one untimed warm-up encode+decode of the same clip (weights loaded, kernels chosen,
caches filled; its times are kept as ``cold_*``), then one timed encode and one timed decode,
each wall-clock around the library call with ``torch.cuda.synchronize()`` on CUDA. Encode
therefore includes reading the lossless source file and writing the .vtk; decode includes
reading the .vtk and returning RGB frames.
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import sys
import threading
import time
import traceback
from pathlib import Path

import numpy as np


def _status_kb(field: str) -> int | None:
    """A memory field of /proc/self/status in kB (Linux); None elsewhere."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_mb() -> float | None:
    kb = _status_kb("VmRSS")
    return kb / 1024 if kb is not None else None


def hwm_mb() -> float:
    """Lifetime peak RSS of this process in MB."""
    kb = _status_kb("VmHWM")
    if kb is not None:
        return kb / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # ru_maxrss is kB on Linux but bytes on macOS.
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


class RSSSampler:
    """Highest VmRSS seen while the context is open, sampled every 5 ms by a daemon thread."""

    def __init__(self, interval: float = 0.005):
        self.interval = interval
        self.peak_mb = rss_mb() or 0.0
        self._stop = threading.Event()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            r = rss_mb()
            if r is not None and r > self.peak_mb:
                self.peak_mb = r

    def __enter__(self) -> RSSSampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        r = rss_mb()
        if r is not None and r > self.peak_mb:
            self.peak_mb = r


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def measure(
    codec,
    src: str,
    model: str,
    device: str,
    workdir: str,
    *,
    warmup: bool = True,
    isolated: bool = False,
    encode: dict | None = None,
) -> dict:
    """Warm up, then time one encode and one decode of ``src`` with ``model``.

    ``codec`` is the object providing ``encode_file`` and ``decode_frames`` (the ``vtcodec``
    module in real runs). ``encode``: more keyword arguments for ``encode_file`` (e.g. ``refine``).
    Returns raw numbers plus ``decoded`` (uint8 frames).
    """
    opts = encode or {}
    work = Path(workdir)
    dst = str(work / "model.vtk")
    baseline = rss_mb()
    cuda = device.startswith("cuda")
    if cuda:
        import torch

    out: dict = {"rss_baseline_mb": baseline}
    with RSSSampler() as sampler:
        if warmup:
            t0 = time.perf_counter()
            codec.encode_file(src, str(work / "warmup.vtk"), model=model, device=device, force=True, **opts)
            _sync(device)
            out["cold_encode_seconds"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            codec.decode_frames(str(work / "warmup.vtk"), device=device)
            _sync(device)
            out["cold_decode_seconds"] = time.perf_counter() - t0
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        res = codec.encode_file(src, dst, model=model, device=device, force=True, **opts)
        _sync(device)
        out["encode_seconds"] = time.perf_counter() - t0
        if cuda:
            out["peak_gpu_encode_mb"] = torch.cuda.max_memory_allocated() / 2**20
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        decoded = codec.decode_frames(dst, device=device)
        _sync(device)
        out["decode_seconds"] = time.perf_counter() - t0
        if cuda:
            out["peak_gpu_decode_mb"] = torch.cuda.max_memory_allocated() / 2**20
    out.update(
        bytes=int(res.bytes),
        file_bytes=os.path.getsize(dst),
        tokens=int(res.tokens),
        library_encode_seconds=float(res.seconds),
        frames=int(res.frames),
        width=int(res.width),
        height=int(res.height),
    )
    if cuda:
        out["peak_gpu_mb"] = max(out["peak_gpu_encode_mb"], out["peak_gpu_decode_mb"])
    if isolated:
        out["peak_rss_mb"] = hwm_mb()
        out["rss_method"] = "VmHWM of a child process running only this model"
    else:
        out["peak_rss_mb"] = sampler.peak_mb
        out["rss_method"] = "highest VmRSS sampled every 5 ms in the bench process"
    out["decoded"] = np.asarray(decoded)
    return out


def main(job_path: str) -> int:
    """Child-process entry: read the job JSON, measure, write result JSON + decoded .npy."""
    job = json.loads(Path(job_path).read_text())
    result_path = Path(job["result"])
    try:
        codec = importlib.import_module(job["codec"])
        out = measure(
            codec,
            job["src"],
            job["model"],
            job["device"],
            job["workdir"],
            warmup=job["warmup"],
            isolated=True,
            encode=job.get("encode"),
        )
        np.save(job["decoded"], out.pop("decoded"))
        result_path.write_text(json.dumps({"ok": True, "result": out}))
        return 0
    except Exception as e:  # reported to the parent, which re-raises it there
        result_path.write_text(
            json.dumps(
                {
                    "ok": False,
                    "error_type": type(e).__name__,
                    "error_module": type(e).__module__,
                    "message": str(e),
                    "traceback": traceback.format_exc(),
                }
            )
        )
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
