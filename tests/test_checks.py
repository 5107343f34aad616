"""The in-distribution checks a director sees under the entities and in the overlay."""

import numpy as np
from shots import CAMERA, make_job

from backend import checks, poses


def findings(job, **kw):
    context = np.asarray(job["camera"]["context"])
    return checks.check_shot(
        [e["name"] for e in job["entities"]],
        [np.asarray(e["poses"]) for e in job["entities"]],
        context,
        job["pose_mapping"],
        **kw,
    )


def codes(found):
    return sorted({f.code for f in found})


def test_a_walk_across_the_middle_distance_is_clean():
    for mapping in ("rig", "exact"):
        assert findings(make_job([((-2, 0), (2, 0))], mapping=mapping)) == []


def test_too_close_and_too_far_name_the_entity_and_the_slots():
    near = findings(make_job([((0, -7.6), (0.5, -7.6))]))
    assert codes(near) == ["too_close"]
    assert "Entity1" in near[0].message and near[0].entity == 0 and len(near[0].slots) == 13
    far = findings(make_job([((0, 0), (0, 6))]))
    assert codes(far) == ["too_far"]
    assert far[0].slots[0] > 0 and far[0].slots[-1] == 12  # only the later slots are too far


def test_leaving_the_frame_is_reported_where_it_happens():
    found = findings(make_job([((0, 0), (8, 0))], frame_end=200))
    assert codes(found) == ["out_of_view"]
    assert found[0].slots[0] > 3 and found[0].slots[-1] == 12


def test_walking_behind_the_camera_is_out_of_view():
    found = findings(make_job([((0, -9), (0, -13))], frame_end=200))
    assert "out_of_view" in codes(found)


def test_too_fast_counts_the_path_on_the_models_clock_not_the_shots_length():
    # The model takes every shot as 2.8 s of motion (it trained on 2.8 s clips at 1-3 m/s): a 9 m
    # walk is 3.2 m/s to it however long the shot lasts, and 6 m is 2.1 m/s even in one second.
    for frame_end in (73, 241):  # 3 s and 10 s at 24 fps
        fast = findings(make_job([((-4.5, 0), (4.5, 0))], frame_end=frame_end, fps=24))
        (too_fast,) = [f for f in fast if f.code == "too_fast"]  # it also starts below the frame
        assert "3.2 m/s" in too_fast.message and "shorten the path" in too_fast.message
        assert too_fast.slots == list(range(1, 13))
    assert findings(make_job([((-3, 0), (3, 0))], frame_end=25, fps=24)) == []


def test_speed_is_checked_between_slots_where_it_happens():
    # Standing still, then 1 m between the last two pose slots (4 video frames of 48): too fast there only.
    job = make_job([((0, 0), (0, 0))])
    poses_ = np.asarray(job["entities"][0]["poses"])
    poses_[12, 9] += 1.0  # 1 m sideways in the camera frame between slots 11 and 12 (0.233 s of model time)
    found = checks.check_entity(0, "Sprinter", poses_, np.asarray(job["camera"]["context"]), "rig")
    assert codes(found) == ["too_fast"] and found[0].slots == [12]
    assert "4.3 m/s" in found[0].message


def test_pitched_or_rolled_entity_is_flagged_from_world_matrices():
    tilt = poses.tilt_degrees(np.stack([poses.yaw_matrix(0.3, (0, 0, 0)) @ np.diag([1, 1, 1, 1])] * 13))
    assert np.allclose(tilt, 0)
    leaning = np.eye(4)
    leaning[1:3, 1:3] = [[np.cos(0.5), -np.sin(0.5)], [np.sin(0.5), np.cos(0.5)]]
    tilt = poses.tilt_degrees(np.stack([leaning] * 13))
    job = make_job()
    found = findings(job, tilts=[tilt])
    assert codes(found) == ["tilted"]
    assert "28 degrees" in found[0].message or "29 degrees" in found[0].message


def test_exact_mode_reads_tilt_from_the_poses():
    job = make_job(mapping="exact")
    leaning = poses.yaw_matrix(0.0, (0, 0, 0))
    leaning[:3, :3] = leaning[:3, :3] @ np.array(
        [[1, 0, 0], [0, np.cos(0.4), -np.sin(0.4)], [0, np.sin(0.4), np.cos(0.4)]]
    )
    pose = poses.model_poses(np.stack([CAMERA] * 13), np.stack([leaning] * 13), mapping="exact")
    found = checks.check_entity(0, "Leaner", pose, np.asarray(job["camera"]["context"]), "exact")
    assert "tilted" in codes(found)


def test_entity_count_limits():
    assert codes(checks.check_count(0)) == ["no_entities"]
    assert codes(checks.check_count(4)) == ["too_many_entities"]
    assert checks.check_count(4)[0].severity == "error"
    assert checks.check_count(3) == []


def test_a_moving_camera_is_flagged():
    static = np.stack([CAMERA] * 13)
    assert checks.check_camera(static) == []
    dolly = static.copy()
    dolly[:, 0, 3] += np.linspace(0, 2, 13)
    assert codes(checks.check_camera(dolly)) == ["camera_moves"]


def test_heading_is_zero_facing_away_and_180_facing_the_camera():
    away = poses.model_poses(CAMERA, poses.yaw_matrix(np.pi, (0, 0, 0)))
    towards = poses.model_poses(CAMERA, np.eye(4))
    assert abs(checks.heading_degrees(away)) < 1e-6
    assert abs(abs(checks.heading_degrees(towards)) - 180) < 1e-6


def _eased_job(length: float, ease) -> tuple[np.ndarray, np.ndarray]:
    """Poses (rig) of an entity crossing `length` m in front of the camera, its progress eased by `ease`."""
    times = np.linspace(0.0, 1.0, 49)[[0, *[4 * k - 2 for k in range(1, 13)]]]  # close to the slots' instants
    positions = [poses.yaw_matrix(0.0, (-length / 2 + length * ease(t), 0.0, 0.0)) for t in times]
    cameras = np.stack([CAMERA] * 13)
    return poses.model_poses(cameras, np.stack(positions)), poses.camera_context(cameras)


def test_an_entity_that_does_not_move_gets_an_info_finding():
    # A forgotten keyframe: the empty stands where it was put.
    found = findings(make_job([((0, 0), (0, 0))]))
    assert codes(found) == ["still"]
    assert found[0].severity == "info" and found[0].entity == 0 and "does not move" in found[0].message
    # A few centimetres of drift is still standing; turning on the spot or walking is moving.
    assert codes(findings(make_job([((0, 0), (0.03, 0))]))) == ["still"]
    assert findings(make_job([((0, 0), (0.3, 0))])) == []
    job = make_job([((0, 0), (0, 0))])
    turning = [poses.yaw_matrix(a, (0, 0, 0)) for a in np.linspace(0, 0.5, 13)]
    pose = poses.model_poses(np.stack([CAMERA] * 13), np.stack(turning))
    assert checks.check_entity(0, "Turner", pose, np.asarray(job["camera"]["context"]), "rig") == []


def test_easing_that_rushes_the_middle_of_a_move_is_named_with_its_fix():
    def smooth(t):
        return 3 * t**2 - 2 * t**3  # what Bezier keys with auto-clamped handles do between two keys

    pose, context = _eased_job(6.0, smooth)
    (eased,) = checks.check_entity(0, "Horse", pose, context, "rig", eased=True)
    assert eased.code == "too_fast" and eased.fix == checks.FIX_LINEAR_KEYS
    assert "Bezier easing" in eased.message and "Linear" in eased.message
    assert "2.2 m/s" in eased.message, "the even pace of the same path is given"
    # Without knowing the keys (a job file in the backend): the pace is uneven, no fix to offer.
    (uneven,) = checks.check_entity(0, "Horse", pose, context, "rig")
    assert uneven.fix == "" and "uneven" in uneven.message and "Bezier" not in uneven.message
    # The same path at an even pace is inside what the model knows.
    linear, context = _eased_job(6.0, lambda t: t)
    assert checks.check_entity(0, "Horse", linear, context, "rig", eased=False) == []
    # A path too long even at an even pace: shortening it is the fix, easing or not.
    (long,) = [
        f for f in checks.check_entity(0, "Horse", *_eased_job(10.0, smooth), "rig", eased=True) if f.code == "too_fast"
    ]
    assert long.fix == "" and "shorten the path" in long.message


def test_a_high_camera_pitched_like_the_rig_misses_what_the_model_frames():
    entity = np.stack([poses.yaw_matrix(0.0, (x, 0.0, 0.0)) for x in np.linspace(-1, 1, 13)])
    high = poses.look_at_camera((0.0, -10.0, 8.0), (0.0, 0.0, 8.0 - 10.0 * 0.0935))  # the rig's pitch, 8 m up
    (found,) = checks.check_camera_view(0, "Walker", np.stack([high] * 13), entity)
    assert found.code == "camera_view" and found.severity == "info" and len(found.slots) == 13
    assert "below the frame" in found.message and "8.0 m up" in found.message and "lower the camera" in found.message
    # At eye height the same pitch frames it; so does a high camera looking down at the action.
    eye = poses.look_at_camera((0.0, -10.0, 1.6), (0.0, 0.0, 1.6 - 10.0 * 0.0935))
    assert checks.check_camera_view(0, "Walker", np.stack([eye] * 13), entity) == []
    down = poses.look_at_camera((0.0, -10.0, 8.0), (0.0, 0.0, 0.0))
    assert checks.check_camera_view(0, "Walker", np.stack([down] * 13), entity) == []
    # Slots the model does not frame either are the out-of-view warning's, not this one's.
    framed = np.arange(13) < 5
    (found,) = checks.check_camera_view(0, "Walker", np.stack([high] * 13), entity, framed_by_model=framed)
    assert found.slots == [0, 1, 2, 3, 4]
