"""The attention ResNet (shapes, gradients, plugging in as a Backbone) and the expression augmentations."""

from __future__ import annotations

import numpy as np
import pytest

models = pytest.importorskip("facecmp.models")
paddle = models.paddle


def test_attention_backbone_forward_backward_at_48():
    from facecmp.config import ModelConfig

    paddle.seed(0)
    net = models.build_net(ModelConfig(arch="attention_resnet", activation="prelu", dropout=0.3),
                           classes=7)
    x = paddle.randn([2, 3, 48, 48])
    y = paddle.to_tensor(np.array([[0], [6]], dtype=np.int64))
    logits = net(x, y)
    assert list(logits.shape) == [2, 7]
    loss = paddle.nn.functional.cross_entropy(logits, y)
    loss.backward()
    assert np.isfinite(float(loss))
    named = {n: p for n, p in net.named_parameters() if not p.stop_gradient}
    missing = [n for n, p in named.items() if p.grad is None]
    assert not missing, missing[:5]
    assert all(np.isfinite(p.grad.numpy()).all() for p in named.values())
    net.eval()
    assert list(net.backbone(x).shape) == [2, models.EMBEDDING_SIZE]


def test_attention_parts_keep_shapes_and_use_prelu():
    from facecmp.attention import CBAM, CoordinateAttention

    x = paddle.randn([2, 32, 12, 10])  # non-square: the two coordinate gates must not mix up
    assert list(CBAM(32)(x).shape) == [2, 32, 12, 10]
    assert list(CoordinateAttention(32)(x).shape) == [2, 32, 12, 10]
    bb = models.Backbone("attention_resnet", "prelu")
    kinds = {type(m).__name__ for m in bb.sublayers()}
    assert {"PReLU", "CBAM", "CoordinateAttention"} <= kinds
    n_params = sum(int(np.prod(p.shape)) for p in bb.parameters())
    assert 10e6 < n_params < 13e6  # ResNet18-sized (resnet18 itself: 11.2M)


def test_config_accepts_the_attention_arch():
    from facecmp.config import load_config
    from facecmp.errors import FacecmpError

    assert load_config("identity", overrides={"model": {"arch": "attention_resnet"}}).model.arch == \
        "attention_resnet"
    with pytest.raises(FacecmpError, match="model.arch must be one of"):
        load_config("identity", overrides={"model": {"arch": "vgg"}})


def test_expression_augmentations_keep_shape_dtype_and_are_off_by_default():
    from facecmp.augment import augment
    from facecmp.config import AugmentConfig, load_config

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (48, 48, 1), dtype=np.uint8)
    off = AugmentConfig(hflip=False)
    assert (off.crop_area, off.gamma, off.noise) == (0.0, 0.0, 0.0)
    assert np.array_equal(augment(img, off, rng), img)
    recipe = load_config("expression").data.augment
    assert recipe.crop_area == 0.5 and recipe.gamma > 0 and recipe.noise > 0 and recipe.erase > 0
    outs = [augment(img, recipe, rng) for _ in range(20)]
    assert all(o.shape == img.shape and o.dtype == np.uint8 for o in outs)
    assert sum(not np.array_equal(o, img) for o in outs) == 20
    rgb = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    assert augment(rgb, recipe, rng).shape == rgb.shape


def test_spatial_attention_matches_the_formula_with_paddle_max():
    from facecmp.attention import SpatialAttention

    paddle.seed(1)
    att = SpatialAttention()
    x = paddle.randn([2, 8, 6, 5])
    x.stop_gradient = False
    att(x).sum().backward()
    ours = (att(x).numpy(), x.grad.numpy())
    x.clear_gradient()
    maps = paddle.concat([paddle.mean(x, axis=1, keepdim=True),
                          paddle.max(x, axis=1, keepdim=True)], axis=1)
    reference = x * paddle.nn.functional.sigmoid(att.conv(maps))
    reference.sum().backward()
    np.testing.assert_allclose(ours[0], reference.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours[1], x.grad.numpy(), rtol=1e-5, atol=1e-6)
