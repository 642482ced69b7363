"""The speed benchmark: the real `vtcodec` CLI beside x264 medium and SVT-AV1 preset 8, in one run.

    python benchmarks/speed.py [--sizes 256x256 640x360 1280x720 1920x1080] [--frames 32]
                               [--model KEY] [--device auto] [--content pan|synthetic]
                               [--classical x264,av1] [--repeats 1] [--json OUT]

For each size it writes a test clip (H.264 CRF 12: a pan over a photograph, skimage's astronaut,
or smooth synthetic motion) and runs, each as its own child process on the same clip:

* `python -m vtcodec encode clip.mp4 -o clip.vtk --model M` and `python -m vtcodec decode
  clip.vtk -o out.y4m` (the console script's code, in this interpreter: no other install can be
  picked up from $PATH). Decoding writes raw .y4m, so no H.264 encode of the output is timed.
* x264 (preset medium) and SVT-AV1 (preset 8) through PyAV with the project's settings
  (vtcodec.bench.classical), at each encoder's default quality (no CRF given): the same path
  as the CLI's, source file -> RGB (vtcodec.video) -> encoder -> .mkv, and .mkv -> decoder ->
  RGB -> .y4m.

Reported per run: fps = frames / time, as `run` (the child's whole wall time, what a user waits)
and `net` (without the start: for vtcodec the run minus the startup below; for the classical
children their own timer, started after their imports); peak RSS of the child, from
`os.wait4`'s rusage (`ru_maxrss`, the kernel's high-water mark of that one process's resident
memory; unaffected by the other children, unlike RUSAGE_CHILDREN, which keeps the largest child
seen so far; spawned from a small interpreter, since Linux counts the memory of the process a
child was forked from into its ru_maxrss: about 10 MB of each figure is that floor); bits per pixel (file bytes, container included); PSNR (RGB, the
source's decoded frames against the .y4m's, over the whole clip); and each codec's net fps
divided by x264 medium's net *encode* fps (the issue's bar for both directions).

Startup is measured apart: `vtcodec --help`, `vtcodec models`, and a child that imports the CLI
and the codec and loads the model (what every encode and decode pays before its first frame);
its median wall time is what `net` subtracts. A machine shared with other jobs slows every
number here: the load average before and after is in the output.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

import numpy as np

SIZES = ("256x256", "640x360", "1280x720", "1920x1080")
FPS = Fraction(30)
CLASSICAL = {"x264": "x264 medium", "av1": "SVT-AV1 preset 8"}

# -- children -------------------------------------------------------------------------------------

class Run(NamedTuple):
    wall: float  # seconds from spawn to exit
    peak_mb: float  # the child's ru_maxrss, MiB
    out: str
    cpu: float  # user + system CPU seconds of the child: steadier than `wall` on a busy machine


# Spawns argv, waits for it and writes its wall time and ru_maxrss to the file argv[1]. A process
# of its own because Linux counts into a child's ru_maxrss the memory of the process it was
# forked (or vforked) from, up to the exec: a child of this script would start at this script's
# RSS, a child of this small interpreter (-S: no site, about 10 MB) at this one's.
SPAWN = """
import json, os, sys, time
t0 = time.perf_counter()
pid = os.posix_spawnp(sys.argv[2], sys.argv[2:], os.environ)
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - t0
with open(sys.argv[1], "w") as f:
    json.dump({"wall_s": wall, "maxrss": usage.ru_maxrss, "cpu_s": usage.ru_utime + usage.ru_stime,
               "rc": os.waitstatus_to_exitcode(status)}, f)
"""


def run_child(argv: list[str], what: str) -> Run:
    """Run argv to its end: its wall time, peak RSS (wait4 on exactly this child) and output."""
    with tempfile.TemporaryFile("w+") as out, tempfile.NamedTemporaryFile("r", suffix=".json") as rec:
        subprocess.run([sys.executable, "-S", "-c", SPAWN, rec.name, *argv], stdout=out, stderr=subprocess.STDOUT,
                       check=True)
        r = json.load(rec)
        out.seek(0)
        text = out.read()
    if r["rc"] != 0:
        sys.exit(f"{what} failed (exit {r['rc']}): {' '.join(argv)}\n{text[-3000:]}")
    kib = r["maxrss"] / (1024 if sys.platform == "darwin" else 1)  # bytes on macOS, KiB on Linux
    return Run(r["wall_s"], kib / 1024, text, r["cpu_s"])


def vtcodec_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "vtcodec", *args]


def last_json(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


LOAD_CHILD = """
import json, sys, time
t0 = time.perf_counter()
import vtcodec.cli
from vtcodec.codec import load_tokenizer
from vtcodec.bench.machine import machine_info
t1 = time.perf_counter()
tok = load_tokenizer(sys.argv[1], sys.argv[2])
t2 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "arch": tok.arch, "sha256": tok.sha256,
                  "machine": machine_info(str(next(tok.parameters()).device))}))
"""


def classical_child(phase: str, codec: str, src: str, dst: str) -> None:
    """One classical encode (source video -> .mkv) or decode (.mkv -> .y4m); prints its seconds,
    timed from after the imports (what a child of `run_child` runs with --classical-child)."""
    import av

    from vtcodec.video import VideoWriter, probe, read_chunks

    from vtcodec.bench.classical import _spec  # the project's settings (no torch imported)

    spec = _spec(codec)
    encoder, decoder, options = spec.encoder, spec.decoder, spec.options
    t0 = time.perf_counter()
    if phase == "encode":
        info = probe(src)
        with av.open(dst, "w", format="matroska") as out:
            s = out.add_stream(encoder, rate=info.fps)
            s.width, s.height, s.pix_fmt = info.width, info.height, "yuv420p"
            s.options = dict(options)  # no CRF: the encoder's default quality
            i = 0
            for chunk in read_chunks(src, 8, info=info):
                for rgb in chunk:  # the conversion vtcodec.bench.classical.encode_classical makes
                    vf = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
                        format="yuv420p", src_colorspace="itu601", dst_colorspace="itu601",
                        src_color_range="JPEG", dst_color_range="MPEG")
                    vf.pts = i
                    i += 1
                    for p in s.encode(vf):
                        out.mux(p)
            for p in s.encode(None):
                out.mux(p)
    else:
        with av.open(src) as inp:
            st = inp.streams.video[0]
            dec = av.CodecContext.create(decoder, "r")
            if st.codec_context.extradata:
                dec.extradata = st.codec_context.extradata
            with VideoWriter(dst, st.codec_context.width, st.codec_context.height, FPS, force=True) as w:
                for pkt in [*inp.demux(st), None]:
                    if pkt is not None and pkt.size == 0:
                        continue
                    for f in dec.decode(pkt):
                        w.write(f.reformat(format="rgb24", src_colorspace="itu601", dst_colorspace="itu601",
                                           src_color_range="MPEG", dst_color_range="JPEG").to_ndarray()[None])
    print(json.dumps({"seconds": time.perf_counter() - t0}))


# -- clips and quality ----------------------------------------------------------------------------

def photo() -> np.ndarray | None:
    try:
        from skimage import data
    except ImportError:
        return None
    return data.astronaut()


def resized(img: np.ndarray, width: int, height: int) -> np.ndarray:
    import av

    return av.VideoFrame.from_ndarray(img, format="rgb24").reformat(width=width, height=height).to_ndarray()


def make_clip(path: Path, width: int, height: int, frames: int, content: str) -> str:
    """Write the test clip; returns what it shows. `pan`: a photograph scaled to cover the frame
    plus the path, panned 2 px right and 1 px down per frame; `synthetic` (also the fallback
    without scikit-image): drifting sinusoids and a moving disc."""
    from vtcodec.video import VideoWriter

    img = photo() if content == "pan" else None
    with VideoWriter(path, width, height, FPS, force=True) as w:
        if img is not None:
            need_w, need_h = width + 2 * frames, height + frames
            scale = max(need_w / img.shape[1], need_h / img.shape[0])
            canvas = resized(img, round(img.shape[1] * scale) + 1, round(img.shape[0] * scale) + 1)
            for t in range(frames):
                w.write(canvas[None, t:t + height, 2 * t:2 * t + width])
            return "pan over skimage.data.astronaut, 2 px/frame right, 1 px/frame down"
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        r = min(width, height) / 6
        for t in range(frames):
            f = np.empty((height, width, 3), np.float32)
            f[..., 0] = 128 + 80 * np.sin((xx + 3 * t) / 41) * np.cos((yy - t) / 53)
            f[..., 1] = 128 + 70 * np.sin((xx + yy + 2 * t) / 67)
            f[..., 2] = 128 + 60 * np.cos((xx - 2 * yy - 4 * t) / 89)
            cx, cy = width / 2 + width / 3 * np.cos(t / 20), height / 2 + height / 3 * np.sin(t / 20)
            f[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = (240, 200, 40)
            w.write(np.clip(f, 0, 255).astype(np.uint8)[None])
    return "synthetic: drifting sinusoids and a moving disc"


def psnr(src: Path, decoded: Path) -> float:
    """RGB PSNR over the whole clip, both read as vtcodec reads video (frame by frame)."""
    from vtcodec.video import read_chunks

    se = n = 0
    for a, b in zip(read_chunks(src, 8), read_chunks(decoded, 8), strict=True):
        se += float(np.sum((a.astype(np.float64) - b) ** 2))
        n += a.size
    return float("inf") if se == 0 else 10 * np.log10(255.0 ** 2 * n / se)


# -- measuring ------------------------------------------------------------------------------------

def startup(model: str, device: str, repeats: int) -> dict:
    runs: dict[str, list[Run]] = {"help": [], "models": [], "load": []}
    for i in range(repeats + 1):  # the first round warms caches, and is reported apart
        runs["help"].append(run_child(vtcodec_argv("--help"), "vtcodec --help"))
        runs["models"].append(run_child(vtcodec_argv("models"), "vtcodec models"))
        runs["load"].append(run_child([sys.executable, "-c", LOAD_CHILD, model, device], "model load"))
    med = {k: statistics.median(r.wall for r in v[1:]) for k, v in runs.items()}
    loads = [last_json(r.out) for r in runs["load"][1:]]
    return {
        "help_s": med["help"], "models_s": med["models"], "models_first_s": runs["models"][0].wall,
        "load_s": med["load"],  # spawn -> CLI and codec imported, model loaded: what `net` subtracts
        "load_first_s": runs["load"][0].wall,
        "load_import_s": statistics.median(x["import_s"] for x in loads),
        "load_model_s": statistics.median(x["load_s"] for x in loads),
        "load_peak_mb": max(r.peak_mb for r in runs["load"]),
        "cpu_s": {k: statistics.median(r.cpu for r in v[1:]) for k, v in runs.items()},
        "repeats": repeats, "arch": loads[0]["arch"], "sha256": loads[0]["sha256"], "machine": loads[0]["machine"],
    }


def median_runs(argv: list[str], what: str, repeats: int) -> tuple[float, float, float, list[str]]:
    """(median wall s, max peak MiB, median CPU s, outputs) of `repeats` runs."""
    runs = []
    for _ in range(repeats):
        runs.append(r := run_child(argv, what))
        # as they end: a long run shows where it is, and a cut-short one what it had
        print(f"  ({what}: {r.wall:.1f} s, {r.cpu:.1f} CPU s, peak RSS {r.peak_mb:.0f} MB)", file=sys.stderr, flush=True)
    return (statistics.median(r.wall for r in runs), max(r.peak_mb for r in runs),
            statistics.median(r.cpu for r in runs), [r.out for r in runs])


def bench_vtcodec(clip: Path, work: Path, model: str, device: str, repeats: int, load_s: float) -> dict:
    vtk, y4m = work / "clip.vtk", work / "vtcodec.y4m"
    enc_wall, enc_mb, enc_cpu, _ = median_runs(vtcodec_argv("encode", str(clip), "-o", str(vtk), "--model", model,
                                                   "--device", device, "--force"), "vtcodec encode", repeats)
    dec_wall, dec_mb, dec_cpu, _ = median_runs(vtcodec_argv("decode", str(vtk), "-o", str(y4m), "--device", device,
                                                   "--force"), "vtcodec decode", repeats)
    return {"enc_wall_s": enc_wall, "enc_net_s": enc_wall - load_s, "enc_peak_mb": enc_mb, "enc_cpu_s": enc_cpu,
            "dec_wall_s": dec_wall, "dec_net_s": dec_wall - load_s, "dec_peak_mb": dec_mb, "dec_cpu_s": dec_cpu,
            "bytes": vtk.stat().st_size, "decoded": y4m}


def bench_classical(codec: str, clip: Path, work: Path, repeats: int) -> dict:
    mkv, y4m = work / f"{codec}.mkv", work / f"{codec}.y4m"
    me = [sys.executable, str(Path(__file__).resolve()), "--classical-child"]
    res = {}
    for phase, a, b in (("enc", clip, mkv), ("dec", mkv, y4m)):
        wall, mb, cpu, outs = median_runs([*me, phase + "ode", codec, str(a), str(b)], f"{codec} {phase}ode", repeats)
        res |= {f"{phase}_wall_s": wall, f"{phase}_cpu_s": cpu, f"{phase}_peak_mb": mb,
                f"{phase}_net_s": statistics.median(last_json(o)["seconds"] for o in outs)}
    return res | {"bytes": mkv.stat().st_size, "decoded": y4m}


def finish(r: dict, clip: Path, frames: int, width: int, height: int, quality: bool) -> dict:
    """Add fps, bpp and PSNR to one codec's timings (its decoded .y4m is removed after)."""
    decoded = r.pop("decoded")
    for ph in ("enc", "dec"):
        r[f"{ph}_fps"] = frames / r[f"{ph}_wall_s"]
        r[f"{ph}_fps_net"] = frames / r[f"{ph}_net_s"] if r[f"{ph}_net_s"] > 0 else None
    r["bpp"] = 8 * r["bytes"] / (frames * width * height)
    r["psnr_rgb"] = psnr(clip, decoded) if quality else None
    decoded.unlink()
    return r


def add_ratios(codecs: dict, base: dict | None) -> None:
    """Each codec's fps over `base`'s (x264 medium's) encode fps, run and net; nothing without it."""
    if base is None:
        return
    for r in codecs.values():
        for ph in ("enc", "dec"):
            r[f"{ph}_vs_x264_enc"] = r[f"{ph}_fps"] / base["enc_fps"]
            net, ref = r[f"{ph}_fps_net"], base["enc_fps_net"]
            r[f"{ph}_vs_x264_enc_net"] = net / ref if net and ref else None


# -- output ---------------------------------------------------------------------------------------

def _f(v, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def print_size(s: dict) -> None:
    print(f"\n{s['size']}, {s['frames']} frames ({s['content']})")
    print(f"  {'codec':<18}{'enc fps':>9}{'net':>8}{'dec fps':>9}{'net':>8}{'enc MB':>8}{'dec MB':>8}"
          f"{'bpp':>9}{'PSNR':>7}{'enc/x264':>10}{'dec/x264':>10}")
    for name, r in s["codecs"].items():
        print(f"  {name:<18}{r['enc_fps']:>9.2f}{_f(r['enc_fps_net'], '.2f'):>8}{r['dec_fps']:>9.2f}"
              f"{_f(r['dec_fps_net'], '.2f'):>8}{r['enc_peak_mb']:>8.0f}{r['dec_peak_mb']:>8.0f}{r['bpp']:>9.4f}"
              f"{_f(r['psnr_rgb'], '.2f'):>7}{_f(r.get('enc_vs_x264_enc_net'), '.3f'):>10}"
              f"{_f(r.get('dec_vs_x264_enc_net'), '.3f'):>10}")


def print_startup(st: dict, model: str) -> None:
    m = st["machine"]
    print(f"machine: {m['cpu_model']}, {m['cpu_cores_usable']} cores usable, torch {m['torch']} "
          f"({m['torch_threads']} threads), device {m['device']}")
    print(f"model: {model} ({st['arch']}, sha256 {st['sha256'][:16]})")
    print(f"startup (median of {st['repeats']}, after one warm-up round): vtcodec --help {st['help_s']:.2f} s, "
          f"vtcodec models {st['models_s']:.2f} s (first {st['models_first_s']:.2f} s), "
          f"import + model load {st['load_s']:.2f} s (imports {st['load_import_s']:.2f} s, "
          f"load {st['load_model_s']:.2f} s, peak {st['load_peak_mb']:.0f} MB); CPU s: "
          + ", ".join(f"{k} {v:.2f}" for k, v in st["cpu_s"].items()))


def default_model() -> str:
    """`vtcodec encode`'s own default --model."""
    import inspect

    from vtcodec.cli import encode

    return inspect.signature(encode).parameters["model"].default


def parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be WIDTHxHEIGHT, e.g. 640x360, got {text!r}") from None
    if w < 16 or h < 16 or w % 2 or h % 2:
        raise argparse.ArgumentTypeError(f"size {text!r}: width and height must be even and at least 16")
    return w, h


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--classical-child"]:
        classical_child(*argv[1:])
        return {}
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=parse_size, nargs="+", default=[parse_size(s) for s in SIZES],
                    help="WIDTHxHEIGHT ... (default: %(default)s)")
    ap.add_argument("--frames", type=int, default=32, help="frames per clip (default: %(default)s)")
    ap.add_argument("--model", default=None, help="checkpoint key or path (default: vtcodec encode's default)")
    ap.add_argument("--device", default="auto", help="vtcodec's --device (default: %(default)s)")
    ap.add_argument("--content", choices=("pan", "synthetic"), default="pan")
    ap.add_argument("--classical", default="x264,av1", help="comma-separated, of x264, av1; 'none' for none")
    ap.add_argument("--repeats", type=int, default=1, help="runs of each child; the median wall time is kept")
    ap.add_argument("--startup-repeats", type=int, default=3, help="timed startup rounds, after one warm-up round")
    ap.add_argument("--no-quality", action="store_true", help="skip PSNR (saves reading every output back)")
    ap.add_argument("--workdir", type=Path, default=None, help="where clips and outputs go (default: a temp dir)")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    a = ap.parse_args(argv)
    classical = [] if a.classical == "none" else a.classical.split(",")
    if bad := [c for c in classical if c not in CLASSICAL]:
        ap.error(f"--classical: unknown {bad}; choose from {', '.join(CLASSICAL)} or none")
    if min(a.frames, a.repeats, a.startup_repeats) < 1:
        ap.error("--frames, --repeats and --startup-repeats must be at least 1")
    model = a.model or default_model()

    load_before = os.getloadavg()[0]
    st = startup(model, a.device, a.startup_repeats)
    print_startup(st, model)
    sizes = []
    if a.workdir:
        Path(a.workdir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="vtc-speed-", dir=a.workdir) as tmp:
        for w, h in a.sizes:
            work = Path(tmp) / f"{w}x{h}"
            work.mkdir()
            clip = work / "clip.mp4"
            content = make_clip(clip, w, h, a.frames, a.content)
            codecs = {f"vtcodec {model}": bench_vtcodec(clip, work, model, a.device, a.repeats, st["load_s"])}
            for c in classical:
                codecs[CLASSICAL[c]] = bench_classical(c, clip, work, a.repeats)
            codecs = {k: finish(r, clip, a.frames, w, h, not a.no_quality) for k, r in codecs.items()}
            add_ratios(codecs, codecs.get(CLASSICAL["x264"]))
            sizes.append({"size": f"{w}x{h}", "width": w, "height": h, "frames": a.frames, "content": content,
                          "codecs": codecs})
            print_size(sizes[-1])
    result = {
        "model": model, "device": a.device, "frames": a.frames, "repeats": a.repeats, "startup": st,
        "load_average_1m": {"before": load_before, "after": os.getloadavg()[0]}, "sizes": sizes,
        "method": {"fps": "frames / child wall time (run); net subtracts startup.load_s for vtcodec, and is the "
                          "child's own timer (after imports) for x264 / SVT-AV1",
                   "cpu_s": "user + system CPU seconds of that child (os.wait4): steadier than wall time when "
                            "other jobs share the CPU",
                   "peak_mb": "ru_maxrss of that child from os.wait4 in a small spawning interpreter (a ~10 MB floor), MiB",
                   "ratios": "net fps / x264 medium's net encode fps at the same size",
                   "vtcodec": "python -m vtcodec encode / decode (-o .y4m), one process each",
                   "classical": "PyAV, vtcodec.bench.classical settings, encoder default CRF, source -> .mkv -> .y4m"},
    }
    print(f"\nload average (1 min): {load_before:.2f} before, {os.getloadavg()[0]:.2f} after "
          f"(other jobs on the machine slow every number)")
    if a.json:
        a.json.write_text(json.dumps(result, indent=2, default=str))
        print(f"wrote {a.json}")
    return result


if __name__ == "__main__":
    main()
