"""The preview engine draws what the model's camera will see: markers where the poses put them,
moving and facing the right way, in their own colours, with labels and a frame counter."""

import io
import itertools
import json
import math
import threading

import numpy as np
import pytest

from backend import job as jobfile
from backend import poses, timeplan
from backend.events import EventStream
from backend.preview import labels, motion, scene_geometry
from backend.preview.engine import PreviewEngine
from backend.progress import Cancelled, Report

# A Blender camera 10 m behind the origin, looking along +Y.
CAMERA = poses.look_at_camera((0.0, -10.0, 1.6), (0.0, 0.0, 1.6))
FACES_RIGHT = math.pi / 2  # yaw of a -Y-facing empty turned to face +X: screen right
PROMPT = "a silver humanoid robot with glowing blue eyes and thin black joints walking steadily"


def entity(name, where, yaw, *, mapping="rig", video=True, color=None):
    """An empty's track: `where(f)` and `yaw(f)` give its ground position and heading at
    shot fraction f in [0, 1]; the job holds its 13 slot poses (and 49 video poses)."""

    def at(times):
        f = (np.asarray(times) - 1.0) / 48.0
        return np.stack([poses.yaw_matrix(yaw(x), (*where(x), 0.0)) for x in f])

    ent = {
        "name": name,
        "prompt": PROMPT,
        "poses": poses.model_poses(np.stack([CAMERA] * 13), at(timeplan.pose_times(1, 49)), "NEG_Y", mapping),
    }
    if video:
        ent["video_poses"] = poses.model_poses(
            np.stack([CAMERA] * 49), at(timeplan.video_times(1, 49)), "NEG_Y", mapping
        )
    if color is not None:
        ent["color"] = color
    return ent


def make_job(entities, mapping="rig"):
    camera = {"context": poses.camera_context(np.stack([CAMERA] * 13), mapping)}
    job = jobfile.build_job(
        scene_name="Shot",
        frame_start=1,
        frame_end=49,
        scene_fps=24.0,
        location="a quiet town square at noon",
        entities=entities,
        pose_mapping=mapping,
        camera=camera,
    )
    job = jobfile.parse(jobfile.dumps(job))
    jobfile.validate(job)
    return job


def walker(mapping="rig", **kw):
    """Walks left to right across the frame, 10 m away, facing screen right."""
    return entity("Walker", lambda f: (-2.0 + 4.0 * f, 0.0), lambda f: FACES_RIGHT, mapping=mapping, **kw)


def render(job, stream=None, cancel=None):
    engine = PreviewEngine()
    try:
        return engine.render(job, Report(EventStream(stream or io.StringIO()), cancel))
    finally:
        engine.close()


def hue_mask(frame, rgb, tolerance_deg=12.0):
    """Pixels of a saturated colour with the hue of `rgb` (any brightness, as the block's faces
    are shaded); the grey ground, the pale sky and white text never qualify."""
    f = frame.astype(np.float64) / 255.0
    top, low = f.max(axis=-1), f.min(axis=-1)
    chroma = top - low
    sat = np.where(top > 0, chroma / np.maximum(top, 1e-9), 0.0)

    def hue(r, g, b, top, chroma):
        c = np.maximum(chroma, 1e-9)
        h = np.where(top == r, ((g - b) / c) % 6, np.where(top == g, (b - r) / c + 2, (r - g) / c + 4))
        return h * 60.0

    h = hue(f[..., 0], f[..., 1], f[..., 2], top, chroma)
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    want = float(hue(c[0], c[1], c[2], c.max(), c.max() - c.min()))
    diff = np.abs((h - want + 180.0) % 360.0 - 180.0)
    return (sat > 0.5) & (top > 0.25) & (diff < tolerance_deg)


def centroid(mask):
    ys, xs = np.nonzero(mask)
    assert len(xs) > 0, "the colour is nowhere in the frame"
    return np.array([xs.mean(), ys.mean()])


def apparent_pixel(job, k, j):
    """Where backend.poses says entity k's pivot appears in video frame j."""
    pose = np.asarray(job["entities"][k]["video_poses"][j])
    context = np.asarray(job["camera"]["context"][0])
    return poses.project(poses.apparent_position(pose, context, job["pose_mapping"]))


ORANGE, AZURE, VIOLET = motion.PALETTE


def test_a_render_is_49_frames_of_720_by_480_with_a_progress_event_per_frame():
    stream = io.StringIO()
    frames = render(make_job([walker()]), stream)
    assert frames.dtype == np.uint8 and frames.shape == (49, 480, 720, 3)
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    steps = [e["step"] for e in events if e["event"] == "progress" and e["stage"] == "rendering"]
    assert steps == list(range(1, 50))
    assert frames.std() > 10  # a picture, not a blank


@pytest.mark.parametrize("j", [0, 24, 48])
def test_the_marker_is_drawn_in_its_colour_where_the_pose_projects(j):
    job = make_job([walker()])
    frame = render(job)[j]
    expected = apparent_pixel(job, 0, j)
    found = centroid(hue_mask(frame, ORANGE))
    # In rig mode the apparent pivot is at hip height, the middle of the upright marker; the
    # footprint and the arrow pull the centroid a little down and forward.
    assert abs(found[0] - expected[0]) < 20, (found, expected)
    assert abs(found[1] - expected[1]) < 25, (found, expected)


def test_exact_mode_stands_the_marker_on_the_recorded_position():
    job = make_job([walker("exact")], mapping="exact")
    frame = render(job)[24]
    pose = np.asarray(job["entities"][0]["video_poses"][24])
    ground_point = poses.project(poses.split_pose(pose)[1])  # the empty sits on the ground
    mask = hue_mask(frame, ORANGE)
    ys, xs = np.nonzero(mask)
    assert abs(xs.mean() - ground_point[0]) < 20
    # The block rises from that point: its colour spans from there up by ~1.7 m at 10 m.
    assert ys.max() > ground_point[1] > ys.min()
    assert ground_point[1] - ys.min() > 0.8 * poses.MODEL_FOCAL_PX * 1.7 / 10.0


def test_a_walker_moves_the_way_it_walks():
    job = make_job([walker()])
    frames = render(job)
    xs = [centroid(hue_mask(frames[j], ORANGE))[0] for j in (0, 12, 24, 36, 48)]
    assert all(b > a for a, b in itertools.pairwise(xs)), xs
    # 4 m at 10 m with the model's lens is about 420 px.
    travelled = apparent_pixel(job, 0, 48)[0] - apparent_pixel(job, 0, 0)[0]
    assert travelled > 350 and abs((xs[-1] - xs[0]) - travelled) < 25


def arrow_reach(frame, job, k, j, color, heading_sign):
    """Colour pixels around where the ground arrow's tip should be, and around the mirror point."""
    pose = np.asarray(job["entities"][k]["video_poses"][j])
    context = np.asarray(job["camera"]["context"][0])
    mark = scene_geometry.marker(pose, context, job["pose_mapping"])
    reach = 0.9 * scene_geometry.ARROW_TIP
    mask = hue_mask(frame, color)

    def around(point):
        x, y = poses.project(point)
        return int(mask[int(y) - 5 : int(y) + 6, int(x) - 5 : int(x) + 6].sum())

    ahead = around(mark.foot + heading_sign * reach * mark.heading)
    behind = around(mark.foot - heading_sign * reach * mark.heading)
    return ahead, behind, mark


def test_the_facing_arrow_points_where_the_entity_faces():
    job = make_job([walker()])
    frame = render(job)[24]
    ahead, behind, mark = arrow_reach(frame, job, 0, 24, ORANGE, +1)
    tip = poses.project(mark.foot + scene_geometry.ARROW_TIP * mark.heading)
    centre = centroid(hue_mask(frame, ORANGE))
    assert tip[0] > centre[0] + 40  # facing screen right: the arrow tip is right of the marker
    assert ahead > 20 and behind == 0


def test_an_entity_turning_in_place_turns_its_arrow_the_short_way_round():
    # Faces screen left, then the camera, then screen right; the job has only the 13 slots,
    # so the 49 frames come from the engine's own interpolation.
    turner = entity("Turner", lambda f: (0.0, 2.0), lambda f: -FACES_RIGHT + math.pi * f, video=False)
    job = make_job([turner])
    frames = render(job)
    shot = motion.shot_motion(job)
    context = shot.context[0]
    for j, screen_direction in ((0, -1), (24, 0), (48, +1)):
        mark = scene_geometry.marker(shot.entities[0].poses[j], context, "rig")
        tip = poses.project(mark.foot + scene_geometry.ARROW_TIP * mark.heading)
        foot = poses.project(mark.foot)
        if screen_direction == 0:
            assert tip[1] > foot[1] + 10 and abs(tip[0] - foot[0]) < 5  # towards the camera: down
        else:
            assert (tip[0] - foot[0]) * screen_direction > 100
        # ... and that is where the arrow is drawn (just short of its point, where it is wide).
        x, y = poses.project(mark.foot + 0.85 * scene_geometry.ARROW_TIP * mark.heading).astype(int)
        assert hue_mask(frames[j], ORANGE)[y - 4 : y + 5, x - 4 : x + 5].sum() > 10, j


def test_slot_poses_are_interpolated_like_the_video_poses_the_addon_sends():
    def where(f):
        return (-3.0 + 5.0 * f, 1.0 + 2.0 * f)

    def yaw(f):
        return 0.3 + 2.0 * f

    with_video = entity("A", where, yaw)
    slots_only = entity("A", where, yaw, video=False)
    interpolated = motion.shot_motion(make_job([slots_only])).entities[0].poses
    reference = np.asarray(with_video["video_poses"])
    # Linear motion and a steady turn are reproduced exactly between slots; the last two video
    # frames lie after slot 12 (frame 46.5) and hold its pose.
    np.testing.assert_allclose(interpolated[:47], reference[:47], atol=1e-9)
    np.testing.assert_allclose(interpolated[47:], np.asarray(slots_only["poses"])[[12, 12]], atol=1e-9)
    assert np.abs(render(make_job([with_video])).astype(int) - render(make_job([slots_only])).astype(int)).mean() < 0.3


def test_headings_are_interpolated_by_the_shortest_angle():
    # Slots alternate between yaw 170 and -170 degrees: in between it faces 180, never 0.
    yaws = np.radians([170.0 if k % 2 == 0 else -170.0 for k in range(13)])
    slot_matrices = np.stack([poses.yaw_matrix(y, (0.0, 0.0, 0.0)) for y in yaws])
    slot_poses = poses.model_poses(np.stack([CAMERA] * 13), slot_matrices, "NEG_Y", "exact")
    video = motion.interpolate_poses(slot_poses)
    # Video frame 1 lies 40% of the way from slot 0 (frame 0) to slot 1 (frame 2.5): yaw 178,
    # facing away from the camera (along its view axis), not 10 degrees off facing it.
    forward = video[1, 6:9]
    assert forward @ [0.0, 0.0, 1.0] > 0.99


def test_a_cancel_stops_the_render_at_a_frame_boundary():
    cancel = threading.Event()

    class CancelAfterTenFrames(io.StringIO):
        def write(self, text):
            event = json.loads(text)
            if event.get("event") == "progress" and event["step"] == 10:
                cancel.set()
            return super().write(text)

    stream = CancelAfterTenFrames()
    with pytest.raises(Cancelled):
        render(make_job([walker()]), stream, cancel)
    steps = [json.loads(line).get("step") for line in stream.getvalue().splitlines()]
    assert [s for s in steps if s is not None] == list(range(1, 11))


def test_nearer_entities_cover_farther_ones():
    near = entity("Near", lambda f: (0.0, 0.0), lambda f: 0.0)
    far = entity("Far", lambda f: (0.0, 5.0), lambda f: 0.0)
    for order in ([near, far], [far, near]):
        job = make_job(order)
        frame = render(job)[0]
        k = order.index(near)
        x, y = apparent_pixel(job, k, 0).astype(int)
        near_color = motion.PALETTE[k]
        assert hue_mask(frame[y - 3 : y + 4, x - 3 : x + 4], near_color).all()
        assert hue_mask(frame, motion.PALETTE[1 - k]).sum() > 200  # the far one still shows above


def test_an_entity_out_of_view_gets_a_pointer_at_the_edge_towards_it():
    right = entity("Right", lambda f: (12.0, 0.0), lambda f: 0.0)
    frame = render(make_job([right]))[0]
    xs = np.nonzero(hue_mask(frame, ORANGE))[1]
    assert len(xs) > 40 and xs.max() > 690 and xs.min() > 360


def test_an_entity_behind_the_camera_does_not_wrap_around_into_view():
    # Just behind the lens and to the left: nothing of its marker may appear on the right,
    # which is where an unclipped projection of points behind the camera would land.
    behind = entity("Behind", lambda f: (-0.6, -10.3), lambda f: 0.0)
    straddling = entity("Close", lambda f: (-0.4, -9.9), lambda f: FACES_RIGHT)
    frame = render(make_job([behind, straddling]))[0]
    assert hue_mask(frame, ORANGE)[:, 360:].sum() == 0
    assert hue_mask(frame, AZURE)[:, 360:].sum() == 0
    assert hue_mask(frame, ORANGE)[:, :60].sum() > 20  # its pointer, on the left edge


def test_the_job_colour_is_used_and_converted_from_linear():
    green = [0.0, 0.5, 0.0]  # linear; 50% linear is 188 of 255 in sRGB
    assert motion.srgb8(green) == (0, 188, 0)
    frame = render(make_job([walker(color=green)]))[24]
    assert hue_mask(frame, (0, 188, 0)).sum() > 2000
    assert hue_mask(frame, ORANGE).sum() == 0


def test_the_label_sits_above_its_marker_and_inside_the_frame():
    job_a = make_job([walker()])
    job_b = make_job([entity("Someone else entirely", lambda f: (-2.0 + 4.0 * f, 0.0), lambda f: FACES_RIGHT)])
    a, b = render(job_a)[24], render(job_b)[24]
    ys, xs = np.nonzero(np.any(a != b, axis=-1))
    marker = centroid(hue_mask(a, ORANGE))
    pose, context = np.asarray(job_a["entities"][0]["video_poses"][24]), np.asarray(job_a["camera"]["context"][0])
    head = poses.project(scene_geometry.marker(pose, context, "rig").head)
    assert ys.max() <= head[1]  # the name changed only text above the marker
    assert abs((xs.min() + xs.max()) / 2 - marker[0]) < 40
    assert xs.min() >= 0 and xs.max() < 720 and ys.min() >= 0


def test_only_the_frame_counter_changes_in_a_still_shot():
    still = entity("Still", lambda f: (1.0, 2.0), lambda f: 0.5)
    frames = render(make_job([still]))
    ys, xs = np.nonzero(np.any(frames[3] != frames[40], axis=-1))
    assert len(ys) > 0 and ys.max() < 40 and xs.max() < 400


def test_prompt_excerpt_keeps_the_first_six_words():
    assert labels.prompt_excerpt(PROMPT) == "a silver humanoid robot with glowing …"
    assert labels.prompt_excerpt("a red fox") == "a red fox"


def test_describe_names_the_engine_its_libraries_and_font():
    engine = PreviewEngine()
    info = engine.describe()
    assert info["name"] == "preview" and engine.name == "preview"
    assert set(info["versions"]) >= {"numpy", "pillow", "imageio_ffmpeg"}
    assert "Pillow" in info["font"]
    json.dumps(info)


def test_a_ground_patch_starting_behind_the_camera_is_cut_at_the_near_plane_not_dropped():
    # 1 m wide, from 2 m behind the lens to 12 m ahead, on the ground 1.6 m below it: in the
    # picture it runs from the bottom edge up to its far end, and all of it is finite.
    ground = scene_geometry.ground_from_context(np.array([0.0, 1.0, 0.0, 1.6]))
    corners = [(-0.5, -2.0), (0.5, -2.0), (0.5, 12.0), (-0.5, 12.0)]
    patch = np.array([ground.origin + x * ground.right + z * ground.forward for x, z in corners])
    pixels = scene_geometry.project_polygon(patch, (0.0, 0.0, 720.0, 480.0))
    assert len(pixels) >= 3 and np.all(np.isfinite(pixels))
    assert pixels[:, 1].max() == pytest.approx(480.0)  # reaches the bottom of the frame
    far_end = poses.project(patch[2])
    assert pixels[:, 1].min() == pytest.approx(far_end[1])


def block_top(frame, rgb, x):
    """The top pixel row of a colour's block standing at column x (rows where the colour is at
    least 6 px wide there; a label's colour swatch is narrower, and off to the side)."""
    x = round(float(x))
    rows = np.nonzero(hue_mask(frame[:, x - 8 : x + 9], rgb).sum(axis=1) >= 6)[0]
    assert len(rows) > 0, "the colour is nowhere in the frame"
    return int(rows.min())


def test_each_entity_stands_as_tall_as_its_height():
    # Side by side 10 m from the camera, where a metre is about 106 px: a dog, a person (the
    # default height), a mech.
    dog = entity("Dog", lambda f: (-2.5, 0.0), lambda f: 0.0)
    dog["height"] = 0.6
    person = entity("Person", lambda f: (0.0, 0.0), lambda f: 0.0)
    mech = entity("Mech", lambda f: (2.5, 0.0), lambda f: 0.0)
    mech["height"] = 2.2
    job = make_job([dog, person, mech])
    frame = render(job)[0]
    tops = [block_top(frame, rgb, apparent_pixel(job, k, 0)[0]) for k, rgb in enumerate(motion.PALETTE)]
    per_metre = poses.MODEL_FOCAL_PX / 10.0
    assert (tops[0] - tops[1]) / per_metre == pytest.approx(1.7 - 0.6, abs=0.1), tops
    assert (tops[1] - tops[2]) / per_metre == pytest.approx(2.2 - 1.7, abs=0.1), tops
    # Without a height the marker is exactly the default one (old jobs render as before).
    person["height"] = scene_geometry.BODY_HEIGHT
    assert np.array_equal(frame, render(make_job([dog, person, mech]))[0])


def test_labels_of_close_entities_neither_cover_nor_cross_each_other():
    """Three entities a metre or less apart, passing each other: in every frame no label covers
    another label or the spot another label points to, and no leader line crosses a label."""
    horse = entity("Horse", lambda f: (-2.0 + 4.0 * f, 0.0), lambda f: FACES_RIGHT)
    dog = entity("Dog", lambda f: (-1.5 + 3.0 * f, 0.5), lambda f: FACES_RIGHT)
    robot = entity("Robot", lambda f: (2.0 - 4.0 * f, 1.0), lambda f: -FACES_RIGHT)
    shot = motion.shot_motion(make_job([horse, dog, robot]))
    engine = PreviewEngine()
    try:
        for j in range(timeplan.VIDEO_FRAMES):
            _, layout = engine.draw_frame(shot, j)
            assert len(layout.anchored) == 3, f"frame {j}: every entity is in view and labelled"
            panels = layout.taken
            for a, b in itertools.combinations(panels, 2):
                assert not labels._overlaps(a, b), f"frame {j}: labels {a} and {b} overlap"
            for line in layout.leaders:
                own = [r for r, _ in layout.anchored if labels.leader(r, line[1]) == line]
                others = [r for r in panels if r not in own]
                assert not any(labels.crosses(line, r) for r in others), f"frame {j}: a leader crosses a label"
            for (rect, _), (_, point) in itertools.permutations(layout.anchored, 2):
                x, y = point
                inside = rect[0] <= x <= rect[2] and rect[1] <= y <= rect[3]
                assert not inside, f"frame {j}: a label hides where another entity's label points"
    finally:
        engine.close()
