"""Take names and the atomic commit: earlier takes are never touched, failures leave nothing."""

import json

import pytest

from backend.errors import UserError
from backend.takes import TakeCommit, next_take_name, prepare_folder, safe_stem


def stage(take: TakeCommit, text: bytes = b"video") -> object:
    video = take.temp_file(".mp4")
    video.write_bytes(text)
    return video


def sidecar(paths):
    return json.dumps({"name": paths.name})


def test_take_numbers_continue_after_the_highest_existing_take(tmp_path):
    assert next_take_name(tmp_path, "Shot") == "Shot_take_001"
    (tmp_path / "Shot_take_001.mp4").write_bytes(b"1")
    (tmp_path / "Shot_take_007_png").mkdir()
    (tmp_path / "Other_take_050.mp4").write_bytes(b"x")
    (tmp_path / "Shot_take_notanumber.mp4").write_bytes(b"x")
    assert next_take_name(tmp_path, "Shot") == "Shot_take_008"


def test_scene_names_become_safe_file_names():
    assert safe_stem("My Shot: take/2") == "My_Shot_take_2"
    assert safe_stem("../..") == "shot"
    assert safe_stem("Écurie") == "Ecurie"


def test_publish_moves_on_when_another_process_takes_the_name(tmp_path):
    with TakeCommit(tmp_path, "Shot") as take:
        video = stage(take)
        # Another generation publishes take 001 between our choice and our commit.
        (tmp_path / "Shot_take_001.mp4").write_bytes(b"theirs")
        paths = take.publish(video, sidecar)
    assert paths.name == "Shot_take_002"
    assert (tmp_path / "Shot_take_001.mp4").read_bytes() == b"theirs"
    assert (tmp_path / "Shot_take_002.mp4").read_bytes() == b"video"
    assert json.loads((tmp_path / "Shot_take_002.json").read_text()) == {"name": "Shot_take_002"}
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "Shot_take_001.mp4",
        "Shot_take_002.json",
        "Shot_take_002.mp4",
    ]


def test_an_explicit_name_that_exists_is_refused_up_front(tmp_path):
    (tmp_path / "hero.json").write_text("{}")
    with pytest.raises(UserError, match="already exists"):
        TakeCommit(tmp_path, "Shot", "hero")


def test_a_failure_while_publishing_leaves_nothing(tmp_path):
    def broken_sidecar(paths):
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError), TakeCommit(tmp_path, "Shot") as take:
        take.publish(stage(take), broken_sidecar, take.temp_dir())
    assert list(tmp_path.iterdir()) == []


def test_png_folders_are_published_with_the_take(tmp_path):
    with TakeCommit(tmp_path, "Shot") as take:
        pngs = take.temp_dir()
        (pngs / "frame_0001.png").write_bytes(b"png")
        paths = take.publish(stage(take), sidecar, pngs)
    assert (paths.png_dir / "frame_0001.png").read_bytes() == b"png"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


def test_prepare_folder_creates_missing_folders_and_reports_it(tmp_path):
    folder, created = prepare_folder(tmp_path / "a" / "b")
    assert created and folder.is_dir()
    folder, created = prepare_folder(tmp_path / "a" / "b")
    assert not created
