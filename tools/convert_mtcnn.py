"""Convert facenet-pytorch's MTCNN nets into ONNX files, without torch.

Usage (needs the `onnx` package: pip install ".[convert]"):
    python tools/convert_mtcnn.py                 # pip-downloads facenet-pytorch 2.6.0
    python tools/convert_mtcnn.py --wheel PATH    # uses a wheel already on disk

Writes facecmp/weights/mtcnn_{pnet,rnet,onet}.onnx (float32; run by OpenCV's dnn module,
see facecmp/mtcnn.py) and facecmp/weights/MTCNN_LICENSE.txt. The graphs follow
facenet-pytorch's nets (facenet_pytorch/models/mtcnn.py) layer by layer.

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

# Layer names match facenet-pytorch's so the state-dict keys line up one to one.
# "flatten" is its permute(0, 3, 2, 1) + view: the dense weights expect that (W, H, C) order.
_PNET = (("conv1", 3), ("prelu1",), ("pool1", 2, 2), ("conv2", 3), ("prelu2",), ("conv3", 3),
         ("prelu3",))
_RNET = (("conv1", 3), ("prelu1",), ("pool1", 3, 2), ("conv2", 3), ("prelu2",),
         ("pool2", 3, 2), ("conv3", 2), ("prelu3",), ("flatten",), ("dense4",), ("prelu4",))
_ONET = (("conv1", 3), ("prelu1",), ("pool1", 3, 2), ("conv2", 3), ("prelu2",),
         ("pool2", 3, 2), ("conv3", 3), ("prelu3",), ("pool3", 2, 2), ("conv4", 2),
         ("prelu4",), ("flatten",), ("dense5",), ("prelu5",))
# Heads: (layer, output name); the face-probability head gets a softmax over its 2 classes.
_HEADS = {
    "pnet": (_PNET, (("conv4_2", "reg"), ("conv4_1", "prob"))),
    "rnet": (_RNET, (("dense5_2", "reg"), ("dense5_1", "prob"))),
    "onet": (_ONET, (("dense6_2", "reg"), ("dense6_3", "landmarks"), ("dense6_1", "prob"))),
}
INPUT_SIDE = {"pnet": None, "rnet": 24, "onet": 48}  # P-Net takes any image size
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
        "The MTCNN nets in mtcnn_{pnet,rnet,onet}.onnx were converted from the files\n"
        "facenet_pytorch/data/{pnet,rnet,onet}.pt of facenet-pytorch "
        f"{VERSION} (https://github.com/timesler/facenet-pytorch).\n"
        "They originally come from the MTCNN authors (K. Zhang, Z. Zhang, Z. Li, Y. Qiao,\n"
        '"Joint Face Detection and Alignment using Multi-task Cascaded Convolutional\n'
        'Networks", IEEE Signal Processing Letters, 2016), via the TensorFlow port in\n'
        "davidsandberg/facenet (https://github.com/davidsandberg/facenet).\n\n"
        f"facenet-pytorch licence ({names[0]}):\n\n{body}\n"
    )


def build_onnx(kind: str, state: dict[str, np.ndarray]):
    """One net as an ONNX model (input "input", N x 3 x H x W; outputs as in _HEADS)."""
    from onnx import TensorProto, checker, helper, numpy_helper

    trunk, heads = _HEADS[kind]
    nodes, inits = [], []

    def param(layer: str, what: str, shape: tuple | None = None) -> str:
        arr = np.ascontiguousarray(state[f"{layer}.{what}"], dtype=np.float32)
        name = f"{layer}.{what}"
        inits.append(numpy_helper.from_array(arr if shape is None else arr.reshape(shape), name))
        return name

    def linear(layer: str, x: str, out: str) -> None:
        w, b = param(layer, "weight"), param(layer, "bias")
        if layer.startswith("conv"):
            side = state[f"{layer}.weight"].shape[-1]
            nodes.append(helper.make_node("Conv", [x, w, b], [out], kernel_shape=[side, side]))
        else:  # torch Linear: weight is (out, in)
            nodes.append(helper.make_node("Gemm", [x, w, b], [out], transB=1))

    x, dense = "input", False
    for spec in trunk:
        layer = spec[0]
        if layer.startswith(("conv", "dense")):
            linear(layer, x, layer)
            dense = layer.startswith("dense")
        elif layer.startswith("prelu"):  # per-channel slopes broadcast over H and W
            slope = param(layer, "weight", None if dense else (-1, 1, 1))
            nodes.append(helper.make_node("PRelu", [x, slope], [layer]))
        elif layer.startswith("pool"):
            nodes.append(helper.make_node("MaxPool", [x], [layer], kernel_shape=[spec[1]] * 2,
                                          strides=[spec[2]] * 2, ceil_mode=1))
        else:
            nodes.append(helper.make_node("Transpose", [x], ["whc"], perm=[0, 3, 2, 1]))
            nodes.append(helper.make_node("Flatten", ["whc"], [layer], axis=1))
        x = layer
    outputs = []
    for layer, out in heads:
        if out == "prob":
            linear(layer, x, layer)
            nodes.append(helper.make_node("Softmax", [layer], [out], axis=1))
        else:
            linear(layer, x, out)
        dims = ["N", None, None, None] if INPUT_SIDE[kind] is None else ["N", None]
        outputs.append(helper.make_tensor_value_info(out, TensorProto.FLOAT, dims))
    side = INPUT_SIDE[kind]
    shape = ["N", 3, "H", "W"] if side is None else ["N", 3, side, side]
    graph = helper.make_graph(nodes, f"mtcnn_{kind}",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
                              outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="facecmp tools/convert_mtcnn.py")
    model.ir_version = 8  # readable by OpenCV 4.x's ONNX importer
    checker.check_model(model)
    return model


def convert(wheel_path: Path, out_dir: Path) -> list[Path]:
    """Write mtcnn_{pnet,rnet,onet}.onnx and MTCNN_LICENSE.txt from a facenet-pytorch wheel."""
    import onnx

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    with zipfile.ZipFile(wheel_path) as wheel:
        for net in NETS:
            state = load_state_dict(wheel.read(f"facenet_pytorch/data/{net}.pt"))
            path = out_dir / f"mtcnn_{net}.onnx"
            onnx.save(build_onnx(net, state), path)
            written.append(path)
        licence = _licence_text(wheel)
    (out_dir / "MTCNN_LICENSE.txt").write_text(licence, encoding="utf-8")
    return written


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", type=Path, help="facenet-pytorch wheel (default: pip download)")
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel or download_wheel(Path(tmp))
        paths = convert(wheel, args.out_dir)
    for path in paths:
        print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
