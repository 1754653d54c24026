"""Distillation from a teacher's descriptors: targets by image path, the loss, the saved student."""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os

import numpy as np
import pytest

from conftest import REPO, make_class_tree, need_data


def _teacher_file(path, image_paths, dim=16, missing=()):
    """Descriptors that separate the classes (one random direction per class, plus noise)."""
    rng = np.random.default_rng(0)
    centres = {}
    emb = []
    for p in image_paths:
        c = centres.setdefault(p.parent.name, rng.normal(size=dim))
        emb.append(c + 0.1 * rng.normal(size=dim))
    emb = np.asarray(emb, dtype=np.float32)
    for i in missing:
        emb[i] = np.nan
    np.savez(path, paths=np.asarray([os.path.realpath(p) for p in image_paths]), emb=emb,
             teacher=np.asarray("test teacher"))
    return path


def test_targets_follow_paths_and_skip_missing(tmp_path):
    from facecmp.distill import load_targets

    paths = sorted(make_class_tree(tmp_path / "d", classes=2, per_class=3).glob("*/*.png"))
    teacher = _teacher_file(tmp_path / "t.npz", paths, missing=[1])
    targets, summary = load_targets(teacher, list(reversed(paths)))  # order follows the caller's
    assert summary["images_with_target"] == 5 and summary["dim"] == 16
    assert np.allclose(np.linalg.norm(targets, axis=1), [1, 1, 1, 1, 0, 1], atol=1e-5)
    with np.load(teacher) as z:
        raw = z["emb"][0]
    assert np.allclose(targets[-1], raw / np.linalg.norm(raw), atol=1e-6)


def test_unusable_teacher_files_are_one_line_errors(tmp_path):
    from facecmp.distill import load_targets
    from facecmp.errors import FacecmpError

    paths = sorted(make_class_tree(tmp_path / "d", classes=2, per_class=2).glob("*/*.png"))
    (tmp_path / "junk.npz").write_bytes(b"not a numpy file")
    with pytest.raises(FacecmpError, match="cannot read"):
        load_targets(tmp_path / "junk.npz", paths)
    other = _teacher_file(tmp_path / "other.npz", [tmp_path / "x" / "elsewhere.png"])
    with pytest.raises(FacecmpError, match="describes none"):
        load_targets(other, paths)


def test_similarity_gap_is_zero_for_the_teachers_geometry_and_ignores_rows_without_target():
    from facecmp.distill import similarity_gap
    from facecmp.runtime import import_paddle

    paddle = import_paddle()

    rng = np.random.default_rng(0)
    target = rng.normal(size=(6, 16)).astype(np.float32)
    target /= np.linalg.norm(target, axis=1, keepdims=True)
    target[2] = 0  # no teacher descriptor for image 2
    same = np.zeros((6, 512), np.float32)
    same[:, :16] = target * rng.uniform(0.5, 3.0, size=(6, 1))  # the teacher's angles, other lengths
    same[2] = rng.normal(size=512)  # whatever the student says about image 2
    gap = lambda emb: float(similarity_gap(paddle.to_tensor(emb), paddle.to_tensor(target)))
    assert gap(same) < 1e-6
    other = rng.normal(size=(6, 512)).astype(np.float32)
    assert gap(other) > 1e-3
    moved = same.copy()
    moved[2] = rng.normal(size=512)
    assert abs(gap(moved) - gap(same)) < 1e-6


@pytest.mark.parametrize("kind", ["projection", "similarity"])
def test_distilled_training_pulls_towards_the_teacher_and_saves_the_student_only(tmp_path, kind):
    from facecmp import modeldir
    from facecmp.config import load_config
    from facecmp.trainer import train

    root = make_class_tree(tmp_path / "data", classes=4, per_class=8)
    teacher = _teacher_file(tmp_path / "t.npz", sorted(root.glob("*/*.png")), missing=[0])
    cfg = load_config("identity", overrides={
        "data": {"input_size": 32}, "train": {"epochs": 4, "batch_size": 16, "lr": 0.003, "patience": 0,
                                              "teacher": str(teacher), "teacher_weight": 10.0,
                                              "teacher_loss": kind}})
    train(cfg, [root], tmp_path / "run", verbose=0)
    meta = json.loads((tmp_path / "run" / "model" / "meta.json").read_text())
    assert meta["distilled_from"]["images_with_target"] == 31
    assert meta["distilled_from"]["weight"] == 10.0 and meta["distilled_from"]["loss"] == kind
    with open(tmp_path / "run" / "log.csv") as f:
        losses = [float(r["loss"]) for r in csv.DictReader(f)]
    assert losses[-1] < losses[0]  # the distance term dominates the loss and must come down
    net, _ = modeldir.load_net(tmp_path / "run" / "model")  # the student alone, no projection
    assert net.head is None
    saved = [f.name for f in (tmp_path / "run" / "model").iterdir()]
    assert modeldir.HEAD not in saved and not any("projection" in n for n in saved)


def test_teacher_tool_describes_real_faces(tmp_path, monkeypatch):
    if importlib.util.find_spec("dlib") is None or importlib.util.find_spec("face_recognition_models") is None:
        pytest.skip('dlib teacher not installed (pip install -e ".[distill]")')
    lfw = need_data("lfw")
    monkeypatch.syspath_prepend(str(REPO / "tools"))  # the worker processes import the tool by name
    tool = importlib.import_module("teacher_embeddings")
    out = tmp_path / "t.npz"
    assert tool.main(["--data", str(lfw), "--workers", "1", "--limit", "6", "--out", str(out)]) == 0
    with np.load(out) as z:
        paths, emb = z["paths"].tolist(), z["emb"]
    assert emb.shape == (6, 128) and np.isfinite(emb).all()
    people = [p.split("/")[-2] for p in paths]
    d = np.linalg.norm(emb[:, None] - emb[None], axis=2)
    same = np.equal.outer(people, people) & ~np.eye(6, dtype=bool)
    assert same.any() and (~np.equal.outer(people, people)).any()
    assert d[same].mean() < d[~np.equal.outer(people, people)].mean()


def test_flip_term_pulls_each_embedding_towards_its_flip_averaged_target(tmp_path):
    from facecmp.distill import DistillLoss, paddle

    rng = np.random.default_rng(1)
    target = rng.normal(size=(4, 512)).astype(np.float32)
    target /= np.linalg.norm(target, axis=1, keepdims=True)
    target[3] = 0  # an image without a target adds nothing
    loss = DistillLoss(lambda logits, label: paddle.to_tensor(0.0), [("flip", 2.0)])
    t = paddle.to_tensor(target)

    def value(emb):
        e = paddle.to_tensor(emb.astype(np.float32))
        return float(loss(None, e, e * 0, None, t))

    on_target = target * 3.0  # length does not matter, direction does
    on_target[3] = rng.normal(size=512)
    assert value(on_target) < 1e-5
    opposite = -on_target
    opposite[3] = on_target[3]
    assert abs(value(opposite) - 2.0 * 2.0) < 1e-4  # weight x cosine distance 2


def test_flip_teacher_tool_and_training_with_both_teachers(tmp_path, monkeypatch):
    from facecmp import distill, modeldir
    from facecmp.config import load_config
    from facecmp.errors import FacecmpError
    from facecmp.trainer import train

    root = make_class_tree(tmp_path / "data", classes=4, per_class=8)
    paths = sorted(root.glob("*/*.png"))
    dlib_like = _teacher_file(tmp_path / "t.npz", paths)
    first = load_config("identity", overrides={
        "data": {"input_size": 32, "crop": {"method": "none"}},
        "train": {"epochs": 1, "batch_size": 16, "patience": 0}})
    train(first, [root], tmp_path / "first", verbose=0)
    monkeypatch.syspath_prepend(str(REPO / "tools"))
    tool = importlib.import_module("flip_teacher")
    flip = tmp_path / "flip.npz"
    assert tool.main(["--model", str(tmp_path / "first" / "model"), "--data", str(root), "--out", str(flip)]) == 0
    with np.load(flip) as z:
        emb, saved = z["emb"], z["paths"].tolist()
    assert sorted(saved) == sorted(os.path.realpath(p) for p in paths)
    from pathlib import Path

    from facecmp.cropstore import prepare_crops
    from facecmp.embedder import Embedder

    emb_model = Embedder(tmp_path / "first" / "model", flip=False)
    crops, ok, _ = prepare_crops([Path(p) for p in saved], emb_model.meta, progress=False)
    assert ok.all()
    single, mirror = emb_model.embed_crops(crops), emb_model.embed_crops(np.ascontiguousarray(crops[:, :, ::-1]))
    assert np.allclose(emb, (single + mirror) / 2, atol=1e-4)  # the mean of a crop's and its mirror's

    cfg = load_config("identity", overrides={
        "data": {"input_size": 32, "crop": {"method": "none"}},
        "model": {"init": str(tmp_path / "first" / "model")},
        "train": {"epochs": 2, "batch_size": 16, "patience": 0, "teacher": str(dlib_like),
                  "teacher_loss": "similarity", "teacher_weight": 5.0,
                  "flip_teacher": str(flip), "flip_teacher_weight": 20.0}})
    train(cfg, [root], tmp_path / "run", verbose=0)
    meta = modeldir.open_model(tmp_path / "run" / "model")
    assert meta.flip_distilled_from["weight"] == 20.0

    # post-ReLU embeddings are non-negative: per class, 16 of the 512 units on
    rng = np.random.default_rng(2)
    units = {c: rng.choice(512, 16, replace=False) for c in sorted({p.parent.name for p in paths})}
    sparse = np.zeros((len(paths), 512), np.float32)
    for i, p in enumerate(paths):
        sparse[i, units[p.parent.name]] = 1.0
    synthetic = tmp_path / "t512.npz"
    np.savez(synthetic, paths=np.asarray([os.path.realpath(p) for p in paths]), emb=sparse)
    cfg = load_config("identity", overrides={
        "data": {"input_size": 32, "crop": {"method": "none"}},
        "model": {"init": str(tmp_path / "first" / "model")},
        "train": {"epochs": 8, "batch_size": 16, "lr": 0.003, "patience": 0, "keep_epochs": True,
                  "flip_teacher": str(synthetic), "flip_teacher_weight": 50.0}})
    train(cfg, [root], tmp_path / "pulled", verbose=0)
    targets = distill.load_targets(synthetic, [Path(p) for p in saved])[0]

    def agreement(model):  # mean cosine between each crop's single embedding and its target
        e = Embedder(model, flip=False).embed_crops(crops)
        return float(np.mean(np.sum(e * targets, 1) / np.linalg.norm(e, axis=1)))

    # the last epoch, not "model" (the best on validation accuracy, which the pull does not aim at)
    pulled, before = agreement(tmp_path / "pulled" / "epochs" / "08"), agreement(tmp_path / "first" / "model")
    assert pulled > before + 0.05

    wrong = load_config("identity", overrides={
        "data": {"input_size": 32, "crop": {"method": "none"}},
        "train": {"epochs": 1, "batch_size": 16, "flip_teacher": str(dlib_like)}})
    with pytest.raises(FacecmpError, match="not a 512-d"):
        train(wrong, [root], tmp_path / "wrong", verbose=0)

    with np.load(flip) as z:  # a flip teacher made from crops of another size
        other = dict(z)
    made = json.loads(str(other["convention"]))
    assert made == {"input_size": 32, "color": "rgb", "crop": {"method": "none"}}
    other["convention"] = np.asarray(json.dumps({**made, "input_size": 64}))
    np.savez(tmp_path / "other.npz", **other)
    mismatch = load_config("identity", overrides={
        "data": {"input_size": 32, "crop": {"method": "none"}},
        "train": {"epochs": 1, "batch_size": 16, "flip_teacher": str(tmp_path / "other.npz")}})
    with pytest.raises(FacecmpError, match="made from"):
        train(mismatch, [root], tmp_path / "mismatch", verbose=0)


def test_teacher_pool_keeps_one_image_people_only_when_asked_and_combines_exclude_lists(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "tools"))
    tool = importlib.import_module("teacher_embeddings")
    root = make_class_tree(tmp_path / "faces", classes=5, per_class=2)
    (root / "solo").mkdir()
    (root / "person_00" / "000.png").rename(root / "solo" / "000.png")
    (tmp_path / "skip.txt").write_text("person_01\n")
    (tmp_path / "skip2.txt").write_text("# a second list\nperson_04\n")
    parser = argparse.ArgumentParser()
    tool.add_pool_arguments(parser)
    base = ["--data", str(root), "--exclude-list", str(tmp_path / "skip.txt"),
            "--exclude-list", str(tmp_path / "skip2.txt"), "--out", "x"]
    default = tool.pool_folder(parser.parse_args(base))
    singles = tool.pool_folder(parser.parse_args(base + ["--min-images", "1"]))
    assert default.classes == ["person_02", "person_03"] and len(default.paths) == 4
    assert singles.classes == ["person_00", "person_02", "person_03", "solo"] and len(singles.paths) == 6
