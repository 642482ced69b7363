"""Tests for vtcodec.video: probing, streaming reads, atomic writes and refusal of bad inputs.

Every video is generated here with PyAV into tmp_path and kept tiny (a few frames of at most
~100x60) because the test machine is shared.
"""

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from vtcodec import video
from vtcodec.errors import OutputError, VideoError, VtcodecError
from vtcodec.video import VideoWriter, apply_rotation, check_output_path, probe, read_chunks, read_frames

NTSC = Fraction(30000, 1001)


def blocks(n: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """(n, H, W, 3) frames of 8x8 random colour blocks: detailed enough to catch misplaced pixels."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (n, (height + 7) // 8, (width + 7) // 8, 3), dtype=np.uint8)
    return np.ascontiguousarray(small.repeat(8, 1).repeat(8, 2)[:, :height, :width])


def write_raw(path, frames, *, codec="ffv1", pix_fmt="yuv420p", rate=24, rotation=None):
    """Write frames with PyAV directly, for inputs VideoWriter does not make (grey, 10-bit, rotated)."""
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=rate)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
        if codec == "libx264rgb":
            s.options = {"qp": "0"}
        if rotation is not None:
            s.set_display_rotation(rotation)
        for i, rgb in enumerate(frames):
            f = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            f.pts = i
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def at(folder: Path, name: str) -> str:
    """Join as text: pathlib drops the trailing '/' that marks a PNG-folder target."""
    return f"{folder}/{name}"


def write(path, frames, fps=Fraction(24), **kw):
    with VideoWriter(path, frames.shape[2], frames.shape[1], fps, **kw) as w:
        w.write(frames)
    return path


# --- round trips ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["v.mp4", "v.mkv", "v.mov"])
@pytest.mark.parametrize("fps", [NTSC, Fraction(25)])
def test_h264_round_trip_keeps_count_size_and_exact_fps(tmp_path, name, fps):
    x = blocks(7, 48, 64)
    info = probe(write(tmp_path / name, x, fps))
    assert (info.width, info.height, info.frame_count, info.fps) == (64, 48, 7, fps)
    assert not info.fps_assumed and info.rotation == 0 and info.source_format == "yuv420p"
    y = read_frames(tmp_path / name)
    assert y.shape == x.shape and y.dtype == np.uint8
    # Lossy, but a flat-ish picture at crf 12 stays close on average.
    assert np.abs(y.astype(int) - x).mean() < 16


@pytest.mark.parametrize("name", ["odd.mp4", "odd.y4m", "odd_png/"])
def test_odd_size_keeps_exact_size(tmp_path, name):
    x = blocks(3, 61, 97)
    info = probe(write(at(tmp_path, name), x, NTSC))
    assert (info.width, info.height, info.frame_count) == (97, 61, 3)
    y = read_frames(at(tmp_path, name))
    assert y.shape == (3, 61, 97, 3)
    assert np.abs(y.astype(int) - x).mean() < 4  # yuv444p for odd H.264: no chroma loss


@pytest.mark.parametrize("name", ["lossless.mp4", "lossless.mkv", "frames/", "pat/f_%04d.png"])
def test_lossless_and_png_round_trip_bit_exactly(tmp_path, name):
    (tmp_path / "pat").mkdir()
    x = blocks(5, 61, 97)
    write(at(tmp_path, name), x, NTSC, lossless=True)
    np.testing.assert_array_equal(read_frames(at(tmp_path, name)), x)
    assert probe(at(tmp_path, name)).frame_count == 5


def test_png_folder_names_and_fps(tmp_path):
    write(at(tmp_path, "out/"), blocks(3, 16, 16))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["000001.png", "000002.png", "000003.png"]
    info = probe(tmp_path / "out")
    assert info.fps == 25 and info.fps_assumed
    assert probe(tmp_path / "out", default_fps=NTSC).fps == NTSC


def test_y4m_is_close_and_keeps_fps(tmp_path):
    x = blocks(4, 32, 48)
    info = probe(write(tmp_path / "v.y4m", x, NTSC))
    assert (info.fps, info.frame_count, info.source_format) == (NTSC, 4, "yuv444p")
    assert np.abs(read_frames(tmp_path / "v.y4m").astype(int) - x).max() <= 3  # not bit exact: RGB->YUV


def test_chunks_sizes_and_start_stop(tmp_path):
    x = blocks(10, 32, 32)
    path = write(tmp_path / "v.mkv", x, lossless=True)
    assert [len(c) for c in read_chunks(path, 4)] == [4, 4, 2]
    assert [len(c) for c in read_chunks(path, 10)] == [10]
    assert [len(c) for c in read_chunks(path, 3, start=2, stop=7)] == [3, 2]
    np.testing.assert_array_equal(np.concatenate(list(read_chunks(path, 3, start=2, stop=7))), x[2:7])
    np.testing.assert_array_equal(np.concatenate(list(read_chunks(path, 4, start=8, stop=99))), x[8:])
    chunks = list(read_chunks(path, 4))
    assert all(c.dtype == np.uint8 and c.shape[1:] == (32, 32, 3) for c in chunks)
    assert chunks[0] is not chunks[1] and not np.shares_memory(chunks[0], chunks[1])


@pytest.mark.parametrize("start, stop", [(-1, None), (10, None), (3, 3), (5, 2)])
def test_bad_frame_range_raises(tmp_path, start, stop):
    path = write(tmp_path / "v.mkv", blocks(10, 16, 16), lossless=True)
    with pytest.raises(VideoError):
        list(read_chunks(path, 4, start=start, stop=stop))


def test_bad_chunk_frames(tmp_path):
    path = write(tmp_path / "v.mkv", blocks(2, 16, 16), lossless=True)
    with pytest.raises(VtcodecError, match="chunk_frames"):
        next(read_chunks(path, 0))


# --- source pixel formats and rotation -----------------------------------------------------------


def test_grey_input_becomes_rgb(tmp_path):
    x = blocks(3, 24, 40)
    info = probe(write_raw(tmp_path / "g.mkv", x, pix_fmt="gray"))
    assert info.source_format == "gray"
    y = read_frames(tmp_path / "g.mkv")
    assert y.shape == (3, 24, 40, 3) and y.dtype == np.uint8
    assert (y[..., 0] == y[..., 1]).all() and (y[..., 1] == y[..., 2]).all()


@pytest.mark.parametrize("name, codec", [("t.mkv", "ffv1"), ("t.mp4", "libx264")])
def test_ten_bit_input_becomes_8_bit_rgb(tmp_path, name, codec):
    x = blocks(3, 24, 40)
    info = probe(write_raw(tmp_path / name, x, codec=codec, pix_fmt="yuv420p10le"))
    assert info.source_format == "yuv420p10le"
    y = read_frames(tmp_path / name)
    assert y.shape == x.shape and y.dtype == np.uint8
    assert np.abs(y.astype(int) - x).mean() < 16


@pytest.mark.parametrize("meta, rotation", [(90, 90), (-90, 270), (180, 180)])
@pytest.mark.skipif(not hasattr(av.video.stream.VideoStream, "set_display_rotation"), reason="needs PyAV >= 18")
def test_rotation_metadata_is_applied(tmp_path, meta, rotation):
    # Stored landscape 48x32, exact (libx264rgb qp 0), with a display matrix as phones write.
    x = blocks(3, 32, 48)
    path = write_raw(tmp_path / "r.mp4", x, codec="libx264rgb", pix_fmt="rgb24", rotation=meta)
    info = probe(path)
    assert info.rotation == rotation
    assert (info.width, info.height) == ((32, 48) if rotation in (90, 270) else (48, 32))
    # np.rot90 turns counter-clockwise, the display matrix convention (checked against ffmpeg's autorotate).
    np.testing.assert_array_equal(read_frames(path), np.rot90(x, rotation // 90, axes=(1, 2)))


def test_apply_rotation_helper():
    x = np.arange(2 * 2 * 3 * 3, dtype=np.uint8).reshape(2, 2, 3, 3)
    assert apply_rotation(x, 0) is x
    np.testing.assert_array_equal(apply_rotation(x, 90)[:, 0, :, 0], x[:, :, -1, 0])  # right column -> top row
    np.testing.assert_array_equal(apply_rotation(apply_rotation(x, 90), 270), x)
    with pytest.raises(VideoError, match="45"):
        apply_rotation(x, 45)


# --- refused inputs --------------------------------------------------------------------------------


def jpeg_bytes() -> bytes:
    cc = av.CodecContext.create("mjpeg", "w")
    cc.width, cc.height, cc.pix_fmt, cc.time_base = 32, 32, "yuvj420p", Fraction(1, 25)
    frame = av.VideoFrame.from_ndarray(blocks(1, 32, 32)[0], format="rgb24").reformat(format="yuvj420p")
    frame.pts = 0
    return b"".join(bytes(p) for p in [*cc.encode(frame), *cc.encode(None)])


def audio_only(path, codec, rate):
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=rate)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, rate // 10), np.int16), format="s16", layout="mono")
        frame.sample_rate, frame.pts = rate, 0
        for p in [*s.encode(frame), *s.encode(None)]:
            c.mux(p)
    return path


def zero_frames(path, codec):
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=24)
        s.width, s.height, s.pix_fmt = 32, 32, "yuv420p"
        c.start_encoding()  # header, no packets
    return path


def file_with(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def folder(path: Path) -> Path:
    path.mkdir()
    return path


BAD = {
    "missing": lambda d: d / "nope.mp4",
    "directory": lambda d: folder(d / "empty"),
    "empty file": lambda d: file_with(d / "e.mp4", b""),
    "text": lambda d: file_with(d / "t.mp4", b"hello\nnot a video\n"),
    "jpeg renamed": lambda d: file_with(d / "j.mp4", jpeg_bytes()),
    "wav audio": lambda d: audio_only(d / "a.wav", "pcm_s16le", 8000),
    "mka audio": lambda d: audio_only(d / "a.mka", "mp2", 44100),
    "zero frames mkv": lambda d: zero_frames(d / "z.mkv", "ffv1"),
    "zero frames mp4": lambda d: zero_frames(d / "z.mp4", "libx264"),
    "1x1": lambda d: write_raw(d / "one.mkv", blocks(2, 1, 1), pix_fmt="yuv444p"),
    "3x5": lambda d: write_raw(d / "t35.mkv", blocks(2, 5, 3), pix_fmt="yuv444p"),
    "15 high": lambda d: write_raw(d / "t15.mkv", blocks(2, 15, 64), pix_fmt="yuv444p"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_inputs_raise_one_line_video_error(tmp_path, case):
    path = BAD[case](tmp_path)
    for call in (probe, lambda p: read_chunks(p, 4), read_frames):  # read_chunks raises before iterating
        with pytest.raises(VideoError) as e:
            call(path)
        message = str(e.value)
        assert message and "\n" not in message
        assert Path(path).name in message  # quotes the bad value


def test_small_size_message_names_the_size(tmp_path):
    with pytest.raises(VideoError, match="3x5"):
        probe(write_raw(tmp_path / "t35.mkv", blocks(2, 5, 3), pix_fmt="yuv444p"))


def test_frame_count_mismatch_is_caught(tmp_path, monkeypatch):
    path = write(tmp_path / "v.mkv", blocks(4, 16, 16), lossless=True)
    real = probe(path)
    for wrong, words in ((5, "ended after 4"), (3, "more frames")):
        fake = video.VideoInfo(**{**real.__dict__, "frame_count": wrong})
        monkeypatch.setattr(video, "probe", lambda p, **kw: fake)
        with pytest.raises(VideoError, match=words):
            list(read_chunks(path, 2))


# --- the writer's guarantees ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["v.mp4", "v.y4m", "frames/"])
def test_exception_inside_writer_leaves_nothing(tmp_path, name):
    with pytest.raises(RuntimeError):
        with VideoWriter(at(tmp_path, name), 16, 16, 24) as w:
            w.write(blocks(2, 16, 16))
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_existing_output_needs_force_and_is_left_untouched(tmp_path):
    target = tmp_path / "v.mp4"
    target.write_bytes(b"precious")
    with pytest.raises(OutputError, match="v.mp4"):
        VideoWriter(target, 16, 16, 24)
    assert target.read_bytes() == b"precious"
    write(target, blocks(2, 16, 16), force=True)
    assert probe(target).frame_count == 2
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # not the temp file's private 0600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]


def test_png_folder_needs_force_and_force_replaces_old_frames(tmp_path):
    out = tmp_path / "out"
    write(at(tmp_path, "out/"), blocks(4, 16, 16, seed=1))
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(OutputError):
        VideoWriter(out, 16, 16, 24)
    x = blocks(2, 16, 16, seed=2)
    write(out, x, force=True)
    np.testing.assert_array_equal(read_frames(out), x)  # no stale frames 3 and 4
    assert (out / "notes.txt").read_text() == "keep me"


def test_writer_rejects_bad_arguments(tmp_path):
    with pytest.raises(OutputError, match="avi"):
        VideoWriter(tmp_path / "v.avi", 16, 16, 24)
    with pytest.raises(OutputError, match="does not exist"):
        VideoWriter(tmp_path / "no" / "v.mp4", 16, 16, 24)
    with pytest.raises(VtcodecError, match="99"):
        VideoWriter(tmp_path / "v.mp4", 16, 16, 24, crf=99)
    with pytest.raises(VtcodecError, match="fps|rate"):
        VideoWriter(tmp_path / "v.mp4", 16, 16, 0)
    with VideoWriter(tmp_path / "v.mp4", 16, 16, 24) as w:
        with pytest.raises(ValueError, match="uint8"):
            w.write(np.zeros((1, 16, 17, 3), np.uint8))
        w.write(blocks(1, 16, 16))
    with pytest.raises(OutputError, match="no frames"):
        VideoWriter(tmp_path / "w.mp4", 16, 16, 24).close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]


def test_float_fps_is_made_rational(tmp_path):
    assert probe(write(tmp_path / "v.mp4", blocks(2, 16, 16), 29.97)).fps == Fraction(2997, 100)


def test_check_output_path(tmp_path):
    src = write(tmp_path / "in.mp4", blocks(2, 16, 16))
    with pytest.raises(OutputError, match="input"):
        check_output_path(src, tmp_path / "." / "in.mp4", force=True)
    (tmp_path / "link.mp4").symlink_to(src)
    with pytest.raises(OutputError, match="input"):
        check_output_path(src, tmp_path / "link.mp4", force=True)
    with pytest.raises(OutputError, match="exists"):
        check_output_path(tmp_path / "other.mp4", src, force=False)
    check_output_path(tmp_path / "other.mp4", src, force=True)
    check_output_path(src, tmp_path / "new.mp4", force=False)
    check_output_path(src, at(tmp_path, "new_frames/"), force=False)
