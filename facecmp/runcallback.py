"""The training run's own Paddle callback: LR schedule, margin warm-up, log.csv, checkpoints,
early stop; and the hook other callbacks use to follow the run's epochs.

Under Paddle's launcher every rank runs it: the epoch's figures are combined over the ranks,
so each rank decides alike (best epoch, early stop), and only rank 0 writes.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from facecmp import distributed, modeldir, plots, runlog
from facecmp.config import Config
from facecmp.meta import ModelMeta
from facecmp.runtime import import_paddle

paddle = import_paddle()


class RunEpochCallback(paddle.callbacks.Callback):
    """A callback for facecmp.trainer.train that is also told of each epoch once the run has
    logged and saved it (Paddle's own epoch events come before the validation pass ends)."""

    def on_run_epoch_end(self, row: dict[str, Any], meta: ModelMeta) -> None:
        """The epoch's log.csv row and the meta.json its model was saved with."""


class RunCallback(paddle.callbacks.Callback):
    """Per-epoch bookkeeping: LR schedule, margin warm-up, log.csv, checkpoints, early stop."""

    def __init__(self, cfg: Config, run_dir: Path, state: dict, meta: ModelMeta, has_val: bool,
                 followers: Sequence[RunEpochCallback] = ()):
        super().__init__()
        self.cfg, self.run_dir, self.state, self.meta, self.has_val = cfg, run_dir, state, meta, has_val
        self.followers = list(followers)
        self.row: dict[str, Any] = {}
        self.ranks = distributed.ranks()

    def on_epoch_begin(self, epoch, logs=None):
        e, t = self.state["epoch"], self.cfg.train
        lr = t.lr * (0.5 * (1 + math.cos(math.pi * e / t.epochs)) if t.lr_schedule == "cosine" else 1.0)
        self.model._optimizer.set_lr(lr)
        head = self.model.network.head
        if hasattr(head, "margin") and self.cfg.model.margin_warmup_epochs > 0:
            head.margin = self.cfg.model.margin * min(1.0, e / self.cfg.model.margin_warmup_epochs)
        self.row = {"epoch": e + 1, "lr": round(lr, 8), "_t0": time.time()}
        self.sums = {"train": [0.0, 0], "eval": [0.0, 0]}

    def _add_loss(self, mode: str, logs) -> None:
        # Paddle reports each batch's loss (this rank's) and size (all ranks'); the log wants the epoch mean
        n = int((logs or {}).get("batch_size", 1))
        n = n / self.ranks.world if self.ranks.world > 1 else n
        self.sums[mode][0] += _scalar(logs.get("loss")) * n
        self.sums[mode][1] += n

    def _mean(self, mode: str, acc: float | None = None) -> tuple[float | None, float | None]:
        """(mean loss, accuracy) of the epoch: over every rank's samples when there are several
        (acc is this rank's; validation accuracy is already over all of them, so pass None)."""
        total, n = self.sums[mode]
        if self.ranks.world > 1:
            total, n, acc_total = distributed.sum_across_ranks([total, n, (acc or 0.0) * n])
            acc = None if acc is None or not n else round(acc_total / n, 6)
        return (round(total / n, 6) if n else None), acc

    def on_train_batch_end(self, step, logs=None):
        self._add_loss("train", logs)

    def on_eval_batch_end(self, step, logs=None):
        self._add_loss("eval", logs)

    def on_epoch_end(self, epoch, logs=None):
        # before validation, so that every rank validates (and rank 0 saves) the same model
        distributed.average_buffers(self.model.network)
        loss, acc = self._mean("train", _scalar((logs or {}).get("acc")))
        self.row.update(loss=loss, acc=acc)
        if not self.has_val:
            self._finish()

    def on_eval_end(self, logs=None):
        self.row.update(val_loss=self._mean("eval")[0], val_acc=_scalar((logs or {}).get("acc")))
        self._finish()

    def _finish(self) -> None:
        seconds = round(time.time() - self.row.pop("_t0"), 1)
        row = {**self.row, "seconds": seconds}
        st = self.state
        st["epoch"] += 1
        st["rows"].append(row)
        score = row.get("val_acc") if self.has_val else row["acc"]
        meta = dataclasses.replace(self.meta, epochs_trained=st["epoch"])
        best = score is not None and score > st.get("best", -1.0)
        if best:
            st.update(best=score, best_epoch=st["epoch"], wait=0)
        else:
            st["wait"] = st.get("wait", 0) + 1
        patience = self.cfg.train.patience
        stop = self.has_val and patience > 0 and st["wait"] >= patience
        if stop:
            self.model.stop_training = True
        if not self.ranks.main:  # the same state as rank 0's, kept in memory only
            return
        self._save(meta, best)
        if stop:
            print(f"early stopping: no validation gain for {patience} epochs", flush=True)
        for follower in self.followers:
            follower.on_run_epoch_end(row, meta)

    def _save(self, meta: ModelMeta, best: bool) -> None:
        """The epoch's model (if best), kept epoch, checkpoint, log.csv and curves."""
        st, with_head = self.state, self.cfg.task != "identity"
        if best:
            modeldir.save_model(self.run_dir / "model", self.model.network, meta, with_head=with_head)
        if self.cfg.train.keep_epochs:  # e.g. to average the last epochs (tools/average_weights.py)
            modeldir.save_model(self.run_dir / "epochs" / f"{st['epoch']:02d}", self.model.network, meta,
                                with_head=with_head)
        runlog.save_checkpoint(self.model, self.run_dir, st)
        runlog.write_log(st["rows"], self.run_dir / "log.csv")
        plots.training_curves(st["rows"], self.run_dir / "curves.png")  # kept current if interrupted


def _scalar(v) -> float | None:
    if v is None:
        return None
    v = v[0] if isinstance(v, (list, tuple)) else v
    return round(float(np.asarray(v).reshape(-1)[0]), 6)
