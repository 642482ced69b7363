"""Video file input and output for vtcodec, through PyAV (FFmpeg).

Everything else in vtcodec sees video only as `frames`: uint8 numpy arrays (T, H, W, 3) in RGB,
upright, at the display size. This module is the one place that knows about containers, pixel
formats, rotation metadata and PNG frame folders:

* `probe` says what a source holds (size, exact fps, exact frame count) and refuses sources that
  vtcodec cannot or will not code, with a one-line `VideoError`.
* `read_chunks` streams a source as RGB chunks without ever holding the whole video.
* `VideoWriter` writes H.264 (.mp4/.mkv/.mov), raw .y4m or a folder of PNG frames, atomically.

A "PNG sequence" source or target is a directory (its *.png files in numeric order) or a path
containing a printf pattern such as `out/frame_%04d.png`.
"""

from __future__ import annotations

import errno
import functools
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import Interpolation

from vtcodec import limits
from vtcodec.atomic import place_file, temp_beside, umask
from vtcodec.errors import OutputError, VideoError, VtcodecError, VtcodecWarning, held_signals, whole_number_problem

MIN_SIDE = 16
# What a source without a frame rate (PNG folders, some raw streams) is assumed to run at.
DEFAULT_FPS = Fraction(25)
# PNG sequences we write are named like this inside their folder, numbered from 1 as ffmpeg does.
PNG_PATTERN = "%06d.png"
PNG_START = 1

# what a folder's videos end in (training data, bench --data)
VIDEO_EXT = {".mp4", ".m4v", ".avi", ".mkv", ".mov", ".mpeg", ".mpg", ".webm", ".y4m"}
IMAGE_EXT = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
_H264_FORMATS = {".mp4": "mp4", ".mkv": "matroska", ".mov": "mov"}
# Demuxers that hold a single still image or text, which FFmpeg happily reports as a video stream.
_STILL_FORMATS = {"image2", "tty"}
# ACCURATE_RND: the default swscale rounding costs up to a code value more on RGB<->YUV.
_INTERP = Interpolation.BILINEAR | Interpolation.ACCURATE_RND
# FFmpeg AVColorSpace / AVColorRange / primaries / transfer codes for tagging what we write.
_BT709 = 1
_RANGE_MPEG = 1
_PRINTF = re.compile(r"%(0?\d*)d")


@dataclass(frozen=True)
class VideoInfo:
    """What a video source holds, as vtcodec will read it."""

    width: int  # display size, after rotation is applied
    height: int
    fps: Fraction  # exact rational from the container; DEFAULT_FPS when it has none
    frame_count: int  # exactly the number of frames read_chunks yields for the whole source
    rotation: int  # degrees counter-clockwise applied on read: 0, 90, 180 or 270
    source_format: str  # decoded pixel format, e.g. 'yuv420p', 'gray', 'yuv420p10le' (informational)
    fps_assumed: bool = False  # True when the source had no frame rate and `fps` is a fallback
    fps_variable: bool = False  # True when frame intervals vary: coded at `fps` (the average), with a warning


# ---------------------------------------------------------------------------------------------
# Reading


def probe(path: str | os.PathLike, *, default_fps: Fraction | int | None = None) -> VideoInfo:
    """Describe a video file or PNG sequence; raise VideoError if vtcodec cannot code it.

    The frame count is exact: packets are counted by demuxing (no decoding) and only the first
    frame is decoded, for its size, pixel format and rotation. `default_fps` is used only when the
    source carries no frame rate (always the case for PNG sequences); otherwise DEFAULT_FPS.
    """
    fallback = _as_fps(default_fps, VideoError) if default_fps is not None else DEFAULT_FPS
    seq = _png_sequence(path)
    if seq is not None:
        return _probe_png(path, seq, fallback)
    p = Path(path)
    lim = limits.current()
    container = _open(p)
    with container:
        stream = _pick_stream(container, p)
        cc = stream.codec_context
        if cc.width and cc.height:  # what the stream declares, checked before a frame is decoded
            _check_size(cc.width, cc.height, p)
        count = 0
        first = None
        pts: list[int] = []
        try:
            for packet in container.demux(stream):
                if packet.size == 0:  # the flush packet demux() yields at the end
                    continue
                # Discarded packets (before an edit list start) feed the decoder but yield no frame.
                if not getattr(packet, "is_discard", False):  # older PyAV lacks it
                    count += 1
                    if packet.pts is not None:
                        pts.append(packet.pts)
                if count > lim.max_frames:
                    raise VideoError(f"{str(p)!r} has more than {lim.max_frames} frames, the limit "
                                     "(raise it with VTCODEC_MAX_FRAMES)")
                if first is None:
                    first = next(iter(packet.decode()), None)
            if first is None and count:
                first = next(iter(stream.decode(None)), None)  # decoders with delay need a flush
        except av.FFmpegError as e:
            raise VideoError(f"cannot read {str(p)!r}: {_one_line(e)}") from e
        if count == 0:
            raise VideoError(f"{str(p)!r} has no video frames")
        if first is None:
            raise VideoError(f"cannot decode any frame of {str(p)!r} (codec {stream.codec_context.name})")
        rotation = _rotation(getattr(first, "rotation", 0), p)  # older PyAV cannot read it
        rate = stream.average_rate or stream.guessed_rate
    width, height = (first.height, first.width) if rotation in (90, 270) else (first.width, first.height)
    _check_size(width, height, p)
    fps = Fraction(rate) if rate else fallback
    variable = _variable_rate(pts)
    if variable:
        warnings.warn(VtcodecWarning(f"{str(p)!r} has a variable frame rate (frame intervals {variable}); "
                                     f"it is coded as {count} frames at a constant {fps} fps, its average"),
                      stacklevel=2)
    return VideoInfo(
        width=width,
        height=height,
        fps=fps,
        frame_count=count,
        rotation=rotation,
        source_format=first.format.name,
        fps_assumed=not rate,
        fps_variable=bool(variable),
    )


def _variable_rate(pts: list[int]) -> str | None:
    """'from A to B ticks' when presentation times are not evenly spaced (shortest and longest
    interval more than 10 % apart; a timestamp rounding tick is allowed), else None."""
    steps = np.diff(np.unique(np.asarray(pts, dtype=np.int64)))
    if steps.size < 2:
        return None
    lo, hi = int(steps.min()), int(steps.max())
    return f"from {lo} to {hi} ticks" if hi - lo > max(1, lo // 10) else None


def read_chunks(
    path: str | os.PathLike, chunk_frames: int, start: int = 0, stop: int | None = None, *, info: VideoInfo | None = None
) -> Iterator[np.ndarray]:
    """Yield frames [start, stop) as uint8 (t, H, W, 3) RGB chunks of `chunk_frames` frames.

    The last chunk may be shorter. Frames are upright (rotation metadata applied) and every pixel
    format is converted to rgb24. `stop` beyond the end is clamped to the frame count. Frames before
    `start` are decoded and dropped, because seeking by timestamp is not frame-exact in general.
    Raises VideoError if decoding fails or the stream holds a different number of frames than
    probe() counted. `info`: what probe(path) returned, when the caller has it (saves a second
    pass over the file's packets).
    """
    # Not a generator itself, so a bad path or range raises here, at the call, not at first next().
    if problem := whole_number_problem("chunk_frames", chunk_frames):
        raise VtcodecError(problem)
    info = probe(path) if info is None else info
    start, stop = _frame_range(start, stop, info.frame_count, path)
    seq = _png_sequence(path)
    frames = _png_frames(seq, start, stop) if seq is not None else _decoded_frames(path, info, start, stop)
    return _chunks(frames, info, chunk_frames, start, stop)


def _chunks(
    frames: Iterator[np.ndarray], info: VideoInfo, chunk_frames: int, start: int, stop: int
) -> Iterator[np.ndarray]:
    """Group (H, W, 3) frames [start, stop) into (t, H, W, 3) chunks."""
    while start < stop:
        # A fresh array per chunk: callers may keep chunks around while we fill the next one.
        chunk = np.empty((min(chunk_frames, stop - start), info.height, info.width, 3), np.uint8)
        for i in range(chunk.shape[0]):
            chunk[i] = next(frames)
        start += chunk.shape[0]
        if start == stop:
            # Run the frame source to its end before handing over the last chunk: that is where
            # it checks the stream held no more frames than probe() counted.
            for _ in frames:
                pass
        yield chunk


def read_frames(path: str | os.PathLike) -> np.ndarray:
    """Read a whole video or PNG sequence into one uint8 (T, H, W, 3) RGB array (tests, bench)."""
    info = probe(path)
    out = np.empty((info.frame_count, info.height, info.width, 3), np.uint8)
    i = 0
    for chunk in read_chunks(path, 64):
        out[i : i + len(chunk)] = chunk
        i += len(chunk)
    return out


def apply_rotation(frames: np.ndarray, rotation: int) -> np.ndarray:
    """Rotate (T, H, W, 3) frames counter-clockwise by `rotation` degrees (a multiple of 90).

    FFmpeg's display matrix angle is counter-clockwise and players rotate the picture by it,
    so a rotation of 90 turns a stored landscape picture into an upright portrait one.
    """
    if rotation % 90:
        raise VideoError(f"unsupported rotation {rotation!r} degrees (only multiples of 90)")
    k = (rotation // 90) % 4
    return frames if k == 0 else np.ascontiguousarray(np.rot90(frames, k, axes=(1, 2)))


def _decoded_frames(path: str | os.PathLike, info: VideoInfo, start: int, stop: int) -> Iterator[np.ndarray]:
    """Yield upright RGB (H, W, 3) frames [start, stop) of a container, checking the frame count."""
    p = Path(path)
    k = info.rotation // 90
    coded = (info.height, info.width) if k % 2 == 0 else (info.width, info.height)  # (H, W) before rotation
    with _open(p) as container:
        stream = _pick_stream(container, p)
        stream.thread_type = "AUTO"
        index = 0
        try:
            for frame in container.decode(stream):
                if index >= stop:
                    if stop < info.frame_count:
                        return
                    raise VideoError(
                        f"{str(p)!r} decoded to more frames than the {info.frame_count} its packets promised"
                    )
                if index >= start:
                    if (frame.height, frame.width) != coded:
                        raise VideoError(
                            f"frame {index} of {str(p)!r} is {frame.width}x{frame.height}, but the video "
                            f"started at {coded[1]}x{coded[0]} (size changes are not supported)"
                        )
                    yield _to_rgb(frame, k)
                index += 1
        except av.FFmpegError as e:
            raise VideoError(f"cannot decode {str(p)!r} at frame {index}: {_one_line(e)}") from e
    if index < stop:
        raise VideoError(f"{str(p)!r} ended after {index} frames; its packets promised {info.frame_count}")


def _to_rgb(frame: av.VideoFrame, k: int) -> np.ndarray:
    """Convert one decoded frame of any pixel format to upright uint8 (H, W, 3) RGB."""
    # The frame's colorspace tag is honoured by reformat; its range must be passed explicitly, or
    # full-range (JPEG) sources would be read as limited range.
    rgb = frame.to_ndarray(format="rgb24", interpolation=_INTERP, src_color_range=frame.color_range)
    return rgb if k == 0 else np.rot90(rgb, k)


def _open(p: Path) -> av.container.InputContainer:
    """Open a file for reading, refusing what is not a readable video container."""
    if not p.exists():
        raise VideoError(f"no such file: {str(p)!r}")
    if p.is_dir():
        raise VideoError(f"{str(p)!r} is a directory without .png frames")
    try:
        container = av.open(str(p), mode="r")
    except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError) as e:
        raise VideoError(f"cannot read {str(p)!r} as a video: {_one_line(e)}") from e
    name = container.format.name
    if name.endswith("_pipe") or name in _STILL_FORMATS:
        container.close()
        raise VideoError(f"{str(p)!r} is a still image or text ({name}), not a video")
    return container


def _pick_stream(container: av.container.InputContainer, p: Path) -> av.video.stream.VideoStream:
    """The first real video stream: cover art is stored as a one-frame 'attached picture' stream."""
    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    kinds = ", ".join(s.type for s in container.streams) or "none"
    raise VideoError(f"{str(p)!r} has no video stream (streams: {kinds})")


def _rotation(degrees: int, p: Path) -> int:
    if degrees % 90:
        raise VideoError(f"{str(p)!r} has unsupported rotation {degrees!r} degrees (only multiples of 90)")
    return degrees % 360


def _check_size(width: int, height: int, p: Path) -> None:
    if width < MIN_SIDE or height < MIN_SIDE:
        raise VideoError(f"{str(p)!r} is {width}x{height}; vtcodec needs at least {MIN_SIDE}x{MIN_SIDE}")
    if problem := limits.picture_problem(width, height, limits.current(), "picture"):
        raise VideoError(f"{str(p)!r}: {problem}")


def _frame_range(start: int, stop: int | None, total: int, path: str | os.PathLike) -> tuple[int, int]:
    if isinstance(start, bool) or not isinstance(start, int) or not 0 <= start < total:
        raise VideoError(f"start frame {start!r} is outside {str(path)!r} (it has {total} frames)")
    if stop is None:
        return start, total
    if isinstance(stop, bool) or not isinstance(stop, int) or stop <= start:
        raise VideoError(f"stop frame {stop!r} must be an integer after start frame {start}")
    return start, min(stop, total)


def _one_line(e: BaseException) -> str:
    text = getattr(e, "strerror", None) or str(e) or type(e).__name__
    return " ".join(str(text).split())


# ---------------------------------------------------------------------------------------------
# PNG sequences


def _png_sequence(path: str | os.PathLike) -> list[Path] | None:
    """The frame files of a PNG-sequence source in order, or None if `path` is not one.

    A directory counts only if it holds *.png files, so a plain directory still gets the
    directory error from _open.
    """
    text = os.fspath(path)
    if _PRINTF.search(text):
        folder, regex = Path(text).parent, _pattern_regex(Path(text).name)
    elif Path(text).is_dir():
        folder, regex = Path(text), re.compile(r"(.*?)(\d*)\.png", re.IGNORECASE)
    else:
        return None
    if not folder.is_dir():
        raise VideoError(f"no such directory: {str(folder)!r}")
    found = []
    for entry in folder.iterdir():
        m = regex.fullmatch(entry.name)
        if m and entry.is_file():
            found.append(entry)
    if not found:
        if _PRINTF.search(text):
            raise VideoError(f"no frames match {text!r}")
        return None

    def numeric(f: Path) -> list:
        # Natural order, so frame_10 follows frame_9 even without zero padding.
        return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", f.name)]

    return sorted(found, key=numeric)


def _pattern_regex(name: str) -> re.Pattern:
    parts = _PRINTF.split(name)
    if len(parts) != 3:
        raise VideoError(f"pattern {name!r} must contain exactly one %d-style number")
    return re.compile(re.escape(parts[0]) + r"(\d+)" + re.escape(parts[2]))


def _probe_png(path: str | os.PathLike, files: list[Path], fps: Fraction) -> VideoInfo:
    lim = limits.current()
    if len(files) > lim.max_frames:
        raise VideoError(f"{str(path)!r} has {len(files)} frames, more than the limit of {lim.max_frames} "
                         "(raise it with VTCODEC_MAX_FRAMES)")
    fmt = "rgb24"
    try:  # the size the image declares, checked before it is decoded
        with av.open(str(files[0])) as c:
            cc = c.streams.video[0].codec_context
            fmt = cc.pix_fmt or fmt
            if cc.width and cc.height:
                _check_size(cc.width, cc.height, Path(files[0]))
    except (av.FFmpegError, OSError, IndexError):
        pass  # read_image below says what is wrong with it
    first = read_image(files[0])
    height, width = first.shape[:2]
    _check_size(width, height, Path(path))
    return VideoInfo(width, height, fps, len(files), 0, fmt, fps_assumed=True)


def _png_frames(files: list[Path], start: int, stop: int) -> Iterator[np.ndarray]:
    shape = None
    for f in files[start:stop]:
        rgb = read_image(f)
        if shape is not None and rgb.shape != shape:
            raise VideoError(f"{str(f)!r} is {rgb.shape[1]}x{rgb.shape[0]}, unlike the frames before it")
        shape = rgb.shape
        yield rgb


def read_image(f: str | os.PathLike) -> np.ndarray:
    """One still image (PNG, JPEG, ...; or a video's first frame) as uint8 (H, W, 3) RGB."""
    f = Path(f)
    try:
        with av.open(str(f)) as c:
            frame = next(iter(c.decode(video=0)))
            return frame.to_ndarray(format="rgb24", interpolation=_INTERP)
    except (av.FFmpegError, OSError, StopIteration) as e:
        raise VideoError(f"cannot read frame {str(f)!r}: {_one_line(e)}") from e


# ---------------------------------------------------------------------------------------------
# Writing


def _same_path(a: Path, b: Path) -> bool:
    """Whether two paths name the same file or folder (resolved, or the same inode)."""
    if a.resolve() == b.resolve():
        return True
    return a.exists() and b.exists() and os.path.samefile(a, b)


def _not_an_input(dst: str | os.PathLike, d: Path, inputs) -> None:
    """OutputError if `d` (the output file or folder) is one of the other `inputs` (paths or None:
    a checkpoint, a reference image) or exists as something other than a file or folder."""
    for other in inputs:
        if other is not None and _same_path(d, Path(os.fspath(other))):
            raise OutputError(f"output {os.fspath(dst)!r} is an input ({os.fspath(other)}); choose another path")
    if d.exists() and not (d.is_file() or d.is_dir()):
        raise OutputError(f"output {os.fspath(dst)!r} exists and is not a regular file; choose another path")


def _path_errors_as_output_errors(check):
    """A path check whose OSError (a name too long, a folder it may not read) is an OutputError."""
    @functools.wraps(check)
    def checked(src, dst, *args, **kwargs):
        try:
            return check(src, dst, *args, **kwargs)
        except OSError as e:
            raise OutputError(f"output {os.fspath(dst)!r}: {e.strerror or e}") from None
    return checked


@_path_errors_as_output_errors
def check_output_path(src: str | os.PathLike, dst: str | os.PathLike, force: bool, inputs=()) -> None:
    """Raise OutputError if writing `dst` would overwrite the input `src` or one of the other
    `inputs`, or an existing output without force."""
    s, d = Path(os.fspath(src)), _target(dst)[1]
    same = _same_path(d, s)
    if not same and _PRINTF.search(os.fspath(src)):
        same = Path(os.fspath(src)).parent.resolve() == d.resolve()
    if same:
        raise OutputError(f"output {os.fspath(dst)!r} is the input file; choose another path")
    _not_an_input(dst, d, inputs)
    if not force and _target_exists(dst):
        raise OutputError(f"output {os.fspath(dst)!r} already exists (use --force to overwrite)")


@_path_errors_as_output_errors
def check_file_output(src: str | os.PathLike, dst: str | os.PathLike, force: bool, what: str, inputs=()) -> None:
    """As check_output_path, for a single-file output that is not a video (`what`: 'a .vtk file')."""
    s, d = Path(os.fspath(src)), Path(os.fspath(dst))
    if d.exists() and _same_path(d, s):
        raise OutputError(f"output {os.fspath(dst)!r} is the input file; choose another path")
    if d.is_dir():
        raise OutputError(f"output {os.fspath(dst)!r} is a directory; give {what} path")
    _not_an_input(dst, d, inputs)
    if d.exists() and not force:
        raise OutputError(f"output {os.fspath(dst)!r} already exists (use --force to overwrite)")


def _target(path: str | os.PathLike) -> tuple[str, Path, str | None]:
    """(kind, file-or-folder, PNG name pattern) for an output path; kind is 'h264', 'y4m' or 'png'."""
    text = os.fspath(path)
    if _PRINTF.search(text):
        _pattern_regex(Path(text).name)  # validates: exactly one number
        return "png", Path(text).parent, Path(text).name
    if text.endswith(("/", os.sep)) or Path(text).is_dir():
        return "png", Path(text), PNG_PATTERN
    suffix = Path(text).suffix.lower()
    if suffix in _H264_FORMATS:
        return "h264", Path(text), None
    if suffix == ".y4m":
        return "y4m", Path(text), None
    raise OutputError(
        f"unsupported output {text!r}: use .mp4, .mkv, .mov, .y4m, or a directory/ or %06d.png pattern for PNGs"
    )


def _target_exists(path: str | os.PathLike) -> bool:
    kind, where, pattern = _target(path)
    if kind != "png":
        return where.exists() or where.is_symlink()
    if not where.is_dir():
        return where.exists()
    regex = _pattern_regex(pattern)
    return any(regex.fullmatch(e.name) for e in where.iterdir())


def _as_fps(fps: Fraction | int | float | str, error: type[VtcodecError]) -> Fraction:
    try:
        value = Fraction(fps)
    except (TypeError, ValueError, ZeroDivisionError):
        raise error(f"frame rate {fps!r} is not a number") from None
    if isinstance(fps, float):
        value = value.limit_denominator(100_000)  # 29.97 -> 2997/100, not a 52-bit binary fraction
    if value <= 0:
        raise error(f"frame rate {fps!r} must be positive")
    return value


class VideoWriter:
    """Write RGB frames to a video file or PNG folder, atomically.

    The format follows the target:

    * `.mp4` / `.mkv` / `.mov`: H.264 (libx264), yuv420p BT.709 limited range tagged in the stream,
      `crf` 12 by default. H.264 4:2:0 cannot code odd widths or heights, so odd sizes are written
      as yuv444p (High 4:4:4 profile): the exact size is kept and FFmpeg-based players (mpv, VLC,
      ffplay) play it, though browsers and QuickTime may not. `lossless=True` writes libx264rgb at
      qp 0 in rgb24, so frames read back bit-exactly (again, not playable in browsers).
    * `.y4m`: raw yuv444p (BT.601 limited range, what y4m readers assume). The RGB->YUV conversion
      rounds to 8 bits, so a round trip is close (within ~2 code values) but not bit exact.
    * a path ending in `/`, an existing directory, or a path with a `%d` pattern: one PNG per frame
      (exact RGB), named `%06d.png` from 1 unless the pattern says otherwise.

    The stream time base is 1/fps and frame i has pts i, so the stored frame rate equals `fps`
    exactly and the frame count equals the frames written. Output goes to a temporary file or folder
    next to the target and is renamed into place by a successful close(); leaving a `with` block by
    an exception removes it, so a target never holds a partial video.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        width: int,
        height: int,
        fps: Fraction,
        *,
        lossless: bool = False,
        crf: int = 12,
        force: bool = False,
    ) -> None:
        for name, value in (("width", width), ("height", height)):
            if problem := whole_number_problem(name, value):
                raise VtcodecError(problem)
        if isinstance(crf, bool) or not isinstance(crf, int) or not 0 <= crf <= 51:
            raise VtcodecError(f"crf {crf!r} is outside 0..51")
        self.path = os.fspath(path)
        self.width, self.height = width, height
        self.fps = _as_fps(fps, VtcodecError)
        self.force = force
        self.frames_written = 0
        self._closed = False
        self._kind, self._where, self._pattern = _target(path)
        if not force and _target_exists(path):
            raise OutputError(f"output {self.path!r} already exists (use --force to overwrite)")
        parent = self._where.parent
        if not parent.is_dir():
            raise OutputError(f"cannot write {self.path!r}: directory {str(parent)!r} does not exist")
        if self._kind != "png" and self._where.is_dir():
            raise OutputError(f"cannot write {self.path!r}: it is a directory")
        try:  # until the caller's `with` holds the writer, its temporary output is ours to remove
            if self._kind == "png":
                self._open_png()
            else:
                self._open_container(lossless, crf)
        except BaseException:
            self._discard()
            raise

    # -- setup -----------------------------------------------------------------------------------

    def _open_container(self, lossless: bool, crf: int) -> None:
        suffix = self._where.suffix
        with held_signals():  # created and recorded as one step, for _discard() to find
            self._tmp = temp_beside(self._where)
        tmp = str(self._tmp)
        if self._kind == "y4m":
            self._container = av.open(tmp, mode="w", format="yuv4mpegpipe")
            stream = self._container.add_stream("rawvideo", rate=self.fps)
            stream.pix_fmt = "yuv444p"
            self._convert = dict(format="yuv444p", dst_colorspace="ITU601", dst_color_range="MPEG")
        else:
            self._container = av.open(tmp, mode="w", format=_H264_FORMATS[suffix.lower()])
            if lossless:
                stream = self._container.add_stream("libx264rgb", rate=self.fps)
                stream.pix_fmt = "rgb24"
                stream.options = {"qp": "0"}
                self._convert = None  # libx264rgb takes rgb24 as is
            else:
                stream = self._container.add_stream("libx264", rate=self.fps)
                even = self.width % 2 == 0 and self.height % 2 == 0
                stream.pix_fmt = "yuv420p" if even else "yuv444p"
                stream.options = {"crf": str(crf)}
                cc = stream.codec_context
                cc.colorspace = cc.color_primaries = cc.color_trc = _BT709
                cc.color_range = _RANGE_MPEG
                self._convert = dict(format=stream.pix_fmt, dst_colorspace="ITU709", dst_color_range="MPEG")
        stream.width, stream.height = self.width, self.height
        # pts = frame index in a 1/fps time base: the container stores exactly this rate.
        stream.time_base = 1 / self.fps
        self._stream = stream

    def _open_png(self) -> None:
        self._fresh_dir = not self._where.exists()
        if self._where.exists() and not self._where.is_dir():
            raise OutputError(f"cannot write PNG frames into {str(self._where)!r}: it is a file")
        # A new folder is built beside the target and renamed; into an existing one the frames are
        # staged in a hidden subfolder and moved in one by one on close.
        base = self._where.parent if self._fresh_dir else self._where
        try:
            with held_signals():
                self._tmp = Path(tempfile.mkdtemp(prefix=f".{self._where.name}.tmp-", dir=base))
        except OSError as e:
            raise OutputError(f"cannot write PNG frames into {str(self._where)!r}: {e.strerror or e}") from None
        os.chmod(self._tmp, 0o777 & ~umask())  # mkdtemp makes it private; a new folder should not be
        self._png = av.CodecContext.create("png", "w")
        self._png.width, self._png.height, self._png.pix_fmt = self.width, self.height, "rgb24"
        self._png.time_base = 1 / self.fps

    # -- writing ---------------------------------------------------------------------------------

    def write(self, frames: np.ndarray) -> None:
        """Append uint8 (t, H, W, 3) RGB frames."""
        if self._closed:
            raise OutputError(f"cannot write to {self.path!r}: the writer is closed")
        shape = (self.height, self.width, 3)
        ok = isinstance(frames, np.ndarray) and frames.dtype == np.uint8 and frames.ndim == 4
        if not ok or frames.shape[1:] != shape:
            got = (frames.dtype, frames.shape) if isinstance(frames, np.ndarray) else type(frames).__name__
            raise ValueError(f"frames must be uint8 (t, {self.height}, {self.width}, 3), got {got!r}")
        for rgb in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts = self.frames_written
            if self._kind == "png":
                name = self._pattern % (PNG_START + self.frames_written)
                data = b"".join(bytes(p) for p in self._png.encode(frame))
                (self._tmp / name).write_bytes(data)
            else:
                if self._convert is not None:
                    frame = frame.reformat(interpolation=_INTERP, **self._convert)
                    frame.pts = self.frames_written
                for packet in self._stream.encode(frame):
                    self._container.mux(packet)
            self.frames_written += 1

    def close(self) -> None:
        """Finish the file and move it to the target. Raises OutputError if no frame was written."""
        if self._closed:
            return
        if self.frames_written == 0:
            self._discard()
            raise OutputError(f"no frames were written to {self.path!r}; nothing was saved")
        try:
            if self._kind == "png":
                self._finish_png()
            else:
                for packet in self._stream.encode(None):
                    self._container.mux(packet)
                self._container.close()
                place_file(self._tmp, self._where, self.force)
        except FileExistsError:
            self._discard()
            raise OutputError(f"output {self.path!r} appeared while writing (another writer?); "
                              "use --force to overwrite") from None
        except OSError as e:  # e.g. the folder another decode renamed into place first
            self._discard()
            raise OutputError(f"cannot write {self.path!r}: {e.strerror or e}") from None
        except BaseException:
            self._discard()
            raise
        self._closed = True

    def _finish_png(self) -> None:
        if self._fresh_dir:
            if self._where.exists():  # another writer's folder landed first: ours never merges into it
                raise FileExistsError(17, "exists", str(self._where))
            try:
                os.rename(self._tmp, self._where)
            except OSError as e:
                if e.errno in (errno.EEXIST, errno.ENOTEMPTY):
                    raise FileExistsError(17, "exists", str(self._where)) from None
                raise
            return
        regex = _pattern_regex(self._pattern)
        new = {self._pattern % (PNG_START + i) for i in range(self.frames_written)}
        for name in sorted(new):
            os.replace(self._tmp / name, self._where / name)
        self._tmp.rmdir()
        # With force, frames left from a longer earlier sequence would be read back as ours.
        for entry in self._where.iterdir():
            if regex.fullmatch(entry.name) and entry.name not in new and entry.is_file():
                entry.unlink(missing_ok=True)  # a concurrent writer may have removed it first

    def _discard(self) -> None:
        """Drop everything written so far; the target is left as it was."""
        self._closed = True
        container = getattr(self, "_container", None)
        if container is not None:
            try:
                container.close()
            except Exception:  # already failing; the temp file goes either way
                pass
        tmp = getattr(self, "_tmp", None)
        if tmp is not None:
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self._discard()

    def __del__(self) -> None:
        # A writer dropped without close() must not leave its temp file behind.
        if not getattr(self, "_closed", True):
            self._discard()
