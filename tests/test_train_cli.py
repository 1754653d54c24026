"""`facecmp train` through the CLI: outputs, resume after a kill, and bad input."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import make_class_tree, need_data

from facecmp.cli import main


def _log(out):
    with open(out / "log.csv") as f:
        return list(csv.DictReader(f))


def test_missing_and_empty_data_are_one_line_errors(tmp_path):
    runner = CliRunner()
    res = runner.invoke(main, ["train", "--data", str(tmp_path / "nonexistent"), "--out", str(tmp_path / "o")])
    assert res.exit_code != 0 and "does not exist" in res.output
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1
    (tmp_path / "empty").mkdir()
    res = runner.invoke(main, ["train", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "o")])
    assert res.exit_code != 0 and "no class folders with images" in res.output
    assert "Traceback" not in res.output


def test_trains_past_corrupt_and_non_image_files(tmp_path):
    root = make_class_tree(tmp_path / "d", classes=3, per_class=6)
    (root / "person_00" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(64))
    (root / "person_01" / "readme.jpg").write_text("this is text, not a JPEG")
    out = tmp_path / "run"
    res = CliRunner().invoke(main, ["train", "--data", str(root), "--epochs", "1", "--batch-size", "8",
                                    "--out", str(out)])
    assert res.exit_code == 0, res.output
    report = json.loads((out / "data_report.json").read_text())
    assert report["unreadable_or_no_face"] == 2
    res = CliRunner().invoke(main, ["train", "--data", str(root), "--epochs", "1", "--out", str(out)])
    assert res.exit_code != 0 and "--resume" in res.output  # never overwrites a finished run


@pytest.mark.slow
def test_orl_training_writes_everything_and_learns(tmp_path):
    orl = need_data("orl")
    out = tmp_path / "orl"
    res = CliRunner().invoke(main, ["train", "--task", "identity", "--data", str(orl), "--epochs", "2",
                                    "--out", str(out)])
    assert res.exit_code == 0, res.output
    for name in ("log.csv", "curves.png", "config.yaml", "data_report.json", "model/meta.json",
                 "model/backbone.pdparams"):
        assert (out / name).is_file(), name
    rows = _log(out)
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert float(rows[1]["loss"]) < float(rows[0]["loss"])
    meta = json.loads((out / "model" / "meta.json").read_text())
    assert meta["input_size"] == 64 and meta["num_classes"] == 40 and meta["embedding_size"] == 512


def _train_cmd(root, out, epochs):
    return [sys.executable, "-m", "facecmp.cli", "train", "--data", str(root), "--epochs", str(epochs),
            "--batch-size", "8", "--out", str(out)]


@pytest.mark.slow
def test_killed_run_resumes_without_losing_an_epoch(tmp_path):
    root = make_class_tree(tmp_path / "d", classes=6, per_class=30, size=64)
    out = tmp_path / "run"
    proc = subprocess.Popen(_train_cmd(root, out, 3), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = out / "checkpoints" / "state.json"
    deadline = time.time() + 300
    while not (state.exists() and json.loads(state.read_text())["epoch"] >= 1):
        assert proc.poll() is None and time.time() < deadline, "training ended before epoch 1 was saved"
        time.sleep(0.2)
    time.sleep(1.0)  # well into epoch 2
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = json.loads(state.read_text())["epoch"]
    assert done < 3
    res = subprocess.run(_train_cmd(root, out, 3) + ["--resume"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    assert [int(r["epoch"]) for r in _log(out)] == [1, 2, 3]


def test_resume_with_no_completed_epoch_starts_afresh(tmp_path):
    from facecmp.config import load_config, save_config

    root = make_class_tree(tmp_path / "d", classes=3, per_class=6)
    killed = tmp_path / "killed"  # as a run killed before its first epoch ended leaves it
    killed.mkdir()
    save_config(load_config("identity"), killed / "config.yaml")
    for out in (tmp_path / "never-started", killed):
        res = CliRunner().invoke(main, ["train", "--data", str(root), "--epochs", "1", "--batch-size", "8",
                                        "--out", str(out), "--resume"])
        assert res.exit_code == 0, res.output
        assert "starting afresh" in res.output
        assert [r["epoch"] for r in _log(out)] == ["1"] and (out / "model" / "meta.json").is_file()


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads child processes from /proc")
def test_killed_run_takes_its_crop_workers_with_it(tmp_path):
    orl = need_data("orl")  # 400 photos: enough for aligned crops in worker processes
    config = tmp_path / "align.yaml"
    config.write_text("data:\n  crop: {method: align, detector: mtcnn}\n")
    env = {**os.environ, "FACECMP_CACHE": str(tmp_path / "cache")}
    cmd = _train_cmd(orl, tmp_path / "run", 1) + ["--config", str(config)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=env)
    seen, workers = "", []
    deadline = time.time() + 120
    while not workers:
        assert proc.poll() is None and time.time() < deadline, "no crop workers started"
        seen += proc.stderr.read(1)
        if "preparing crops" in seen:
            workers = _children(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 60
    while any(Path(f"/proc/{pid}").exists() for pid in workers):
        assert time.time() < deadline, "crop workers outlived the terminated command"
        time.sleep(0.2)


def test_init_starts_from_another_models_backbone(tmp_path, tiny_model):
    import numpy as np

    from facecmp.modeldir import init_backbone, load_net
    from facecmp.models import Backbone

    source, _ = load_net(tiny_model)
    fresh = Backbone("resnet18", "prelu")  # conv/BN tensors match; PReLU slopes keep defaults
    assert init_backbone(fresh, tiny_model) == len(source.backbone.state_dict())
    a = source.backbone.state_dict()["net.conv1.weight"].numpy()
    assert np.allclose(fresh.state_dict()["net.conv1.weight"].numpy(), a)
    root = make_class_tree(tmp_path / "d", classes=3, per_class=6)
    out = tmp_path / "run"
    res = CliRunner().invoke(main, ["train", "--data", str(root), "--epochs", "1",
                                    "--batch-size", "8", "--init", str(tiny_model), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "backbone starts from" in res.output
    meta = json.loads((out / "model" / "meta.json").read_text())
    origin = json.loads((tiny_model / "meta.json").read_text())
    assert meta["initialized_from"]["model"] == str(tiny_model)
    assert meta["initialized_from"]["epochs_trained"] == origin["epochs_trained"]
    res = CliRunner().invoke(main, ["train", "--data", str(root), "--init", str(tmp_path), "--out",
                                    str(tmp_path / "r2")])
    assert res.exit_code != 0 and "not a facecmp model" in res.output


def test_init_restarts_a_classifier_head_only_over_the_same_classes(tiny_mask):
    import dataclasses

    import numpy as np

    from facecmp.modeldir import init_head, load_net, open_model
    from facecmp.models import build_head

    source, meta = load_net(tiny_mask, with_head=True)
    head = build_head(meta.head, len(meta.classes))
    before = head.state_dict()["fc.weight"].numpy().copy()
    assert init_head(head, tiny_mask, dataclasses.replace(meta, classes=meta.classes[::-1])) is False
    assert np.array_equal(head.state_dict()["fc.weight"].numpy(), before)
    assert init_head(head, tiny_mask, open_model(tiny_mask)) is True
    assert np.allclose(head.state_dict()["fc.weight"].numpy(), source.head.state_dict()["fc.weight"].numpy())
    root = tiny_mask.parent.parent / "data"
    res = CliRunner().invoke(main, ["train", "--task", "mask", "--data", str(root), "--epochs", "1",
                                    "--batch-size", "8", "--init", str(tiny_mask),
                                    "--out", str(tiny_mask.parent.parent / "warm")])
    assert res.exit_code == 0, res.output
    assert "head starts from" in res.output


def test_keep_epochs_saves_every_epochs_weights_as_a_model(tmp_path):
    import numpy as np

    from facecmp.modeldir import load_net

    root = tmp_path / "data"
    for split, n in (("train", 8), ("validation", 3)):
        make_class_tree(root / split, classes=2, per_class=n, size=32)
    (tmp_path / "cfg.yaml").write_text("data: {input_size: 32}\ntrain: {keep_epochs: true, patience: 0}\n")
    res = CliRunner().invoke(main, ["train", "--task", "mask", "--data", str(root), "--epochs", "2",
                                    "--batch-size", "8", "--config", str(tmp_path / "cfg.yaml"),
                                    "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "run" / "epochs").iterdir()) == ["01", "02"]
    (one, m1), (two, m2) = (load_net(tmp_path / "run" / "epochs" / e, with_head=True) for e in ("01", "02"))
    assert (m1.epochs_trained, m2.epochs_trained) == (1, 2)
    w1, w2 = one.head.state_dict()["fc.weight"].numpy(), two.head.state_dict()["fc.weight"].numpy()
    assert not np.allclose(w1, w2)


def test_validation_images_that_train_too_are_left_out_of_its_list(tmp_path):
    from conftest import train_tiny

    model = train_tiny(tmp_path, "mask", data={"input_size": 32, "val_into_train": 0.5})
    run = model.parent
    held = (run / "val_images.txt").read_text().split()
    report = json.loads((run / "data_report.json").read_text())
    # 2 classes x 3 validation images: 2 of each class train, 1 of each validates
    assert report["train_images"] == 2 * 8 + 4 and report["val_images"] == len(held) == 2
    assert all("/validation/" in p for p in held)
    assert sorted(Path(p).parent.name for p in held) == ["person_00", "person_01"]
