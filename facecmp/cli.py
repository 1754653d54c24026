"""The facecmp command line: each command parses its arguments and calls the library."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import click

from facecmp.errors import FacecmpError


def friendly(func):
    """Turn user errors into one line on stderr and a non-zero exit, never a traceback."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except FacecmpError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="facecmp")
def main() -> None:
    """facecmp: train face models and compare faces."""


@main.command()
@click.option("--task", type=click.Choice(["identity", "mask", "expression"]), default="identity",
              show_default=True)
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
@click.option("--exclude-list", type=click.Path(path_type=Path), help="File of identity names to leave out.")
@friendly
def train(task, data, config, epochs, batch_size, out, resume, exclude_pairs, exclude_folds,
          exclude_list) -> None:
    """Train a ResNet18 classifier with paddle.Model.fit and write a model directory."""
    from facecmp.config import load_config
    from facecmp.datasets import read_identity_list

    overrides = {"train": {k: v for k, v in (("epochs", epochs), ("batch_size", batch_size)) if v}}
    cfg = load_config(task, config, overrides)
    exclude = read_identity_list(exclude_list) if exclude_list else set()
    if exclude_pairs:
        from facecmp.pairs import pair_identities

        exclude |= pair_identities(exclude_pairs, exclude_folds)
    for root in data:  # fail before the slow Paddle import
        if not root.is_dir():
            raise FacecmpError(f"data folder {root} does not exist" if not root.exists()
                               else f"data folder {root} is not a directory")
    from facecmp.trainer import train as run_training

    summary = run_training(cfg, list(data), out, resume, exclude)
    click.echo(f"trained {summary['epochs']} epochs; model: {summary['model']}; log: {summary['log']}")


if __name__ == "__main__":
    main()
