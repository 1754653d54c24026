"""Training with paddle.Model.fit: data, network, callbacks, and the run directory."""

from __future__ import annotations

import dataclasses
import json
import math
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from facecmp import batches, datasets, distill, modeldir, onednn, plots, runlog
from facecmp.augment import augment
from facecmp.config import Config, config_from_dict, read_yaml, save_config
from facecmp.errors import FacecmpError
from facecmp.models import EMBEDDING_SIZE, build_net, paddle
from facecmp.preprocess import to_tensor_batch


class CropDataset(paddle.io.Dataset):
    """Prepared uint8 crops -> (image, label, label, *teacher targets); the label feeds margin heads too."""

    def __init__(self, crops: np.ndarray, labels: np.ndarray, meta: dict, aug_cfg=None, seed: int = 0,
                 targets: tuple[np.ndarray, ...] = ()):
        super().__init__()
        self.crops, self.labels, self.meta, self.aug_cfg = crops, labels, meta, aug_cfg
        self.targets = targets
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        img = self.crops[i]
        if self.aug_cfg is not None:
            img = augment(img, self.aug_cfg, self.rng)
        x = to_tensor_batch(img[None], self.meta)[0]
        y = np.asarray([self.labels[i]], dtype=np.int64)
        return (x, y, y, *(t[i] for t in self.targets))


def preprocessing_meta(cfg: Config) -> dict[str, Any]:
    """The preprocessing part of meta.json, taken from the config."""
    d = cfg.data
    return {"input_size": d.input_size, "color": d.color, "mean": list(d.mean),
            "std": list(d.std), "crop": dataclasses.asdict(d.crop)}


def split_dir(root: Path, name: str) -> Path:
    """root/<name>, matching split folder names case-insensitively (Train, train)."""
    for child in sorted(root.iterdir()) if root.is_dir() else []:
        if child.is_dir() and child.name.lower() == name.lower():
            return child
    raise FacecmpError(f"{root} has no '{name}' folder (layout: root/<split>/<class>/*)")


def gather(cfg: Config, roots: list[Path], exclude: set[str]) -> tuple[datasets.FaceFolder, np.ndarray, np.ndarray]:
    """Scan the data and split it; returns (folder, train indices, val indices)."""
    d = cfg.data
    if d.layout == "identities":
        folder = datasets.scan_classes(roots, d.min_images, exclude)
        train, val = datasets.split_indices(folder.labels, d.split, d.val_fraction, d.seed)
        return folder, train, val
    if len(roots) != 1:
        raise FacecmpError("the 'splits' layout takes exactly one --data folder")
    train_f = datasets.scan_classes([split_dir(roots[0], d.splits[0])], d.min_images)
    val_f = datasets.scan_classes([split_dir(roots[0], d.splits[1])], 1)
    unknown = set(val_f.classes) - set(train_f.classes)
    if unknown:
        raise FacecmpError(f"validation classes not in training data: {', '.join(sorted(unknown))}")
    val_labels = np.asarray([train_f.classes.index(val_f.classes[l]) for l in val_f.labels])
    folder = datasets.FaceFolder(train_f.classes, train_f.paths + val_f.paths,
                                 np.concatenate([train_f.labels, val_labels]), train_f.dropped_classes)
    n = len(train_f.paths)
    # the validation images that train too are drawn per class, seeded; the rest validate
    if d.val_into_train >= 1:
        val, moved = np.zeros(0, dtype=np.int64), np.arange(len(val_labels))
    else:
        val, moved = datasets.split_indices(val_labels, "image", d.val_into_train, d.seed)
    return folder, np.concatenate([np.arange(n), n + moved]), n + val


class RunCallback(paddle.callbacks.Callback):
    """Per-epoch bookkeeping: LR schedule, margin warm-up, log.csv, checkpoints, early stop."""

    def __init__(self, cfg: Config, run_dir: Path, state: dict, meta: dict, has_val: bool):
        super().__init__()
        self.cfg, self.run_dir, self.state, self.meta, self.has_val = cfg, run_dir, state, meta, has_val
        self.row: dict[str, Any] = {}

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
        # Paddle reports each batch's loss; the log wants the epoch mean
        n = int((logs or {}).get("batch_size", 1))
        self.sums[mode][0] += _scalar(logs.get("loss")) * n
        self.sums[mode][1] += n

    def _mean(self, mode: str) -> float | None:
        total, n = self.sums[mode]
        return round(total / n, 6) if n else None

    def on_train_batch_end(self, step, logs=None):
        self._add_loss("train", logs)

    def on_eval_batch_end(self, step, logs=None):
        self._add_loss("eval", logs)

    def on_epoch_end(self, epoch, logs=None):
        self.row.update(loss=self._mean("train"), acc=_scalar((logs or {}).get("acc")))
        if not self.has_val:
            self._finish()

    def on_eval_end(self, logs=None):
        self.row.update(val_loss=self._mean("eval"), val_acc=_scalar((logs or {}).get("acc")))
        self._finish()

    def _finish(self) -> None:
        seconds = round(time.time() - self.row.pop("_t0"), 1)
        row = {**self.row, "seconds": seconds}
        st = self.state
        st["epoch"] += 1
        st["rows"].append(row)
        score = row.get("val_acc") if self.has_val else row["acc"]
        meta, with_head = {**self.meta, "epochs_trained": st["epoch"]}, self.cfg.task != "identity"
        if score is not None and score > st.get("best", -1.0):
            st.update(best=score, best_epoch=st["epoch"], wait=0)
            modeldir.save_model(self.run_dir / "model", self.model.network, meta, with_head=with_head)
        else:
            st["wait"] = st.get("wait", 0) + 1
        if self.cfg.train.keep_epochs:  # e.g. to average the last epochs (tools/average_weights.py)
            modeldir.save_model(self.run_dir / "epochs" / f"{st['epoch']:02d}", self.model.network, meta,
                                with_head=with_head)
        runlog.save_checkpoint(self.model, self.run_dir, st)
        runlog.write_log(st["rows"], self.run_dir / "log.csv")
        plots.training_curves(st["rows"], self.run_dir / "curves.png")  # kept current if interrupted
        patience = self.cfg.train.patience
        if self.has_val and patience > 0 and st["wait"] >= patience:
            print(f"early stopping: no validation gain for {patience} epochs", flush=True)
            self.model.stop_training = True


def _scalar(v) -> float | None:
    if v is None:
        return None
    v = v[0] if isinstance(v, (list, tuple)) else v
    return round(float(np.asarray(v).reshape(-1)[0]), 6)


class FocalLoss(paddle.nn.Layer):
    """Focal loss (Lin et al.) for imbalanced classes, with optional label smoothing."""

    def __init__(self, gamma: float = 2.0, label_smoothing: float = 0.0):
        super().__init__()
        self.gamma, self.smoothing = gamma, label_smoothing

    def forward(self, logits, label):  # noqa: D102
        logp = paddle.nn.functional.log_softmax(logits, axis=1)
        onehot = paddle.nn.functional.one_hot(paddle.reshape(label, [-1]), logits.shape[1])
        target = onehot * (1 - self.smoothing) + self.smoothing / logits.shape[1]
        weight = (1 - paddle.exp(logp)) ** self.gamma
        return paddle.mean(paddle.sum(-target * weight * logp, axis=1))


def make_loss(cfg: Config):
    """Cross-entropy (with label smoothing) or focal loss, per the config."""
    t = cfg.train
    if t.loss == "focal":
        return FocalLoss(t.focal_gamma, t.label_smoothing)
    if t.label_smoothing > 0:  # Paddle's own label smoothing rejects integer labels
        return FocalLoss(0.0, t.label_smoothing)  # gamma 0: plain cross-entropy
    return paddle.nn.CrossEntropyLoss()


def _start_state(cfg: Config, out: Path, resume: bool) -> tuple[Config, dict]:
    """Fresh state, or the saved one when resuming; refuses to overwrite a finished run."""
    state = runlog.read_state(out)
    if resume:
        if state is None:
            raise FacecmpError(f"nothing to resume in {out} (no completed epoch)")
        saved = config_from_dict(read_yaml(out / "config.yaml"))
        # the only thing a resume may change is how many epochs to run in total
        return dataclasses.replace(saved, train=dataclasses.replace(saved.train, epochs=cfg.train.epochs)), state
    if state is not None:
        raise FacecmpError(f"{out} already holds a training run; use --resume or another --out")
    return cfg, {"epoch": 0, "rows": [], "best": -1.0, "wait": 0}


def _report(out: Path, folder, problems: list[str], n_train: int, n_val: int) -> dict:
    report = {**folder.summary(), "train_images": n_train, "val_images": n_val,
              "unreadable_or_no_face": len(problems), "problems": problems[:1000],
              "dropped_classes": folder.dropped_classes}
    (out / "data_report.json").write_text(json.dumps(report, indent=1))
    return report


def lineage(model_dir: Path) -> dict[str, Any]:
    """What a model started from, for meta.json: its head, epochs and own starting point."""
    init = modeldir.read_meta(model_dir)
    return {"model": str(model_dir), "head": init.get("head"), "epochs_trained": init.get("epochs_trained"),
            "initialized_from": init.get("initialized_from")}


def train(cfg: Config, roots: list[Path], out: Path, resume: bool = False,
          exclude: set[str] | None = None, verbose: int = 2) -> dict[str, Any]:
    """Train per cfg on the class folders in roots; everything lands in out. Returns a summary."""
    out.mkdir(parents=True, exist_ok=True)
    cfg, state = _start_state(cfg, out, resume)
    save_config(cfg, out / "config.yaml")
    folder, train_idx, val_idx = gather(cfg, roots, exclude or set())
    meta = preprocessing_meta(cfg)
    crops, ok, problems = datasets.prepare_crops(folder.paths, meta, progress=verbose > 0)
    train_idx, val_idx = train_idx[ok[train_idx]], val_idx[ok[val_idx]]
    report = _report(out, folder, problems, len(train_idx), len(val_idx))
    if len(train_idx) == 0 or len(np.unique(folder.labels[train_idx])) < 2:
        raise FacecmpError(f"too little readable training data in {', '.join(map(str, roots))}")
    if problems:
        print(f"skipped {len(problems)} unreadable or faceless images (see {out / 'data_report.json'})")
    if cfg.data.layout == "splits" and 0 < cfg.data.val_into_train < 1:
        # the validation images that did not train, for `facecmp evaluate --data`
        (out / "val_images.txt").write_text("".join(f"{folder.paths[i]}\n" for i in val_idx))
    if cfg.data.split == "identity":
        held = sorted({folder.classes[i] for i in folder.labels[val_idx]})
        (out / "val_identities.txt").write_text("\n".join(held) + "\n")
        val_idx = val_idx[:0]  # held-out identities are for pair evaluation, not the classifier
    meta.update(task=cfg.task, arch=cfg.model.arch, activation=cfg.model.activation,
                head=cfg.model.head, embedding_size=EMBEDDING_SIZE, num_classes=len(folder.classes),
                metric="euclid", threshold=None,
                training_data={"roots": [str(r) for r in roots],
                               **{k: v for k, v in report.items() if k not in ("problems", "dropped_classes")}})
    if exclude:
        meta["training_data"]["excluded_identities"] = len(exclude)
    if cfg.model.init:
        meta["initialized_from"] = lineage(Path(cfg.model.init))
    if cfg.task != "identity":
        meta["classes"] = folder.classes
    targets, terms = [], []  # teacher targets per image, and their (term, weight)
    t = cfg.train
    if t.teacher:
        target, meta["distilled_from"] = distill.load_targets(t.teacher, folder.paths)
        meta["distilled_from"].update(loss=t.teacher_loss, weight=t.teacher_weight)
        targets.append(target)
        terms.append((t.teacher_loss, t.teacher_weight))
    if t.flip_teacher:
        target, meta["flip_distilled_from"] = distill.load_targets(t.flip_teacher, folder.paths,
                                                                   "tools/flip_teacher.py")
        if target.shape[1] != EMBEDDING_SIZE:
            raise FacecmpError(f"flip teacher {t.flip_teacher}: {target.shape[1]}-d vectors, not a "
                               f"{EMBEDDING_SIZE}-d model's embeddings (make it with tools/flip_teacher.py)")
        made_with, ours = meta["flip_distilled_from"].pop("convention", None), datasets.image_convention(meta)
        if made_with and made_with != ours:
            raise FacecmpError(f"flip teacher {t.flip_teacher}: made from {made_with}, but this training "
                               f"uses {ours}; make it with a model of the same crops")
        meta["flip_distilled_from"].update(weight=t.flip_teacher_weight)
        targets.append(target)
        terms.append(("flip", t.flip_teacher_weight))
    paddle.seed(cfg.train.seed)
    np.random.seed(cfg.train.seed)
    net = build_net(cfg.model, len(folder.classes))
    if cfg.model.init and not resume:
        n = modeldir.init_backbone(net.backbone, cfg.model.init)
        print(f"backbone starts from {cfg.model.init} ({n} weight tensors)")
        if modeldir.init_head(net.head, cfg.model.init, meta):
            print(f"head starts from {cfg.model.init} (same classes)")
    size = cfg.data.input_size
    label_specs = [paddle.static.InputSpec([None, 1], "int64", "label")]
    loss, metric = make_loss(cfg), paddle.metric.Accuracy()
    if targets:
        net = distill.DistillNet(net, targets[0].shape[1], project=terms[0][0] == "projection")
        label_specs += [paddle.static.InputSpec([None, target.shape[1]], "float32", f"teacher{k}")
                        for k, target in enumerate(targets)]
        loss, metric = distill.DistillLoss(loss, terms), distill.HeadAccuracy()
    model = paddle.Model(net, inputs=[paddle.static.InputSpec([None, 3, size, size], "float32", "image"),
                                      paddle.static.InputSpec([None, 1], "int64", "label")],
                         labels=label_specs)
    optimizer = paddle.optimizer.Adam(cfg.train.lr, parameters=net.parameters(),
                                      weight_decay=cfg.train.weight_decay or None)
    model.prepare(optimizer, loss, metric)
    if resume:
        model.load(runlog.checkpoint_path(out, state))
    labels = folder.labels

    def subset(idx):
        return tuple(target[idx] for target in targets)

    train_ds = CropDataset(crops[train_idx], labels[train_idx], meta, cfg.data.augment,
                           cfg.train.seed + state["epoch"], subset(train_idx))
    val_ds = CropDataset(crops[val_idx], labels[val_idx], meta, targets=subset(val_idx)) if len(val_idx) else None
    train_data = train_ds
    if cfg.train.images_per_identity:
        sampler = batches.IdentityBatchSampler(labels[train_idx], cfg.train.batch_size,
                                               cfg.train.images_per_identity, cfg.train.seed, state["epoch"])
        train_data = paddle.io.DataLoader(train_ds, batch_sampler=sampler, num_workers=cfg.train.num_workers)
    remaining = cfg.train.epochs - state["epoch"]
    if remaining > 0 and not _stopped_early(cfg, state):
        cb = RunCallback(cfg, out, state, meta, val_ds is not None)
        # Model.fit's own to_tensor call warns on every batch; it is Paddle's, not the user's
        with warnings.catch_warnings(), onednn.convolutions(net, cfg.train.onednn):
            warnings.filterwarnings("ignore", message="To copy construct from a tensor")
            model.fit(train_data, val_ds, batch_size=cfg.train.batch_size, epochs=remaining,
                      shuffle=True, verbose=verbose,
                      log_freq=max(1, len(train_ds) // cfg.train.batch_size // 5),
                      num_workers=cfg.train.num_workers, callbacks=[cb])
    plots.training_curves(state["rows"], out / "curves.png")
    return {"epochs": state["epoch"], "best_epoch": state.get("best_epoch"), "best": state.get("best"),
            "model": str(out / "model"), "log": str(out / "log.csv")}


def _stopped_early(cfg: Config, state: dict) -> bool:
    p = cfg.train.patience
    return p > 0 and state.get("wait", 0) >= p and any(r.get("val_acc") is not None for r in state["rows"])
