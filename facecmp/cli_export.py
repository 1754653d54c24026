"""The export command: a model as a Paddle inference model or an ONNX graph with its
preprocessing.json (facecmp.export); registered on the main group by cli.py."""

from __future__ import annotations

from pathlib import Path

import click

from facecmp.cli import FLIP_OPT, friendly, main


@main.command("export")
@click.option("--model", type=click.Path(path_type=Path), required=True, help="The model directory to export.")
# a plain string, checked by facecmp.export, so a wrong format is a one-line error like the rest
@click.option("--format", "fmt", required=True, metavar="paddle-inference|onnx",
              help="paddle-inference (paddle.inference.Config) or onnx (opset 13, e.g. onnxruntime).")
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Directory to write (must be new or empty unless --force).")
@click.option("--force", is_flag=True, help="Write into a non-empty --out, replacing a previous export's files.")
@FLIP_OPT
@friendly
def export(model: Path, fmt: str, out: Path, force: bool, flip: bool | None) -> None:
    """Export a model for use without facecmp, with a preprocessing.json beside it."""
    from facecmp.export import export_model

    result = export_model(model, fmt, out, force, flip)
    size = sum(p.stat().st_size for p in result.files if p.name.startswith("model.")) / 1e6
    flip_note = "mirror average in the graph" if result.flip_in_graph else "no mirror average"
    click.echo(f"exported {model} as {fmt} to {out}: {result.model_file.name} ({size:.1f} MB, "
               f"{flip_note}), {', '.join(p.name for p in result.files if p != result.model_file)}")
