"""`facecmp train` in two processes under Paddle's launcher (CPU, gloo): each rank's shard,
only rank 0 writing, resume, and a half-set launch environment as a one-line error."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import make_class_tree, need_data

from facecmp.cli import main
from facecmp.errors import FacecmpError

LAUNCH = {"PADDLE_TRAINERS_NUM": "2", "PADDLE_TRAINER_ID": "1", "PADDLE_CURRENT_ENDPOINT": "127.0.0.1:6171",
          "PADDLE_TRAINER_ENDPOINTS": "127.0.0.1:6170,127.0.0.1:6171", "PADDLE_RANK_IN_NODE": "1"}


def test_ranks_come_from_the_launchers_environment():
    from facecmp.distributed import Ranks, ranks

    assert ranks({}) == Ranks(0, 1, 0) and ranks({}).main
    assert ranks(LAUNCH) == Ranks(1, 2, 1) and not ranks(LAUNCH).main
    for broken, words in (({"PADDLE_TRAINERS_NUM": "2"}, "half set"),
                          ({**LAUNCH, "PADDLE_TRAINER_ID": "2"}, "does not add up"),
                          ({**LAUNCH, "PADDLE_TRAINER_ENDPOINTS": "127.0.0.1:6171"}, "does not add up"),
                          ({**LAUNCH, "PADDLE_TRAINERS_NUM": "two"}, "integers")):
        with pytest.raises(FacecmpError, match=words):
            ranks(broken)


def test_the_processes_of_a_host_share_out_the_crop_shards():
    from facecmp.distributed import Ranks, ranks

    assert ranks({}).crop_share() == (0, 1)
    assert ranks({**LAUNCH, "PADDLE_LOCAL_SIZE": "2"}) == Ranks(1, 2, 1, 2)
    assert ranks({**LAUNCH, "PADDLE_LOCAL_SIZE": "2"}).crop_share() == (1, 2)
    assert ranks(LAUNCH).crop_share() is None  # how many share the host is unknown: rank 0 prepares
    with pytest.raises(FacecmpError, match="does not add up"):
        ranks({**LAUNCH, "PADDLE_LOCAL_SIZE": "1"})


def test_identity_batches_are_dealt_out_whole_and_evenly():
    from facecmp.distributed import ShardedBatches

    batches = [[i, i + 100] for i in range(5)]  # five batches for two ranks: rank 1 repeats batch 0
    shards = [list(ShardedBatches(batches, rank, 2)) for rank in (0, 1)]
    assert shards == [[[0, 100], [2, 102], [4, 104]], [[1, 101], [3, 103], [0, 100]]]
    assert len(ShardedBatches(batches, 0, 2)) == 3


def test_a_half_set_launch_environment_is_a_one_line_error(tmp_path, monkeypatch):
    root = make_class_tree(tmp_path / "d", classes=3, per_class=6)
    monkeypatch.setenv("PADDLE_TRAINERS_NUM", "2")
    for key in ("PADDLE_TRAINER_ID", "PADDLE_CURRENT_ENDPOINT", "PADDLE_TRAINER_ENDPOINTS"):
        monkeypatch.delenv(key, raising=False)
    res = CliRunner().invoke(main, ["train", "--data", str(root), "--epochs", "1", "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "half set" in res.output and "PADDLE_TRAINER_ID" in res.output
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


# The training script the launcher starts: facecmp's own CLI, with an audit hook that lists what
# each rank writes in --out (files opened for writing, folders made, files renamed or removed).
AUDITED_CLI = """import os, sys
out = os.path.abspath(sys.argv[sys.argv.index("--out") + 1])
record = os.path.join(os.environ["WRITES"], "rank-" + os.environ["PADDLE_TRAINER_ID"] + ".txt")
EVENTS = ("open", "os.mkdir", "os.rename", "os.remove", "os.rmdir", "shutil.rmtree")
busy = []
def audit(event, args):
    if busy or event not in EVENTS or isinstance(args[0], int):
        return
    paths = [os.fsdecode(a) for a in (args[:2] if event == "os.rename" else args[:1])]
    if not any(os.path.abspath(p).startswith(out) for p in paths):
        return
    if event == "open" and not (set(args[1] or "") & set("wax+") or (args[2] or 0) & (os.O_WRONLY | os.O_RDWR)):
        return  # opened for reading
    busy.append(1)  # the record's own open is not audited
    with open(record, "a") as f:
        f.write(event + " " + " ".join(paths) + "\\n")
    busy.pop()
sys.addaudithook(audit)
from facecmp.cli import main
main(prog_name="facecmp")
"""


def _launch(tmp_path: Path, name: str, args: list[str]) -> tuple[Path, list[list[str]]]:
    """Run `facecmp train ARGS` in 2 processes under the launcher: the folder of the ranks'
    sample logs, and what each rank wrote in --out."""
    script, samples, writes = tmp_path / "audited_cli.py", tmp_path / f"{name}-samples", tmp_path / f"{name}-writes"
    script.write_text(AUDITED_CLI)
    writes.mkdir()
    cmd = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2",
           "--log_dir", str(tmp_path / f"{name}-log"), str(script), "train", *args]
    res = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=900,
                         env={**os.environ, "FACECMP_SAMPLE_LOG": str(samples), "WRITES": str(writes)})
    logs = "".join(p.read_text()[-1500:] for p in sorted((tmp_path / f"{name}-log").glob("workerlog.*")))
    assert res.returncode == 0, res.stdout[-1500:] + res.stderr[-1500:] + logs
    wrote = [(writes / f"rank-{r}.txt").read_text().splitlines() if (writes / f"rank-{r}.txt").exists() else []
             for r in (0, 1)]
    return samples, wrote


def _log(out: Path) -> list[dict]:
    with open(out / "log.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_two_processes_train_disjoint_shards_and_only_rank_0_writes(tmp_path):
    import numpy as np

    import facecmp

    orl = need_data("orl")
    out = tmp_path / "run"
    samples, wrote = _launch(tmp_path, "first", ["--data", str(orl), "--epochs", "1", "--out", str(out)])
    seen = [(samples / f"rank-{r}.txt").read_text().split() for r in (0, 1)]
    report = json.loads((out / "data_report.json").read_text())
    assert report["train_images"] == 360  # 400 images less 10% validation: 180 a rank, none twice
    assert [len(s) for s in seen] == [180, 180] and all(len(set(s)) == 180 for s in seen)
    assert not set(seen[0]) & set(seen[1])
    for name in ("log.csv", "curves.png", "config.yaml", "model/meta.json", "model/backbone.pdparams",
                 "checkpoints/state.json"):
        assert (out / name).is_file(), name
        assert any(name in line for line in wrote[0]), f"the audit missed rank 0 writing {name}"
    assert wrote[1] == [], f"rank 1 wrote in the run directory: {wrote[1][:5]}"
    assert [r["epoch"] for r in _log(out)] == ["1"] and float(_log(out)[0]["val_acc"]) >= 0

    _, wrote = _launch(tmp_path, "resumed", ["--data", str(orl), "--epochs", "2", "--out", str(out), "--resume"])
    assert [r["epoch"] for r in _log(out)] == ["1", "2"]
    assert json.loads((out / "checkpoints" / "state.json").read_text())["epoch"] == 2
    assert wrote[0] and wrote[1] == [], f"rank 1 wrote in the run directory: {wrote[1][:5]}"

    model = facecmp.load_model(out / "model")
    emb = facecmp.embed([orl / "s1" / "1.pgm", orl / "s1" / "2.pgm", orl / "s2" / "1.pgm"], model)
    assert emb.vectors.shape == (3, 512) and emb.ok.all() and np.isfinite(emb.vectors).all()
    assert json.loads((out / "model" / "meta.json").read_text())["num_classes"] == 40
