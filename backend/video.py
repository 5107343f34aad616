"""Frames in, files out: the take's H.264 MP4, an optional lossless PNG sequence, and a reader.

imageio-ffmpeg does the work (its bundled ffmpeg, so no system install is needed); this module
only fixes the settings every take shares, so a take plays the same in Blender's sequencer,
browsers and desktop players.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .errors import clip

# Constant quality rather than a bitrate: 17 is visually lossless for both the schematic
# preview (flat colours, thin lines) and the model's video, and keeps a 49-frame take small.
H264_CRF = 17
# One keyframe a second, so scrubbing a take in the sequencer does not decode from frame 0.
KEYFRAME_INTERVAL_S = 1.0

# swscale converts RGB to YUV with the BT.601 matrix unless told otherwise; say so in the file
# so players that honour the tag and players that assume 601 for SD video decode alike.
_COLOUR_TAGS = ["-colorspace", "smpte170m"]


def _check_frames(frames: np.ndarray) -> np.ndarray:
    arr = np.asarray(frames)
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] != 3 or arr.shape[0] == 0:
        raise ValueError(f"frames must be uint8 RGB of shape (n, height, width, 3), got {arr.dtype} {arr.shape}")
    return arr


class EncodeError(RuntimeError):
    """ffmpeg did not write a whole video: it failed, was killed, or the file does not decode to
    the frames sent. `returncode` is ffmpeg's (negative: the signal that ended it), `detail` the
    last lines it wrote to stderr."""

    def __init__(self, message: str, returncode: int | None = None, detail: str = ""):
        super().__init__(message)
        self.returncode = returncode
        self.detail = detail


def write_mp4(frames: np.ndarray, path: str | os.PathLike[str], fps: float = 8) -> Path:
    """Encode (n, h, w, 3) uint8 RGB frames as H.264 / yuv420p MP4 at exactly `path`.

    The container is forced to MP4, so `path` may end in anything (generate passes a
    temporary ".part" name and renames it afterwards). Sizes are kept as they are: yuv420p
    needs an even width and height, and odd ones are refused rather than silently rescaled.
    Raises EncodeError unless ffmpeg exits cleanly and the file decodes to all `n` frames.
    """
    import imageio_ffmpeg

    arr = _check_frames(frames)
    n, height, width, _ = arr.shape
    if width % 2 or height % 2:
        raise ValueError(f"H.264 in yuv420p needs an even width and height, got {width} x {height}")
    target = Path(path)
    # imageio-ffmpeg's writer (write_frames) neither returns ffmpeg's exit status nor keeps its
    # error output, so a truncated file (disk full, a file-size limit) would pass as a take; we
    # run the ffmpeg it ships ourselves, with the same settings, and check both.
    cmd = [
        imageio_ffmpeg.get_ffmpeg_exe(),
        *("-y", "-nostdin", "-hide_banner", "-loglevel", "error"),
        *("-f", "rawvideo", "-vcodec", "rawvideo", "-s", f"{width}x{height}", "-pix_fmt", "rgb24"),
        *("-r", f"{fps:.02f}", "-i", "-", "-an"),
        *("-vcodec", "libx264", "-pix_fmt", "yuv420p"),
        *("-crf", str(H264_CRF), "-preset", "medium"),
        *("-g", str(max(1, round(fps * KEYFRAME_INTERVAL_S)))),
        *_COLOUR_TAGS,
        # moov atom first: players (and browsers) can start before reading the whole file.
        *("-movflags", "+faststart"),
        *("-f", "mp4", str(target)),
    ]
    with tempfile.TemporaryFile() as log:
        # Its own process group: a Ctrl-C in the terminal is the backend's to handle (cancel at a
        # frame boundary), not a kill of the encoder halfway through the file.
        group = {"process_group": 0} if os.name == "posix" else {}
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=log, **group)
        try:
            for frame in arr:
                proc.stdin.write(np.ascontiguousarray(frame).tobytes())
            proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass  # ffmpeg stopped reading: its exit status and log say why
        finally:
            if not proc.stdin.closed:
                try:
                    proc.stdin.close()
                except OSError:
                    pass
            code = proc.wait()
        log.seek(0)
        detail = _tail(log.read())
    if code != 0:
        how = f"was stopped by signal {-code}" if code < 0 else f"exited with status {code}"
        raise EncodeError(f"the video encoder (ffmpeg) {how}" + (f": {detail}" if detail else ""), code, detail)
    decoded = count_frames(target)
    if decoded != n:
        raise EncodeError(f"the written video decodes to {decoded} of its {n} frames", code, detail)
    return target


def count_frames(path: str | os.PathLike[str]) -> int:
    """How many frames a video file decodes to (0 for a file that does not decode)."""
    import imageio_ffmpeg

    try:
        frames, _ = imageio_ffmpeg.count_frames_and_secs(str(path))
    except (RuntimeError, OSError, ValueError):
        return 0
    return int(frames or 0)


def _tail(data: bytes, lines: int = 3, limit: int = 300) -> str:
    text = " ".join(line.strip() for line in data.decode("utf-8", "replace").splitlines()[-lines:] if line.strip())
    return clip(text, limit)


def write_png_sequence(frames: np.ndarray, folder: str | os.PathLike[str], stem: str) -> list[Path]:
    """Lossless 8-bit RGB PNGs `{stem}_0001.png`, ... in `folder` (created if missing).

    Never replaces a file: an existing name raises FileExistsError.
    """
    from PIL import Image

    arr = _check_frames(frames)
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for j, frame in enumerate(arr):
        path = out / f"{stem}_{j + 1:04d}.png"
        with open(path, "xb") as f:
            # Level 3: about 10% larger than the default (6) in two thirds of the time.
            Image.fromarray(frame, "RGB").save(f, format="PNG", compress_level=3)
        paths.append(path)
    return paths


def read_mp4(path: str | os.PathLike[str]) -> tuple[np.ndarray, dict[str, Any]]:
    """Decode a video to (n, h, w, 3) uint8 RGB frames and ffmpeg's description of it.

    The description holds imageio-ffmpeg's fields (size, fps, duration, codec, pix_fmt, ...) and
    `frames`, the number of frames decoded.
    """
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
    try:
        info: dict[str, Any] = dict(next(reader))
        width, height = info["size"]
        frames = [np.frombuffer(buf, dtype=np.uint8).reshape(height, width, 3) for buf in reader]
    finally:
        reader.close()
    info["frames"] = len(frames)
    return (np.stack(frames) if frames else np.zeros((0, height, width, 3), np.uint8)), info
