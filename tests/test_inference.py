"""The exported fast path gives the same embeddings as the plain forward pass."""

from __future__ import annotations

import numpy as np
import pytest

from facecmp.embedder import Embedder


def test_fast_path_matches_plain_forward(tiny_model):
    crops = np.random.default_rng(0).integers(0, 256, (10, 64, 64, 3), dtype=np.uint8)
    fast = Embedder(tiny_model, flip=True, fast=True)
    plain = Embedder(tiny_model, flip=True, fast=False)
    assert fast.runner.predictor is not None and plain.runner.net is not None
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


@pytest.mark.parametrize("fixture", ["tiny_mask", "tiny_expr"])
def test_classifier_fast_path_matches_plain_forward(fixture, request):
    from facecmp.classifier import Classifier

    model = request.getfixturevalue(fixture)
    size = Classifier(model, fast=False).meta.input_size
    crops = np.random.default_rng(0).integers(0, 256, (7, size, size, 3), dtype=np.uint8)
    fast = Classifier(model, flip=True, fast=True, batch_size=4)
    plain = Classifier(model, flip=True, fast=False, batch_size=4)
    assert fast.runner.predictor is not None and plain.runner.net is not None
    a, b = fast.probabilities(crops), plain.probabilities(crops)
    assert np.abs(a - b).max() <= 1e-4 and np.allclose(a.sum(axis=1), 1)
    assert (model / "inference-classifier" / "stamp").is_file()
    # the head is part of the export: new head weights give a new export
    stamp = (model / "inference-classifier" / "stamp").read_text()
    (model / "head.pdparams").touch()
    Classifier(model, fast=True)
    assert (model / "inference-classifier" / "stamp").read_text() != stamp
