"""`python -m backend contact-sheet`: a set's takes side by side in one video, each cell showing
its own take under a label saying what differs, written whole or not at all, never over a file."""

import json

import numpy as np
from cli import backend, write_job
from PIL import Image
from shots import make_job

from backend import contact_sheet, video

FRAMES, FPS, WIDTH, HEIGHT = 49, 8, 720, 480


def synthetic_frames(k: int, frames: int = FRAMES) -> np.ndarray:
    """A take no other take looks like: its own colours, and a bright block moving at its own speed."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    base = np.stack(
        [(x * 255 // WIDTH + 60 * k) % 256, (y * 255 // HEIGHT + 90 * k) % 256, np.full_like(x, 40 * k % 256)], -1
    ).astype(np.uint8)
    out = np.repeat(base[None], frames, axis=0)
    for j in range(frames):
        left = (j * (k + 2) * 7) % (WIDTH - 120)
        out[j, 200:320, left : left + 120] = (255, 255, 255)
    return out


def write_take(folder, name, frames, **sampling):
    folder.mkdir(parents=True, exist_ok=True)
    video.write_mp4(frames, folder / f"{name}.mp4", fps=FPS)
    sidecar = {
        "format": "trajmaster-take",
        "version": 1,
        "name": name,
        "video": f"{name}.mp4",
        "frames": len(frames),
        "fps": FPS,
        "job": {"engine": "cogvideox", "sampling": {"seed": 7, "lora_scale": 0.6, "steps": 50, **sampling}},
    }
    (folder / f"{name}.json").write_text(json.dumps(sidecar), encoding="utf-8")
    return folder / f"{name}.mp4"


def shrink(frames: np.ndarray, width: int, height: int) -> np.ndarray:
    if frames.shape[1:3] == (height, width):
        return frames.astype(np.float32)
    return np.stack(
        [np.asarray(Image.fromarray(f).resize((width, height), Image.Resampling.BOX)) for f in frames]
    ).astype(np.float32)


def cell(sheet: np.ndarray, result: dict, index: int) -> np.ndarray:
    x, y = result["cells"][index]["x"], result["cells"][index]["y"]
    return sheet[:, y : y + result["cell_height"], x : x + result["cell_width"]].astype(np.float32)


def assert_cells_show_their_takes(sheet, result, sources):
    """Each cell against every take, outside the label: its own take is close (two H.264 passes
    and a resize apart), every other take is far."""
    w, h = result["cell_width"], result["cell_height"]
    expected = [shrink(video.read_mp4(s)[0], w, h) for s in sources]
    for k, info in enumerate(result["cells"]):
        got = cell(sheet, result, k)
        lx, ly, lw, lh = contact_sheet.label_box(info["label"], w, h)
        mask = np.ones((h, w), bool)
        mask[ly : ly + lh, lx : lx + lw] = False
        errors = [float(np.abs(got - e)[:, mask].mean()) for e in expected]
        assert errors[k] < 3.0, (k, errors)
        assert min(e for i, e in enumerate(errors) if i != k) > 20.0, (k, errors)
        # The label is drawn over the take's top-right corner.
        assert float(np.abs(got - expected[k])[:, ~mask].mean()) > 20.0


def test_layouts_keep_full_size_up_to_four_takes_and_fit_1440_by_960():
    expected = {2: (2, 1, 720), 3: (2, 2, 720), 4: (2, 2, 720), 5: (3, 2, 480), 6: (3, 2, 480), 7: (3, 3, 480)}
    expected[8] = (3, 3, 480)
    for n, (columns, rows, cell_width) in expected.items():
        grid = contact_sheet.layout(n, (WIDTH, HEIGHT))
        assert (grid.columns, grid.rows, grid.cell_width) == (columns, rows, cell_width), n
        assert grid.cell_width * 2 == grid.cell_height * 3
        assert grid.columns * grid.cell_width <= 1440 and grid.rows * grid.cell_height <= 960
        assert grid.width % 2 == 0 and grid.height % 2 == 0
    assert contact_sheet.layout(4, (WIDTH, HEIGHT), columns=4).cell_width == 360


def test_four_takes_in_a_grid_at_full_size_each_cell_showing_its_take(tmp_path):
    takes = [
        write_take(tmp_path / "takes", f"Shot_take_{k + 1:03d}", synthetic_frames(k), seed=100 + k) for k in range(4)
    ]
    run = backend("contact-sheet", *takes, "--out", tmp_path / "sheets" / "set.mp4")
    assert run.code == 0 and run.stray_lines == 0, run.stderr
    result = run.last("result")
    sheet, info = video.read_mp4(result["video"])
    assert sheet.shape == (FRAMES, 964, 1444, 3) and (result["width"], result["height"]) == (1444, 964)
    assert info["fps"] == FPS and result["frames"] == FRAMES and info["codec"] == "h264"
    assert [c["label"] for c in result["cells"]] == ["seed 100", "seed 101", "seed 102", "seed 103"]
    assert [c["name"] for c in result["cells"]] == [t.stem for t in takes]
    assert_cells_show_their_takes(sheet, result, takes)
    # The gutter between cells is neither take.
    assert np.abs(sheet[:, :, 720:724].astype(int) - contact_sheet.GUTTER_COLOUR).mean() < 3
    assert sorted(p.name for p in (tmp_path / "sheets").iterdir()) == ["set.mp4"]  # no temporary left


def test_six_takes_are_shrunk_into_a_3_by_2_grid_with_the_given_labels(tmp_path):
    takes = [write_take(tmp_path, f"t{k}", synthetic_frames(k), lora_scale=0.2 + 0.1 * k) for k in range(6)]
    labels = [f"take {k}" for k in range(6)]
    run = backend("contact-sheet", *takes, "--out", tmp_path / "six.mp4", "--labels", *labels)
    assert run.code == 0, run.stderr
    result = run.last("result")
    assert (result["columns"], result["rows"], result["cell_width"], result["cell_height"]) == (3, 2, 480, 320)
    assert [c["label"] for c in result["cells"]] == labels
    sheet, _ = video.read_mp4(result["video"])
    assert sheet.shape == (FRAMES, 644, 1448, 3)
    assert_cells_show_their_takes(sheet, result, takes)
    # Without --labels: what differs, from the sidecars.
    auto = contact_sheet.labels_for([contact_sheet.read_take(t) for t in takes[:3]])
    assert auto == ["LoRA 0.2", "LoRA 0.3", "LoRA 0.4"]


def test_real_preview_takes_are_labelled_by_what_differs(tmp_path):
    videos = []
    for seed, path in ((11, ((-2.0, 0.0), (2.0, 0.0))), (12, ((2.0, 2.0), (-2.0, -1.0)))):
        job = write_job(make_job([path], sampling={"seed": seed}), tmp_path / f"job{seed}.json")
        videos.append(backend("generate", job, "--out", tmp_path / "takes").last("result")["video"])
    run = backend("contact-sheet", *videos, "--out", tmp_path / "pair.mp4")
    assert run.code == 0, run.stderr
    result = run.last("result")
    assert [c["label"] for c in result["cells"]] == ["seed 11", "seed 12"]
    assert (result["columns"], result["rows"], result["width"], result["height"]) == (2, 1, 1444, 480)
    sheet, _ = video.read_mp4(result["video"])
    w, h = result["cell_width"], result["cell_height"]
    for k, source in enumerate(videos):
        frames = shrink(video.read_mp4(source)[0], w, h)
        lx, ly, lw, lh = contact_sheet.label_box(result["cells"][k]["label"], w, h)
        mask = np.ones((h, w), bool)
        mask[ly : ly + lh, lx : lx + lw] = False
        own = float(np.abs(cell(sheet, result, k) - frames)[:, mask].mean())
        other = float(np.abs(cell(sheet, result, 1 - k) - frames)[:, mask].mean())
        assert own < 2.0 and other > own + 1.0, (k, own, other)


def test_bad_input_is_one_sentence_and_writes_nothing(tmp_path):
    good = [write_take(tmp_path, f"t{k}", synthetic_frames(k)) for k in range(2)]
    short = write_take(tmp_path, "short", synthetic_frames(2, frames=30))
    loose = tmp_path / "loose.mp4"
    video.write_mp4(synthetic_frames(3), loose, fps=FPS)
    existing = tmp_path / "existing.mp4"
    existing.write_bytes(b"an earlier sheet")
    before = sorted(p.name for p in tmp_path.iterdir())
    cases = [
        ([good[0], tmp_path / "missing.mp4"], "out.mp4", [], "does not exist"),
        ([good[0], loose], "out.mp4", [], "is not a take"),
        ([good[0], short], "out.mp4", [], "differ in length"),
        ([good[0]], "out.mp4", [], "2-8 takes"),
        ([good[0]] * 9, "out.mp4", [], "2-8 takes"),
        (good, "out.mp4", ["--labels", "only one"], "one label per take"),
        (good, "out.mp4", ["--columns", "3"], "--columns must be 1-2"),
        (good, "existing.mp4", [], "already exists"),
        (good, "sheet.mov", [], "MP4"),
    ]
    for inputs, out, extra, fragment in cases:
        run = backend("contact-sheet", *inputs, "--out", tmp_path / out, *extra)
        assert run.code == 2, (fragment, run.stderr)
        error = run.last("error")
        assert error["code"] in ("bad_take", "bad_output") and fragment in error["message"], error["message"]
        assert "Traceback" not in run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert existing.read_bytes() == b"an earlier sheet"


def test_the_help_lists_the_commands():
    run = backend("--help")
    assert "contact-sheet" in run.stdout and "expand" in run.stdout
