"""Average the weights of several models of one architecture and task (a "model soup").

    python tools/average_weights.py outputs/expr_r4/epochs/06 outputs/expr_r4/epochs/07 \
        outputs/expr_r4/epochs/08 --out outputs/expr_soup

Models fine-tuned one from another (or epochs of one run) stay close enough in weight space
that their average is a model too, often better than each; batch-norm statistics are
averaged like the weights, and classifier heads too when every model has one. Check the
result (`facecmp evaluate` on a validation split, `facecmp threshold-sweep` on calibration
pairs) before using it.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

from facecmp.errors import FacecmpError, one_line_errors
from facecmp.modeldir import HEAD, load_net, save_model


def _mean_state(layers: list) -> dict:
    """The element-wise mean of the layers' float tensors (others as in the last layer)."""
    states = [{k: v.numpy() for k, v in layer.state_dict().items()} for layer in layers]
    return {k: np.mean([s[k] for s in states], axis=0).astype(v.dtype) if v.dtype.kind == "f" else v
            for k, v in states[-1].items()}


def average(srcs: list[Path], out: Path) -> None:
    """Write the float32 mean of srcs' weights, with the last one's meta, to out."""
    if len(srcs) < 2:
        raise FacecmpError("give at least two model directories to average")
    with_head = all((Path(s) / HEAD).is_file() for s in srcs)
    nets = [load_net(s, with_head=with_head) for s in srcs]
    kinds = {(m.arch, m.activation, m.task, str(m.classes)) for _, m in nets}
    if len(kinds) > 1:
        raise FacecmpError("the models differ in architecture, task or classes")
    net, meta = nets[-1]
    net.backbone.set_state_dict(_mean_state([n.backbone for n, _ in nets]))
    if with_head:
        net.head.set_state_dict(_mean_state([n.head for n, _ in nets]))
    meta = dataclasses.replace(meta, weight_average_of=[str(s) for s in srcs])
    save_model(out, net, meta, with_head=with_head)


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", type=Path, nargs="+", help="model directories (two or more)")
    ap.add_argument("--out", type=Path, required=True, help="output model directory")
    args = ap.parse_args(argv)
    average(args.models, args.out)
    print(f"averaged {len(args.models)} models -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
