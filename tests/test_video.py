"""Takes as files: an H.264 MP4 that players and Blender accept, and lossless PNG frames."""

import re
import struct
import subprocess

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from backend import video


def test_frames(n=49, height=480, width=720, seed=0):
    """Smooth gradients, flat patches and a moving bar: like the preview, easy to check by eye."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    frames = np.empty((n, height, width, 3), np.uint8)
    for j in range(n):
        frames[j, ..., 0] = (xx * 255 // width).astype(np.uint8)
        frames[j, ..., 1] = (yy * 255 // height).astype(np.uint8)
        frames[j, ..., 2] = 90
        x = 40 + j * 12
        frames[j, 200:280, x : x + 40] = rng.integers(0, 255, 3, dtype=np.uint8)
    return frames


test_frames.__test__ = False  # a helper, not a test


def ffmpeg_stream_line(path):
    """The video stream's description from the ffmpeg that imageio-ffmpeg ships."""
    run = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True
    )
    lines = [line for line in run.stderr.splitlines() if "Video:" in line]
    assert len(lines) == 1, run.stderr
    return lines[0]


def top_level_boxes(path):
    data = path.read_bytes()
    boxes, at = [], 0
    while at + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[at : at + 8])
        if size == 1:
            size = struct.unpack(">Q", data[at + 8 : at + 16])[0]
        boxes.append(kind.decode("ascii", "replace"))
        if size < 8:
            break
        at += size
    return boxes


def test_mp4_is_h264_yuv420p_720x480_at_8_fps_written_to_the_exact_path(tmp_path):
    frames = test_frames()
    # generate passes a temporary name that it renames afterwards: no ".mp4" at the end.
    path = tmp_path / ".take.mp4.part"
    assert video.write_mp4(frames, path, fps=8) == path
    assert [p.name for p in tmp_path.iterdir()] == [".take.mp4.part"]
    stream = ffmpeg_stream_line(path)
    assert re.search(r"Video: h264 \(High\)", stream), stream
    assert "yuv420p" in stream and "720x480" in stream and re.search(r"\b8 fps\b", stream), stream

    decoded, info = video.read_mp4(path)
    assert info["frames"] == 49 and decoded.shape == frames.shape
    assert info["fps"] == 8.0 and info["size"] == (720, 480)
    assert info["duration"] == pytest.approx(49 / 8, abs=0.02)
    # Visually lossless: the mean error is a fraction of a grey level, and no frame is off.
    error = np.abs(decoded.astype(int) - frames.astype(int))
    assert error.mean() < 1.5 and error.reshape(49, -1).mean(axis=1).max() < 2.5


def test_mp4_starts_with_its_index_so_players_can_start_at_once(tmp_path):
    path = tmp_path / "take.mp4"
    video.write_mp4(test_frames(n=9), path)
    boxes = top_level_boxes(path)
    assert boxes[0] == "ftyp" and boxes.index("moov") < boxes.index("mdat"), boxes


def test_colours_survive_the_round_trip(tmp_path):
    # The take's colour tag and its conversion agree, so a flat orange stays orange.
    swatches = [(255, 140, 26), (38, 166, 255), (214, 77, 255), (40, 188, 40), (60, 60, 60)]
    frames = np.zeros((8, 480, 720, 3), np.uint8)
    for i, rgb in enumerate(swatches):
        frames[:, :, i * 144 : (i + 1) * 144] = rgb
    path = tmp_path / "swatches.mp4"
    video.write_mp4(frames, path)
    decoded, _ = video.read_mp4(path)
    for i, rgb in enumerate(swatches):
        got = decoded[4, 200:280, i * 144 + 40 : i * 144 + 100].reshape(-1, 3).mean(axis=0)
        np.testing.assert_allclose(got, rgb, atol=3)
    assert "smpte170m" in ffmpeg_stream_line(path)


def test_odd_sizes_and_wrong_types_are_refused_not_rescaled(tmp_path):
    with pytest.raises(ValueError, match="even width and height"):
        video.write_mp4(np.zeros((3, 481, 720, 3), np.uint8), tmp_path / "odd.mp4")
    with pytest.raises(ValueError, match="uint8 RGB"):
        video.write_mp4(np.zeros((3, 480, 720, 3), np.float32), tmp_path / "float.mp4")
    with pytest.raises(ValueError, match="uint8 RGB"):
        video.write_mp4(np.zeros((3, 480, 720), np.uint8), tmp_path / "grey.mp4")
    assert list(tmp_path.iterdir()) == []


def test_a_size_that_is_not_a_multiple_of_16_keeps_its_size(tmp_path):
    path = tmp_path / "small.mp4"
    video.write_mp4(test_frames(n=5, height=90, width=166), path)
    decoded, info = video.read_mp4(path)
    assert info["size"] == (166, 90) and decoded.shape == (5, 90, 166, 3)


def test_png_sequence_is_lossless_and_numbered_from_1(tmp_path):
    frames = test_frames()
    paths = video.write_png_sequence(frames, tmp_path / "pngs", "frame")
    assert [p.name for p in paths] == [f"frame_{j:04d}.png" for j in range(1, 50)]
    assert sorted(p.name for p in (tmp_path / "pngs").iterdir()) == [p.name for p in paths]
    for j, path in enumerate(paths):
        with Image.open(path) as img:
            assert img.mode == "RGB" and img.size == (720, 480)
            assert np.array_equal(np.asarray(img), frames[j])


def test_png_sequence_never_overwrites_a_file(tmp_path):
    (tmp_path / "shot_0002.png").write_bytes(b"the user's file")
    with pytest.raises(FileExistsError):
        video.write_png_sequence(test_frames(n=3), tmp_path, "shot")
    assert (tmp_path / "shot_0002.png").read_bytes() == b"the user's file"


def test_an_encoder_failure_raises_instead_of_leaving_a_broken_file(tmp_path):
    # ffmpeg cannot create the file (its folder does not exist): its exit status must be read.
    with pytest.raises(video.EncodeError, match="ffmpeg"):
        video.write_mp4(test_frames(n=3), tmp_path / "missing" / "take.mp4", fps=8)


def test_a_truncated_video_counts_fewer_frames(tmp_path):
    path = video.write_mp4(test_frames(n=9), tmp_path / "take.mp4", fps=8)
    assert video.count_frames(path) == 9
    data = path.read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    assert video.count_frames(tmp_path / "cut.mp4") < 9
    assert video.count_frames(tmp_path / "nothing.mp4") == 0
