"""ReLU vs LeakyReLU(0.1) vs PReLU on Face Mask 12K: same seeds, same budget, test accuracy per epoch.

Each (activation, seed) run trains the mask task's ResNet18 with facecmp.trainer.train on
the same per-seed subset of Train, with early stopping off, and scores the full Test split
after every epoch. The mask paper reports LeakyReLU about 3 points above ReLU; the table
says whether that holds here.

Usage:
    python tools/activation_experiment.py [--data DIR] [--epochs 5] [--seeds 0 1 2]
        [--train-subset 1000] [--val-subset 100] [--out outputs/activation]
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

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from facecmp import datasets, trainer  # noqa: E402
from facecmp.config import load_config  # noqa: E402
from facecmp.evaluate import scan_labelled  # noqa: E402
from facecmp.preprocess import to_tensor_batch  # noqa: E402

ACTIVATIONS = ("relu", "leaky_relu", "prelu")


def default_data() -> Path:
    """facemask12k under the data root ($FACECMP_DATA, else ../shared/data)."""
    from facecmp.datasets import data_root

    return data_root() / "facemask12k"


def split_dir(root: Path, name: str) -> Path:
    """root/<name>, matching the case-insensitively named split folders of the data set."""
    for child in sorted(root.iterdir()):
        if child.is_dir() and child.name.lower() == name.lower():
            return child
    raise SystemExit(f"{root} has no {name} folder")


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
    """The seed's Train/Validation subset; every activation trains on the same one."""
    root = out / "data" / f"seed{seed}-train{train_n}-val{val_n}"
    if not (root / "done").exists():
        shutil.rmtree(root, ignore_errors=True)
        link_subset(split_dir(data, "train"), root / "Train", train_n, seed)
        link_subset(split_dir(data, "validation"), root / "Validation", val_n, seed + 1000)
        (root / "done").write_text("")
    return root


class TestSet:
    """The Test split prepared once with the mask task's preprocessing."""

    def __init__(self, data: Path, meta: dict, classes: list[str]) -> None:
        paths, self.labels = scan_labelled(split_dir(data, "test"), classes)
        self.classes = classes
        self.crops, ok, _ = datasets.prepare_crops(paths, meta, progress=False)
        self.crops, self.labels, self.meta = self.crops[ok], self.labels[ok], meta

    def accuracy(self, net, batch_size: int = 128) -> float:
        """Top-1 accuracy of a FaceNet with head, leaving its train/eval mode as it was."""
        paddle = trainer.paddle
        was_training = net.training
        net.eval()
        hits = 0
        with paddle.no_grad():
            for i in range(0, len(self.labels), batch_size):
                x = paddle.to_tensor(to_tensor_batch(self.crops[i : i + batch_size], self.meta))
                hits += int((net(x).numpy().argmax(axis=1) == self.labels[i : i + batch_size]).sum())
        if was_training:
            net.train()
        return hits / len(self.labels)


def scoring_callback(test: TestSet, rows: list[dict], tag: dict):
    """A RunCallback subclass that also scores the test set after every epoch."""

    class ScoringCallback(trainer.RunCallback):
        def _finish(self) -> None:
            if self.meta.get("classes") != test.classes:
                raise SystemExit(f"training classes {self.meta.get('classes')} differ from the "
                                 f"test classes {test.classes}")
            super()._finish()
            last = self.state["rows"][-1]
            acc = test.accuracy(self.model.network)
            rows.append({**tag, "epoch": last["epoch"], "test_acc": round(acc, 6),
                         "val_acc": last.get("val_acc"), "train_acc": last.get("acc"),
                         "seconds": last.get("seconds")})
            print(f"  {tag['activation']} seed {tag['seed']} epoch {last['epoch']}: "
                  f"test acc {acc:.4f}", flush=True)

    return ScoringCallback


def run_one(args, activation: str, seed: int, test: TestSet) -> list[dict]:
    """Train one (activation, seed) and return its per-epoch rows (cached in the run folder)."""
    run_dir = args.out / "runs" / f"{activation}-seed{seed}"
    done = run_dir / "test_acc.json"
    budget = {k: getattr(args, k) for k in ("epochs", "train_subset", "val_subset", "batch_size")}
    budget["config"] = str(args.config) if args.config else None
    if done.exists():
        saved = json.loads(done.read_text())
        if saved.get("budget") == budget:
            return saved["rows"]
    shutil.rmtree(run_dir, ignore_errors=True)  # an unfinished run would not be comparable
    root = subset_tree(args.data, args.out, seed, args.train_subset, args.val_subset)
    cfg = load_config("mask", args.config, {
        "model": {"activation": activation},
        "data": {"seed": seed},
        "train": {"epochs": args.epochs, "seed": seed, "patience": 0,
                  **({"batch_size": args.batch_size} if args.batch_size else {})}})
    rows: list[dict] = []
    original = trainer.RunCallback
    trainer.RunCallback = scoring_callback(test, rows, {"activation": activation, "seed": seed})
    try:
        trainer.train(cfg, [root], run_dir, verbose=0)
    finally:
        trainer.RunCallback = original
    done.write_text(json.dumps({"budget": budget, "rows": rows}, indent=1))
    return rows


def _cell(values: list[float]) -> str:
    if not values:
        return "-"
    mean = 100 * statistics.mean(values)
    std = 100 * statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.2f} ± {std:.2f}"


def summarise(rows: list[dict], activations: list[str], epochs: int) -> tuple[str, str]:
    """A markdown table (mean ± std test accuracy, %) and a one-line verdict."""
    shown = sorted({1, 2, epochs} & set(range(1, epochs + 1)))

    def accs(act: str, epoch: int) -> list[float]:
        return [r["test_acc"] for r in rows if r["activation"] == act and r["epoch"] == epoch]

    lines = ["| activation | " + " | ".join(f"epoch {e}" for e in shown) + " | seeds |",
             "|---|" + "---|" * len(shown) + "---|"]
    for act in activations:
        seeds = len({r["seed"] for r in rows if r["activation"] == act})
        lines.append(f"| {act} | " + " | ".join(_cell(accs(act, e)) for e in shown) + f" | {seeds} |")
    return "\n".join(lines), verdict(accs("relu", epochs), accs("leaky_relu", epochs), epochs)


def verdict(relu: list[float], leaky: list[float], epoch: int) -> str:
    """Does LeakyReLU beat ReLU by about 3 points at the final epoch?"""
    if not relu or not leaky:
        return "Verdict: needs both relu and leaky_relu runs."
    gap = 100 * (statistics.mean(leaky) - statistics.mean(relu))
    noise = 100 * max((statistics.stdev(v) for v in (relu, leaky) if len(v) > 1), default=0.0)
    if gap > noise and gap >= 2.0:
        word = "yes"
    elif gap > noise and gap > 0:
        word = "partly: ahead, but by less than ~3 points"
    elif gap >= -noise:
        word = "no: the gap is within seed-to-seed spread"
    else:
        word = "no: ReLU is ahead"
    return (f"Verdict: does LeakyReLU beat ReLU by ~3 points? {word} (epoch {epoch}: "
            f"{gap:+.2f} points, seed std up to {noise:.2f}, {min(len(relu), len(leaky))} seeds).")


def write_results(out: Path, rows: list[dict], table: str, line: str, args) -> None:
    """results.csv, results.json and results.md."""
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, ["activation", "seed", "epoch", "test_acc", "val_acc", "train_acc",
                                    "seconds"])
        writer.writeheader()
        writer.writerows(rows)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    (out / "results.json").write_text(json.dumps({"settings": settings, "rows": rows,
                                                  "verdict": line}, indent=1))
    (out / "results.md").write_text(
        f"# Activation experiment (Face Mask 12K test accuracy, %)\n\n"
        f"{args.train_subset or 'all'} training images per class, {args.epochs} epochs, "
        f"seeds {' '.join(map(str, args.seeds))}.\n\n{table}\n\n{line}\n")


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="facemask12k root (default: $FACECMP_DATA)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--activations", nargs="+", choices=ACTIVATIONS, default=list(ACTIVATIONS))
    parser.add_argument("--train-subset", type=int, default=1000, help="images per class (0: all)")
    parser.add_argument("--val-subset", type=int, default=100, help="validation images per class (0: all)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--config", type=Path, default=None, help="extra YAML overrides of the mask task")
    parser.add_argument("--out", type=Path, default=Path("outputs/activation"))
    args = parser.parse_args(argv)
    args.data = args.data or default_data()
    if not args.data.is_dir():
        raise SystemExit(f"{args.data}: no such folder (pass --data or set FACECMP_DATA)")
    if args.epochs < 1:
        raise SystemExit("--epochs must be at least 1")
    args.out.mkdir(parents=True, exist_ok=True)
    cfg = load_config("mask", args.config)
    classes = sorted(p.name for p in split_dir(args.data, "train").iterdir() if p.is_dir())
    test = TestSet(args.data, trainer.preprocessing_meta(cfg), classes)
    rows: list[dict] = []
    for seed in args.seeds:
        for activation in args.activations:
            print(f"{activation} seed {seed}", flush=True)
            rows += run_one(args, activation, seed, test)
    table, line = summarise(rows, args.activations, args.epochs)
    write_results(args.out, rows, table, line, args)
    print(f"\n{table}\n\n{line}\nwrote {args.out}/results.csv, results.json, results.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
