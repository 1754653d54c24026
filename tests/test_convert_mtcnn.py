"""tools/convert_mtcnn.py: facenet-pytorch's wheel -> the ONNX nets facecmp ships."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools"))

import convert_mtcnn  # noqa: E402

SHIPPED = REPO / "facecmp" / "weights"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    pytest.importorskip("onnx", reason="the converter needs the onnx package (the convert extra)")
    dest = tmp_path_factory.mktemp("wheel")
    try:
        return convert_mtcnn.download_wheel(dest)
    except (subprocess.CalledProcessError, SystemExit) as exc:
        pytest.skip(f"cannot download facenet-pytorch {convert_mtcnn.VERSION} from PyPI: {exc}")


def forward(path: Path, x: np.ndarray) -> list[np.ndarray]:
    net = cv2.dnn.readNetFromONNX(str(path))
    net.setInput(x)
    names = ["reg", "landmarks", "prob"] if "onet" in path.name else ["reg", "prob"]
    return list(net.forward(names))


def test_converted_nets_compute_what_the_shipped_ones_do(wheel, tmp_path):
    written = convert_mtcnn.convert(wheel, tmp_path)
    assert [p.name for p in written] == [f"mtcnn_{k}.onnx" for k in convert_mtcnn.NETS]
    assert "MIT" in (tmp_path / "MTCNN_LICENSE.txt").read_text()
    rng = np.random.default_rng(0)
    inputs = {"pnet": (1, 3, 37, 45), "rnet": (5, 3, 24, 24), "onet": (3, 3, 48, 48)}
    for kind, shape in inputs.items():
        x = rng.uniform(-1, 1, shape).astype(np.float32)
        ours = forward(tmp_path / f"mtcnn_{kind}.onnx", x)
        shipped = forward(SHIPPED / f"mtcnn_{kind}.onnx", x)
        for a, b in zip(ours, shipped):
            np.testing.assert_allclose(a, b, atol=1e-6)
        np.testing.assert_allclose(ours[-1].sum(axis=1), 1.0, atol=1e-5)  # softmax head


def test_reads_the_wheels_torch_state_dicts_without_torch(wheel):
    import zipfile

    with zipfile.ZipFile(wheel) as zf:
        state = convert_mtcnn.load_state_dict(zf.read("facenet_pytorch/data/pnet.pt"))
    assert state["conv1.weight"].shape == (10, 3, 3, 3)
    assert state["prelu1.weight"].shape == (10,)
    assert all(v.dtype == np.float32 for v in state.values())
