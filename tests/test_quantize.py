"""Low-bit weights: round trips stay close, and a quantized model gives the same embeddings."""

from __future__ import annotations

import numpy as np
import pytest

from facecmp import quantize
from facecmp.zoo import ZOO_DIR


def _weights(shape, seed=0):
    return np.random.default_rng(seed).normal(0, 0.05, shape).astype(np.float32)


@pytest.mark.parametrize("bits, tolerance", [(8, 0.01), (4, 0.12)])
def test_round_trip_error_is_bounded(bits, tolerance):
    w = _weights((64, 33, 3, 3))  # 19,008 weights: not a multiple of the group size
    packed = quantize.pack(w, bits)
    assert isinstance(packed, dict) and packed["codes"].dtype == np.uint8
    back = quantize.unpack(packed)
    assert back.shape == w.shape and back.dtype == np.float32
    relative = np.linalg.norm(back - w) / np.linalg.norm(w)
    assert relative < tolerance
    assert packed["codes"].nbytes <= w.size * bits / 8 + 1


def test_four_bits_only_for_the_largest_tensors():
    state = {"big": _weights((512, 256, 3, 3)), "mid": _weights((128, 64, 3, 3)),
             "bn": _weights((64,)), "steps": np.array([3], np.int64)}
    packed = quantize.pack_state(state, bits=4)
    assert int(packed["big"]["bits"]) == 4 and int(packed["mid"]["bits"]) == 8
    assert packed["bn"].dtype == np.float16 and packed["steps"].dtype == np.int64
    back = quantize.unpack_state(packed)
    assert set(back) == set(state) and back["bn"].dtype == np.float32
    np.testing.assert_array_equal(back["steps"], state["steps"])


def test_a_zero_tensor_survives():
    back = quantize.unpack(quantize.pack(np.zeros((64, 128), np.float32), 4))
    assert not back.any()


def test_weights_too_small_for_a_float16_scale_pack_without_warnings():
    w = _weights((64, 128)) * 1e-6  # scales below float16's smallest value
    with np.errstate(divide="raise", invalid="raise"):
        back = quantize.unpack(quantize.pack(w, 4))
    assert np.isfinite(back).all() and np.abs(back - w).max() <= np.abs(w).max()


@pytest.mark.parametrize("dtype", ["int8", "int4"])
def test_saved_model_gives_nearly_the_same_embeddings(tmp_path, tiny_model, dtype):
    paddle = pytest.importorskip("paddle")
    from facecmp import modeldir

    net, meta = modeldir.load_net(tiny_model)
    modeldir.save_model(tmp_path, net, meta, with_head=False, dtype=dtype)
    loaded, saved_meta = modeldir.load_net(tmp_path)
    assert saved_meta.weights_dtype == dtype
    size = meta.input_size
    x = paddle.randn([4, 3, size, size])
    a, b = net.backbone(x).numpy(), loaded.backbone(x).numpy()
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.min() > 0.99


def test_unknown_weights_dtype_is_refused(tmp_path):
    from facecmp import modeldir
    from facecmp.errors import FacecmpError

    with pytest.raises(FacecmpError, match="weights dtype"):
        modeldir.save_model(tmp_path, None, {}, with_head=False, dtype="int2")


def test_bundled_weight_files_stay_small():
    files = [p for p in ZOO_DIR.rglob("*.pdparams") if "inference" not in p.parts]
    too_big = [f"{p.relative_to(ZOO_DIR)}: {p.stat().st_size / 1e6:.1f} MB"
               for p in files if p.stat().st_size > 12e6]  # a ResNet18: int4 7.8 MB, int8 11.9 MB
    assert not too_big, "bundled weights over 12 MB (bundle with tools/bundle_model.py): " + ", ".join(too_big)
