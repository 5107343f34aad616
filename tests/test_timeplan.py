"""Which Blender instants become video frames and pose slots (model reference 2, "Time")."""

import pytest

from backend import timeplan


def test_video_frames_span_the_shot_evenly():
    times = timeplan.video_times(10, 58)
    assert len(times) == 49
    assert times[0] == 10 and times[-1] == 58
    assert times[1] - times[0] == pytest.approx(1.0)


def test_pose_slots_are_frame_zero_then_the_middle_of_each_vae_group():
    times = timeplan.pose_times(0, 48)  # one Blender frame per video frame
    assert len(times) == 13
    assert times[0] == 0
    assert times[1:] == [4 * k - 1.5 for k in range(1, 13)]
    assert times[-1] == 46.5


def test_pose_slots_scale_with_the_shot_range_and_offset():
    s, e = 101, 173  # 3 s at 24 fps, not starting at 1
    times = timeplan.pose_times(s, e)
    assert times[0] == s
    assert times[1] == pytest.approx(s + (e - s) * 2.5 / 48)
    assert times[12] == pytest.approx(s + (e - s) * 46.5 / 48)
    assert all(s <= t <= e for t in times)


def test_split_time_gives_frame_and_subframe():
    assert timeplan.split_time(12.25) == (12, 0.25)
    assert timeplan.split_time(-0.5) == (-1, 0.5)
    frame, sub = timeplan.split_time(7.0)
    assert (frame, sub) == (7, 0.0)


def test_slot_index_is_checked():
    with pytest.raises(ValueError, match=r"0\.\.12"):
        timeplan.video_frame_position(13)
