"""Copy a trained model directory into the package's zoo, with float16 weights.

    python tools/bundle_model.py outputs/id_arcface/model facecmp/zoo/identity

Float16 halves the size; check the bundled copy with `facecmp threshold-sweep` before
shipping it. Weights are cast back to float32 when loaded.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from facecmp.errors import FacecmpError


def bundle(src: Path, dst: Path, half: bool = True) -> None:
    """Write src's weights (float16 if half) and meta.json into dst, replacing it."""
    from facecmp.modeldir import load_net, read_meta, save_model

    meta = read_meta(src)
    with_head = meta.get("task") != "identity"
    net, meta = load_net(src, with_head=with_head)
    if dst.exists():
        shutil.rmtree(dst)
    save_model(dst, net, meta, with_head=with_head, half=half)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", type=Path)
    ap.add_argument("dst", type=Path)
    ap.add_argument("--float32", action="store_true", help="keep float32 weights")
    args = ap.parse_args(argv)
    try:
        bundle(args.src, args.dst, half=not args.float32)
    except FacecmpError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    size = sum(p.stat().st_size for p in args.dst.iterdir()) / 1e6
    print(f"bundled {args.src} -> {args.dst} ({size:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
