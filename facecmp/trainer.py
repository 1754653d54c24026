"""Training with paddle.Model.fit: the steps from data to a trained run directory."""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from facecmp import batches, datasets, device, distill, distributed, modeldir, onednn, plots, runlog
from facecmp.augment import augment
from facecmp.config import Config, config_from_dict, read_yaml, save_config
from facecmp.cropstore import CropStore, prepare_store
from facecmp.errors import FacecmpError
from facecmp.losses import make_loss
from facecmp.meta import ModelMeta
from facecmp.models import EMBEDDING_SIZE, build_net
from facecmp.preprocess import to_tensor_batch
from facecmp.runcallback import RunCallback, RunEpochCallback
from facecmp.runtime import import_paddle

paddle = import_paddle()


class CropDataset(paddle.io.Dataset):
    """Prepared uint8 crops -> (image, label, label, *teacher targets); the label feeds margin heads too.

    crops is an array or a CropStore; item i is crops[index[i]] (crops[i] without an index),
    read when it is asked for, so a store's crops are never all in memory.
    """

    def __init__(self, crops: np.ndarray | CropStore, labels: np.ndarray, meta: ModelMeta, aug_cfg=None,
                 seed: int = 0, targets: tuple[np.ndarray, ...] = (), index: np.ndarray | None = None):
        super().__init__()
        self.crops, self.labels, self.meta, self.aug_cfg = crops, labels, meta, aug_cfg
        self.targets, self.index = targets, index
        self.seed, self.rng = seed, np.random.default_rng(seed)
        self._worker: tuple[tuple[int, int], np.random.Generator] | None = None

    def _generator(self) -> np.random.Generator:
        """The augmentation draws: the dataset's own in the main process; in a data worker, one
        seeded from the epoch's seed Paddle gives the workers and the worker's number (each
        worker holds a copy of the dataset, whose one generator would repeat every draw in
        every worker and every epoch)."""
        info = paddle.io.get_worker_info()
        if info is None:
            return self.rng
        key = (info.seed, info.id)  # Paddle's seed is one per epoch, shared by the workers
        if self._worker is None or self._worker[0] != key:
            self._worker = (key, np.random.default_rng([self.seed, *key]))
        return self._worker[1]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        img = self.crops[i if self.index is None else self.index[i]]
        if self.aug_cfg is not None:
            img = augment(img, self.aug_cfg, self._generator())
        x = to_tensor_batch(img[None], self.meta)[0]
        y = np.asarray([self.labels[i]], dtype=np.int64)
        return (x, y, y, *(t[i] for t in self.targets))


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


def _start_state(cfg: Config, out: Path, resume: bool) -> tuple[Config, dict, bool]:
    """(config, state, resuming): a fresh state, or the saved one when resuming a run with a
    completed epoch; refuses to overwrite a finished run."""
    state = runlog.read_state(out)
    if resume and state is not None:
        saved = config_from_dict(read_yaml(out / "config.yaml"))
        # the only thing a resume may change is how many epochs to run in total
        epochs = dataclasses.replace(saved.train, epochs=cfg.train.epochs)
        return dataclasses.replace(saved, train=epochs), state, True
    if resume:  # killed before its first epoch ended (or never started): nothing is lost
        print(f"nothing to resume in {out} (no completed epoch): starting afresh", flush=True)
    elif state is not None:
        raise FacecmpError(f"{out} already holds a training run; use --resume or another --out")
    return cfg, {"epoch": 0, "rows": [], "best": -1.0, "wait": 0}, False


def _report(out: Path, folder, problems: list[str], n_train: int, n_val: int, write: bool) -> dict:
    report = {**folder.summary(), "train_images": n_train, "val_images": n_val,
              "unreadable_or_no_face": len(problems), "problems": problems[:1000],
              "dropped_classes": folder.dropped_classes}
    if write:
        (out / "data_report.json").write_text(json.dumps(report, indent=1))
    return report


def lineage(model_dir: Path) -> dict[str, Any]:
    """What a model started from, for meta.json: its head, epochs and own starting point."""
    init = modeldir.open_model(model_dir)
    return {"model": str(model_dir), "head": init.head, "epochs_trained": init.epochs_trained,
            "initialized_from": init.initialized_from}



@dataclasses.dataclass
class _Data:
    """The readable images of a run, cropped, with their train/validation indices."""

    folder: datasets.FaceFolder
    crops: CropStore
    train_idx: np.ndarray
    val_idx: np.ndarray
    report: dict


def _prepare_data(cfg: Config, roots: list[Path], out: Path, exclude: set[str], verbose: int,
                  ranks: distributed.Ranks = distributed.Ranks()) -> _Data:
    """Scan, split and crop the data; writes data_report.json and the held-out image lists."""
    folder, train_idx, val_idx = gather(cfg, roots, exclude)
    meta = ModelMeta.from_config(cfg)
    # the processes of a host share out the store's shards, then each waits for all of them
    crops = prepare_store(folder.paths, meta, progress=verbose > 0 and ranks.local_rank == 0,
                          part=ranks.crop_share())
    ok, problems = crops.ok, crops.problems
    train_idx, val_idx = train_idx[ok[train_idx]], val_idx[ok[val_idx]]
    report = _report(out, folder, problems, len(train_idx), len(val_idx), ranks.main)
    if len(train_idx) == 0 or len(np.unique(folder.labels[train_idx])) < 2:
        raise FacecmpError(f"too little readable training data in {', '.join(map(str, roots))}")
    if problems and ranks.main:
        print(f"skipped {len(problems)} unreadable or faceless images (see {out / 'data_report.json'})")
    if cfg.data.layout == "splits" and 0 < cfg.data.val_into_train < 1 and ranks.main:
        # the validation images that did not train, for `facecmp evaluate --data`
        (out / "val_images.txt").write_text("".join(f"{folder.paths[i]}\n" for i in val_idx))
    if cfg.data.split == "identity":
        held = sorted({folder.classes[i] for i in folder.labels[val_idx]})
        if ranks.main:
            (out / "val_identities.txt").write_text("\n".join(held) + "\n")
        val_idx = val_idx[:0]  # held-out identities are for pair evaluation, not the classifier
    return _Data(folder, crops, train_idx, val_idx, report)


def _teacher_targets(cfg: Config, paths: list[Path]) -> tuple[list[np.ndarray], list[tuple[str, float]], dict]:
    """Distillation targets per image, their (term, weight), and their provenance for meta.json."""
    targets, terms, provenance = [], [], {}
    t = cfg.train
    if t.teacher:
        target, provenance["distilled_from"] = distill.load_targets(t.teacher, paths)
        provenance["distilled_from"].update(loss=t.teacher_loss, weight=t.teacher_weight)
        targets.append(target)
        terms.append((t.teacher_loss, t.teacher_weight))
    if t.flip_teacher:
        target, info = distill.load_targets(t.flip_teacher, paths, "tools/flip_teacher.py")
        if target.shape[1] != EMBEDDING_SIZE:
            raise FacecmpError(f"flip teacher {t.flip_teacher}: {target.shape[1]}-d vectors, not a "
                               f"{EMBEDDING_SIZE}-d model's embeddings (make it with tools/flip_teacher.py)")
        made_with, ours = info.pop("convention", None), ModelMeta.from_config(cfg).image_convention()
        if made_with and made_with != ours:
            raise FacecmpError(f"flip teacher {t.flip_teacher}: made from {made_with}, but this training "
                               f"uses {ours}; make it with a model of the same crops")
        provenance["flip_distilled_from"] = {**info, "weight": t.flip_teacher_weight}
        targets.append(target)
        terms.append(("flip", t.flip_teacher_weight))
    return targets, terms, provenance


def _model_meta(cfg: Config, roots: list[Path], data: _Data, exclude: set[str], provenance: dict) -> ModelMeta:
    """Everything meta.json holds but the epoch count: preprocessing, network, data, lineage."""
    training_data = {"roots": [str(r) for r in roots],
                     **{k: v for k, v in data.report.items() if k not in ("problems", "dropped_classes")}}
    if exclude:
        training_data["excluded_identities"] = len(exclude)
    return ModelMeta.from_config(
        cfg, embedding_size=EMBEDDING_SIZE, num_classes=len(data.folder.classes), training_data=training_data,
        initialized_from=lineage(Path(cfg.model.init)) if cfg.model.init else None,
        classes=data.folder.classes if cfg.task != "identity" else None, **provenance)


def _network(cfg: Config, meta: ModelMeta, start_from_init: bool):
    """The seeded network; on a fresh run, its backbone (and head) from cfg.model.init."""
    paddle.seed(cfg.train.seed)
    np.random.seed(cfg.train.seed)
    net = build_net(cfg.model, meta.num_classes)
    if cfg.model.init and start_from_init:
        n = modeldir.init_backbone(net.backbone, cfg.model.init)
        print(f"backbone starts from {cfg.model.init} ({n} weight tensors)")
        if modeldir.init_head(net.head, cfg.model.init, meta):
            print(f"head starts from {cfg.model.init} (same classes)")
    return net


def _build_model(cfg: Config, net, targets: list[np.ndarray], terms: list[tuple[str, float]],
                 on: str = "cpu", warn: bool = True):
    """The prepared paddle.Model: Adam, the loss and accuracy, wrapped for distillation when
    there are teacher targets, in train.amp's precision where the device `on` runs it."""
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
    device.prepare(model, optimizer, loss, metric, cfg.train.amp, on, warn)
    return model


def _loaders(cfg: Config, data: _Data, meta: ModelMeta, targets: list[np.ndarray], epoch: int,
             ranks: distributed.Ranks = distributed.Ranks()):
    """(training data, validation dataset or None); the augmentation seed and identity batches
    follow the epoch so that a resumed run draws as a fresh one would. A Dataset is sharded
    across processes by Model.fit; identity batches are dealt out here."""
    labels = data.folder.labels

    def subset(idx):
        return tuple(target[idx] for target in targets)

    train_idx, val_idx = data.train_idx, data.val_idx
    train_ds = CropDataset(data.crops, labels[train_idx], meta, cfg.data.augment,
                           cfg.train.seed + epoch, subset(train_idx), index=train_idx)
    train_ds = distributed.log_samples(train_ds, data.folder.paths, train_idx)
    val_ds = CropDataset(data.crops, labels[val_idx], meta, targets=subset(val_idx), index=val_idx) \
        if len(val_idx) else None
    if not cfg.train.images_per_identity:
        return train_ds, val_ds
    sampler = batches.IdentityBatchSampler(labels[train_idx], cfg.train.batch_size,
                                           cfg.train.images_per_identity, cfg.train.seed, epoch)
    if ranks.world > 1:
        sampler = distributed.ShardedBatches(sampler, ranks.rank, ranks.world)
    return paddle.io.DataLoader(train_ds, batch_sampler=sampler, num_workers=cfg.train.num_workers), val_ds


def _fit(cfg: Config, model, state: dict, train_data, val_ds, n_train: int, verbose: int,
         callbacks: list) -> None:
    """Model.fit over the epochs still to run, unless the run is complete or stopped early."""
    remaining = cfg.train.epochs - state["epoch"]
    if remaining <= 0 or _stopped_early(cfg, state):
        return
    # Model.fit's own to_tensor call warns on every batch; it is Paddle's, not the user's
    with warnings.catch_warnings(), onednn.convolutions(model.network, cfg.train.onednn):
        warnings.filterwarnings("ignore", message="To copy construct from a tensor")
        model.fit(train_data, val_ds, batch_size=cfg.train.batch_size, epochs=remaining,
                  shuffle=True, verbose=verbose, log_freq=max(1, n_train // cfg.train.batch_size // 5),
                  num_workers=cfg.train.num_workers, callbacks=callbacks)


def _stopped_early(cfg: Config, state: dict) -> bool:
    p = cfg.train.patience
    return p > 0 and state.get("wait", 0) >= p and any(r.get("val_acc") is not None for r in state["rows"])


def train(cfg: Config, roots: list[Path], out: Path, resume: bool = False, exclude: set[str] | None = None,
          verbose: int = 2, callbacks: list[paddle.callbacks.Callback] | None = None) -> dict[str, Any]:
    """Train per cfg on the class folders in roots; everything lands in out. Returns a summary.

    callbacks go to Model.fit after the run's own; those that are RunEpochCallbacks are also
    told of each epoch once it is logged and saved (on rank 0 only, under Paddle's launcher).
    """
    ranks = distributed.init()  # under Paddle's launcher: only rank 0 writes in out
    cfg, state, resuming = _start_state(cfg, out, resume)
    run_on = device.use(cfg.train.device, distributed.launched())  # a missing GPU fails before any write
    # every rank has read the run's state before rank 0 rewrites config.yaml (a collective step)
    if not distributed.same_on_all_ranks(state["epoch"]):
        raise FacecmpError(f"the processes see different runs in {out}: it must be a folder all hosts share")
    if ranks.main:
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")
    exclude, callbacks = exclude or set(), list(callbacks or [])
    data = _prepare_data(cfg, roots, out, exclude, verbose, ranks)
    targets, terms, provenance = _teacher_targets(cfg, data.folder.paths)
    meta = _model_meta(cfg, roots, data, exclude, provenance)
    net = _network(cfg, meta, start_from_init=not resuming)
    model = _build_model(cfg, net, targets, terms, run_on, warn=ranks.main)
    if resuming:
        model.load(runlog.checkpoint_path(out, state))
    train_data, val_ds = _loaders(cfg, data, meta, targets, state["epoch"], ranks)
    run = RunCallback(cfg, out, state, meta, val_ds is not None,
                      [c for c in callbacks if isinstance(c, RunEpochCallback)])
    _fit(cfg, model, state, train_data, val_ds, len(data.train_idx), verbose, [run, *callbacks])
    if ranks.main:
        plots.training_curves(state["rows"], out / "curves.png")
    return {"epochs": state["epoch"], "best_epoch": state.get("best_epoch"), "best": state.get("best"),
            "model": str(out / "model"), "log": str(out / "log.csv"), "device": run_on,
            "amp": cfg.train.amp if device.amp_configs(cfg.train.amp, run_on, warn=False) else "none"}
