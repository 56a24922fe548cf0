"""Reading and writing real video files through FFmpeg (PyAV, which bundles its own FFmpeg).

PyAV was chosen by measurement (``benchmarks/decode_speed.py``): on the bundled 64x64x16 clips
decoding is not what limits training, and PyAV needs no system FFmpeg libraries (torchcodec
does), so a fresh machine needs nothing outside PyPI. Frames are scaled to the working
resolution by FFmpeg's swscale as they are decoded (:class:`WorkingFrames`), so a 4K video never
exists in memory at full size more than one frame at a time.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import av
import av.bitstream
import numpy as np


class VideoDecodeError(ValueError):
    """A file that FFmpeg cannot decode into a whole video; ``fix``: what the person who landed it can do."""

    def __init__(self, problem: str, fix: str = "re-encode it (e.g. ffmpeg -i in -c:v libx264 out.mp4) "
                                                  "or remove the row"):
        super().__init__(problem)
        self.fix = fix


COPY_AGAIN = "copy the file again (its transfer or recording was cut off) or remove the row"


def iso_media_problem(path: str | Path) -> str | None:
    """For an ISO base media file (mp4, mov, m4v, 3gp: it starts with an ``ftyp`` box), why it is
    incomplete — a top-level box that runs past the end of the file, or no ``moov`` index — else None.

    A file cut short keeps its header, so FFmpeg may decode part of it or refuse it as invalid data;
    its box structure says which: the file is truncated, not badly encoded.
    """
    path = Path(path)
    size = path.stat().st_size
    with path.open("rb") as f:
        if f.read(8)[4:8] != b"ftyp":
            return None
        pos, boxes = 0, []
        while pos < size:
            f.seek(pos)
            header = f.read(8)
            if len(header) < 8:
                return f"is truncated: it ends {size - pos} byte(s) into a box header"
            length, kind = struct.unpack(">I4s", header)
            if length == 1:
                big = f.read(8)
                if len(big) < 8:
                    return "is truncated: it ends inside a box header"
                length = struct.unpack(">Q", big)[0]
            elif length == 0:  # the last box runs to the end of the file
                length = size - pos
            name = kind.decode("latin-1")
            if length < 8:
                return f"is corrupt: its box {name!r} at byte {pos} has an impossible size ({length})"
            if pos + length > size:
                return (f"is truncated: its {name!r} box needs {length} bytes from byte {pos}, the file ends "
                        f"{size - pos} bytes in ({size} of {pos + length} bytes)")
            boxes.append(kind)
            pos += length
    if b"moov" not in boxes:
        return "is truncated or unfinished: it has no index ('moov' box), which a recorder writes last"
    return None


@dataclass(frozen=True)
class VideoProbe:
    frames: int
    fps: float
    width: int
    height: int
    duration_s: float
    codec: str
    variable_frame_rate: bool = False
    decoded: bool = True  # False: too large to decode; frames and duration are the header's


STILL_IMAGE_CODECS = {"png", "mjpeg", "bmp", "tiff", "webp", "jpeg2000", "gif", "ppm", "pgm"}


def working_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """``(width, height)`` with the short side at ``short_side`` (never upscaled), both even.

    Even sides: the keyframe memory stores these frames as H.264 yuv420p.
    """
    scale = min(1.0, short_side / min(width, height))
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


class WorkingFrames:
    """Collects decoded frames at the working resolution, at most ``max_frames``, evenly spaced.

    Fed one ``av.VideoFrame`` at a time (by :func:`probe_video` or :func:`decode_working`). Every
    ``stride``-th frame is kept; when more than ``max_frames`` are kept, every other one goes and the
    stride doubles, so a video of any length ends with between ``max_frames / 2`` and ``max_frames``
    frames spread over its whole duration, and memory stays at ``max_frames`` small frames.
    Only kept frames are converted (scaled by swscale, area filter) to RGB.
    """

    def __init__(self, short_side: int, max_frames: int):
        self.short_side, self.max_frames = short_side, max_frames
        self.stride, self.seen = 1, 0
        self.frames: list[np.ndarray] = []

    def __call__(self, frame: "av.VideoFrame") -> None:
        if self.seen % self.stride == 0:
            w, h = working_size(frame.width, frame.height, self.short_side)
            self.frames.append(frame.reformat(width=w, height=h, format="rgb24", interpolation="AREA").to_ndarray())
            if len(self.frames) > self.max_frames:
                self.frames = self.frames[::2]
                self.stride *= 2
        self.seen += 1

    def result(self) -> np.ndarray:
        """uint8 ``[F, h, w, 3]``. A frame whose size changed mid-stream is scaled to the first one's."""
        if not self.frames:
            raise VideoDecodeError("no decodable video frame")
        first = self.frames[0].shape
        if any(f.shape != first for f in self.frames):
            self.frames = [f if f.shape == first else _resize_rgb(f, first[1], first[0]) for f in self.frames]
        return np.stack(self.frames)


def _resize_rgb(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    return frame.reformat(width=width, height=height, interpolation="AREA").to_ndarray()


def _decoded_frames(path: str | Path) -> Iterator["av.VideoFrame"]:
    """Every frame of the first video stream, decoded one at a time (FFmpeg errors name the file)."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoDecodeError(f"{path}: no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            yield from container.decode(stream)
    except av.FFmpegError as e:
        raise VideoDecodeError(f"{path}: FFmpeg cannot decode it ({e})") from e


def decode_working(path: str | Path, short_side: int, max_frames: int) -> np.ndarray:
    """Decode ``path`` at the working resolution: uint8 ``[F, h, w, 3]``, ``F <= max_frames``."""
    frames = WorkingFrames(short_side, max_frames)
    for frame in _decoded_frames(path):
        frames(frame)
    try:
        return frames.result()
    except VideoDecodeError as e:
        raise VideoDecodeError(f"{path}: {e}") from e


def decode_video(path: str | Path) -> np.ndarray:
    """Decode every frame of ``path`` as uint8 RGB ``[T, H, W, 3]``."""
    frames = [f.to_ndarray(format="rgb24") for f in _decoded_frames(path)]
    if not frames:
        raise VideoDecodeError(f"{path}: no decodable video frame")
    return np.stack(frames)


def probe_video(path: str | Path, *, max_side: int | None = None,
                on_frame: Callable[["av.VideoFrame"], None] | None = None) -> VideoProbe:
    """Decode ``path`` once, frame by frame (a header can lie), and report what it really holds.

    Frames are counted, not kept, so memory stays at one frame; ``on_frame`` sees each decoded
    frame (validation fills the decoded-frame cache in this same pass). A stream whose header says it is
    larger than ``max_side`` pixels on a side is not decoded at all (its frame count and duration
    come from the header): it will be refused for its size, and decoding it could exhaust memory.
    """
    path = Path(path)
    if path.stat().st_size == 0:
        raise VideoDecodeError("is empty (0 bytes)", COPY_AGAIN)
    incomplete = iso_media_problem(path)
    if incomplete:
        raise VideoDecodeError(incomplete, COPY_AGAIN)
    frames = 0
    try:
        with av.open(str(path)) as container:
            if not container.streams:
                raise VideoDecodeError("holds no stream at all (an empty, zero-duration container)",
                                       "export the video again or remove the row")
            if not container.streams.video:
                kinds = sorted({s.type for s in container.streams})
                raise VideoDecodeError(f"has no video stream ({', '.join(kinds)} only)",
                                       "land the video itself, not a sound track, or remove the row")
            stream = container.streams.video[0]
            # What the container says it holds, to tell a file cut short from a short clip.
            declared_frames = int(stream.frames or 0)
            declared_s = (float(stream.duration * stream.time_base) if stream.duration and stream.time_base
                          else (container.duration or 0) / av.time_base)
            codec = stream.codec_context.name
            fps = float(stream.average_rate or stream.guessed_rate or 0.0)
            width, height = stream.codec_context.width, stream.codec_context.height
            if max_side is not None and max(width, height) > max_side:
                frames = int(stream.frames or 0)
                duration = float(stream.duration * stream.time_base) if stream.duration else 0.0
                return VideoProbe(frames, fps, width, height, duration, codec, decoded=False)
            stream.thread_type = "AUTO"
            pts, frames, tick = [], 0, float(stream.time_base or 0)
            for frame in container.decode(stream):
                frames += 1
                width, height = frame.width, frame.height
                if on_frame is not None:
                    on_frame(frame)
                if frame.pts is not None:
                    pts.append(frame.pts * float(frame.time_base))
    except av.FFmpegError as e:
        why = getattr(e, "strerror", None) or e
        if frames:  # the start decoded: the rest is damaged or missing
            raise VideoDecodeError(f"is corrupt or truncated: decoding stopped after {frames} frame(s) ({why})",
                                   COPY_AGAIN) from e
        raise VideoDecodeError(f"cannot be decoded by FFmpeg ({why})",
                               "if it plays elsewhere, re-encode it (e.g. ffmpeg -i in -c:v libx264 out.mp4); "
                               "otherwise copy it again or remove the row") from e
    if frames == 0:
        raise VideoDecodeError("has a video stream but no frame (zero duration)",
                               "export the video again or remove the row")
    steps = np.diff(np.sort(pts)) if len(pts) > 1 else np.array([])
    # Timestamps are whole ticks of the container's time base (Matroska/WebM: 1 ms, so 60 fps is
    # 16 or 17 ms apart): a spread within one tick and a half is rounding, not a variable rate.
    tolerance = max(1e-3, 0.05 * steps.min() if steps.size else 0.0, 1.5 * tick)
    vfr = bool(steps.size and steps.max() - steps.min() > tolerance)
    if vfr or not fps:
        fps = float(1 / np.median(steps)) if steps.size and np.median(steps) > 0 else fps
    duration = float(pts[-1] - pts[0] + 1 / fps) if len(pts) > 1 and fps else (frames / fps if fps else 0.0)
    # Far fewer frames or seconds than the header states: the file was cut short (a Matroska or
    # fragmented file keeps playing up to the cut). A few frames or half a second of slack.
    if declared_frames and declared_frames - frames > max(2, 0.05 * declared_frames):
        raise VideoDecodeError(f"is truncated: its header says {declared_frames} frames, {frames} decode",
                               COPY_AGAIN)
    if declared_s and declared_s - duration > max(0.5, 0.05 * declared_s):
        raise VideoDecodeError(f"is truncated: its header says {declared_s:.2f} s, {duration:.2f} s decode "
                               f"({frames} frames)", COPY_AGAIN)
    return VideoProbe(frames, fps, width, height, duration, codec, variable_frame_rate=vfr)


def write_video(path: str | Path, frames: np.ndarray, *, fps: int = 8, crf: int = 18, lean: bool = False) -> int:
    """Encode uint8 ``[T, H, W, 3]`` as H.264 (yuv420p) mp4; returns the bytes written.

    Written to a temporary name and renamed, so a reader never sees half a file. The same frames
    always give the same bytes, so content hashes (DVC, lineage tags) stay stable: frames are
    converted to yuv420p before the encoder sees them, and x264 runs single-threaded without its
    assembly paths (measured: with them, 2-4 of 30 encodes of one clip came out different).
    ``lean``: without x264's informational SEI (its version and options as text, ~670 B a file, a
    third of a one-frame 64 px shard): the memory's shards, where every byte counts.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    t, h, w, _ = frames.shape
    if h % 2 or w % 2:
        raise ValueError(f"{path}: H.264 yuv420p needs even width and height, got {w}x{h}")
    with av.open(str(tmp), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast", "threads": "1", "x264-params": "asm=0"}
        strip = av.bitstream.BitStreamFilterContext("filter_units=remove_types=6", stream) if lean else None

        def mux(packets):
            for packet in packets:
                container.mux(strip.filter(packet) if strip else packet)

        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame = frame.reformat(format="yuv420p")
            frame.pts = i
            mux(stream.encode(frame))
        mux(stream.encode())
        if strip:
            container.mux(strip.filter(None))
    os.replace(tmp, path)
    return path.stat().st_size
