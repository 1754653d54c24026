"""Convert facenet-pytorch's MTCNN weights into a numpy archive, without torch.

Usage:
    python tools/convert_mtcnn.py                 # pip-downloads facenet-pytorch 2.6.0
    python tools/convert_mtcnn.py --wheel PATH    # uses a wheel already on disk

Writes facecmp/weights/mtcnn.npz (float32, keys like ``pnet.conv1.weight``, in torch
layout) and facecmp/weights/MTCNN_LICENSE.txt.

The .pt files are torch state dicts, either the legacy pickle-stream format (what 2.6.0
ships) or the zip format (``archive/data.pkl`` + ``archive/data/<key>``). Both are read
with a restricted unpickler that only knows the handful of globals a state dict needs.
"""

from __future__ import annotations

import argparse
import collections
import io
import pickle
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

VERSION = "2.6.0"
NETS = ("pnet", "rnet", "onet")
REPO = Path(__file__).resolve().parent.parent
OUT_DIR = REPO / "facecmp" / "weights"

_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


@dataclass(frozen=True)
class _StorageType:
    dtype: type


@dataclass
class _StorageRef:
    key: str
    dtype: type
    numel: int
    view: tuple | None  # legacy storage views: (view_key, offset, size)


@dataclass
class _LazyTensor:
    storage: _StorageRef
    offset: int
    size: tuple
    stride: tuple


def _rebuild_tensor_v2(storage, offset, size, stride, *_ignored) -> _LazyTensor:
    return _LazyTensor(storage, offset, tuple(size), tuple(stride))


def _rebuild_parameter(data, *_ignored):
    return data


class _StateDictUnpickler(pickle.Unpickler):
    """Unpickles a torch state dict into lazy tensors; refuses every other global."""

    def find_class(self, module: str, name: str):
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        raise pickle.UnpicklingError(f"unexpected global {module}.{name} in a state dict")

    def persistent_load(self, pid):
        kind, storage_type, key, _location, numel, *rest = pid
        if kind != "storage" or not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        view = rest[0] if rest else None
        return _StorageRef(str(key), storage_type.dtype, int(numel), view)


def _materialise(t: _LazyTensor, storages: dict[str, np.ndarray]) -> np.ndarray:
    ref = t.storage
    flat = storages[ref.key]
    if ref.view is not None:  # legacy view into a larger storage
        _view_key, view_offset, view_size = ref.view
        flat = flat[view_offset:view_offset + view_size]
    itemsize = flat.dtype.itemsize
    needed = t.offset + sum((n - 1) * s for n, s in zip(t.size, t.stride)) + 1
    if needed > flat.size and all(t.size):
        raise ValueError(f"tensor runs past its storage {ref.key}")
    arr = np.lib.stride_tricks.as_strided(
        flat[t.offset:], shape=t.size, strides=[s * itemsize for s in t.stride]
    )
    return np.array(arr, copy=True)


def _walk(obj) -> list[_LazyTensor]:
    return [v for v in obj.values() if isinstance(v, _LazyTensor)]


def _load_zip(data: bytes) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        pkl = next(n for n in zf.namelist() if n.endswith("/data.pkl") or n == "data.pkl")
        prefix = pkl[: -len("data.pkl")]
        state = _StateDictUnpickler(io.BytesIO(zf.read(pkl))).load()
        storages = {}
        for t in _walk(state):
            ref = t.storage
            if ref.key not in storages:
                raw = zf.read(f"{prefix}data/{ref.key}")
                storages[ref.key] = np.frombuffer(raw, dtype=np.dtype(ref.dtype).newbyteorder("<"))
    return {k: _materialise(v, storages) for k, v in state.items() if isinstance(v, _LazyTensor)}


def _load_legacy(data: bytes) -> dict[str, np.ndarray]:
    f = io.BytesIO(data)
    for _ in range(3):  # magic number, protocol version, system info
        pickle.load(f)
    state = _StateDictUnpickler(f).load()
    keys = pickle.load(f)
    refs = {t.storage.key: t.storage for t in _walk(state)}
    storages = {}
    for key in keys:
        numel = int(np.frombuffer(f.read(8), dtype="<i8")[0])
        dtype = np.dtype(refs[key].dtype).newbyteorder("<")
        storages[key] = np.frombuffer(f.read(numel * dtype.itemsize), dtype=dtype)
    return {k: _materialise(v, storages) for k, v in state.items() if isinstance(v, _LazyTensor)}


def load_state_dict(data: bytes) -> dict[str, np.ndarray]:
    """Read a torch state dict (zip or legacy format) into numpy arrays."""
    if zipfile.is_zipfile(io.BytesIO(data)):
        return _load_zip(data)
    return _load_legacy(data)


def download_wheel(dest: Path) -> Path:
    """Fetch the facenet-pytorch wheel with pip and return its path."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           f"facenet-pytorch=={VERSION}", "-d", str(dest)]
    subprocess.run(cmd, check=True)
    wheels = sorted(dest.glob("facenet_pytorch-*.whl"))
    if not wheels:
        raise SystemExit("pip did not produce a facenet-pytorch wheel")
    return wheels[0]


def _licence_text(wheel: zipfile.ZipFile) -> str:
    names = [n for n in wheel.namelist() if n.split("/")[-1].upper().startswith("LICENSE")]
    if not names:
        raise SystemExit("the wheel has no LICENSE file")
    body = wheel.read(names[0]).decode("utf-8").strip()
    return (
        "The MTCNN weights in mtcnn.npz were converted from the files\n"
        "facenet_pytorch/data/{pnet,rnet,onet}.pt of facenet-pytorch "
        f"{VERSION} (https://github.com/timesler/facenet-pytorch).\n"
        "They originally come from the MTCNN authors (K. Zhang, Z. Zhang, Z. Li, Y. Qiao,\n"
        '"Joint Face Detection and Alignment using Multi-task Cascaded Convolutional\n'
        'Networks", IEEE Signal Processing Letters, 2016), via the TensorFlow port in\n'
        "davidsandberg/facenet (https://github.com/davidsandberg/facenet).\n\n"
        f"facenet-pytorch licence ({names[0]}):\n\n{body}\n"
    )


def convert(wheel_path: Path, out_dir: Path) -> Path:
    """Write mtcnn.npz and MTCNN_LICENSE.txt from a facenet-pytorch wheel."""
    arrays: dict[str, np.ndarray] = {}
    with zipfile.ZipFile(wheel_path) as wheel:
        for net in NETS:
            state = load_state_dict(wheel.read(f"facenet_pytorch/data/{net}.pt"))
            for key, value in state.items():
                arrays[f"{net}.{key}"] = value.astype(np.float32)
        licence = _licence_text(wheel)
    out_dir.mkdir(parents=True, exist_ok=True)
    npz = out_dir / "mtcnn.npz"
    np.savez_compressed(npz, **arrays)
    (out_dir / "MTCNN_LICENSE.txt").write_text(licence, encoding="utf-8")
    return npz


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", type=Path, help="facenet-pytorch wheel (default: pip download)")
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel or download_wheel(Path(tmp))
        npz = convert(wheel, args.out_dir)
    with np.load(npz) as data:
        shapes = {key: data[key].shape for key in data.files}
    for key, shape in shapes.items():
        print(f"{key:24s} {shape}")
    total = sum(int(np.prod(s)) for s in shapes.values())
    print(f"wrote {npz} ({len(shapes)} arrays, {total} parameters)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
