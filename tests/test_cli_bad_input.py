"""Every bad input gets one clear message, exit code 2, no traceback, and nothing left on disk."""

import pytest
from cli import backend, write_job
from shots import make_job


def assert_refused(run, *words):
    assert run.code == 2, run.stderr
    assert run.stray_lines == 0  # stdout carries events only
    error = run.last("error")
    assert error["exit_code"] == 2
    for w in words:
        assert w in error["message"], error["message"]
    assert "Traceback" not in run.stderr and "Traceback" not in run.stdout
    assert run.stderr.strip().count("\n") == 0, run.stderr  # one line for people
    assert run.stderr.startswith("error: ")


def files_in(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")) if folder.exists() else []


def generate_refused(tmp_path, job_or_text, *words, out=None, extra=()):
    path = tmp_path / "job.json"
    if isinstance(job_or_text, str):
        path.write_text(job_or_text, encoding="utf-8")
    else:
        write_job(job_or_text, path)
    out = out or tmp_path / "takes"
    before = files_in(out)
    run = backend("generate", path, "--out", out, *extra)
    assert_refused(run, *words)
    assert files_in(out) == before  # nothing partial, not even a created folder
    return run


def edited(change):
    job = make_job()
    change(job)
    return job


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda j: j["sampling"].pop("seed"), ["sampling.seed: missing"]),
        (lambda j: j["entities"][0].update(size=3), ["entities[0]: unknown field 'size'"]),
        (lambda j: j["shot"].update(frame_start="one"), ["shot.frame_start: must be an integer"]),
        (lambda j: j["entities"][0].update(prompt=""), ["entities[0].prompt: must not be empty"]),
        (lambda j: j["entities"][0].update(prompt="x" * 700), ["entities[0].prompt: too long"]),
        (lambda j: j["prompt"].update(location="Café du Monde"), ["prompt.location", "plain English text"]),
        (lambda j: j["shot"].update(frame_end=j["shot"]["frame_start"]), ["shot.frame_end", "must be after"]),
        (lambda j: j.update(entities=[]), ["entities: 0 entities"]),
        (lambda j: j.update(entities=j["entities"] * 4), ["entities: 4 entities"]),
        (lambda j: j["entities"][0]["poses"][0].__setitem__(0, 3.0), ["entities[0].poses[0]", "rotation part"]),
        (lambda j: j.update(version=2), ["version 2", "update TrajMaster Previz"]),
    ],
    ids=[
        "missing",
        "extra",
        "type",
        "empty-prompt",
        "long-prompt",
        "non-ascii",
        "frame-range",
        "no-entities",
        "four-entities",
        "not-rigid",
        "newer-version",
    ],
)
def test_bad_jobs_are_refused(tmp_path, change, words):
    generate_refused(tmp_path, edited(change), *words)


def test_nan_in_a_job_is_refused(tmp_path):
    from backend import job as jobfile

    text = jobfile.dumps(make_job()).replace('"scene_fps": 24.0', '"scene_fps": NaN', 1)
    generate_refused(tmp_path, text, "shot.scene_fps: NaN is not a number")


def test_validate_reports_the_same_problem(tmp_path):
    path = write_job(edited(lambda j: j["sampling"].pop("steps")), tmp_path / "job.json")
    assert_refused(backend("validate", path), "sampling.steps: missing")


def test_validate_accepts_a_good_job_and_lists_warnings(tmp_path):
    path = write_job(make_job([((0, 0), (0, 6))]), tmp_path / "job.json")
    run = backend("validate", path)
    assert run.code == 0, run.stderr
    assert [e["code"] for e in run.events if e["event"] == "warning"] == ["too_far"]
    assert "valid job, 1 entity" in run.stderr


def test_missing_and_unreadable_job_files(tmp_path):
    generate_refused(tmp_path, "{not json", "not valid JSON at line 1")
    run = backend("generate", tmp_path / "nowhere.json", "--out", tmp_path / "o")
    assert_refused(run, "no job file at")
    run = backend("validate", tmp_path)
    assert_refused(run, "is a folder, not a job file")


def test_an_output_folder_that_cannot_be_written(tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder")
    generate_refused(tmp_path, make_job(), "is a file, not a folder", out=blocker)
    generate_refused(tmp_path, make_job(), "Cannot create the output folder", out=blocker / "sub")
    assert blocker.read_text() == "not a folder"


def test_an_existing_take_name_is_never_overwritten(tmp_path):
    out = tmp_path / "takes"
    out.mkdir()
    (out / "mine.mp4").write_bytes(b"the user's earlier take")
    generate_refused(tmp_path, make_job(), "already exists", "never overwritten", out=out, extra=["--name", "mine"])
    assert (out / "mine.mp4").read_bytes() == b"the user's earlier take"


def test_a_take_name_that_is_not_a_file_name(tmp_path):
    generate_refused(tmp_path, make_job(), "cannot be a file name", extra=["--name", "../escape"])


def test_usage_errors_exit_2_without_traceback(tmp_path):
    run = backend("generate", tmp_path / "job.json")  # no --out
    assert run.code == 2
    assert "the following arguments are required: --out" in run.stderr
    assert "Traceback" not in run.stderr


def test_help_on_every_command():
    for command in ([], ["validate"], ["generate"], ["serve"]):
        run = backend(*command, "--help")
        assert run.code == 0
        assert "usage: python -m backend" in run.stdout


def test_unusable_documents_are_one_sentence_from_validate(tmp_path):
    # Deep nesting and a 5000-digit number once gave a raw traceback and exit 1.
    path = tmp_path / "job.json"
    path.write_text("[" * 100000 + "]" * 100000)
    assert_refused(backend("validate", path), "nested more than 32 levels deep")
    from backend import job as jobfile

    path.write_text(jobfile.dumps(make_job()).replace('"frame_end": 73', '"frame_end": 1' + "0" * 5000))
    assert_refused(backend("validate", path), "shot.frame_end", "is too large")


def test_infinity_and_a_zero_up_vector_never_reach_an_engine(tmp_path):
    from backend import job as jobfile

    generate_refused(
        tmp_path,
        jobfile.dumps(make_job()).replace('"scene_fps": 24.0', '"scene_fps": 1e309', 1),
        "shot.scene_fps: 1e309 is too large to be a number",
    )
    generate_refused(tmp_path, edited(lambda j: j["camera"]["context"][0].__setitem__(slice(0, 3), [0, 0, 0])), "up")
    generate_refused(tmp_path, edited(lambda j: j["entities"][0]["poses"][0].__setitem__(9, 1e308)), "out of range")
    generate_refused(tmp_path, edited(lambda j: j.update(version=2.0)), "version: must be an integer")


def test_a_huge_wrong_value_is_not_echoed_back_whole(tmp_path):
    run = generate_refused(tmp_path, edited(lambda j: j.update(engine="x" * 1_000_000)), "engine: must be one of")
    assert len(run.stdout) < 2000 and len(run.stderr) < 1000
