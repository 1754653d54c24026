"""The facecmp command line: each command parses its arguments and calls the library."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import click

from facecmp.config import TASKS
from facecmp.errors import FacecmpError, one_line_errors
from facecmp.metrics import METRICS
from facecmp.preprocess import DETECTOR_CHOICES


def friendly(func):
    """Turn user errors into one line on stderr and a non-zero exit, never a traceback."""
    guarded = one_line_errors(func)  # a command returns None, so any value is an exit code

    @functools.wraps(func)
    def wrapper(*args, **kwargs) -> None:
        code = guarded(*args, **kwargs)
        if code:
            sys.exit(code)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="facecmp")
def main() -> None:
    """facecmp: train face models and compare faces."""


@main.command()
@click.option("--task", type=click.Choice(TASKS), default=None,
              help="Default: the task the --config file names, else identity.")
@click.option("--data", "data", multiple=True, required=True, type=click.Path(path_type=Path),
              help="Class folders root/<class>/*.jpg; repeat to combine data sets.")
@click.option("--config", type=click.Path(path_type=Path), help="YAML of overrides to the task's defaults.")
@click.option("--epochs", type=click.IntRange(1), help="Total epochs (also extends a resumed run).")
@click.option("--batch-size", type=click.IntRange(1))
@click.option("--out", type=click.Path(path_type=Path), default=Path("outputs/run"), show_default=True)
@click.option("--resume", is_flag=True, help="Continue the interrupted run in --out.")
@click.option("--exclude-pairs", type=click.Path(path_type=Path),
              help="Leave out identities named in this LFW pairs file (test identities).")
@click.option("--exclude-folds", default=None, help="Only the pairs of these folds, e.g. 1-5.")
@click.option("--exclude-list", multiple=True, type=click.Path(path_type=Path),
              help="File of identity names to leave out; repeat to combine files.")
@click.option("--init", "init", type=click.Path(path_type=Path),
              help="Start the backbone from this model directory's weights (transfer learning).")
@friendly
def train(task, data, config, epochs, batch_size, out, resume, exclude_pairs, exclude_folds,
          exclude_list, init) -> None:
    """Train a ResNet18 classifier with paddle.Model.fit and write a model directory."""
    from facecmp.config import load_config
    from facecmp.datasets import excluded_identities

    overrides = {"train": {k: v for k, v in (("epochs", epochs), ("batch_size", batch_size)) if v}}
    if init:
        from facecmp.modeldir import open_model

        open_model(init)  # a bad model directory fails before any data is read
        overrides["model"] = {"init": str(init)}
    cfg = load_config(task, config, overrides)
    exclude = excluded_identities(exclude_list, exclude_pairs, exclude_folds)
    for root in data:  # fail before the slow Paddle import
        if not root.is_dir():
            raise FacecmpError(f"data folder {root} does not exist" if not root.exists()
                               else f"data folder {root} is not a directory")
    from facecmp.trainer import train as run_training

    summary = run_training(cfg, list(data), out, resume, exclude)
    click.echo(f"trained {summary['epochs']} epochs; model: {summary['model']}; log: {summary['log']}")


def _image_files(items) -> list[Path]:
    """Expand directories (recursively) into their image files, keeping given files as-is."""
    from facecmp.images import is_image_name

    files: list[Path] = []
    for item in map(Path, items):
        if item.is_dir():
            files += sorted(p for p in item.rglob("*") if p.is_file() and is_image_name(p))
        else:
            files.append(item)
    if not files:
        raise FacecmpError("no image files given")
    return files


MODEL_OPT = click.option("--model", type=click.Path(path_type=Path),
                         help="Model directory (default: the bundled identity model).")
DETECTOR_OPT = click.option("--detector", type=click.Choice(DETECTOR_CHOICES), default=None,
                            help="Override the model's crop convention (none: inputs are crops).")
FLIP_OPT = click.option("--flip/--no-flip", default=None,
                        help="Average with the mirrored face (default: per model).")
ZOOM_OPT = click.option("--zoom", type=float, default=None, metavar="FRACTION",
                        help="Classify the central FRACTION (0.5-1) of each face crop, resized back "
                             "(default: per model).")
CROPS_OPT = click.option("--crops", type=click.Choice(["1", "5"]), default=None,
                         callback=lambda _ctx, _param, v: None if v is None else int(v),
                         help="Test-time crops of the zoomed size: 1 central, or 5 (central and the "
                              "four corners), averaged (default: per model).")


@main.command()
@MODEL_OPT
@click.argument("images", nargs=-1, required=True)
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Output .npz")
@click.option("--normalize/--raw", default=False, show_default=True, help="L2-normalise embeddings.")
@FLIP_OPT
@DETECTOR_OPT
@friendly
def embed(model, images, out, normalize, flip, detector) -> None:
    """Embed images (files or folders) into an .npz of paths and 512-d vectors."""
    import facecmp

    files = _image_files(images)
    result = facecmp.embed(files, facecmp.load_model(model, flip=flip), detector, normalize,
                           progress=len(files) > 50)
    result.save(out)
    for err in result.errors.values():
        click.echo(f"skipped: {err}", err=True)
    click.echo(f"embedded {int(result.ok.sum())} of {len(files)} images -> {out}")
    if not result.ok.any():
        sys.exit(1)


@main.command("threshold-sweep")
@MODEL_OPT
@click.option("--pairs", "pairs_file", type=click.Path(path_type=Path), required=True,
              help="LFW pairs file or CSV path_a,path_b,same.")
@click.option("--images", type=click.Path(path_type=Path), help="Root the pair paths are relative to.")
@click.option("--lfw-folds", help="Only these folds of the pairs file, e.g. 1-5.")
@click.option("--metric", type=click.Choice([*METRICS, "both"]), default="both", show_default=True)
@click.option("--thresholds", help="START:STOP:STEP grid (e.g. the paper's 0:20:1); default from the data.")
@click.option("--folds", type=click.IntRange(2), default=10, show_default=True,
              help="k for k-fold accuracy when the pairs file has no folds of its own.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("outputs/sweep"), show_default=True)
@click.option("--save-threshold", is_flag=True, help="Store the best threshold in the model's meta.json.")
@FLIP_OPT
@DETECTOR_OPT
@friendly
def threshold_sweep(model, pairs_file, images, lfw_folds, metric, thresholds, folds, out,
                    save_threshold, flip, detector) -> None:
    """Sweep distance thresholds over same/different pairs and report verification metrics."""
    import facecmp
    from facecmp import metrics, scoring, sweep

    if thresholds:
        metrics.parse_grid(thresholds)  # fail on a bad grid before any work
    pairs = sweep.load_pairs(pairs_file, images, lfw_folds)
    fm = facecmp.load_model(model, flip=flip)
    embedder, model_dir = fm.embedder, fm.path
    names = list(metrics.METRICS) if metric == "both" else [metric]
    pd = scoring.pair_distances(pairs, embedder, names, detector)
    calibrated = embedder.meta.thresholds
    summary = sweep.run_sweep(pd, thresholds, sweep.fold_ids(pd.pairs, folds), out, calibrated)
    for line in sweep.summary_lines(summary):
        click.echo(line)
    click.echo(f"wrote {out}/sweep.csv, summary.json, pr_curve.png, accuracy_curve.png, roc.png, distances.png")
    if save_threshold:
        chosen = sweep.save_calibration(model_dir, summary, embedder.flip, pairs_file)
        click.echo(f"saved to {model_dir}/meta.json: metric {chosen['metric']}, threshold {chosen['threshold']:.4g}")


@main.command()
@click.argument("images", nargs=-1, type=click.Path(path_type=Path))
@MODEL_OPT
@click.option("--metric", type=click.Choice(METRICS), help="Default: the model's calibrated metric.")
@click.option("--threshold", type=float, help="Default: the model's calibrated threshold for the metric.")
@DETECTOR_OPT
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (boxes and landmarks too).")
@click.option("--pairs", "pairs_file", type=click.Path(path_type=Path), help="Compare every pair of this file.")
@click.option("--images", "images_root", type=click.Path(path_type=Path), help="Root for --pairs paths.")
@click.option("--lfw-folds", help="Only these folds of the --pairs file, e.g. 1-5.")
@click.option("--out", type=click.Path(path_type=Path), help="CSV of results for --pairs.")
@friendly
def compare(images, model, metric, threshold, detector, as_json, pairs_file, images_root, lfw_folds, out) -> None:
    """Are two photos the same person? Prints distance, threshold, metric and verdict."""
    import facecmp

    if pairs_file is None and len(images) != 2:
        raise FacecmpError("give two images, or --pairs FILE --out results.csv")
    if pairs_file is not None and (images or out is None):
        raise FacecmpError("--pairs takes no image arguments and needs --out results.csv")
    fm = facecmp.load_model(model)
    if pairs_file is not None:
        from facecmp.scoring import compare_pairs
        from facecmp.sweep import load_pairs

        pairs = load_pairs(pairs_file, images_root, lfw_folds)
        masked = None
        if fm.masked is not None:
            masked = (fm.masked.embedder, fm.masked.meta.threshold_for(metric, threshold)[1])
        metric, threshold = fm.meta.threshold_for(metric, threshold)
        counts = compare_pairs(fm.embedder, pairs, metric, threshold, out, detector,
                               progress=len(pairs) > 50, masked=masked)
        click.echo(f"{len(pairs)} pairs -> {out}: {counts['same']} same, {counts['different']} different, "
                   f"{counts['error']} errors; {counts['right']} right ({counts['right'] / len(pairs):.2%}, "
                   f"errors counted as wrong){', ' + str(counts['masked']) + ' measured by the masked model' if masked else ''}")
        if counts["error"] == len(pairs):
            sys.exit(1)
        return
    result = facecmp.compare(images[0], images[1], fm, metric, threshold, detector)
    if as_json:
        import json

        click.echo(json.dumps(result.to_json()))
        return
    for face in result.faces:
        if face.note:
            click.echo(f"note: {face.source}: {face.note}", err=True)
    click.echo(f"{result.verdict}: {result.metric} distance {result.distance:.4f} "
               f"{'<=' if result.same else '>'} threshold {result.threshold:.4f}")


@main.command()
@click.option("--model", type=click.Path(path_type=Path), required=True,
              help="Model directory with a classifier head (mask, expression).")
@click.option("--data", type=click.Path(path_type=Path), required=True,
              help="Labelled test folder DIR/<class>/*, class names as the model's, or a text file "
                   "of such images, one path a line (e.g. a run's val_images.txt).")
@click.option("--out", type=click.Path(path_type=Path), default=Path("outputs/evaluate"), show_default=True)
@DETECTOR_OPT
@FLIP_OPT
@ZOOM_OPT
@CROPS_OPT
@friendly
def evaluate(model, data, out, detector, flip, zoom, crops) -> None:
    """Accuracy, per-class metrics, confusion matrix and misclassified images of a classifier."""
    from facecmp.evaluate import evaluate as run_evaluation

    summary = run_evaluation(model, data, out, detector, flip=flip, zoom=zoom, crops=crops)
    if summary["failed"]:
        click.echo(f"skipped {summary['failed']} unreadable images (listed in metrics.json)", err=True)
    click.echo(f"accuracy {summary['accuracy']:.4f} (macro F1 {summary['macro_f1']:.4f}) "
               f"on {summary['n']} images")
    click.echo(f"wrote {out}/metrics.json, confusion.csv, confusion.png, errors.png")


CLASSIFY_DETECTOR_OPT = click.option(
    "--detector", type=click.Choice(DETECTOR_CHOICES), default="mtcnn-masked", show_default=True,
    help="Face detector for photos (falls back to haar, then the whole image; mtcnn-masked also "
         "finds faces in masks); none: inputs are crops.")


def _classify(task: str, images, model, as_json: bool, detector: str, flip: bool | None,
              zoom: float | None, crops: int | None) -> None:
    """Shared body of the classifier commands: one line (or JSON object) per image."""
    import facecmp

    files = _image_files(images)
    fm = facecmp.load_model(model, task, flip=flip, zoom=zoom, crops=crops)
    results = facecmp.classify(files, task, fm, detector)
    if as_json:
        import json

        click.echo(json.dumps([r.to_json() for r in results]))
    else:
        for r in results:
            if r.error:
                click.echo(f"error: {r.error}", err=True)
                continue
            if r.face and r.face.note:
                click.echo(f"note: {r.source}: {r.face.note}", err=True)
            click.echo(f"{r.source}: {r.label} (p={r.probabilities[r.label]:.2f})")
    if all(r.error for r in results):
        sys.exit(1)


def _classifier_command(task: str, summary: str) -> None:
    """Register `facecmp TASK IMAGES...` for a classifier task."""

    @main.command(task, help=summary)
    @click.argument("images", nargs=-1, required=True)
    @click.option("--model", type=click.Path(path_type=Path),
                  help=f"Model directory (default: the bundled {task} model).")
    @click.option("--json", "as_json", is_flag=True, help="Print one JSON list, an object per image.")
    @CLASSIFY_DETECTOR_OPT
    @FLIP_OPT
    @ZOOM_OPT
    @CROPS_OPT
    @friendly
    def command(images, model, as_json, detector, flip, zoom, crops) -> None:
        _classify(task, images, model, as_json, detector, flip, zoom, crops)


_classifier_command("mask", "Is the face wearing a mask? Prints label and probability per image.")
_classifier_command("expression", "The facial expression of each image: label and probability.")

from facecmp import cli_gallery  # noqa: E402,F401  (registers enroll, identify and gallery)
from facecmp import cli_serve  # noqa: E402,F401  (registers serve)
from facecmp import cli_export  # noqa: E402,F401  (registers export)

if __name__ == "__main__":
    # run as `python -m facecmp.cli`: the group of the imported facecmp.cli, on which the
    # command modules register, not this script's own copy of it
    from facecmp.cli import main as registered

    registered()
