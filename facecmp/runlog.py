"""What a training run leaves on disk: the per-epoch log and resumable checkpoints.

A run directory holds log.csv, curves.png, config.yaml, data_report.json, the model
directory, and checkpoints/ with the state needed to resume after an interruption.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path
from typing import Any

from facecmp.errors import FacecmpError

LOG_FIELDS = ["epoch", "loss", "acc", "val_loss", "val_acc", "lr", "seconds"]
STATE = "state.json"


def write_log(rows: list[dict[str, Any]], path: Path) -> None:
    """Rewrite log.csv from the rows of every completed epoch."""
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, LOG_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def read_state(run_dir: Path) -> dict[str, Any] | None:
    """The resume state of a run, or None if it never finished an epoch."""
    path = run_dir / "checkpoints" / STATE
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError:
        raise FacecmpError(f"{path} is corrupt; delete {run_dir} and train again") from None


def save_checkpoint(model, run_dir: Path, state: dict[str, Any]) -> None:
    """Save weights + optimiser for the epoch just finished, then point state.json at them.

    state.json is replaced last and atomically, so a kill at any moment leaves the
    previous complete checkpoint in force.
    """
    ckpt_root = run_dir / "checkpoints"
    name = f"epoch_{state['epoch']:04d}"
    model.save(str(ckpt_root / name / "model"))
    tmp = ckpt_root / (STATE + ".tmp")
    tmp.write_text(json.dumps({**state, "checkpoint": name}, indent=1))
    os.replace(tmp, ckpt_root / STATE)
    for old in ckpt_root.glob("epoch_*"):
        if old.name != name:
            shutil.rmtree(old, ignore_errors=True)


def checkpoint_path(run_dir: Path, state: dict[str, Any]) -> str:
    """The Model.load path of the checkpoint a state points at."""
    return str(run_dir / "checkpoints" / state["checkpoint"] / "model")
