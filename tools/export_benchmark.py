"""Size and speed of a model exported to ONNX, run by onnxruntime, beside facecmp's own embedder.

Usage (needs onnx and onnxruntime: pip install ".[export]"; real LFW photos under FACECMP_DATA):
    python tools/export_benchmark.py [--model DIR] [--faces 256] [--threads 2] [--no-flip]
                                     [--out outputs/export_benchmark.json]

Both sides turn the same uint8 aligned LFW crops into embeddings (normalisation, the mirror
average and the network), at batch 1 and batch 64, alternating run by run so that a busy
machine slows both alike; each figure is the median (and the best) of --repeats runs over
all the faces. The load average before and after is recorded: on a shared machine, trust
a run only where it stayed low.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def lfw_crops(model_dir: Path, n: int) -> np.ndarray:
    """n aligned crops of the first photo of each LFW person, in the model's convention."""
    from facecmp.datasets import data_root
    from facecmp.errors import FacecmpError
    from facecmp.modeldir import open_model
    from facecmp.preprocess import load_faces

    lfw = data_root() / "lfw"
    if not lfw.is_dir():
        raise SystemExit(f"no LFW photos at {lfw}; set FACECMP_DATA")
    paths = []
    for person in sorted(p for p in lfw.iterdir() if p.is_dir()):
        paths += sorted(person.glob("*.jpg"))[:1]
        if len(paths) >= n + n // 10 + 4:  # a few spare for photos without a face
            break
    faces = [f.pixels for f in load_faces(paths, open_model(model_dir)) if not isinstance(f, FacecmpError)]
    return np.stack(faces[:n])


def throughput(run, crops: np.ndarray, batch: int) -> float:
    """Faces per second of run(uint8 crops) -> embeddings over all crops, batch at a time."""
    start = time.perf_counter()
    for i in range(0, len(crops), batch):
        run(crops[i : i + batch])
    return len(crops) / (time.perf_counter() - start)


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo (or the platform's processor string)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def load_average() -> float | None:
    """The 1-minute load average (other processes on the same cores slow both sides)."""
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=REPO / "facecmp" / "zoo" / "identity")
    parser.add_argument("--faces", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                        help="average each face with its mirror on both sides (default: the model's embed_flip)")
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "export_benchmark.json")
    args = parser.parse_args(argv)

    import onnxruntime as ort

    from facecmp.embedder import Embedder, l2_normalize
    from facecmp.export import export_model
    from facecmp.preprocess import to_tensor_batch
    from facecmp.runtime import import_paddle

    crops = lfw_crops(args.model, args.faces)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        exported = export_model(args.model, "onnx", Path(tmp) / "onnx", flip=args.flip)
        export_seconds = time.perf_counter() - start
        onnx_bytes = exported.model_file.stat().st_size
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = args.threads, 1
        session = ort.InferenceSession(str(exported.model_file), opts, providers=["CPUExecutionProvider"])

    embedders = {b: Embedder(args.model, flip=exported.flip_in_graph, batch_size=b) for b in (1, 64)}
    meta = embedders[1].meta

    def onnx_embed(batch: np.ndarray) -> np.ndarray:
        return session.run(None, {"input": to_tensor_batch(batch, meta)})[0]

    ours = embedders[64].embed_crops(crops)
    diff = float(np.abs(l2_normalize(onnx_embed(crops)) - l2_normalize(ours)).max())
    load_before = load_average()
    runs: dict[str, dict[int, list[float]]] = {"facecmp": {1: [], 64: []}, "onnxruntime": {1: [], 64: []}}
    for batch in (1, 64):
        throughput(embedders[batch].embed_crops, crops[:64], batch)  # warm-up
        throughput(onnx_embed, crops[:64], batch)
        for _ in range(args.repeats):
            runs["facecmp"][batch].append(throughput(embedders[batch].embed_crops, crops, batch))
            runs["onnxruntime"][batch].append(throughput(onnx_embed, crops, batch))
    result = {
        "command": "python tools/export_benchmark.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "model": str(args.model), "faces": len(crops), "threads": args.threads, "repeats": args.repeats,
        "flip_in_graph": exported.flip_in_graph,
        "onnx_bytes": onnx_bytes, "onnx_mb": round(onnx_bytes / 1e6, 2),
        "source_weights_mb": round((args.model / "backbone.pdparams").stat().st_size / 1e6, 2),
        "export_seconds": round(export_seconds, 2),
        "max_abs_diff_l2_normalised": diff,
        "faces_per_second": {name: {f"batch_{b}": round(statistics.median(v), 1) for b, v in per.items()}
                             for name, per in runs.items()},
        "faces_per_second_best": {name: {f"batch_{b}": round(max(v), 1) for b, v in per.items()}
                                  for name, per in runs.items()},
        "all_runs": {name: {f"batch_{b}": [round(x, 1) for x in v] for b, v in per.items()}
                     for name, per in runs.items()},
        "versions": {"onnxruntime": ort.__version__, "paddle": import_paddle().__version__,
                     "python": platform.python_version()},
        "cpu": cpu_name(), "load_average_before_after": [load_before, load_average()],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    fps = result["faces_per_second"]
    print(f"onnx {result['onnx_mb']} MB; max |diff| {diff:.2e}; faces/s at batch 1 / 64: "
          f"facecmp {fps['facecmp']['batch_1']} / {fps['facecmp']['batch_64']}, "
          f"onnxruntime {fps['onnxruntime']['batch_1']} / {fps['onnxruntime']['batch_64']}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
