"""The exported fast path gives the same embeddings as the plain forward pass."""

from __future__ import annotations

import numpy as np

from facecmp.embedder import Embedder


def test_fast_path_matches_plain_forward(tiny_model):
    crops = np.random.default_rng(0).integers(0, 256, (10, 64, 64, 3), dtype=np.uint8)
    fast = Embedder(tiny_model, flip=True, fast=True)
    plain = Embedder(tiny_model, flip=True, fast=False)
    assert fast.predictor is not None and plain.net is not None
    a, b = fast.embed_crops(crops), plain.embed_crops(crops)
    scale = np.abs(b).max()
    assert np.abs(a - b).max() <= 1e-4 * max(1.0, scale)
    assert np.allclose(fast.embed_crops(crops[:1]), a[:1], atol=1e-4 * max(1.0, scale))


def test_export_is_rebuilt_when_weights_change(tiny_model):
    from facecmp.inference import exported_model

    first = exported_model(tiny_model)
    stamp = (first / "stamp").read_text()
    (tiny_model / "backbone.pdparams").touch()
    second = exported_model(tiny_model)
    assert (second / "stamp").read_text() != stamp
