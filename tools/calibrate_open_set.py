"""Calibrate a model's open-set table (facecmp.openset) on held-out people.

Every probe photo is compared with every enrolled photo of another person (cosine distance of
the model's embeddings); the table gives the distance below which each false match rate of
those comparisons falls. With --save it goes into the model's meta.json (`open_set`), where
`facecmp identify` reads it to set a gallery's threshold by its size.

    python tools/calibrate_open_set.py --model facecmp/zoo/identity \\
        --enrolled outputs/calib2/identities --out outputs/open_set_calib [--save]
    python tools/calibrate_open_set.py --model facecmp/zoo/identity-masked \\
        --enrolled outputs/calib2/identities --probes outputs/masked_calib/images \\
        --out outputs/open_set_calib_masked [--save]

--enrolled and --probes are class folders (root/<person>/*.jpg) of people the model never
trained on (tools/holdout_identities.py); probes default to the enrolled photos themselves
(a photo is never compared with itself: only different people count). Writes OUT/table.csv,
OUT/summary.json and OUT/table.png.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from facecmp.errors import one_line_errors  # noqa: E402


def embedded(root: Path, model, progress: bool = True) -> tuple[np.ndarray, np.ndarray, int]:
    """(vectors, person names, photos that failed) of a class folder's photos."""
    import facecmp
    from facecmp.datasets import scan_classes

    folder = scan_classes([root])
    emb = facecmp.embed(folder.paths, model, progress=progress)
    names = np.asarray(folder.classes)[folder.labels]
    return emb.vectors[emb.ok], names[emb.ok], int((~emb.ok).sum())


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="facecmp/zoo/identity")
    ap.add_argument("--enrolled", type=Path, required=True)
    ap.add_argument("--probes", type=Path, help="default: the enrolled photos")
    ap.add_argument("--save", action="store_true", help="write the table into the model's meta.json")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    import facecmp
    from facecmp.meta import update_meta
    from facecmp.openset import impostor_table
    from facecmp.plots import impostor_distances

    model = facecmp.load_model(args.model)
    enrolled, enrolled_names, enrolled_failed = embedded(args.enrolled, model)
    if args.probes is None:
        probes, probe_names, probes_failed = enrolled, enrolled_names, 0
    else:
        probes, probe_names, probes_failed = embedded(args.probes, model)
    table = impostor_table(probes, probe_names, enrolled, enrolled_names)
    comparisons = int((probe_names[:, None] != enrolled_names[None, :]).sum())
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "table.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["fmr", "cosine_distance"])
        writer.writerows(table)
    source = {"enrolled": str(args.enrolled), "probes": str(args.probes or args.enrolled),
              "people": len(set(enrolled_names)), "enrolled_photos": len(enrolled),
              "probe_photos": len(probes), "impostor_comparisons": comparisons,
              "photos_without_face": enrolled_failed + probes_failed}
    summary = {"model": str(args.model), "cosine": table, **source}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    impostor_distances(table, model.meta.threshold_for("cosine")[1], args.out / "table.png")
    for fmr, dist in table:
        print(f"FMR {fmr:g}: cosine distance {dist:.4f}")
    print(f"{comparisons} comparisons of different people, {source['people']} people")
    if args.save:
        calibration = {**model.meta.calibration, "open_set": source}
        update_meta(args.model, open_set={"cosine": table}, calibration=calibration)
        print(f"saved in {Path(args.model) / 'meta.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
