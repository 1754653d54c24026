"""Every backbone/head combination runs forward and backward with finite values."""

from __future__ import annotations

import numpy as np
import pytest

models = pytest.importorskip("facecmp.models")
paddle = models.paddle


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "prelu"])
@pytest.mark.parametrize("head", ["linear", "arcface", "cosface"])
def test_forward_backward(activation, head):
    from facecmp.config import ModelConfig

    net = models.build_net(ModelConfig(activation=activation, head=head), classes=5)
    x = paddle.randn([4, 3, 64, 64])
    y = paddle.to_tensor(np.array([[0], [1], [2], [3]], dtype=np.int64))
    logits = net(x, y)
    assert list(logits.shape) == [4, 5]
    loss = paddle.nn.functional.cross_entropy(logits, y)
    loss.backward()
    assert np.isfinite(float(loss))
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    assert grads and all(np.isfinite(g.numpy()).all() for g in grads)
    assert list(net.backbone(x).shape) == [4, models.EMBEDDING_SIZE]


def test_activation_swap_reaches_every_block():
    bb = models.Backbone(activation="leaky_relu")
    kinds = {type(m).__name__ for m in bb.sublayers()}
    assert "LeakyReLU" in kinds and "ReLU" not in kinds


def test_arcface_margin_lowers_the_target_logit_only_in_training():
    head = models.build_head("arcface", 3, scale=10.0, margin=0.5)
    emb = paddle.randn([2, models.EMBEDDING_SIZE])
    label = paddle.to_tensor(np.array([[0], [2]], dtype=np.int64))
    head.train()
    with_margin = head(emb, label).numpy()
    head.eval()
    plain = head(emb, label).numpy()
    assert with_margin[0, 0] < plain[0, 0] and with_margin[1, 2] < plain[1, 2]
    assert np.allclose(with_margin[0, 1:], plain[0, 1:])


@pytest.mark.parametrize(("loss", "gamma", "smoothing"), [("ce", 2.0, 0.0), ("ce", 2.0, 0.1), ("focal", 2.0, 0.1)])
def test_losses_take_integer_labels_and_match_their_formula(loss, gamma, smoothing):
    import numpy as np

    from facecmp.config import load_config
    from facecmp.losses import make_loss
    from facecmp.runtime import import_paddle

    paddle = import_paddle()

    cfg = load_config("expression", overrides={"train": {"loss": loss, "focal_gamma": gamma,
                                                         "label_smoothing": smoothing}})
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 7)).astype(np.float32)
    labels = rng.integers(0, 7, size=(6, 1))
    got = float(make_loss(cfg)(paddle.to_tensor(logits), paddle.to_tensor(labels)))
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    target = np.eye(7)[labels[:, 0]] * (1 - smoothing) + smoothing / 7
    weight = (1 - np.exp(logp)) ** (gamma if loss == "focal" else 0.0)
    assert got == pytest.approx(float(np.mean(np.sum(-target * weight * logp, 1))), rel=1e-5)
