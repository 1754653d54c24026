"""Enrolment from a video (`facecmp enroll NAME --video`): a clip made of LFW photos, three of
one person and one of a stranger walking in between; which frames are kept, the photos stored
beside the gallery, a rerun that adds nothing, identification afterwards, and the errors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

import facecmp
from facecmp.capture import enroll_video
from facecmp.cli import main
from facecmp.photostore import photos_dir

from conftest import need_data

PERSON, STRANGER = "Colin_Powell", "Aaron_Peirsol"
SCENES = [(PERSON, 1), (PERSON, 2), (STRANGER, 1), (PERSON, 3)]  # 8 frames each


def _lfw(name: str, n: int) -> Path:
    return need_data("lfw", name, f"{name}_{n:04d}.jpg")


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """32 frames at 10 fps: each scene's photo drifting a few pixels for 8 frames."""
    photos = [cv2.imread(str(_lfw(n, i))) for n, i in SCENES]
    path = tmp_path_factory.mktemp("capture") / "enrol.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (250, 250))
    for img in photos:
        for f in range(8):
            shift = np.float32([[1, 0, f % 3], [0, 1, f % 2]])
            writer.write(cv2.warpAffine(img, shift, (250, 250), borderMode=cv2.BORDER_REPLICATE))
    writer.release()
    return path


def test_one_frame_of_each_photo_is_kept_and_the_stranger_is_passed_over(clip, tmp_path):
    g = facecmp.Gallery(tmp_path / "g.db", create=True)
    outcomes, found = enroll_video(g, PERSON, clip, count=5, every=1)
    assert (found.frames_read, found.frames_analysed) == (32, 32)
    assert found.kept == [0, 8, 24]  # the first frame of each of the person's photos
    assert (found.other_person, found.too_alike, found.several_faces, found.no_face) == (8, 21, 0, 0)
    assert [o.status for o in outcomes] == ["added"] * 3
    assert g.people() == [(PERSON, 3)]
    stored = sorted(photos_dir(g.path).glob("*.png"))
    assert sorted(str(p) for p in stored) == sorted(o.path for o in outcomes)
    named, = facecmp.identify(g, _lfw(PERSON, 4))
    assert named.name == PERSON
    stranger, = facecmp.identify(g, _lfw(STRANGER, 2))
    assert stranger.name == "unknown"


def test_the_command_stops_at_frames_and_a_rerun_adds_nothing(clip, tmp_path):
    db = tmp_path / "g.db"
    first = _run("enroll", "--gallery", db, PERSON, "--video", clip, "--frames", "2", "--every", "2")
    assert first.exit_code == 0, first.output
    assert "enrolled 2 photos of 1 person" in first.output
    assert "kept 2 (frames 0, 8)" in first.output and "read 9 frames, analysed 5" in first.output
    again = _run("enroll", "--gallery", db, PERSON, "--video", clip, "--frames", "2", "--every", "2")
    assert again.exit_code == 0 and "enrolled 0 photos of 0 people" in again.output and "2 skipped" in again.output
    assert len(list(photos_dir(db).glob("*.png"))) == 2
    listed = _run("gallery", "list", "--gallery", db)
    assert listed.output.strip() == f"{PERSON}\t2"
    removed = _run("gallery", "remove", PERSON, "--gallery", db)
    assert removed.exit_code == 0 and not list(photos_dir(db).glob("*.png"))  # its own copies go too


def test_enrol_from_video_errors(clip, tmp_path):
    db = tmp_path / "g.db"
    missing = _run("enroll", "--gallery", db, PERSON, "--video", tmp_path / "none.mp4")
    assert missing.exit_code == 2 and "no such file" in missing.output
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    assert _run("enroll", "--gallery", db, PERSON, "--video", text).exit_code == 2
    both = _run("enroll", "--gallery", db, PERSON, _lfw(PERSON, 1), "--video", clip)
    assert both.exit_code == 2 and "--video takes NAME and no images" in both.output
    stray = _run("enroll", "--gallery", db, PERSON, _lfw(PERSON, 1), "--every", "2")
    assert stray.exit_code == 2 and "go with --video" in stray.output
    blank = np.full((120, 160, 3), 128, np.uint8)
    empty = tmp_path / "blank.avi"
    writer = cv2.VideoWriter(str(empty), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (160, 120))
    for _ in range(5):
        writer.write(blank)
    writer.release()
    none = _run("enroll", "--gallery", db, PERSON, "--video", empty)
    assert none.exit_code == 3 and "5 without a face" in none.output
    assert not photos_dir(db).exists() or not list(photos_dir(db).iterdir())
    _run("enroll", "--gallery", db, PERSON, _lfw(PERSON, 1))
    refused = _run("enroll", "--gallery", db, PERSON, "--video", clip, "--no-append")
    assert refused.exit_code == 2 and "--no-append" in refused.output
