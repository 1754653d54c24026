"""Ablations of a classifier task (mask, expression): same seeds, same budget, test accuracy per epoch.

A spec YAML names the task, its data folder under the data root and the variants, each a
set of config overrides (the config schema of facecmp/config.py):

    task: expression
    data: fer2013
    variants:
      attention+focal+aug: {}
      plain: {model: {arch: resnet18, activation: relu}}

Every (variant, seed) run trains with facecmp.trainer.train on the same per-seed subset of
the train split, early stopping off, and scores the test split after every epoch. The
first variant is the baseline the others are compared with.

Usage:
    python tools/ablation.py SPEC [--data DIR] [--epochs 5] [--seeds 0 1 2] [--only NAME ...]
        [--train-subset 1000] [--val-subset 100] [--test-subset 0] [--out outputs/ablation]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import sys
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from facecmp import datasets, trainer  # noqa: E402
from facecmp.config import load_config  # noqa: E402
from facecmp.cropstore import prepare_crops  # noqa: E402
from facecmp.evaluate import scan_labelled  # noqa: E402
from facecmp.meta import ModelMeta  # noqa: E402
from facecmp.errors import one_line_errors  # noqa: E402
from facecmp.preprocess import run_batches  # noqa: E402
from facecmp.runtime import import_paddle  # noqa: E402
from facecmp.runcallback import RunEpochCallback  # noqa: E402
from facecmp.trainer import split_dir  # noqa: E402


def read_spec(path: Path) -> dict:
    """The spec: task, data folder name and an ordered mapping of variant -> overrides."""
    spec = yaml.safe_load(Path(path).read_text()) or {}
    variants = spec.get("variants")
    if spec.get("task") not in ("mask", "expression") or not isinstance(variants, dict) or not variants:
        raise SystemExit(f"{path}: needs task (mask|expression), data and a non-empty variants mapping")
    for overrides in variants.values():
        load_config(spec["task"], None, overrides or {})  # fail now on a bad key, not after hours
    return spec


def deep_merge(base: dict, extra: dict) -> dict:
    """base with extra applied, nested mappings merged key by key."""
    out = dict(base)
    for key, value in extra.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) \
            else value
    return out


def link_subset(src: Path, dst: Path, per_class: int, seed: int) -> None:
    """dst/<class>/ with per_class randomly chosen files of src/<class>/ (0: all), as symlinks."""
    rng = np.random.default_rng(seed)
    for cdir in sorted(p for p in src.iterdir() if p.is_dir()):
        files = sorted(p for p in cdir.iterdir() if p.is_file())
        if 0 < per_class < len(files):
            files = [files[i] for i in sorted(rng.choice(len(files), per_class, replace=False))]
        (dst / cdir.name).mkdir(parents=True, exist_ok=True)
        for f in files:
            link = dst / cdir.name / f.name
            if not link.exists():
                os.symlink(f.resolve(), link)


def subset_tree(data: Path, out: Path, seed: int, train_n: int, val_n: int) -> Path:
    """The seed's train/validation subset; every variant trains on the same one."""
    root = out / "data" / f"seed{seed}-train{train_n}-val{val_n}"
    if not (root / "done").exists():
        shutil.rmtree(root, ignore_errors=True)
        link_subset(split_dir(data, "train"), root / "train", train_n, seed)
        link_subset(split_dir(data, "validation"), root / "validation", val_n, seed + 1000)
        (root / "done").write_text("")
    return root


class TestSet:
    """The test split (or a fixed per-class subset of it), cropped once per preprocessing."""

    def __init__(self, data: Path, classes: list[str], per_class: int = 0) -> None:
        paths, labels = scan_labelled(split_dir(data, "test"), classes)
        if per_class:
            rng = np.random.default_rng(12345)
            keep = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:per_class]
                                   for c in range(len(classes))])
            paths, labels = [paths[i] for i in np.sort(keep)], labels[np.sort(keep)]
        self.paths, self.labels, self.classes = paths, labels, classes
        self._crops: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def accuracy(self, net, meta: ModelMeta, batch_size: int = 128) -> float:
        """Top-1 accuracy of a FaceNet with head, leaving its train/eval mode as it was."""
        key = json.dumps([meta.image_convention(), meta.mean, meta.std], sort_keys=True)
        if key not in self._crops:
            crops, ok, _ = prepare_crops(self.paths, meta, progress=False)
            self._crops[key] = crops[ok], self.labels[ok]
        crops, labels = self._crops[key]
        paddle = import_paddle()
        was_training = net.training
        net.eval()
        with paddle.no_grad():  # the same batches of network input as a bundled classifier's
            logits = run_batches(lambda x: net(paddle.to_tensor(x)).numpy(), crops, meta, batch_size, flip=False)
        if was_training:
            net.train()
        return float((np.concatenate(logits).argmax(axis=1) == labels).mean())


class ScoringCallback(RunEpochCallback):
    """Scores the test set after every epoch the run has logged and saved."""

    def __init__(self, test: TestSet, rows: list[dict], tag: dict) -> None:
        super().__init__()
        self.test, self.rows, self.tag = test, rows, tag

    def on_run_epoch_end(self, row: dict, meta: ModelMeta) -> None:
        """Append the epoch's test accuracy (beside its validation and training accuracy) to rows."""
        test, tag = self.test, self.tag
        if meta.classes != test.classes:
            raise SystemExit(f"training classes {meta.classes} differ from the "
                             f"test classes {test.classes}")
        acc = test.accuracy(self.model.network, meta)
        self.rows.append({**tag, "epoch": row["epoch"], "test_acc": round(acc, 6),
                          "val_acc": row.get("val_acc"), "train_acc": row.get("acc"),
                          "seconds": row.get("seconds")})
        print(f"  {tag['variant']} seed {tag['seed']} epoch {row['epoch']}: "
              f"test acc {acc:.4f}", flush=True)


def run_one(args, spec: dict, variant: str, seed: int, test: TestSet) -> list[dict]:
    """Train one (variant, seed) and return its per-epoch rows (cached in the run folder)."""
    run_dir = args.out / "runs" / f"{variant}-seed{seed}"
    done = run_dir / "test_acc.json"
    overrides = spec["variants"][variant] or {}
    budget = {k: getattr(args, k) for k in ("epochs", "train_subset", "val_subset", "test_subset",
                                             "batch_size")}
    budget["overrides"] = overrides
    if done.exists():
        saved = json.loads(done.read_text())
        if saved.get("budget") == budget:
            return saved["rows"]
    shutil.rmtree(run_dir, ignore_errors=True)  # an unfinished run would not be comparable
    root = subset_tree(args.data, args.out, seed, args.train_subset, args.val_subset)
    fixed = {"data": {"seed": seed, "splits": ["train", "validation", "test"]},
             "train": {"epochs": args.epochs, "seed": seed, "patience": 0,
                       **({"batch_size": args.batch_size} if args.batch_size else {})}}
    cfg = load_config(spec["task"], None, deep_merge(overrides, fixed))
    rows: list[dict] = []
    scoring = ScoringCallback(test, rows, {"variant": variant, "seed": seed})
    trainer.train(cfg, [root], run_dir, verbose=0, callbacks=[scoring])
    done.write_text(json.dumps({"budget": budget, "rows": rows}, indent=1))
    return rows


def _cell(values: list[float]) -> str:
    if not values:
        return "-"
    mean = 100 * statistics.mean(values)
    std = 100 * statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.2f} ± {std:.2f}"


def accuracies(rows: list[dict], variant: str, epoch: int) -> list[float]:
    """Test accuracies of one variant at one epoch, one per seed."""
    return [r["test_acc"] for r in rows if r["variant"] == variant and r["epoch"] == epoch]


def summarise(rows: list[dict], variants: list[str], epochs: int) -> str:
    """A markdown table: mean ± std test accuracy (%) by epoch, and the gap to the baseline."""
    shown = sorted({1, (epochs + 1) // 2, epochs})
    base = accuracies(rows, variants[0], epochs)
    lines = ["| variant | " + " | ".join(f"epoch {e}" for e in shown) + " | vs baseline | seeds |",
             "|---|" + "---|" * len(shown) + "---|---|"]
    for v in variants:
        final = accuracies(rows, v, epochs)
        gap = f"{100 * (statistics.mean(final) - statistics.mean(base)):+.2f}" if final and base else "-"
        seeds = len({r["seed"] for r in rows if r["variant"] == v})
        lines.append(f"| {v} | " + " | ".join(_cell(accuracies(rows, v, e)) for e in shown)
                     + f" | {gap if v != variants[0] else 'baseline'} | {seeds} |")
    return "\n".join(lines)


def write_results(out: Path, rows: list[dict], table: str, args, spec: dict) -> None:
    """results.csv, results.json and results.md."""
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, ["variant", "seed", "epoch", "test_acc", "val_acc", "train_acc",
                                    "seconds"])
        writer.writeheader()
        writer.writerows(rows)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    (out / "results.json").write_text(json.dumps({"settings": settings, "spec": spec, "rows": rows},
                                                 indent=1))
    (out / "results.md").write_text(
        f"# Ablation: {spec['task']} ({spec['data']}), test accuracy %\n\n"
        f"{args.train_subset or 'all'} training images per class, {args.epochs} epochs, "
        f"seeds {' '.join(map(str, args.seeds))}, test images "
        f"{f'{args.test_subset} per class' if args.test_subset else 'all'}.\n\n{table}\n")


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", type=Path, help="YAML naming task, data and variants")
    parser.add_argument("--data", type=Path, default=None, help="data set root (default: under $FACECMP_DATA)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--only", nargs="+", default=None, help="run these variants only")
    parser.add_argument("--train-subset", type=int, default=1000, help="images per class (0: all)")
    parser.add_argument("--val-subset", type=int, default=100, help="validation images per class (0: all)")
    parser.add_argument("--test-subset", type=int, default=0, help="test images per class (0: all)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("outputs/ablation"))
    args = parser.parse_args(argv)
    spec = read_spec(args.spec)
    args.data = args.data or datasets.data_root() / spec["data"]
    if not args.data.is_dir():
        raise SystemExit(f"{args.data}: no such folder (pass --data or set FACECMP_DATA)")
    if args.epochs < 1:
        raise SystemExit("--epochs must be at least 1")
    variants = list(spec["variants"])
    unknown = sorted(set(args.only or []) - set(variants))
    if unknown:
        raise SystemExit(f"unknown variant(s) {', '.join(unknown)} (the spec has {', '.join(variants)})")
    variants = [v for v in variants if not args.only or v in args.only]
    args.out.mkdir(parents=True, exist_ok=True)
    classes = sorted(p.name for p in split_dir(args.data, "train").iterdir() if p.is_dir())
    test = TestSet(args.data, classes, args.test_subset)
    rows: list[dict] = []
    for seed in args.seeds:
        for variant in variants:
            print(f"{variant} seed {seed}", flush=True)
            rows += run_one(args, spec, variant, seed, test)
    table = summarise(rows, variants, args.epochs)
    write_results(args.out, rows, table, args, spec)
    print(f"\n{table}\nwrote {args.out}/results.csv, results.json, results.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
