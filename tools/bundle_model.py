"""Copy a trained model directory into the package's zoo, with smaller weights.

    python tools/bundle_model.py outputs/id_arcface/model facecmp/zoo/identity [--dtype int4]
        [--predict-flip] [--predict-zoom 0.9] [--predict-crops 5]

int4 (the default; 4- and 8-bit codes with float16 scales, see facecmp/quantize.py) makes a
ResNet18 7.8 MB instead of 45 MB (float32) or 22 MB (float16); check the bundled copy
(`facecmp threshold-sweep`, `facecmp evaluate`) before shipping it. Weights are float32
again once loaded. The target's MODEL_CARD.md is kept.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
from pathlib import Path

from facecmp.errors import one_line_errors
from facecmp.meta import WEIGHT_DTYPES
from facecmp.modeldir import load_net, open_model, save_model


def bundle(src: Path, dst: Path, dtype: str = "int4", predict_flip: bool | None = None,
           predict_zoom: float | None = None, predict_crops: int | None = None) -> None:
    """Write src's weights (in dtype) and meta.json into dst, replacing it but its card.

    predict_flip, predict_zoom and predict_crops set a classifier's default test-time flip
    (image and mirror averaged), zoom (the central fraction of each crop) and crops (1, or 5:
    the central and four corner squares of that fraction).
    """
    with_head = open_model(src).task != "identity"
    net, meta = load_net(src, with_head=with_head)
    settings = {"predict_flip": predict_flip, "predict_zoom": predict_zoom, "predict_crops": predict_crops}
    meta = dataclasses.replace(meta, **{k: v for k, v in settings.items() if v is not None})
    meta.check()  # a bad zoom or crop count fails before dst is touched
    card = dst / "MODEL_CARD.md"
    card_text = card.read_text() if card.is_file() else None
    if dst.exists():
        shutil.rmtree(dst)
    save_model(dst, net, meta, with_head=with_head, dtype=dtype)
    if card_text is not None:
        card.write_text(card_text)


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", type=Path)
    ap.add_argument("dst", type=Path)
    ap.add_argument("--dtype", choices=WEIGHT_DTYPES, default="int4", help="stored weights")
    ap.add_argument("--predict-flip", action=argparse.BooleanOptionalAction, default=None,
                    help="classifiers: average each face with its mirror by default")
    ap.add_argument("--predict-zoom", type=float, default=None, metavar="FRACTION",
                    help="classifiers: classify the central FRACTION of each crop by default")
    ap.add_argument("--predict-crops", type=int, choices=(1, 5), default=None,
                    help="classifiers: 5 adds the four corner squares of the zoomed size by default")
    args = ap.parse_args(argv)
    bundle(args.src, args.dst, dtype=args.dtype, predict_flip=args.predict_flip,
           predict_zoom=args.predict_zoom, predict_crops=args.predict_crops)
    size = sum(p.stat().st_size for p in args.dst.iterdir() if p.is_file()) / 1e6
    print(f"bundled {args.src} -> {args.dst} ({size:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
