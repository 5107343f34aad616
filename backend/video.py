"""Frames in, files out: the take's H.264 MP4, an optional lossless PNG sequence, and a reader.

imageio-ffmpeg does the work (its bundled ffmpeg, so no system install is needed); this module
only fixes the settings every take shares, so a take plays the same in Blender's sequencer,
browsers and desktop players.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

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


def write_mp4(frames: np.ndarray, path: str | os.PathLike[str], fps: float = 8) -> Path:
    """Encode (n, h, w, 3) uint8 RGB frames as H.264 / yuv420p MP4 at exactly `path`.

    The container is forced to MP4, so `path` may end in anything (generate passes a
    temporary ".part" name and renames it afterwards). Sizes are kept as they are: yuv420p
    needs an even width and height, and odd ones are refused rather than silently rescaled.
    """
    import imageio_ffmpeg

    arr = _check_frames(frames)
    _, height, width, _ = arr.shape
    if width % 2 or height % 2:
        raise ValueError(f"H.264 in yuv420p needs an even width and height, got {width} x {height}")
    target = Path(path)
    writer = imageio_ffmpeg.write_frames(
        str(target),
        (width, height),
        fps=fps,
        codec="libx264",
        pix_fmt_in="rgb24",
        pix_fmt_out="yuv420p",
        quality=None,  # the CRF below instead of imageio's 0-10 scale
        # 1 = never let imageio insert a scale filter; evenness is checked above.
        macro_block_size=1,
        ffmpeg_log_level="error",
        output_params=[
            *("-crf", str(H264_CRF), "-preset", "medium"),
            *("-g", str(max(1, round(fps * KEYFRAME_INTERVAL_S)))),
            *_COLOUR_TAGS,
            # moov atom first: players (and browsers) can start before reading the whole file.
            *("-movflags", "+faststart"),
            *("-f", "mp4"),
        ],
    )
    writer.send(None)  # start ffmpeg
    try:
        for frame in arr:
            writer.send(np.ascontiguousarray(frame))
    finally:
        writer.close()  # waits for ffmpeg to finish the file (and the faststart pass)
    return target


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
