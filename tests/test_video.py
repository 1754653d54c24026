"""Video identification: the tracker on hand-made boxes, then `facecmp identify --video` on a
short video made of LFW photos (one enrolled person, then a stranger in the same place), and
what must fail cleanly: a missing file, a file that is no video, a camera that is not there,
and a video cut short, which still writes what it read."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

import facecmp
from facecmp.cli import main
from facecmp.tracking import Tracker, iou_matrix

from conftest import need_data

FPS = 10.0
KNOWN, STRANGER = "Colin_Powell", "Aaron_Peirsol"
SHIFTS = [(0, 0), (3, 2), (6, 4), (9, 5), (6, 7), (3, 4), (0, 2), (-3, 0)]  # a face drifting a few pixels


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _lfw(name: str, n: int) -> Path:
    return need_data("lfw", name, f"{name}_{n:04d}.jpg")


def _unit(rng, n: int = 1, d: int = 16) -> np.ndarray:
    v = rng.normal(size=(n, d))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


# -- the tracker, on hand-made boxes and embeddings ---------------------------------------------


def test_iou_matrix_by_hand():
    a = np.array([[0, 0, 10, 10], [20, 20, 30, 30]])
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [100, 100, 110, 110]])
    expected = [[1.0, 50 / 150, 0.0], [0.0, 0.0, 0.0]]
    assert iou_matrix(a, b) == pytest.approx(np.array(expected))
    assert iou_matrix(np.zeros((0, 4)), b).shape == (0, 3)


def test_two_faces_keep_their_tracks_while_they_move_and_swap_order():
    rng = np.random.default_rng(0)
    ann, bob = _unit(rng), _unit(rng)
    tracker = Tracker(max_distance=0.5)
    ids = []
    for frame in range(6):
        boxes = np.array([[10 + 3 * frame, 10, 60 + 3 * frame, 70],
                          [200 - 2 * frame, 40, 250 - 2 * frame, 100]])
        embs = np.vstack([ann + 0.05 * _unit(rng), bob + 0.05 * _unit(rng)])
        order = [1, 0] if frame % 2 else [0, 1]  # the detector's order is no promise
        tracks = tracker.update(frame, boxes[order], embs[order])
        ids.append([tracks[order.index(k)].id for k in (0, 1)])
    assert ids == [[1, 2]] * 6
    assert [t.hits for t in tracker.active] == [6, 6]


def test_a_new_face_in_the_same_place_starts_a_new_track():
    rng = np.random.default_rng(1)
    ann, bob = _unit(rng), _unit(rng)  # nearly orthogonal: distance about 1
    tracker = Tracker(max_distance=0.5)
    box = np.array([[10, 10, 60, 70]])
    assert [tracker.update(f, box + f, ann)[0].id for f in range(3)] == [1, 1, 1]
    assert [tracker.update(f, box + f, bob)[0].id for f in range(3, 6)] == [2, 2, 2]
    track = tracker.active[-1]
    assert (track.first_frame, track.last_frame, track.hits) == (3, 5, 3)
    assert track.mean @ bob[0] == pytest.approx(1.0)


def test_a_track_survives_missed_frames_then_ends():
    rng = np.random.default_rng(2)
    ann = _unit(rng)
    tracker = Tracker(max_missed=2)
    box = np.array([[10, 10, 60, 70]])
    none = (np.zeros((0, 4)), np.zeros((0, 16)))
    assert tracker.update(0, box, ann)[0].id == 1
    tracker.update(1, *none)
    tracker.update(2, *none)
    assert tracker.update(3, box, ann)[0].id == 1  # missed twice: kept
    for f in (4, 5, 6):
        tracker.update(f, *none)
    assert tracker.active == [] and tracker.update(7, box, ann)[0].id == 2
    far = np.array([[300, 300, 350, 360]])
    assert tracker.update(8, far, ann)[0].id == 3  # no overlap: a new track, however alike


# -- errors that need no model ----------------------------------------------------------------


@pytest.fixture
def empty_gallery(tmp_path) -> Path:
    db = tmp_path / "empty.db"
    facecmp.Gallery(db, create=True).close()
    return db


def test_sources_that_cannot_be_read_are_one_line_errors(empty_gallery, tmp_path):
    (tmp_path / "notes.mp4").write_text("not a video")
    cases = [(tmp_path / "missing.mp4", "no such file"),
             (tmp_path / "notes.mp4", "cannot be read as a video"),
             ("97", "error: cannot open camera 97 (no camera with that index, or it is busy)")]
    for source, message in cases:
        res = _run("identify", "--gallery", empty_gallery, "--video", source)
        assert res.exit_code == 2, res.output
        assert message in res.stderr and len(res.stderr.splitlines()) == 1 and "Traceback" not in res.output


def test_options_that_do_not_fit_are_refused(empty_gallery, tmp_path):
    photo = tmp_path / "a.jpg"
    for args, message in ((("--video", "x.mp4", photo), "not both"),
                          ((photo, "--every", "2"), "go with --video"),
                          (("--video", "x.mp4", "--out", tmp_path / "a.mkv"), "must end in .mp4 or .avi"),
                          (("--video", "x.mp4", "--detector", "none"), "needs a face detector"),
                          ((), "give photos to identify, or --video")):
        res = _run("identify", "--gallery", empty_gallery, *args)
        assert res.exit_code == 2 and message in res.stderr, res.output


# -- a video of LFW photos, through the CLI -------------------------------------------------------


def _frames(name: str, n: int) -> list[np.ndarray]:
    """One LFW photo as len(SHIFTS) BGR frames, each moved a few pixels."""
    img = cv2.imread(str(_lfw(name, n)))
    h, w = img.shape[:2]
    return [cv2.warpAffine(img, np.float32([[1, 0, dx], [0, 1, dy]]), (w, h), borderMode=cv2.BORDER_REPLICATE)
            for dx, dy in SHIFTS]


def _write(path: Path, frames: list[np.ndarray], fourcc: str) -> Path:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), FPS, (w, h))
    assert writer.isOpened()
    for f in frames:
        writer.write(f)
    writer.release()
    return path


def _count_frames(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> tuple[Path, Path]:
    """A gallery of one enrolled person, and a 16-frame video: that person (another photo),
    then a stranger in the same place."""
    root = tmp_path_factory.mktemp("video")
    db = root / "people.db"
    res = _run("enroll", "--gallery", db, KNOWN, *[_lfw(KNOWN, n) for n in (1, 2, 3)])
    assert res.exit_code == 0, res.output
    return db, _write(root / "clip.mp4", _frames(KNOWN, 4) + _frames(STRANGER, 1), "mp4v")


@pytest.mark.slow
def test_a_video_is_identified_tracked_written_and_timed(clip, tmp_path):
    db, video = clip
    out, table = tmp_path / "annotated.mp4", tmp_path / "detections.csv"
    res = _run("identify", "--gallery", db, "--video", video, "--out", out, "--csv", table, "--top-k", "1")
    assert res.exit_code == 0, res.output
    rows = _rows(table)
    assert list(rows[0]) == ["frame", "time_s", "track", "x1", "y1", "x2", "y2", "name", "distance",
                             "mask", "mask_probability", "expression", "expression_probability", "model"]
    n = len(SHIFTS)
    assert [int(r["frame"]) for r in rows] == list(range(2 * n))  # one face a frame
    assert [r["name"] for r in rows] == [KNOWN] * n + ["unknown"] * n
    tracks = [r["track"] for r in rows]
    assert len(set(tracks[:n])) == 1 and len(set(tracks[n:])) == 1 and tracks[0] != tracks[n]
    times = [float(r["time_s"]) for r in rows]
    assert times == pytest.approx([i / FPS for i in range(2 * n)], abs=1e-3)
    assert all(r["mask"] in ("WithMask", "WithoutMask") and r["expression"] for r in rows)
    assert _count_frames(out) == 2 * n
    lines = res.stdout.splitlines()
    assert lines[0].startswith(f"track {tracks[0]}: {KNOWN} (distance ") and "frames 0-7" in lines[0]
    assert lines[1].startswith(f"track {tracks[n]}: unknown (distance ")
    assert f"processed {2 * n} of {2 * n} frames in " in lines[-1] and " fps); 2 tracks" in lines[-1]


@pytest.mark.slow
def test_every_nth_frame_max_frames_and_json_from_python_and_cli(clip, tmp_path):
    db, video = clip
    out = tmp_path / "annotated.avi"
    with facecmp.Gallery(db) as g:
        result = facecmp.identify_video(g, video, out=out, every=3, max_frames=10)
    assert (result.frames_read, result.frames_processed) == (10, 4)
    assert [d.frame for d in result.detections] == [0, 3, 6, 9]
    assert [d.name for d in result.detections] == [KNOWN] * 3 + ["unknown"]
    assert _count_frames(out) == 10 and result.stopped is None and result.fps > 0
    res = _run("identify", "--gallery", db, "--video", video, "--json", "--every", "4", "--threshold", "0.01")
    assert res.exit_code == 0, res.output
    found = json.loads(res.stdout)
    assert [t["name"] for t in found["tracks"]] == ["unknown", "unknown"]  # nobody is that close
    assert found["tracks"][0]["candidates"][0]["name"] == KNOWN
    assert [d["frame"] for d in found["detections"]] == [0, 4, 8, 12]
    assert res.stderr.splitlines()[-1].startswith("processed 4 of 16 frames")


@pytest.mark.slow
def test_a_track_in_a_mask_is_named_by_the_masked_model(tmp_path):
    from facecmp.detect import detect_faces, pick_face
    from facecmp.masks import draw_mask

    db = tmp_path / "people.db"  # enrolled from bare photos; the gallery keeps masked-model vectors too
    for name, photos in ((KNOWN, (1, 2, 3)), (STRANGER, (1,)), ("Abel_Pacheco", (1,)), ("Serena_Williams", (1,))):
        assert _run("enroll", "--gallery", db, name, *[_lfw(name, n) for n in photos]).exit_code == 0
    frames = _frames(KNOWN, 4)
    rgb = np.ascontiguousarray(frames[0][:, :, ::-1])
    covered = draw_mask(rgb, pick_face(detect_faces(rgb))[0].landmarks, np.random.default_rng(0), "n95", "dark")
    masked = [cv2.warpAffine(np.ascontiguousarray(covered[:, :, ::-1]), np.float32([[1, 0, dx], [0, 1, dy]]),
                             covered.shape[1::-1], borderMode=cv2.BORDER_REPLICATE) for dx, dy in SHIFTS]
    video = _write(tmp_path / "masked.mp4", frames + masked, "mp4v")  # bare, then the same face in a mask
    with facecmp.Gallery(db) as g:
        result = facecmp.identify_video(g, video, top_k=4)
    n = len(SHIFTS)
    assert result.masked_threshold is not None
    assert [d.mask.label for d in result.detections] == ["WithoutMask"] * n + ["WithMask"] * n
    # one track throughout, named by the masked model (from its masked frames) once the mask is on
    assert len(result.tracks) == 1
    assert [d.model for d in result.detections] == ["identity"] * n + ["masked"] * n
    assert [d.name for d in result.detections[:n]] == [KNOWN] * n
    (track,) = result.tracks.values()
    assert (track.model, track.threshold, track.candidates[0][0]) == ("masked", result.masked_threshold, KNOWN)
    assert track.name == (KNOWN if track.distance <= track.threshold else "unknown")


@pytest.mark.slow
def test_a_video_cut_short_writes_what_it_read(clip, tmp_path):
    db, _ = clip
    whole = _write(tmp_path / "whole.avi", _frames(KNOWN, 4), "MJPG")
    cut = tmp_path / "cut.avi"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 5 // 8])
    out, table = tmp_path / "annotated.mp4", tmp_path / "detections.csv"
    res = _run("identify", "--gallery", db, "--video", cut, "--out", out, "--csv", table)
    assert res.exit_code == 0, res.output
    (error,) = [line for line in res.stderr.splitlines() if line.startswith("error: ")]
    assert f"of the {len(SHIFTS)} it declares (truncated or damaged); kept what was read" in error
    read = int(error.split("after frame ")[1].split()[0])
    assert 0 < read < len(SHIFTS)
    assert [int(r["frame"]) for r in _rows(table)] == list(range(read))
    assert _count_frames(out) == read


@pytest.mark.slow
def test_ctrl_c_stops_the_loop_and_keeps_what_was_read(clip, tmp_path, monkeypatch):
    import facecmp.video

    db, video = clip
    calls = []

    def analyze_then_interrupt(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return facecmp.faces.analyze(*args, **kwargs)

    monkeypatch.setattr(facecmp.video, "analyze", analyze_then_interrupt)
    out, table = tmp_path / "annotated.avi", tmp_path / "detections.csv"
    res = _run("identify", "--gallery", db, "--video", video, "--out", out, "--csv", table)
    assert res.exit_code == 0, res.output
    assert "note: stopped by Ctrl-C after 3 frames; kept what was read" in res.stderr
    assert len(_rows(table)) == 3 and _count_frames(out) == 3
